/* tr_rpcrecord.c - the codec of the RPC store's records (formats and rules
 * in tr_rpcrecord.h, mirrored in docs/format/rpcstore.md).
 *
 * A data record is valid when its frame decodes (tr_record.h: version,
 * type, length bound, checksum over header and payload), its type is
 * TR_RPCRECORD_TYPE_RPC and its payload holds the prefix and the n service
 * ids it announces.  Whether its rpc id is the expected one is the
 * caller's check (recovery wants the next id, a read the id it looked up).
 * A list entry is valid when its own checksum matches and its rpc id is not
 * 0; an index entry has no checksum of its own (the record it points to is
 * verified when read).
 */
#include "tr_rpcrecord.h"

#include "tr_endian.h"
#include "tr_record.h"
#include "tr_storage_error.h"

#include <string.h>
#include <xxhash.h>

#define CHECKPOINT_PREFIX 24
#define CHECKPOINT_PAIR 12

gsize
tr_rpcrecord_size (guint n_services, gsize message_len)
{
  return TR_RECORD_SIZE (TR_RPCRECORD_PREFIX + 4 * (gsize) n_services + message_len);
}

guint32
tr_rpcrecord_encode (GByteArray *buf, guint64 rpc_id, gint64 commit_time_us, const guint32 *service_ids,
                     guint n_services, const guint8 *message, gsize message_len)
{
  gsize start = buf->len;
  guint32 payload_len = (guint32) (TR_RPCRECORD_PREFIX + 4 * (gsize) n_services + message_len);
  guint8 *p;

  g_return_val_if_fail (n_services <= G_MAXUINT16, 0);
  g_byte_array_set_size (buf, (guint) (start + TR_RECORD_SIZE (payload_len)));
  p = buf->data + start + TR_RECORD_HEADER_SIZE;
  tr_put_le64 (p, rpc_id);
  tr_put_le64 (p + 8, (guint64) commit_time_us);
  tr_put_le16 (p + 16, (guint16) n_services);
  tr_put_le16 (p + 18, 0);
  for (guint i = 0; i < n_services; i++)
    tr_put_le32 (p + TR_RPCRECORD_PREFIX + 4 * i, service_ids[i]);
  if (message_len > 0)
    memcpy (p + TR_RPCRECORD_PREFIX + 4 * (gsize) n_services, message, message_len);
  tr_record_encode_header (buf->data + start, TR_RPCRECORD_TYPE_RPC, p, payload_len);
  return tr_get_le32 (buf->data + start + 8);
}

gboolean
tr_rpcrecord_decode (const guint8 *buf, gsize avail, guint32 max_len, TrRpcRecordView *out, const char **why)
{
  TrRecordView view;
  gsize ids_end;

  g_return_val_if_fail (buf != NULL && out != NULL && why != NULL, FALSE);
  switch (tr_record_decode (buf, avail, max_len, &view)) {
  case TR_RECORD_OK:
    break;
  case TR_RECORD_NEED_MORE:
    *why = "record cut short";
    return FALSE;
  case TR_RECORD_CORRUPT:
  default:
    *why = "record checksum mismatch";
    return FALSE;
  }
  if (view.type != TR_RPCRECORD_TYPE_RPC || view.len < TR_RPCRECORD_PREFIX) {
    *why = "record of unexpected type or size";
    return FALSE;
  }
  out->n_services = tr_get_le16 (view.payload + 16);
  ids_end = TR_RPCRECORD_PREFIX + 4 * (gsize) out->n_services;
  if (view.len < ids_end) {
    *why = "record of unexpected type or size";
    return FALSE;
  }
  out->rpc_id = tr_get_le64 (view.payload);
  out->commit_time_us = (gint64) tr_get_le64 (view.payload + 8);
  out->service_ids = view.payload + TR_RPCRECORD_PREFIX;
  out->message = view.payload + ids_end;
  out->message_len = view.len - ids_end;
  out->message_offset = TR_RECORD_HEADER_SIZE + ids_end;
  out->checksum = tr_get_le32 (buf + 8);
  out->total = view.total;
  *why = NULL;
  return TRUE;
}

gboolean
tr_rpcrecord_peek_time (const guint8 *buf, guint32 max_len, guint64 *rpc_id_out, gint64 *time_out)
{
  guint32 len;

  g_return_val_if_fail (buf != NULL && rpc_id_out != NULL && time_out != NULL, FALSE);
  if (!tr_record_peek_len (buf, max_len, &len) || buf[4] != TR_RPCRECORD_TYPE_RPC || len < TR_RPCRECORD_PREFIX)
    return FALSE;
  *rpc_id_out = tr_get_le64 (buf + TR_RECORD_HEADER_SIZE);
  *time_out = (gint64) tr_get_le64 (buf + TR_RECORD_HEADER_SIZE + 8);
  return TRUE;
}

guint32
tr_rpcrecord_service_id (const TrRpcRecordView *view, guint i)
{
  g_return_val_if_fail (view != NULL && i < view->n_services, 0);
  return tr_get_le32 (view->service_ids + 4 * (gsize) i);
}

void
tr_rpcrecord_index_encode (guint8 entry[TR_RPCRECORD_ENTRY_SIZE], const TrRpcIndexEntry *index)
{
  tr_put_le64 (entry, index->offset);
  tr_put_le32 (entry + 8, index->length);
  tr_put_le32 (entry + 12, index->checksum);
}

