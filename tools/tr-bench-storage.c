/* tr-bench-storage.c - GroupFile append throughput against a raw write() loop.
 *
 * For each configuration (sync every N records, or no sync at all) the
 * benchmark appends --records records of --record-size bytes
 *   (a) to a GroupFile through tr_groupfile_append() + tr_groupfile_sync(),
 *   (b) to a plain file with write() + fdatasync() (the floor GroupFile is
 *       measured against: the same syscalls with nothing around them),
 * both in the same directory, alternating which runs first, --rounds times,
 * and prints the median of each as records/s and MiB/s plus the ratio
 * GroupFile / raw.  Results and the machine are recorded in
 * docs/performance.md ("Storage: GroupFile vs raw write").
 *
 * Other storage benchmarks live in their own tools (the DoubleWriteBuffer one
 * is tools/tr-bench-dwbuffer.c); this file only measures GroupFile.
 *
 * The directory must be on a real disk: on tmpfs fdatasync costs nothing and
 * the figures mean nothing, so the tool warns when it sees tmpfs.
 */
#include "tr_groupfile.h"
#include "tr_io.h"

#include <errno.h>
#include <fcntl.h>
#include <glib/gstdio.h>
#include <linux/magic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/vfs.h>
#include <unistd.h>

typedef struct {
  const char *dir;
  guint64 records;
  guint record_size;
  guint sync_every; /* 0 = never */
  guint64 part_size;
} BenchParams;

typedef struct {
  double seconds;     /* wall clock */
  double cpu_seconds; /* user + system time of this process */
} BenchResult;

static char *opt_dir = NULL;
static gint64 opt_records = 200000;
static gint opt_record_size = 1024;
static gint opt_sync_every = -1; /* -1: run both 64 and 0 */
static gint64 opt_part_size = 64 * 1024 * 1024;
static gint opt_rounds = 3;

static GOptionEntry entries[] = {
  { "dir", 'd', 0, G_OPTION_ARG_FILENAME, &opt_dir,
    "Directory on the disk to measure (default: a new temp dir under /var/tmp)", "DIR" },
  { "records", 'n', 0, G_OPTION_ARG_INT64, &opt_records, "Records per run (default 200000)", "N" },
  { "record-size", 's', 0, G_OPTION_ARG_INT, &opt_record_size, "Bytes per record (default 1024)",
    "BYTES" },
  { "sync-every", 'e', 0, G_OPTION_ARG_INT, &opt_sync_every,
    "Sync every N records, 0 = never (default: run both 64 and 0)", "N" },
  { "part-size", 'p', 0, G_OPTION_ARG_INT64, &opt_part_size,
    "GroupFile part size (default 64 MiB)", "BYTES" },
  { "rounds", 'r', 0, G_OPTION_ARG_INT, &opt_rounds, "Runs of each, median reported (default 3)",
    "N" },
  { NULL, 0, 0, 0, NULL, NULL, NULL },
};

static double
cpu_now (void)
{
  struct rusage usage;

  getrusage (RUSAGE_SELF, &usage);
  return (double) usage.ru_utime.tv_sec + usage.ru_utime.tv_usec / 1e6
         + (double) usage.ru_stime.tv_sec + usage.ru_stime.tv_usec / 1e6;
}

typedef struct {
  gint64 wall_start;
  double cpu_start;
} BenchTimer;

static void
timer_start (BenchTimer *timer)
{
  timer->cpu_start = cpu_now ();
  timer->wall_start = g_get_monotonic_time ();
}

static void
timer_stop (const BenchTimer *timer, BenchResult *result)
{
  result->seconds = (double) (g_get_monotonic_time () - timer->wall_start) / G_USEC_PER_SEC;
  result->cpu_seconds = cpu_now () - timer->cpu_start;
}

