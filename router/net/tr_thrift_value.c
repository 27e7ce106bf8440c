/* tr_thrift_value.c - Thrift binary-protocol values (see tr_thrift_value.h).
 *
 * The tree decoder checks every count against the bytes left before it
 * loops (each element takes at least one byte), so a hostile count cannot
 * make it allocate more than the input justifies. */
#include "tr_thrift_value.h"

#include <string.h>

void
tr_thrift_write_field_begin (GByteArray *out, TrThriftType type, gint16 id)
{
  guint8 buf[3];

  buf[0] = (guint8) type;
  tr_put_be16 (buf + 1, (guint16) id);
  g_byte_array_append (out, buf, sizeof buf);
}

void
tr_thrift_write_field_stop (GByteArray *out)
{
  guint8 stop = TR_TTYPE_STOP;

  g_byte_array_append (out, &stop, 1);
}

void
tr_thrift_write_bool (GByteArray *out, gboolean value)
{
  guint8 byte = value ? 1 : 0;

  g_byte_array_append (out, &byte, 1);
}

void
tr_thrift_write_i32 (GByteArray *out, gint32 value)
{
  guint8 buf[4];

  tr_put_be32 (buf, (guint32) value);
  g_byte_array_append (out, buf, sizeof buf);
}

void
tr_thrift_write_i64 (GByteArray *out, gint64 value)
{
  guint8 buf[8];

  tr_put_be64 (buf, (guint64) value);
  g_byte_array_append (out, buf, sizeof buf);
}

void
tr_thrift_write_binary (GByteArray *out, const void *data, gsize len)
{
  g_return_if_fail (len <= G_MAXINT32);

  tr_thrift_write_i32 (out, (gint32) len);
  if (len > 0)
    g_byte_array_append (out, data, (guint) len);
}

void
tr_thrift_write_string (GByteArray *out, const char *value)
{
  tr_thrift_write_binary (out, value, value != NULL ? strlen (value) : 0);
}

void
tr_thrift_write_list_begin (GByteArray *out, TrThriftType element_type, guint32 count)
{
  guint8 type = (guint8) element_type;

  g_byte_array_append (out, &type, 1);
  tr_thrift_write_i32 (out, (gint32) count);
}

void
tr_thrift_write_field_bool (GByteArray *out, gint16 id, gboolean value)
{
  tr_thrift_write_field_begin (out, TR_TTYPE_BOOL, id);
  tr_thrift_write_bool (out, value);
}

void
tr_thrift_write_field_i32 (GByteArray *out, gint16 id, gint32 value)
{
  tr_thrift_write_field_begin (out, TR_TTYPE_I32, id);
  tr_thrift_write_i32 (out, value);
}

void
tr_thrift_write_field_i64 (GByteArray *out, gint16 id, gint64 value)
{
  tr_thrift_write_field_begin (out, TR_TTYPE_I64, id);
  tr_thrift_write_i64 (out, value);
}

void
tr_thrift_write_field_double (GByteArray *out, gint16 id, double value)
{
  guint64 bits;

  memcpy (&bits, &value, sizeof bits); /* IEEE 754, sent big-endian like an i64 */
  tr_thrift_write_field_begin (out, TR_TTYPE_DOUBLE, id);
  tr_thrift_write_i64 (out, (gint64) bits);
}

void
tr_thrift_write_field_string (GByteArray *out, gint16 id, const char *value)
{
  tr_thrift_write_field_begin (out, TR_TTYPE_STRING, id);
  tr_thrift_write_string (out, value);
}

/* ---- reader ---- */

void
tr_thrift_reader_init (TrThriftReader *reader, const guint8 *buf, gsize len)
{
  reader->buf = buf;
  reader->len = len;
  reader->pos = 0;
}

static gboolean
has (const TrThriftReader *reader, gsize n)
{
  return reader->pos <= reader->len && reader->len - reader->pos >= n;
}

TrFrameStatus
tr_thrift_read_field_begin (TrThriftReader *reader, guint8 *type_out, gint16 *id_out)
{
  return tr_frame_read_field_begin (reader->buf, reader->len, &reader->pos, type_out, id_out);
}

TrFrameStatus
tr_thrift_read_bool (TrThriftReader *reader, gboolean *out)
{
  if (!has (reader, 1))
    return TR_FRAME_TRUNCATED;
  *out = reader->buf[reader->pos++] != 0;
  return TR_FRAME_OK;
}

