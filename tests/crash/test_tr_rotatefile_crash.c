/* test_tr_rotatefile_crash.c - RotateFile under injected faults and power
 * loss (tests/support/tr_fault_io.h).
 *
 * The invariant checked after every crash: load returns the state of the
 * last successfully synced write or of a later write that was attempted,
 * byte-exact, never an older state and never garbage.  With nothing synced
 * yet, NOT_FOUND is also allowed.
 */
#include "tr_fault_io.h"
#include "tr_rotatefile.h"
#include "tr_storage_error.h"
#include "tr_test_util.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <glib/gstdio.h>
#include <string.h>

/* Small files so that a run of writes rotates many times. */
#define MAX_FILE 256
#define WRITES 60

static char *test_dir;
static char *base;

static void
setup (void)
{
  test_dir = tr_test_mkdtemp ();
  base = g_build_filename (test_dir, "state", NULL);
}

static void
teardown (void)
{
  tr_test_rmdir (test_dir);
  g_clear_pointer (&test_dir, g_free);
  g_clear_pointer (&base, g_free);
}

TestSuite (tr_rotatefile_crash, .init = setup, .fini = teardown);

/* What the workload did: seq -> the state last written with that seq. */
typedef struct {
  GHashTable *written; /* guint64 seq -> char * state */
  guint64 synced_seq;  /* seq of the last write covered by a successful sync */
  guint64 max_seq;     /* highest seq ever attempted */
} History;

static void
history_init (History *history)
{
  history->written = g_hash_table_new_full (g_int64_hash, g_int64_equal, g_free, g_free);
  history->synced_seq = 0;
  history->max_seq = 0;
}

static void
history_clear (History *history)
{
  g_clear_pointer (&history->written, g_hash_table_destroy);
}

static void
history_note (History *history, guint64 seq, const char *state)
{
  guint64 *key = g_new (guint64, 1);

  *key = seq;
  g_hash_table_replace (history->written, key, g_strdup (state));
  history->max_seq = MAX (history->max_seq, seq);
}

/* State number @i: varying lengths so rotation points move around. */
static char *
make_state (guint i)
{
  return g_strdup_printf ("endpoint=%u ack=%u pad=%.*s", i % 5, i * 7919, (int) (i % 23),
                          "abcdefghijklmnopqrstuvwxyz");
}

/* Opens, writes and syncs until something fails.  Returns FALSE when a call
 * failed (and checks the failure is sticky). */
static gboolean
run_workload (TrIo *io, History *history, guint writes, guint sync_every)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (TrRotateFile) rotatefile = tr_rotatefile_open (io, base, MAX_FILE, &error);
  guint64 seq;

  if (rotatefile == NULL)
    return FALSE;
  seq = tr_rotatefile_get_seq (rotatefile);
  for (guint i = 1; i <= writes; i++) {
    g_autofree char *state = make_state (i);
    gboolean ok;

    history_note (history, seq + 1, state);
    ok = tr_rotatefile_write (rotatefile, state, strlen (state), &error);
    if (ok)
      seq++;
    if (ok && i % sync_every == 0) {
      ok = tr_rotatefile_sync (rotatefile, &error);
      if (ok)
        history->synced_seq = seq;
    }
    if (!ok) {
      g_autoptr (GError) again = NULL;
      cr_assert_not (tr_rotatefile_write (rotatefile, "x", 1, &again));
      cr_assert (g_error_matches (again, TR_STORAGE_ERROR, TR_STORAGE_ERROR_CLOSED),
                 "failure is not sticky: %s", again ? again->message : "no error");
      return FALSE;
    }
  }
  return TRUE;
}

/* Reopens through @io and checks the invariant; returns the loaded seq. */
static guint64
check_recovered (TrIo *io, const History *history)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (TrRotateFile) rotatefile = tr_rotatefile_open (io, base, MAX_FILE, &error);
  g_autoptr (GBytes) state = NULL;
  const char *want;
  guint64 seq = 0;

  cr_assert_not_null (rotatefile, "reopen: %s", error ? error->message : "?");
  state = tr_rotatefile_load (rotatefile, &seq, &error);
  if (state == NULL) {
    cr_assert (g_error_matches (error, TR_STORAGE_ERROR, TR_STORAGE_ERROR_NOT_FOUND), "load: %s",
               error->message);
    cr_assert_eq (history->synced_seq, 0, "synced seq %" G_GUINT64_FORMAT " lost",
                  history->synced_seq);
    return 0;
  }
  cr_assert_geq (seq, history->synced_seq, "seq %" G_GUINT64_FORMAT " older than synced %" G_GUINT64_FORMAT,
                 seq, history->synced_seq);
  cr_assert_leq (seq, history->max_seq, "seq %" G_GUINT64_FORMAT " never written", seq);
  want = g_hash_table_lookup (history->written, &seq);
  cr_assert_not_null (want);
  cr_assert_eq (g_bytes_get_size (state), strlen (want), "seq %" G_GUINT64_FORMAT ": wrong length", seq);
  cr_assert (memcmp (g_bytes_get_data (state, NULL), want, strlen (want)) == 0,
             "seq %" G_GUINT64_FORMAT ": garbage state", seq);
  return seq;
}

/* Countdown: fail the n-th mutating call, for n = 1, 2, ... until a run
 * completes without the fault firing.  @loss < 0: no power loss. */