static gboolean
bench_groupfile (const BenchParams *params, const char *subdir, const guint8 *record,
                 BenchResult *result, GError **error)
{
  g_autoptr (TrGroupFile) file = NULL;
  BenchTimer timer;

  if (g_mkdir (subdir, 0755) < 0) {
    tr_io_set_errno_error (error, errno, "cannot create", subdir);
    return FALSE;
  }
  file = tr_groupfile_open (tr_io_posix (), subdir, "bench", params->part_size, error);
  if (file == NULL)
    return FALSE;
  timer_start (&timer);
  for (guint64 i = 1; i <= params->records; i++) {
    if (!tr_groupfile_append (file, record, params->record_size, NULL, error))
      return FALSE;
    if (params->sync_every > 0 && i % params->sync_every == 0
        && !tr_groupfile_sync (file, error))
      return FALSE;
  }
  timer_stop (&timer, result);
  /* Outside the timing: flush so the next run does not pay for this one. */
  return tr_groupfile_sync (file, error);
}

/* The baseline calls write()/fdatasync() directly on purpose: it is what
 * GroupFile is compared with, so it must not go through TrIo. */
static gboolean
bench_raw (const BenchParams *params, const char *path, const guint8 *record, BenchResult *result,
           GError **error)
{
  int fd = open (path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  BenchTimer timer;

  if (fd < 0) {
    tr_io_set_errno_error (error, errno, "cannot create", path);
    return FALSE;
  }
  timer_start (&timer);
  for (guint64 i = 1; i <= params->records; i++) {
    if (write (fd, record, params->record_size) != (ssize_t) params->record_size
        || (params->sync_every > 0 && i % params->sync_every == 0 && fdatasync (fd) < 0)) {
      tr_io_set_errno_error (error, errno, "cannot write", path);
      close (fd);
      return FALSE;
    }
  }
  timer_stop (&timer, result);
  fdatasync (fd);
  close (fd);
  return TRUE;
}

static void
remove_tree (const char *path)
{
  GDir *dir = g_dir_open (path, 0, NULL);
  const char *name;

  if (dir == NULL) {
    g_unlink (path);
    return;
  }
  while ((name = g_dir_read_name (dir)) != NULL) {
    g_autofree char *child = g_build_filename (path, name, NULL);
    g_unlink (child);
  }
  g_dir_close (dir);
  g_rmdir (path);
}

static int
compare_seconds (gconstpointer a, gconstpointer b)
{
  double x = ((const BenchResult *) a)->seconds;
  double y = ((const BenchResult *) b)->seconds;
  return (x > y) - (x < y);
}

/* The run with the median wall time (its own CPU time comes with it). */
static BenchResult
median (GArray *results)
{
  g_array_sort (results, compare_seconds);
  return g_array_index (results, BenchResult, results->len / 2);
}

/* Runs both implementations opt_rounds times, alternating which goes first
 * so that neither always inherits the other's background writeback. */
static gboolean
bench_config (const BenchParams *params, const guint8 *record, BenchResult *gf_out,
              BenchResult *raw_out, GError **error)
{
  g_autoptr (GArray) gf = g_array_new (FALSE, FALSE, sizeof (BenchResult));
  g_autoptr (GArray) raw = g_array_new (FALSE, FALSE, sizeof (BenchResult));

  for (gint round = 0; round < opt_rounds; round++) {
    g_autofree char *subdir = g_strdup_printf ("%s/gf-%d", params->dir, round);
    g_autofree char *path = g_strdup_printf ("%s/raw-%d", params->dir, round);
    BenchResult gf_result = { 0, 0 };
    BenchResult raw_result = { 0, 0 };
    gboolean ok;

    if (round % 2 == 0)
      ok = bench_groupfile (params, subdir, record, &gf_result, error)
           && bench_raw (params, path, record, &raw_result, error);
    else
      ok = bench_raw (params, path, record, &raw_result, error)
           && bench_groupfile (params, subdir, record, &gf_result, error);
    remove_tree (subdir);
    remove_tree (path);
    if (!ok)
      return FALSE;
    g_array_append_val (gf, gf_result);
    g_array_append_val (raw, raw_result);
  }
  *gf_out = median (gf);
  *raw_out = median (raw);
  return TRUE;
}

static void
print_row (const BenchParams *params, const char *what, const BenchResult *result)
{
  double mib = (double) params->records * params->record_size / (1024.0 * 1024.0);
  char sync[32] = "never";

  if (params->sync_every > 0)
    g_snprintf (sync, sizeof sync, "every %u", params->sync_every);
  printf ("%-10s %-10s %11.0f %8.1f %8.3f %8.3f\n", sync, what,
          (double) params->records / result->seconds, mib / result->seconds, result->seconds,
          result->cpu_seconds);
}

static void
warn_if_tmpfs (const char *dir)
{
  struct statfs st;

  if (statfs (dir, &st) == 0 && st.f_type == TMPFS_MAGIC)
    g_printerr ("warning: %s is on tmpfs; fdatasync is free there, figures are meaningless\n", dir);
}

static gboolean
run_all (const char *dir, GError **error)
{
  g_autofree guint8 *record = g_malloc ((gsize) opt_record_size);
  guint configs[2] = { 64, 0 };
  guint n_configs = 2;

  for (gint i = 0; i < opt_record_size; i++)
    record[i] = (guint8) (i * 7 + 1);
  if (opt_sync_every >= 0) {
    configs[0] = (guint) opt_sync_every;
    n_configs = 1;
  }
  printf ("dir %s, %" G_GINT64_FORMAT " records x %d bytes, part size %" G_GINT64_FORMAT
          ", median of %d rounds\n",
          dir, opt_records, opt_record_size, opt_part_size, opt_rounds);
  printf ("%-10s %-10s %11s %8s %8s %8s\n", "sync", "writer", "records/s", "MiB/s", "wall s",
          "cpu s");
  for (guint c = 0; c < n_configs; c++) {
    BenchParams params = { dir, (guint64) opt_records, (guint) opt_record_size, configs[c],
                           (guint64) opt_part_size };
    BenchResult gf, raw;

    if (!bench_config (&params, record, &gf, &raw, error))
      return FALSE;
    print_row (&params, "raw", &raw);
    print_row (&params, "groupfile", &gf);
    printf ("%-10s %-10s %11.3f  (records/s groupfile/raw; cpu time raw/groupfile %.3f)\n", "", "ratio",
            raw.seconds / gf.seconds, raw.cpu_seconds / gf.cpu_seconds);
  }
  return TRUE;
}

int
main (int argc, char **argv)
{
  g_autoptr (GOptionContext) context = g_option_context_new ("- GroupFile vs raw write benchmark");
  g_autoptr (GError) error = NULL;
  g_autofree char *dir = NULL;
  gboolean temp_dir = FALSE;

  g_option_context_add_main_entries (context, entries, NULL);
  if (!g_option_context_parse (context, &argc, &argv, &error)) {
    g_printerr ("%s\n", error->message);
    return 2;
  }
  if (opt_records <= 0 || opt_record_size <= 0 || opt_rounds <= 0 || opt_part_size < opt_record_size) {
    g_printerr ("--records, --record-size, --rounds must be > 0 and --part-size >= --record-size\n");
    return 2;
  }
  if (opt_dir != NULL) {
    dir = g_strdup (opt_dir);
  } else {
    dir = g_strdup ("/var/tmp/tr-bench-storage-XXXXXX");
    if (g_mkdtemp (dir) == NULL) {
      g_printerr ("cannot create %s: %s\n", dir, g_strerror (errno));
      return 1;
    }
    temp_dir = TRUE;
  }
  warn_if_tmpfs (dir);
  if (!run_all (dir, &error))
    g_printerr ("tr-bench-storage: %s\n", error->message);
  if (temp_dir)
    g_rmdir (dir);
  return error == NULL ? 0 : 1;
}
