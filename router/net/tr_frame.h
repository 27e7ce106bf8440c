/* tr_frame.h - the one Thrift frame / message-header codec of thriftrouter.
 *
 * Ingress, push, replication and tools/ all use this module; no second
 * parser of Thrift framing or headers may exist.  It works on raw bytes
 * (never c_glib), allocates nothing on the parse paths, and every function is
 * pure: thread-safe.
 *
 * Wire format (TFramedTransport + TBinaryProtocol, docs and ../shared/THRIFT.md §3):
 *
 *   frame   = i32 BE payload length L (1..max_frame_size), then L payload bytes
 *   strict  = i32 0x80010000|type, i32 name_len, name, i32 seqid, body
 *   old     = i32 name_len (>= 0), name, i8 type, i32 seqid, body
 *   body    = the args / result struct: fields (i8 type, i16 id, value), i8 0 = stop
 *
 * The two header kinds are told apart by the top bit of the first i32.
 * Message types: CALL=1 REPLY=2 EXCEPTION=3 ONEWAY=4.  Pushes always go out
 * strict (c_glib and Python servers cannot read the old header).
 */
#pragma once

#include <glib.h>
#include <string.h>

G_BEGIN_DECLS

/* ---- big-endian helpers (Thrift wire integers; storage has LE ones) ---- */

static inline void
tr_put_be16 (guint8 *p, guint16 v)
{
  v = GUINT16_TO_BE (v);
  memcpy (p, &v, 2);
}

static inline void
tr_put_be32 (guint8 *p, guint32 v)
{
  v = GUINT32_TO_BE (v);
  memcpy (p, &v, 4);
}

static inline void
tr_put_be64 (guint8 *p, guint64 v)
{
  v = GUINT64_TO_BE (v);
  memcpy (p, &v, 8);
}

static inline guint16
tr_get_be16 (const guint8 *p)
{
  guint16 v;
  memcpy (&v, p, 2);
  return GUINT16_FROM_BE (v);
}

static inline guint32
tr_get_be32 (const guint8 *p)
{
  guint32 v;
  memcpy (&v, p, 4);
  return GUINT32_FROM_BE (v);
}

static inline guint64
tr_get_be64 (const guint8 *p)
{
  guint64 v;
  memcpy (&v, p, 8);
  return GUINT64_FROM_BE (v);
}

/* ---- constants ---- */

#define TR_FRAME_LEN_SIZE 4              /* the frame length prefix */
#define TR_FRAME_VERSION_1 0x80010000u   /* strict header: version in the top 16 bits */
#define TR_FRAME_VERSION_MASK 0xffff0000u
#define TR_FRAME_MAX_NAME_LEN 255        /* longest rpc name accepted anywhere */
/* The smallest message any header form can describe (old header, empty
 * name): a frame shorter than this is TR_FRAME_BAD_LENGTH. */
#define TR_FRAME_MIN_MESSAGE_SIZE 9
/* Nesting limit of tr_frame_skip() as used by tr_frame_parse_reply() (same as
 * Thrift's default recursion limit). */
#define TR_FRAME_MAX_DEPTH 64
/* Room tr_frame_push_prefix() may write: length, version, name length, the
 * longest name, seqid. */
#define TR_FRAME_PUSH_PREFIX_MAX (4 + 4 + 4 + TR_FRAME_MAX_NAME_LEN + 4)
/* Default frame limit of the stock c_glib and C++ clients. */
#define TR_FRAME_DEFAULT_MAX_SIZE 16384000u

typedef enum {
  TR_MSG_CALL = 1,
  TR_MSG_REPLY = 2,
  TR_MSG_EXCEPTION = 3,
  TR_MSG_ONEWAY = 4,
} TrMsgType;

/* Thrift field / element types (binary protocol type ids). */
typedef enum {
  TR_TTYPE_STOP = 0,
  TR_TTYPE_VOID = 1,
  TR_TTYPE_BOOL = 2,
  TR_TTYPE_BYTE = 3,
  TR_TTYPE_DOUBLE = 4,
  TR_TTYPE_I16 = 6,
  TR_TTYPE_I32 = 8,
  TR_TTYPE_I64 = 10,
  TR_TTYPE_STRING = 11, /* also binary */
  TR_TTYPE_STRUCT = 12,
  TR_TTYPE_MAP = 13,
  TR_TTYPE_SET = 14,
  TR_TTYPE_LIST = 15,
  TR_TTYPE_UUID = 16,
} TrThriftType;

/* TApplicationException.type values. */
typedef enum {
  TR_APP_EXC_UNKNOWN = 0,
  TR_APP_EXC_UNKNOWN_METHOD = 1,
  TR_APP_EXC_INVALID_MESSAGE_TYPE = 2,
  TR_APP_EXC_WRONG_METHOD_NAME = 3,
  TR_APP_EXC_BAD_SEQUENCE_ID = 4,
  TR_APP_EXC_MISSING_RESULT = 5,
  TR_APP_EXC_INTERNAL_ERROR = 6,
  TR_APP_EXC_PROTOCOL_ERROR = 7,
} TrAppExceptionType;

