/* tr_frame.c - Thrift framing, message headers, replies (see tr_frame.h).
 *
 * Invariants: every read is bounds-checked against the caller's length
 * before it happens; lengths read from the wire are handled as gint64 or
 * checked for sign before any arithmetic, so no input can overflow an
 * offset.  Nothing here allocates except the builders.  Pure functions,
 * thread-safe.
 */
#include "tr_frame.h"

/* Header layout sizes. */
#define I32 4
#define STRICT_FIXED (I32 + I32 + I32) /* version, name_len, seqid */

const char *
tr_frame_status_to_string (TrFrameStatus status)
{
  switch (status) {
  case TR_FRAME_OK:
    return "ok";
  case TR_FRAME_NEED_MORE:
    return "incomplete frame";
  case TR_FRAME_TOO_LARGE:
    return "frame larger than max_frame_size";
  case TR_FRAME_BAD_LENGTH:
    return "invalid frame length";
  case TR_FRAME_TRUNCATED:
    return "truncated message";
  case TR_FRAME_BAD_VERSION:
    return "bad protocol version (expected 0x8001)";
  case TR_FRAME_BAD_TYPE:
    return "unexpected message type";
  case TR_FRAME_BAD_NAME_LENGTH:
    return "negative method name length";
  case TR_FRAME_NAME_TOO_LONG:
    return "method name too long";
  case TR_FRAME_BAD_NAME:
    return "invalid method name";
  case TR_FRAME_BAD_DATA:
    return "malformed struct data";
  case TR_FRAME_TOO_DEEP:
    return "struct nesting too deep";
  }
  return "unknown frame status";
}

gboolean
tr_frame_valid_rpc_name (const char *name, gsize len)
{
  if (name == NULL || len == 0 || len > TR_FRAME_MAX_NAME_LEN)
    return FALSE;
  for (gsize i = 0; i < len; i++) {
    char c = name[i];
    if (!g_ascii_isalnum (c) && c != '_' && c != '.' && c != ':')
      return FALSE;
  }
  return TRUE;
}

TrFrameStatus
tr_frame_next (const guint8 *buf, gsize avail, guint32 max_frame_size, guint32 *frame_len_out)
{
  guint32 len;

  g_return_val_if_fail (buf != NULL || avail == 0, TR_FRAME_BAD_LENGTH);
  g_return_val_if_fail (frame_len_out != NULL, TR_FRAME_BAD_LENGTH);

  if (avail < TR_FRAME_LEN_SIZE)
    return TR_FRAME_NEED_MORE;
  len = tr_get_be32 (buf);
  /* Sign first: an unframed strict message (0x8001....) is a "negative" length. */
  if (len > G_MAXINT32 || len < TR_FRAME_MIN_MESSAGE_SIZE)
    return TR_FRAME_BAD_LENGTH;
  if (len > max_frame_size)
    return TR_FRAME_TOO_LARGE;
  *frame_len_out = len;
  if (avail - TR_FRAME_LEN_SIZE < len)
    return TR_FRAME_NEED_MORE;
  return TR_FRAME_OK;
}

const char *
tr_frame_protocol_hint (const guint8 *buf, gsize avail)
{
  static const char *const http_methods[] = { "GET ", "POST", "PUT ", "HEAD", "OPTI", "DELE", "PATC", "CONN" };

  if (buf == NULL || avail < 2)
    return NULL;
  /* A strict binary header where the frame length belongs. */
  if (buf[0] == 0x80 && buf[1] == 0x01)
    return "this looks like an unframed binary-protocol message: the peer must use the framed transport "
           "(TFramedTransport)";
  /* TCompactProtocol: protocol id 0x82, then version 1 in the low 5 bits. */
  if (buf[0] == 0x82 && (buf[1] & 0x1f) == 1)
    return "this looks like an unframed compact-protocol message: the peer must use the framed transport "
           "and the binary protocol (TBinaryProtocol)";
  if (buf[0] == 0x16 && buf[1] == 0x03)
    return "this looks like a TLS handshake: the router listens in plain TCP";
  if (avail >= 4) {
    for (guint i = 0; i < G_N_ELEMENTS (http_methods); i++)
      if (memcmp (buf, http_methods[i], 4) == 0)
        return "this looks like HTTP: the peer must use the framed transport over plain TCP, not HTTP";
  }
  if (avail >= 6 && buf[4] == 0x82 && (buf[5] & 0x1f) == 1)
    return "this looks like a framed compact-protocol message: the peer must use the binary protocol "
           "(TBinaryProtocol)";
  /* THeader: a frame whose first 16 bits are the magic 0x0FFF. */
  if (avail >= 6 && buf[4] == 0x0f && buf[5] == 0xff)
    return "this looks like the THeader transport: the peer must use the framed transport and the binary "
           "protocol";
  return NULL;
}

