/* Self-test of the fault-injecting TrIo (tests/support/tr_fault_io.h): the
 * crash suites are only as good as the power loss they simulate. */
#include "tr_fault_io.h"
#include "tr_storage_error.h"
#include "tr_test_util.h"

#include <criterion/criterion.h>
#include <errno.h>

Test (tr_fault_io, countdown_fails_nth_write_once)
{
  g_autofree char *dir = tr_test_mkdtemp ();
  g_autofree char *path = g_build_filename (dir, "f", NULL);
  g_autoptr (TrFaultIo) fault = tr_fault_io_new ();
  TrIo *io = tr_fault_io_get_io (fault);
  g_autoptr (GError) error = NULL;
  int fd;

  cr_assert (tr_io_open (io, path, TR_IO_WRITE | TR_IO_CREATE, &fd, NULL));
  tr_fault_io_arm (fault, TR_FAULT_WRITE, 2, ENOSPC, FALSE, FALSE);
  cr_assert (tr_io_pwrite (io, fd, "a", 1, 0, NULL));
  cr_assert_not (tr_io_pwrite (io, fd, "b", 1, 1, &error));
  cr_assert (g_error_matches (error, TR_STORAGE_ERROR, TR_STORAGE_ERROR_FULL));
  cr_assert (tr_fault_io_fired (fault));
  cr_assert (tr_io_pwrite (io, fd, "c", 1, 1, NULL));
  cr_assert (tr_io_close (io, fd, NULL));
  tr_test_rmdir (dir);
}

Test (tr_fault_io, power_loss_drops_unsynced_bytes_and_names)
{
  g_autofree char *dir = tr_test_mkdtemp ();
  g_autofree char *synced = g_build_filename (dir, "synced", NULL);
  g_autofree char *fresh = g_build_filename (dir, "fresh", NULL);
  g_autoptr (TrFaultIo) fault = tr_fault_io_new ();
  TrIo *io = tr_fault_io_get_io (fault);
  g_autoptr (GBytes) after = NULL;
  int fd, fd2;

  cr_assert (tr_io_open (io, synced, TR_IO_WRITE | TR_IO_CREATE, &fd, NULL));
  cr_assert (tr_io_pwrite (io, fd, "durable", 7, 0, NULL));
  cr_assert (tr_io_fsync (io, fd, NULL));
  cr_assert (tr_io_fsync_dir (io, dir, NULL));
  cr_assert (tr_io_pwrite (io, fd, "XX-lost-tail", 12, 5, NULL));
  cr_assert (tr_io_open (io, fresh, TR_IO_WRITE | TR_IO_CREATE, &fd2, NULL));
  cr_assert (tr_io_pwrite (io, fd2, "x", 1, 0, NULL));
  cr_assert (tr_io_fsync (io, fd2, NULL));

  tr_fault_io_power_loss (fault, TR_FAULT_LOSS_DROP, 1);
  after = tr_test_read_file (synced);
  cr_assert_eq (g_bytes_get_size (after), 7);
  cr_assert_arr_eq (g_bytes_get_data (after, NULL), "durable", 7);
  cr_assert_eq (tr_test_file_size (fresh), -1, "file never made durable in its dir survived");
  cr_assert_not (tr_io_pwrite (io, fd, "z", 1, 0, NULL), "dead fd still writable");
  cr_assert (tr_io_close (io, fd, NULL));
  cr_assert (tr_io_close (io, fd2, NULL));
  tr_test_rmdir (dir);
}

Test (tr_fault_io, power_loss_reverts_unsynced_rename)
{
  g_autofree char *dir = tr_test_mkdtemp ();
  g_autofree char *a = g_build_filename (dir, "a", NULL);
  g_autofree char *b = g_build_filename (dir, "b", NULL);
  g_autoptr (TrFaultIo) fault = tr_fault_io_new ();
  TrIo *io = tr_fault_io_get_io (fault);
  g_autoptr (GBytes) old_b = NULL;

  tr_test_write_file (a, "new", 3);
  tr_test_write_file (b, "old", 3);
  cr_assert (tr_io_rename (io, a, b, NULL));
  tr_fault_io_power_loss (fault, TR_FAULT_LOSS_DROP, 1);
  old_b = tr_test_read_file (b);
  cr_assert_arr_eq (g_bytes_get_data (old_b, NULL), "old", 3);
  cr_assert_eq (tr_test_file_size (a), 3);
  tr_test_rmdir (dir);
}

Test (tr_fault_io, garble_keeps_synced_prefix)
{
  g_autofree char *dir = tr_test_mkdtemp ();
  g_autofree char *path = g_build_filename (dir, "g", NULL);
  g_autoptr (TrFaultIo) fault = tr_fault_io_new ();
  TrIo *io = tr_fault_io_get_io (fault);
  g_autoptr (GBytes) after = NULL;
  int fd;

  cr_assert (tr_io_open (io, path, TR_IO_WRITE | TR_IO_CREATE, &fd, NULL));
  cr_assert (tr_io_pwrite (io, fd, "keep", 4, 0, NULL));
  cr_assert (tr_io_fsync (io, fd, NULL));
  cr_assert (tr_io_fsync_dir (io, dir, NULL));
  cr_assert (tr_io_pwrite (io, fd, "garbled?", 8, 4, NULL));
  tr_fault_io_power_loss (fault, TR_FAULT_LOSS_GARBLE, 42);
  after = tr_test_read_file (path);
  cr_assert_eq (g_bytes_get_size (after), 12);
  cr_assert_arr_eq (g_bytes_get_data (after, NULL), "keep", 4);
  tr_io_close (io, fd, NULL);
  tr_test_rmdir (dir);
}
