/* test_tr_groupfile_crash.c - GroupFile under injected faults and power loss.
 *
 * Every scenario runs a workload (appends, syncs, retention drops) on the
 * fault-injecting TrIo, stops it by a fault or a simulated power loss,
 * reopens the GroupFile through the same TrIo and checks that every record
 * written before the last successful sync reads back intact (no acknowledged
 * byte lost), and that the file is sticky FAILED after a fault.
 */
#include "tr_fault_io.h"
#include "tr_groupfile.h"
#include "tr_storage_error.h"
#include "tr_test_util.h"

#include <criterion/criterion.h>
#include <glib/gstdio.h>
#include <errno.h>
#include <string.h>

#define PART 256
#define N_RECORDS 60

typedef struct {
  guint64 offset;
  guint len;
  guint seq;
} Rec;

typedef struct {
  GArray *recs;       /* Rec, every append that succeeded */
  guint synced;       /* recs[0 .. synced) were covered by a successful sync */
  guint64 synced_end; /* tr_groupfile_size() at that sync */
  guint64 dropped;    /* highest offset passed to drop_before */
  gboolean drop_failed; /* the workload stopped on a failed drop_before */
} Model;

static char *root;
static guint32 seed; /* tr_test_seed(), read once per test */

static void
setup (void)
{
  root = tr_test_mkdtemp ();
  seed = tr_test_seed ();
}

static void
teardown (void)
{
  tr_test_rmdir (root);
  g_free (root);
}

TestSuite (tr_groupfile_crash, .init = setup, .fini = teardown, .timeout = 300);

static guint8
rec_byte (guint seq, guint i)
{
  return (guint8) (seq * 131u + i * 7u + 1u);
}

static guint
rec_len (guint seq)
{
  /* Deterministic mix of small, large and part-filling records. */
  static const guint lens[] = { 17, 100, 1, 200, 56, PART, 90, 33, 140, 7 };
  return lens[seq % G_N_ELEMENTS (lens)];
}

static void
model_init (Model *model)
{
  memset (model, 0, sizeof *model);
  model->recs = g_array_new (FALSE, FALSE, sizeof (Rec));
}

static void
model_clear (Model *model)
{
  g_array_unref (model->recs);
}

/* Runs the workload until it finishes or a call fails; returns the error of
 * the failing call (NULL when the workload completed). */
static GError *
run_workload (TrGroupFile *file, Model *model, guint n_records)
{
  GError *error = NULL;
  guint8 buf[PART];

  for (guint seq = 0; seq < n_records; seq++) {
    Rec rec = { 0, rec_len (seq), seq };
    for (guint i = 0; i < rec.len; i++)
      buf[i] = rec_byte (seq, i);
    if (!tr_groupfile_append (file, buf, rec.len, &rec.offset, &error))
      return error;
    g_array_append_val (model->recs, rec);
    if (seq % 4 == 3) {
      if (!tr_groupfile_sync (file, &error))
        return error;
      model->synced = model->recs->len;
      model->synced_end = tr_groupfile_size (file);
    }
    if (seq % 10 == 9) {
      guint64 keep = g_array_index (model->recs, Rec, model->recs->len / 2).offset;
      /* Asked, even if the call fails part-way after deleting some parts. */
      model->dropped = MAX (model->dropped, keep);
      if (!tr_groupfile_drop_before (file, keep, &error)) {
        model->drop_failed = TRUE;
        return error;
      }
    }
  }
  return NULL;
}

static TrGroupFile *
open_or_die (TrIo *io, const char *dir)
{
  g_autoptr (GError) error = NULL;
  TrGroupFile *file = tr_groupfile_open (io, dir, "log", PART, &error);

  cr_assert_not_null (file, "reopen: %s", error ? error->message : "?");
  return file;
}

/* Every synced record that retention was not asked to drop reads back. */
static void
verify_synced (TrGroupFile *file, const Model *model, const char *what)
{
  guint8 buf[PART];

  for (guint k = 0; k < model->synced; k++) {
    const Rec *rec = &g_array_index (model->recs, Rec, k);
    g_autoptr (GError) error = NULL;
    gsize got = 0;

    if (rec->offset + rec->len <= model->dropped && rec->offset < tr_groupfile_first_offset (file))
      continue;
    cr_assert (rec->offset >= tr_groupfile_first_offset (file),
               "%s: record %u at %" G_GUINT64_FORMAT " dropped without being asked", what,
               rec->seq, rec->offset);
    cr_assert (tr_groupfile_read (file, rec->offset, buf, rec->len, &got, &error), "%s: %s", what,
               error ? error->message : "?");
    cr_assert_eq (got, rec->len, "%s: record %u short (%zu of %u)", what, rec->seq, got, rec->len);
    for (guint i = 0; i < rec->len; i++)
      cr_assert_eq (buf[i], rec_byte (rec->seq, i), "%s: record %u byte %u differs", what,
                    rec->seq, i);
  }
  cr_assert (tr_groupfile_size (file) >= model->synced_end, "%s: size %" G_GUINT64_FORMAT
             " < synced end %" G_GUINT64_FORMAT, what, tr_groupfile_size (file), model->synced_end);
}