static gboolean
valid_msg_type (guint32 type)
{
  return type >= TR_MSG_CALL && type <= TR_MSG_ONEWAY;
}

/* Reads the name length at @pos and checks the name fits in the message.
 * On OK stores the name in @out and returns the offset after it. */
static TrFrameStatus
read_name (const guint8 *msg, gsize len, gsize pos, TrMsgHeader *out, gsize *after)
{
  gint32 name_len;

  if (len - pos < I32)
    return TR_FRAME_TRUNCATED;
  name_len = (gint32) tr_get_be32 (msg + pos);
  pos += I32;
  if (name_len < 0)
    return TR_FRAME_BAD_NAME_LENGTH;
  if ((gsize) name_len > len - pos)
    return name_len > TR_FRAME_MAX_NAME_LEN ? TR_FRAME_NAME_TOO_LONG : TR_FRAME_TRUNCATED;
  out->name = msg + pos;
  out->name_len = (gsize) name_len;
  *after = pos + (gsize) name_len;
  return TR_FRAME_OK;
}

/* The layout part of the header parse: reads every field, checks only what
 * is needed to find the next one (version, lengths).  Type and name
 * validity are left to the callers. */
static TrFrameStatus
parse_layout (const guint8 *msg, gsize len, TrMsgHeader *out)
{
  TrFrameStatus status;
  guint32 first;
  gsize pos;

  memset (out, 0, sizeof *out);
  if (len < I32)
    return TR_FRAME_TRUNCATED;
  first = tr_get_be32 (msg);
  out->strict = (first & 0x80000000u) != 0;
  if (out->strict) {
    if ((first & TR_FRAME_VERSION_MASK) != TR_FRAME_VERSION_1)
      return TR_FRAME_BAD_VERSION;
    out->type = (TrMsgType) (first & 0xffu);
    status = read_name (msg, len, I32, out, &pos);
  } else {
    status = read_name (msg, len, 0, out, &pos);
    if (status == TR_FRAME_OK) {
      if (len - pos < 1)
        return TR_FRAME_TRUNCATED;
      out->type = (TrMsgType) msg[pos];
      pos += 1;
    }
  }
  if (status != TR_FRAME_OK)
    return status;
  if (len - pos < I32)
    return TR_FRAME_TRUNCATED;
  out->seqid_offset = pos;
  out->seqid = (gint32) tr_get_be32 (msg + pos);
  out->body_offset = pos + I32;
  out->seqid_valid = TRUE;
  /* Strict: bits 8..15 of the first word are unused and must be zero;
   * a non-zero type byte above 0xff is reported as a bad type. */
  if (out->strict && (first & 0x0000ff00u) != 0)
    out->type = (TrMsgType) (first & 0xffffu);
  return TR_FRAME_OK;
}

TrFrameStatus
tr_frame_parse_header (const guint8 *msg, gsize len, TrMsgHeader *out)
{
  TrFrameStatus status;

  g_return_val_if_fail (msg != NULL || len == 0, TR_FRAME_TRUNCATED);
  g_return_val_if_fail (out != NULL, TR_FRAME_TRUNCATED);

  status = parse_layout (msg, len, out);
  if (status != TR_FRAME_OK)
    return status;
  if (!valid_msg_type ((guint32) out->type))
    return TR_FRAME_BAD_TYPE;
  if (out->name_len > TR_FRAME_MAX_NAME_LEN)
    return TR_FRAME_NAME_TOO_LONG;
  if (!tr_frame_valid_rpc_name ((const char *) out->name, out->name_len))
    return TR_FRAME_BAD_NAME;
  return TR_FRAME_OK;
}

