/* test_tr_positions_crash.c - endpoint send state under injected faults and
 * power loss (tests/support/tr_fault_io.h), like the other primitives.
 *
 * The invariant checked after every crash: reopening gives the position of
 * the last synced write or of a later write that was attempted, never an
 * older one (an acknowledged position never goes backwards past what was
 * synced) and never a value that was not written.  With nothing synced yet,
 * "no position" is also allowed.  For import: every endpoint holds its old
 * position or its imported one.
 */
#include "tr_fault_io.h"
#include "tr_positions.h"
#include "tr_storage_error.h"
#include "tr_test_util.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <glib/gstdio.h>

/* A record is 32 bytes, so a 64 KiB file holds 2048: a run that starts
 * after PREFILL writes rotates within its WRITES. */
#define WRITES 60
#define SYNC_EVERY 7
#define PREFILL 2030

static char *test_dir;

static void
setup (void)
{
  test_dir = tr_test_mkdtemp ();
}

static void
teardown (void)
{
  tr_test_rmdir (test_dir);
  g_clear_pointer (&test_dir, g_free);
}

TestSuite (tr_positions_crash, .init = setup, .fini = teardown);

/* Position number @i: increasing, and recognisable (odd multiples of 3). */
static guint64
position (guint i)
{
  return (guint64) i * 6 + 3;
}

typedef struct {
  guint synced;    /* index of the last write covered by a successful sync, 0 = none */
  guint attempted; /* index of the last write attempted */
} History;

/* Writes positions 1..@count through POSIX and syncs: the state a run
 * starts from. */
static void
prefill (History *history, guint count)
{
  g_autoptr (TrPositions) positions = tr_positions_open (tr_io_posix (), test_dir, NULL);
  g_autoptr (TrPositionsEndpoint) file = NULL;

  if (count == 0)
    return;
  cr_assert_not_null (positions);
  file = tr_positions_open_endpoint (positions, "books", "a", NULL);
  cr_assert_not_null (file);
  for (guint i = 1; i <= count; i++)
    cr_assert (tr_positions_endpoint_write (file, position (i), NULL));
  cr_assert (tr_positions_endpoint_sync (file, NULL));
  history->synced = history->attempted = count;
}

/* Opens, writes positions after @history's and syncs until something fails
 * (the failure must be sticky). */
static void
run_workload (TrIo *io, History *history)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (TrPositions) positions = tr_positions_open (io, test_dir, &error);
  g_autoptr (TrPositionsEndpoint) file = NULL;
  guint first = history->attempted + 1;

  if (positions == NULL)
    return;
  file = tr_positions_open_endpoint (positions, "books", "a", &error);
  if (file == NULL)
    return;
  for (guint i = first; i < first + WRITES; i++) {
    gboolean ok;
    history->attempted = i;
    ok = tr_positions_endpoint_write (file, position (i), &error);
    if (ok && i % SYNC_EVERY == 0) {
      ok = tr_positions_endpoint_sync (file, &error);
      if (ok)
        history->synced = i;
    }
    if (!ok) {
      g_autoptr (GError) again = NULL;
      cr_assert_not (tr_positions_endpoint_write (file, 1, &again));
      cr_assert (g_error_matches (again, TR_STORAGE_ERROR, TR_STORAGE_ERROR_CLOSED), "failure is not sticky: %s",
                 again ? again->message : "no error");
      return;
    }
  }
}

static void
check_recovered (TrIo *io, const History *history)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (TrPositions) positions = tr_positions_open (io, test_dir, &error);
  g_autoptr (TrPositionsEndpoint) file = NULL;
  guint64 acked = 0;

  cr_assert_not_null (positions, "reopen: %s", error ? error->message : "?");
  file = tr_positions_open_endpoint (positions, "books", "a", &error);
  cr_assert_not_null (file, "reopen endpoint: %s", error ? error->message : "?");
  if (!tr_positions_endpoint_load (file, &acked, &error)) {
    cr_assert (g_error_matches (error, TR_STORAGE_ERROR, TR_STORAGE_ERROR_NOT_FOUND), "load: %s", error->message);
    cr_assert_eq (history->synced, 0, "synced position %u lost", history->synced);
    return;
  }
  cr_assert_eq (acked % 6, 3, "garbage position %" G_GUINT64_FORMAT, acked);
  cr_assert_geq (acked, position (history->synced), "position %" G_GUINT64_FORMAT " went back past synced %"
                 G_GUINT64_FORMAT, acked, position (history->synced));
  cr_assert_leq (acked, position (history->attempted), "position %" G_GUINT64_FORMAT " never written", acked);
}

static void
fresh_dir (void)
{
  tr_test_rmdir (test_dir);
  cr_assert_eq (g_mkdir (test_dir, 0700), 0);
}

/* Countdown: fail the n-th mutating call for n = 1, 2, ... until a run
 * completes without the fault firing.  @loss < 0: no power loss. */
