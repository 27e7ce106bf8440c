/* test_tr_lockfile.c - the data directory lock (storage/tr_lockfile.h). */
#include "tr_lockfile.h"
#include "tr_storage_error.h"
#include "tr_test_util.h"

#include <criterion/criterion.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static char *test_dir;
static char *data_dir;

static void
setup (void)
{
  test_dir = tr_test_mkdtemp ();
  data_dir = g_build_filename (test_dir, "data", "sub", NULL);
}

static void
teardown (void)
{
  tr_test_rmdir (test_dir);
  g_clear_pointer (&test_dir, g_free);
  g_clear_pointer (&data_dir, g_free);
}

TestSuite (tr_lockfile, .init = setup, .fini = teardown);

static TrLockFile *
acquire_ok (void)
{
  g_autoptr (GError) error = NULL;
  TrLockFile *lock = tr_lockfile_acquire (tr_io_posix (), data_dir, &error);

  cr_assert_not_null (lock, "acquire: %s", error ? error->message : "?");
  return lock;
}

static char *
lock_content (void)
{
  g_autofree char *path = g_build_filename (data_dir, TR_LOCKFILE_NAME, NULL);
  g_autoptr (GBytes) bytes = tr_test_read_file (path);
  gsize len = 0;
  const char *data;

  cr_assert_not_null (bytes, "%s missing", path);
  data = g_bytes_get_data (bytes, &len);
  return g_strndup (data, len);
}

Test (tr_lockfile, creates_the_directory_and_writes_the_pid)
{
  g_autoptr (TrLockFile) lock = acquire_ok ();
  g_autofree char *content = lock_content ();
  g_autofree char *expected = g_strdup_printf ("%ld\n", (long) getpid ());
  g_autofree char *path = g_build_filename (data_dir, TR_LOCKFILE_NAME, NULL);

  cr_assert_str_eq (content, expected);
  cr_assert_str_eq (tr_lockfile_get_path (lock), path);
}

Test (tr_lockfile, second_holder_is_refused_with_the_directory_and_pid)
{
  g_autoptr (TrLockFile) lock = acquire_ok ();
  g_autoptr (GError) error = NULL;
  g_autofree char *pid = g_strdup_printf ("pid %ld,", (long) getpid ());
  g_autofree char *before = lock_content ();
  g_autofree char *after = NULL;

  /* A second open file description conflicts even in the same process. */
  cr_assert_null (tr_lockfile_acquire (tr_io_posix (), data_dir, &error));
  cr_assert (g_error_matches (error, TR_STORAGE_ERROR, TR_STORAGE_ERROR_BUSY), "%s", error->message);
  cr_assert (strstr (error->message, data_dir) != NULL, "%s", error->message);
  cr_assert (strstr (error->message, pid) != NULL, "%s", error->message);
  after = lock_content ();
  cr_assert_str_eq (after, before, "the refused attempt changed the holder's pid");
}

Test (tr_lockfile, released_lock_can_be_taken_again_and_the_file_stays)
{
  TrLockFile *lock = acquire_ok ();
  g_autofree char *path = g_strdup (tr_lockfile_get_path (lock));

  tr_lockfile_free (lock);
  cr_assert (g_file_test (path, G_FILE_TEST_EXISTS));
  lock = acquire_ok ();
  tr_lockfile_free (lock);
}

Test (tr_lockfile, stale_content_without_a_holder_does_not_block)
{
  g_autofree char *path = g_build_filename (data_dir, TR_LOCKFILE_NAME, NULL);
  g_autoptr (TrLockFile) lock = NULL;
  g_autofree char *content = NULL;
  g_autofree char *expected = g_strdup_printf ("%ld\n", (long) getpid ());

  /* What a killed router leaves behind: a long stale pid, no lock. */
  g_mkdir_with_parents (data_dir, 0755);
  tr_test_write_file (path, "123456789012\n", 13);
  lock = acquire_ok ();
  content = lock_content ();
  cr_assert_str_eq (content, expected);
}

Test (tr_lockfile, holder_in_another_process_is_named, .timeout = 20)
{
  int to_parent[2], to_child[2];
  g_autoptr (GError) error = NULL;
  g_autofree char *pid_text = NULL;
  TrLockFile *lock;
  pid_t child;
  char byte = 0;
  int status = 0;

  cr_assert (pipe (to_parent) == 0 && pipe (to_child) == 0);
  child = fork ();
  cr_assert (child >= 0);
  if (child == 0) {
    TrLockFile *held = tr_lockfile_acquire (tr_io_posix (), data_dir, NULL);
    byte = held != NULL ? 'L' : 'F';
    if (write (to_parent[1], &byte, 1) != 1 || read (to_child[0], &byte, 1) != 1)
      _exit (3);
    tr_lockfile_free (held);
    _exit (0);
  }
  cr_assert_eq (read (to_parent[0], &byte, 1), 1);
  cr_assert_eq (byte, 'L', "child could not take the lock");
  pid_text = g_strdup_printf ("pid %ld,", (long) child);
  cr_assert_null (tr_lockfile_acquire (tr_io_posix (), data_dir, &error));
  cr_assert (strstr (error->message, pid_text) != NULL, "%s", error->message);
  /* The child ends: the kernel drops its lock. */
  cr_assert_eq (write (to_child[1], "x", 1), 1);
  cr_assert_eq (waitpid (child, &status, 0), child);
  cr_assert (WIFEXITED (status) && WEXITSTATUS (status) == 0);
  lock = acquire_ok ();
  tr_lockfile_free (lock);
}
