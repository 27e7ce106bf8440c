/* tr_rpcstore_recover.c - opening and reopening the RPC store: files,
 * DoubleWriteBuffer journal replay, tail scan after the last checkpoint.
 * The service map is read by tr_rpcstore_services.c, the checkpoint by
 * tr_rpcstore_checkpoint.c.
 *
 * Recovery never scans the whole store: it starts at the data offset of the
 * last checkpoint, so restart time is bounded by the checkpoint interval,
 * not by the store size.  Every data record found after the checkpoint
 * re-derives its index entry and list entries (tr_rpcstore__derive_entries,
 * the same function the commit path uses).  The first invalid record ends
 * the scan: in the last part it is a torn tail (truncated, logged with the
 * bytes dropped); anywhere else it is corruption and opening fails naming
 * the file and offset.  Formats: tr_rpcstore_private.h.
 */
#include "tr_record.h"
#include "tr_rpcrecord.h"
#include "tr_rpcstore_private.h"
#include "tr_storage_error.h"

#include <string.h>

#define TR_WHY_OUT_OF_SEQUENCE "rpc id out of sequence"

TrGroupFile *
tr_rpcstore__open_file (TrRpcStore *store, const char *name, GError **error)
{
  return tr_groupfile_open (store->io, store->dir, name, store->options.group_file_size, error);
}

/* Room for every id a reload may add (tr_rpcstore_add_service): these
 * arrays are read by other threads and must never move. */
static void
alloc_state (TrRpcStore *store)
{
  store->lists = g_ptr_array_new_full (TR_RPCSTORE_MAX_SERVICES, (GDestroyNotify) tr_groupfile_free);
  store->dead = g_ptr_array_new_full (TR_RPCSTORE_MAX_SERVICES, (GDestroyNotify) tr_groupfile_free);
  g_ptr_array_set_size (store->lists, TR_RPCSTORE_MAX_SERVICES);
  g_ptr_array_set_size (store->dead, TR_RPCSTORE_MAX_SERVICES);
  store->list_heads = g_new0 (guint64, TR_RPCSTORE_MAX_SERVICES);
  store->pub_list_heads = g_new0 (guint64, TR_RPCSTORE_MAX_SERVICES);
  store->low_water = g_new0 (guint64, TR_RPCSTORE_MAX_SERVICES);
  store->list_first = g_new0 (guint64, TR_RPCSTORE_MAX_SERVICES);
  store->ckpt_list_heads = g_new0 (guint64, TR_RPCSTORE_MAX_SERVICES);
}

/* Opens data, index and the list of every service in services.map, and
 * replays the DoubleWriteBuffer journal into them.  Lists of services that
 * are no longer configured are opened too: the journal and the tail scan
 * must bring them up to date like the others, or a service removed by a
 * reload just before a crash would come back, when it is configured again,
 * with the entries of its last checkpoint interval missing (and its next
 * seqids would repeat ones its endpoints already acknowledged).  A list of
 * an unconfigured service that cannot be opened does not stop the node (it
 * routes nothing to that service): it stays closed, with a warning, and
 * adding the service back reports the error. */
static gboolean
open_files (TrRpcStore *store, GError **error)
{
  gsize cache_blocks = MAX (store->options.rpc_cache_size / 16 / TR_RPCSTORE_BLOCK_SIZE, 64);

  store->block_cache_blocks = cache_blocks;

  store->data = tr_rpcstore__open_file (store, "data", error);
  if (store->data == NULL)
    return FALSE;
  store->index = tr_rpcstore__open_file (store, "index", error);
  if (store->index == NULL)
    return FALSE;
  store->dwb = tr_dwbuffer_new (store->io, store->dir, TR_RPCSTORE_BLOCK_SIZE, cache_blocks, 4096);
  tr_dwbuffer_add_file (store->dwb, TR_RPCSTORE_INDEX_FILE_ID, store->index);
  for (guint id = 0; id < store->n_ids; id++) {
    const char *service = g_ptr_array_index (store->service_names, id);
    g_autofree char *name = g_strdup_printf ("list-%u", id);
    g_autoptr (GError) local = NULL;
    TrGroupFile *list = tr_rpcstore__open_file (store, name, &local);
    if (list == NULL && g_strv_contains ((const char *const *) store->configured, service)) {
      g_propagate_error (error, g_steal_pointer (&local));
      return FALSE;
    }
    if (list == NULL) {
      g_warning ("service '%s' is not configured and its list cannot be opened, so it stays closed "
                 "(adding the service back will fail the same way): %s",
                 service, local->message);
      continue;
    }
    g_ptr_array_index (store->lists, id) = list;
    tr_dwbuffer_add_file (store->dwb, TR_RPCSTORE_LIST_FILE_ID (id), list);
  }
  return tr_dwbuffer_recover (store->dwb, error);
}

