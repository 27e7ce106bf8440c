/* tr_thrift_value.h - a small hand-written Thrift binary-protocol codec for
 * struct bodies: a writer appending fields and values to a GByteArray, and
 * a reader walking the fields of an encoded struct.
 *
 * For the admin service (tr_admin.c), which must not create c_glib objects
 * per call (they leak, ../shared/THRIFT.md §2).  Message headers and frames
 * are tr_frame's; unknown fields are skipped with tr_frame_skip(), so this
 * module adds values on top of the one codec, it does not duplicate it.
 * Covers what the admin IDL needs: bool, i32, i64, double (write only),
 * string/binary, struct, list.  Stateless and allocation-free on the read path: thread-safe.
 *
 * Also a decoder of any struct body into a tree of TrThriftValue (every wire
 * type: bool, byte, i16, i32, i64, double, string/binary, uuid, struct,
 * list, set, map), for showing stored RPCs (tr-admin dump).  It allocates;
 * it is not on any delivery path.
 */
#pragma once

#include "tr_frame.h"

#include <glib.h>

G_BEGIN_DECLS

/* ---- writer: each call appends to @out ---- */

void tr_thrift_write_field_begin (GByteArray *out, TrThriftType type, gint16 id);
void tr_thrift_write_field_stop (GByteArray *out);
void tr_thrift_write_bool (GByteArray *out, gboolean value);
void tr_thrift_write_i32 (GByteArray *out, gint32 value);
void tr_thrift_write_i64 (GByteArray *out, gint64 value);
/* @data (nullable when @len is 0). */
void tr_thrift_write_binary (GByteArray *out, const void *data, gsize len);
/* @value: NUL-terminated UTF-8; NULL writes "". */
void tr_thrift_write_string (GByteArray *out, const char *value);
void tr_thrift_write_list_begin (GByteArray *out, TrThriftType element_type, guint32 count);

/* Field header + value in one call. */
void tr_thrift_write_field_bool (GByteArray *out, gint16 id, gboolean value);
void tr_thrift_write_field_i32 (GByteArray *out, gint16 id, gint32 value);
void tr_thrift_write_field_i64 (GByteArray *out, gint16 id, gint64 value);
void tr_thrift_write_field_double (GByteArray *out, gint16 id, double value);
void tr_thrift_write_field_string (GByteArray *out, gint16 id, const char *value);

/* ---- reader over one encoded struct ---- */

typedef struct {
  const guint8 *buf; /* (transfer none) */
  gsize len;
  gsize pos;
} TrThriftReader;

void tr_thrift_reader_init (TrThriftReader *reader, const guint8 *buf, gsize len);

/* tr_thrift_read_field_begin:
 * Reads the next field header.  At the end of the struct stores
 * TR_TTYPE_STOP in @type_out (and 0 in @id_out).
 * Returns: TR_FRAME_OK or TR_FRAME_TRUNCATED. */
TrFrameStatus tr_thrift_read_field_begin (TrThriftReader *reader, guint8 *type_out, gint16 *id_out);

/* Each returns TR_FRAME_OK or TR_FRAME_TRUNCATED (and for binary a negative
 * length: TR_FRAME_BAD_DATA). */
TrFrameStatus tr_thrift_read_bool (TrThriftReader *reader, gboolean *out);
TrFrameStatus tr_thrift_read_i32 (TrThriftReader *reader, gint32 *out);
TrFrameStatus tr_thrift_read_i64 (TrThriftReader *reader, gint64 *out);
/* @data_out points into the reader's buffer (not NUL-terminated), valid as
 * long as that buffer is. */
TrFrameStatus tr_thrift_read_binary (TrThriftReader *reader, const guint8 **data_out, gsize *len_out);

/* tr_thrift_read_list_begin:
 * Reads a list (or set) header: element type and count.  A count larger
 * than the bytes left is TR_FRAME_TRUNCATED (every element takes one byte
 * at least), so a caller may size an array by it; negative: BAD_DATA. */
TrFrameStatus tr_thrift_read_list_begin (TrThriftReader *reader, guint8 *element_type_out, guint32 *count_out);

/* Skips one value of @type (depth limit TR_FRAME_MAX_DEPTH) with
 * tr_frame_skip(). */
TrFrameStatus tr_thrift_read_skip (TrThriftReader *reader, guint8 type);

/* ---- decoding a whole struct into a tree ---- */

typedef struct _TrThriftValue TrThriftValue;

/* One decoded value: a plain tree, no invariants beyond the comments. */
struct _TrThriftValue {
  TrThriftType type;
  gint16 id;                   /* field id when a struct member, else 0 */
  gboolean b;                  /* bool */
  gint64 i;                    /* byte, i16, i32, i64 (sign-extended) */
  double d;                    /* double */
  const guint8 *data;          /* string/binary (not NUL-terminated), uuid (16 bytes): (transfer none),
                                * points into the decoded buffer, valid as long as that buffer is */
  gsize len;
  TrThriftType key_type;       /* map: type of the keys */
  TrThriftType element_type;   /* list / set: the elements' type; map: the values' type */
  GPtrArray *children;         /* (element-type TrThriftValue) (nullable): struct: its fields in
                                * wire order; list / set: the elements; map: key, value, key, ... */
};

/* tr_thrift_value_decode_struct:
 * @buf, @len: the buffer; the struct starts at *@offset
 * @out: (out) (transfer full): the struct, type TR_TTYPE_STRUCT, on success
 *
 * Decodes the struct at *@offset (nesting limit TR_FRAME_MAX_DEPTH) and
 * moves *@offset past its stop byte.  On failure *@offset is where decoding
 * stopped (for the error message) and *@out is NULL.
 * Returns: TR_FRAME_OK, TR_FRAME_TRUNCATED, TR_FRAME_BAD_DATA (unknown type
 * id, negative size) or TR_FRAME_TOO_DEEP; a count of more elements than
 * bytes left is TR_FRAME_TRUNCATED, found before anything is allocated.
 * Any thread. */
TrFrameStatus tr_thrift_value_decode_struct (const guint8 *buf, gsize len, gsize *offset, TrThriftValue **out);

/* NULL is ignored. */
void tr_thrift_value_free (TrThriftValue *value);

/* Returns: (transfer none): the IDL spelling of a wire type ("bool", "byte",
 * "i16", "i32", "i64", "double", "string" (also binary), "struct", "map",
 * "set", "list", "uuid"), "?" for an unknown id. */
const char *tr_thrift_type_to_string (guint8 type);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (TrThriftValue, tr_thrift_value_free)

G_END_DECLS
