/* tr_rpcstore.c - open and close, group commit, cache and reads of the RPC
 * store.
 *
 * Formats: tr_rpcrecord.h and docs/format/rpcstore.md.  Reads:
 * tr_rpcstore_read.c.
 * Recovery: tr_rpcstore_recover.c.  The writer thread (periodic work,
 * retention): tr_rpcstore_writer.c.  Dead-letter lists: tr_rpcstore_dead.c.
 *
 * Every mutation of the data, index and list files happens with
 * ->commit_lock held: by the submitting thread, which commits its batch
 * inline (no thread hop on the commit path), and by the writer thread,
 * which only does the periodic work (interval sync, checkpoint, retention,
 * reopen after a failure, zeros ahead of the data in sync_mode always).
 * A batch is: copy the records into one buffer per part, append, fdatasync once (sync_mode always), then
 * derive index/list entries into the DoubleWriteBuffer, publish the heads and
 * call the submitters back.  Nothing is acknowledged before its record is
 * written (and synced, in mode always); a failed write or sync fails the
 * whole batch and leaves the data file FAILED until the writer reopens it
 * and cuts it back to the last committed record (so a record that reached
 * the disk but was never acknowledged is removed, not delivered later).
 */
#include "tr_rpcstore.h"

#include "tr_endian.h"
#include "tr_record.h"
#include "tr_rpcrecord.h"
#include "tr_rpcstore_private.h"
#include "tr_storage_error.h"

#include <errno.h>
#include <string.h>
#include <xxhash.h>

#define TR_REOPEN_RETRY_US (500 * G_TIME_SPAN_MILLISECOND)
#define TR_COMMIT_DELAY_MAX_US 200
/* GBytes header, two malloc headers and the ring slot of a cached message. */
#define TR_CACHE_ENTRY_OVERHEAD 96
/* write_batch()'s buffer: its first size, and the most it keeps between batches. */
#define TR_COMMIT_BUF_SIZE (64 << 10)
#define TR_COMMIT_BUF_KEEP (1 << 20)
/* Below this rpc_cache_size the cache keeps its messages in malloc'd
 * memory: it fills within a second or so (a bounded number of page faults),
 * and the arena's few chunks of slack would be large next to it. */
#define TR_ARENA_MIN_CACHE ((gsize) 16 << 20)

typedef struct {
  GBytes *message;
  guint32 *service_ids;
  guint n_services;
  TrRpcCommitFunc done; /* (nullable): NULL for a record applied as follower */
  gpointer user_data;
  guint64 rpc_id;
  gint64 commit_time_us; /* written into its record */
  guint64 offset;     /* logical offset of its data record, once written */
  guint32 record_len; /* header + payload */
  guint32 checksum;   /* the record's checksum, copied into index/list entries */
  gint64 submitted_us; /* monotonic time of tr_rpcstore_submit(), for the latency histogram */
} Submission;

static void
submission_free (Submission *sub)
{
  if (sub->message)
    g_bytes_unref (sub->message);
  g_free (sub->service_ids);
  g_free (sub);
}

/* ---- cache ------------------------------------------------------------ */

static void
cache_evict_oldest (TrRpcStore *store)
{
  guint slot = (guint) (store->cache_lo % store->ring_cap);

  store->cache_bytes -= g_bytes_get_size (store->ring[slot]) + TR_CACHE_ENTRY_OVERHEAD;
  g_clear_pointer (&store->ring[slot], g_bytes_unref);
  store->cache_lo++;
}

static void
cache_insert (TrRpcStore *store, guint64 rpc_id, GBytes *message, gint64 time_us)
{
  /* Count what an entry really costs, not only its payload, so the
   * process stays within rpc_cache_size (issue 3: RSS <= 16 MiB + cache). */
  gsize size = g_bytes_get_size (message) + TR_CACHE_ENTRY_OVERHEAD;

  if (store->ring_cap == 0 || size > store->cache_budget)
    return;
  g_mutex_lock (&store->cache_lock);
  if (store->cache_lo > store->cache_hi || rpc_id != store->cache_hi + 1) {
    while (store->cache_lo <= store->cache_hi)
      cache_evict_oldest (store);
    store->cache_lo = rpc_id;
  }
  while (store->cache_lo <= store->cache_hi
         && (store->cache_bytes + size > store->cache_budget
             || rpc_id - store->cache_lo >= store->ring_cap))
    cache_evict_oldest (store);
  store->ring[rpc_id % store->ring_cap] = g_bytes_ref (message);
  store->ring_time[rpc_id % store->ring_cap] = time_us;
  store->cache_hi = rpc_id;
  store->cache_bytes += size;
  g_mutex_unlock (&store->cache_lock);
}

