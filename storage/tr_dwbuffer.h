/* tr_dwbuffer.h - DoubleWriteBuffer: write buffer + read cache over
 * block-structured GroupFiles, made durable through a journal.
 *
 * The RPC index and the per-service seqid lists are arrays of fixed-size
 * blocks stored in GroupFiles.  Block B of a registered file lives at logical
 * offset B * block_size of that GroupFile.  Writers change bytes of blocks in
 * memory (the "active" dirty-block buffer); a sync makes them durable without
 * ever leaving a torn block behind:
 *
 *   1. under ->lock, the active buffer becomes the "flushing" buffer and an
 *      empty one takes its place, so writers continue during the flush;
 *   2. every flushing block is written as a record into DIR/double_write_prepare
 *      and the journal is fsynced (plus the directory, it is a new file);
 *   3. the blocks are written in place, sorted by (file id, block id), and
 *      every GroupFile touched is synced;
 *   4. the journal is unlinked and the directory fsynced.
 *
 * tr_dwbuffer_recover() replays a complete journal (repairing blocks torn in
 * step 3) and discards an incomplete one (a crash in step 2: no block was
 * written in place yet).  Journal format: docs/format/dwbuffer.md (v1).
 *
 * Reads look in the active buffer, then the flushing buffer, then the read
 * cache (CLOCK, at most @cache_blocks blocks), then the GroupFile (filling the
 * cache).  Reads always see the latest write (read-your-writes).
 *
 * Life cycle:
 *
 *   tr_dwbuffer_new() -> tr_dwbuffer_add_file() x N -> tr_dwbuffer_recover()
 *     -> write/read/sync ... -> tr_dwbuffer_free()
 *
 *   READY --(journal/in-place write or sync fails)--> FAILED (sticky): every
 *   later write, read and sync fails with TR_STORAGE_ERROR_CLOSED; free,
 *   reopen the GroupFiles and recover to continue.  (A part that
 *   tr_dwbuffer_drop_before() cannot delete does not make it FAILED.)
 *
 * Memory bound: at most @cache_blocks cached blocks plus the dirty blocks.
 * Dirty blocks are bounded by @max_dirty_blocks (0 = unbounded): a write that
 * needs a new dirty block while the active buffer is full asks for a sync and
 * performs a sync itself first (backpressure); a sync already running (on
 * another thread) is waited for.  The flushing buffer adds at most another
 * @max_dirty_blocks.  There is no sync thread: the owner decides when to
 * sync (the RPC store: its writer thread, at every checkpoint).
 *
 * Thread safety: after tr_dwbuffer_recover(), write, read, sync,
 * drop_before and get_stats may be called from any thread, and a read never
 * waits for a sync's I/O.  new, add_file, recover and free must not run
 * concurrently with any other call.  The registered GroupFiles belong to the
 * DoubleWriteBuffer while it lives: nobody else may touch them (GroupFile is
 * not thread-safe; every access made here holds ->file_lock).  The TrIo must
 * be usable from every thread that calls in (the POSIX and the fault
 * backends are).
 *
 * Lock order: the module has two mutexes, ->lock (buffers, cache, state) and
 * ->file_lock (GroupFile access and in-place I/O).  They are never nested:
 * neither is taken while the other is held, and no I/O happens under ->lock.
 */
#pragma once

#include "tr_groupfile.h"
#include "tr_io.h"

#include <glib.h>

G_BEGIN_DECLS

typedef struct _TrDwBuffer TrDwBuffer;

/* Name of the journal file inside the directory given to tr_dwbuffer_new(). */
#define TR_DWBUFFER_JOURNAL_NAME "double_write_prepare"

/* Counters for tests, tools and the admin stats (a plain value). */
typedef struct {
  guint64 cache_hits;    /* reads/loads served by the read cache */
  guint64 cache_misses;  /* reads/loads that went to a GroupFile */
  gsize cached_blocks;   /* blocks in the read cache now (<= cache_blocks) */
  gsize dirty_blocks;    /* blocks in the active buffer now */
  gsize flushing_blocks; /* blocks in the buffer being flushed now */
  guint64 syncs;         /* completed syncs that wrote at least one block */
  guint64 blocks_synced; /* blocks written in place by those syncs */
} TrDwBufferStats;

/* tr_dwbuffer_new:
 * @io: (transfer none): the I/O backend; must outlive the buffer
 * @dir: directory of the journal (must exist); copied
 * @block_size: bytes per block (> 0)
 * @cache_blocks: read cache capacity in blocks (0: no cache)
 * @max_dirty_blocks: backpressure limit of the active buffer (0: unbounded)
 *
 * Creates an empty buffer with no file registered.
 * Nothing is read or written yet.
 * Returns: (transfer full): the buffer; never NULL. */
TrDwBuffer *tr_dwbuffer_new (TrIo *io, const char *dir, guint32 block_size, gsize cache_blocks,
                             gsize max_dirty_blocks);

