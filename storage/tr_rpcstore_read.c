/* tr_rpcstore_read.c - reads of the RPC store: list lookups, record
 * locations, messages (cache first, then disk) and raw records.
 *
 * Threads: every function here is thread-safe.  A read takes ->head_lock
 * (a leaf) to bound the id, the reader side of ->files_lock (a reopen
 * cannot swap the files meanwhile) and ->data_lock only around the read of
 * the data file itself.  No read takes ->commit_lock, and ->data_lock is
 * never held across an fdatasync (tr_rpcstore__sync_data_file()), so a read
 * of committed data never waits for a commit's sync.
 */
#include "tr_rpcrecord.h"
#include "tr_rpcstore.h"
#include "tr_rpcstore_private.h"
#include "tr_storage_error.h"

#include <xxhash.h>

gboolean
tr_rpcstore__read_entry (TrRpcStore *store, guint32 file_id, guint64 entry_no, guint8 entry[TR_RPCRECORD_ENTRY_SIZE],
                         GError **error)
{
  guint64 pos = entry_no * TR_RPCRECORD_ENTRY_SIZE;
  gboolean ok;

  /* Caller holds ->files_lock (reader side) or ->commit_lock. */
  if (store->dwb == NULL) {
    g_set_error (error, TR_STORAGE_ERROR, TR_STORAGE_ERROR_CLOSED, "the store failed and is being reopened");
    ok = FALSE;
  } else {
    ok = tr_dwbuffer_read (store->dwb, file_id, pos / TR_RPCSTORE_BLOCK_SIZE,
                           (guint32) (pos % TR_RPCSTORE_BLOCK_SIZE), entry, TR_RPCRECORD_ENTRY_SIZE, error);
  }
  return ok;
}

gboolean
tr_rpcstore_service_lookup (TrRpcStore *store, guint32 service_id, guint64 seqid, guint64 *rpc_id_out,
                            GError **error)
{
  guint8 entry[TR_RPCRECORD_ENTRY_SIZE];
  guint64 head, first;
  gboolean ok;

  g_return_val_if_fail (service_id < tr_rpcstore__n_ids (store), FALSE);
  g_mutex_lock (&store->head_lock);
  head = store->pub_list_heads[service_id];
  first = store->list_first[service_id];
  g_mutex_unlock (&store->head_lock);
  if (seqid == 0 || seqid > head || seqid < first) {
    g_set_error (error, TR_STORAGE_ERROR, TR_STORAGE_ERROR_NOT_FOUND,
                 "seqid %" G_GUINT64_FORMAT " of service %s is not stored (range %" G_GUINT64_FORMAT
                 "..%" G_GUINT64_FORMAT ")",
                 seqid, (const char *) g_ptr_array_index (store->service_names, service_id), first, head);
    return FALSE;
  }
  g_rw_lock_reader_lock (&store->files_lock);
  ok = tr_rpcstore__read_entry (store, TR_RPCSTORE_LIST_FILE_ID (service_id), seqid - 1, entry, error);
  g_rw_lock_reader_unlock (&store->files_lock);
  if (!ok)
    return FALSE;
  if (!tr_rpcrecord_list_decode (entry, rpc_id_out, NULL)) {
    g_set_error (error, TR_STORAGE_ERROR, TR_STORAGE_ERROR_CORRUPT,
                 "list entry %" G_GUINT64_FORMAT " of service %s fails its checksum", seqid,
                 (const char *) g_ptr_array_index (store->service_names, service_id));
    return FALSE;
  }
  return TRUE;
}