TrFrameStatus
tr_thrift_read_i32 (TrThriftReader *reader, gint32 *out)
{
  if (!has (reader, 4))
    return TR_FRAME_TRUNCATED;
  *out = (gint32) tr_get_be32 (reader->buf + reader->pos);
  reader->pos += 4;
  return TR_FRAME_OK;
}

TrFrameStatus
tr_thrift_read_i64 (TrThriftReader *reader, gint64 *out)
{
  if (!has (reader, 8))
    return TR_FRAME_TRUNCATED;
  *out = (gint64) tr_get_be64 (reader->buf + reader->pos);
  reader->pos += 8;
  return TR_FRAME_OK;
}

TrFrameStatus
tr_thrift_read_binary (TrThriftReader *reader, const guint8 **data_out, gsize *len_out)
{
  gint32 len;
  TrFrameStatus status = tr_thrift_read_i32 (reader, &len);

  if (status != TR_FRAME_OK)
    return status;
  if (len < 0)
    return TR_FRAME_BAD_DATA;
  if (!has (reader, (gsize) len))
    return TR_FRAME_TRUNCATED;
  *data_out = reader->buf + reader->pos;
  *len_out = (gsize) len;
  reader->pos += (gsize) len;
  return TR_FRAME_OK;
}

TrFrameStatus
tr_thrift_read_skip (TrThriftReader *reader, guint8 type)
{
  return tr_frame_skip (reader->buf, reader->len, &reader->pos, type, TR_FRAME_MAX_DEPTH);
}

TrFrameStatus
tr_thrift_read_list_begin (TrThriftReader *reader, guint8 *element_type_out, guint32 *count_out)
{
  gint32 count;
  TrFrameStatus status;

  if (!has (reader, 1))
    return TR_FRAME_TRUNCATED;
  *element_type_out = reader->buf[reader->pos++];
  status = tr_thrift_read_i32 (reader, &count);
  if (status != TR_FRAME_OK)
    return status;
  /* Every element takes at least one byte: a count beyond what is left is
   * a lie that must not size an allocation. */
  if (count < 0 || (gsize) count > reader->len - reader->pos)
    return count < 0 ? TR_FRAME_BAD_DATA : TR_FRAME_TRUNCATED;
  *count_out = (guint32) count;
  return TR_FRAME_OK;
}

/* ---- decoding into a tree ---- */

const char *
tr_thrift_type_to_string (guint8 type)
{
  switch (type) {
  case TR_TTYPE_BOOL:
    return "bool";
  case TR_TTYPE_BYTE:
    return "byte";
  case TR_TTYPE_DOUBLE:
    return "double";
  case TR_TTYPE_I16:
    return "i16";
  case TR_TTYPE_I32:
    return "i32";
  case TR_TTYPE_I64:
    return "i64";
  case TR_TTYPE_STRING:
    return "string";
  case TR_TTYPE_STRUCT:
    return "struct";
  case TR_TTYPE_MAP:
    return "map";
  case TR_TTYPE_SET:
    return "set";
  case TR_TTYPE_LIST:
    return "list";
  case TR_TTYPE_UUID:
    return "uuid";
  default:
    return "?";
  }
}

void
tr_thrift_value_free (TrThriftValue *value)
{
  if (value == NULL)
    return;
  if (value->children != NULL)
    g_ptr_array_unref (value->children);
  g_free (value);
}

static TrFrameStatus decode_value (TrThriftReader *reader, guint8 type, guint depth, TrThriftValue *value);

/* A new child of @parent (created with its array on first use). */
static TrThriftValue *
add_child (TrThriftValue *parent, guint8 type)
{
  TrThriftValue *child = g_new0 (TrThriftValue, 1);

  child->type = type;
  if (parent->children == NULL)
    parent->children = g_ptr_array_new_with_free_func ((GDestroyNotify) tr_thrift_value_free);
  g_ptr_array_add (parent->children, child);
  return child;
}

static TrFrameStatus
decode_fields (TrThriftReader *reader, guint depth, TrThriftValue *value)
{
  for (;;) {
    guint8 type;
    gint16 id;
    TrFrameStatus status = tr_thrift_read_field_begin (reader, &type, &id);
    TrThriftValue *field;
    if (status != TR_FRAME_OK || type == TR_TTYPE_STOP)
      return status;
    field = add_child (value, type);
    field->id = id;
    if ((status = decode_value (reader, type, depth, field)) != TR_FRAME_OK)
      return status;
  }
}

