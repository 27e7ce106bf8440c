/* test_tr_dwfile_crash.c - DoubleWriteFile under injected faults, power
 * loss and hand-made kills (tests/support/tr_fault_io.h).
 *
 * The invariant checked after every crash: once recovered, PATH holds
 * exactly the old or exactly the new content (byte for byte), the new one
 * whenever tr_dwfile_replace() returned TRUE, and no side copy is left.
 */
#include "tr_dwfile.h"
#include "tr_endian.h"
#include "tr_fault_io.h"
#include "tr_record.h"
#include "tr_storage_error.h"
#include "tr_test_util.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <glib/gstdio.h>
#include <string.h>

static char *test_dir;
static char *target;
static char *side;

static void
setup (void)
{
  test_dir = tr_test_mkdtemp ();
  target = g_build_filename (test_dir, "node.meta", NULL);
  side = g_strconcat (target, TR_DWFILE_SUFFIX, NULL);
}

static void
teardown (void)
{
  tr_test_rmdir (test_dir);
  g_clear_pointer (&test_dir, g_free);
  g_clear_pointer (&target, g_free);
  g_clear_pointer (&side, g_free);
}

TestSuite (tr_dwfile_crash, .init = setup, .fini = teardown);

/* Old longer than new in one pair, shorter in the other, so both a
 * leftover tail and a missing tail are exercised. */
static const char old_long[] = "# node metadata\n# keep this comment\nnode_id = 17\nrole = master\n"
                               "peers = a:9090, b:9090, c:9090\n";
static const char new_short[] = "# node metadata\nnode_id = 17\nrole = slave\n";

static void
reset_dir (void)
{
  tr_test_rmdir (test_dir);
  cr_assert_eq (g_mkdir (test_dir, 0700), 0);
}

/* Recovers through @io and asserts PATH is @old or @new (@new only when
 * @must_be_new).  Returns TRUE if it is the new content. */
static gboolean
check_recovered (TrIo *io, const char *old, const char *new, gboolean must_be_new)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GBytes) got = tr_dwfile_read (io, target, &error);
  gsize len;
  const char *data;
  gboolean is_new;

  cr_assert_not_null (got, "read after recovery: %s", error ? error->message : "?");
  cr_assert_not (tr_io_exists (side), "side copy left after recovery");
  data = g_bytes_get_data (got, &len);
  is_new = len == strlen (new) && memcmp (data, new, len) == 0;
  if (!is_new)
    cr_assert (len == strlen (old) && memcmp (data, old, len) == 0,
               "file is neither old nor new (%zu bytes)", len);
  cr_assert (is_new || !must_be_new, "replace returned TRUE but the old content came back");
  return is_new;
}

static void
create_old (const char *old)
{
  g_autoptr (GError) error = NULL;

  cr_assert (tr_dwfile_replace (tr_io_posix (), target, old, strlen (old), &error), "create: %s",
             error ? error->message : "?");
}

/* Countdown over one replace: fail the n-th call in @ops for n = 1, 2, ...
 * until the replace runs without the fault firing.  @loss < 0: no power
 * loss (recover through a clean POSIX io), else a power loss after it. */
static void
countdown (const char *old, const char *new, guint ops, int errnum, gboolean persistent,
           gboolean short_write, int loss)
{
  guint32 seed = tr_test_seed ();
  guint news = 0;
  guint n;

  for (n = 1;; n++) {
    g_autoptr (TrFaultIo) fault = tr_fault_io_new ();
    TrIo *io = tr_fault_io_get_io (fault);
    g_autoptr (GError) error = NULL;
    gboolean replaced;
    gboolean fired;

    reset_dir ();
    create_old (old);
    tr_fault_io_arm (fault, ops, n, errnum, persistent, short_write);
    replaced = tr_dwfile_replace (io, target, new, strlen (new), &error);
    fired = tr_fault_io_fired (fault);
    cr_assert (replaced || fired, "replace failed without a fault: %s", error ? error->message : "?");
    if (!replaced && errnum == ENOSPC)
      cr_assert (g_error_matches (error, TR_STORAGE_ERROR, TR_STORAGE_ERROR_FULL), "error: %s",
                 error->message);
    tr_fault_io_disarm (fault);
    if (loss >= 0)
      tr_fault_io_power_loss (fault, (TrFaultLoss) loss, seed + n);
    news += check_recovered (loss >= 0 ? io : tr_io_posix (), old, new, replaced);
    if (!fired)
      break;
  }
  /* Two writes (side copy, PATH) or about ten mutating calls per replace. */
  cr_assert_gt (n, ops == TR_FAULT_WRITE ? 2u : 8u, "replace made only %u faultable calls", n - 1);
  cr_assert_gt (news, 1);
}