gboolean
tr_rpcstore_locate (TrRpcStore *store, guint64 rpc_id, guint64 *offset_out, guint32 *len_out, GError **error)
{
  TrRpcIndexEntry index;
  guint64 head, first;
  gboolean ok;

  g_return_val_if_fail (store != NULL && offset_out != NULL && len_out != NULL, FALSE);
  g_mutex_lock (&store->head_lock);
  head = store->head_rpc_id;
  first = store->first_rpc_id;
  g_mutex_unlock (&store->head_lock);
  if (rpc_id == 0 || rpc_id < first || rpc_id > head) {
    g_set_error (error, TR_STORAGE_ERROR, TR_STORAGE_ERROR_NOT_FOUND,
                 "rpc %" G_GUINT64_FORMAT " is not stored (range %" G_GUINT64_FORMAT "..%" G_GUINT64_FORMAT ")",
                 rpc_id, first, head);
    return FALSE;
  }
  g_rw_lock_reader_lock (&store->files_lock);
  ok = tr_rpcstore__read_index (store, rpc_id, &index, error);
  g_rw_lock_reader_unlock (&store->files_lock);
  if (!ok)
    return FALSE;
  *offset_out = index.offset;
  *len_out = index.length;
  return TRUE;
}

gboolean
tr_rpcstore__read_index (TrRpcStore *store, guint64 rpc_id, TrRpcIndexEntry *out, GError **error)
{
  guint8 entry[TR_RPCRECORD_ENTRY_SIZE];

  if (!tr_rpcstore__read_entry (store, TR_RPCSTORE_INDEX_FILE_ID, rpc_id - 1, entry, error))
    return FALSE;
  if (!tr_rpcrecord_index_decode (entry, store->options.group_file_size, out)) {
    g_set_error (error, TR_STORAGE_ERROR, TR_STORAGE_ERROR_CORRUPT,
                 "index entry of rpc %" G_GUINT64_FORMAT " is invalid (record length %u)", rpc_id, out->length);
    return FALSE;
  }
  return TRUE;
}

/* Reads and verifies the data record of @rpc_id from disk: the whole
 * record, with @view pointing into it.  Caller holds ->files_lock (reader
 * side) and ->data is not NULL. */
static GBytes *
read_record_locked (TrRpcStore *store, guint64 rpc_id, TrRpcRecordView *view, GError **error)
{
  TrRpcIndexEntry index;
  g_autofree guint8 *buf = NULL;
  const char *why = NULL;
  gboolean ok;
  gsize got = 0;

  if (!tr_rpcstore__read_index (store, rpc_id, &index, error))
    return NULL;
  buf = g_malloc (index.length);
  /* ->data_lock only for the read itself: no sync ever holds it across
   * an fsync (tr_rpcstore__sync_data_file()). */
  g_mutex_lock (&store->data_lock);
  ok = tr_groupfile_read (store->data, index.offset, buf, index.length, &got, error);
  g_mutex_unlock (&store->data_lock);
  if (!ok)
    return NULL;
  if (got != index.length || !tr_rpcrecord_decode (buf, got, (guint32) index.length, view, &why)
      || view->rpc_id != rpc_id) {
    g_autofree char *path = tr_groupfile_part_path (store->data, index.offset);
    g_set_error (error, TR_STORAGE_ERROR, TR_STORAGE_ERROR_CORRUPT,
                 "data record of rpc %" G_GUINT64_FORMAT " in %s at offset %" G_GUINT64_FORMAT " is corrupt (%s)",
                 rpc_id, path, index.offset,
                 got != index.length ? "record cut short" : why != NULL ? why : "another rpc id");
    return NULL;
  }
  /* @view points into buf, which the GBytes takes over without moving. */
  return g_bytes_new_take (g_steal_pointer (&buf), index.length);
}

/* read_record_locked() under ->files_lock, or CLOSED while the store
 * reopens after a failure. */
static GBytes *
read_record (TrRpcStore *store, guint64 rpc_id, TrRpcRecordView *view, GError **error)
{
  GBytes *record = NULL;

  g_rw_lock_reader_lock (&store->files_lock);
  if (store->data != NULL)
    record = read_record_locked (store, rpc_id, view, error);
  else
    g_set_error (error, TR_STORAGE_ERROR, TR_STORAGE_ERROR_CLOSED, "the store failed and is being reopened");
  g_rw_lock_reader_unlock (&store->files_lock);
  return record;
}

