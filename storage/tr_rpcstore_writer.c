/* tr_rpcstore_writer.c - the writer thread of the RPC store: the
 * periodic work beside the commits (interval sync, zeros ahead of the
 * data, checkpoint, retention, reopen after a failure) and the exclusive
 * tasks (tr_rpcstore__run_exclusive()).
 *
 * Commits happen on the submitting thread (tr_rpcstore.c); every round
 * of periodic work runs with ->commit_lock held, and lets go of it for the
 * long syncs (checkpoint_beside_commits(), zero_ahead_beside_commits()) so
 * that commits go on meanwhile.
 */
#include "tr_rpcstore_private.h"
#include "tr_storage_error.h"

#include <string.h>

/* ---- retention -------------------------------------------------------- */

/* Oldest rpc id any configured service still needs; head + 1 if none. */
static guint64
min_needed_rpc (TrRpcStore *store)
{
  guint64 min_rpc = store->next_rpc_id;

  g_mutex_lock (&store->head_lock);
  if (store->rpc_low_water != 0)
    min_rpc = MIN (min_rpc, store->rpc_low_water);
  g_mutex_unlock (&store->head_lock);

  for (guint id = 0; id < store->n_ids; id++) {
    guint64 low, head, rpc;
    g_autoptr (GError) error = NULL;
    if (g_ptr_array_index (store->lists, id) == NULL)
      continue;
    g_mutex_lock (&store->head_lock);
    low = store->low_water[id];
    head = store->pub_list_heads[id];
    g_mutex_unlock (&store->head_lock);
    if (low == 0)
      return 1; /* a service whose endpoints have not reported yet pins everything */
    if (low > head)
      continue;
    if (!tr_rpcstore_service_lookup (store, id, low, &rpc, &error))
      return 1;
    min_rpc = MIN (min_rpc, rpc);
  }
  return min_rpc;
}

/* Logs the outcome of a retention run: a failure once (and again only
 * when it changes), so that a part that cannot be deleted for hours does
 * not log every checkpoint interval; and when it works again. */
static void
report_retention (TrRpcStore *store, const GError *error)
{
  if (error == NULL) {
    if (store->retention_error != NULL)
      g_message ("retention works again (after: %s)", store->retention_error);
    g_clear_pointer (&store->retention_error, g_free);
    return;
  }
  if (g_strcmp0 (store->retention_error, error->message) == 0) {
    g_debug ("retention still failing: %s", error->message);
    return;
  }
  g_warning ("retention failed, commits go on and it is retried every checkpoint: %s", error->message);
  g_free (store->retention_error);
  store->retention_error = g_strdup (error->message);
}

/* Drops the index parts before rpc @min_rpc and the list parts below each
 * service's low water mark (and the last checkpoint); stops at the first
 * failure. */
static gboolean
drop_entries (TrRpcStore *store, guint64 min_rpc, GError **error)
{
  if (!tr_dwbuffer_drop_before (store->dwb, TR_RPCSTORE_INDEX_FILE_ID, (min_rpc - 1) * TR_RPCRECORD_ENTRY_SIZE,
                                error))
    return FALSE;
  for (guint id = 0; id < store->n_ids; id++) {
    guint64 low;
    if (g_ptr_array_index (store->lists, id) == NULL)
      continue;
    g_mutex_lock (&store->head_lock);
    low = store->low_water[id];
    g_mutex_unlock (&store->head_lock);
    if (!tr_dwbuffer_drop_before (store->dwb, TR_RPCSTORE_LIST_FILE_ID (id),
                                  (MIN (low, store->ckpt_list_heads[id] + 1) - 1) * TR_RPCRECORD_ENTRY_SIZE,
                                  error))
      return FALSE;
  }
  return TRUE;
}

