/* tr_dwbuffer.c - DoubleWriteBuffer (API and rules in tr_dwbuffer.h).
 *
 * The journal (format and replay): tr_dwbuffer_journal.c.
 *
 * Why the order of a sync is safe (the commit states):
 *
 *   CLEAN --write journal, fsync it, fsync dir--> JOURNALED
 *     (a crash before this point leaves an incomplete or no journal and
 *      untouched files: recovery discards it)
 *   JOURNALED --write in place, sync files--> APPLIED
 *     (a crash here may tear blocks in place; the complete journal holds
 *      every one of them, recovery rewrites them all)
 *   APPLIED --unlink journal, fsync dir--> CLEAN
 *     (a crash here replays a journal whose blocks are already in place:
 *      harmless, replay is idempotent)
 *   flush_once() performs all three transitions; recover() finishes a
 *   JOURNALED or APPLIED state left by a crash.
 *
 * Invariants: a block key (file id, block id) is in at most one slot of the
 * read cache; the cache always equals what is on disk (every in-place write
 * refreshes it before the flushing buffer is dropped); the flushing buffer is
 * never modified while it exists, so readers may copy from it under ->lock
 * while the flusher writes it out without the lock.
 */
#include "tr_dwbuffer.h"

#include "tr_dwbuffer_private.h"
#include "tr_storage_error.h"

#include <stdlib.h>
#include <string.h>

static guint
block_key_hash (gconstpointer key)
{
  const BlockKey *k = key;

  return (guint) (k->block_id * G_GUINT64_CONSTANT (0x9E3779B97F4A7C15) >> 32) ^ k->file_id;
}

static gboolean
block_key_equal (gconstpointer a, gconstpointer b)
{
  const BlockKey *ka = a, *kb = b;

  return ka->block_id == kb->block_id && ka->file_id == kb->file_id;
}

static GHashTable *
block_table_new (void)
{
  return g_hash_table_new_full (block_key_hash, block_key_equal, NULL, g_free);
}

Block *
tr_dwbuffer__block_new (TrDwBuffer *dwb, const BlockKey *key)
{
  Block *block = g_malloc (sizeof (Block) + dwb->block_size);

  block->key = *key;
  return block;
}

static void
set_closed_error (GError **error)
{
  g_set_error (error, TR_STORAGE_ERROR, TR_STORAGE_ERROR_CLOSED,
               "double-write buffer failed earlier; reopen to recover");
}

/* ---- read cache (CLOCK), all under ->lock ---- */

static const guint8 *
cache_lookup (TrDwBuffer *dwb, const BlockKey *key)
{
  CacheSlot *slot = dwb->cache_index ? g_hash_table_lookup (dwb->cache_index, key) : NULL;

  if (slot == NULL)
    return NULL;
  slot->referenced = TRUE;
  return slot->data;
}

static void
cache_put (TrDwBuffer *dwb, const BlockKey *key, const guint8 *data)
{
  CacheSlot *slot;

  if (dwb->cache_blocks == 0)
    return;
  slot = g_hash_table_lookup (dwb->cache_index, key);
  if (slot == NULL) {
    /* Sweep: clear reference bits until an unused or unreferenced slot. */
    for (;;) {
      slot = &dwb->slots[dwb->hand];
      dwb->hand = (dwb->hand + 1) % dwb->cache_blocks;
      if (!slot->used || !slot->referenced)
        break;
      slot->referenced = FALSE;
    }
    if (slot->used)
      g_hash_table_remove (dwb->cache_index, &slot->key);
    if (slot->data == NULL)
      slot->data = g_malloc (dwb->block_size);
    slot->key = *key;
    slot->used = TRUE;
    slot->referenced = FALSE;
    g_hash_table_insert (dwb->cache_index, &slot->key, slot);
  }
  memcpy (slot->data, data, dwb->block_size);
}

/* ---- GroupFile access, under ->file_lock only ---- */

static TrGroupFile *
lookup_file (TrDwBuffer *dwb, guint32 file_id, GError **error)
{
  TrGroupFile *file = g_hash_table_lookup (dwb->files, GUINT_TO_POINTER (file_id));

  if (file == NULL)
    g_set_error (error, TR_STORAGE_ERROR, TR_STORAGE_ERROR_NOT_FOUND,
                 "double-write buffer: no file with id %u", file_id);
  return file;
}

