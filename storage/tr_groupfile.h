/* tr_groupfile.h - GroupFile: one logical append-only byte stream in parts.
 *
 * A GroupFile named NAME in directory DIR is stored as part files DIR/NAME.0,
 * DIR/NAME.1, ... each at most @part_size bytes.  Logical offsets are 64-bit:
 * logical offset = part_index * part_size + offset inside the part.  A write
 * never spans two parts: an append that does not fit in the rest of the
 * current part starts the next part, so the tail of a part may be an unused
 * hole that no valid offset points into.  Reads likewise stay inside one part.
 * Consequently no single append or read may exceed @part_size.
 *
 * Parts:   (append rolls)                (drop_before)
 *   OPEN ---------------------> SEALED ----------------> DELETED
 *   tr_groupfile_append() seals the current part when the next write does not
 *   fit; tr_groupfile_drop_before() deletes whole sealed parts.
 *
 * Besides appending, a GroupFile can be written in place at any logical
 * offset at or after its first offset (tr_groupfile_write_at()): that is what
 * the block-structured files under the DoubleWriteBuffer need.
 *
 * Crash safety: tr_groupfile_sync() fdatasyncs every part written since the
 * last sync and, when a part was created or deleted, the directory, so the
 * part itself survives a power loss.  Opening finds the parts by listing
 * DIR; a missing part between the first and the last is TR_STORAGE_ERROR_CORRUPT
 * naming the missing file.  The GroupFile does not know the records inside
 * it: the logical size after open is the physical size of the last part, and
 * the owner (which knows its record format) truncates a torn tail with
 * tr_groupfile_truncate().
 *
 * Errors are sticky: after a failed write, sync or truncate every
 * mutating call fails with TR_STORAGE_ERROR_CLOSED until the GroupFile is
 * reopened.  Reads still work (they only see what was written before).
 * Two failures are not sticky, as they leave the logical stream untouched:
 * a part tr_groupfile_drop_before() cannot delete, and
 * tr_groupfile_zero_ahead().
 *
 * Thread safety: none.  One thread at a time (in the RPC store, whoever holds the commit lock);
 * reads from another thread need outside locking.  The one exception is
 * tr_groupfile_sync_run(), the fsyncs of a sync split in three steps: it
 * runs without the owner's lock, beside any other call, so that readers
 * of what is already written need not wait for a sync.
 */
#pragma once

#include "tr_io.h"

#include <glib.h>

G_BEGIN_DECLS

typedef struct _TrGroupFile TrGroupFile;

/* tr_groupfile_open:
 * @io: (transfer none): the I/O backend; must outlive the GroupFile
 * @dir: directory holding the parts (must exist)
 * @name: base name; parts are @name.0, @name.1, ...
 * @part_size: maximum bytes per part (> 0); must be the same on every open
 *
 * Opens or creates the GroupFile.  An empty directory gives an empty file
 * with first offset 0 and size 0 (no part is created until the first write).
 * Returns: (transfer full) (nullable): the GroupFile, or NULL with @error set
 * (TR_STORAGE_ERROR_IO, _CORRUPT for a missing middle part). */
TrGroupFile *tr_groupfile_open (TrIo *io, const char *dir, const char *name, guint64 part_size,
                                GError **error);

/* Closes the files (no sync: call tr_groupfile_sync() first to keep data). */
void tr_groupfile_free (TrGroupFile *file);

/* tr_groupfile_append:
 * Appends @len bytes (1 <= @len <= part_size).  Stores the logical offset of
 * the first byte in @offset_out.  The data is durable only after
 * tr_groupfile_sync().  Errors: TR_STORAGE_ERROR_IO, _FULL, _CLOSED. */
gboolean tr_groupfile_append (TrGroupFile *file, const void *buf, gsize len, guint64 *offset_out,
                              GError **error);

/* tr_groupfile_write_at:
 * Writes @len bytes at logical @offset, which must lie at or after the first
 * offset, with the whole write inside one part.  The file may grow (new parts
 * are created as needed); holes read back as zeros. */
gboolean tr_groupfile_write_at (TrGroupFile *file, guint64 offset, const void *buf, gsize len,
                                GError **error);

/* tr_groupfile_read:
 * Reads up to @len bytes at logical @offset into @buf, staying inside one
 * part.  *@got_out is less than @len only where the part ends.  Reading an
 * offset before the first offset is TR_STORAGE_ERROR_NOT_FOUND; at or past
 * the end gives *@got_out = 0. */
gboolean tr_groupfile_read (TrGroupFile *file, guint64 offset, void *buf, gsize len, gsize *got_out,
                            GError **error);

/* tr_groupfile_sync:
 * Makes every byte written so far durable (fdatasync of each dirty part, then
 * the directory if parts were created or deleted).  On failure the file is
 * FAILED (sticky). */
gboolean tr_groupfile_sync (TrGroupFile *file, GError **error);