/* list, set (one type byte) and map (two): header, count, elements. */
static TrFrameStatus
decode_container (TrThriftReader *reader, guint depth, TrThriftValue *value)
{
  guint per = value->type == TR_TTYPE_MAP ? 2 : 1;
  gint32 count;
  TrFrameStatus status;

  if (!has (reader, per))
    return TR_FRAME_TRUNCATED;
  value->key_type = per == 2 ? reader->buf[reader->pos] : TR_TTYPE_STOP;
  value->element_type = reader->buf[reader->pos + per - 1];
  reader->pos += per;
  if ((status = tr_thrift_read_i32 (reader, &count)) != TR_FRAME_OK)
    return status;
  if (count < 0)
    return TR_FRAME_BAD_DATA;
  if ((guint64) count * per > reader->len - reader->pos)
    return TR_FRAME_TRUNCATED; /* ends before its elements could: checked before allocating */
  value->children = g_ptr_array_new_full ((guint) count * per, (GDestroyNotify) tr_thrift_value_free);
  for (gint32 n = 0; n < count; n++) {
    for (guint k = 0; k < per; k++) {
      guint8 type = k + 1 < per ? value->key_type : value->element_type;
      if ((status = decode_value (reader, type, depth, add_child (value, type))) != TR_FRAME_OK)
        return status;
    }
  }
  return TR_FRAME_OK;
}

static TrFrameStatus
decode_value (TrThriftReader *reader, guint8 type, guint depth, TrThriftValue *value)
{
  gint32 i32;
  gint64 i64;

  value->type = type;
  switch (type) {
  case TR_TTYPE_BOOL:
    return tr_thrift_read_bool (reader, &value->b);
  case TR_TTYPE_BYTE:
    if (!has (reader, 1))
      return TR_FRAME_TRUNCATED;
    value->i = (gint8) reader->buf[reader->pos++];
    return TR_FRAME_OK;
  case TR_TTYPE_I16:
    if (!has (reader, 2))
      return TR_FRAME_TRUNCATED;
    value->i = (gint16) tr_get_be16 (reader->buf + reader->pos);
    reader->pos += 2;
    return TR_FRAME_OK;
  case TR_TTYPE_I32:
    if (tr_thrift_read_i32 (reader, &i32) != TR_FRAME_OK)
      return TR_FRAME_TRUNCATED;
    value->i = i32;
    return TR_FRAME_OK;
  case TR_TTYPE_I64:
    return tr_thrift_read_i64 (reader, &value->i);
  case TR_TTYPE_DOUBLE:
    if (tr_thrift_read_i64 (reader, &i64) != TR_FRAME_OK)
      return TR_FRAME_TRUNCATED;
    memcpy (&value->d, &i64, sizeof value->d); /* IEEE 754, big-endian on the wire like an i64 */
    return TR_FRAME_OK;
  case TR_TTYPE_STRING:
    return tr_thrift_read_binary (reader, &value->data, &value->len);
  case TR_TTYPE_UUID:
    if (!has (reader, 16))
      return TR_FRAME_TRUNCATED;
    value->data = reader->buf + reader->pos;
    value->len = 16;
    reader->pos += 16;
    return TR_FRAME_OK;
  case TR_TTYPE_STRUCT:
  case TR_TTYPE_MAP:
  case TR_TTYPE_SET:
  case TR_TTYPE_LIST:
    if (depth == 0)
      return TR_FRAME_TOO_DEEP;
    return type == TR_TTYPE_STRUCT ? decode_fields (reader, depth - 1, value)
                                   : decode_container (reader, depth - 1, value);
  default:
    return TR_FRAME_BAD_DATA;
  }
}

TrFrameStatus
tr_thrift_value_decode_struct (const guint8 *buf, gsize len, gsize *offset, TrThriftValue **out)
{
  g_autoptr (TrThriftValue) value = g_new0 (TrThriftValue, 1);
  TrThriftReader reader;
  TrFrameStatus status;

  g_return_val_if_fail (buf != NULL || len == 0, TR_FRAME_TRUNCATED);
  g_return_val_if_fail (offset != NULL && *offset <= len && out != NULL, TR_FRAME_TRUNCATED);

  *out = NULL;
  tr_thrift_reader_init (&reader, buf, len);
  reader.pos = *offset;
  status = decode_value (&reader, TR_TTYPE_STRUCT, TR_FRAME_MAX_DEPTH, value);
  *offset = reader.pos;
  if (status == TR_FRAME_OK)
    *out = g_steal_pointer (&value);
  return status;
}