GBytes *
tr_rpcstore__cache_lookup (TrRpcStore *store, guint64 rpc_id, gint64 *time_out)
{
  GBytes *found = NULL;

  g_mutex_lock (&store->cache_lock);
  if (store->ring_cap > 0 && rpc_id >= store->cache_lo && rpc_id <= store->cache_hi) {
    found = g_bytes_ref (store->ring[rpc_id % store->ring_cap]);
    if (time_out)
      *time_out = store->ring_time[rpc_id % store->ring_cap];
    store->cache_hits++;
  } else {
    store->cache_misses++;
  }
  g_mutex_unlock (&store->cache_lock);
  return found;
}

GBytes *
tr_rpcstore_copy_message (TrRpcStore *store, gconstpointer data, gsize len)
{
  return store->arena ? tr_arena_copy (store->arena, data, len) : g_bytes_new (data, len);
}

/* ---- commit ----------------------------------------------------------- */


static void
fail_batch (TrRpcStore *store, GPtrArray *batch, const GError *error)
{
  for (guint i = 0; i < batch->len; i++) {
    Submission *sub = g_ptr_array_index (batch, i);
    if (sub->done != NULL)
      sub->done (sub->user_data, 0, error);
  }
  g_mutex_lock (&store->head_lock);
  store->commit_errors += batch->len;
  g_mutex_unlock (&store->head_lock);
}

/* Appends the data record of @sub to @buf; returns its checksum. */
static guint32
encode_rpc (GByteArray *buf, Submission *sub)
{
  gsize msg_len = 0;
  const guint8 *msg = g_bytes_get_data (sub->message, &msg_len);

  return tr_rpcrecord_encode (buf, sub->rpc_id, sub->commit_time_us, sub->service_ids, sub->n_services, msg, msg_len);
}

/* Appends @buf (records that all fit in the current part) and fixes the
 * offsets of the submissions [first, last). */
static gboolean
append_chunk (TrRpcStore *store, GByteArray *buf, GPtrArray *batch, guint first, guint last,
              GError **error)
{
  guint64 base = 0;
  gboolean ok;

  if (buf->len == 0)
    return TRUE;
  g_mutex_lock (&store->data_lock);
  ok = tr_groupfile_append (store->data, buf->data, buf->len, &base, error);
  g_mutex_unlock (&store->data_lock);
  if (!ok)
    return FALSE;
  for (guint i = first; i < last; i++) {
    Submission *sub = g_ptr_array_index (batch, i);
    sub->offset += base;
  }
  store->data_end = base + buf->len;
  g_byte_array_set_size (buf, 0);
  return TRUE;
}

/* Writes every record of @batch into @buf and appends it; one append per
 * part touched.  *@peak: the most @buf held. */
static gboolean
write_records (TrRpcStore *store, GByteArray *buf, GPtrArray *batch, gsize *peak,
               GError **error)
{
  guint64 part = store->options.group_file_size;
  guint64 room;
  guint first = 0;

  g_byte_array_set_size (buf, 0);
  room = part - (tr_groupfile_size (store->data) % part);
  for (guint i = 0; i < batch->len; i++) {
    Submission *sub = g_ptr_array_index (batch, i);
    gsize before = buf->len;
    sub->checksum = encode_rpc (buf, sub);
    *peak = MAX (*peak, buf->len);
    if (buf->len > room) {
      /* This record would cross the part end: flush what fits, the
       * GroupFile starts a new part for the rest. */
      g_byte_array_set_size (buf, (guint) before);
      if (!append_chunk (store, buf, batch, first, i, error))
        return FALSE;
      /* Seal the old part before the new one gets data: after a power loss
       * a torn tail may then only ever be in the last part, which recovery
       * cuts; a torn sealed part would be refused as corruption. */
      if (store->options.sync_mode != TR_SYNC_NONE && !tr_rpcstore__sync_data (store, error))
        return FALSE;
      first = i;
      room = part;
      before = 0;
      sub->checksum = encode_rpc (buf, sub);
    }
    sub->offset = before;
    sub->record_len = (guint32) (buf->len - before);
  }
  return append_chunk (store, buf, batch, first, batch->len, error);
}