/* Reads one block from disk into @out; bytes past the end read as zeros. */
static gboolean
load_block (TrDwBuffer *dwb, const BlockKey *key, guint8 *out, GError **error)
{
  TrGroupFile *file = lookup_file (dwb, key->file_id, error);
  gsize got = 0;
  gboolean ok;

  if (file == NULL)
    return FALSE;
  g_mutex_lock (&dwb->file_lock);
  ok = tr_groupfile_read (file, key->block_id * dwb->block_size, out, dwb->block_size, &got, error);
  g_mutex_unlock (&dwb->file_lock);
  if (!ok) {
    g_prefix_error (error, "double-write buffer: block %" G_GUINT64_FORMAT " of file %u: ",
                    key->block_id, key->file_id);
    return FALSE;
  }
  memset (out + got, 0, dwb->block_size - got);
  return TRUE;
}

gint
tr_dwbuffer__compare_blocks (gconstpointer a, gconstpointer b)
{
  const BlockKey *ka = &(*(Block *const *) a)->key;
  const BlockKey *kb = &(*(Block *const *) b)->key;

  if (ka->file_id != kb->file_id)
    return ka->file_id < kb->file_id ? -1 : 1;
  if (ka->block_id != kb->block_id)
    return ka->block_id < kb->block_id ? -1 : 1;
  return 0;
}

/* Writes @blocks in place (already sorted) and syncs every file touched. */
gboolean
tr_dwbuffer__apply_blocks (TrDwBuffer *dwb, Block **blocks, guint n, GError **error)
{
  gboolean ok = TRUE;

  g_mutex_lock (&dwb->file_lock);
  for (guint i = 0; ok && i < n; i++) {
    TrGroupFile *file = lookup_file (dwb, blocks[i]->key.file_id, error);
    guint64 offset = blocks[i]->key.block_id * dwb->block_size;

    if (file != NULL && offset < tr_groupfile_first_offset (file)) {
      /* Its part was dropped by retention (tr_dwbuffer_drop_before()) after
       * the block was dirtied: nobody needs it any more. */
      continue;
    }
    ok = file != NULL && tr_groupfile_write_at (file, offset, blocks[i]->data, dwb->block_size, error);
  }
  /* Sorted by file id, so each file is synced once, after its last block. */
  for (guint i = 0; ok && i < n; i++) {
    if (i + 1 < n && blocks[i + 1]->key.file_id == blocks[i]->key.file_id)
      continue;
    ok = tr_groupfile_sync (lookup_file (dwb, blocks[i]->key.file_id, NULL), error);
  }
  g_mutex_unlock (&dwb->file_lock);
  return ok;
}

/* ---- flushing ---- */

/* Step 1, under ->lock: swaps the buffers.  Returns the sorted blocks of the
 * new flushing buffer (borrowed from it), or NULL when nothing is dirty. */
static Block **
swap_buffers_locked (TrDwBuffer *dwb, guint *n_out, guint64 *seq_out)
{
  Block **blocks;

  if (g_hash_table_size (dwb->active) == 0)
    return NULL;
  dwb->flushing = dwb->active;
  dwb->active = block_table_new ();
  dwb->flush_running = TRUE;
  dwb->epoch++;
  *seq_out = ++dwb->batch_seq;
  blocks = (Block **) g_hash_table_get_keys_as_array (dwb->flushing, n_out);
  qsort (blocks, *n_out, sizeof (Block *), tr_dwbuffer__compare_blocks);
  g_cond_broadcast (&dwb->cond); /* writers held back by max_dirty_blocks */
  return blocks;
}

/* One whole sync (steps 1-4).  Called without any lock. */
static gboolean
flush_once (TrDwBuffer *dwb, GError **error)
{
  g_autofree Block **blocks = NULL;
  guint n = 0;
  guint64 seq = 0;
  gboolean ok;

  g_mutex_lock (&dwb->lock);
  while (dwb->flush_running && !dwb->failed)
    g_cond_wait (&dwb->cond, &dwb->lock);
  if (dwb->failed) {
    g_mutex_unlock (&dwb->lock);
    set_closed_error (error);
    return FALSE;
  }
  blocks = swap_buffers_locked (dwb, &n, &seq);
  if (blocks == NULL) {
    /* Nothing dirty and no flush running: every write is durable. */
    g_mutex_unlock (&dwb->lock);
    return TRUE;
  }
  g_mutex_unlock (&dwb->lock);

  /* No lock held: the flushing buffer is immutable until we drop it. */
  ok = tr_dwbuffer__journal_write (dwb, blocks, n, seq, error) && tr_dwbuffer__apply_blocks (dwb, blocks, n, error)
       && tr_dwbuffer__journal_remove (dwb, error);

  g_mutex_lock (&dwb->lock);
  if (ok) {
    for (guint i = 0; i < n; i++)
      cache_put (dwb, &blocks[i]->key, blocks[i]->data);
    dwb->stats.syncs++;
    dwb->stats.blocks_synced += n;
    g_clear_pointer (&dwb->flushing, g_hash_table_unref);
  } else {
    /* Keep ->flushing: nothing may read stale disk data for these blocks. */
    dwb->failed = TRUE;
    g_prefix_error (error, "double-write sync (batch %" G_GUINT64_FORMAT "): ", seq);
  }
  dwb->flush_running = FALSE;
  dwb->epoch++;
  g_cond_broadcast (&dwb->cond);
  g_mutex_unlock (&dwb->lock);
  return ok;
}

