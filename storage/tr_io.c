/* tr_io.c - the POSIX backend of TrIo and the thin dispatch wrappers.
 *
 * The POSIX backend retries EINTR and completes short writes itself, so a
 * FALSE from pwrite always means the bytes are not all there.  It never
 * retries a failed fsync: after a failed fdatasync the kernel may already
 * have dropped the dirty pages, so the caller must treat the file as failed
 * (STYLE.md §2, "storage I/O failures are sticky").
 */
#include "tr_io.h"

#include "tr_storage_error.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

void
tr_io_set_errno_error (GError **error, int errnum, const char *what, const char *path)
{
  g_set_error (error, TR_STORAGE_ERROR, tr_storage_error_from_errno (errnum), "%s %s: %s", what,
               path ? path : "(unknown file)", g_strerror (errnum));
}

/* Names the file behind @fd for an error message (cold path only). */
static char *
fd_path (int fd)
{
  char link[64];
  char target[4096];
  ssize_t n;

  g_snprintf (link, sizeof link, "/proc/self/fd/%d", fd);
  n = readlink (link, target, sizeof target - 1);
  if (n < 0)
    return g_strdup_printf ("fd %d", fd);
  target[n] = '\0';
  return g_strdup (target);
}

static void
set_fd_error (GError **error, int errnum, const char *what, int fd)
{
  g_autofree char *path = fd_path (fd);
  tr_io_set_errno_error (error, errnum, what, path);
}

static gboolean
posix_open (TrIo *io, const char *path, TrIoFlags flags, int *fd_out, GError **error)
{
  int oflags = O_CLOEXEC;
  int fd;

  (void) io;
  oflags |= (flags & TR_IO_WRITE) ? O_RDWR : O_RDONLY;
  if (flags & TR_IO_CREATE)
    oflags |= O_CREAT;
  if (flags & TR_IO_EXCLUSIVE)
    oflags |= O_EXCL;
  do
    fd = open (path, oflags, 0644);
  while (fd < 0 && errno == EINTR);
  if (fd < 0) {
    tr_io_set_errno_error (error, errno, "cannot open", path);
    return FALSE;
  }
  *fd_out = fd;
  return TRUE;
}

static gboolean
posix_close (TrIo *io, int fd, GError **error)
{
  (void) io;
  /* close(2) must not be retried on EINTR on Linux: the fd is gone either way. */
  if (close (fd) < 0 && errno != EINTR) {
    tr_io_set_errno_error (error, errno, "cannot close", "file");
    return FALSE;
  }
  return TRUE;
}

static gboolean
posix_pwrite (TrIo *io, int fd, const void *buf, gsize len, guint64 offset, GError **error)
{
  const guint8 *p = buf;

  (void) io;
  while (len > 0) {
    ssize_t n = pwrite (fd, p, len, (off_t) offset);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      set_fd_error (error, errno, "cannot write", fd);
      return FALSE;
    }
    if (n == 0) {
      set_fd_error (error, ENOSPC, "cannot write", fd);
      return FALSE;
    }
    p += n;
    len -= (gsize) n;
    offset += (guint64) n;
  }
  return TRUE;
}

static gboolean
posix_pread (TrIo *io, int fd, void *buf, gsize len, guint64 offset, gsize *got_out, GError **error)
{
  guint8 *p = buf;
  gsize got = 0;

  (void) io;
  while (got < len) {
    ssize_t n = pread (fd, p + got, len - got, (off_t) (offset + got));
    if (n < 0) {
      if (errno == EINTR)
        continue;
      set_fd_error (error, errno, "cannot read", fd);
      return FALSE;
    }
    if (n == 0)
      break;
    got += (gsize) n;
  }
  *got_out = got;
  return TRUE;
}

static gboolean
posix_fsync (TrIo *io, int fd, GError **error)
{
  (void) io;
  if (fdatasync (fd) < 0) {
    set_fd_error (error, errno, "cannot sync", fd);
    return FALSE;
  }
  return TRUE;
}

static gboolean
posix_fsync_dir (TrIo *io, const char *dir, GError **error)
{
  int fd;
  int rc;

  (void) io;
  fd = open (dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) {
    tr_io_set_errno_error (error, errno, "cannot open directory", dir);
    return FALSE;
  }
  rc = fsync (fd);
  if (rc < 0)
    tr_io_set_errno_error (error, errno, "cannot sync directory", dir);
  close (fd);
  return rc == 0;
}

static gboolean
posix_rename (TrIo *io, const char *from, const char *to, GError **error)
{
  (void) io;
  if (rename (from, to) < 0) {
    tr_io_set_errno_error (error, errno, "cannot rename", from);
    g_prefix_error (error, "(to %s) ", to);
    return FALSE;
  }
  return TRUE;
}

static gboolean
posix_truncate (TrIo *io, int fd, guint64 length, GError **error)
{
  (void) io;
  if (ftruncate (fd, (off_t) length) < 0) {
    set_fd_error (error, errno, "cannot truncate", fd);
    return FALSE;
  }
  return TRUE;
}

