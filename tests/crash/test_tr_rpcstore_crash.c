/* Crash and fault tests of the RPC store: I/O errors during group commit
 * (EIO, ENOSPC, short writes) and simulated power loss.  Invariants: an RPC
 * is acknowledged only if it is stored; after the fault clears, commits
 * resume without reopening; after reopen every acknowledged RPC is there,
 * in order, and nothing unacknowledged appears. */
#include "tr_fault_io.h"
#include "tr_rpcstore.h"
#include "tr_storage_error.h"
#include "tr_test_util.h"

#include <criterion/criterion.h>
#include <errno.h>

typedef struct {
  GMutex lock;
  GCond cond;
  guint done;
  GArray *acked; /* guint: message numbers acknowledged, with their rpc id */
  GArray *ids;
} Acks;

typedef struct {
  Acks *acks;
  guint number;
} Job;

static void
on_commit (gpointer user_data, guint64 rpc_id, const GError *error)
{
  Job *job = user_data;
  Acks *acks = job->acks;

  g_mutex_lock (&acks->lock);
  if (error == NULL) {
    g_array_append_val (acks->acked, job->number);
    g_array_append_val (acks->ids, rpc_id);
  }
  acks->done++;
  g_cond_signal (&acks->cond);
  g_mutex_unlock (&acks->lock);
  g_free (job);
}

static void
submit_and_wait (TrRpcStore *store, Acks *acks, guint first, guint n)
{
  guint32 id = 0;
  gint64 end = g_get_monotonic_time () + 30 * G_TIME_SPAN_SECOND;
  guint target;
  TrRpcBatch *batch;

  g_mutex_lock (&acks->lock);
  target = acks->done + n;
  g_mutex_unlock (&acks->lock);
  /* One group commit, as the router makes of what it read at once. */
  batch = tr_rpcbatch_new ();
  for (guint i = first; i < first + n; i++) {
    g_autoptr (GBytes) msg = g_bytes_new_take (g_strdup_printf ("rpc-%08u", i), 12);
    Job *job = g_new0 (Job, 1);
    job->acks = acks;
    job->number = i;
    tr_rpcbatch_add (batch, msg, &id, 1, on_commit, job);
  }
  tr_rpcstore_submit_batch (store, batch);
  tr_rpcbatch_free (batch);
  g_mutex_lock (&acks->lock);
  while (acks->done < target)
    cr_assert (g_cond_wait_until (&acks->cond, &acks->lock, end), "commits timed out");
  g_mutex_unlock (&acks->lock);
}

static TrRpcStoreOptions
options (void)
{
  TrRpcStoreOptions o = { 0 };
  o.group_file_size = 8 * 1024;
  o.rpc_cache_size = 0;
  o.sync_mode = TR_SYNC_ALWAYS;
  o.checkpoint_interval_ms = 20;
  o.max_message_size = 1024;
  return o;
}

static const char *const services[] = { "only", NULL };

/* Every acknowledged message is in the store with the id it was given, the
 * list has exactly head entries, and nothing else is there. */
static void
check_store (TrRpcStore *store, Acks *acks)
{
  guint64 head = tr_rpcstore_head (store);

  cr_assert_eq (head, acks->acked->len, "head %" G_GUINT64_FORMAT " but %u acknowledged", head,
                acks->acked->len);
  cr_assert_eq (tr_rpcstore_service_head (store, 0), head);
  for (guint i = 0; i < acks->acked->len; i++) {
    g_autoptr (GError) error = NULL;
    guint64 rpc = g_array_index (acks->ids, guint64, i);
    g_autoptr (GBytes) msg = tr_rpcstore_get (store, rpc, NULL, &error);
    g_autofree char *expect = g_strdup_printf ("rpc-%08u", g_array_index (acks->acked, guint, i));
    guint64 listed = 0;
    cr_assert_not_null (msg, "acknowledged rpc %" G_GUINT64_FORMAT " lost: %s", rpc, error ? error->message : "");
    cr_assert_eq (g_bytes_get_size (msg), 12);
    cr_assert_arr_eq (g_bytes_get_data (msg, NULL), expect, 12);
    cr_assert (tr_rpcstore_service_lookup (store, 0, i + 1, &listed, NULL));
    cr_assert_eq (listed, rpc);
  }
}

/* Waits (at most 10 s) until the store, failed by a fault that is gone
 * now, reopens by itself and acknowledges a commit again: the store retries
 * its reopen every 500 ms, on the next batch or in its writer thread. */
