/* tr_rpcstore_private.h - shared between the files of the RPC store:
 * tr_rpcstore.c (open, close, commit, cache), tr_rpcstore_read.c (reads),
 * tr_rpcstore_writer.c (the writer thread: periodic work, retention),
 * tr_rpcstore_dead.c (dead-letter lists), tr_rpcstore_recover.c
 * (open/reopen recovery), tr_rpcstore_checkpoint.c (checkpoints) and
 * tr_rpcstore_services.c (services.map, services added and retired at run
 * time), tr_rpcstore_space.c (the free-space guard) and
 * tr_rpcstore_backlog.c (backlog limits).
 * Not for use outside storage/.
 *
 * On-disk formats: the records' codec is tr_rpcrecord.h (data records,
 * index and list entries, the checkpoint), dead-letter records are
 * tr_rpcstore_dead.c's; all mirrored in docs/format/rpcstore.md.
 */
#pragma once

#include "tr_arena.h"
#include "tr_dwbuffer.h"
#include "tr_groupfile.h"
#include "tr_io.h"
#include "tr_rotatefile.h"
#include "tr_rpcrecord.h"
#include "tr_rpcstore.h"

#include <glib.h>

G_BEGIN_DECLS

#define TR_RPCSTORE_REC_DEAD 0x4c /* 'L' */
#define TR_RPCSTORE_BLOCK_SIZE 4096
/* sync_mode always: the writer keeps TR_ZERO_AHEAD bytes of zeros written
 * and synced after the end of the data, so that each commit's fdatasync
 * overwrites allocated blocks instead of growing the file (see
 * tr_groupfile_zero_ahead()).  A commit asks for more when less than
 * TR_ZERO_LOW is left; the writer writes TR_ZERO_PIECE at a time under the
 * locks and syncs them once, without the locks. */
#define TR_ZERO_AHEAD (4 << 20)
#define TR_ZERO_LOW (2 << 20)
#define TR_ZERO_PIECE (512 << 10)
#define TR_ZERO_RETRY_US (10 * G_TIME_SPAN_SECOND)
#define TR_RPCSTORE_MAX_SERVICES 4096
#define TR_RPCSTORE_INDEX_FILE_ID 0
/* DoubleWriteBuffer file id of a service's list. */
#define TR_RPCSTORE_LIST_FILE_ID(service_id) ((guint32) (service_id) + 1)

/* One function told of every batch (tr_rpcstore_add_subscriber()). */
typedef struct {
  TrRpcNotifyFunc notify;
  gpointer user_data;
} TrRpcSubscriber;

struct _TrRpcStore {
  TrIo *io;
  char *dir;
  TrRpcStoreOptions options;

  /* Every call on ->data is made under ->data_lock; mutations also need
   * ->commit_lock.  Never held across an fsync (readers take it for each
   * read from disk): tr_rpcstore__sync_data_file(). */
  GMutex data_lock;
  TrGroupFile *data; /* protected by ->data_lock */

  /* ->index, ->lists and ->dwb are replaced by tr_rpcstore__reopen() under
   * the writer side; readers on other threads hold the reader side. */
  GRWLock files_lock;
  char **configured;   /* service names of the configuration */
  TrGroupFile *index;  /* written only through ->dwb */
  GPtrArray *lists;    /* TrGroupFile* by service id, NULL for unconfigured ids */
  TrDwBuffer *dwb;
  TrRotateFile *checkpoint; /* writer thread only */

  /* Service map: grows only under ->commit_lock (tr_rpcstore_add_service),
   * under ->head_lock.  Every array indexed by service id (->lists, ->dead,
   * the heads, low water marks and firsts, ->service_names) is allocated
   * for TR_RPCSTORE_MAX_SERVICES ids at open, so growing never moves them. */
  GHashTable *service_ids; /* name -> GUINT_TO_POINTER (id + 1); protected by ->head_lock */
  GPtrArray *service_names; /* by id */
  guint n_ids;

