/* tr_lockfile.c - exclusive lock on a data directory (see tr_lockfile.h).
 *
 * File format (DATA_DIR/lock): the holder's pid in decimal ASCII and "\n".
 * Nothing else; it is rewritten by every holder and never synced: after a
 * crash the lock is gone anyway and the content is only read while the lock
 * is held by a live process, whose page cache has it.
 *
 * Order in tr_lockfile_acquire(): open (create) -> flock -> truncate ->
 * write pid.  The truncate comes only after the flock succeeded: a refused
 * process must never touch the holder's pid.
 *
 * flock(2) is called here directly, not through TrIo: a lock is not data,
 * there is nothing a crash could leave half done and nothing for a fault
 * backend to inject that the EWOULDBLOCK path below does not already cover.
 */
#include "tr_lockfile.h"

#include "tr_storage_error.h"

#include <errno.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

/* Enough for any pid and its newline; a longer file is not ours. */
#define TR_LOCKFILE_MAX_CONTENT 32

struct _TrLockFile {
  TrIo *io;
  char *path;
  int fd;
};

/* Reads the pid the holder wrote, as text for a message. */
static char *
holder_pid (TrIo *io, int fd)
{
  char buf[TR_LOCKFILE_MAX_CONTENT + 1];
  gsize got = 0;
  guint64 pid;
  char *end = NULL;

  if (!tr_io_pread (io, fd, buf, TR_LOCKFILE_MAX_CONTENT, 0, &got, NULL) || got == 0)
    return g_strdup ("unknown: it has not written it yet");
  buf[got] = '\0';
  pid = g_ascii_strtoull (buf, &end, 10);
  if (end == buf || pid == 0 || (*end != '\n' && *end != '\0'))
    return g_strdup ("unknown: the lock file holds no pid");
  return g_strdup_printf ("%" G_GUINT64_FORMAT, pid);
}

static gboolean
write_pid (TrLockFile *lock, GError **error)
{
  g_autofree char *text = g_strdup_printf ("%ld\n", (long) getpid ());

  return tr_io_truncate (lock->io, lock->fd, 0, error)
         && tr_io_pwrite (lock->io, lock->fd, text, strlen (text), 0, error);
}

static gboolean
take_lock (TrLockFile *lock, const char *dir, GError **error)
{
  g_autofree char *pid = NULL;
  int rc;

  do
    rc = flock (lock->fd, LOCK_EX | LOCK_NB);
  while (rc < 0 && errno == EINTR);
  if (rc == 0)
    return TRUE;
  if (errno != EWOULDBLOCK) {
    tr_io_set_errno_error (error, errno, "cannot lock", lock->path);
    return FALSE;
  }
  pid = holder_pid (lock->io, lock->fd);
  g_set_error (error, TR_STORAGE_ERROR, TR_STORAGE_ERROR_BUSY,
               "data directory %s is in use by another process (pid %s, holding %s): only one router may "
               "run on a data directory; stop that one first, or give this one its own data_dir",
               dir, pid, lock->path);
  return FALSE;
}

TrLockFile *
tr_lockfile_acquire (TrIo *io, const char *dir, GError **error)
{
  g_autoptr (TrLockFile) lock = NULL;

  g_return_val_if_fail (io != NULL && dir != NULL, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  if (g_mkdir_with_parents (dir, 0755) < 0) {
    tr_io_set_errno_error (error, errno, "cannot create data directory", dir);
    return NULL;
  }
  lock = g_new0 (TrLockFile, 1);
  lock->io = io;
  lock->fd = -1;
  lock->path = g_build_filename (dir, TR_LOCKFILE_NAME, NULL);
  if (!tr_io_open (io, lock->path, TR_IO_WRITE | TR_IO_CREATE, &lock->fd, error))
    return NULL;
  if (!take_lock (lock, dir, error) || !write_pid (lock, error))
    return NULL;
  return g_steal_pointer (&lock);
}

const char *
tr_lockfile_get_path (TrLockFile *lock)
{
  g_return_val_if_fail (lock != NULL, NULL);
  return lock->path;
}

void
tr_lockfile_free (TrLockFile *lock)
{
  if (lock == NULL)
    return;
  /* Closing the descriptor is what releases the lock. */
  if (lock->fd >= 0)
    tr_io_close_quietly (lock->io, lock->fd);
  g_free (lock->path);
  g_free (lock);
}
