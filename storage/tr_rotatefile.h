/* tr_rotatefile.h - small, frequently rewritten state in two bounded files.
 *
 * A RotateFile keeps one piece of small state (an endpoint's acknowledged
 * seqid, send position, ...) durable without ever rewriting a file in place.
 * Every tr_rotatefile_write() appends a record holding the *full* state plus
 * a sequence number to the current file, PATH.0 or PATH.1.  When the record
 * does not fit in max_file_size, the other file is truncated to 0, the record
 * is written there and synced, and that file becomes the current one.  Load
 * picks the valid record with the highest sequence number across both files.
 *
 * On-disk format, version 1 (docs/format/rotatefile.md):
 *
 *   PATH.0, PATH.1: a sequence of records, each a record frame v1
 *   (tr_record.h) of type TR_ROTATEFILE_RECORD_TYPE whose payload is
 *
 *     offset size  field
 *     0      8     sequence number, little-endian u64, >= 1
 *     8      N     the caller's state bytes (N = payload length - 8)
 *
 *   A file is scanned from offset 0 record by record; the first record that
 *   is torn, fails its checksum, has another type, a payload shorter than
 *   8 bytes or a sequence number outside 1..TR_ROTATEFILE_MAX_SEQ ends the
 *   file (nothing after it is read).  The state is the
 *   payload of the valid record with the highest sequence number in either
 *   file; if neither file has a valid record there is no state (NOT_FOUND).
 *
 * Invariants (after tr_rotatefile_open() and after each successful call):
 *  - each file holds only a prefix of valid records: open cuts any invalid
 *    tail off (logged at g_message with TR_FILE), so a record hidden behind a
 *    torn one can never reappear after later appends;
 *  - every record has a sequence number higher than every record before it
 *    in either file, and the current file holds the newest record;
 *  - the current file never grows beyond max_file_size (an existing larger
 *    file written under a bigger limit is only read, then rotated away);
 *  - the newest *synced* record is never overwritten or truncated: rotation
 *    truncates only the other file, which holds strictly older states.
 *
 * Durability: tr_rotatefile_write() does not sync (except on rotation, see
 * tr_rotatefile.c); the caller decides when to call tr_rotatefile_sync().
 * After a crash, load returns the state of the last synced write or of a
 * later write, never an older one and never garbage.
 *
 * Errors are sticky (STYLE.md §2): once a write, truncate or fsync failed the
 * object returns TR_STORAGE_ERROR_CLOSED from every later write/sync/load
 * until it is freed and reopened (which re-runs recovery).
 *
 * Thread safety: none.  One TrRotateFile belongs to one thread (the storage
 * writer thread); distinct objects on distinct paths are independent.
 */
#pragma once

#include "tr_io.h"
#include "tr_record.h"

#include <glib.h>

G_BEGIN_DECLS

/* Record type of RotateFile state records in the record frame v1. */
#define TR_ROTATEFILE_RECORD_TYPE 0x52 /* 'R' */
/* Highest valid sequence number (2^63).  Larger ones and 0 only come from
 * damaged records; a write after a record at the limit fails with
 * TR_STORAGE_ERROR_CORRUPT instead of writing a record load would ignore. */
#define TR_ROTATEFILE_MAX_SEQ (G_GUINT64_CONSTANT (1) << 63)
/* Bytes of frame + sequence number around the caller's state. */
#define TR_ROTATEFILE_OVERHEAD (TR_RECORD_HEADER_SIZE + 8)
/* Smallest max_file_size accepted: one record with empty state. */
#define TR_ROTATEFILE_MIN_FILE_SIZE TR_ROTATEFILE_OVERHEAD

typedef struct _TrRotateFile TrRotateFile;

/* tr_rotatefile_open:
 * @io: (transfer none): the I/O backend; must outlive the object.
 * @path: base path; the files are "@path.0" and "@path.1" (created if
 *   missing, together with a directory sync so they cannot vanish later).
 * @max_file_size: bound of each file in bytes, >= TR_ROTATEFILE_MIN_FILE_SIZE.
 *
 * Opens or creates the pair and runs recovery: both files are scanned, the
 * invalid tail of each is truncated (and synced), and the next write goes
 * after the newest valid record.
 *
 * Returns: (transfer full) (nullable): the object, or NULL with @error set
 *   (TR_STORAGE_ERROR_IO / _FULL from the underlying calls). */
TrRotateFile *tr_rotatefile_open (TrIo *io, const char *path, gsize max_file_size, GError **error);

/* tr_rotatefile_load:
 * Scans both files on disk and returns the newest valid state.
 * @seq_out: (out) (optional): its sequence number.
 *
 * Returns: (transfer full) (nullable): the state bytes (possibly empty), or
 *   NULL with TR_STORAGE_ERROR_NOT_FOUND when neither file holds a valid
 *   record, TR_STORAGE_ERROR_IO on a read error, _CLOSED after a failure. */
GBytes *tr_rotatefile_load (TrRotateFile *rotatefile, guint64 *seq_out, GError **error);

/* tr_rotatefile_write:
 * Appends @data[0..@len) as the new full state.  @len must be at most
 * tr_rotatefile_get_max_data_size() (a programming error otherwise).  Not
 * durable until tr_rotatefile_sync() returns TRUE, except that a write which
 * rotates is synced before it returns.
 *
 * Returns: TRUE, or FALSE with TR_STORAGE_ERROR_IO / _FULL (the object is
 *   then failed), _CLOSED (it failed earlier) or _CORRUPT (the newest record
 *   is at TR_ROTATEFILE_MAX_SEQ: damaged; the object stays usable for load). */
gboolean tr_rotatefile_write (TrRotateFile *rotatefile, const void *data, gsize len, GError **error);

/* tr_rotatefile_sync:
 * Makes every write so far durable (fdatasync of each file written since the
 * last sync).  A failed sync fails the object: it is never retried.
 *
 * Returns: TRUE, or FALSE with TR_STORAGE_ERROR_IO / _FULL / _CLOSED. */
gboolean tr_rotatefile_sync (TrRotateFile *rotatefile, GError **error);

/* tr_rotatefile_get_max_data_size:
 * Returns: the largest @len tr_rotatefile_write() accepts
 *   (max_file_size - TR_ROTATEFILE_OVERHEAD). */
gsize tr_rotatefile_get_max_data_size (TrRotateFile *rotatefile);

/* tr_rotatefile_get_seq:
 * Returns: the sequence number of the newest record written or recovered,
 *   0 if there is none. */
guint64 tr_rotatefile_get_seq (TrRotateFile *rotatefile);

/* tr_rotatefile_free:
 * Closes both files without syncing (unsynced writes may be lost, exactly as
 * in a crash).  NULL is ignored. */
void tr_rotatefile_free (TrRotateFile *rotatefile);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (TrRotateFile, tr_rotatefile_free)

G_END_DECLS