/* Publishes the first rpc id and list seqids still stored. */
static void
publish_firsts (TrRpcStore *store)
{
  g_mutex_lock (&store->head_lock);
  store->first_rpc_id = tr_groupfile_first_offset (store->index) / TR_RPCRECORD_ENTRY_SIZE + 1;
  for (guint id = 0; id < store->n_ids; id++) {
    TrGroupFile *list = g_ptr_array_index (store->lists, id);
    if (list != NULL)
      store->list_first[id] = tr_groupfile_first_offset (list) / TR_RPCRECORD_ENTRY_SIZE + 1;
  }
  g_mutex_unlock (&store->head_lock);
}

/* Deletes whole parts nobody needs (DESIGN §2.9), up to what the last
 * checkpoint covers: recovery scans from the checkpoint's data offset and
 * re-derives entries after its heads, so nothing it may need goes.  Runs
 * right after a checkpoint; commits may have gone on beside it.
 * Returns FALSE if it could not finish (a part that cannot be deleted, an
 * index entry that cannot be read): the caller runs it again at the next
 * checkpoint.  A failure never touches the commits: the GroupFiles stay
 * usable (tr_groupfile_drop_before()), and the store only keeps more parts
 * on disk than it needs until a run succeeds. */
static gboolean
run_retention (TrRpcStore *store)
{
  g_autoptr (GError) error = NULL;
  TrRpcIndexEntry index;
  guint64 min_rpc = MIN (min_needed_rpc (store), store->ckpt_rpc_id + 1);
  guint64 first_rpc, drop_offset;
  gboolean ok;

  g_mutex_lock (&store->head_lock);
  first_rpc = store->first_rpc_id;
  g_mutex_unlock (&store->head_lock);
  if (min_rpc <= first_rpc) {
    report_retention (store, NULL);
    return TRUE;
  }
  /* Needed by nobody from here on, whether or not the parts can go now
   * (published before any file is deleted). */
  g_mutex_lock (&store->head_lock);
  store->retained_from = MAX (store->retained_from, min_rpc);
  g_mutex_unlock (&store->head_lock);
  if (min_rpc == store->ckpt_rpc_id + 1)
    drop_offset = store->ckpt_data_end; /* everything checkpointed is consumed */
  else if (tr_rpcstore__read_index (store, min_rpc, &index, &error))
    drop_offset = index.offset;
  else
    goto out;
  g_mutex_lock (&store->data_lock);
  ok = tr_groupfile_drop_before (store->data, drop_offset, &error);
  g_mutex_unlock (&store->data_lock);
  /* A run that stops early leaves entries whose data part is gone: reading
   * them gives NOT_FOUND, as for any rpc retention dropped, until a later
   * run drops them too. */
  if (ok)
    drop_entries (store, min_rpc, &error);
  /* Also after a failure: parts deleted before it are gone. */
  publish_firsts (store);
out:
  report_retention (store, error);
  return error == NULL;
}

/* ---- writer thread ---------------------------------------------------- */

static gint64
next_deadline (TrRpcStore *store)
{
  gint64 deadline = store->last_checkpoint_us
                    + (gint64) store->options.checkpoint_interval_ms * G_TIME_SPAN_MILLISECOND;

  /* Commits mark data unsynced on their own thread without waking the
   * writer, so in interval mode it wakes every interval whether or not
   * anything is unsynced yet (an idle wake-up costs nothing). */
  if (store->options.sync_mode == TR_SYNC_INTERVAL)
    deadline = MIN (deadline, (store->unsynced ? store->last_sync_us : g_get_monotonic_time ())
                                  + (gint64) store->options.sync_interval_ms * G_TIME_SPAN_MILLISECOND);
  return deadline;
}

/* ---- exclusive tasks (tr_rpcstore__run_exclusive) ----------------------- */

gboolean
tr_rpcstore__run_exclusive (TrRpcStore *store, TrRpcStoreTask func, gpointer data, GError **error)
{
  gboolean ok;

  /* ->commit_lock serialises every mutation: commits, the writer's
   * periodic work and these tasks. */
  g_mutex_lock (&store->commit_lock);
  ok = func (store, data, error);
  g_mutex_unlock (&store->commit_lock);
  return ok;
}