/* ---- public API ---- */

TrDwBuffer *
tr_dwbuffer_new (TrIo *io, const char *dir, guint32 block_size, gsize cache_blocks,
                 gsize max_dirty_blocks)
{
  TrDwBuffer *dwb;

  g_return_val_if_fail (io != NULL && dir != NULL && block_size > 0, NULL);

  dwb = g_new0 (TrDwBuffer, 1);
  dwb->io = io;
  dwb->dir = g_strdup (dir);
  dwb->journal_path = g_build_filename (dir, TR_DWBUFFER_JOURNAL_NAME, NULL);
  dwb->block_size = block_size;
  dwb->cache_blocks = cache_blocks;
  dwb->max_dirty_blocks = max_dirty_blocks;
  dwb->files = g_hash_table_new (g_direct_hash, g_direct_equal);
  dwb->active = block_table_new ();
  if (cache_blocks > 0) {
    dwb->slots = g_new0 (CacheSlot, cache_blocks);
    dwb->cache_index = g_hash_table_new (block_key_hash, block_key_equal);
  }
  g_mutex_init (&dwb->lock);
  g_mutex_init (&dwb->file_lock);
  g_cond_init (&dwb->cond);
  return dwb;
}

void
tr_dwbuffer_add_file (TrDwBuffer *dwb, guint32 file_id, TrGroupFile *file)
{
  g_return_if_fail (dwb != NULL && file != NULL && !dwb->recovered);
  g_return_if_fail (tr_groupfile_part_size (file) % dwb->block_size == 0);
  g_return_if_fail (!g_hash_table_contains (dwb->files, GUINT_TO_POINTER (file_id)));

  g_hash_table_insert (dwb->files, GUINT_TO_POINTER (file_id), file);
}

void
tr_dwbuffer_add_file_live (TrDwBuffer *dwb, guint32 file_id, TrGroupFile *file)
{
  g_return_if_fail (dwb != NULL && file != NULL && dwb->recovered);
  g_return_if_fail (tr_groupfile_part_size (file) % dwb->block_size == 0);
  g_return_if_fail (!g_hash_table_contains (dwb->files, GUINT_TO_POINTER (file_id)));

  /* ->files is read without a lock by read/write (check_range): the caller
   * guarantees no call runs concurrently; ->file_lock covers lookup_file. */
  g_mutex_lock (&dwb->file_lock);
  g_hash_table_insert (dwb->files, GUINT_TO_POINTER (file_id), file);
  g_mutex_unlock (&dwb->file_lock);
}

/* Finds the current content of a block that is not dirty, under ->lock.
 * Returns NULL if it must come from disk. */
static const guint8 *
lookup_clean_locked (TrDwBuffer *dwb, const BlockKey *key)
{
  Block *block = dwb->flushing ? g_hash_table_lookup (dwb->flushing, key) : NULL;
  const guint8 *data;

  if (block != NULL)
    return block->data;
  data = cache_lookup (dwb, key);
  if (data != NULL)
    dwb->stats.cache_hits++;
  return data;
}

/* Waits for room in the active buffer, under ->lock (may drop it). */
static void
backpressure_locked (TrDwBuffer *dwb)
{
  g_mutex_unlock (&dwb->lock);
  /* A failure is sticky and the caller's loop reports it as CLOSED. */
  if (!flush_once (dwb, NULL))
    g_debug ("double-write buffer: backpressure sync failed");
  g_mutex_lock (&dwb->lock);
}

/* Returns the active block for @key, loading it first when needed.  Called
 * and returns with ->lock held; NULL with @error set on failure. */
