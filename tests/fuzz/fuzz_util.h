/* fuzz_util.h - helpers shared by the libFuzzer harnesses in tests/fuzz/.
 *
 * Header-only (each harness is one translation unit plus the project
 * libraries).  Logging: g_critical / g_error are contract violations
 * (STYLE.md §7) and count as crashes; everything else the code under test
 * logs is dropped so the fuzzer's output stays readable (set
 * TR_FUZZ_VERBOSE=1 to see it). */
#pragma once

#include <glib.h>
#include <glib/gstdio.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define FUZZ_CHECK(cond)                                                                           \
  do {                                                                                             \
    if (!(cond)) {                                                                                 \
      g_printerr ("%s:%d: fuzz invariant failed: %s\n", __FILE__, __LINE__, #cond);                \
      __builtin_trap ();                                                                           \
    }                                                                                              \
  } while (0)

static GLogWriterOutput
fuzz_log_writer (GLogLevelFlags level, const GLogField *fields, gsize n_fields, gpointer user_data)
{
  static int verbose = -1;

  (void) user_data;
  if (verbose < 0)
    verbose = g_getenv ("TR_FUZZ_VERBOSE") != NULL;
  if (level & (G_LOG_LEVEL_CRITICAL | G_LOG_LEVEL_ERROR)) {
    g_log_writer_standard_streams (level, fields, n_fields, NULL);
    __builtin_trap ();
  }
  if (verbose)
    return g_log_writer_standard_streams (level, fields, n_fields, NULL);
  return G_LOG_WRITER_HANDLED;
}

static inline void
fuzz_init_logging (void)
{
  g_log_set_writer_func (fuzz_log_writer, NULL, NULL);
}

/* Removes everything under @path (not @path itself). */
static inline void
fuzz_clear_dir (const char *path)
{
  GDir *dir = g_dir_open (path, 0, NULL);
  const char *name;

  if (dir == NULL)
    return;
  while ((name = g_dir_read_name (dir)) != NULL) {
    char *child = g_build_filename (path, name, NULL);
    if (g_file_test (child, G_FILE_TEST_IS_DIR) && !g_file_test (child, G_FILE_TEST_IS_SYMLINK)) {
      fuzz_clear_dir (child);
      g_rmdir (child);
    } else {
      g_unlink (child);
    }
    g_free (child);
  }
  g_dir_close (dir);
}

static char *fuzz_tmpdir_path;

static void
fuzz_tmpdir_remove (void)
{
  if (fuzz_tmpdir_path != NULL) {
    fuzz_clear_dir (fuzz_tmpdir_path);
    g_rmdir (fuzz_tmpdir_path);
  }
}

/* The harness's scratch directory: created on first use, removed at exit.
 * Under $TR_FUZZ_TMPDIR, else /dev/shm when it is there (a tmpfs: the
 * fsyncs of the storage code cost nothing), else $TMPDIR. */
static inline const char *
fuzz_tmpdir (void)
{
  if (fuzz_tmpdir_path == NULL) {
    const char *base = g_getenv ("TR_FUZZ_TMPDIR");
    g_autofree char *templ = NULL;

    if (base == NULL)
      base = g_file_test ("/dev/shm", G_FILE_TEST_IS_DIR) && access ("/dev/shm", W_OK) == 0 ? "/dev/shm"
                                                                                              : g_get_tmp_dir ();
    templ = g_build_filename (base, "tr-fuzz-XXXXXX", NULL);
    fuzz_tmpdir_path = g_mkdtemp (g_steal_pointer (&templ));
    if (fuzz_tmpdir_path == NULL)
      abort ();
    atexit (fuzz_tmpdir_remove);
  }
  return fuzz_tmpdir_path;
}

static inline void
fuzz_write_file (const char *path, const void *data, gsize len)
{
  FILE *f = fopen (path, "wb"); /* not g_file_set_contents: no fsync, no rename */

  if (f == NULL || (len > 0 && fwrite (data, 1, len, f) != len) || fclose (f) != 0)
    abort ();
}