static void
close_files (TrRpcStore *store)
{
  g_clear_pointer (&store->dwb, tr_dwbuffer_free);
  g_clear_pointer (&store->index, tr_groupfile_free);
  for (guint id = 0; id < store->n_ids; id++)
    g_clear_pointer (&g_ptr_array_index (store->lists, id), tr_groupfile_free);
  g_clear_pointer (&store->checkpoint, tr_rotatefile_free);
  g_mutex_lock (&store->data_lock);
  g_clear_pointer (&store->data, tr_groupfile_free);
  g_mutex_unlock (&store->data_lock);
}

gboolean
tr_rpcstore__derive_entries (TrRpcStore *store, guint64 rpc_id, guint64 offset, guint32 record_len,
                             guint32 checksum, const guint32 *service_ids, guint n_services,
                             GError **error)
{
  guint8 entry[TR_RPCRECORD_ENTRY_SIZE];
  guint64 pos = (rpc_id - 1) * TR_RPCRECORD_ENTRY_SIZE;
  TrRpcIndexEntry index = { offset, record_len, checksum };

  tr_rpcrecord_index_encode (entry, &index);
  if (!tr_dwbuffer_write (store->dwb, TR_RPCSTORE_INDEX_FILE_ID, pos / TR_RPCSTORE_BLOCK_SIZE,
                          (guint32) (pos % TR_RPCSTORE_BLOCK_SIZE), entry, sizeof entry, error))
    return FALSE;
  for (guint i = 0; i < n_services; i++) {
    guint32 id = service_ids[i];
    if (id >= store->n_ids || g_ptr_array_index (store->lists, id) == NULL)
      continue; /* a service removed from the config: its list is closed */
    pos = store->list_heads[id] * TR_RPCRECORD_ENTRY_SIZE;
    tr_rpcrecord_list_encode (entry, rpc_id, checksum);
    if (!tr_dwbuffer_write (store->dwb, TR_RPCSTORE_LIST_FILE_ID (id), pos / TR_RPCSTORE_BLOCK_SIZE,
                            (guint32) (pos % TR_RPCSTORE_BLOCK_SIZE), entry, sizeof entry, error))
      return FALSE;
    store->list_heads[id]++;
  }
  return TRUE;
}


/* Sets *@zeros_out when every byte from @offset to the end of its part is
 * zero: what tr_groupfile_zero_ahead() wrote and no record overwrote. */
static gboolean
zeros_to_part_end (TrRpcStore *store, guint64 offset, gboolean *zeros_out, GError **error)
{
  guint64 part_end = (offset / store->options.group_file_size + 1) * store->options.group_file_size;
  guint8 buf[64 * 1024];
  gsize got = 0;

  *zeros_out = FALSE;
  while (offset < part_end) {
    if (!tr_groupfile_read (store->data, offset, buf, (gsize) MIN ((guint64) sizeof buf, part_end - offset), &got,
                            error))
      return FALSE;
    if (got == 0)
      break;
    for (gsize i = 0; i < got; i++)
      if (buf[i] != 0)
        return TRUE;
    offset += got;
  }
  *zeros_out = TRUE;
  return TRUE;
}

/* A torn or corrupt record at @offset ends the scan.  In the last part it
 * is the tail a crash left behind: cut it off and say how much was lost
 * (@why NULL: only zeros written ahead follow, nothing is lost).
 * Anywhere else the store is damaged: refuse to open, naming the place. */