/* NOT_FOUND unless first <= @rpc_id <= head. */
static gboolean
check_stored (TrRpcStore *store, guint64 rpc_id, GError **error)
{
  guint64 head, first;

  g_mutex_lock (&store->head_lock);
  head = store->head_rpc_id;
  first = store->first_rpc_id;
  g_mutex_unlock (&store->head_lock);
  if (rpc_id == 0 || rpc_id > head || rpc_id < first) {
    g_set_error (error, TR_STORAGE_ERROR, TR_STORAGE_ERROR_NOT_FOUND,
                 "rpc %" G_GUINT64_FORMAT " is not stored (range %" G_GUINT64_FORMAT "..%" G_GUINT64_FORMAT ")",
                 rpc_id, first, head);
    return FALSE;
  }
  return TRUE;
}

GBytes *
tr_rpcstore_get (TrRpcStore *store, guint64 rpc_id, gint64 *timestamp_us_out, GError **error)
{
  g_autoptr (GBytes) record = NULL;
  TrRpcRecordView view;
  GBytes *message;

  g_return_val_if_fail (store != NULL, NULL);
  message = tr_rpcstore__cache_lookup (store, rpc_id, timestamp_us_out);
  if (message != NULL)
    return message;
  if (!check_stored (store, rpc_id, error))
    return NULL;
  record = read_record (store, rpc_id, &view, error);
  if (record == NULL)
    return NULL;
  if (timestamp_us_out != NULL)
    *timestamp_us_out = view.commit_time_us;
  return g_bytes_new_from_bytes (record, view.message_offset, view.message_len);
}

gboolean
tr_rpcstore_digest (TrRpcStore *store, guint64 from, guint64 to, guint64 *count_out, guint64 *digest_out,
                    GError **error)
{
  XXH3_state_t *state;
  gboolean ok = TRUE;

  g_return_val_if_fail (store != NULL, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);
  if (from > to) {
    g_set_error (error, TR_STORAGE_ERROR, TR_STORAGE_ERROR_NOT_FOUND,
                 "empty range %" G_GUINT64_FORMAT "..%" G_GUINT64_FORMAT ": FROM must not be above TO", from, to);
    return FALSE;
  }
  /* Both ends checked first: a range that starts stored but ends beyond the
   * head is refused before anything is read. */
  if (!check_stored (store, from, error) || !check_stored (store, to, error))
    return FALSE;
  state = XXH3_createState ();
  g_assert (state != NULL);
  XXH3_64bits_reset_withSeed (state, TR_RECORD_SEED);
  for (guint64 id = from; ok && id <= to; id++) {
    g_autoptr (GBytes) record = NULL;
    TrRpcRecordView view;

    record = read_record (store, id, &view, error);
    if (record == NULL)
      ok = FALSE;
    else
      XXH3_64bits_update (state, g_bytes_get_data (record, NULL), g_bytes_get_size (record));
  }
  if (ok) {
    *count_out = to - from + 1;
    *digest_out = XXH3_64bits_digest (state);
  }
  XXH3_freeState (state);
  return ok;
}

void
tr_rpcstore_record_free (TrRpcStoreRecord *record)
{
  if (record == NULL)
    return;
  g_bytes_unref (record->message);
  g_free (record->service_ids);
  g_free (record);
}

TrRpcStoreRecord *
tr_rpcstore_read_record (TrRpcStore *store, guint64 rpc_id, GError **error)
{
  g_autoptr (GBytes) bytes = NULL;
  TrRpcRecordView view;
  TrRpcStoreRecord *record;

  g_return_val_if_fail (store != NULL, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);
  if (!check_stored (store, rpc_id, error))
    return NULL;
  bytes = read_record (store, rpc_id, &view, error);
  if (bytes == NULL)
    return NULL;
  record = g_new0 (TrRpcStoreRecord, 1);
  record->rpc_id = view.rpc_id;
  record->commit_time_us = view.commit_time_us;
  record->message = g_bytes_new_from_bytes (bytes, view.message_offset, view.message_len);
  record->n_services = view.n_services;
  record->service_ids = g_new (guint32, MAX (view.n_services, 1));
  for (guint i = 0; i < view.n_services; i++)
    record->service_ids[i] = tr_rpcrecord_service_id (&view, i);
  return record;
}