static void
wait_until_writable (TrRpcStore *store, Acks *acks, guint n)
{
  gint64 end = g_get_monotonic_time () + 10 * G_TIME_SPAN_SECOND;

  for (guint probe = 2000;; probe++) {
    guint before = acks->acked->len;
    submit_and_wait (store, acks, probe, 1);
    if (acks->acked->len > before)
      return;
    cr_assert (g_get_monotonic_time () < end, "store did not recover by itself after fault %u", n);
    g_usleep (20 * 1000);
  }
}

static void
run_countdown (guint ops, int errnum, gboolean short_write)
{
  guint fired_rounds = 0;

  for (guint n = 1; n < 400; n++) {
    g_autofree char *dir = tr_test_mkdtemp ();
    g_autoptr (TrFaultIo) fault = tr_fault_io_new ();
    TrRpcStoreOptions o = options ();
    Acks acks = { 0 };
    TrRpcStore *store = tr_rpcstore_open (tr_fault_io_get_io (fault), dir, &o, services, NULL);
    cr_assert_not_null (store);
    acks.acked = g_array_new (FALSE, FALSE, sizeof (guint));
    acks.ids = g_array_new (FALSE, FALSE, sizeof (guint64));
    submit_and_wait (store, &acks, 0, 50);
    tr_fault_io_arm (fault, ops, n, errnum, FALSE, short_write);
    for (guint round = 0; round < 10; round++)
      submit_and_wait (store, &acks, 50 + round * 20, 20);
    if (!tr_fault_io_fired (fault)) {
      tr_rpcstore_close (store);
      g_array_unref (acks.acked);
      g_array_unref (acks.ids);
      tr_test_rmdir (dir);
      break;
    }
    fired_rounds++;
    tr_fault_io_disarm (fault);
    wait_until_writable (store, &acks, n);
    submit_and_wait (store, &acks, 1000, 30);
    cr_assert_geq (acks.acked->len, 80, "store did not recover by itself after fault %u", n);
    check_store (store, &acks);
    tr_rpcstore_close (store);
    store = tr_rpcstore_open (tr_io_posix (), dir, &o, services, NULL);
    cr_assert_not_null (store, "reopen after fault %u", n);
    check_store (store, &acks);
    tr_rpcstore_close (store);
    g_array_unref (acks.acked);
    g_array_unref (acks.ids);
    tr_test_rmdir (dir);
  }
  cr_assert_gt (fired_rounds, 0);
}

Test (tr_rpcstore_crash, eio_on_every_write_and_sync, .timeout = 300)
{
  run_countdown (TR_FAULT_WRITE | TR_FAULT_FSYNC, EIO, FALSE);
}

Test (tr_rpcstore_crash, enospc_short_writes, .timeout = 300)
{
  run_countdown (TR_FAULT_WRITE, ENOSPC, TRUE);
}

Test (tr_rpcstore_crash, power_loss_keeps_every_acknowledged_rpc, .timeout = 120)
{
  guint32 seed = tr_test_seed ();

  for (guint round = 0; round < 20; round++) {
    g_autofree char *dir = tr_test_mkdtemp ();
    g_autoptr (TrFaultIo) fault = tr_fault_io_new ();
    g_autoptr (GError) error = NULL;
    TrRpcStoreOptions o = options ();
    Acks acks = { 0 };
    TrRpcStore *store;
    TrRpcStore *reopened;

    acks.acked = g_array_new (FALSE, FALSE, sizeof (guint));
    acks.ids = g_array_new (FALSE, FALSE, sizeof (guint64));
    /* A first part, checkpointed by a clean close ... */
    store = tr_rpcstore_open (tr_fault_io_get_io (fault), dir, &o, services, NULL);
    submit_and_wait (store, &acks, 0, 10 + (seed + round * 7919) % 100);
    tr_rpcstore_close (store);
    /* ... then a tail the checkpoint does not cover.  No checkpoint runs
     * while the power goes; the writer may be writing zeros ahead of the
     * data (the fault io serialises it with the power loss). */
    o.checkpoint_interval_ms = 1000000;
    store = tr_rpcstore_open (tr_fault_io_get_io (fault), dir, &o, services, NULL);
    submit_and_wait (store, &acks, 1000, 10 + (seed + round * 104729) % 150);
    tr_fault_io_power_off (fault, round % 2 ? TR_FAULT_LOSS_GARBLE : TR_FAULT_LOSS_DROP, seed + round);
    reopened = tr_rpcstore_open (tr_io_posix (), dir, &o, services, &error);
    cr_assert_not_null (reopened, "round %u: reopen after power loss failed: %s", round,
                        error ? error->message : "");
    check_store (reopened, &acks);
    tr_rpcstore_close (reopened);
    /* The abandoned store's files are dead: closing it changes nothing. */
    tr_rpcstore_close (store);
    g_array_unref (acks.acked);
    g_array_unref (acks.ids);
    tr_test_rmdir (dir);
  }
}

