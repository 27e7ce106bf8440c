/* tr_arena.h - memory for the messages the RPC store caches.
 *
 * Every committed RPC is copied once into memory that the store's cache
 * keeps until it evicts the message, oldest first.  With malloc that memory
 * comes from the heap one page at a time, and on a virtual machine each
 * first touch of a page is a page fault that costs as much as several
 * system calls: filling a 64 MiB cache took 16,000 faults, about a third of
 * the router's CPU time while it filled (docs/performance.md).
 *
 * An arena hands out message copies from chunks of TR_ARENA_CHUNK_SIZE
 * bytes, 2 MiB aligned, asked to be backed by transparent huge pages and
 * populated in one call, so that a chunk costs one fault or none.  Copies
 * are bump-allocated in order; a chunk goes back to the arena when the last
 * message in it is released, which the cache's oldest-first eviction makes
 * happen in order too.  The arena keeps TR_ARENA_SPARE_CHUNKS released
 * chunks for reuse and unmaps the others, so a router that stops receiving
 * gives the memory back.
 *
 * Messages are ordinary GBytes: whoever holds one may keep it as long as it
 * likes (it keeps its chunk mapped) and release it on any thread.  Messages
 * larger than TR_ARENA_MAX_COPY are plain g_bytes_new() copies.
 * Thread-safe.
 */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

#define TR_ARENA_CHUNK_SIZE ((gsize) 2 << 20)
#define TR_ARENA_MAX_COPY ((gsize) 256 << 10)
#define TR_ARENA_SPARE_CHUNKS 2

typedef struct _TrArena TrArena;

/* Counters, for logs and tests. */
typedef struct {
  guint64 chunks_mapped;   /* mmap()s of a new chunk since the arena was made */
  guint chunks_live;       /* chunks that hold messages or are being filled */
  guint chunks_spare;      /* released chunks kept for reuse */
  guint64 copies;          /* messages copied into chunks */
  guint64 large_copies;    /* messages above TR_ARENA_MAX_COPY, copied with malloc */
} TrArenaStats;

TrArena *tr_arena_new (void);

/* tr_arena_free:
 * The owner is done with the arena: spare chunks are unmapped now, chunks
 * that still hold messages when the last of their messages is released. */
void tr_arena_free (TrArena *arena);

/* tr_arena_copy:
 * Returns: (transfer full): a GBytes holding a copy of @data[0..@len).
 * Never fails: when a chunk cannot be mapped (no memory for one), the copy
 * comes from malloc, like a large message. */
GBytes *tr_arena_copy (TrArena *arena, gconstpointer data, gsize len);

void tr_arena_get_stats (TrArena *arena, TrArenaStats *stats);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (TrArena, tr_arena_free)

G_END_DECLS
