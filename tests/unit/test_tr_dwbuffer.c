/* test_tr_dwbuffer.c - DoubleWriteBuffer: buffer, cache, disk, concurrent syncs,
 * journal replay and discard. */
#include "tr_dwbuffer.h"
#include "tr_endian.h"
#include "tr_groupfile.h"
#include "tr_record.h"
#include "tr_storage_error.h"
#include "tr_test_util.h"

#include <criterion/criterion.h>
#include <string.h>

#define BS 256u        /* block size */
#define PART (4 * BS)  /* 4 blocks per part: block ids cross parts */
#define FILE_A 1u
#define FILE_B 7u

typedef struct {
  char *dir;
  TrGroupFile *files[2];
  TrDwBuffer *dwb;
} Fixture;

static void
fixture_open (Fixture *fx, gsize cache_blocks, gsize max_dirty)
{
  g_autoptr (GError) error = NULL;

  fx->files[0] = tr_groupfile_open (tr_io_posix (), fx->dir, "index", PART, &error);
  cr_assert_not_null (fx->files[0], "%s", error ? error->message : "");
  fx->files[1] = tr_groupfile_open (tr_io_posix (), fx->dir, "list", PART, &error);
  cr_assert_not_null (fx->files[1], "%s", error ? error->message : "");
  fx->dwb = tr_dwbuffer_new (tr_io_posix (), fx->dir, BS, cache_blocks, max_dirty);
  tr_dwbuffer_add_file (fx->dwb, FILE_A, fx->files[0]);
  tr_dwbuffer_add_file (fx->dwb, FILE_B, fx->files[1]);
  cr_assert (tr_dwbuffer_recover (fx->dwb, &error), "%s", error ? error->message : "");
}

static void
fixture_close (Fixture *fx)
{
  g_clear_pointer (&fx->dwb, tr_dwbuffer_free);
  g_clear_pointer (&fx->files[0], tr_groupfile_free);
  g_clear_pointer (&fx->files[1], tr_groupfile_free);
}

static void
fixture_free (Fixture *fx)
{
  fixture_close (fx);
  tr_test_rmdir (fx->dir);
  g_free (fx->dir);
}

static void
fill (guint8 *block, guint32 file_id, guint64 block_id, guint gen)
{
  for (guint i = 0; i < BS; i++)
    block[i] = (guint8) (file_id * 31 + block_id * 7 + gen * 13 + i);
}

static void
write_block (TrDwBuffer *dwb, guint32 file_id, guint64 block_id, guint gen)
{
  g_autoptr (GError) error = NULL;
  guint8 block[BS];

  fill (block, file_id, block_id, gen);
  cr_assert (tr_dwbuffer_write (dwb, file_id, block_id, 0, block, BS, &error), "%s",
             error ? error->message : "");
}

static void
expect_block (TrDwBuffer *dwb, guint32 file_id, guint64 block_id, guint gen)
{
  g_autoptr (GError) error = NULL;
  guint8 want[BS], got[BS];

  fill (want, file_id, block_id, gen);
  cr_assert (tr_dwbuffer_read (dwb, file_id, block_id, 0, got, BS, &error), "%s",
             error ? error->message : "");
  cr_assert (memcmp (want, got, BS) == 0, "file %u block %" G_GUINT64_FORMAT " is not gen %u",
             file_id, block_id, gen);
}

static void
sync_ok (TrDwBuffer *dwb)
{
  g_autoptr (GError) error = NULL;

  cr_assert (tr_dwbuffer_sync (dwb, &error), "%s", error ? error->message : "");
}

static char *
journal_path (Fixture *fx)
{
  return g_build_filename (fx->dir, TR_DWBUFFER_JOURNAL_NAME, NULL);
}

Test (tr_dwbuffer, write_read_through_buffer)
{
  Fixture fx = { tr_test_mkdtemp (), { NULL, NULL }, NULL };
  g_autoptr (GError) error = NULL;
  guint8 zeros[BS] = { 0 }, got[BS], word[4] = { 1, 2, 3, 4 };
  TrDwBufferStats stats;

  fixture_open (&fx, 8, 0);
  /* Never written, past the end of the file: zeros. */
  cr_assert (tr_dwbuffer_read (fx.dwb, FILE_A, 5, 0, got, BS, &error));
  cr_assert (memcmp (got, zeros, BS) == 0);
  write_block (fx.dwb, FILE_A, 5, 1);
  expect_block (fx.dwb, FILE_A, 5, 1);
  /* Partial write: read-modify-write of the dirty block. */
  cr_assert (tr_dwbuffer_write (fx.dwb, FILE_A, 5, 100, word, 4, &error));
  cr_assert (tr_dwbuffer_read (fx.dwb, FILE_A, 5, 98, got, 8, &error));
  fill (zeros, FILE_A, 5, 1);
  cr_assert (memcmp (got, zeros + 98, 2) == 0 && memcmp (got + 2, word, 4) == 0
             && memcmp (got + 6, zeros + 104, 2) == 0);
  tr_dwbuffer_get_stats (fx.dwb, &stats);
  cr_assert_eq (stats.dirty_blocks, 1);
  cr_assert_eq (stats.syncs, 0);
  /* Unregistered file id. */
  cr_assert_not (tr_dwbuffer_read (fx.dwb, 99, 0, 0, got, 1, &error));
  cr_assert (g_error_matches (error, TR_STORAGE_ERROR, TR_STORAGE_ERROR_NOT_FOUND));
  fixture_free (&fx);
}