Test (tr_dwfile_crash, countdown_eio)
{
  countdown (old_long, new_short, TR_FAULT_ALL_MUTATING, EIO, FALSE, FALSE, -1);
  countdown (new_short, old_long, TR_FAULT_ALL_MUTATING, EIO, FALSE, FALSE, -1);
}

Test (tr_dwfile_crash, countdown_eio_persistent)
{
  /* A disk that stays broken after the n-th call: a kill at every step. */
  countdown (old_long, new_short, TR_FAULT_ALL_MUTATING, EIO, TRUE, FALSE, -1);
}

Test (tr_dwfile_crash, countdown_short_writes)
{
  countdown (old_long, new_short, TR_FAULT_WRITE, EIO, FALSE, TRUE, -1);
  countdown (new_short, old_long, TR_FAULT_WRITE, EIO, FALSE, TRUE, -1);
}

Test (tr_dwfile_crash, countdown_enospc_is_full)
{
  countdown (old_long, new_short, TR_FAULT_WRITE, ENOSPC, FALSE, FALSE, -1);
}

Test (tr_dwfile_crash, countdown_then_power_loss_drop)
{
  countdown (old_long, new_short, TR_FAULT_ALL_MUTATING, EIO, TRUE, FALSE, TR_FAULT_LOSS_DROP);
  countdown (new_short, old_long, TR_FAULT_ALL_MUTATING, EIO, FALSE, TRUE, TR_FAULT_LOSS_DROP);
}

Test (tr_dwfile_crash, countdown_then_power_loss_garble)
{
  countdown (old_long, new_short, TR_FAULT_ALL_MUTATING, EIO, TRUE, TRUE, TR_FAULT_LOSS_GARBLE);
  countdown (new_short, old_long, TR_FAULT_ALL_MUTATING, EIO, FALSE, FALSE, TR_FAULT_LOSS_GARBLE);
}

Test (tr_dwfile_crash, enospc_on_first_write)
{
  g_autoptr (TrFaultIo) fault = tr_fault_io_new ();
  g_autoptr (GError) error = NULL;

  create_old (old_long);
  tr_fault_io_arm (fault, TR_FAULT_WRITE, 1, ENOSPC, TRUE, FALSE);
  cr_assert_not (tr_dwfile_replace (tr_fault_io_get_io (fault), target, new_short, strlen (new_short), &error));
  cr_assert (g_error_matches (error, TR_STORAGE_ERROR, TR_STORAGE_ERROR_FULL), "error: %s",
             error ? error->message : "none");
  tr_fault_io_disarm (fault);
  cr_assert_not (check_recovered (tr_io_posix (), old_long, new_short, FALSE));
}

/* Power loss after a random number of mutating calls into a chain of
 * replaces (the fault io stops the run like a kill: every call after the
 * n-th fails), recovering through the same io each time. */
static void
random_power_loss (TrFaultLoss mode)
{
  guint32 seed = tr_test_seed ();
  g_autoptr (GRand) rand = g_rand_new_with_seed (seed);
  g_autoptr (TrFaultIo) fault = tr_fault_io_new ();
  TrIo *io = tr_fault_io_get_io (fault);
  g_autofree char *current = g_strdup (old_long);

  create_old (current);
  for (guint round = 0; round < 150; round++) {
    g_autoptr (GError) error = NULL;
    g_autofree char *next = g_strdup_printf ("# round %u\n%.*s", round, g_rand_int_range (rand, 0, 80),
                                             old_long);
    gboolean replaced;

    tr_fault_io_arm (fault, TR_FAULT_ALL_MUTATING, (guint) g_rand_int_range (rand, 1, 14), EIO, TRUE,
                     g_rand_boolean (rand));
    replaced = tr_dwfile_replace (io, target, next, strlen (next), &error);
    tr_fault_io_power_loss (fault, mode, g_rand_int (rand));
    if (check_recovered (io, current, next, replaced)) {
      g_free (current);
      current = g_strdup (next);
    }
  }
}

Test (tr_dwfile_crash, random_power_loss_drop)
{
  random_power_loss (TR_FAULT_LOSS_DROP);
}

Test (tr_dwfile_crash, random_power_loss_garble)
{
  random_power_loss (TR_FAULT_LOSS_GARBLE);
}

