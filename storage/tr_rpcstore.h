/* tr_rpcstore.h - the durable RPC store of a node: global store + service lists.
 *
 * Files in the data directory (formats in docs/format/rpcstore.md, v1):
 *   data.N           GroupFile of RPC records (the source of truth; synced per
 *                    group commit)
 *   index.N          GroupFile of 16-byte index entries, entry of rpc id r at
 *                    (r-1)*16, written through the DoubleWriteBuffer
 *   list-<id>.N      one GroupFile per service: 16-byte entries, entry of
 *                    service seqid s at (s-1)*16, through the DoubleWriteBuffer
 *   double_write_prepare   the DoubleWriteBuffer journal (transient)
 *   checkpoint.0/.1  RotateFile: rpc id, data offset and service heads up to
 *                    which index and lists are durable
 *   services.map     DoubleWriteFile: service name -> permanent numeric id
 *   dead-<id>.N      GroupFile of dead-letter records per service
 *   redriven-<id>    DoubleWriteFile: the dead letters redriven (tr_rpcstore_redrive.c)
 *
 * Commit path: tr_rpcstore_submit() (one message) or
 * tr_rpcstore_submit_batch() (a group commit: every RPC the caller read in
 * one event loop iteration) commit as leader (the store gives the ids), and
 * tr_rpcstore_apply_batch() commits as follower (the ids and commit times
 * come with the records, read on the leader with
 * tr_rpcstore_read_record()); both on the calling thread: append one data
 * record per RPC, fdatasync once per batch (sync_mode always), write the
 * index and list entries into the DoubleWriteBuffer (memory) and call each
 * submitter's callback, all before returning.  No thread hop is on the
 * commit path: on the VMs measured a hop costs more than the work
 * (docs/performance.md).  Gathering the batch (waiting a little for the
 * other producers, tr_rpcstore_group_commit_delay_us()) is the caller's
 * job, since the caller owns the sockets.  The writer thread only does the
 * periodic work: every checkpoint interval it syncs the DoubleWriteBuffer
 * and records a checkpoint; recovery re-derives index and list entries from the data
 * records after the checkpoint, so only the data file needs a sync per batch.
 *
 * Threads: tr_rpcstore_submit*(), tr_rpcstore_apply_batch() and every read
 * function are thread-safe; commits from several threads are serialised.  Commit callbacks run on the
 * submitting thread and must not call tr_rpcstore_submit*().
 * Lock order: ->commit_lock before ->data_lock before the DoubleWriteBuffer's locks; ->cache_lock
 * and ->head_lock are leaves.  Reads never wait for an fdatasync: ->data_lock
 * (which a read from disk takes) is not held across one, and ->commit_lock
 * (which is) is taken by no read.
 */
#pragma once

#include "tr_histogram.h"
#include "tr_io.h"

#include <glib.h>

G_BEGIN_DECLS

typedef enum {
  TR_SYNC_ALWAYS,   /* fdatasync before any commit callback (default) */
  TR_SYNC_INTERVAL, /* callbacks after write(); fdatasync every sync_interval_ms */
  TR_SYNC_NONE,     /* never fdatasync explicitly (the kernel decides) */
} TrSyncMode;

typedef struct {
  guint64 group_file_size;   /* part size of data/index/list GroupFiles */
  gsize rpc_cache_size;      /* bytes of recent messages kept in memory */
  TrSyncMode sync_mode;
  guint sync_interval_ms;    /* TR_SYNC_INTERVAL period */
  guint checkpoint_interval_ms; /* how often index/lists are made durable (default 1000) */
  guint32 max_message_size;  /* largest message accepted (<= group_file_size / 2) */
  /* Free-space guard (tr_rpcstore_set_min_free_space()): both 0 = off. */
  guint64 min_free_bytes;
  guint min_free_percent;
} TrRpcStoreOptions;

typedef struct _TrRpcStore TrRpcStore;

/* Called on the submitting thread when an RPC is committed (@error NULL,
 * @rpc_id its global id) or failed (@error set, nothing stored). */
typedef void (*TrRpcCommitFunc) (gpointer user_data, guint64 rpc_id, const GError *error);