Test (tr_dwbuffer, sync_writes_in_place_and_removes_journal)
{
  Fixture fx = { tr_test_mkdtemp (), { NULL, NULL }, NULL };
  g_autofree char *journal = journal_path (&fx);
  g_autofree char *part1 = g_build_filename (fx.dir, "index.1", NULL);
  g_autoptr (GBytes) bytes = NULL;
  guint8 want[BS];
  TrDwBufferStats stats;

  fixture_open (&fx, 8, 0);
  write_block (fx.dwb, FILE_A, 6, 1); /* part 1 (blocks 4..7), third block */
  sync_ok (fx.dwb);
  cr_assert_not (g_file_test (journal, G_FILE_TEST_EXISTS));
  bytes = tr_test_read_file (part1);
  cr_assert_not_null (bytes);
  cr_assert_eq (g_bytes_get_size (bytes), 3 * BS);
  fill (want, FILE_A, 6, 1);
  cr_assert (memcmp ((const guint8 *) g_bytes_get_data (bytes, NULL) + 2 * BS, want, BS) == 0);
  tr_dwbuffer_get_stats (fx.dwb, &stats);
  cr_assert_eq (stats.syncs, 1);
  cr_assert_eq (stats.blocks_synced, 1);
  cr_assert_eq (stats.dirty_blocks, 0);
  /* Synced blocks are now served by the cache. */
  expect_block (fx.dwb, FILE_A, 6, 1);
  tr_dwbuffer_get_stats (fx.dwb, &stats);
  cr_assert_eq (stats.cache_hits, 1);
  /* Nothing dirty: a sync does no I/O and succeeds. */
  sync_ok (fx.dwb);
  fixture_free (&fx);
}

Test (tr_dwbuffer, two_files_survive_reopen_from_disk)
{
  Fixture fx = { tr_test_mkdtemp (), { NULL, NULL }, NULL };
  TrDwBufferStats stats;

  fixture_open (&fx, 0, 0);
  for (guint64 b = 0; b < 10; b++) {
    write_block (fx.dwb, FILE_A, b, 1);
    write_block (fx.dwb, FILE_B, 9 - b, 2);
  }
  sync_ok (fx.dwb);
  write_block (fx.dwb, FILE_A, 3, 3); /* unsynced: lost on free */
  fixture_close (&fx);

  fixture_open (&fx, 0, 0);
  for (guint64 b = 0; b < 10; b++) {
    expect_block (fx.dwb, FILE_A, b, 1);
    expect_block (fx.dwb, FILE_B, 9 - b, 2);
  }
  tr_dwbuffer_get_stats (fx.dwb, &stats);
  cr_assert_eq (stats.cache_misses, 20);
  cr_assert_eq (stats.cached_blocks, 0);
  /* A write to a block on disk loads it first (read-modify-write). */
  cr_assert (tr_dwbuffer_write (fx.dwb, FILE_B, 4, 0, "x", 1, NULL));
  {
    guint8 want[BS], got[BS];
    fill (want, FILE_B, 4, 2);
    want[0] = 'x';
    cr_assert (tr_dwbuffer_read (fx.dwb, FILE_B, 4, 0, got, BS, NULL));
    cr_assert (memcmp (want, got, BS) == 0);
  }
  fixture_free (&fx);
}