static gboolean
handle_bad_record (TrRpcStore *store, guint64 offset, const char *why, GError **error)
{
  guint64 ps = store->options.group_file_size;
  guint64 size = tr_groupfile_size (store->data);
  g_autofree char *path = tr_groupfile_part_path (store->data, offset);

  if (why == NULL && store->options.sync_mode == TR_SYNC_ALWAYS) {
    g_debug ("recovery: cutting %" G_GUINT64_FORMAT " bytes of zeros written ahead after offset %" G_GUINT64_FORMAT
             " of %s", size - offset, offset % ps, path);
  } else if (why == NULL) {
    /* Not written ahead in this mode (unless by an earlier run in mode
     * always): zeros may also be unsynced records a power loss lost. */
    g_log_structured (G_LOG_DOMAIN, G_LOG_LEVEL_MESSAGE, "TR_FILE", path, "MESSAGE",
                      "recovery: cutting %" G_GUINT64_FORMAT " bytes of zeros after offset %" G_GUINT64_FORMAT
                      " of %s (written ahead in sync_mode always, or unsynced writes a power loss left as zeros)",
                      size - offset, offset % ps, path);
  } else if (offset / ps != (size - 1) / ps) {
    g_set_error (error, TR_STORAGE_ERROR, TR_STORAGE_ERROR_CORRUPT,
                 "%s at offset %" G_GUINT64_FORMAT " (part offset %" G_GUINT64_FORMAT
                 "): %s, and it is not the last part; refusing to start (restore the file or move the data dir away)",
                 path, offset, offset % ps, why);
    return FALSE;
  } else {
    g_log_structured (G_LOG_DOMAIN, G_LOG_LEVEL_MESSAGE, "TR_FILE", path, "MESSAGE",
                      "recovery: truncating torn tail of %s at offset %" G_GUINT64_FORMAT
                      ": %s; %" G_GUINT64_FORMAT " bytes of unacknowledged writes dropped",
                      path, offset % ps, why, size - offset);
  }
  return tr_groupfile_truncate (store->data, offset, error) && tr_groupfile_sync (store->data, error);
}

/* Reads the record at @offset into @rec and decodes it into @view; *@why
 * is set when it is not a valid record or not the next rpc.  FALSE only
 * for a read error. */
static gboolean
read_tail_record (TrRpcStore *store, guint64 offset, GByteArray *rec, TrRpcRecordView *view, const char **why,
                  GError **error)
{
  guint8 header[TR_RECORD_HEADER_SIZE];
  /* Bound by the part size, not by today's max_frame_size: a record written
   * under a larger limit must not be mistaken for a torn tail. */
  guint32 max = (guint32) MIN (store->options.group_file_size, G_MAXUINT32);
  gsize got = 0;
  guint32 len;

  *why = NULL;
  if (!tr_groupfile_read (store->data, offset, header, sizeof header, &got, error))
    return FALSE;
  if (got < sizeof header || !tr_record_peek_len (header, max, &len)) {
    *why = got < sizeof header ? "record header cut short" : "invalid record header";
    return TRUE;
  }
  g_byte_array_set_size (rec, (guint) TR_RECORD_SIZE (len));
  if (!tr_groupfile_read (store->data, offset, rec->data, rec->len, &got, error))
    return FALSE;
  if (tr_rpcrecord_decode (rec->data, got, max, view, why) && view->rpc_id != store->next_rpc_id)
    *why = TR_WHY_OUT_OF_SEQUENCE;
  return TRUE;
}