/* sync_mode = interval: an answered RPC may be lost by a power loss only
 * within sync_interval_ms.  The writer must sync on that interval although
 * commits happen on another thread and do not wake it (it used to sleep
 * until the next checkpoint, a whole second). */
Test (tr_rpcstore_crash, interval_mode_syncs_every_interval, .timeout = 60)
{
  g_autofree char *dir = tr_test_mkdtemp ();
  g_autoptr (TrFaultIo) fault = tr_fault_io_new ();
  g_autoptr (GError) error = NULL;
  TrRpcStoreOptions o = options ();
  Acks acks = { 0 };
  TrRpcStore *store, *reopened;

  acks.acked = g_array_new (FALSE, FALSE, sizeof (guint));
  acks.ids = g_array_new (FALSE, FALSE, sizeof (guint64));
  o.sync_mode = TR_SYNC_INTERVAL;
  o.sync_interval_ms = 20;
  o.checkpoint_interval_ms = 1000000; /* no checkpoint syncs the data meanwhile */
  store = tr_rpcstore_open (tr_fault_io_get_io (fault), dir, &o, services, NULL);
  cr_assert_not_null (store);
  g_usleep (100 * 1000); /* the writer is asleep, nothing is unsynced */
  submit_and_wait (store, &acks, 0, 10);
  g_usleep (200 * 1000); /* ten intervals */
  tr_fault_io_power_off (fault, TR_FAULT_LOSS_DROP, 1);
  reopened = tr_rpcstore_open (tr_io_posix (), dir, &o, services, &error);
  cr_assert_not_null (reopened, "reopen after power loss: %s", error ? error->message : "");
  cr_assert_eq (tr_rpcstore_head (reopened), 10, "%" G_GUINT64_FORMAT " of 10 answered rpcs survived",
                tr_rpcstore_head (reopened));
  tr_rpcstore_close (reopened);
  tr_rpcstore_close (store); /* the abandoned store's files are dead */
  g_array_unref (acks.acked);
  g_array_unref (acks.ids);
  tr_test_rmdir (dir);
}

/* ---- apply as follower ---- */

/* The record a leader would ship for rpc @id (commit time and message
 * derived from the id, service 0). */
static TrRpcStoreRecord *
leader_record (guint64 id)
{
  TrRpcStoreRecord *record = g_new0 (TrRpcStoreRecord, 1);

  record->rpc_id = id;
  record->commit_time_us = 1700000000000000 + (gint64) id * 1000;
  record->message = g_bytes_new_take (g_strdup_printf ("rpc-%08u", (guint) id), 12);
  record->n_services = 1;
  record->service_ids = g_new0 (guint32, 1);
  return record;
}

/* Applies rpcs @first..@first+@n-1 as one batch. */
static gboolean
apply_range (TrRpcStore *store, guint64 first, guint n, GError **error)
{
  g_autoptr (GPtrArray) records = g_ptr_array_new_with_free_func ((GDestroyNotify) tr_rpcstore_record_free);

  for (guint i = 0; i < n; i++)
    g_ptr_array_add (records, leader_record (first + i));
  return tr_rpcstore_apply_batch (store, (TrRpcStoreRecord *const *) records->pdata, n, error);
}

/* rpcs 1..@head are in @store exactly as the leader shipped them. */
static void
check_applied (TrRpcStore *store, guint64 head)
{
  cr_assert_eq (tr_rpcstore_head (store), head, "head %" G_GUINT64_FORMAT ", %" G_GUINT64_FORMAT " applied",
                tr_rpcstore_head (store), head);
  cr_assert_eq (tr_rpcstore_service_head (store, 0), head);
  for (guint64 id = 1; id <= head; id++) {
    g_autoptr (GError) error = NULL;
    g_autoptr (TrRpcStoreRecord) expect = leader_record (id);
    g_autoptr (TrRpcStoreRecord) got = tr_rpcstore_read_record (store, id, &error);
    guint64 listed = 0;
    cr_assert_not_null (got, "applied rpc %" G_GUINT64_FORMAT " lost: %s", id, error ? error->message : "");
    cr_assert_eq (got->commit_time_us, expect->commit_time_us);
    cr_assert (g_bytes_equal (got->message, expect->message));
    cr_assert (tr_rpcstore_service_lookup (store, 0, id, &listed, NULL));
    cr_assert_eq (listed, id);
  }
}