/* What a TrRpcNotifyFunc is told, on the thread that commits, under the
 * commit lock (so it must be quick and must not call into the store). */
typedef enum {
  /* A batch is committed and readable: @value is the new global head. */
  TR_RPC_NOTIFY_COMMITTED,
  /* sync_mode always: a batch of @value RPCs is written and its fdatasync
   * starts now; the committing thread waits for the disk meanwhile. */
  TR_RPC_NOTIFY_SYNCING,
} TrRpcNotify;

/* A subscriber (tr_rpcstore_add_subscriber()): the push side
 * (tr_push_on_store_event()), and next a replication source. */
typedef void (*TrRpcNotifyFunc) (gpointer user_data, TrRpcNotify what, guint64 value);

/* tr_rpcstore_open:
 * @io: (transfer none): I/O backend, outlives the store
 * @dir: data directory (created if missing)
 * @services: (array zero-terminated=1): every service name in the config
 *
 * Opens the store, runs recovery (journal replay, tail scan after the last
 * checkpoint, torn-tail truncation reported in the log) and starts the
 * writer thread.  New service names get new permanent ids.
 * Returns: (transfer full) (nullable): NULL with TR_STORAGE_ERROR set. */
TrRpcStore *tr_rpcstore_open (TrIo *io, const char *dir, const TrRpcStoreOptions *options,
                              const char *const *services, GError **error);

/* Finishes pending commits, checkpoints, stops the writer thread, closes. */
void tr_rpcstore_close (TrRpcStore *store);

/* Permanent id of service @name, or -1 if the store does not know it. */
gint tr_rpcstore_service_id (TrRpcStore *store, const char *name);

/* tr_rpcstore_add_service:
 * Makes service @name usable while the store runs (configuration reload):
 * a name never seen gets the next permanent id, written to services.map
 * (DoubleWriteFile) before anything uses it; its list is opened (created
 * if needed) and commits start deriving entries for it.  A service the
 * store already serves is not an error.  Runs between two batches (under
 * the commit lock); not from a commit callback.
 * Returns: its id, or -1 with @error (TR_STORAGE_ERROR_IO / _FULL). */
gint tr_rpcstore_add_service (TrRpcStore *store, const char *name, GError **error);

/* tr_rpcstore_retire_service:
 * @service_id is no longer routed (removed by a reload): once every RPC
 * submitted before this call is committed, its low-water mark is set past
 * its list head, so it never holds retention back.  Its files stay (adding
 * it back with tr_rpcstore_add_service() reuses them).  Runs between two
 * batches (under the commit lock); not from a commit callback. */
void tr_rpcstore_retire_service (TrRpcStore *store, guint32 service_id);

/* tr_rpcstore_set_min_free_space:
 * The free-space guard: once the filesystem of the data directory has less
 * than @min_bytes plus @min_percent % of its size available (statvfs
 * f_bavail, measured at most every TR_RPCSTORE_SPACE_CHECK_MS by the
 * committing thread, not per RPC), tr_rpcstore_submit*() refuses new
 * batches with TR_STORAGE_ERROR_SPACE_LOW (message: the free space, the
 * limit and the directory) without writing anything and without failing
 * the store; it accepts them again as soon as a measurement is above the
 * limit.  Reads, dead letters, checkpoints, retention and
 * tr_rpcstore_apply_batch() (a replica applies what its leader committed)
 * are not refused: the margin is there so that they still fit.  The
 * transitions are logged once each (warning, then message).  Both 0 turn
 * the guard off.  Any thread (takes the commit lock); the next batch
 * measures again. */
#define TR_RPCSTORE_SPACE_CHECK_MS 100
void tr_rpcstore_set_min_free_space (TrRpcStore *store, guint64 min_bytes, guint min_percent);

/* tr_rpcstore_add_subscriber:
 * Adds @notify (with @user_data) to the functions told of every batch, in
 * the order they were added (TrRpcNotify: on the committing thread, under
 * the commit lock).  The same pair may not be added twice.  Any thread but
 * a subscriber's (it takes the commit lock, so it waits for a batch being
 * committed). */