static void
countdown (guint prefilled, gboolean short_write, gboolean persistent, int loss)
{
  guint32 seed = tr_test_seed ();
  guint n;

  for (n = 1;; n++) {
    g_autoptr (TrFaultIo) fault = tr_fault_io_new ();
    TrIo *io = tr_fault_io_get_io (fault);
    History history = { 0 };
    gboolean fired;

    fresh_dir ();
    prefill (&history, prefilled);
    tr_fault_io_arm (fault, short_write ? TR_FAULT_WRITE : TR_FAULT_ALL_MUTATING, n, EIO, persistent,
                     short_write);
    run_workload (io, &history);
    fired = tr_fault_io_fired (fault);
    tr_fault_io_disarm (fault);
    if (loss >= 0)
      tr_fault_io_power_loss (fault, (TrFaultLoss) loss, seed + n);
    check_recovered (loss >= 0 ? io : tr_io_posix (), &history);
    if (!fired)
      break;
  }
  cr_assert_gt (n, WRITES / SYNC_EVERY, "the workload made only %u mutating calls", n);
}

Test (tr_positions_crash, countdown_eio, .timeout = 300)
{
  countdown (0, FALSE, FALSE, -1);
  countdown (PREFILL, FALSE, FALSE, -1);
}

Test (tr_positions_crash, countdown_eio_persistent, .timeout = 300)
{
  countdown (0, FALSE, TRUE, -1);
  countdown (PREFILL, FALSE, TRUE, -1);
}

Test (tr_positions_crash, countdown_short_writes_then_power_loss_garble, .timeout = 300)
{
  countdown (0, TRUE, FALSE, TR_FAULT_LOSS_GARBLE);
  countdown (PREFILL, TRUE, FALSE, TR_FAULT_LOSS_GARBLE);
}

Test (tr_positions_crash, countdown_then_power_loss_drop, .timeout = 300)
{
  countdown (0, FALSE, FALSE, TR_FAULT_LOSS_DROP);
  countdown (PREFILL, FALSE, FALSE, TR_FAULT_LOSS_DROP);
}

/* Import under faults: each endpoint ends with its old position or the
 * imported one, never anything else, and an import that returned TRUE is
 * all there after a power loss. */
#define IMPORT_ENDPOINTS 6

static void
import_countdown (int loss)
{
  g_autofree char *source_dir = g_build_filename (test_dir, "..", "positions-source", NULL);
  g_autoptr (GBytes) exported = NULL;
  guint32 seed = tr_test_seed ();
  guint n;

  {
    g_autoptr (TrPositions) source = NULL;
    g_mkdir_with_parents (source_dir, 0700);
    source = tr_positions_open (tr_io_posix (), source_dir, NULL);
    cr_assert_not_null (source);
    for (guint e = 0; e < IMPORT_ENDPOINTS; e++) {
      g_autofree char *id = g_strdup_printf ("e%u", e);
      g_autoptr (TrPositionsEndpoint) file = tr_positions_open_endpoint (source, "books", id, NULL);
      cr_assert (file != NULL && tr_positions_endpoint_write (file, 1000 + e, NULL));
    }
    exported = tr_positions_export (source);
  }
  for (n = 1;; n++) {
    g_autoptr (TrFaultIo) fault = tr_fault_io_new ();
    TrIo *io = tr_fault_io_get_io (fault);
    g_autoptr (TrPositions) target = NULL;
    gboolean imported, fired;

    fresh_dir ();
    target = tr_positions_open (io, test_dir, NULL);
    cr_assert_not_null (target);
    for (guint e = 0; e < IMPORT_ENDPOINTS; e++) {
      g_autofree char *id = g_strdup_printf ("e%u", e);
      g_autoptr (TrPositionsEndpoint) file = tr_positions_open_endpoint (target, "books", id, NULL);
      cr_assert (file != NULL && tr_positions_endpoint_write (file, e, NULL)
                 && tr_positions_endpoint_sync (file, NULL));
    }
    tr_fault_io_arm (fault, TR_FAULT_ALL_MUTATING, n, EIO, FALSE, FALSE);
    imported = tr_positions_import (target, exported, NULL);
    fired = tr_fault_io_fired (fault);
    tr_fault_io_disarm (fault);
    g_clear_pointer (&target, tr_positions_free);
    if (loss >= 0)
      tr_fault_io_power_loss (fault, (TrFaultLoss) loss, seed + n);
    target = tr_positions_open (loss >= 0 ? io : tr_io_posix (), test_dir, NULL);
    cr_assert_not_null (target);
    for (guint e = 0; e < IMPORT_ENDPOINTS; e++) {
      g_autofree char *id = g_strdup_printf ("e%u", e);
      g_autoptr (TrPositionsEndpoint) file = tr_positions_open_endpoint (target, "books", id, NULL);
      g_autoptr (GError) error = NULL;
      guint64 acked = G_MAXUINT64;
      cr_assert_not_null (file, "n=%u: reopen e%u", n, e);
      cr_assert (tr_positions_endpoint_load (file, &acked, &error), "n=%u e%u: %s", n, e, error->message);
      cr_assert (acked == e || acked == 1000 + e, "n=%u e%u: position %" G_GUINT64_FORMAT, n, e, acked);
      if (imported)
        cr_assert_eq (acked, 1000 + e, "n=%u e%u: import returned TRUE but position is old", n, e);
    }
    if (!fired)
      break;
  }
  cr_assert_gt (n, IMPORT_ENDPOINTS, "the import made only %u mutating calls", n);
  tr_test_rmdir (source_dir);
}

Test (tr_positions_crash, import_countdown_eio, .timeout = 300)
{
  import_countdown (-1);
}

Test (tr_positions_crash, import_countdown_then_power_loss_garble, .timeout = 300)
{
  import_countdown (TR_FAULT_LOSS_GARBLE);
}