static Block *
get_dirty_block_locked (TrDwBuffer *dwb, const BlockKey *key, GError **error)
{
  for (;;) {
    Block *block;
    const guint8 *clean;
    guint64 epoch;
    gboolean ok;

    if (dwb->failed) {
      set_closed_error (error);
      return NULL;
    }
    block = g_hash_table_lookup (dwb->active, key);
    if (block != NULL)
      return block;
    if (dwb->max_dirty_blocks > 0 && g_hash_table_size (dwb->active) >= dwb->max_dirty_blocks) {
      backpressure_locked (dwb);
      continue;
    }
    block = tr_dwbuffer__block_new (dwb, key);
    clean = lookup_clean_locked (dwb, key);
    if (clean != NULL) {
      memcpy (block->data, clean, dwb->block_size);
      g_hash_table_add (dwb->active, block);
      return block;
    }
    /* Disk read without ->lock; if a swap or flush end happened meanwhile,
     * what we read may be stale: start over. */
    epoch = dwb->epoch;
    dwb->stats.cache_misses++;
    g_mutex_unlock (&dwb->lock);
    ok = load_block (dwb, key, block->data, error);
    g_mutex_lock (&dwb->lock);
    if (ok && epoch == dwb->epoch && !g_hash_table_contains (dwb->active, key)) {
      g_hash_table_add (dwb->active, block);
      return block;
    }
    g_free (block);
    if (!ok)
      return NULL;
  }
}

static gboolean
check_range (TrDwBuffer *dwb, guint32 file_id, guint32 offset, gsize len, GError **error)
{
  if (!g_hash_table_contains (dwb->files, GUINT_TO_POINTER (file_id))) {
    lookup_file (dwb, file_id, error);
    return FALSE;
  }
  g_return_val_if_fail (offset <= dwb->block_size && len <= dwb->block_size - offset, FALSE);
  return TRUE;
}

gboolean
tr_dwbuffer_write (TrDwBuffer *dwb, guint32 file_id, guint64 block_id, guint32 offset_in_block,
                   const void *data, gsize len, GError **error)
{
  BlockKey key = { block_id, file_id };
  Block *block;

  g_return_val_if_fail (dwb != NULL && dwb->recovered, FALSE);
  g_return_val_if_fail (data != NULL || len == 0, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);
  if (!check_range (dwb, file_id, offset_in_block, len, error))
    return FALSE;

  g_mutex_lock (&dwb->lock);
  block = get_dirty_block_locked (dwb, &key, error);
  if (block != NULL)
    memcpy (block->data + offset_in_block, data, len);
  g_mutex_unlock (&dwb->lock);
  return block != NULL;
}

/* Copies from the buffers or the cache, under ->lock.  FALSE on a miss. */
static gboolean
read_memory_locked (TrDwBuffer *dwb, const BlockKey *key, guint32 offset, void *buf, gsize len)
{
  Block *block = g_hash_table_lookup (dwb->active, key);
  const guint8 *data = block ? block->data : lookup_clean_locked (dwb, key);

  if (data == NULL)
    return FALSE;
  memcpy (buf, data + offset, len);
  return TRUE;
}

gboolean
tr_dwbuffer_read (TrDwBuffer *dwb, guint32 file_id, guint64 block_id, guint32 offset_in_block,
                  void *buf, gsize len, GError **error)
{
  BlockKey key = { block_id, file_id };
  g_autofree guint8 *tmp = NULL;

  g_return_val_if_fail (dwb != NULL && dwb->recovered, FALSE);
  g_return_val_if_fail (buf != NULL || len == 0, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);
  if (!check_range (dwb, file_id, offset_in_block, len, error))
    return FALSE;

  g_mutex_lock (&dwb->lock);
  for (;;) {
    guint64 epoch;
    gboolean ok;

    /* Memory (buffers and cache) is the newest content even after a
     * failure, and reading it changes nothing: serve it, so a store whose
     * disk is full keeps delivering what it holds.  Disk reads stop. */
    if (read_memory_locked (dwb, &key, offset_in_block, buf, len))
      break;
    if (dwb->failed) {
      g_mutex_unlock (&dwb->lock);
      set_closed_error (error);
      return FALSE;
    }
    epoch = dwb->epoch;
    dwb->stats.cache_misses++;
    g_mutex_unlock (&dwb->lock);
    if (tmp == NULL)
      tmp = g_malloc (dwb->block_size);
    ok = load_block (dwb, &key, tmp, error);
    g_mutex_lock (&dwb->lock);
    if (!ok) {
      g_mutex_unlock (&dwb->lock);
      return FALSE;
    }
    /* Same epoch: no buffer moved and no flush ended, so disk is current
     * unless a writer dirtied the block meanwhile (then read it from there). */
    if (epoch == dwb->epoch && !g_hash_table_contains (dwb->active, &key)) {
      cache_put (dwb, &key, tmp);
      memcpy (buf, tmp + offset_in_block, len);
      break;
    }
  }
  g_mutex_unlock (&dwb->lock);
  return TRUE;
}