/* Periodic checkpoint.  Its syncs (data file, then the DoubleWriteBuffer's
 * four barriers) take milliseconds, so they run without ->commit_lock:
 * commits go on meanwhile instead of every producer waiting for them.
 * Called and returns with ->commit_lock held; FALSE if it failed (the store
 * is then marked failed and reopens). */
static gboolean
checkpoint_beside_commits (TrRpcStore *store)
{
  g_autoptr (GByteArray) state = g_byte_array_new ();
  g_autoptr (GError) error = NULL;
  guint64 rpc_id = tr_rpcstore__checkpoint_capture (store, state);
  guint64 data_end = store->data_end;
  guint n_ids = store->n_ids;
  g_autofree guint64 *heads = g_new (guint64, MAX (n_ids, 1));
  guint gen = store->reopen_gen;
  gboolean ok = TRUE, stale;

  memcpy (heads, store->list_heads, n_ids * sizeof (guint64));
  g_mutex_unlock (&store->commit_lock);
  g_rw_lock_reader_lock (&store->files_lock);
  /* A reopen between the capture and here recovered (and checkpointed)
   * from the disk itself; the captured state may claim more than survived
   * a failed fsync, so it is dropped. */
  stale = store->reopen_gen != gen;
  if (!stale)
    ok = tr_rpcstore__checkpoint_write (store, state, &error);
  g_rw_lock_reader_unlock (&store->files_lock);
  g_mutex_lock (&store->commit_lock);
  if (!ok) {
    g_warning ("checkpoint failed, reopening the store: %s", error->message);
    if (store->failure == NULL)
      store->failure = g_steal_pointer (&error);
    return FALSE;
  }
  if (!stale && store->reopen_gen == gen)
    tr_rpcstore__checkpoint_done (store, rpc_id, data_end, heads, n_ids);
  return TRUE;
}

/* Syncs part file @path through a descriptor of its own (no lock held);
 * a part a reopen removed meanwhile is not an error. */
static gboolean
sync_zeros (TrRpcStore *store, const char *path, GError **error)
{
  g_autoptr (GError) local = NULL;
  int fd = -1;
  gboolean ok = tr_io_open (store->io, path, TR_IO_READ, &fd, &local) && tr_io_fsync (store->io, fd, &local);

  if (fd >= 0)
    tr_io_close_quietly (store->io, fd);
  if (!ok && g_error_matches (local, TR_STORAGE_ERROR, TR_STORAGE_ERROR_NOT_FOUND)) {
    g_debug ("syncing zeros written ahead: %s", local->message); /* a reopen removed the part */
    return TRUE;
  }
  /* A failed fsync may have consumed a writeback error of commit pages
   * too: like any failed sync, it makes the store reopen. */
  if (!ok)
    g_propagate_error (error, g_steal_pointer (&local));
  return ok;
}

/* sync_zeros() without the commit lock; a failure fails the store. */
static void
sync_zeros_unlocked (TrRpcStore *store, const char *path)
{
  g_autoptr (GError) error = NULL;
  gboolean ok;

  g_mutex_unlock (&store->commit_lock);
  ok = sync_zeros (store, path, &error);
  g_mutex_lock (&store->commit_lock);
  if (!ok) {
    g_warning ("syncing zeros written ahead of the data failed, reopening the store: %s", error->message);
    if (store->failure == NULL)
      store->failure = g_steal_pointer (&error);
  }
}

/* Writes zeros after the end of the data, a piece at a time under
 * ->data_lock (commits get the locks in between), then syncs them once
 * without any lock, so commits go on meanwhile.  Called and returns with
 * ->commit_lock held.  A failure (a full disk) only costs speed: the
 * commits then grow the file as without it; it is retried later. */