/* tr_dwbuffer_add_file:
 * @file_id: the id journal records carry for this file; unique
 * @file: (transfer none): the GroupFile; must outlive the buffer and must not
 *   be used by anyone else while the buffer lives
 *
 * Registers a block-structured GroupFile.  Only before tr_dwbuffer_recover().
 * The GroupFile's part size must be a multiple of the block size, so that a
 * block never spans two parts.  Violations are programming errors
 * (g_return_if_fail). */
void tr_dwbuffer_add_file (TrDwBuffer *dwb, guint32 file_id, TrGroupFile *file);

/* tr_dwbuffer_add_file_live:
 * Registers one more GroupFile after tr_dwbuffer_recover() (a service added
 * by a configuration reload).  The caller must
 * guarantee that no other call on @dwb runs at the same time (the RPC store
 * does it under its commit lock with its files lock held for writing).
 * Arguments and checks as for tr_dwbuffer_add_file(). */
void tr_dwbuffer_add_file_live (TrDwBuffer *dwb, guint32 file_id, TrGroupFile *file);

/* tr_dwbuffer_recover:
 * Looks for DIR/double_write_prepare.  A complete journal (every record
 * valid, commit present with the right count) is written into the registered
 * files, which are synced, then the journal is removed.  An incomplete one is
 * logged (structured, TR_FILE) and removed without touching the files.  No
 * journal: nothing to do.  Must be called exactly once, after every
 * tr_dwbuffer_add_file() and before any read or write.
 * Errors: TR_STORAGE_ERROR_IO / _FULL (I/O; the buffer is then FAILED),
 * _CORRUPT (a complete journal names an unregistered file id or another
 * block size: it cannot be replayed, so startup must stop). */
gboolean tr_dwbuffer_recover (TrDwBuffer *dwb, GError **error);

/* tr_dwbuffer_write:
 * Copies @len bytes from @data to byte @offset_in_block of block @block_id of
 * file @file_id (@offset_in_block + @len <= block_size).  A block not yet
 * dirty is first loaded (flushing buffer, cache, then disk; past the end of
 * the file it reads as zeros).  Durable only after a sync.  May block on
 * backpressure (see above).
 * Errors: TR_STORAGE_ERROR_CLOSED (FAILED), _NOT_FOUND (unregistered file
 * id, or the block lies in a dropped part), _IO (loading the block). */
gboolean tr_dwbuffer_write (TrDwBuffer *dwb, guint32 file_id, guint64 block_id,
                            guint32 offset_in_block, const void *data, gsize len, GError **error);

/* tr_dwbuffer_read:
 * Copies @len bytes at @offset_in_block of the block into @buf (caller
 * owned), seeing every write made before the call.  Never blocks on a sync.
 * Errors: as tr_dwbuffer_write(). */
gboolean tr_dwbuffer_read (TrDwBuffer *dwb, guint32 file_id, guint64 block_id,
                           guint32 offset_in_block, void *buf, gsize len, GError **error);

/* tr_dwbuffer_sync:
 * Makes every write made before the call durable, from the caller's thread
 * (steps 1-4 above; waits first if another sync is running).  Nothing dirty:
 * returns TRUE without I/O.  A failure makes the buffer FAILED.
 * Errors: TR_STORAGE_ERROR_IO, _FULL, _CLOSED (FAILED before the call). */
gboolean tr_dwbuffer_sync (TrDwBuffer *dwb, GError **error);

/* tr_dwbuffer_drop_before:
 * Retention for a registered file: tr_groupfile_drop_before(@offset) under
 * ->file_lock, then forgets dirty and cached blocks that now lie before the
 * file's first offset (a dirty block of a dropped part is discarded; one
 * already being flushed is skipped by the flush).  The deletion is durable
 * after the next sync that touches the file; if it is lost in a power loss
 * the parts simply come back.
 * Errors: TR_STORAGE_ERROR_NOT_FOUND (unregistered id), _CLOSED (FAILED), or
 * those of tr_groupfile_drop_before(): a part that cannot be deleted; the
 * buffer stays usable (so does the GroupFile) and a later call retries. */
gboolean tr_dwbuffer_drop_before (TrDwBuffer *dwb, guint32 file_id, guint64 offset, GError **error);

/* tr_dwbuffer_get_stats: fills @out (a snapshot, taken under ->lock). */
void tr_dwbuffer_get_stats (TrDwBuffer *dwb, TrDwBufferStats *out);

/* tr_dwbuffer_free:
 * Frees the buffers and the cache.  It does NOT sync: dirty blocks not yet
 * synced are dropped (logged at debug level).  Call tr_dwbuffer_sync() first
 * to keep them.  The registered
 * GroupFiles are not freed.  NULL is ignored. */
void tr_dwbuffer_free (TrDwBuffer *dwb);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (TrDwBuffer, tr_dwbuffer_free)

G_END_DECLS