/* The batch buffer is kept from one batch to the next (a new one per batch
 * came from the top of the heap and went back to the kernel: a page fault
 * per 4 KiB each time), unless a batch of large messages made it bigger
 * than TR_COMMIT_BUF_KEEP. */
static gboolean
write_batch (TrRpcStore *store, GPtrArray *batch, GError **error)
{
  gsize peak = 0;
  gboolean ok = write_records (store, store->commit_buf, batch, &peak, error);

  if (peak > TR_COMMIT_BUF_KEEP) {
    g_byte_array_unref (store->commit_buf);
    store->commit_buf = g_byte_array_sized_new (TR_COMMIT_BUF_SIZE);
  }
  return ok;
}

gboolean
tr_rpcstore__sync_data_file (TrRpcStore *store, GError **error)
{
  TrGroupFileSync *sync;
  gboolean ok;

  /* ->data_lock is held only to note and to settle what the sync covers,
   * never across the fdatasync itself: every read of a committed record
   * from disk takes ->data_lock, and a cold read must not wait for the
   * sync of a later commit.  The records this sync covers are not yet
   * acknowledged (nor published), so no reader looks for them; what
   * readers look for was synced by an earlier call.  ->data stays the same
   * object meanwhile: the caller holds ->commit_lock or the reader side of
   * ->files_lock, and a reopen, the only thing that replaces it, takes both. */
  g_mutex_lock (&store->data_lock);
  sync = tr_groupfile_sync_begin (store->data, error);
  g_mutex_unlock (&store->data_lock);
  if (sync == NULL)
    return FALSE;
  tr_groupfile_sync_run (sync);
  g_mutex_lock (&store->data_lock);
  ok = tr_groupfile_sync_end (store->data, sync, error);
  g_mutex_unlock (&store->data_lock);
  return ok;
}

gboolean
tr_rpcstore__sync_data (TrRpcStore *store, GError **error)
{
  gint64 start = g_get_monotonic_time ();
  gboolean ok = tr_rpcstore__sync_data_file (store, error);
  gint64 took = g_get_monotonic_time () - start;

  /* Moving average of the fsync time, for the group commit delay. */
  g_atomic_int_set (&store->fsync_ewma_us, (gint) ((7 * (gint64) store->fsync_ewma_us + MIN (took, G_MAXINT)) / 8));
  tr_histogram_observe (&store->fsync_latency, (guint64) MAX (took, 0));
  if (ok) {
    store->unsynced = FALSE;
    store->last_sync_us = g_get_monotonic_time ();
  }
  return ok;
}

/* Tells every subscriber (->commit_lock held). */
static void
notify_subscribers (TrRpcStore *store, TrRpcNotify what, guint64 value)
{
  for (guint i = 0; i < store->subscribers->len; i++) {
    const TrRpcSubscriber *sub = &g_array_index (store->subscribers, TrRpcSubscriber, i);
    sub->notify (sub->user_data, what, value);
  }
}

static void
publish (TrRpcStore *store, guint64 head)
{
  g_mutex_lock (&store->head_lock);
  store->head_rpc_id = head;
  memcpy (store->pub_list_heads, store->list_heads, store->n_ids * sizeof (guint64));
  store->batches++;
  g_mutex_unlock (&store->head_lock);
  notify_subscribers (store, TR_RPC_NOTIFY_COMMITTED, head);
}

/* After a data-file failure: reopen it and cut it back to the end of the
 * last committed record, so the store accepts writes again by itself when
 * the disk recovers.  Throttled; FALSE while the disk is still failing. */
gboolean
tr_rpcstore__try_reopen (TrRpcStore *store)
{
  g_autoptr (GError) error = NULL;
  gint64 now = g_get_monotonic_time ();

  if (now - store->last_reopen_us < TR_REOPEN_RETRY_US)
    return FALSE;
  store->last_reopen_us = now;
  if (!tr_rpcstore__reopen (store, store->data_end, &error)) {
    g_warning ("store still failing: %s", error->message);
    return FALSE;
  }
  g_message ("store reopened after failure (%s); accepting writes again", store->failure->message);
  g_clear_error (&store->failure);
  publish (store, store->next_rpc_id - 1);
  return TRUE;
}

/* Commit latency (submission to callback) of every RPC of a committed
 * batch, and the batch's size. */