/* Writes [len][strict header] for a body of @body_len bytes; returns the
 * bytes written.  The frame length is checked by callers (<= G_MAXINT32). */
static gsize
write_prefix (guint8 *out, TrMsgType type, const guint8 *name, gsize name_len, gint32 seqid,
              gsize body_len)
{
  gsize payload = STRICT_FIXED + name_len + body_len;

  tr_put_be32 (out, (guint32) payload);
  tr_put_be32 (out + 4, TR_FRAME_VERSION_1 | (guint32) type);
  tr_put_be32 (out + 8, (guint32) name_len);
  if (name_len > 0)
    memcpy (out + 12, name, name_len);
  tr_put_be32 (out + 12 + name_len, (guint32) seqid);
  return TR_FRAME_LEN_SIZE + STRICT_FIXED + name_len;
}

gsize
tr_frame_push_prefix (const guint8 *msg, gsize len, const TrMsgHeader *header, gint32 seqid,
                      guint8 out[TR_FRAME_PUSH_PREFIX_MAX])
{
  g_return_val_if_fail (msg != NULL && header != NULL && out != NULL, 0);
  g_return_val_if_fail (header->seqid_valid && header->body_offset <= len, 0);
  g_return_val_if_fail (header->name_len <= TR_FRAME_MAX_NAME_LEN, 0);

  return write_prefix (out, header->type, header->name, header->name_len, seqid,
                       len - header->body_offset);
}

/* Appends [len][strict header] to @out for a body of @body_len bytes. */
static void
append_prefix (GByteArray *out, TrMsgType type, const char *name, gsize name_len, gint32 seqid,
               gsize body_len)
{
  guint8 prefix[TR_FRAME_PUSH_PREFIX_MAX];
  gsize n = write_prefix (prefix, type, (const guint8 *) name, name_len, seqid, body_len);

  g_byte_array_append (out, prefix, (guint) n);
}

void
tr_frame_build_void_reply (GByteArray *out, const char *name, gsize name_len, gint32 seqid)
{
  static const guint8 stop = TR_TTYPE_STOP;

  g_return_if_fail (out != NULL && (name != NULL || name_len == 0));
  g_return_if_fail (name_len <= TR_FRAME_MAX_NAME_LEN);

  append_prefix (out, TR_MSG_REPLY, name, name_len, seqid, 1);
  g_byte_array_append (out, &stop, 1);
}

void
tr_frame_build_exception (GByteArray *out, const char *name, gsize name_len, gint32 seqid,
                          TrAppExceptionType exception_type, const char *message)
{
  gsize msg_len = message != NULL ? strlen (message) : 0;
  /* {1: string message, 2: i32 type}: 3+4+msg, 3+4, stop */
  gsize body_len;
  guint8 field[7];

  g_return_if_fail (out != NULL && (name != NULL || name_len == 0));
  g_return_if_fail (name_len <= TR_FRAME_MAX_NAME_LEN);

  /* Keep the whole frame far below any frame limit. */
  msg_len = MIN (msg_len, 4096);
  body_len = 7 + msg_len + 7 + 1;
  append_prefix (out, TR_MSG_EXCEPTION, name, name_len, seqid, body_len);

  field[0] = TR_TTYPE_STRING;
  tr_put_be16 (field + 1, 1);
  tr_put_be32 (field + 3, (guint32) msg_len);
  g_byte_array_append (out, field, 7);
  if (msg_len > 0)
    g_byte_array_append (out, (const guint8 *) message, (guint) msg_len);
  field[0] = TR_TTYPE_I32;
  tr_put_be16 (field + 1, 2);
  tr_put_be32 (field + 3, (guint32) exception_type);
  g_byte_array_append (out, field, 7);
  field[0] = TR_TTYPE_STOP;
  g_byte_array_append (out, field, 1);
}

