/* test_tr_dwbuffer_crash.c - DoubleWriteBuffer under countdown faults and
 * simulated power loss: after recovery every block holds either its last
 * synced content or the content of the interrupted sync, never a mix. */
#include "tr_dwbuffer.h"
#include "tr_fault_io.h"
#include "tr_groupfile.h"
#include "tr_storage_error.h"
#include "tr_test_util.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#define BS 256u
#define PART (4 * BS)

typedef struct {
  guint32 file_id; /* 1 = "index", 2 = "list" */
  guint64 block_id;
  guint old_gen; /* content synced before the interrupted sync (0: never written) */
  guint new_gen; /* content of the interrupted sync (== old_gen: untouched) */
} Expect;

/* gen 1 is synced first; gen 2 is what the faulty sync writes.  Block
 * (1, 9) lives in a part that does not exist yet, (2, 3) extends a part. */
static const Expect expects[] = {
  { 1, 0, 1, 1 }, { 1, 1, 1, 2 }, { 1, 5, 1, 1 }, { 1, 9, 0, 2 },
  { 2, 0, 1, 1 }, { 2, 2, 1, 2 }, { 2, 3, 0, 2 },
};
#define N_EXPECTS G_N_ELEMENTS (expects)

typedef struct {
  char *dir;
  TrIo *io;
  TrGroupFile *files[2];
  TrDwBuffer *dwb;
} Store;

static void
fill (guint8 *block, guint32 file_id, guint64 block_id, guint gen)
{
  if (gen == 0) {
    memset (block, 0, BS);
    return;
  }
  for (guint i = 0; i < BS; i++)
    block[i] = (guint8) (file_id * 31 + block_id * 7 + gen * 13 + i);
}

/* Opens and recovers; FALSE (error set) if any step fails. */
static gboolean
store_open (Store *store, TrIo *io, GError **error)
{
  store->io = io;
  store->files[0] = tr_groupfile_open (io, store->dir, "index", PART, error);
  if (store->files[0] == NULL)
    return FALSE;
  store->files[1] = tr_groupfile_open (io, store->dir, "list", PART, error);
  if (store->files[1] == NULL)
    return FALSE;
  store->dwb = tr_dwbuffer_new (io, store->dir, BS, 4, 0);
  tr_dwbuffer_add_file (store->dwb, 1, store->files[0]);
  tr_dwbuffer_add_file (store->dwb, 2, store->files[1]);
  return tr_dwbuffer_recover (store->dwb, error);
}

static void
store_close (Store *store)
{
  g_clear_pointer (&store->dwb, tr_dwbuffer_free);
  g_clear_pointer (&store->files[0], tr_groupfile_free);
  g_clear_pointer (&store->files[1], tr_groupfile_free);
}

static void
write_gen (Store *store, gboolean new_gen)
{
  for (guint i = 0; i < N_EXPECTS; i++) {
    guint gen = new_gen ? expects[i].new_gen : expects[i].old_gen;
    guint8 block[BS];
    g_autoptr (GError) error = NULL;

    if (gen == 0 || (new_gen && gen == expects[i].old_gen))
      continue;
    fill (block, expects[i].file_id, expects[i].block_id, gen);
    cr_assert (tr_dwbuffer_write (store->dwb, expects[i].file_id, expects[i].block_id, 0, block, BS,
                                  &error),
               "%s", error ? error->message : "");
  }
}

/* Every block is old or new as a whole; with @must_be_new, new. */
static void
check_blocks (Store *store, gboolean must_be_new, const char *what)
{
  for (guint i = 0; i < N_EXPECTS; i++) {
    const Expect *e = &expects[i];
    guint8 got[BS], old_data[BS], new_data[BS];
    g_autoptr (GError) error = NULL;

    fill (old_data, e->file_id, e->block_id, e->old_gen);
    fill (new_data, e->file_id, e->block_id, e->new_gen);
    cr_assert (tr_dwbuffer_read (store->dwb, e->file_id, e->block_id, 0, got, BS, &error),
               "%s: %s", what, error ? error->message : "");
    if (must_be_new)
      cr_assert (memcmp (got, new_data, BS) == 0, "%s: block (%u,%" G_GUINT64_FORMAT ") not new",
                 what, e->file_id, e->block_id);
    else
      cr_assert (memcmp (got, old_data, BS) == 0 || memcmp (got, new_data, BS) == 0,
                 "%s: block (%u,%" G_GUINT64_FORMAT ") torn or mixed", what, e->file_id,
                 e->block_id);
  }
}

static void
setup_synced (Store *store, TrIo *io)
{
  g_autoptr (GError) error = NULL;

  cr_assert (store_open (store, io, &error), "%s", error ? error->message : "");
  write_gen (store, FALSE);
  cr_assert (tr_dwbuffer_sync (store->dwb, &error), "%s", error ? error->message : "");
}