static void
expect_closed (TrGroupFile *file, const GError *cause)
{
  g_autoptr (GError) error = NULL;
  guint8 buf[4] = { 1, 2, 3, 4 };
  gsize got = 0;

  cr_assert_not (tr_groupfile_append (file, buf, sizeof buf, NULL, &error));
  cr_assert (g_error_matches (error, TR_STORAGE_ERROR, TR_STORAGE_ERROR_CLOSED), "%s",
             error->message);
  cr_assert (strstr (error->message, cause->message) != NULL, "CLOSED names the cause: %s",
             error->message);
  g_clear_error (&error);
  cr_assert_not (tr_groupfile_sync (file, &error));
  cr_assert (g_error_matches (error, TR_STORAGE_ERROR, TR_STORAGE_ERROR_CLOSED));
  g_clear_error (&error);
  /* Reads still work in FAILED (the store keeps delivering on a full disk). */
  cr_assert (tr_groupfile_read (file, tr_groupfile_first_offset (file), buf, 1, &got, &error), "%s",
             error ? error->message : "");
  cr_assert_not (tr_groupfile_drop_before (file, 0, &error));
  cr_assert (g_error_matches (error, TR_STORAGE_ERROR, TR_STORAGE_ERROR_CLOSED));
}

/* After a reopen the file takes writes again and keeps them. */
static void
expect_usable (TrGroupFile *file)
{
  g_autoptr (GError) error = NULL;
  guint64 offset = 0;

  cr_assert (tr_groupfile_append (file, "tail", 4, &offset, &error), "%s",
             error ? error->message : "");
  cr_assert (tr_groupfile_sync (file, &error), "%s", error ? error->message : "");
}

typedef enum { AFTER_FAULT_REOPEN, AFTER_FAULT_DROP, AFTER_FAULT_GARBLE } AfterFault;

/* One countdown run: fault on the @n-th op in @ops.  Returns FALSE when the
 * fault never fired (the workload ran to the end). */
static gboolean
countdown_once (guint n, guint ops, int errnum, gboolean short_write, AfterFault after)
{
  g_autoptr (TrFaultIo) fault = tr_fault_io_new ();
  g_autofree char *dir = g_strdup_printf ("%s/run-%u-%d", root, n, (int) after);
  g_autoptr (GError) error = NULL;
  TrIo *io = tr_fault_io_get_io (fault);
  TrGroupFile *file;
  Model model;
  gboolean fired;

  cr_assert_eq (g_mkdir (dir, 0755), 0);
  model_init (&model);
  file = open_or_die (io, dir);
  tr_fault_io_arm (fault, ops, n, errnum, FALSE, short_write);
  error = run_workload (file, &model, N_RECORDS);
  fired = tr_fault_io_fired (fault);
  cr_assert_eq (error != NULL, fired, "n=%u: error %s but fired=%d", n,
                error ? error->message : "none", fired);
  tr_fault_io_disarm (fault);
  if (fired) {
    cr_assert (error->domain == TR_STORAGE_ERROR && error->code != TR_STORAGE_ERROR_CLOSED,
               "n=%u: %s", n, error->message);
    /* A part retention cannot delete leaves the file usable (nothing of
     * the stream changed); every other failure is sticky. */
    if (model.drop_failed)
      expect_usable (file);
    else
      expect_closed (file, error);
  }
  tr_groupfile_free (file);
  if (after == AFTER_FAULT_DROP)
    tr_fault_io_power_loss (fault, TR_FAULT_LOSS_DROP, seed + n);
  else if (after == AFTER_FAULT_GARBLE)
    tr_fault_io_power_loss (fault, TR_FAULT_LOSS_GARBLE, seed + n);
  file = open_or_die (io, dir);
  verify_synced (file, &model, "after countdown fault");
  expect_usable (file);
  tr_groupfile_free (file);
  model_clear (&model);
  return fired;
}