/* Result of every parse function.  Turn it into a message with
 * tr_frame_status_to_string(). */
typedef enum {
  TR_FRAME_OK = 0,
  TR_FRAME_NEED_MORE,       /* tr_frame_next: the frame is not complete yet */
  TR_FRAME_TOO_LARGE,       /* frame length > max_frame_size */
  TR_FRAME_BAD_LENGTH,      /* frame length negative, zero or < TR_FRAME_MIN_MESSAGE_SIZE */
  TR_FRAME_TRUNCATED,       /* the message ends inside its header or a value */
  TR_FRAME_BAD_VERSION,     /* strict header whose top 16 bits are not 0x8001 */
  TR_FRAME_BAD_TYPE,        /* message type not 1..4 (or not one the function accepts) */
  TR_FRAME_BAD_NAME_LENGTH, /* negative name length */
  TR_FRAME_NAME_TOO_LONG,   /* name longer than TR_FRAME_MAX_NAME_LEN */
  TR_FRAME_BAD_NAME,        /* empty name or a byte outside [A-Za-z0-9_.:] */
  TR_FRAME_BAD_DATA,        /* body: unknown field type or negative container size */
  TR_FRAME_TOO_DEEP,        /* body: nesting beyond the depth limit */
} TrFrameStatus;

/* A parsed message header.  @name points into the caller's message buffer
 * (not NUL-terminated) and is valid as long as that buffer is. */
typedef struct {
  TrMsgType type;
  const guint8 *name; /* (transfer none) */
  gsize name_len;
  gint32 seqid;
  gsize seqid_offset; /* offset of the 4 BE seqid bytes inside the message */
  gsize body_offset;  /* offset of the args/result struct inside the message */
  gboolean strict;    /* TRUE: versioned header; FALSE: old header */
  gboolean seqid_valid; /* TRUE once name and seqid were read, even if the
                         * status is BAD_TYPE / NAME_TOO_LONG / BAD_NAME, so a
                         * caller can still answer with the producer's seqid */
} TrMsgHeader;

/* tr_frame_status_to_string:
 * Returns: (transfer none): a short English description ("truncated
 * message", …) of @status; a static string. */
const char *tr_frame_status_to_string (TrFrameStatus status);

/* tr_frame_valid_rpc_name:
 * The one rpc-name validator (config and wire): 1..TR_FRAME_MAX_NAME_LEN
 * bytes, each in [A-Za-z0-9_.:].  @name need not be NUL-terminated. */
gboolean tr_frame_valid_rpc_name (const char *name, gsize len);

/* tr_frame_protocol_hint:
 * Looks at the first bytes a peer sent on a connection, @buf[0..@avail),
 * where a frame should start, after a parse of them failed.  Returns
 * (transfer none) a static sentence naming the likely mistake when they
 * look like another Thrift transport or protocol (unframed, compact,
 * THeader), HTTP or TLS; NULL when they look like none of these.  Only
 * meaningful for a connection's first frame: later garbage is just that. */
const char *tr_frame_protocol_hint (const guint8 *buf, gsize avail);

/* tr_frame_next:
 * Looks at the start of a connection's input buffer @buf[0..@avail).
 * Returns TR_FRAME_OK when a whole frame (4-byte length + payload) is present
 * and stores the payload length in @frame_len_out (the frame occupies
 * TR_FRAME_LEN_SIZE + *frame_len_out bytes, the payload starts at
 * @buf + TR_FRAME_LEN_SIZE); TR_FRAME_NEED_MORE when fewer bytes are present
 * (also stores the length once the 4 length bytes are there, so the caller
 * can size its buffer); TR_FRAME_BAD_LENGTH for a negative, zero or too short
 * length; TR_FRAME_TOO_LARGE for a length above @max_frame_size.  The last
 * two cannot be recovered from: close the connection. */
TrFrameStatus tr_frame_next (const guint8 *buf, gsize avail, guint32 max_frame_size,
                             guint32 *frame_len_out);

/* tr_frame_parse_header:
 * Parses the header of message @msg[0..@len) (a frame payload), strict or
 * old.  On TR_FRAME_OK fills every field of @out.  On an error status @out
 * is filled as far as it could be read; see @out->seqid_valid.  Validates
 * the name with tr_frame_valid_rpc_name() (NAME_TOO_LONG / BAD_NAME).  The
 * body is not looked at. */
TrFrameStatus tr_frame_parse_header (const guint8 *msg, gsize len, TrMsgHeader *out);

/* tr_frame_wire_seqid:
 * A service seqid (1, 2, 3, ... without end) as the Thrift i32 that carries
 * it: its low 32 bits, two's complement.  So 2^31 - 1 is followed by -2^31,
 * ..., -1, 0, 1, ...  Pushes carry this value and replies are matched
 * against it, so delivery goes on across the wrap. */