void tr_rpcstore_add_subscriber (TrRpcStore *store, TrRpcNotifyFunc notify, gpointer user_data);

/* tr_rpcstore_remove_subscriber:
 * Removes the pair added by tr_rpcstore_add_subscriber().  Once it returns,
 * @notify is neither running nor about to run for it, so @user_data may be
 * freed.  Threads as for adding.
 * Returns: FALSE if the pair was not subscribed. */
gboolean tr_rpcstore_remove_subscriber (TrRpcStore *store, TrRpcNotifyFunc notify, gpointer user_data);

/* tr_rpcstore_group_commit_delay_us:
 * How long a caller may hold a batch back to let other producers join it:
 * half the recent fsync time, at most 200 µs, with sync_mode always; 0 with
 * interval and none (nothing waits for a sync, so nothing is gained).
 * Synchronous producers acknowledged by one fsync come back about a round
 * trip later; committing at once would make the last ones miss that fsync
 * and the producers would settle into alternating groups.  Any thread. */
gint64 tr_rpcstore_group_commit_delay_us (TrRpcStore *store);

/* tr_rpcstore_copy_message:
 * Returns: (transfer full): a copy of @data[0..@len) in the memory the
 * store's cache keeps messages in (with rpc_cache_size of 16 MiB or more,
 * tr_arena.h: chunks with huge pages, so the cache filling up does not cost
 * a page fault per 4 KiB).  Callers that
 * submit a message they read into a buffer of their own copy it with this.
 * Thread-safe. */
GBytes *tr_rpcstore_copy_message (TrRpcStore *store, gconstpointer data, gsize len);

/* tr_rpcstore_submit:
 * Commits @message (a whole Thrift message, without the frame length) for
 * @n_services services.  @message is referenced, not copied.  @done has
 * been called exactly once when this returns.  Thread-safe. */
void tr_rpcstore_submit (TrRpcStore *store, GBytes *message, const guint32 *service_ids, guint n_services,
                         TrRpcCommitFunc done, gpointer user_data);

/* A batch of submissions collected by one thread (e.g. every RPC read in
 * one event loop iteration) and committed at once: one write per part
 * touched and, with sync_mode always, one fdatasync. */
typedef struct _TrRpcBatch TrRpcBatch;

TrRpcBatch *tr_rpcbatch_new (void);
void tr_rpcbatch_free (TrRpcBatch *batch);
guint tr_rpcbatch_len (const TrRpcBatch *batch);
/* Adds a submission; arguments as for tr_rpcstore_submit(). */
void tr_rpcbatch_add (TrRpcBatch *batch, GBytes *message, const guint32 *service_ids, guint n_services,
                      TrRpcCommitFunc done, gpointer user_data);

/* tr_rpcstore_submit_batch:
 * Commits every message of @batch in order on the calling thread and
 * empties it; every callback has run when this returns. */
void tr_rpcstore_submit_batch (TrRpcStore *store, TrRpcBatch *batch);

/* A stored RPC as it is on disk (tr_rpcstore_read_record()): everything a
 * replica needs to apply it (tr_rpcstore_apply_batch()). */
typedef struct {
  guint64 rpc_id;
  gint64 commit_time_us; /* the leader's commit time, microseconds since the epoch */
  GBytes *message;       /* (transfer full): the Thrift message, without frame length */
  guint32 *service_ids;  /* (transfer full) (array length=n_services) */
  guint n_services;
} TrRpcStoreRecord;

void tr_rpcstore_record_free (TrRpcStoreRecord *record);

/* tr_rpcstore_apply_batch:
 * @records: (array length=n_records): records of another store (the
 *   leader's, read with tr_rpcstore_read_record() and shipped)
 *
 * Commit as follower: stores @records with the ids and commit times they
 * carry, in order, as one group commit: the same path as
 * tr_rpcstore_submit_batch() (one write per part, one fdatasync with
 * sync_mode always, index and list entries through the DoubleWriteBuffer,
 * cache, subscribers notified), so the same recovery brings them back after
 * a crash, and for the same records the data, index and list files are
 * byte for byte the leader's.  The first record must be head + 1 and each
 * the one before + 1.  Runs on the calling thread (a replica's receiving
 * loop); thread-safe, serialised with every other commit.  Returns when the
 * batch is as durable as sync_mode promises.
 * Returns: TRUE, or FALSE with TR_STORAGE_ERROR_SEQUENCE (ids not head + 1
 * onward: nothing stored), _IO / _FULL / _CLOSED (nothing of the batch
 * stored; the store reopens by itself as after a failed commit). */