static gboolean
scan_tail (TrRpcStore *store, guint *found_out, GError **error)
{
  guint64 ps = store->options.group_file_size;
  guint64 offset = store->data_end;
  g_autoptr (GByteArray) rec = g_byte_array_new ();
  g_autofree guint32 *ids = g_new (guint32, G_MAXUINT16);
  guint64 zeros_from = G_MAXUINT64; /* where skipped zeros began in the part before */

  *found_out = 0;
  if (tr_groupfile_size (store->data) < offset) {
    g_set_error (error, TR_STORAGE_ERROR, TR_STORAGE_ERROR_CORRUPT,
                 "data ends at %" G_GUINT64_FORMAT " but the checkpoint says %" G_GUINT64_FORMAT
                 " (data lost after a checkpoint: was sync_mode none?)",
                 tr_groupfile_size (store->data), offset);
    return FALSE;
  }
  while (offset < tr_groupfile_size (store->data)) {
    const char *why = NULL;
    TrRpcRecordView view;
    guint8 probe;
    gsize got = 0;
    if (!tr_groupfile_read (store->data, offset, &probe, 1, &got, error))
      return FALSE;
    if (got == 0) { /* the unused end of a sealed part: go on at the next part */
      offset = (offset / ps + 1) * ps;
      continue;
    }
    if (!read_tail_record (store, offset, rec, &view, &why, error))
      return FALSE;
    if (zeros_from != G_MAXUINT64) {
      /* A part rolls only when the next record does not fit: zeros that
       * leave room for the record after them, or a next part that does
       * not go on with the next rpc id, are records lost in that part. */
      guint64 room = ps - zeros_from % ps;
      if ((why == NULL && rec->len <= room) || (why != NULL && strcmp (why, TR_WHY_OUT_OF_SEQUENCE) == 0)) {
        g_autofree char *path = tr_groupfile_part_path (store->data, zeros_from);
        g_set_error (error, TR_STORAGE_ERROR, TR_STORAGE_ERROR_CORRUPT,
                     "%s at offset %" G_GUINT64_FORMAT " (part offset %" G_GUINT64_FORMAT
                     "): zeros where records should be (the next part does not go on with rpc %" G_GUINT64_FORMAT
                     "); refusing to start (restore the file or move the data dir away)",
                     path, zeros_from, zeros_from % ps, store->next_rpc_id);
        return FALSE;
      }
      zeros_from = G_MAXUINT64;
    }
    if (why != NULL) {
      gboolean zeros;
      if (!zeros_to_part_end (store, offset, &zeros, error))
        return FALSE;
      if (zeros && offset / ps != (tr_groupfile_size (store->data) - 1) / ps) {
        zeros_from = offset; /* zeros ahead in a sealed part: the data goes on in the next */
        offset = (offset / ps + 1) * ps;
        continue;
      }
      return handle_bad_record (store, offset, zeros ? NULL : why, error);
    }
    for (guint i = 0; i < view.n_services; i++)
      ids[i] = tr_rpcrecord_service_id (&view, i);
    if (!tr_rpcstore__derive_entries (store, store->next_rpc_id, offset, rec->len, view.checksum, ids,
                                      view.n_services, error))
      return FALSE;
    store->next_rpc_id++;
    offset += rec->len;
    store->data_end = offset;
    (*found_out)++;
  }
  return TRUE;
}

/* Checkpoint state, then everything after it re-derived from the data. */
static gboolean
recover_files (TrRpcStore *store, GError **error)
{
  guint found = 0;
  guint64 ckpt_end;

  if (!tr_rpcstore__load_checkpoint (store, error))
    return FALSE;
  ckpt_end = store->data_end;
  if (!scan_tail (store, &found, error))
    return FALSE;
  if (found > 0 || tr_groupfile_size (store->data) != store->data_end) {
    g_message ("recovery: re-derived %u rpcs written after the last checkpoint (data offset %" G_GUINT64_FORMAT
               "..%" G_GUINT64_FORMAT ")",
               found, ckpt_end, store->data_end);
    if (!tr_rpcstore__checkpoint (store, error))
      return FALSE;
  }
  g_mutex_lock (&store->head_lock);
  store->head_rpc_id = store->next_rpc_id - 1;
  store->first_rpc_id = tr_groupfile_first_offset (store->index) / TR_RPCRECORD_ENTRY_SIZE + 1;
  store->retained_from = store->first_rpc_id;
  memcpy (store->pub_list_heads, store->list_heads, store->n_ids * sizeof (guint64));
  for (guint id = 0; id < store->n_ids; id++) {
    TrGroupFile *list = g_ptr_array_index (store->lists, id);
    store->list_first[id] = list ? tr_groupfile_first_offset (list) / TR_RPCRECORD_ENTRY_SIZE + 1 : 1;
  }
  g_mutex_unlock (&store->head_lock);
  return TRUE;
}