/* --- a kill at every step of replace, made by hand ---------------------- */

static GBytes *
side_copy_bytes (const char *content)
{
  gsize len = strlen (content);
  g_autofree guint8 *payload = g_malloc (8 + len);

  tr_put_le64 (payload, len);
  memcpy (payload + 8, content, len);
  return tr_record_encode (TR_DWFILE_RECORD_TYPE, payload, (guint32) (8 + len));
}

/* Target as an in-place write killed after @cut bytes of @new, before the
 * truncate: new prefix, then whatever of @old lies beyond it. */
static void
write_half_target (const char *old, const char *new, gsize cut)
{
  gsize old_len = strlen (old);
  gsize len = MAX (old_len, cut);
  g_autofree char *buf = g_malloc (len);

  memcpy (buf, old, old_len);
  memcpy (buf, new, cut);
  tr_test_write_file (target, buf, len);
}

static void
kill_at_every_step (const char *old, const char *new)
{
  g_autoptr (GBytes) record = side_copy_bytes (new);
  const char *record_data = g_bytes_get_data (record, NULL);
  gsize record_len = g_bytes_get_size (record);

  /* 1. killed before the side copy exists: old. */
  reset_dir ();
  tr_test_write_file (target, old, strlen (old));
  cr_assert_not (check_recovered (tr_io_posix (), old, new, FALSE));

  /* 2. killed while writing the side copy (every length): old. */
  for (gsize cut = 0; cut < record_len; cut++) {
    reset_dir ();
    tr_test_write_file (target, old, strlen (old));
    tr_test_write_file (side, record_data, cut);
    cr_assert_not (check_recovered (tr_io_posix (), old, new, FALSE), "side copy cut at %zu", cut);
  }

  /* 3. side copy complete, real file not yet touched: new. */
  reset_dir ();
  tr_test_write_file (target, old, strlen (old));
  tr_test_write_file (side, record_data, record_len);
  cr_assert (check_recovered (tr_io_posix (), old, new, TRUE));

  /* 4. real file half written (every length), not yet truncated: new. */
  for (gsize cut = 0; cut <= strlen (new); cut++) {
    reset_dir ();
    write_half_target (old, new, cut);
    tr_test_write_file (side, record_data, record_len);
    cr_assert (check_recovered (tr_io_posix (), old, new, TRUE), "target cut at %zu", cut);
  }

  /* 5. real file complete (synced or not), side copy still there: new. */
  reset_dir ();
  tr_test_write_file (target, new, strlen (new));
  tr_test_write_file (side, record_data, record_len);
  cr_assert (check_recovered (tr_io_posix (), old, new, TRUE));

  /* 6. side copy removed: new. */
  reset_dir ();
  tr_test_write_file (target, new, strlen (new));
  cr_assert (check_recovered (tr_io_posix (), old, new, TRUE));

  /* 7. killed during recovery itself (replay half done): still new. */
  reset_dir ();
  write_half_target (old, new, strlen (new) / 2);
  tr_test_write_file (side, record_data, record_len);
  cr_assert (check_recovered (tr_io_posix (), old, new, TRUE));
}

Test (tr_dwfile_crash, kill_at_every_step_by_hand)
{
  kill_at_every_step (old_long, new_short);
  kill_at_every_step (new_short, old_long);
}

/* A crash during recovery: the replay into PATH is itself faulted at every
 * call; the next recovery still ends with the new content. */
Test (tr_dwfile_crash, countdown_during_recovery)
{
  g_autoptr (GBytes) record = side_copy_bytes (new_short);
  guint n;

  for (n = 1;; n++) {
    g_autoptr (TrFaultIo) fault = tr_fault_io_new ();
    g_autoptr (GError) error = NULL;
    gboolean fired;

    reset_dir ();
    write_half_target (old_long, new_short, 10);
    tr_test_write_file (side, g_bytes_get_data (record, NULL), g_bytes_get_size (record));
    tr_fault_io_arm (fault, TR_FAULT_ALL_MUTATING, n, EIO, TRUE, TRUE);
    tr_dwfile_recover (tr_fault_io_get_io (fault), target, &error);
    fired = tr_fault_io_fired (fault);
    tr_fault_io_disarm (fault);
    tr_fault_io_power_loss (fault, TR_FAULT_LOSS_GARBLE, n);
    cr_assert (check_recovered (tr_fault_io_get_io (fault), old_long, new_short, TRUE), "n = %u", n);
    if (!fired)
      break;
  }
  cr_assert_gt (n, 3);
}