static void
record_latency (TrRpcStore *store, GPtrArray *batch)
{
  gint64 now = g_get_monotonic_time ();

  for (guint i = 0; i < batch->len; i++) {
    Submission *sub = g_ptr_array_index (batch, i);
    tr_histogram_observe (&store->commit_latency, (guint64) MAX (now - sub->submitted_us, 0));
  }
  tr_histogram_observe (&store->batch_size, batch->len);
}

/* Wakes the writer to write zeros ahead of the data (commit lock held). */
static void
ask_for_zeros (TrRpcStore *store)
{
  store->zero_requested = TRUE;
  g_mutex_lock (&store->stop_lock);
  store->zero_wanted = TRUE;
  g_cond_signal (&store->stop_cond);
  g_mutex_unlock (&store->stop_lock);
}

/* Before a batch: after a failure, reopens the store (throttled), which
 * may recover fewer rpcs than were written, so ids are given (leader) or
 * checked (follower) only after this.  FALSE with the failure while the
 * store stays failed (->commit_lock held). */
static gboolean
ensure_writable (TrRpcStore *store, GError **error)
{
  if (store->failure != NULL && !tr_rpcstore__try_reopen (store)) {
    g_propagate_error (error, g_error_copy (store->failure));
    return FALSE;
  }
  return TRUE;
}

/* Commits @batch, whose submissions have their rpc ids (next_rpc_id on)
 * and commit times: the one commit path of leader and follower
 * (->commit_lock held, ensure_writable() done).  Every callback has run
 * when it returns.  FALSE with @error_out (optional) when nothing of the
 * batch is stored. */
static gboolean
commit_batch (TrRpcStore *store, GPtrArray *batch, GError **error_out)
{
  g_autoptr (GError) error = NULL;
  guint64 end_before;
  gboolean ok;

  end_before = store->data_end;
  ok = write_batch (store, batch, &error);
  if (ok && store->options.sync_mode == TR_SYNC_ALWAYS) {
    notify_subscribers (store, TR_RPC_NOTIFY_SYNCING, batch->len);
    ok = tr_rpcstore__sync_data (store, &error);
  }
  if (!ok) {
    g_prefix_error (&error, "commit of %u rpcs failed: ", batch->len);
    g_warning ("%s", error->message);
    /* The records of this batch may be partly on disk: reopen cuts them. */
    store->data_end = end_before;
    store->failure = g_error_copy (error);
    fail_batch (store, batch, error);
    g_propagate_error (error_out, g_steal_pointer (&error));
    return FALSE;
  }
  store->unsynced = store->options.sync_mode != TR_SYNC_ALWAYS;
  /* Zeros stop at the end of a part: the next part asks again once the
   * data has rolled into it. */
  if (store->options.sync_mode == TR_SYNC_ALWAYS && !store->zero_requested) {
    guint64 zeroed = tr_groupfile_zeroed_end (store->data);
    if (store->data_end >= zeroed
        || (store->data_end + TR_ZERO_LOW > zeroed && zeroed % store->options.group_file_size != 0))
      ask_for_zeros (store);
  }
  /* The records are stored (and synced, in mode always): answer first, so
   * the producers' next requests are on their way while the index, lists
   * and cache are updated.  A failing index update does not change the
   * answer (the record is durable; see below). */
  record_latency (store, batch);
  for (guint i = 0; i < batch->len; i++) {
    Submission *sub = g_ptr_array_index (batch, i);
    if (sub->done != NULL)
      sub->done (sub->user_data, sub->rpc_id, NULL);
  }
  for (guint i = 0; i < batch->len; i++) {
    Submission *sub = g_ptr_array_index (batch, i);
    if (store->failure == NULL
        && !tr_rpcstore__derive_entries (store, sub->rpc_id, sub->offset, sub->record_len, sub->checksum,
                                         sub->service_ids, sub->n_services, &error)) {
      /* The record is durable, so it is acknowledged; its entries are
       * re-derived from the data when the next batch reopens the store. */
      g_warning ("index update failed at rpc %" G_GUINT64_FORMAT ", reopening the store: %s", sub->rpc_id,
                 error->message);
      store->failure = g_steal_pointer (&error);
    }
    cache_insert (store, sub->rpc_id, sub->message, sub->commit_time_us);
  }
  store->next_rpc_id += batch->len;
  store->rpcs_committed += batch->len;
  publish (store, store->next_rpc_id - 1);
  return TRUE;
}