Test (tr_dwbuffer, cache_bound_respected)
{
  Fixture fx = { tr_test_mkdtemp (), { NULL, NULL }, NULL };
  TrDwBufferStats stats;

  fixture_open (&fx, 4, 0);
  for (guint64 b = 0; b < 20; b++)
    write_block (fx.dwb, FILE_A, b, 1);
  sync_ok (fx.dwb); /* the flushed blocks pass through the cache */
  tr_dwbuffer_get_stats (fx.dwb, &stats);
  cr_assert_leq (stats.cached_blocks, 4);
  for (int round = 0; round < 3; round++)
    for (guint64 b = 0; b < 20; b++) {
      expect_block (fx.dwb, FILE_A, b, 1);
      tr_dwbuffer_get_stats (fx.dwb, &stats);
      cr_assert_leq (stats.cached_blocks, 4);
    }
  /* A small working set stays cached: re-reads are hits. */
  for (guint64 b = 0; b < 3; b++)
    expect_block (fx.dwb, FILE_A, b, 1);
  tr_dwbuffer_get_stats (fx.dwb, &stats);
  {
    guint64 hits = stats.cache_hits;
    for (int round = 0; round < 5; round++)
      for (guint64 b = 0; b < 3; b++)
        expect_block (fx.dwb, FILE_A, b, 1);
    tr_dwbuffer_get_stats (fx.dwb, &stats);
    cr_assert_eq (stats.cache_hits, hits + 15);
  }
  fixture_free (&fx);
}

Test (tr_dwbuffer, backpressure_bounds_dirty_blocks)
{
  Fixture fx = { tr_test_mkdtemp (), { NULL, NULL }, NULL };
  TrDwBufferStats stats;

  fixture_open (&fx, 0, 4);
  for (guint64 b = 0; b < 10; b++) {
    write_block (fx.dwb, FILE_B, b, 1);
    tr_dwbuffer_get_stats (fx.dwb, &stats);
    cr_assert_leq (stats.dirty_blocks, 4);
  }
  cr_assert_eq (stats.syncs, 2);
  for (guint64 b = 0; b < 10; b++)
    expect_block (fx.dwb, FILE_B, b, 1);
  fixture_free (&fx);
}

/* ---- read-your-writes while another thread flushes ---- */

#define RYW_THREADS 3
#define RYW_BLOCKS 12
#define RYW_ROUNDS 400

typedef struct {
  TrDwBuffer *dwb;
  guint index;
  gboolean ok;
} RywThread;

static gpointer
ryw_main (gpointer data)
{
  RywThread *t = data;

  t->ok = TRUE;
  for (guint32 round = 1; round <= RYW_ROUNDS && t->ok; round++) {
    guint64 block_id = (round * 5 + t->index) % RYW_BLOCKS;
    guint32 offset = t->index * 8; /* each thread owns its 8 bytes of every block */
    guint8 value[8], got[8];

    tr_put_le32 (value, round);
    tr_put_le32 (value + 4, (guint32) block_id);
    t->ok = tr_dwbuffer_write (t->dwb, FILE_A, block_id, offset, value, 8, NULL)
            && tr_dwbuffer_read (t->dwb, FILE_A, block_id, offset, got, 8, NULL)
            && memcmp (value, got, 8) == 0;
  }
  return NULL;
}

typedef struct {
  TrDwBuffer *dwb;
  gint stop;    /* atomic: the writers are done */
  gboolean ok;  /* every sync succeeded */
} Flusher;

/* Syncs again and again until told to stop, as the RPC store's writer
 * thread does beside the commits. */
static gpointer
flusher_main (gpointer data)
{
  Flusher *f = data;

  f->ok = TRUE;
  while (f->ok && !g_atomic_int_get (&f->stop)) {
    f->ok = tr_dwbuffer_sync (f->dwb, NULL);
    g_thread_yield ();
  }
  return NULL;
}

Test (tr_dwbuffer, read_your_writes_during_concurrent_flushes, .timeout = 60)
{
  Fixture fx = { tr_test_mkdtemp (), { NULL, NULL }, NULL };
  RywThread threads[RYW_THREADS];
  GThread *handles[RYW_THREADS];
  g_autoptr (GError) error = NULL;
  TrDwBufferStats stats;
  Flusher flusher = { NULL, 0, FALSE };
  GThread *flusher_thread;

  fixture_open (&fx, 4, 6);
  flusher.dwb = fx.dwb;
  flusher_thread = g_thread_new ("flusher", flusher_main, &flusher);
  for (guint i = 0; i < RYW_THREADS; i++) {
    threads[i] = (RywThread) { fx.dwb, i, FALSE };
    handles[i] = g_thread_new ("ryw", ryw_main, &threads[i]);
  }
  for (guint i = 0; i < RYW_THREADS; i++) {
    g_thread_join (handles[i]);
    cr_assert (threads[i].ok, "thread %u read back something else than it wrote", i);
  }
  g_atomic_int_set (&flusher.stop, 1);
  g_thread_join (flusher_thread);
  cr_assert (flusher.ok, "a sync beside the writers failed");
  cr_assert (tr_dwbuffer_sync (fx.dwb, &error), "%s", error ? error->message : "");
  tr_dwbuffer_get_stats (fx.dwb, &stats);
  cr_assert_gt (stats.syncs, 1);
  fixture_close (&fx);

  /* Every thread's last value of every block it wrote is on disk. */
  fixture_open (&fx, 0, 0);
  for (guint i = 0; i < RYW_THREADS; i++)
    for (guint64 b = 0; b < RYW_BLOCKS; b++) {
      guint32 last = 0;
      guint8 got[8];
      for (guint32 round = 1; round <= RYW_ROUNDS; round++)
        if ((round * 5 + i) % RYW_BLOCKS == b)
          last = round;
      cr_assert (tr_dwbuffer_read (fx.dwb, FILE_A, b, i * 8, got, 8, NULL));
      cr_assert_eq (tr_get_le32 (got), last, "thread %u block %" G_GUINT64_FORMAT, i, b);
    }
  fixture_free (&fx);
}