gboolean
tr_dwbuffer_sync (TrDwBuffer *dwb, GError **error)
{
  g_return_val_if_fail (dwb != NULL && dwb->recovered, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  return flush_once (dwb, error);
}

/* Removes every block of @file_id below @first_block from @table. */
static void
forget_blocks_locked (GHashTable *table, guint32 file_id, guint64 first_block)
{
  GHashTableIter iter;
  Block *block;

  g_hash_table_iter_init (&iter, table);
  while (g_hash_table_iter_next (&iter, (gpointer *) &block, NULL))
    if (block->key.file_id == file_id && block->key.block_id < first_block)
      g_hash_table_iter_remove (&iter);
}

gboolean
tr_dwbuffer_drop_before (TrDwBuffer *dwb, guint32 file_id, guint64 offset, GError **error)
{
  TrGroupFile *file;
  guint64 first_block;
  gboolean ok;

  g_return_val_if_fail (dwb != NULL && dwb->recovered, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  file = lookup_file (dwb, file_id, error);
  if (file == NULL)
    return FALSE;
  g_mutex_lock (&dwb->lock);
  ok = !dwb->failed;
  g_mutex_unlock (&dwb->lock);
  if (!ok) {
    set_closed_error (error);
    return FALSE;
  }
  g_mutex_lock (&dwb->file_lock);
  /* A part that cannot be deleted leaves the GroupFile usable (see
   * tr_groupfile_drop_before()), so the buffer stays READY too; the parts
   * deleted before it are forgotten below all the same. */
  ok = tr_groupfile_drop_before (file, offset, error);
  first_block = tr_groupfile_first_offset (file) / dwb->block_size;
  g_mutex_unlock (&dwb->file_lock);

  g_mutex_lock (&dwb->lock);
  forget_blocks_locked (dwb->active, file_id, first_block);
  for (gsize i = 0; i < dwb->cache_blocks; i++) {
    CacheSlot *slot = &dwb->slots[i];
    if (slot->used && slot->key.file_id == file_id && slot->key.block_id < first_block) {
      g_hash_table_remove (dwb->cache_index, &slot->key);
      slot->used = FALSE;
    }
  }
  /* A reader that loaded a block before the drop must not cache it now. */
  dwb->epoch++;
  g_mutex_unlock (&dwb->lock);
  return ok;
}

void
tr_dwbuffer_get_stats (TrDwBuffer *dwb, TrDwBufferStats *out)
{
  g_return_if_fail (dwb != NULL && out != NULL);

  g_mutex_lock (&dwb->lock);
  *out = dwb->stats;
  out->cached_blocks = dwb->cache_index ? g_hash_table_size (dwb->cache_index) : 0;
  out->dirty_blocks = g_hash_table_size (dwb->active);
  out->flushing_blocks = dwb->flushing ? g_hash_table_size (dwb->flushing) : 0;
  g_mutex_unlock (&dwb->lock);
}

void
tr_dwbuffer_free (TrDwBuffer *dwb)
{
  if (dwb == NULL)
    return;
  if (g_hash_table_size (dwb->active) > 0)
    g_debug ("double-write buffer freed with %u unsynced blocks", g_hash_table_size (dwb->active));
  g_hash_table_unref (dwb->active);
  g_clear_pointer (&dwb->flushing, g_hash_table_unref);
  g_clear_pointer (&dwb->cache_index, g_hash_table_unref);
  for (gsize i = 0; i < dwb->cache_blocks; i++)
    g_free (dwb->slots[i].data);
  g_free (dwb->slots);
  g_hash_table_unref (dwb->files);
  g_mutex_clear (&dwb->lock);
  g_mutex_clear (&dwb->file_lock);
  g_cond_clear (&dwb->cond);
  g_free (dwb->journal_path);
  g_free (dwb->dir);
  g_free (dwb);
}