  /* Commit state, touched only with ->commit_lock held: by the thread
   * that commits a batch (tr_rpcstore_submit_batch()) and by the writer
   * thread for each round of periodic work. */
  GMutex commit_lock;
  GByteArray *commit_buf; /* protected by ->commit_lock: the records of a batch, kept between batches */
  GThread *writer;
  GMutex stop_lock;
  GCond stop_cond;
  gboolean stopping;       /* protected by ->stop_lock; set by tr_rpcstore_close() */
  guint64 next_rpc_id;
  guint64 data_end;        /* logical end of the last committed record */
  guint64 *list_heads;     /* by service id */
  guint64 ckpt_rpc_id;     /* last checkpointed rpc id */
  guint64 ckpt_data_end;   /* data_end recorded by that checkpoint */
  guint64 *ckpt_list_heads; /* list_heads recorded by that checkpoint (by service id) */
  guint reopen_gen;        /* bumped by each successful reopen (under ->files_lock, writer side) */
  gint64 last_checkpoint_us;
  gint64 last_sync_us;
  gboolean unsynced;       /* interval/none mode: data written since last sync */
  GError *failure;         /* sticky data-file failure; cleared by reopen */
  gint64 last_reopen_us;
  gint fsync_ewma_us;      /* atomic (read by tr_rpcstore_group_commit_delay_us()): moving average of a data fsync */
  /* Zeros written ahead of the data (sync_mode always; tr_groupfile_zero_ahead()). */
  gboolean zero_requested; /* a commit asked the writer for more */
  gboolean zero_wanted;    /* protected by ->stop_lock: wakes the writer for it */
  gint64 zero_retry_us;    /* after a failure (a full disk), not again before this */
  guint retention_parts;   /* data parts after the last retention run: more means run again */
  char *retention_error;   /* writer thread: why the last retention run failed, NULL if it worked */

  /* Published state, read by any thread. */
  GMutex head_lock;
  guint64 head_rpc_id;        /* protected by ->head_lock */
  guint64 *pub_list_heads;    /* protected by ->head_lock */
  guint64 *low_water;         /* protected by ->head_lock; 0 = not set */
  gboolean low_water_moved;   /* protected by ->head_lock */
  guint64 rpc_low_water;      /* protected by ->head_lock; 0 = no replica holds retention */
  guint64 retained_from;      /* protected by ->head_lock; retention's last low water (stats) */
  guint64 *list_first;        /* protected by ->head_lock */
  guint64 first_rpc_id;       /* protected by ->head_lock */
  guint64 batches;            /* protected by ->head_lock */
  guint64 rpcs_committed;     /* since open; under ->commit_lock */
  guint64 commit_errors;      /* protected by ->head_lock */
  /* Atomic histograms (tr_histogram.h), read by tr_rpcstore_get_stats(). */
  TrHistogram commit_latency; /* us from tr_rpcstore_submit() to the callback, per RPC */
  TrHistogram batch_size;     /* RPCs per committed batch */
  TrHistogram fsync_latency;  /* us of each tr_rpcstore__sync_data() */

  GArray *subscribers; /* TrRpcSubscriber, in the order added; protected by ->commit_lock */

  /* Free-space guard (tr_rpcstore_space.c), all protected by ->commit_lock. */
  guint64 min_free_bytes;
  guint min_free_percent;
  gint64 space_checked_us;  /* monotonic time of the last measurement; 0 = measure at the next batch */
  guint64 space_avail;      /* free bytes at the last measurement, */
  guint64 space_limit;      /* the limit then, */
  guint64 space_data_end;   /* and ->data_end then: what was appended since counts as used */
  GError *space_refusal;    /* set while the free space is below the limit */
  char *space_error;        /* why the last measurement failed (logged once), NULL if it worked */

  /* Recent messages: ring of rpc ids [cache_lo, cache_hi]. */
  GMutex cache_lock;
  GBytes **ring;     /* protected by ->cache_lock */
  gint64 *ring_time; /* protected by ->cache_lock */
  guint ring_cap;
  guint64 cache_lo, cache_hi; /* protected by ->cache_lock; empty when lo > hi */
  gsize cache_bytes;          /* protected by ->cache_lock; payload + overhead */
  gsize cache_budget;         /* rpc_cache_size minus the ring and the block cache */
  guint64 cache_hits, cache_misses; /* protected by ->cache_lock: tr_rpcstore_get() lookups */
  gsize block_cache_blocks;   /* DoubleWriteBuffer read cache size */
  TrArena *arena;             /* (nullable) memory of the messages (tr_rpcstore_copy_message()) */

  GMutex dead_lock;
  GPtrArray *dead; /* TrGroupFile* by service id, opened lazily; protected by ->dead_lock */
};

/* Reads services.map (creating it, or adding the configured @services it
 * lacks) into ->service_ids, ->service_names and ->n_ids
 * (tr_rpcstore_services.c). */
gboolean tr_rpcstore__load_service_map (TrRpcStore *store, const char *const *services, GError **error);

/* Opens the checkpoint RotateFile and sets the commit state (next rpc id,
 * data end, list heads) from the last checkpoint, or to an empty store
 * (tr_rpcstore_checkpoint.c).  Errors: _CORRUPT naming the file. */
gboolean tr_rpcstore__load_checkpoint (TrRpcStore *store, GError **error);

/* Recovery (tr_rpcstore_recover.c): loads the service map, opens the
 * files, replays the journal, re-derives entries after the checkpoint. */
gboolean tr_rpcstore__recover (TrRpcStore *store, const char *const *services, GError **error);

/* After a failure: closes and reopens every file, cuts the data file back
 * to @committed_end and recovers as at start-up.  Writer thread only. */