static gboolean
posix_unlink (TrIo *io, const char *path, GError **error)
{
  (void) io;
  if (unlink (path) < 0) {
    tr_io_set_errno_error (error, errno, "cannot remove", path);
    return FALSE;
  }
  return TRUE;
}

static gboolean
posix_size (TrIo *io, int fd, guint64 *size_out, GError **error)
{
  struct stat st;

  (void) io;
  if (fstat (fd, &st) < 0) {
    set_fd_error (error, errno, "cannot stat", fd);
    return FALSE;
  }
  *size_out = (guint64) st.st_size;
  return TRUE;
}

static gboolean
posix_free_space (TrIo *io, const char *path, guint64 *avail_out, guint64 *total_out, GError **error)
{
  struct statvfs st;

  (void) io;
  if (statvfs (path, &st) < 0) {
    tr_io_set_errno_error (error, errno, "cannot read the free space of", path);
    return FALSE;
  }
  /* f_bavail, not f_bfree: the blocks reserved for root are not ours. */
  *avail_out = (guint64) st.f_bavail * st.f_frsize;
  *total_out = (guint64) st.f_blocks * st.f_frsize;
  return TRUE;
}

static const TrIoVtable posix_vtable = {
  .open = posix_open,
  .close = posix_close,
  .pwrite = posix_pwrite,
  .pread = posix_pread,
  .fsync = posix_fsync,
  .fsync_dir = posix_fsync_dir,
  .rename = posix_rename,
  .truncate = posix_truncate,
  .unlink = posix_unlink,
  .size = posix_size,
  .free_space = posix_free_space,
};

TrIo *
tr_io_posix (void)
{
  /* A constant table: the backend has no state, so one instance serves all. */
  static TrIo posix_io = { &posix_vtable, NULL };
  return &posix_io;
}

gboolean
tr_io_free_space (TrIo *io, const char *path, guint64 *avail_out, guint64 *total_out, GError **error)
{
  g_return_val_if_fail (io != NULL && path != NULL && avail_out != NULL && total_out != NULL, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);
  return io->vtable->free_space (io, path, avail_out, total_out, error);
}

gboolean
tr_io_open (TrIo *io, const char *path, TrIoFlags flags, int *fd_out, GError **error)
{
  g_return_val_if_fail (io != NULL && path != NULL && fd_out != NULL, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);
  return io->vtable->open (io, path, flags, fd_out, error);
}

gboolean
tr_io_close (TrIo *io, int fd, GError **error)
{
  return io->vtable->close (io, fd, error);
}

gboolean
tr_io_pwrite (TrIo *io, int fd, const void *buf, gsize len, guint64 offset, GError **error)
{
  return io->vtable->pwrite (io, fd, buf, len, offset, error);
}

gboolean
tr_io_pread (TrIo *io, int fd, void *buf, gsize len, guint64 offset, gsize *got_out, GError **error)
{
  return io->vtable->pread (io, fd, buf, len, offset, got_out, error);
}

gboolean
tr_io_pread_full (TrIo *io, int fd, void *buf, gsize len, guint64 offset, const char *what,
                  GError **error)
{
  gsize got = 0;

  if (!io->vtable->pread (io, fd, buf, len, offset, &got, error))
    return FALSE;
  if (got != len) {
    g_set_error (error, TR_STORAGE_ERROR, TR_STORAGE_ERROR_CORRUPT,
                 "short read in %s at offset %" G_GUINT64_FORMAT ": wanted %" G_GSIZE_FORMAT
                 " bytes, file has %" G_GSIZE_FORMAT,
                 what, offset, len, got);
    return FALSE;
  }
  return TRUE;
}

gboolean
tr_io_fsync (TrIo *io, int fd, GError **error)
{
  return io->vtable->fsync (io, fd, error);
}

gboolean
tr_io_fsync_dir (TrIo *io, const char *dir, GError **error)
{
  return io->vtable->fsync_dir (io, dir, error);
}

gboolean
tr_io_rename (TrIo *io, const char *from, const char *to, GError **error)
{
  return io->vtable->rename (io, from, to, error);
}

gboolean
tr_io_truncate (TrIo *io, int fd, guint64 length, GError **error)
{
  return io->vtable->truncate (io, fd, length, error);
}

gboolean
tr_io_unlink (TrIo *io, const char *path, GError **error)
{
  return io->vtable->unlink (io, path, error);
}

gboolean
tr_io_size (TrIo *io, int fd, guint64 *size_out, GError **error)
{
  return io->vtable->size (io, fd, size_out, error);
}

gboolean
tr_io_exists (const char *path)
{
  struct stat st;
  return stat (path, &st) == 0;
}

void
tr_io_close_quietly (TrIo *io, int fd)
{
  g_autoptr (GError) error = NULL;

  if (fd >= 0 && !tr_io_close (io, fd, &error))
    g_warning ("%s", error->message);
}