/* ---- hand-made journals ---- */

static void
append_record (GByteArray *out, guint8 type, const guint8 *payload, guint32 len)
{
  g_autoptr (GBytes) rec = tr_record_encode (type, payload, len);
  gsize size;
  const guint8 *data = g_bytes_get_data (rec, &size);

  g_byte_array_append (out, data, (guint) size);
}

/* A journal exactly as docs/format/dwbuffer.md describes it. */
static GByteArray *
make_journal (guint32 block_size, guint64 seq, guint n, const guint32 *file_ids,
              const guint64 *block_ids, guint gen)
{
  GByteArray *out = g_byte_array_new ();
  guint8 header[24], commit[12], record[12 + BS];

  memcpy (header, "TRDWJ1", 6);
  tr_put_le16 (header + 6, 1);
  tr_put_le32 (header + 8, block_size);
  tr_put_le32 (header + 12, n);
  tr_put_le64 (header + 16, seq);
  append_record (out, 0x41, header, sizeof header);
  for (guint i = 0; i < n; i++) {
    tr_put_le32 (record, file_ids[i]);
    tr_put_le64 (record + 4, block_ids[i]);
    fill (record + 12, file_ids[i], block_ids[i], gen);
    append_record (out, 0x42, record, 12 + BS);
  }
  tr_put_le32 (commit, n);
  tr_put_le64 (commit + 4, seq);
  append_record (out, 0x43, commit, sizeof commit);
  return out;
}

static const guint32 j_files[] = { FILE_A, FILE_B, FILE_A };
static const guint64 j_blocks[] = { 2, 0, 5 };

/* Blocks (A,2), (B,0), (A,5) synced as gen 1, then (A,2) zeroed and (A,5)
 * torn on disk behind the buffer's back. */
static void
prepare_damaged_files (Fixture *fx)
{
  g_autofree char *index0 = g_build_filename (fx->dir, "index.0", NULL);
  g_autofree char *index1 = g_build_filename (fx->dir, "index.1", NULL);
  guint8 zeros[BS] = { 0 }, junk[BS / 2];

  fixture_open (fx, 0, 0);
  for (guint i = 0; i < 3; i++)
    write_block (fx->dwb, j_files[i], j_blocks[i], 1);
  sync_ok (fx->dwb);
  fixture_close (fx);
  memset (junk, 0xAB, sizeof junk);
  tr_test_patch_file (index0, 2 * BS, zeros, BS);
  tr_test_patch_file (index1, 1 * BS + 17, junk, sizeof junk);
}

Test (tr_dwbuffer, complete_journal_replay_repairs_torn_blocks)
{
  Fixture fx = { tr_test_mkdtemp (), { NULL, NULL }, NULL };
  g_autofree char *journal = journal_path (&fx);
  g_autoptr (GByteArray) bytes = make_journal (BS, 42, 3, j_files, j_blocks, 2);

  prepare_damaged_files (&fx);
  tr_test_write_file (journal, bytes->data, bytes->len);
  fixture_open (&fx, 0, 0); /* recovers */
  cr_assert_not (g_file_test (journal, G_FILE_TEST_EXISTS));
  for (guint i = 0; i < 3; i++)
    expect_block (fx.dwb, j_files[i], j_blocks[i], 2);
  fixture_close (&fx);
  /* Replayed data is durable on its own, not only in the buffer. */
  fixture_open (&fx, 0, 0);
  for (guint i = 0; i < 3; i++)
    expect_block (fx.dwb, j_files[i], j_blocks[i], 2);
  fixture_free (&fx);
}