gboolean tr_rpcstore__reopen (TrRpcStore *store, guint64 committed_end, GError **error);

/* Writes the index entry and the list entries of one committed record
 * into the DoubleWriteBuffer and advances ->list_heads. */
gboolean tr_rpcstore__derive_entries (TrRpcStore *store, guint64 rpc_id, guint64 offset,
                                      guint32 record_len, guint32 checksum,
                                      const guint32 *service_ids, guint n_services, GError **error);

/* Syncs the data file and the DoubleWriteBuffer and writes a checkpoint for
 * the current head.  The caller owns the store (open, close) or holds
 * ->commit_lock. */
gboolean tr_rpcstore__checkpoint (TrRpcStore *store, GError **error);

/* The two halves of a checkpoint, so that the syncs can run without
 * ->commit_lock while commits go on: _capture() encodes the checkpoint
 * record of the current head into @state (->commit_lock held) and returns
 * its rpc id; _write() makes data and index/list blocks durable, then
 * writes and syncs @state (->files_lock reader side held, so a reopen
 * cannot swap the files meanwhile). */
guint64 tr_rpcstore__checkpoint_capture (TrRpcStore *store, GByteArray *state);

/* Records that a checkpoint of rpc @rpc_id, @data_end and the first
 * @n_heads list heads (services added since have 0) is durable: retention
 * may drop what it covers. */
void tr_rpcstore__checkpoint_done (TrRpcStore *store, guint64 rpc_id, guint64 data_end, const guint64 *list_heads,
                                   guint n_heads);
gboolean tr_rpcstore__checkpoint_write (TrRpcStore *store, const GByteArray *state, GError **error);

/* The number of service ids, for threads other than the writer (which
 * grows it with g_atomic_int_set(), tr_rpcstore_add_service()). */
static inline guint
tr_rpcstore__n_ids (TrRpcStore *store)
{
  return (guint) g_atomic_int_get (&store->n_ids);
}

/* A job run by tr_rpcstore__run_exclusive(). */
typedef gboolean (*TrRpcStoreTask) (TrRpcStore *store, gpointer data, GError **error);

/* Runs @func with ->commit_lock held, i.e. between two batches and never
 * beside the writer's periodic work, and returns its result.  Not from a
 * commit callback (the lock is held there). */
gboolean tr_rpcstore__run_exclusive (TrRpcStore *store, TrRpcStoreTask func, gpointer data, GError **error);

/* Reads the 16-byte entry @entry_no (0-based) of DoubleWriteBuffer file
 * @file_id.  Caller holds ->files_lock (reader side) or ->commit_lock. */
gboolean tr_rpcstore__read_entry (TrRpcStore *store, guint32 file_id, guint64 entry_no,
                                  guint8 entry[TR_RPCRECORD_ENTRY_SIZE], GError **error);

/* The cached message of @rpc_id (and its commit time), or NULL; counts
 * the hit or miss.  Any thread. */
GBytes *tr_rpcstore__cache_lookup (TrRpcStore *store, guint64 rpc_id, gint64 *time_out);

/* Reads and decodes the index entry of @rpc_id; TR_STORAGE_ERROR_CORRUPT
 * if it cannot describe a record.  Caller holds ->files_lock (reader side)
 * or ->commit_lock. */
gboolean tr_rpcstore__read_index (TrRpcStore *store, guint64 rpc_id, TrRpcIndexEntry *out, GError **error);

/* Syncs the data file, holding ->data_lock only around the fsyncs, not
 * across them (readers of committed records go on meanwhile).  Caller holds
 * ->commit_lock or the reader side of ->files_lock (so no reopen replaces
 * ->data); overlapping calls are fine (tr_groupfile_sync_begin()). */
gboolean tr_rpcstore__sync_data_file (TrRpcStore *store, GError **error);

/* tr_rpcstore__sync_data_file() plus the fsync time average and the
 * interval mode bookkeeping (->commit_lock held). */
gboolean tr_rpcstore__sync_data (TrRpcStore *store, GError **error);

/* After a data-file failure: reopens the store, throttled; FALSE while the
 * disk is still failing (->commit_lock held). */
gboolean tr_rpcstore__try_reopen (TrRpcStore *store);

/* The free-space guard before a leader batch (->commit_lock held):
 * measures at most every TR_RPCSTORE_SPACE_CHECK_MS; FALSE with
 * TR_STORAGE_ERROR_SPACE_LOW while the space is below the limit
 * (tr_rpcstore_space.c). */
gboolean tr_rpcstore__check_space (TrRpcStore *store, GError **error);

/* The writer thread's main function (tr_rpcstore_writer.c). */
gpointer tr_rpcstore__writer_main (gpointer data);

/* Opens (creating if needed) a GroupFile of the store, named @name. */
TrGroupFile *tr_rpcstore__open_file (TrRpcStore *store, const char *name, GError **error);

G_END_DECLS