/* ---- public API ------------------------------------------------------- */

static void
store_free (TrRpcStore *store)
{
  g_clear_pointer (&store->subscribers, g_array_unref);
  if (store->dwb)
    tr_dwbuffer_free (store->dwb);
  g_clear_pointer (&store->data, tr_groupfile_free);
  g_clear_pointer (&store->index, tr_groupfile_free);
  if (store->lists)
    g_ptr_array_unref (store->lists);
  if (store->dead)
    g_ptr_array_unref (store->dead);
  g_clear_pointer (&store->checkpoint, tr_rotatefile_free);
  g_clear_pointer (&store->service_ids, g_hash_table_destroy);
  if (store->service_names)
    g_ptr_array_unref (store->service_names);
  g_mutex_clear (&store->stop_lock);
  g_cond_clear (&store->stop_cond);
  while (store->ring && store->cache_lo <= store->cache_hi)
    cache_evict_oldest (store);
  g_free (store->ring);
  g_free (store->ring_time);
  g_clear_pointer (&store->arena, tr_arena_free);
  g_clear_pointer (&store->commit_buf, g_byte_array_unref);
  g_free (store->list_heads);
  g_free (store->ckpt_list_heads);
  g_free (store->pub_list_heads);
  g_free (store->low_water);
  g_free (store->list_first);
  g_clear_error (&store->failure);
  g_clear_error (&store->space_refusal);
  g_free (store->space_error);
  g_mutex_clear (&store->commit_lock);
  g_mutex_clear (&store->data_lock);
  g_mutex_clear (&store->head_lock);
  g_mutex_clear (&store->cache_lock);
  g_mutex_clear (&store->dead_lock);
  g_rw_lock_clear (&store->files_lock);
  g_strfreev (store->configured);
  g_free (store->retention_error);
  g_free (store->dir);
  g_free (store);
}