/* A follower's applied batches survive a power loss like a leader's
 * commits (same sync path, same recovery), and it goes on at head + 1. */
Test (tr_rpcstore_crash, power_loss_after_follower_applies, .timeout = 120)
{
  guint32 seed = tr_test_seed ();

  for (guint round = 0; round < 10; round++) {
    g_autofree char *dir = tr_test_mkdtemp ();
    g_autoptr (TrFaultIo) fault = tr_fault_io_new ();
    g_autoptr (GError) error = NULL;
    TrRpcStoreOptions o = options ();
    guint64 head = 0;
    TrRpcStore *store, *reopened;

    store = tr_rpcstore_open (tr_fault_io_get_io (fault), dir, &o, services, NULL);
    cr_assert_not_null (store);
    for (guint batch = 0; batch < 3; batch++, head += 10)
      cr_assert (apply_range (store, head + 1, 10, &error), "%s", error ? error->message : "");
    tr_rpcstore_close (store);
    o.checkpoint_interval_ms = 1000000; /* the tail after the checkpoint is recovered from the data */
    store = tr_rpcstore_open (tr_fault_io_get_io (fault), dir, &o, services, NULL);
    for (guint batch = 0; batch < 2 + (seed + round) % 5; batch++) {
      guint n = 1 + (seed + round * 31 + batch * 7) % 40;
      cr_assert (apply_range (store, head + 1, n, &error), "%s", error ? error->message : "");
      head += n;
    }
    tr_fault_io_power_off (fault, round % 2 ? TR_FAULT_LOSS_GARBLE : TR_FAULT_LOSS_DROP, seed + round);
    reopened = tr_rpcstore_open (tr_io_posix (), dir, &o, services, &error);
    cr_assert_not_null (reopened, "round %u: reopen after power loss: %s", round, error ? error->message : "");
    check_applied (reopened, head);
    cr_assert (apply_range (reopened, head + 1, 5, &error), "%s", error ? error->message : "");
    check_applied (reopened, head + 5);
    tr_rpcstore_close (reopened);
    tr_rpcstore_close (store); /* its files are dead */
    tr_test_rmdir (dir);
  }
}

/* A failed fdatasync fails the applied batch with the disk's error; once
 * the disk is back the store reopens by itself and the follower applies
 * again from head + 1, with nothing of the failed batch kept. */
Test (tr_rpcstore_crash, failed_sync_fails_an_applied_batch, .timeout = 60)
{
  g_autofree char *dir = tr_test_mkdtemp ();
  g_autoptr (TrFaultIo) fault = tr_fault_io_new ();
  g_autoptr (GError) error = NULL;
  TrRpcStoreOptions o = options ();
  gint64 end = g_get_monotonic_time () + 10 * G_TIME_SPAN_SECOND;
  TrRpcStore *store = tr_rpcstore_open (tr_fault_io_get_io (fault), dir, &o, services, NULL);

  cr_assert_not_null (store);
  cr_assert (apply_range (store, 1, 10, &error));
  tr_fault_io_set_path_filter (fault, "/data.");
  tr_fault_io_arm (fault, TR_FAULT_FSYNC, 1, EIO, FALSE, FALSE);
  cr_assert_not (apply_range (store, 11, 10, &error));
  cr_assert (g_error_matches (error, TR_STORAGE_ERROR, TR_STORAGE_ERROR_IO), "%s", error->message);
  g_clear_error (&error);
  tr_fault_io_disarm (fault);
  cr_assert_eq (tr_rpcstore_head (store), 10);
  while (!apply_range (store, 11, 10, &error)) {
    cr_assert (g_get_monotonic_time () < end, "the store did not recover: %s", error->message);
    g_clear_error (&error);
    g_usleep (20 * 1000);
  }
  check_applied (store, 20);
  tr_rpcstore_close (store);
  store = tr_rpcstore_open (tr_io_posix (), dir, &o, services, NULL);
  cr_assert_not_null (store);
  check_applied (store, 20);
  tr_rpcstore_close (store);
  tr_test_rmdir (dir);
}