static void
zero_ahead_beside_commits (TrRpcStore *store)
{
  g_autofree char *written = NULL;

  for (;;) {
    g_autoptr (GError) error = NULL;
    g_autofree char *path = NULL;
    gboolean ok;

    g_mutex_lock (&store->data_lock);
    ok = tr_groupfile_zero_ahead (store->data, TR_ZERO_AHEAD, TR_ZERO_PIECE, &path, &error);
    g_mutex_unlock (&store->data_lock);
    if (!ok) {
      /* ->zero_requested stays set: no commit wakes the writer for it
       * again; the periodic round after the pause retries. */
      g_warning ("cannot write zeros ahead of the data (commits go on, growing the file): %s", error->message);
      store->zero_retry_us = g_get_monotonic_time () + TR_ZERO_RETRY_US;
      break;
    }
    if (path == NULL)
      break;
    if (written != NULL && strcmp (written, path) != 0)
      sync_zeros_unlocked (store, written); /* the data moved on to the next part meanwhile */
    g_free (written);
    written = g_steal_pointer (&path);
    /* GLib mutexes are not fair: yield, so a waiting commit gets in. */
    g_mutex_unlock (&store->commit_lock);
    g_thread_yield ();
    g_mutex_lock (&store->commit_lock);
    if (store->failure != NULL) {
      store->zero_requested = FALSE;
      return;
    }
  }
  if (store->zero_retry_us <= g_get_monotonic_time ())
    store->zero_requested = FALSE;
  if (written != NULL)
    sync_zeros_unlocked (store, written);
}

static void
periodic_work (TrRpcStore *store)
{
  g_autoptr (GError) error = NULL;
  gint64 now = g_get_monotonic_time ();
  gboolean moved;

  if (store->failure != NULL) {
    tr_rpcstore__try_reopen (store); /* so delivery resumes even when no producer writes */
    return;
  }
  if (store->options.sync_mode == TR_SYNC_ALWAYS && now >= store->zero_retry_us)
    zero_ahead_beside_commits (store);
  if (store->failure != NULL)
    return; /* set by a commit while the writer had let go of the lock */
  if (store->unsynced && store->options.sync_mode == TR_SYNC_INTERVAL
      && now >= store->last_sync_us + (gint64) store->options.sync_interval_ms * G_TIME_SPAN_MILLISECOND
      && !tr_rpcstore__sync_data (store, &error)) {
    g_warning ("interval sync failed: %s", error->message);
    store->failure = g_steal_pointer (&error);
    return;
  }
  if (now < store->last_checkpoint_us + (gint64) store->options.checkpoint_interval_ms * G_TIME_SPAN_MILLISECOND)
    return;
  store->last_checkpoint_us = now;
  if (store->ckpt_rpc_id + 1 != store->next_rpc_id && !checkpoint_beside_commits (store))
    return;
  g_mutex_lock (&store->head_lock);
  moved = store->low_water_moved;
  store->low_water_moved = FALSE;
  g_mutex_unlock (&store->head_lock);
  /* Also when the data filled another part: with no endpoint at all (low
   * water "nothing needed" set once) no acknowledgement ever moves it. */
  moved = moved || tr_groupfile_n_parts (store->data) > store->retention_parts;
  if (moved && !run_retention (store)) {
    g_mutex_lock (&store->head_lock);
    store->low_water_moved = TRUE;
    g_mutex_unlock (&store->head_lock);
  }
  if (moved)
    store->retention_parts = tr_groupfile_n_parts (store->data);
}

/* The writer thread does the periodic work (interval sync, checkpoint,
 * retention, reopen after a failure) and nothing else: commits happen on
 * the submitting thread.  It sleeps until the next deadline or close. */
gpointer
tr_rpcstore__writer_main (gpointer data)
{
  TrRpcStore *store = data;
  gboolean stopping = FALSE;

  while (!stopping) {
    gint64 deadline;
    g_mutex_lock (&store->commit_lock);
    periodic_work (store);
    deadline = next_deadline (store);
    g_mutex_unlock (&store->commit_lock);
    g_mutex_lock (&store->stop_lock);
    while (!store->stopping && !store->zero_wanted
           && g_cond_wait_until (&store->stop_cond, &store->stop_lock, deadline))
      ;
    store->zero_wanted = FALSE;
    stopping = store->stopping;
    g_mutex_unlock (&store->stop_lock);
  }
  return NULL;
}