gboolean tr_rpcstore_apply_batch (TrRpcStore *store, TrRpcStoreRecord *const *records, guint n_records,
                                  GError **error);

/* Head (last committed) global rpc id; 0 when empty. */
guint64 tr_rpcstore_head (TrRpcStore *store);
/* Last committed seqid of a service's list; 0 when empty. */
guint64 tr_rpcstore_service_head (TrRpcStore *store, guint32 service_id);
/* First seqid still stored in a service's list (after retention). */
guint64 tr_rpcstore_service_first (TrRpcStore *store, guint32 service_id);

/* tr_rpcstore_service_lookup:
 * Global rpc id at @seqid of @service_id's list (1 <= seqid <= head).
 * Errors: TR_STORAGE_ERROR_NOT_FOUND (out of range or dropped), _CORRUPT. */
gboolean tr_rpcstore_service_lookup (TrRpcStore *store, guint32 service_id, guint64 seqid,
                                     guint64 *rpc_id_out, GError **error);

/* tr_rpcstore_locate:
 * Where @rpc_id's data record is: its logical offset in the data GroupFile
 * and its length (record framing included), read from the index, with no
 * data read.  Records are in rpc id order, so the distance between two
 * offsets is the bytes stored between them (used for an endpoint's lag in
 * bytes).  Errors: TR_STORAGE_ERROR_NOT_FOUND (not stored), _CLOSED.
 * Thread-safe. */
gboolean tr_rpcstore_locate (TrRpcStore *store, guint64 rpc_id, guint64 *offset_out, guint32 *len_out,
                             GError **error);

/* tr_rpcstore_get:
 * Returns: (transfer full) (nullable): the message of @rpc_id (from the
 * cache, else from disk, checksum verified), or NULL with NOT_FOUND/CORRUPT.
 * @timestamp_us_out (optional): commit time. */
GBytes *tr_rpcstore_get (TrRpcStore *store, guint64 rpc_id, gint64 *timestamp_us_out, GError **error);


/* tr_rpcstore_read_record:
 * Reads the data record of @rpc_id (first <= @rpc_id <= head) from the data
 * file, checksum verified: its id, commit time, message and service list.
 * Always from disk (the cache keeps no service lists); the read never waits
 * for a commit's fdatasync.  Thread-safe.
 * Returns: (transfer full) (nullable): free with tr_rpcstore_record_free();
 * NULL with TR_STORAGE_ERROR_NOT_FOUND (not stored, or dropped by
 * retention), _CORRUPT (naming the file and offset), _CLOSED or _IO. */
TrRpcStoreRecord *tr_rpcstore_read_record (TrRpcStore *store, guint64 rpc_id, GError **error);

/* tr_rpcstore_digest:
 * A checksum over the data records of the ids @from..@to (inclusive), as
 * they are on disk, record framing included: XXH3-64 (seed
 * TR_RECORD_SEED) of every record's bytes in id order.  Two stores whose
 * digests agree over a range hold byte-identical records for it (same id,
 * commit time, message and service list), which is what a replica must
 * hold (tr_rpcstore_apply_batch()).  Reads every record from disk, never
 * waiting for a commit's fdatasync; thread-safe.  @count_out: records read
 * (to - from + 1).
 * Returns: FALSE with TR_STORAGE_ERROR_NOT_FOUND (@from > @to, or a bound
 * outside the ids stored: the message names the stored range), _CORRUPT
 * (a record's checksum fails: naming the file and offset), _CLOSED, _IO. */
gboolean tr_rpcstore_digest (TrRpcStore *store, guint64 from, guint64 to, guint64 *count_out, guint64 *digest_out,
                             GError **error);

