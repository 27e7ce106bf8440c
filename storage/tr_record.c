/* tr_record.c - record frame v1 (format in tr_record.h and
 * docs/storage-format.md). */
#include "tr_record.h"

#include "tr_endian.h"

#include <string.h>
#define XXH_STATIC_LINKING_ONLY /* XXH3_state_t on the stack */
#include <xxhash.h>

static guint32
record_checksum (const guint8 *header8, const void *payload, guint32 len)
{
  XXH3_state_t state;

  /* A state on the stack must be initialised before reset (xxhash.h,
   * XXH3_INITSTATE): reset reads a field of it.  Found by valgrind. */
  XXH3_INITSTATE (&state);
  /* Streaming over header then payload, so the payload is never copied. */
  XXH3_64bits_reset_withSeed (&state, TR_RECORD_SEED);
  XXH3_64bits_update (&state, header8, 8);
  if (len > 0)
    XXH3_64bits_update (&state, payload, len);
  return (guint32) XXH3_64bits_digest (&state);
}

void
tr_record_encode_header (guint8 header[TR_RECORD_HEADER_SIZE], guint8 type, const void *payload,
                         guint32 len)
{
  g_return_if_fail (type != 0);
  g_return_if_fail (payload != NULL || len == 0);

  tr_put_le32 (header, len);
  header[4] = type;
  header[5] = TR_RECORD_VERSION;
  header[6] = 0;
  header[7] = 0;
  tr_put_le32 (header + 8, record_checksum (header, payload, len));
}

GBytes *
tr_record_encode (guint8 type, const void *payload, guint32 len)
{
  guint8 *buf = g_malloc (TR_RECORD_SIZE (len));

  if (len > 0)
    memcpy (buf + TR_RECORD_HEADER_SIZE, payload, len);
  tr_record_encode_header (buf, type, buf + TR_RECORD_HEADER_SIZE, len);
  return g_bytes_new_take (buf, TR_RECORD_SIZE (len));
}

gboolean
tr_record_peek_len (const guint8 header[TR_RECORD_HEADER_SIZE], guint32 max_len, guint32 *len_out)
{
  guint32 len = tr_get_le32 (header);

  if (header[4] == 0 || header[5] != TR_RECORD_VERSION || header[6] != 0 || header[7] != 0)
    return FALSE;
  if (len > max_len)
    return FALSE;
  *len_out = len;
  return TRUE;
}

TrRecordStatus
tr_record_decode (const guint8 *buf, gsize avail, guint32 max_len, TrRecordView *out)
{
  guint32 len;

  if (avail < TR_RECORD_HEADER_SIZE) {
    /* A partial header is "need more" only while what is there is plausible. */
    for (gsize i = 0; i < avail; i++)
      if ((i == 4 && buf[i] == 0) || (i == 5 && buf[i] != TR_RECORD_VERSION)
          || (i >= 6 && i < 8 && buf[i] != 0))
        return TR_RECORD_CORRUPT;
    return TR_RECORD_NEED_MORE;
  }
  if (!tr_record_peek_len (buf, max_len, &len))
    return TR_RECORD_CORRUPT;
  if (avail < TR_RECORD_SIZE (len))
    return TR_RECORD_NEED_MORE;
  if (tr_get_le32 (buf + 8) != record_checksum (buf, buf + TR_RECORD_HEADER_SIZE, len))
    return TR_RECORD_CORRUPT;
  out->type = buf[4];
  out->len = len;
  out->payload = buf + TR_RECORD_HEADER_SIZE;
  out->total = TR_RECORD_SIZE (len);
  return TR_RECORD_OK;
}