TrRpcStore *
tr_rpcstore_open (TrIo *io, const char *dir, const TrRpcStoreOptions *options,
                  const char *const *services, GError **error)
{
  TrRpcStore *store;

  g_return_val_if_fail (io != NULL && dir != NULL && options != NULL && services != NULL, NULL);
  g_return_val_if_fail (options->group_file_size >= TR_RPCSTORE_BLOCK_SIZE, NULL);
  g_return_val_if_fail (options->max_message_size > 0
                            && options->max_message_size <= options->group_file_size / 2, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  store = g_new0 (TrRpcStore, 1);
  store->io = io;
  store->dir = g_strdup (dir);
  store->options = *options;
  /* Index and list parts must hold whole blocks. */
  store->options.group_file_size -= store->options.group_file_size % TR_RPCSTORE_BLOCK_SIZE;
  if (store->options.checkpoint_interval_ms == 0)
    store->options.checkpoint_interval_ms = 1000;
  store->min_free_bytes = options->min_free_bytes;
  store->min_free_percent = MIN (options->min_free_percent, 100);
  g_mutex_init (&store->commit_lock);
  store->subscribers = g_array_new (FALSE, FALSE, sizeof (TrRpcSubscriber));
  g_mutex_init (&store->data_lock);
  g_mutex_init (&store->head_lock);
  tr_histogram_init (&store->commit_latency, tr_histogram_bounds_latency_us,
                     G_N_ELEMENTS (tr_histogram_bounds_latency_us));
  tr_histogram_init (&store->batch_size, tr_histogram_bounds_count, G_N_ELEMENTS (tr_histogram_bounds_count));
  tr_histogram_init (&store->fsync_latency, tr_histogram_bounds_latency_us,
                     G_N_ELEMENTS (tr_histogram_bounds_latency_us));
  g_mutex_init (&store->cache_lock);
  g_mutex_init (&store->dead_lock);
  g_rw_lock_init (&store->files_lock);
  store->cache_lo = 1;
  store->cache_hi = 0;
  store->ring_cap = (guint) MIN (options->rpc_cache_size / 256, 1u << 20);
  store->ring = g_new0 (GBytes *, MAX (store->ring_cap, 1));
  store->ring_time = g_new0 (gint64, MAX (store->ring_cap, 1));
  store->arena = options->rpc_cache_size >= TR_ARENA_MIN_CACHE ? tr_arena_new () : NULL;
  store->commit_buf = g_byte_array_sized_new (TR_COMMIT_BUF_SIZE);
  g_mutex_init (&store->stop_lock);
  g_cond_init (&store->stop_cond);

  if (g_mkdir_with_parents (dir, 0755) < 0) {
    tr_io_set_errno_error (error, errno, "cannot create data directory", dir);
    store_free (store);
    return NULL;
  }
  if (!tr_rpcstore__recover (store, services, error)) {
    g_prefix_error (error, "opening store %s: ", dir);
    store_free (store);
    return NULL;
  }
  {
    /* rpc_cache_size is the whole cache memory: the ring, the index/list
     * block cache of the DoubleWriteBuffer, and the messages. */
    gsize fixed = (gsize) store->ring_cap * (sizeof (GBytes *) + sizeof (gint64))
                  + store->block_cache_blocks * TR_RPCSTORE_BLOCK_SIZE;
    store->cache_budget = options->rpc_cache_size > fixed ? options->rpc_cache_size - fixed : 0;
  }
  store->last_checkpoint_us = store->last_sync_us = g_get_monotonic_time ();
  store->writer = g_thread_new ("tr-writer", tr_rpcstore__writer_main, store);
  return store;
}

void
tr_rpcstore_close (TrRpcStore *store)
{
  g_autoptr (GError) error = NULL;

  if (store == NULL)
    return;
  g_mutex_lock (&store->stop_lock);
  store->stopping = TRUE;
  g_mutex_unlock (&store->stop_lock);
  g_cond_signal (&store->stop_cond);
  g_thread_join (store->writer);
  /* Clean shutdown: everything committed is made durable and checkpointed,
   * so the next start scans nothing. */
  if (store->failure == NULL && store->unsynced && !tr_rpcstore__sync_data (store, &error)) {
    g_warning ("final sync failed: %s", error->message);
    g_clear_error (&error);
  }
  if (store->failure == NULL && !tr_rpcstore__checkpoint (store, &error))
    g_warning ("final checkpoint failed: %s", error->message);
  g_message ("store closed: %" G_GUINT64_FORMAT " rpcs committed in %" G_GUINT64_FORMAT
             " group commits since open (recent fsync average %d us)",
             store->rpcs_committed, store->batches, store->fsync_ewma_us);
  store_free (store);
}

gint
tr_rpcstore_service_id (TrRpcStore *store, const char *name)
{
  gpointer value;

  /* The map grows under ->commit_lock (tr_rpcstore_add_service). */
  g_mutex_lock (&store->head_lock);
  value = g_hash_table_lookup (store->service_ids, name);
  g_mutex_unlock (&store->head_lock);
  return value ? (gint) GPOINTER_TO_UINT (value) - 1 : -1;
}

gint64
tr_rpcstore_group_commit_delay_us (TrRpcStore *store)
{
  if (store->options.sync_mode != TR_SYNC_ALWAYS)
    return 0;
  return MIN (g_atomic_int_get (&store->fsync_ewma_us) / 2, TR_COMMIT_DELAY_MAX_US);
}

void
tr_rpcstore_add_subscriber (TrRpcStore *store, TrRpcNotifyFunc notify, gpointer user_data)
{
  TrRpcSubscriber sub = { notify, user_data };

  g_return_if_fail (store != NULL && notify != NULL);
  /* Subscribers are called under ->commit_lock, so changing the list under
   * it never races with a call. */
  g_mutex_lock (&store->commit_lock);
  g_array_append_val (store->subscribers, sub);
  g_mutex_unlock (&store->commit_lock);
}

gboolean
tr_rpcstore_remove_subscriber (TrRpcStore *store, TrRpcNotifyFunc notify, gpointer user_data)
{
  gboolean found = FALSE;

  g_return_val_if_fail (store != NULL && notify != NULL, FALSE);
  /* Once this has the lock, no call of the old subscriber is running or
   * about to run: its data may be freed when this returns. */
  g_mutex_lock (&store->commit_lock);
  for (guint i = 0; i < store->subscribers->len && !found; i++) {
    const TrRpcSubscriber *sub = &g_array_index (store->subscribers, TrRpcSubscriber, i);
    if (sub->notify == notify && sub->user_data == user_data) {
      g_array_remove_index (store->subscribers, i);
      found = TRUE;
    }
  }
  g_mutex_unlock (&store->commit_lock);
  return found;
}

struct _TrRpcBatch {
  GPtrArray *subs; /* Submission* */
};

TrRpcBatch *
tr_rpcbatch_new (void)
{
  TrRpcBatch *batch = g_new0 (TrRpcBatch, 1);

  batch->subs = g_ptr_array_new_with_free_func ((GDestroyNotify) submission_free);
  return batch;
}

void
tr_rpcbatch_free (TrRpcBatch *batch)
{
  if (batch == NULL)
    return;
  g_ptr_array_unref (batch->subs);
  g_free (batch);
}

guint
tr_rpcbatch_len (const TrRpcBatch *batch)
{
  return batch->subs->len;
}

void
tr_rpcbatch_add (TrRpcBatch *batch, GBytes *message, const guint32 *service_ids, guint n_services,
                 TrRpcCommitFunc done, gpointer user_data)
{
  Submission *sub;

  g_return_if_fail (batch != NULL && message != NULL && done != NULL);
  g_return_if_fail (n_services > 0 && n_services <= G_MAXUINT16);
  sub = g_new0 (Submission, 1);
  sub->message = g_bytes_ref (message);
  sub->service_ids = g_memdup2 (service_ids, n_services * sizeof (guint32));
  sub->n_services = n_services;
  sub->done = done;
  sub->user_data = user_data;
  sub->submitted_us = g_get_monotonic_time ();
  g_ptr_array_add (batch->subs, sub);
}

void
tr_rpcstore_submit_batch (TrRpcStore *store, TrRpcBatch *batch)
{
  g_autoptr (GError) error = NULL;
  gint64 now_us;

  g_return_if_fail (store != NULL && batch != NULL);
  if (batch->subs->len == 0)
    return;
  g_mutex_lock (&store->commit_lock);
  /* Commit as leader: the store gives the ids and the commit time.  A
   * failure reaches every submitter through its callback. */
  if (!tr_rpcstore__check_space (store, &error) || !ensure_writable (store, &error)) {
    fail_batch (store, batch->subs, error);
  } else {
    now_us = g_get_real_time ();
    for (guint i = 0; i < batch->subs->len; i++) {
      Submission *sub = g_ptr_array_index (batch->subs, i);
      sub->rpc_id = store->next_rpc_id + i;
      sub->commit_time_us = now_us;
    }
    if (!commit_batch (store, batch->subs, NULL))
      g_debug ("batch of %u rpcs failed (each submitter was told)", batch->subs->len);
  }
  g_mutex_unlock (&store->commit_lock);
  g_ptr_array_set_size (batch->subs, 0);
}

/* Whether @records continue the store at head + 1, one id after the other
 * (->commit_lock held). */
static gboolean
check_sequence (TrRpcStore *store, TrRpcStoreRecord *const *records, guint n_records, GError **error)
{
  for (guint i = 0; i < n_records; i++) {
    if (records[i]->rpc_id != store->next_rpc_id + i) {
      g_set_error (error, TR_STORAGE_ERROR, TR_STORAGE_ERROR_SEQUENCE,
                   "cannot apply rpc %" G_GUINT64_FORMAT " (record %u of the batch) to store %s: the next rpc id "
                   "is %" G_GUINT64_FORMAT " (head %" G_GUINT64_FORMAT ")",
                   records[i]->rpc_id, i, store->dir, store->next_rpc_id + i, store->next_rpc_id - 1);
      return FALSE;
    }
  }
  return TRUE;
}

gboolean
tr_rpcstore_apply_batch (TrRpcStore *store, TrRpcStoreRecord *const *records, guint n_records, GError **error)
{
  g_autoptr (GPtrArray) subs = g_ptr_array_new_with_free_func ((GDestroyNotify) submission_free);
  gint64 now = g_get_monotonic_time ();
  gboolean ok;

  g_return_val_if_fail (store != NULL && (records != NULL || n_records == 0), FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);
  if (n_records == 0)
    return TRUE;
  for (guint i = 0; i < n_records; i++) {
    Submission *sub;
    g_return_val_if_fail (records[i] != NULL && records[i]->message != NULL, FALSE);
    g_return_val_if_fail (records[i]->n_services <= G_MAXUINT16, FALSE);
    sub = g_new0 (Submission, 1);
    sub->message = g_bytes_ref (records[i]->message);
    sub->service_ids = g_memdup2 (records[i]->service_ids, MAX (records[i]->n_services, 1) * sizeof (guint32));
    sub->n_services = records[i]->n_services;
    sub->rpc_id = records[i]->rpc_id;
    sub->commit_time_us = records[i]->commit_time_us;
    sub->submitted_us = now;
    g_ptr_array_add (subs, sub);
  }
  g_mutex_lock (&store->commit_lock);
  ok = ensure_writable (store, error) && check_sequence (store, records, n_records, error)
       && commit_batch (store, subs, error);
  g_mutex_unlock (&store->commit_lock);
  return ok;
}

void
tr_rpcstore_submit (TrRpcStore *store, GBytes *message, const guint32 *service_ids, guint n_services,
                    TrRpcCommitFunc done, gpointer user_data)
{
  TrRpcBatch *batch = tr_rpcbatch_new ();

  tr_rpcbatch_add (batch, message, service_ids, n_services, done, user_data);
  tr_rpcstore_submit_batch (store, batch);
  tr_rpcbatch_free (batch);
}

guint64
tr_rpcstore_head (TrRpcStore *store)
{
  guint64 head;

  g_mutex_lock (&store->head_lock);
  head = store->head_rpc_id;
  g_mutex_unlock (&store->head_lock);
  return head;
}

guint64
tr_rpcstore_service_head (TrRpcStore *store, guint32 service_id)
{
  guint64 head;

  g_return_val_if_fail (service_id < tr_rpcstore__n_ids (store), 0);
  g_mutex_lock (&store->head_lock);
  head = store->pub_list_heads[service_id];
  g_mutex_unlock (&store->head_lock);
  return head;
}

guint64
tr_rpcstore_service_first (TrRpcStore *store, guint32 service_id)
{
  guint64 first;

  g_return_val_if_fail (service_id < tr_rpcstore__n_ids (store), 0);
  g_mutex_lock (&store->head_lock);
  first = store->list_first[service_id];
  g_mutex_unlock (&store->head_lock);
  return first;
}

void
tr_rpcstore_set_low_water (TrRpcStore *store, guint32 service_id, guint64 seqid)
{
  g_return_if_fail (service_id < tr_rpcstore__n_ids (store));
  g_mutex_lock (&store->head_lock);
  if (store->low_water[service_id] != seqid)
    store->low_water_moved = TRUE;
  store->low_water[service_id] = seqid;
  g_mutex_unlock (&store->head_lock);
}

void
tr_rpcstore_set_rpc_low_water (TrRpcStore *store, guint64 rpc_id)
{
  g_return_if_fail (store != NULL);
  g_mutex_lock (&store->head_lock);
  if (store->rpc_low_water != rpc_id)
    store->low_water_moved = TRUE;
  store->rpc_low_water = rpc_id;
  g_mutex_unlock (&store->head_lock);
}

void
tr_rpcstore_get_stats (TrRpcStore *store, TrRpcStoreStats *stats_out)
{
  g_mutex_lock (&store->head_lock);
  stats_out->head_rpc_id = store->head_rpc_id;
  stats_out->first_rpc_id = store->first_rpc_id;
  stats_out->retained_from_rpc_id = store->retained_from;
  stats_out->batches = store->batches;
  stats_out->commit_errors = store->commit_errors;
  g_mutex_unlock (&store->head_lock);
  tr_histogram_snapshot (&store->commit_latency, &stats_out->commit_latency);
  tr_histogram_snapshot (&store->batch_size, &stats_out->batch_size);
  tr_histogram_snapshot (&store->fsync_latency, &stats_out->fsync_latency);
  g_rw_lock_reader_lock (&store->files_lock);
  g_mutex_lock (&store->data_lock);
  stats_out->data_bytes = store->data ? tr_groupfile_disk_bytes (store->data) : 0;
  stats_out->data_parts = store->data ? tr_groupfile_n_parts (store->data) : 0;
  g_mutex_unlock (&store->data_lock);
  g_rw_lock_reader_unlock (&store->files_lock);
  g_mutex_lock (&store->cache_lock);
  stats_out->cache_rpcs = store->cache_lo <= store->cache_hi ? store->cache_hi - store->cache_lo + 1 : 0;
  stats_out->cache_bytes = store->cache_bytes;
  stats_out->cache_limit = store->cache_budget;
  stats_out->reads_from_cache = store->cache_hits;
  stats_out->reads_from_disk = store->cache_misses;
  g_mutex_unlock (&store->cache_lock);
}