static void
countdown_all (guint ops, int errnum, gboolean short_write, AfterFault after)
{
  guint n = 1;

  while (countdown_once (n, ops, errnum, short_write, after)) {
    n++;
    cr_assert (n < 10000, "the workload never finishes");
  }
  cr_assert (n > 10, "only %u fault points: the workload is too small", n);
}

Test (tr_groupfile_crash, countdown_eio_then_reopen)
{
  countdown_all (TR_FAULT_ALL_MUTATING, EIO, FALSE, AFTER_FAULT_REOPEN);
}

Test (tr_groupfile_crash, countdown_eio_then_power_loss_drop)
{
  countdown_all (TR_FAULT_ALL_MUTATING, EIO, FALSE, AFTER_FAULT_DROP);
}

Test (tr_groupfile_crash, countdown_eio_then_power_loss_garble)
{
  countdown_all (TR_FAULT_ALL_MUTATING, EIO, FALSE, AFTER_FAULT_GARBLE);
}

Test (tr_groupfile_crash, countdown_short_writes)
{
  countdown_all (TR_FAULT_WRITE, EIO, TRUE, AFTER_FAULT_REOPEN);
}

Test (tr_groupfile_crash, enospc_is_full_and_sticky)
{
  g_autoptr (TrFaultIo) fault = tr_fault_io_new ();
  g_autoptr (GError) error = NULL;
  TrIo *io = tr_fault_io_get_io (fault);
  TrGroupFile *file = open_or_die (io, root);
  Model model;

  model_init (&model);
  tr_fault_io_arm (fault, TR_FAULT_WRITE, 7, ENOSPC, TRUE, FALSE);
  error = run_workload (file, &model, N_RECORDS);
  cr_assert_not_null (error);
  cr_assert (g_error_matches (error, TR_STORAGE_ERROR, TR_STORAGE_ERROR_FULL), "%s",
             error->message);
  cr_assert (strstr (error->message, "log.") != NULL, "names the part: %s", error->message);
  expect_closed (file, error);
  tr_groupfile_free (file);
  tr_fault_io_disarm (fault);
  file = open_or_die (io, root);
  verify_synced (file, &model, "after ENOSPC");
  tr_groupfile_free (file);
  model_clear (&model);
}

Test (tr_groupfile_crash, short_write_leaves_half_for_the_owner)
{
  g_autoptr (TrFaultIo) fault = tr_fault_io_new ();
  g_autoptr (GError) error = NULL;
  TrIo *io = tr_fault_io_get_io (fault);
  TrGroupFile *file = open_or_die (io, root);
  guint8 buf[100];
  guint64 size_before;

  memset (buf, 'a', sizeof buf);
  cr_assert (tr_groupfile_append (file, buf, 50, NULL, NULL));
  cr_assert (tr_groupfile_sync (file, NULL));
  size_before = tr_groupfile_size (file);
  tr_fault_io_arm (fault, TR_FAULT_WRITE, 1, EIO, FALSE, TRUE);
  cr_assert_not (tr_groupfile_append (file, buf, sizeof buf, NULL, &error));
  expect_closed (file, error);
  tr_groupfile_free (file);

  /* The torn half is on disk; the owner, which knows its records, cuts it. */
  file = open_or_die (io, root);
  cr_assert_eq (tr_groupfile_size (file), size_before + sizeof buf / 2);
  cr_assert (tr_groupfile_truncate (file, size_before, NULL));
  cr_assert (tr_groupfile_sync (file, NULL));
  cr_assert_eq (tr_groupfile_size (file), size_before);
  tr_groupfile_free (file);
}

/* Random workloads with a power loss at a random point. */
static void
power_loss_run (TrFaultLoss mode, guint32 run_seed)
{
  g_autoptr (TrFaultIo) fault = tr_fault_io_new ();
  g_autoptr (GRand) rand = g_rand_new_with_seed (run_seed);
  g_autofree char *dir = g_strdup_printf ("%s/pl-%u-%d", root, run_seed, (int) mode);
  TrIo *io = tr_fault_io_get_io (fault);
  guint n_records = (guint) g_rand_int_range (rand, 1, 3 * N_RECORDS);
  TrGroupFile *file;
  GError *error;
  Model model;

  cr_assert_eq (g_mkdir (dir, 0755), 0);
  model_init (&model);
  file = open_or_die (io, dir);
  error = run_workload (file, &model, n_records);
  cr_assert_null (error, "%s", error ? error->message : "");
  tr_fault_io_power_loss (fault, mode, run_seed);
  tr_groupfile_free (file);

  file = open_or_die (io, dir);
  verify_synced (file, &model, mode == TR_FAULT_LOSS_DROP ? "drop" : "garble");
  if (mode == TR_FAULT_LOSS_DROP)
    cr_assert_eq (tr_groupfile_size (file), model.synced_end,
                  "DROP leaves exactly the synced bytes (run seed %u)", run_seed);
  expect_usable (file);
  tr_groupfile_free (file);
  model_clear (&model);
}