/* tr_rpcstore_set_low_water:
 * Tells retention that @service_id no longer needs seqids below @seqid (the
 * minimum over its endpoints, stopped ones included, of the first
 * unacknowledged seqid).  Whole parts no service needs are deleted by the
 * writer.  Dead letters do not hold parts back: a dead letter keeps its
 * seqid, rpc id and reason for ever, the RPC's bytes only while its part
 * exists (DESIGN §2.9 wants them pinned; not done yet). */
void tr_rpcstore_set_low_water (TrRpcStore *store, guint32 service_id, guint64 seqid);

/* Retention limits of a service's backlog (max_backlog_bytes,
 * max_backlog_age); 0 = that limit is off. */
typedef struct {
  guint64 max_bytes;
  gint64 max_age_us;
} TrBacklogLimits;

/* Which limit a backlog is over. */
typedef enum {
  TR_BACKLOG_WITHIN, /* neither */
  TR_BACKLOG_BYTES,  /* max_backlog_bytes */
  TR_BACKLOG_AGE,    /* max_backlog_age */
} TrBacklogExcess;

/* What tr_rpcstore_backlog_cut() found. */
typedef struct {
  guint64 cut;            /* first seqid within the limits: from (nothing over) .. head + 1 (everything) */
  TrBacklogExcess excess; /* which limit decided the cut (age when it went past the bytes
                           * limit's cut); WITHIN when cut is from */
  guint64 bytes;          /* the backlog at from, in bytes (see below) */
  gint64 age_us;          /* age of the RPC at from, at @now_us */
} TrBacklogCut;

/* tr_rpcstore_backlog_cut:
 * The backlog of an endpoint of @service_id whose first unacknowledged
 * seqid is @from_seqid is the RPCs from there to the service head.  Its
 * bytes are the data-store bytes from that RPC's record to the end of the
 * head's record (record framing included, other services' RPCs stored in
 * between too: what the position keeps on disk; the LAG_BYTES of tr-admin
 * endpoints); its age is @now_us minus that RPC's commit time.  Finds the
 * first seqid s >= @from_seqid whose backlog (from s) is within @limits,
 * by binary search over the service list (O(log lag) index reads and
 * commit-time reads; cheap enough to run every second).  A @from_seqid
 * below the first stored seqid counts from there.  Any thread.
 * Returns: TRUE with @out filled, or FALSE with TR_STORAGE_ERROR_NOT_FOUND /
 * _CORRUPT / _IO from the reads. */
gboolean tr_rpcstore_backlog_cut (TrRpcStore *store, guint32 service_id, guint64 from_seqid,
                                  const TrBacklogLimits *limits, gint64 now_us, TrBacklogCut *out, GError **error);

/* "max_backlog_bytes", "max_backlog_age" or "none" for @excess. */
const char *tr_backlog_excess_to_string (TrBacklogExcess excess);

/* tr_rpcstore_set_rpc_low_water:
 * Tells retention that global rpc ids from @rpc_id on are still needed,
 * whatever the services' low-water marks say: a replication source keeps
 * the records its replicas have not acknowledged (the minimum over them of
 * acknowledged id + 1).  0 (the default) holds nothing back.  Any thread. */
void tr_rpcstore_set_rpc_low_water (TrRpcStore *store, guint64 rpc_id);

/* Appends a dead letter (@seqid of @service_id whose RPC could not be
 * delivered) durably.  Thread-safe. */
gboolean tr_rpcstore_add_dead_letter (TrRpcStore *store, guint32 service_id, guint64 seqid,
                                      guint64 rpc_id, const char *reason, GError **error);

/* One dead letter as listed by tr_rpcstore_list_dead_letters(). */
typedef struct {
  guint64 index;  /* 0-based position in the service's dead-letter file */
  guint64 seqid;  /* service seqid that was not delivered */
  guint64 rpc_id; /* its global rpc id */
  char *reason;   /* (transfer full) */
} TrDeadLetter;

