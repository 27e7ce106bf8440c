/* tr_dwbuffer_private.h - shared between tr_dwbuffer.c (buffer, cache,
 * flushing, API) and tr_dwbuffer_journal.c (the journal and recovery).
 * Not for use outside storage/.
 */
#pragma once

#include "tr_dwbuffer.h"
#include "tr_groupfile.h"
#include "tr_io.h"

#include <glib.h>

G_BEGIN_DECLS

typedef struct {
  guint64 block_id;
  guint32 file_id;
} BlockKey;

/* One dirty block; the key comes first so a Block * is also its hash key. */
typedef struct {
  BlockKey key;
  guint8 data[];
} Block;

typedef struct {
  BlockKey key;
  gboolean used;
  gboolean referenced; /* CLOCK bit: set on every hit */
  guint8 *data;        /* block_size bytes, allocated on first use */
} CacheSlot;

struct _TrDwBuffer {
  TrIo *io;
  char *dir;
  char *journal_path;
  guint32 block_size;
  gsize cache_blocks;
  gsize max_dirty_blocks;
  GHashTable *files; /* guint32 file id -> TrGroupFile * (borrowed); fixed after recover() */
  gboolean recovered;

  GMutex file_lock; /* serialises every call on the registered GroupFiles */

  GMutex lock;
  GCond cond;                /* waiters: backpressure, sync; with ->lock */
  GHashTable *active;        /* Block * -> itself; protected by ->lock */
  GHashTable *flushing;      /* same, or NULL; protected by ->lock (contents immutable) */
  gboolean flush_running;    /* protected by ->lock */
  guint64 epoch;             /* bumped on every swap and flush end; protected by ->lock */
  guint64 batch_seq;         /* last journal batch number; protected by ->lock */
  gboolean failed;           /* sticky FAILED state; protected by ->lock */
  CacheSlot *slots;          /* cache_blocks slots; protected by ->lock */
  gsize hand;                /* CLOCK hand; protected by ->lock */
  GHashTable *cache_index;   /* BlockKey * (in a slot) -> CacheSlot *; protected by ->lock */
  TrDwBufferStats stats;     /* protected by ->lock (sizes filled in get_stats) */
};

/* A block of @dwb's size for @key, contents uninitialised. */
Block *tr_dwbuffer__block_new (TrDwBuffer *dwb, const BlockKey *key);

/* Orders Block ** by (file id, block id), for g_ptr_array_sort() and qsort(). */
gint tr_dwbuffer__compare_blocks (gconstpointer a, gconstpointer b);

/* Writes @blocks in place (sorted) and syncs every file touched. */
gboolean tr_dwbuffer__apply_blocks (TrDwBuffer *dwb, Block **blocks, guint n, GError **error);

/* CLEAN -> JOURNALED: writes the journal of @blocks (batch @seq) whole and
 * makes it durable. */
gboolean tr_dwbuffer__journal_write (TrDwBuffer *dwb, Block **blocks, guint n, guint64 seq, GError **error);

/* APPLIED -> CLEAN: removes the journal, durably. */
gboolean tr_dwbuffer__journal_remove (TrDwBuffer *dwb, GError **error);

G_END_DECLS