gboolean
tr_rpcstore__recover (TrRpcStore *store, const char *const *services, GError **error)
{
  store->configured = g_strdupv ((char **) services);
  if (!tr_rpcstore__load_service_map (store, services, error))
    return FALSE;
  alloc_state (store);
  if (!open_files (store, error) || !recover_files (store, error))
    return FALSE;
  /* A service that is not configured is retired from the start (as
   * tr_rpcstore_retire_service() does for one a reload removes): it holds
   * nothing back. */
  for (guint id = 0; id < store->n_ids; id++)
    if (!g_strv_contains ((const char *const *) store->configured, g_ptr_array_index (store->service_names, id)))
      store->low_water[id] = store->list_heads[id] + 1;
  return TRUE;
}

gboolean
tr_rpcstore__reopen (TrRpcStore *store, guint64 committed_end, GError **error)
{
  TrGroupFile *old_data = store->data, *old_index = store->index;
  TrDwBuffer *old_dwb = store->dwb;
  TrRotateFile *old_checkpoint = store->checkpoint;
  g_autofree TrGroupFile **old_lists = g_new0 (TrGroupFile *, store->n_ids + 1);
  /* Recovery rewrites the writer's position; a failed attempt must not leave
   * it behind (a smaller data_end would later cut acknowledged records). */
  g_autofree guint64 *old_heads = g_new0 (guint64, store->n_ids + 1);
  g_autofree guint64 *old_ckpt_heads = g_new0 (guint64, store->n_ids + 1);
  guint64 old_next = store->next_rpc_id, old_end = store->data_end, old_ckpt = store->ckpt_rpc_id;
  guint64 old_ckpt_end = store->ckpt_data_end;
  gboolean ok;

  memcpy (old_heads, store->list_heads, store->n_ids * sizeof (guint64));
  memcpy (old_ckpt_heads, store->ckpt_list_heads, store->n_ids * sizeof (guint64));
  /* Open the new objects beside the old ones and swap only on success:
   * while the disk is still failing, readers (push) keep the old ones and go
   * on delivering what is stored.  Readers use the index and lists through
   * ->dwb, so the swap happens under the writer side of ->files_lock. */
  for (guint id = 0; id < store->n_ids; id++) {
    old_lists[id] = g_ptr_array_index (store->lists, id);
    g_ptr_array_index (store->lists, id) = NULL;
  }
  g_rw_lock_writer_lock (&store->files_lock);
  store->data = NULL;
  store->index = NULL;
  store->dwb = NULL;
  store->checkpoint = NULL;
  ok = open_files (store, error);
  if (ok && tr_groupfile_size (store->data) > committed_end) {
    /* Records of a batch that failed were never acknowledged: cut them. */
    ok = tr_groupfile_truncate (store->data, committed_end, error) && tr_groupfile_sync (store->data, error);
  }
  ok = ok && recover_files (store, error);
  if (!ok) {
    close_files (store);
    store->data = old_data;
    store->index = old_index;
    store->dwb = old_dwb;
    store->checkpoint = old_checkpoint;
    for (guint id = 0; id < store->n_ids; id++)
      g_ptr_array_index (store->lists, id) = old_lists[id];
    memcpy (store->list_heads, old_heads, store->n_ids * sizeof (guint64));
    store->next_rpc_id = old_next;
    store->data_end = old_end;
    tr_rpcstore__checkpoint_done (store, old_ckpt, old_ckpt_end, old_ckpt_heads, store->n_ids);
  } else {
    store->reopen_gen++;
    store->zero_requested = FALSE; /* the cut removed them; the next commit asks again */
  }
  g_rw_lock_writer_unlock (&store->files_lock);
  if (ok) {
    /* The old objects are unused now; the DoubleWriteBuffer goes first (it
     * refers to the GroupFiles).  Freeing never syncs. */
    g_clear_pointer (&old_dwb, tr_dwbuffer_free);
    g_clear_pointer (&old_index, tr_groupfile_free);
    for (guint id = 0; id < store->n_ids; id++)
      g_clear_pointer (&old_lists[id], tr_groupfile_free);
    g_clear_pointer (&old_checkpoint, tr_rotatefile_free);
    g_clear_pointer (&old_data, tr_groupfile_free);
  }
  return ok;
}