void
tr_frame_build_call (GByteArray *out, TrMsgType type, const char *name, gsize name_len,
                     gint32 seqid, const guint8 *body, gsize body_len)
{
  static const guint8 stop = TR_TTYPE_STOP;

  g_return_if_fail (out != NULL && (name != NULL || name_len == 0));
  g_return_if_fail (name_len <= TR_FRAME_MAX_NAME_LEN);
  g_return_if_fail (body != NULL || body_len == 0);
  g_return_if_fail (body_len <= G_MAXINT32 - STRICT_FIXED - TR_FRAME_MAX_NAME_LEN);

  if (body == NULL) {
    body = &stop;
    body_len = 1;
  }
  append_prefix (out, type, name, name_len, seqid, body_len);
  g_byte_array_append (out, body, (guint) body_len);
}

/* ---- generic value skipping ---- */

static TrFrameStatus
need (gsize len, gsize pos, gsize n)
{
  return len - pos < n ? TR_FRAME_TRUNCATED : TR_FRAME_OK;
}

/* Fixed wire size of a scalar type, 0 for variable / container types,
 * -1 for an invalid type id. */
static gint
fixed_size (guint8 type)
{
  switch (type) {
  case TR_TTYPE_BOOL:
  case TR_TTYPE_BYTE:
    return 1;
  case TR_TTYPE_I16:
    return 2;
  case TR_TTYPE_I32:
    return 4;
  case TR_TTYPE_DOUBLE:
  case TR_TTYPE_I64:
    return 8;
  case TR_TTYPE_UUID:
    return 16;
  case TR_TTYPE_STRING:
  case TR_TTYPE_STRUCT:
  case TR_TTYPE_MAP:
  case TR_TTYPE_SET:
  case TR_TTYPE_LIST:
    return 0;
  default:
    return -1;
  }
}

/* Reads an i32 element count at *pos; negative is BAD_DATA. */
static TrFrameStatus
read_count (const guint8 *buf, gsize len, gsize *pos, gint32 *count)
{
  if (need (len, *pos, I32) != TR_FRAME_OK)
    return TR_FRAME_TRUNCATED;
  *count = (gint32) tr_get_be32 (buf + *pos);
  *pos += I32;
  return *count < 0 ? TR_FRAME_BAD_DATA : TR_FRAME_OK;
}

TrFrameStatus
tr_frame_read_field_begin (const guint8 *buf, gsize len, gsize *offset, guint8 *type_out, gint16 *id_out)
{
  *id_out = 0;
  if (need (len, *offset, 1) != TR_FRAME_OK)
    return TR_FRAME_TRUNCATED;
  *type_out = buf[*offset];
  if (*type_out == TR_TTYPE_STOP) {
    *offset += 1;
    return TR_FRAME_OK;
  }
  if (need (len, *offset, 3) != TR_FRAME_OK)
    return TR_FRAME_TRUNCATED;
  *id_out = (gint16) tr_get_be16 (buf + *offset + 1);
  *offset += 3;
  return TR_FRAME_OK;
}

static TrFrameStatus
skip_struct (const guint8 *buf, gsize len, gsize *pos, guint depth)
{
  for (;;) {
    guint8 type;
    gint16 id;
    TrFrameStatus status = tr_frame_read_field_begin (buf, len, pos, &type, &id);

    if (status != TR_FRAME_OK || type == TR_TTYPE_STOP)
      return status;
    status = tr_frame_skip (buf, len, pos, type, depth);
    if (status != TR_FRAME_OK)
      return status;
  }
}

/* Skips @count elements of each type in @types[0..@ntypes) in turn (a list
 * or set has one element type, a map two). */
static TrFrameStatus
skip_elements (const guint8 *buf, gsize len, gsize *pos, const guint8 *types, guint ntypes,
               gint32 count, guint depth)
{
  for (gint32 i = 0; i < count; i++) {
    for (guint t = 0; t < ntypes; t++) {
      TrFrameStatus status = tr_frame_skip (buf, len, pos, types[t], depth);
      if (status != TR_FRAME_OK)
        return status;
    }
  }
  return TR_FRAME_OK;
}

