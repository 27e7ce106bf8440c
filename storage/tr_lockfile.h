/* tr_lockfile.h - one process per data directory.
 *
 * A router holds an exclusive flock(2) on DATA_DIR/lock for as long as it
 * runs, taken before anything reads or repairs the store: recovery on a
 * store that another process is writing would cut records that are not torn
 * but merely still being written, and rewrite checkpoints under that
 * process's feet.  The lock file holds the holder's pid in decimal followed
 * by a newline, so that the refused process can name it.  [LMDB lock.mdb,
 * PostgreSQL postmaster.pid, LevelDB LOCK]
 *
 * The kernel drops the lock when the holder's descriptor closes, including
 * when the process dies (kill -9, crash): a stale lock file never blocks a
 * restart, and its content is only trusted while someone holds the lock.
 * The file itself stays in the directory after release (deleting it would
 * let two processes lock two different inodes of the same name).
 *
 * Tools that only read the data directory do not take the lock.
 *
 * Threads: tr_lockfile_acquire() and tr_lockfile_free() from one thread, at
 * start-up and shutdown; the object has no other operations.
 */
#pragma once

#include "tr_io.h"

#include <glib.h>

G_BEGIN_DECLS

/* The lock file's name inside the data directory. */
#define TR_LOCKFILE_NAME "lock"

typedef struct _TrLockFile TrLockFile;

/* tr_lockfile_acquire:
 * @io: (transfer none): the I/O backend; must outlive the object.  Its
 *   descriptors must be real ones (flock is applied to them).
 * @dir: the data directory; created (with parents) when missing.
 *
 * Creates DATA_DIR/lock if needed, takes an exclusive non-blocking flock on
 * it and writes the calling process's pid into it.  Never waits.
 *
 * Returns: (transfer full) (nullable): the held lock, or NULL with @error:
 *   TR_STORAGE_ERROR_BUSY when another open file description holds the lock
 *   (the message names @dir and the holder's pid as read from the file),
 *   TR_STORAGE_ERROR_IO / _FULL when the directory or file cannot be
 *   created or written. */
TrLockFile *tr_lockfile_acquire (TrIo *io, const char *dir, GError **error);

/* tr_lockfile_get_path:
 * Returns: (transfer none): the lock file's path, valid until the object is
 *   freed. */
const char *tr_lockfile_get_path (TrLockFile *lock);

/* tr_lockfile_free:
 * Releases the lock (closes the descriptor) and frees the object.  The file
 * stays.  NULL is ignored. */
void tr_lockfile_free (TrLockFile *lock);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (TrLockFile, tr_lockfile_free)

G_END_DECLS