static inline gint32
tr_frame_wire_seqid (guint64 seqid)
{
  guint32 low = (guint32) (seqid & 0xffffffffu);

  /* Spelled out: converting a value above G_MAXINT32 to gint32 directly is
   * implementation-defined in C. */
  return low <= (guint32) G_MAXINT32 ? (gint32) low : (gint32) (low - 0x80000000u) + G_MININT32;
}

/* tr_frame_push_prefix:
 * For the push path: writes into @out the frame length and a strict header
 * with @seqid for the message @msg[0..@len) (strict or old, parsed into
 * @header), and returns the number of bytes written (at most
 * TR_FRAME_PUSH_PREFIX_MAX).  The prefix followed by
 *   [@msg + @header->body_offset, @len - body_offset]
 * is one complete framed strict message; the push appends both to the
 * endpoint's output buffer, so the stored message is never modified. */
gsize tr_frame_push_prefix (const guint8 *msg, gsize len, const TrMsgHeader *header, gint32 seqid,
                            guint8 out[TR_FRAME_PUSH_PREFIX_MAX]);

/* ---- builders: each appends one complete frame (length prefix included)
 * to @out, which may already hold earlier frames.  Headers are strict.
 * @name is @name_len bytes, need not be NUL-terminated, and must be at most
 * TR_FRAME_MAX_NAME_LEN bytes. ---- */

/* tr_frame_build_void_reply:
 * A T_REPLY with an empty result struct: what a `void` method returns
 * (payload 13 + @name_len bytes). */
void tr_frame_build_void_reply (GByteArray *out, const char *name, gsize name_len, gint32 seqid);

/* tr_frame_build_exception:
 * A T_EXCEPTION carrying TApplicationException {1: string message, 2: i32
 * type}.  @message is NUL-terminated UTF-8; NULL means "". */
void tr_frame_build_exception (GByteArray *out, const char *name, gsize name_len, gint32 seqid,
                               TrAppExceptionType exception_type, const char *message);

/* tr_frame_build_call:
 * A message of @type (normally CALL or ONEWAY) whose body is
 * @body[0..@body_len) verbatim (an encoded args struct).  @body == NULL with
 * @body_len == 0 writes an empty struct (a lone T_STOP), e.g. for the
 * barrier call. */
void tr_frame_build_call (GByteArray *out, TrMsgType type, const char *name, gsize name_len,
                          gint32 seqid, const guint8 *body, gsize body_len);

/* ---- reply checking (push) ---- */

/* tr_frame_read_field_begin:
 * Reads the header of the struct field at *@offset of @buf: its type, and
 * its id unless the type is TR_TTYPE_STOP (end of struct; *@id_out = 0).
 * Advances *@offset past it.  The one field-header reader: skipping,
 * reply parsing and the admin service's struct reader all use it.
 * Returns: TR_FRAME_OK or TR_FRAME_TRUNCATED. */
TrFrameStatus tr_frame_read_field_begin (const guint8 *buf, gsize len, gsize *offset, guint8 *type_out,
                                         gint16 *id_out);

/* tr_frame_skip:
 * Skips one encoded value of Thrift type @type starting at @buf[*@offset],
 * within @buf[0..@len), and advances *@offset past it.  Structs, lists, sets
 * and maps are walked recursively; each level of nesting costs one unit of
 * @max_depth (a struct of scalars needs 1).  Returns TR_FRAME_OK,
 * TR_FRAME_TRUNCATED, TR_FRAME_BAD_DATA (unknown type id, negative size) or
 * TR_FRAME_TOO_DEEP.  On error *@offset is unspecified. */
TrFrameStatus tr_frame_skip (const guint8 *buf, gsize len, gsize *offset, guint8 type,
                             guint max_depth);

/* A parsed endpoint answer.  Pointers point into the caller's buffer. */
typedef struct {
  TrMsgHeader header;
  /* REPLY: id of the first field in the result struct, or -1 if the struct
   * is empty (a void success).  A non-empty result of a void method means a
   * declared exception (field >= 1). */
  gint32 result_field_id;
  /* EXCEPTION: the TApplicationException's fields (type UNKNOWN and an empty
   * message when absent). */
  gint32 exception_type;
  const guint8 *exception_message; /* (transfer none) (nullable), not NUL-terminated */
  gsize exception_message_len;
  /* The result / exception struct, to the end of the message: for a user
   * that reads the values of a result (replication's hello and append
   * answers, with tr_thrift_value). */
  const guint8 *body; /* (transfer none) */
  gsize body_len;
} TrReply;

/* tr_frame_parse_reply:
 * Parses an endpoint's answer @msg[0..@len) (a frame payload): the header
 * (the name is not validated against the rpc-name rules, only its length)
 * and the whole result / exception struct (depth limit TR_FRAME_MAX_DEPTH).
 * A CALL or ONEWAY is TR_FRAME_BAD_TYPE.  Bytes after the struct's stop are
 * ignored.  On TR_FRAME_OK fills @out. */
TrFrameStatus tr_frame_parse_reply (const guint8 *msg, gsize len, TrReply *out);

G_END_DECLS