TrFrameStatus
tr_frame_skip (const guint8 *buf, gsize len, gsize *offset, guint8 type, guint max_depth)
{
  gint size = fixed_size (type);
  guint8 types[2];
  gint32 count;
  TrFrameStatus status;

  g_return_val_if_fail (buf != NULL || len == 0, TR_FRAME_TRUNCATED);
  g_return_val_if_fail (offset != NULL && *offset <= len, TR_FRAME_TRUNCATED);

  if (size < 0)
    return TR_FRAME_BAD_DATA;
  if (size > 0) {
    if (need (len, *offset, (gsize) size) != TR_FRAME_OK)
      return TR_FRAME_TRUNCATED;
    *offset += (gsize) size;
    return TR_FRAME_OK;
  }
  if (type == TR_TTYPE_STRING) {
    status = read_count (buf, len, offset, &count);
    if (status == TR_FRAME_OK && need (len, *offset, (gsize) count) != TR_FRAME_OK)
      status = TR_FRAME_TRUNCATED;
    if (status == TR_FRAME_OK)
      *offset += (gsize) count;
    return status;
  }
  /* Containers: one level deeper. */
  if (max_depth == 0)
    return TR_FRAME_TOO_DEEP;
  if (type == TR_TTYPE_STRUCT)
    return skip_struct (buf, len, offset, max_depth - 1);
  {
    guint ntypes = type == TR_TTYPE_MAP ? 2 : 1;
    if (need (len, *offset, ntypes) != TR_FRAME_OK)
      return TR_FRAME_TRUNCATED;
    memcpy (types, buf + *offset, ntypes);
    *offset += ntypes;
  }
  status = read_count (buf, len, offset, &count);
  if (status != TR_FRAME_OK)
    return status;
  return skip_elements (buf, len, offset, types, type == TR_TTYPE_MAP ? 2 : 1, count,
                        max_depth - 1);
}

/* Walks the TApplicationException struct at @pos, picking out field 1
 * (string message) and field 2 (i32 type); everything else is skipped. */
static TrFrameStatus
parse_app_exception (const guint8 *msg, gsize len, gsize pos, TrReply *out)
{
  for (;;) {
    guint8 type;
    gint16 id;
    TrFrameStatus status = tr_frame_read_field_begin (msg, len, &pos, &type, &id);

    if (status != TR_FRAME_OK || type == TR_TTYPE_STOP)
      return status;
    if (id == 1 && type == TR_TTYPE_STRING && need (len, pos, I32) == TR_FRAME_OK) {
      out->exception_message = msg + pos + I32;
      out->exception_message_len = tr_get_be32 (msg + pos);
    } else if (id == 2 && type == TR_TTYPE_I32 && need (len, pos, I32) == TR_FRAME_OK) {
      out->exception_type = (gint32) tr_get_be32 (msg + pos);
    }
    /* Skipping also bounds-checks the message bytes picked out above. */
    status = tr_frame_skip (msg, len, &pos, type, TR_FRAME_MAX_DEPTH - 1);
    if (status != TR_FRAME_OK)
      return status;
  }
}

TrFrameStatus
tr_frame_parse_reply (const guint8 *msg, gsize len, TrReply *out)
{
  TrFrameStatus status;
  gsize pos;

  g_return_val_if_fail (msg != NULL || len == 0, TR_FRAME_TRUNCATED);
  g_return_val_if_fail (out != NULL, TR_FRAME_TRUNCATED);

  memset (out, 0, sizeof *out);
  out->result_field_id = -1;
  out->exception_type = TR_APP_EXC_UNKNOWN;
  status = parse_layout (msg, len, &out->header);
  if (status != TR_FRAME_OK)
    return status;
  if (out->header.type != TR_MSG_REPLY && out->header.type != TR_MSG_EXCEPTION)
    return TR_FRAME_BAD_TYPE;
  if (out->header.name_len > TR_FRAME_MAX_NAME_LEN)
    return TR_FRAME_NAME_TOO_LONG;
  pos = out->header.body_offset;
  out->body = msg + pos;
  out->body_len = len - pos;
  if (out->header.type == TR_MSG_EXCEPTION)
    return parse_app_exception (msg, len, pos, out);
  /* REPLY: note the first field id, then validate the whole struct. */
  if (need (len, pos, 1) == TR_FRAME_OK && msg[pos] != TR_TTYPE_STOP &&
      need (len, pos, 3) == TR_FRAME_OK)
    out->result_field_id = (gint16) tr_get_be16 (msg + pos + 1);
  return tr_frame_skip (msg, len, &pos, TR_TTYPE_STRUCT, TR_FRAME_MAX_DEPTH);
}