static void
countdown (int errnum, gboolean short_write, gboolean persistent, int loss)
{
  guint32 seed = tr_test_seed ();
  guint n;

  for (n = 1;; n++) {
    g_autoptr (TrFaultIo) fault = tr_fault_io_new ();
    TrIo *io = tr_fault_io_get_io (fault);
    History history;
    gboolean fired;

    tr_test_rmdir (test_dir);
    cr_assert_eq (g_mkdir (test_dir, 0700), 0);
    history_init (&history);
    tr_fault_io_arm (fault, short_write ? TR_FAULT_WRITE : TR_FAULT_ALL_MUTATING, n, errnum, persistent,
                     short_write);
    run_workload (io, &history, WRITES, 3);
    fired = tr_fault_io_fired (fault);
    tr_fault_io_disarm (fault);
    if (loss >= 0)
      tr_fault_io_power_loss (fault, (TrFaultLoss) loss, seed + n);
    check_recovered (loss >= 0 ? io : tr_io_posix (), &history);
    history_clear (&history);
    if (!fired)
      break;
  }
  cr_assert_gt (n, 10, "the workload made only %u mutating calls", n);
}

Test (tr_rotatefile_crash, countdown_eio)
{
  countdown (EIO, FALSE, FALSE, -1);
}

Test (tr_rotatefile_crash, countdown_eio_persistent)
{
  countdown (EIO, FALSE, TRUE, -1);
}

Test (tr_rotatefile_crash, countdown_short_writes)
{
  countdown (EIO, TRUE, FALSE, -1);
}

Test (tr_rotatefile_crash, countdown_then_power_loss_drop)
{
  countdown (EIO, FALSE, FALSE, TR_FAULT_LOSS_DROP);
}

Test (tr_rotatefile_crash, countdown_then_power_loss_garble)
{
  countdown (EIO, TRUE, FALSE, TR_FAULT_LOSS_GARBLE);
}

Test (tr_rotatefile_crash, enospc_is_full_and_sticky)
{
  g_autoptr (TrFaultIo) fault = tr_fault_io_new ();
  TrIo *io = tr_fault_io_get_io (fault);
  g_autoptr (GError) error = NULL;
  g_autoptr (TrRotateFile) rotatefile = tr_rotatefile_open (io, base, MAX_FILE, &error);
  History history;

  cr_assert_not_null (rotatefile);
  history_init (&history);
  history_note (&history, 1, "before");
  cr_assert (tr_rotatefile_write (rotatefile, "before", 6, &error));
  cr_assert (tr_rotatefile_sync (rotatefile, &error));
  history.synced_seq = 1;
  tr_fault_io_arm (fault, TR_FAULT_WRITE, 1, ENOSPC, TRUE, FALSE);
  history_note (&history, 2, "after");
  cr_assert_not (tr_rotatefile_write (rotatefile, "after", 5, &error));
  cr_assert (g_error_matches (error, TR_STORAGE_ERROR, TR_STORAGE_ERROR_FULL), "error: %s",
             error ? error->message : "none");
  g_clear_error (&error);
  cr_assert_not (tr_rotatefile_sync (rotatefile, &error));
  cr_assert (g_error_matches (error, TR_STORAGE_ERROR, TR_STORAGE_ERROR_CLOSED));
  g_clear_error (&error);
  cr_assert_null (tr_rotatefile_load (rotatefile, NULL, &error));
  cr_assert (g_error_matches (error, TR_STORAGE_ERROR, TR_STORAGE_ERROR_CLOSED));
  tr_fault_io_disarm (fault);
  g_clear_pointer (&rotatefile, tr_rotatefile_free);
  cr_assert_eq (check_recovered (io, &history), 1);
  history_clear (&history);
}

/* Random workload with power losses at random points, recovering through
 * the same fault io each time and going on from the recovered state. */
static void
random_power_loss (TrFaultLoss mode)
{
  guint32 seed = tr_test_seed ();
  g_autoptr (GRand) rand = g_rand_new_with_seed (seed);
  g_autoptr (TrFaultIo) fault = tr_fault_io_new ();
  TrIo *io = tr_fault_io_get_io (fault);
  History history;

  history_init (&history);
  for (guint round = 0; round < 60; round++) {
    g_autoptr (GError) error = NULL;
    g_autoptr (TrRotateFile) rotatefile = tr_rotatefile_open (io, base, MAX_FILE, &error);
    guint steps = (guint) g_rand_int_range (rand, 0, 30);
    guint64 seq;

    cr_assert_not_null (rotatefile, "round %u: open: %s", round, error ? error->message : "?");
    seq = tr_rotatefile_get_seq (rotatefile);
    for (guint i = 0; i < steps; i++) {
      g_autofree char *state = make_state ((guint) g_rand_int_range (rand, 0, 1000));
      history_note (&history, seq + 1, state);
      cr_assert (tr_rotatefile_write (rotatefile, state, strlen (state), &error));
      seq++;
      if (g_rand_int_range (rand, 0, 4) == 0) {
        cr_assert (tr_rotatefile_sync (rotatefile, &error));
        history.synced_seq = seq;
      }
    }
    tr_fault_io_power_loss (fault, mode, g_rand_int (rand));
    g_clear_pointer (&rotatefile, tr_rotatefile_free);
    seq = check_recovered (io, &history);
    /* What survived is the new baseline; later writes reuse higher seqs. */
    history.synced_seq = seq;
    history.max_seq = seq;
  }
  history_clear (&history);
}

Test (tr_rotatefile_crash, random_power_loss_drop)
{
  random_power_loss (TR_FAULT_LOSS_DROP);
}

Test (tr_rotatefile_crash, random_power_loss_garble)
{
  random_power_loss (TR_FAULT_LOSS_GARBLE);
}