Test (tr_groupfile_crash, power_loss_drop)
{
  for (guint32 i = 0; i < 40; i++)
    power_loss_run (TR_FAULT_LOSS_DROP, seed + i);
}

Test (tr_groupfile_crash, power_loss_garble)
{
  for (guint32 i = 0; i < 40; i++)
    power_loss_run (TR_FAULT_LOSS_GARBLE, seed + i);
}

Test (tr_groupfile_crash, power_loss_after_drop_keeps_parts_contiguous)
{
  g_autoptr (TrFaultIo) fault = tr_fault_io_new ();
  TrIo *io = tr_fault_io_get_io (fault);
  TrGroupFile *file = open_or_die (io, root);
  guint8 buf[PART];

  memset (buf, 'x', sizeof buf);
  for (int i = 0; i < 6; i++)
    cr_assert (tr_groupfile_append (file, buf, PART, NULL, NULL));
  cr_assert (tr_groupfile_sync (file, NULL));
  cr_assert (tr_groupfile_drop_before (file, 3 * PART, NULL));
  cr_assert (tr_groupfile_truncate (file, 4 * PART + 10, NULL));
  /* Neither the deletions nor the truncation were synced. */
  tr_fault_io_power_loss (fault, TR_FAULT_LOSS_DROP, seed);
  tr_groupfile_free (file);
  file = open_or_die (io, root);
  cr_assert_eq (tr_groupfile_first_offset (file), 0, "unsynced unlinks come back");
  cr_assert_eq (tr_groupfile_size (file), 6 * PART);
  tr_groupfile_free (file);
}

/* A sync in three steps covers what was written before its begin; a write
 * made during its fsyncs keeps the part dirty, so the next sync syncs it
 * again (and a power loss after that keeps it). */
Test (tr_groupfile_crash, write_during_split_sync_is_left_for_the_next_sync)
{
  g_autoptr (TrFaultIo) fault = tr_fault_io_new ();
  g_autoptr (GError) error = NULL;
  TrIo *io = tr_fault_io_get_io (fault);
  TrGroupFile *file = open_or_die (io, root);
  TrGroupFileSync *sync;
  guint8 a[10], b[10];
  guint fsyncs;

  memset (a, 0xaa, sizeof a);
  memset (b, 0xbb, sizeof b);
  cr_assert (tr_groupfile_append (file, a, sizeof a, NULL, &error));
  sync = tr_groupfile_sync_begin (file, &error);
  cr_assert_not_null (sync);
  cr_assert (tr_groupfile_append (file, b, sizeof b, NULL, &error));
  tr_groupfile_sync_run (sync);
  cr_assert (tr_groupfile_sync_end (file, sync, &error), "%s", error ? error->message : "");
  fsyncs = tr_fault_io_count (fault, TR_FAULT_FSYNC);
  cr_assert (tr_groupfile_sync (file, &error));
  cr_assert_eq (tr_fault_io_count (fault, TR_FAULT_FSYNC), fsyncs + 1, "the part written during the sync "
                "was not synced again");
  /* Nothing written since: nothing to sync. */
  cr_assert (tr_groupfile_sync (file, &error));
  cr_assert_eq (tr_fault_io_count (fault, TR_FAULT_FSYNC), fsyncs + 1);
  /* A failed split sync makes the file FAILED, as tr_groupfile_sync() does. */
  cr_assert (tr_groupfile_append (file, a, sizeof a, NULL, &error));
  tr_fault_io_arm (fault, TR_FAULT_FSYNC, 1, EIO, FALSE, FALSE);
  sync = tr_groupfile_sync_begin (file, &error);
  tr_groupfile_sync_run (sync);
  cr_assert_not (tr_groupfile_sync_end (file, sync, &error));
  cr_assert (g_error_matches (error, TR_STORAGE_ERROR, TR_STORAGE_ERROR_IO), "%s", error->message);
  g_clear_error (&error);
  cr_assert_null (tr_groupfile_sync_begin (file, &error));
  cr_assert (g_error_matches (error, TR_STORAGE_ERROR, TR_STORAGE_ERROR_CLOSED));
  tr_groupfile_free (file);
}
