/* tr-bench-dwbuffer.c - DoubleWriteBuffer throughput: blocks made durable
 * per second (journal + in-place write + syncs) and the read-cache hit path.
 *
 * Usage: tr-bench-dwbuffer [DIR] [ROUNDS]
 *   DIR     parent of the scratch directory (default "."; use a real disk,
 *           not tmpfs, or the fsync figures mean nothing)
 *   ROUNDS  syncs to time (default 200)
 *
 * Each round dirties 64 random 4 KiB blocks of a 16 MiB file and calls
 * tr_dwbuffer_sync().  The cache benchmark reads 64-byte slices from 1024
 * cached blocks.  The scratch directory is removed at the end. */
#include "tr_dwbuffer.h"
#include "tr_groupfile.h"

#include <glib.h>
#include <glib/gstdio.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BLOCK_SIZE 4096u
#define FILE_BLOCKS 4096u /* 16 MiB */
#define BLOCKS_PER_SYNC 64u
#define CACHE_BLOCKS 1024u
#define READS 5000000u

static void
die_on_error (gboolean ok, GError *error, const char *what)
{
  if (!ok) {
    fprintf (stderr, "tr-bench-dwbuffer: %s: %s\n", what, error ? error->message : "?");
    exit (1);
  }
}

static void
remove_dir (const char *path)
{
  GDir *dir = g_dir_open (path, 0, NULL);
  const char *name;

  if (dir == NULL)
    return;
  while ((name = g_dir_read_name (dir)) != NULL) {
    g_autofree char *child = g_build_filename (path, name, NULL);
    g_unlink (child);
  }
  g_dir_close (dir);
  g_rmdir (path);
}

static void
bench_sync (TrDwBuffer *dwb, guint rounds)
{
  guint8 block[BLOCK_SIZE];
  GRand *rand = g_rand_new_with_seed (1);
  GError *error = NULL;
  gint64 start, elapsed;

  memset (block, 0x5A, sizeof block);
  /* Preallocate the file so the timed syncs are overwrites, as in steady state. */
  for (guint b = 0; b < FILE_BLOCKS; b++)
    die_on_error (tr_dwbuffer_write (dwb, 1, b, 0, block, BLOCK_SIZE, &error), error, "write");
  die_on_error (tr_dwbuffer_sync (dwb, &error), error, "sync");

  start = g_get_monotonic_time ();
  for (guint r = 0; r < rounds; r++) {
    for (guint i = 0; i < BLOCKS_PER_SYNC; i++) {
      guint64 b = (guint64) g_rand_int_range (rand, 0, FILE_BLOCKS);
      block[0] = (guint8) r;
      die_on_error (tr_dwbuffer_write (dwb, 1, b, 0, block, BLOCK_SIZE, &error), error, "write");
    }
    die_on_error (tr_dwbuffer_sync (dwb, &error), error, "sync");
  }
  elapsed = g_get_monotonic_time () - start;
  printf ("sync: %u rounds x %u dirty 4 KiB blocks: %.1f syncs/s, %.0f blocks/s, %.2f ms/sync\n",
          rounds, BLOCKS_PER_SYNC, rounds * 1e6 / (double) elapsed,
          rounds * (double) BLOCKS_PER_SYNC * 1e6 / (double) elapsed,
          (double) elapsed / 1000.0 / rounds);
  g_rand_free (rand);
}

static void
bench_cache (TrDwBuffer *dwb)
{
  guint8 buf[64];
  GError *error = NULL;
  TrDwBufferStats before, after;
  gint64 start, elapsed;
  guint64 sum = 0;

  /* Two passes: CLOCK may evict a block inserted in the first pass before it
   * is ever referenced; after the second every block is cached. */
  for (guint pass = 0; pass < 2; pass++)
    for (guint b = 0; b < CACHE_BLOCKS; b++)
      die_on_error (tr_dwbuffer_read (dwb, 1, b, 0, buf, sizeof buf, &error), error, "read");
  tr_dwbuffer_get_stats (dwb, &before);
  start = g_get_monotonic_time ();
  for (guint i = 0; i < READS; i++) {
    guint64 b = (i * 2654435761u) % CACHE_BLOCKS;
    die_on_error (tr_dwbuffer_read (dwb, 1, b, (i % 64) * 64, buf, sizeof buf, &error), error,
                  "read");
    sum += buf[0];
  }
  elapsed = g_get_monotonic_time () - start;
  tr_dwbuffer_get_stats (dwb, &after);
  printf ("cache hit read (64 B of 1024 cached 4 KiB blocks): %.1f ns/read (%" G_GUINT64_FORMAT
          " hits, %" G_GUINT64_FORMAT " misses; checksum %" G_GUINT64_FORMAT ")\n",
          (double) elapsed * 1000.0 / READS, after.cache_hits - before.cache_hits,
          after.cache_misses - before.cache_misses, sum);
}

int
main (int argc, char **argv)
{
  const char *parent = argc > 1 ? argv[1] : ".";
  guint rounds = argc > 2 ? (guint) g_ascii_strtoull (argv[2], NULL, 10) : 200;
  g_autofree char *dir = g_build_filename (parent, "tr-bench-dwb-XXXXXX", NULL);
  GError *error = NULL;
  TrGroupFile *file;
  TrDwBuffer *dwb;

  if (g_mkdtemp (dir) == NULL) {
    perror ("tr-bench-dwbuffer: mkdtemp");
    return 1;
  }
  file = tr_groupfile_open (tr_io_posix (), dir, "blocks", 64 * 1024 * 1024, &error);
  die_on_error (file != NULL, error, "open");
  dwb = tr_dwbuffer_new (tr_io_posix (), dir, BLOCK_SIZE, CACHE_BLOCKS, 0);
  tr_dwbuffer_add_file (dwb, 1, file);
  die_on_error (tr_dwbuffer_recover (dwb, &error), error, "recover");

  bench_sync (dwb, rounds > 0 ? rounds : 1);
  bench_cache (dwb);

  tr_dwbuffer_free (dwb);
  tr_groupfile_free (file);
  remove_dir (dir);
  return 0;
}
