/* tr_storage_error.h - the error domain of the storage layer.
 *
 * Every public function of storage/ that can fail reports through a GError in
 * this domain (or passes on a GFileError from GLib with context prefixed).
 */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

#define TR_STORAGE_ERROR (tr_storage_error_quark ())

typedef enum {
  TR_STORAGE_ERROR_IO,        /* a system call failed; message names file and errno */
  TR_STORAGE_ERROR_CORRUPT,   /* on-disk data failed validation; names file and offset */
  TR_STORAGE_ERROR_FULL,      /* ENOSPC / EDQUOT: no space left on the device */
  TR_STORAGE_ERROR_CLOSED,    /* the object failed earlier and must be reopened */
  TR_STORAGE_ERROR_NOT_FOUND, /* offset / record / file does not exist (or was dropped) */
  TR_STORAGE_ERROR_BUSY,      /* another process holds the data directory's lock (tr_lockfile.h) */
  TR_STORAGE_ERROR_SEQUENCE,  /* records applied as follower do not continue the store at head + 1 */
  TR_STORAGE_ERROR_SPACE_LOW, /* free space below min_free_space: new writes refused before the disk fills */
} TrStorageError;

GQuark tr_storage_error_quark (void);

/* tr_storage_error_from_errno:
 * Maps an errno value to the TrStorageError code used for it: ENOSPC and
 * EDQUOT are FULL, ENOENT is NOT_FOUND, everything else IO. */
TrStorageError tr_storage_error_from_errno (int errnum);

G_END_DECLS