gboolean
tr_rpcrecord_index_decode (const guint8 entry[TR_RPCRECORD_ENTRY_SIZE], guint64 max_record_len,
                           TrRpcIndexEntry *out)
{
  out->offset = tr_get_le64 (entry);
  out->length = tr_get_le32 (entry + 8);
  out->checksum = tr_get_le32 (entry + 12);
  return out->length >= TR_RPCRECORD_MIN_SIZE && out->length <= max_record_len;
}

static guint32
list_checksum (const guint8 entry[TR_RPCRECORD_ENTRY_SIZE])
{
  return (guint32) XXH3_64bits_withSeed (entry, 12, TR_RECORD_SEED);
}

void
tr_rpcrecord_list_encode (guint8 entry[TR_RPCRECORD_ENTRY_SIZE], guint64 rpc_id, guint32 record_checksum)
{
  tr_put_le64 (entry, rpc_id);
  tr_put_le32 (entry + 8, record_checksum);
  tr_put_le32 (entry + 12, list_checksum (entry));
}

gboolean
tr_rpcrecord_list_decode (const guint8 entry[TR_RPCRECORD_ENTRY_SIZE], guint64 *rpc_id_out,
                          guint32 *record_checksum_out)
{
  if (tr_get_le64 (entry) == 0 || tr_get_le32 (entry + 12) != list_checksum (entry))
    return FALSE;
  if (rpc_id_out != NULL)
    *rpc_id_out = tr_get_le64 (entry);
  if (record_checksum_out != NULL)
    *record_checksum_out = tr_get_le32 (entry + 8);
  return TRUE;
}

void
tr_rpcrecord_checkpoint_encode (GByteArray *out, guint64 rpc_id, guint64 data_end, const guint64 *heads,
                                guint n_heads)
{
  guint8 buf[CHECKPOINT_PREFIX];

  tr_put_le32 (buf, TR_RPCRECORD_CHECKPOINT_VERSION);
  tr_put_le64 (buf + 4, rpc_id);
  tr_put_le64 (buf + 12, data_end);
  tr_put_le32 (buf + 20, n_heads);
  g_byte_array_append (out, buf, CHECKPOINT_PREFIX);
  for (guint id = 0; id < n_heads; id++) {
    tr_put_le32 (buf, id);
    tr_put_le64 (buf + 4, heads[id]);
    g_byte_array_append (out, buf, CHECKPOINT_PAIR);
  }
}

gboolean
tr_rpcrecord_checkpoint_decode (const guint8 *state, gsize len, TrRpcCheckpoint *out, GError **error)
{
  guint32 n;

  g_return_val_if_fail (out != NULL, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);
  out->heads = NULL;
  n = len >= CHECKPOINT_PREFIX ? tr_get_le32 (state + 20) : 0;
  if (len < CHECKPOINT_PREFIX || tr_get_le32 (state) != TR_RPCRECORD_CHECKPOINT_VERSION
      || len != CHECKPOINT_PREFIX + CHECKPOINT_PAIR * (gsize) n) {
    g_set_error (error, TR_STORAGE_ERROR, TR_STORAGE_ERROR_CORRUPT, "checkpoint has an unknown version or size");
    return FALSE;
  }
  out->rpc_id = tr_get_le64 (state + 4);
  out->data_end = tr_get_le64 (state + 12);
  /* Every rpc takes at least a minimal record of logical data space, and a
   * list never holds more entries than there are rpcs: anything else is a
   * damaged checkpoint (which would otherwise make recovery create index
   * parts up to an absurd offset). */
  if (out->rpc_id > out->data_end / TR_RPCRECORD_MIN_SIZE) {
    g_set_error (error, TR_STORAGE_ERROR, TR_STORAGE_ERROR_CORRUPT,
                 "checkpoint claims rpc %" G_GUINT64_FORMAT " within %" G_GUINT64_FORMAT " bytes of data", out->rpc_id,
                 out->data_end);
    return FALSE;
  }
  out->heads = g_array_sized_new (FALSE, FALSE, sizeof (TrRpcCheckpointHead), n);
  for (guint i = 0; i < n; i++) {
    TrRpcCheckpointHead head;
    head.service_id = tr_get_le32 (state + CHECKPOINT_PREFIX + CHECKPOINT_PAIR * (gsize) i);
    head.head = tr_get_le64 (state + CHECKPOINT_PREFIX + 4 + CHECKPOINT_PAIR * (gsize) i);
    if (head.head > out->rpc_id) {
      g_set_error (error, TR_STORAGE_ERROR, TR_STORAGE_ERROR_CORRUPT,
                   "checkpoint gives service id %u %" G_GUINT64_FORMAT " entries but only %" G_GUINT64_FORMAT
                   " rpcs exist",
                   head.service_id, head.head, out->rpc_id);
      tr_rpcrecord_checkpoint_clear (out);
      return FALSE;
    }
    g_array_append_val (out->heads, head);
  }
  return TRUE;
}

void
tr_rpcrecord_checkpoint_clear (TrRpcCheckpoint *checkpoint)
{
  g_clear_pointer (&checkpoint->heads, g_array_unref);
}