static void
check_discarded (gsize cut_from_end)
{
  Fixture fx = { tr_test_mkdtemp (), { NULL, NULL }, NULL };
  g_autofree char *journal = journal_path (&fx);
  g_autofree char *index0 = g_build_filename (fx.dir, "index.0", NULL);
  g_autofree char *index1 = g_build_filename (fx.dir, "index.1", NULL);
  g_autofree char *list0 = g_build_filename (fx.dir, "list.0", NULL);
  g_autoptr (GByteArray) bytes = make_journal (BS, 42, 3, j_files, j_blocks, 2);
  g_autoptr (GBytes) before0 = NULL, before1 = NULL, before2 = NULL;
  g_autoptr (GBytes) after0 = NULL, after1 = NULL, after2 = NULL;

  prepare_damaged_files (&fx);
  before0 = tr_test_read_file (index0);
  before1 = tr_test_read_file (index1);
  before2 = tr_test_read_file (list0);
  tr_test_write_file (journal, bytes->data, bytes->len - cut_from_end);
  fixture_open (&fx, 0, 0);
  cr_assert_not (g_file_test (journal, G_FILE_TEST_EXISTS));
  fixture_close (&fx);
  after0 = tr_test_read_file (index0);
  after1 = tr_test_read_file (index1);
  after2 = tr_test_read_file (list0);
  cr_assert (g_bytes_equal (before0, after0) && g_bytes_equal (before1, after1)
             && g_bytes_equal (before2, after2), "files changed (cut %zu)", cut_from_end);
  fixture_free (&fx);
}

Test (tr_dwbuffer, incomplete_journal_discarded_files_untouched)
{
  check_discarded (1);                       /* commit torn */
  check_discarded (TR_RECORD_SIZE (12));     /* commit missing */
  check_discarded (TR_RECORD_SIZE (12) + 5); /* last block record torn */
  check_discarded (TR_RECORD_SIZE (12) + TR_RECORD_SIZE (12 + BS) * 3 + 3); /* header torn */
}

Test (tr_dwbuffer, journal_with_other_block_size_stops_recovery)
{
  Fixture fx = { tr_test_mkdtemp (), { NULL, NULL }, NULL };
  g_autofree char *journal = journal_path (&fx);
  g_autoptr (GByteArray) bytes = make_journal (BS * 2, 1, 0, NULL, NULL, 0);
  g_autoptr (GError) error = NULL;

  tr_test_write_file (journal, bytes->data, bytes->len);
  fx.files[0] = tr_groupfile_open (tr_io_posix (), fx.dir, "index", PART, &error);
  cr_assert_not_null (fx.files[0]);
  fx.dwb = tr_dwbuffer_new (tr_io_posix (), fx.dir, BS, 0, 0);
  tr_dwbuffer_add_file (fx.dwb, FILE_A, fx.files[0]);
  cr_assert_not (tr_dwbuffer_recover (fx.dwb, &error));
  cr_assert (g_error_matches (error, TR_STORAGE_ERROR, TR_STORAGE_ERROR_CORRUPT));
  cr_assert (g_file_test (journal, G_FILE_TEST_EXISTS), "journal must be kept");
  g_clear_error (&error);
  cr_assert_not (tr_dwbuffer_write (fx.dwb, FILE_A, 0, 0, "x", 1, &error));
  cr_assert (g_error_matches (error, TR_STORAGE_ERROR, TR_STORAGE_ERROR_CLOSED));
  fixture_free (&fx);
}

Test (tr_dwbuffer, drop_before_forgets_dropped_blocks)
{
  Fixture fx = { tr_test_mkdtemp (), { NULL, NULL }, NULL };
  g_autoptr (GError) error = NULL;
  guint8 got[BS];

  fixture_open (&fx, 8, 0);
  for (guint64 b = 0; b < 12; b++) /* parts 0, 1, 2 */
    write_block (fx.dwb, FILE_A, b, 1);
  sync_ok (fx.dwb);
  write_block (fx.dwb, FILE_A, 1, 2); /* dirty block in a part about to go */
  cr_assert (tr_dwbuffer_drop_before (fx.dwb, FILE_A, 2 * PART, &error), "%s",
             error ? error->message : "");
  cr_assert_eq (tr_groupfile_first_offset (fx.files[0]), 2 * PART);
  cr_assert_not (tr_dwbuffer_read (fx.dwb, FILE_A, 1, 0, got, BS, &error));
  cr_assert (g_error_matches (error, TR_STORAGE_ERROR, TR_STORAGE_ERROR_NOT_FOUND));
  g_clear_error (&error);
  sync_ok (fx.dwb);
  expect_block (fx.dwb, FILE_A, 9, 1);
  fixture_free (&fx);
}
