/* tr_thrift_value.c - Thrift binary-protocol values (see tr_thrift_value.h). */
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
