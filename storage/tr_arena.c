/* tr_arena.c - chunked memory for cached messages (see tr_arena.h).
 *
 * A chunk starts with its TrArenaChunk header; the copies follow, each
 * aligned to TR_ARENA_ALIGN.  chunk->refs counts the messages in the chunk
 * plus one while it is the arena's current chunk, so a chunk is released
 * when it is both full (replaced) and empty (every message freed), on
 * whichever thread frees the last message.  arena->refs counts the owner
 * and every chunk that is not spare, so the arena outlives its messages.
 */
#include "tr_arena.h"

#include <string.h>
#include <sys/mman.h>

#define TR_ARENA_ALIGN 16
#define TR_ARENA_HEADER 64

typedef struct _TrArenaChunk TrArenaChunk;

struct _TrArenaChunk {
  TrArena *arena;
  gint refs;
  TrArenaChunk *next_spare;
};

G_STATIC_ASSERT (sizeof (TrArenaChunk) <= TR_ARENA_HEADER);

struct _TrArena {
  gint refs;
  GMutex lock;          /* guards everything below */
  gboolean closed;      /* the owner called tr_arena_free() */
  TrArenaChunk *current;
  gsize used;           /* bytes of ->current handed out, header included */
  TrArenaChunk *spare;  /* released chunks kept for reuse, still populated */
  guint n_spare;
  guint n_live;
  guint64 chunks_mapped;
  guint64 copies;
  guint64 large_copies;
};

static void
arena_unref (TrArena *arena)
{
  if (!g_atomic_int_dec_and_test (&arena->refs))
    return;
  g_mutex_clear (&arena->lock);
  g_free (arena);
}

/* A 2 MiB aligned, 2 MiB long mapping, so that it can be one huge page. */
static TrArenaChunk *
chunk_map (void)
{
  const gsize size = TR_ARENA_CHUNK_SIZE;
  guint8 *raw, *start;

  raw = mmap (NULL, 2 * size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (raw == MAP_FAILED)
    return NULL;
  start = (guint8 *) (((guintptr) raw + size - 1) & ~(guintptr) (size - 1));
  if (start > raw)
    munmap (raw, (gsize) (start - raw));
  munmap (start + size, (gsize) (raw + 2 * size - (start + size)));
  /* Both are hints: without transparent huge pages the chunk is still
   * populated in one call instead of 512 faults, and a kernel older than
   * 5.14 (no MADV_POPULATE_WRITE) faults the pages in as they are used. */
  (void) madvise (start, size, MADV_HUGEPAGE);
  (void) madvise (start, size, MADV_POPULATE_WRITE);
  return (TrArenaChunk *) start;
}

static void
chunk_release (TrArenaChunk *chunk)
{
  TrArena *arena = chunk->arena;
  gboolean keep;

  g_mutex_lock (&arena->lock);
  arena->n_live--;
  keep = !arena->closed && arena->n_spare < TR_ARENA_SPARE_CHUNKS;
  if (keep) {
    chunk->next_spare = arena->spare;
    arena->spare = chunk;
    arena->n_spare++;
  }
  g_mutex_unlock (&arena->lock);
  if (!keep)
    munmap (chunk, TR_ARENA_CHUNK_SIZE);
  arena_unref (arena);
}

static void
chunk_unref (gpointer data)
{
  TrArenaChunk *chunk = data;

  if (g_atomic_int_dec_and_test (&chunk->refs))
    chunk_release (chunk);
}

/* With ->lock held: a chunk to fill next, spare or new, or NULL when no
 * memory can be mapped. */
static TrArenaChunk *
chunk_take (TrArena *arena)
{
  TrArenaChunk *chunk = arena->spare;

  if (chunk != NULL) {
    arena->spare = chunk->next_spare;
    arena->n_spare--;
  } else {
    chunk = chunk_map ();
    if (chunk == NULL)
      return NULL;
    arena->chunks_mapped++;
  }
  chunk->arena = arena;
  chunk->next_spare = NULL;
  g_atomic_int_set (&chunk->refs, 1);
  g_atomic_int_inc (&arena->refs);
  arena->n_live++;
  return chunk;
}

TrArena *
tr_arena_new (void)
{
  TrArena *arena = g_new0 (TrArena, 1);

  arena->refs = 1;
  g_mutex_init (&arena->lock);
  return arena;
}

void
tr_arena_free (TrArena *arena)
{
  TrArenaChunk *current, *spare;

  if (arena == NULL)
    return;
  g_mutex_lock (&arena->lock);
  arena->closed = TRUE;
  current = g_steal_pointer (&arena->current);
  spare = g_steal_pointer (&arena->spare);
  arena->n_spare = 0;
  g_mutex_unlock (&arena->lock);
  while (spare != NULL) {
    TrArenaChunk *next = spare->next_spare;
    munmap (spare, TR_ARENA_CHUNK_SIZE);
    spare = next;
  }
  if (current != NULL)
    chunk_unref (current);
  arena_unref (arena);
}

GBytes *
tr_arena_copy (TrArena *arena, gconstpointer data, gsize len)
{
  gsize need = (len + TR_ARENA_ALIGN - 1) & ~(gsize) (TR_ARENA_ALIGN - 1);
  TrArenaChunk *full = NULL, *chunk;
  guint8 *copy;

  if (len == 0 || len > TR_ARENA_MAX_COPY) {
    g_mutex_lock (&arena->lock);
    arena->large_copies++;
    g_mutex_unlock (&arena->lock);
    return g_bytes_new (data, len);
  }
  g_mutex_lock (&arena->lock);
  if (arena->current == NULL || arena->used + need > TR_ARENA_CHUNK_SIZE) {
    full = g_steal_pointer (&arena->current);
    arena->current = chunk_take (arena);
    arena->used = TR_ARENA_HEADER;
    if (arena->current == NULL) {
      arena->large_copies++;
      g_mutex_unlock (&arena->lock);
      if (full != NULL)
        chunk_unref (full);
      return g_bytes_new (data, len);
    }
  }
  chunk = arena->current;
  copy = (guint8 *) chunk + arena->used;
  arena->used += need;
  arena->copies++;
  g_atomic_int_inc (&chunk->refs);
  g_mutex_unlock (&arena->lock);
  /* The replaced chunk is released outside the lock: releasing takes it. */
  if (full != NULL)
    chunk_unref (full);
  memcpy (copy, data, len);
  return g_bytes_new_with_free_func (copy, len, chunk_unref, chunk);
}

void
tr_arena_get_stats (TrArena *arena, TrArenaStats *stats)
{
  g_mutex_lock (&arena->lock);
  stats->chunks_mapped = arena->chunks_mapped;
  stats->chunks_live = arena->n_live;
  stats->chunks_spare = arena->n_spare;
  stats->copies = arena->copies;
  stats->large_copies = arena->large_copies;
  g_mutex_unlock (&arena->lock);
}
