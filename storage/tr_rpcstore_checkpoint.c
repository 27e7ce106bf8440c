/* tr_rpcstore_checkpoint.c - the RPC store's checkpoint: what it records
 * (tr_rpcrecord.h: the last rpc id whose index and list entries are
 * durable, the data offset after it, the list heads), the order of the
 * syncs that make it true, and loading it at open.
 *
 * Threads: capture and done run with ->commit_lock held; write runs
 * without it (the writer thread, beside the commits) holding the reader
 * side of ->files_lock; load runs at open and reopen.
 */
#include "tr_rpcrecord.h"
#include "tr_rpcstore_private.h"
#include "tr_storage_error.h"

#include <string.h>

#define TR_CHECKPOINT_FILE_SIZE (64 * 1024)

guint64
tr_rpcstore__checkpoint_capture (TrRpcStore *store, GByteArray *state)
{
  tr_rpcrecord_checkpoint_encode (state, store->next_rpc_id - 1, store->data_end, store->list_heads, store->n_ids);
  return store->next_rpc_id - 1;
}

gboolean
tr_rpcstore__checkpoint_write (TrRpcStore *store, const GByteArray *state, GError **error)
{
  gboolean ok;

  /* Order matters.  The data records come first (index entries point into
   * them), then the index and list blocks, and only then the checkpoint that
   * says they are durable, or recovery would skip re-deriving lost entries.
   * Each sync covers at least what was written before it started, so
   * everything @state counts is durable before @state is. */
  ok = tr_rpcstore__sync_data_file (store, error);
  return ok && tr_dwbuffer_sync (store->dwb, error) && tr_rotatefile_write (store->checkpoint, state->data, state->len, error)
         && tr_rotatefile_sync (store->checkpoint, error);
}

void
tr_rpcstore__checkpoint_done (TrRpcStore *store, guint64 rpc_id, guint64 data_end, const guint64 *list_heads,
                              guint n_heads)
{
  store->ckpt_rpc_id = rpc_id;
  store->ckpt_data_end = data_end;
  for (guint id = 0; id < store->n_ids; id++)
    store->ckpt_list_heads[id] = id < n_heads ? list_heads[id] : 0;
}

gboolean
tr_rpcstore__checkpoint (TrRpcStore *store, GError **error)
{
  g_autoptr (GByteArray) state = g_byte_array_new ();
  guint64 rpc_id = tr_rpcstore__checkpoint_capture (store, state);

  if (!tr_rpcstore__checkpoint_write (store, state, error))
    return FALSE;
  tr_rpcstore__checkpoint_done (store, rpc_id, store->data_end, store->list_heads, store->n_ids);
  return TRUE;
}

gboolean
tr_rpcstore__load_checkpoint (TrRpcStore *store, GError **error)
{
  g_autofree char *path = g_build_filename (store->dir, "checkpoint", NULL);
  g_autoptr (GError) local = NULL;
  g_autoptr (GBytes) state = NULL;
  TrRpcCheckpoint checkpoint;
  const guint8 *p;
  gsize len = 0;

  store->checkpoint = tr_rotatefile_open (store->io, path, TR_CHECKPOINT_FILE_SIZE, error);
  if (store->checkpoint == NULL)
    return FALSE;
  store->next_rpc_id = 1;
  store->data_end = tr_groupfile_first_offset (store->data);
  memset (store->list_heads, 0, store->n_ids * sizeof (guint64)); /* also on a reopen */
  state = tr_rotatefile_load (store->checkpoint, NULL, &local);
  if (state == NULL) {
    if (g_error_matches (local, TR_STORAGE_ERROR, TR_STORAGE_ERROR_NOT_FOUND))
      return TRUE; /* a new store */
    g_propagate_error (error, g_steal_pointer (&local));
    return FALSE;
  }
  p = g_bytes_get_data (state, &len);
  if (!tr_rpcrecord_checkpoint_decode (p, len, &checkpoint, error)) {
    g_prefix_error (error, "%s: ", path);
    return FALSE;
  }
  store->next_rpc_id = checkpoint.rpc_id + 1;
  store->data_end = checkpoint.data_end;
  for (guint i = 0; i < checkpoint.heads->len; i++) {
    const TrRpcCheckpointHead *head = &g_array_index (checkpoint.heads, TrRpcCheckpointHead, i);
    if (head->service_id < store->n_ids)
      store->list_heads[head->service_id] = head->head;
  }
  tr_rpcrecord_checkpoint_clear (&checkpoint);
  tr_rpcstore__checkpoint_done (store, store->next_rpc_id - 1, store->data_end, store->list_heads, store->n_ids);
  return TRUE;
}