/* tr_rpcstore_list_dead_letters:
 * Reads @service_id's dead letters in the order they were written, from
 * index @from_index (0 = the first), at most @max of them.  The file is read
 * under the dead-letter lock, so a listing waits for (and delays) appends.
 * The first use of a dead-letter file (listing or append) cuts off a torn
 * record at the end of its last part (a crash during an append).  Any other
 * corrupt record ends the listing: *@unreadable_bytes_out (optional) is
 * then the number of bytes from it to the end of the file, else 0.
 * Returns: (transfer full) (element-type TrDeadLetter) (nullable): free with
 * g_array_unref() (reasons are freed with it); NULL with @error when the
 * file cannot be opened or read. */
GArray *tr_rpcstore_list_dead_letters (TrRpcStore *store, guint32 service_id, guint64 from_index, guint max,
                                       guint64 *unreadable_bytes_out, GError **error);

/* One redrive mark: dead letter @index of a service was sent again as the
 * new RPC @new_rpc_id (tr-admin redrive; tr_rpcstore_redrive.c). */
typedef struct {
  guint64 index;      /* dead-letter index (as listed) */
  guint64 new_rpc_id; /* the copy committed by the redrive */
  gint64 time_us;     /* when, wall clock, microseconds since the epoch */
} TrRedriveMark;

/* tr_rpcstore_list_redrives:
 * Every redrive mark of @service_id (DATA_DIR/redriven-<id>), oldest first;
 * a dead letter redriven more than once has several, the last is current.
 * Thread-safe (under the dead-letter lock).
 * Returns: (transfer full) (element-type TrRedriveMark) (nullable): empty
 * when nothing was redriven; NULL with @error (TR_STORAGE_ERROR_IO, or
 * _CORRUPT for a file that is not a redrive-marks file). */
GArray *tr_rpcstore_list_redrives (TrRpcStore *store, guint32 service_id, GError **error);

/* tr_rpcstore_add_redrives:
 * Adds @n_marks marks durably (DoubleWriteFile: old or new after a crash,
 * never torn).  Thread-safe.  Errors as tr_rpcstore_list_redrives(), or
 * what tr_dwfile_replace() reports. */
gboolean tr_rpcstore_add_redrives (TrRpcStore *store, guint32 service_id, const TrRedriveMark *marks,
                                   guint n_marks, GError **error);

/* Commit latency histogram: bucket i counts RPCs committed (callback
 * called) between 2^i and 2^(i+1) - 1 microseconds after
 * tr_rpcstore_submit(); bucket 0 also takes 0 us, the last bucket
 * everything longer (tr_histogram_bounds_latency_us). */
#define TR_RPCSTORE_LATENCY_BUCKETS TR_HISTOGRAM_MAX_BUCKETS

/* Statistics for status displays. */
typedef struct {
  guint64 head_rpc_id;
  guint64 data_bytes;
  guint data_parts;
  guint64 first_rpc_id; /* oldest rpc id still on disk */
  /* Retention needs nothing below this id any more (the low water of its
   * last run; the parts before it may be gone, or kept while they also
   * hold later ids): what a replica that pushes nothing may let go of
   * too.  first_rpc_id after opening. */
  guint64 retained_from_rpc_id;
  guint64 batches;      /* group commits done */
  guint64 commit_errors;
  TrHistogramSnapshot commit_latency; /* us per RPC, since open (TR_RPCSTORE_LATENCY_BUCKETS) */
  TrHistogramSnapshot batch_size;     /* RPCs per committed batch, since open */
  TrHistogramSnapshot fsync_latency;  /* us per sync of the data file by a commit (sync_mode always, part
                                       * seal) or by the writer's interval sync; not checkpoints' syncs */
  guint64 cache_rpcs;       /* messages in the cache now */
  guint64 cache_bytes;      /* what they count against the cache limit (overhead included) */
  guint64 cache_limit;      /* rpc_cache_size minus the ring and the block cache */
  guint64 reads_from_cache; /* tr_rpcstore_get() served from the cache, since open */
  guint64 reads_from_disk;  /* ... and from disk */
} TrRpcStoreStats;

void tr_rpcstore_get_stats (TrRpcStore *store, TrRpcStoreStats *stats_out);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (TrRpcStoreRecord, tr_rpcstore_record_free)

G_END_DECLS
