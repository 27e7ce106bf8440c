/* tr_io.h - the one door through which storage/ touches files.
 *
 * Every open, write, sync, rename, truncate and unlink made by the storage
 * primitives goes through a TrIo.  Production uses tr_io_posix(); tests plug
 * in a fault-injecting backend (tests/support/tr_fault_io.h) that fails the
 * Nth call, shortens writes, or simulates a power loss.  [SQLite VFS,
 * LevelDB Env]
 *
 * Files are plain POSIX descriptors.  Every function returns TRUE on success,
 * or FALSE with @error set in TR_STORAGE_ERROR (code from errno via
 * tr_storage_error_from_errno(), message naming the path and the errno text).
 *
 * Thread safety: the POSIX backend is stateless and may be used from any
 * thread.  A backend with state documents its own rules.
 */
#pragma once

#include <glib.h>
#include <sys/types.h>

G_BEGIN_DECLS

typedef struct _TrIo TrIo;

/* Open flags, a small subset of open(2), so backends need not parse them. */
typedef enum {
  TR_IO_READ = 0,          /* read only */
  TR_IO_WRITE = 1 << 0,    /* read + write */
  TR_IO_CREATE = 1 << 1,   /* create if missing (0644) */
  TR_IO_EXCLUSIVE = 1 << 2 /* with CREATE: fail if it exists */
} TrIoFlags;

typedef struct {
  gboolean (*open) (TrIo *io, const char *path, TrIoFlags flags, int *fd_out, GError **error);
  gboolean (*close) (TrIo *io, int fd, GError **error);
  /* Writes all @len bytes at @offset, or fails.  A short write is an error. */
  gboolean (*pwrite) (TrIo *io, int fd, const void *buf, gsize len, guint64 offset, GError **error);
  /* Reads up to @len bytes at @offset into @buf; *@got_out < @len only at end of file. */
  gboolean (*pread) (TrIo *io, int fd, void *buf, gsize len, guint64 offset, gsize *got_out, GError **error);
  /* fdatasync(2): data and the metadata needed to read it back. */
  gboolean (*fsync) (TrIo *io, int fd, GError **error);
  /* Makes creates, renames and unlinks inside @dir durable. */
  gboolean (*fsync_dir) (TrIo *io, const char *dir, GError **error);
  gboolean (*rename) (TrIo *io, const char *from, const char *to, GError **error);
  gboolean (*truncate) (TrIo *io, int fd, guint64 length, GError **error);
  gboolean (*unlink) (TrIo *io, const char *path, GError **error);
  gboolean (*size) (TrIo *io, int fd, guint64 *size_out, GError **error);
  /* statvfs(2) of the filesystem holding @path: bytes an unprivileged
   * writer may still use, and the filesystem's size. */
  gboolean (*free_space) (TrIo *io, const char *path, guint64 *avail_out, guint64 *total_out, GError **error);
} TrIoVtable;

struct _TrIo {
  const TrIoVtable *vtable;
  gpointer user_data; /* backend state; NULL for POSIX */
};

/* tr_io_posix:
 * Returns: (transfer none): the process-wide POSIX backend (a constant). */
TrIo *tr_io_posix (void);

/* Convenience wrappers: each one calls the matching vtable entry. */
gboolean tr_io_open (TrIo *io, const char *path, TrIoFlags flags, int *fd_out, GError **error);
gboolean tr_io_close (TrIo *io, int fd, GError **error);
gboolean tr_io_pwrite (TrIo *io, int fd, const void *buf, gsize len, guint64 offset, GError **error);
gboolean tr_io_pread (TrIo *io, int fd, void *buf, gsize len, guint64 offset, gsize *got_out, GError **error);
/* Reads exactly @len bytes or fails with TR_STORAGE_ERROR_CORRUPT ("short
 * read") naming @what (a path for the message). */
gboolean tr_io_pread_full (TrIo *io, int fd, void *buf, gsize len, guint64 offset, const char *what,
                           GError **error);
gboolean tr_io_fsync (TrIo *io, int fd, GError **error);
gboolean tr_io_fsync_dir (TrIo *io, const char *dir, GError **error);
gboolean tr_io_rename (TrIo *io, const char *from, const char *to, GError **error);
gboolean tr_io_truncate (TrIo *io, int fd, guint64 length, GError **error);
gboolean tr_io_unlink (TrIo *io, const char *path, GError **error);
gboolean tr_io_size (TrIo *io, int fd, guint64 *size_out, GError **error);
gboolean tr_io_free_space (TrIo *io, const char *path, guint64 *avail_out, guint64 *total_out, GError **error);

/* tr_io_exists: TRUE if @path exists (plain stat, no vtable: it never
 * changes anything and cannot fail in a way recovery must see). */
gboolean tr_io_exists (const char *path);

/* Closes @fd, logging (not returning) a failure: for cleanup paths, where the
 * data that matters has been synced or will be discarded anyway. */
void tr_io_close_quietly (TrIo *io, int fd);

/* Sets @error from @errnum: "<what> <path>: <strerror>". */
void tr_io_set_errno_error (GError **error, int errnum, const char *what, const char *path);

G_END_DECLS