/* A sync in three steps, for an owner that serialises calls with a lock
 * of its own and must not hold it across the fsyncs (readers of committed
 * data would wait for every sync):
 *
 *   lock; sync = tr_groupfile_sync_begin (); unlock;
 *   tr_groupfile_sync_run (sync);                 (no lock held)
 *   lock; ok = tr_groupfile_sync_end (file, sync); unlock;
 *
 * The sync covers every byte written, and every part created or deleted,
 * before tr_groupfile_sync_begin(); writes made meanwhile are covered by
 * the next sync.  Several syncs may overlap.  Between _begin() and _end()
 * any call may be made except tr_groupfile_truncate() (recovery, which owns
 * the file) and tr_groupfile_free(); tr_groupfile_drop_before() keeps a
 * part being synced.  tr_groupfile_sync() is the three steps in one. */
typedef struct _TrGroupFileSync TrGroupFileSync;

/* tr_groupfile_sync_begin:
 * Notes what a sync must cover.  Returns: (transfer full) (nullable): pass
 * it to tr_groupfile_sync_run() and then to tr_groupfile_sync_end(); NULL
 * with TR_STORAGE_ERROR_CLOSED if the file is FAILED. */
TrGroupFileSync *tr_groupfile_sync_begin (TrGroupFile *file, GError **error);
/* tr_groupfile_sync_run:
 * The fsyncs (each part noted, then the directory if needed).  Touches
 * nothing of the GroupFile: call it without the owner's lock.  Its result
 * is kept in @sync for tr_groupfile_sync_end(). */
void tr_groupfile_sync_run (TrGroupFileSync *sync);
/* tr_groupfile_sync_end:
 * @sync: (transfer full): freed here
 * Marks what the sync covered as durable; if an fsync failed, the file is
 * FAILED (sticky, as for tr_groupfile_sync()) and the error returned. */
gboolean tr_groupfile_sync_end (TrGroupFile *file, TrGroupFileSync *sync, GError **error);

/* tr_groupfile_truncate:
 * Cuts the logical file back to @offset (>= first offset, <= size): parts
 * after the one holding @offset are deleted, that part is truncated.  Used to
 * remove a torn tail found by recovery.  Not durable until the next sync. */
gboolean tr_groupfile_truncate (TrGroupFile *file, guint64 offset, GError **error);

/* tr_groupfile_drop_before:
 * Deletes every whole part that ends at or before @offset (retention).  The
 * part holding the last byte written is never deleted.  Logs each deletion
 * (structured, TR_FILE).  Durable after the next sync.  A part that cannot
 * be deleted stops the call with its error (naming the part and errno) but
 * leaves the file usable: the parts before it are gone, it and the rest stay
 * readable and appends go on; call again to retry. */
gboolean tr_groupfile_drop_before (TrGroupFile *file, guint64 offset, GError **error);

/* tr_groupfile_zero_ahead:
 * @ahead: keep zeros written up to this many bytes past the logical end
 * @max_bytes: when fewer than @ahead are there, write this much (less at
 *   the end of the part); call again until @path_out stays NULL
 * @path_out: (out) (transfer full) (nullable): the part written to, for the
 *   caller to fsync outside its locks; NULL when nothing was written
 * Preallocation for an owner that syncs after every append: writes zeros
 * after the last part's physical end (never past the part size).  Appends
 * then overwrite blocks the filesystem has already allocated, and their
 * fdatasync no longer has to commit a new file size and extent in the
 * journal (on ext4 on the project VM: 245 instead of 390 µs, and half the
 * CPU; docs/performance.md).  The zeros are not part of the logical file;
 * the part counts as written, so tr_groupfile_sync() syncs them too.  After a reopen, though, the
 * logical size is again the physical size, zeros included: the owner finds
 * its last valid record and truncates there, as it does for a torn tail.
 * Not sticky: a failure (a full disk, say) leaves the file usable. */
gboolean tr_groupfile_zero_ahead (TrGroupFile *file, guint64 ahead, gsize max_bytes, char **path_out,
                                  GError **error);
/* Logical offset where the last part's zeros end (the size when none). */
guint64 tr_groupfile_zeroed_end (TrGroupFile *file);

/* Logical end: the offset the next append would get if it fits the part. */
guint64 tr_groupfile_size (TrGroupFile *file);
/* First readable logical offset (start of the oldest remaining part). */
guint64 tr_groupfile_first_offset (TrGroupFile *file);
guint64 tr_groupfile_part_size (TrGroupFile *file);
/* Number of part files currently present. */
guint tr_groupfile_n_parts (TrGroupFile *file);
/* Total bytes in all parts (zeros written ahead included). */
guint64 tr_groupfile_disk_bytes (TrGroupFile *file);
/* Path of the part holding @offset. Returns: (transfer full). */
char *tr_groupfile_part_path (TrGroupFile *file, guint64 offset);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (TrGroupFile, tr_groupfile_free)

G_END_DECLS