/* Fails the n-th mutating op of a sync for n = 1, 2, ... until none fires. */
static void
countdown (gboolean persistent, gboolean short_write)
{
  guint n;

  for (n = 1; n < 200; n++) {
    g_autoptr (TrFaultIo) fault = tr_fault_io_new ();
    g_autoptr (GError) error = NULL;
    g_autofree char *what = g_strdup_printf ("fault %u%s%s", n, persistent ? " persistent" : "",
                                             short_write ? " short" : "");
    Store store = { tr_test_mkdtemp (), NULL, { NULL, NULL }, NULL };
    gboolean ok, fired;

    setup_synced (&store, tr_fault_io_get_io (fault));
    write_gen (&store, TRUE);
    tr_fault_io_arm (fault, TR_FAULT_ALL_MUTATING, n, EIO, persistent, short_write);
    ok = tr_dwbuffer_sync (store.dwb, &error);
    fired = tr_fault_io_fired (fault);
    tr_fault_io_disarm (fault);
    cr_assert (ok || fired, "%s: sync failed without a fault: %s", what,
               error ? error->message : "");
    if (!ok) {
      /* Sticky: FAILED until reopened. */
      g_clear_error (&error);
      cr_assert_not (tr_dwbuffer_write (store.dwb, 1, 0, 0, "x", 1, &error));
      cr_assert (g_error_matches (error, TR_STORAGE_ERROR, TR_STORAGE_ERROR_CLOSED), "%s", what);
      g_clear_error (&error);
      cr_assert_not (tr_dwbuffer_sync (store.dwb, &error));
      cr_assert (g_error_matches (error, TR_STORAGE_ERROR, TR_STORAGE_ERROR_CLOSED), "%s", what);
      g_clear_error (&error);
    }
    store_close (&store);

    /* Reopen with a healthy disk: recovery finishes or discards the batch. */
    cr_assert (store_open (&store, tr_io_posix (), &error), "%s: reopen: %s", what,
               error ? error->message : "");
    check_blocks (&store, ok, what);
    store_close (&store);
    tr_test_rmdir (store.dir);
    g_free (store.dir);
    if (!fired)
      break;
  }
  cr_assert_gt (n, 5, "the sync must have several mutating steps");
  cr_assert_lt (n, 200);
}

Test (tr_dwbuffer_crash, countdown_eio)
{
  countdown (FALSE, FALSE);
}

Test (tr_dwbuffer_crash, countdown_eio_short_writes)
{
  countdown (FALSE, TRUE);
}

Test (tr_dwbuffer_crash, countdown_eio_persistent)
{
  countdown (TRUE, TRUE);
}

/* Synced data survives a power loss that drops or garbles everything not
 * synced (here: nothing on disk changed after the sync, only memory). */
static void
power_loss_after_sync (TrFaultLoss mode)
{
  g_autoptr (TrFaultIo) fault = tr_fault_io_new ();
  g_autoptr (GError) error = NULL;
  Store store = { tr_test_mkdtemp (), NULL, { NULL, NULL }, NULL };

  setup_synced (&store, tr_fault_io_get_io (fault));
  write_gen (&store, TRUE); /* dirty in memory, never synced */
  tr_fault_io_power_loss (fault, mode, tr_test_seed ());
  store_close (&store);
  cr_assert (store_open (&store, tr_fault_io_get_io (fault), &error), "%s",
             error ? error->message : "");
  /* Every block is exactly its synced (old) content. */
  for (guint i = 0; i < N_EXPECTS; i++) {
    guint8 got[BS], want[BS];
    fill (want, expects[i].file_id, expects[i].block_id, expects[i].old_gen);
    cr_assert (tr_dwbuffer_read (store.dwb, expects[i].file_id, expects[i].block_id, 0, got, BS,
                                 NULL));
    cr_assert (memcmp (got, want, BS) == 0, "synced block %u lost", i);
  }
  store_close (&store);
  tr_test_rmdir (store.dir);
  g_free (store.dir);
}

Test (tr_dwbuffer_crash, power_loss_drop_after_sync)
{
  power_loss_after_sync (TR_FAULT_LOSS_DROP);
}

Test (tr_dwbuffer_crash, power_loss_garble_after_sync)
{
  power_loss_after_sync (TR_FAULT_LOSS_GARBLE);
}

/* Power loss in the middle of a sync: the n-th fsync / dir fsync fails (the
 * sync stops there, FAILED), then the power goes.  Each block is old or new. */
static void
power_loss_mid_sync (TrFaultLoss mode)
{
  guint32 seed = tr_test_seed ();
  guint n;

  for (n = 1; n < 100; n++) {
    g_autoptr (TrFaultIo) fault = tr_fault_io_new ();
    g_autoptr (GError) error = NULL;
    g_autofree char *what = g_strdup_printf ("power loss at fsync %u (seed %u)", n, seed);
    Store store = { tr_test_mkdtemp (), NULL, { NULL, NULL }, NULL };
    gboolean ok, fired;

    setup_synced (&store, tr_fault_io_get_io (fault));
    write_gen (&store, TRUE);
    tr_fault_io_arm (fault, TR_FAULT_FSYNC | TR_FAULT_FSYNC_DIR, n, EIO, TRUE, FALSE);
    ok = tr_dwbuffer_sync (store.dwb, &error);
    fired = tr_fault_io_fired (fault);
    tr_fault_io_disarm (fault);
    g_clear_error (&error);
    tr_fault_io_power_loss (fault, mode, seed + n);
    store_close (&store);
    cr_assert (store_open (&store, tr_fault_io_get_io (fault), &error), "%s: reopen: %s", what,
               error ? error->message : "");
    check_blocks (&store, ok, what);
    store_close (&store);
    tr_test_rmdir (store.dir);
    g_free (store.dir);
    if (!fired)
      break;
  }
  cr_assert_gt (n, 3);
  cr_assert_lt (n, 100);
}

Test (tr_dwbuffer_crash, power_loss_drop_mid_sync)
{
  power_loss_mid_sync (TR_FAULT_LOSS_DROP);
}

Test (tr_dwbuffer_crash, power_loss_garble_mid_sync)
{
  power_loss_mid_sync (TR_FAULT_LOSS_GARBLE);
}
