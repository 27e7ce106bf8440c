/* tr_push.h - delivery of stored RPCs to the endpoints of every service.
 *
 * One push thread with its own GMainContext runs every endpoint connection
 * (non-blocking sockets).  For each endpoint it reads the service list from
 * the endpoint's position, fetches the message (RPC cache, else disk),
 * rewrites the header seqid to the service seqid and sends it, pipelining up
 * to max_inflight.  Replies are matched in order (Thrift servers answer one
 * connection's requests in order) and their seqid checked.  Acknowledged
 * seqids are recorded per endpoint in a RotateFile under DATA_DIR/state/
 * (at most every state_flush_ms, and on shutdown).  An endpoint whose
 * backlog goes beyond its service's max_backlog_bytes / max_backlog_age
 * has its oldest RPCs expired into a dead letter and moves past them
 * (tr_push_backlog.c).  Behaviour: docs/delivery.md.
 *
 * Endpoint states (transitions in tr_peer.c, mapped in tr_push_endpoint.c;
 * stop_send and start_send in tr_push_control.c):
 *
 *   STOPPED <--- stop_send ---- any state
 *      |  start_send
 *      v
 *   CONNECTING --connected--> SENDING --failure--> BACKOFF --timer--> CONNECTING
 *        ^   \---connect failed/timeout------------^
 *
 *   BLOCKED (shown instead of the three above): on_failure = block and the
 *   endpoint refused the same seqid (exception, declared exception, result,
 *   or the message unreadable) more than max_retries times in a row, and
 *   no connection failure came since; it ends when that seqid is
 *   acknowledged, skipped, rewound or stop_send (docs/delivery.md).
 *
 * Threads: tr_push_new() and tr_push_free() on the main thread; tr_push_wake()
 * from any thread (it is the store's notify callback).  Everything else runs
 * on the push thread.
 */
#pragma once

#include "tr_config.h"
#include "tr_histogram.h"
#include "tr_rpcstore.h"

#include <glib.h>

G_BEGIN_DECLS

typedef struct _TrPush TrPush;

/* tr_push_new:
 * @store: (transfer none): outlives the TrPush
 * @config: (transfer none): read during the call only
 *
 * Loads every endpoint's send state (no state file: a new endpoint starts
 * at the first seqid still stored for its service, so nothing committed is
 * skipped silently), sets the store's low-water marks and starts the push
 * thread.
 * Returns: (transfer full) (nullable): NULL with @error (TR_STORAGE_ERROR
 * from the state files). */
TrPush *tr_push_new (TrRpcStore *store, const TrConfig *config, GError **error);

/* tr_push_wake: new RPCs were committed.  Any thread.  They go out with
 * the next pass, at most 1 ms later (TR_PUSH_LINGER_MS), so that the RPCs
 * of several commits share one send per endpoint; each endpoint reads its
 * own service head then. */
void tr_push_wake (TrPush *push);

/* tr_push_on_store_event: the store's TrRpcNotifyFunc (@push is the
 * TrPush): wakes the push thread after commits (tr_push_wake()), and at once
 * when a large batch starts its fdatasync (see tr_push.c). */
void tr_push_on_store_event (gpointer push, TrRpcNotify what, guint64 value);

/* Stops the push thread, closes every connection, and writes every
 * endpoint's acknowledged seqid durably.  NULL is ignored. */
void tr_push_free (TrPush *push);

/* ---- statistics (admin, tests) ---- */

typedef enum {
  TR_PUSH_STOPPED,
  TR_PUSH_CONNECTING,
  TR_PUSH_SENDING,
  TR_PUSH_BACKOFF,
  TR_PUSH_BLOCKED,
} TrPushEndpointState;

/* Returns: (transfer none): "STOPPED", "CONNECTING", "SENDING", "BACKOFF" or
 * "BLOCKED". */
const char *tr_push_endpoint_state_to_string (TrPushEndpointState state);

/* A copy of one endpoint's send state, taken on the push thread. */
typedef struct {
  char *service;     /* (transfer full) */
  char *endpoint;    /* (transfer full) endpoint id */
  TrPushEndpointState state;
  guint64 acked;     /* last acknowledged service seqid */
  guint64 head;      /* service head when the snapshot was taken */
  guint retries;     /* consecutive failures so far */
  char *last_error;  /* (transfer full) (nullable) reason of the last failure */
  guint64 delivered; /* RPCs the endpoint acknowledged since the node started (or the
                      * reload that added it); redeliveries after a rewind count again */
  double rpcs_out_per_sec; /* delivered per second over the last 10 s */
  guint64 expired;   /* RPCs expired by max_backlog_bytes / max_backlog_age since the node
                      * started (or the reload that added it); each range is a dead letter */
  guint64 blocked_seqid;   /* state BLOCKED: the seqid refused again and again; else 0 */
  guint64 blocked_rpc_id;  /* its global rpc id (0 when unknown or not blocked) */
  gint64 last_error_time;  /* wall clock (g_get_real_time(), µs) of last_error; 0 = none */
  gint64 last_error_resolved; /* wall clock µs at which the endpoint recovered from
                               * last_error (an acknowledgement; for a connection
                               * failure, the next connection); 0 = still current */
  /* Since the node started (or the reload that added the endpoint): */
  guint64 failures;        /* failures that made the endpoint back off (connection or RPC) */
  guint64 dead_letters;    /* seqids skipped into the dead-letter list (on_failure = skip) */
  TrHistogramSnapshot delivery_latency; /* us from an RPC's commit (its stored time) to its
                                         * acknowledgement, tr_histogram_bounds_delivery_us */
} TrPushEndpointStats;

/* tr_push_get_stats:
 * Snapshot of every endpoint, in config order (services, then endpoints).
 * Blocks until the push thread has answered (any thread but the push
 * thread itself may call it).
 * Returns: (transfer full) (element-type TrPushEndpointStats): free with
 * g_array_unref() (the strings are freed with it). */
GArray *tr_push_get_stats (TrPush *push);

/* tr_push_endpoint_lag_bytes:
 * Bytes of @store's data from the first unacknowledged RPC of @stats to
 * its service head (the records, headers included; RPCs of other services
 * stored in between count too, as they share the data files): what the
 * endpoint still holds on disk.  Index lookups in @store, not on the push
 * thread; any thread.
 * Returns: 0 when the endpoint is not behind, -1 when an index entry is
 * unreadable. */
gint64 tr_push_endpoint_lag_bytes (TrRpcStore *store, const TrPushEndpointStats *stats);

/* ---- operator control (admin; tr_push_control.c) ----
 *
 * Each call runs on the push thread and blocks the caller until it is done
 * (any thread but the push thread may call them).  They change the running
 * node only: persisting stop_send in the service file is the caller's job.
 * Errors (TR_ROUTER_ERROR): _NOT_FOUND for an unknown service or endpoint,
 * _INVALID for a seqid out of range; the message names service, endpoint
 * and the allowed range. */

/* tr_push_set_stop_send:
 * @stop TRUE: closes the endpoint's connection (what was in flight and not
 * acknowledged is sent again later) and sends nothing; its position stays.
 * FALSE: connects and resumes from the first unacknowledged seqid.  Doing
 * what is already the case is not an error. */
gboolean tr_push_set_stop_send (TrPush *push, const char *service, const char *endpoint, gboolean stop,
                                GError **error);

/* tr_push_skip:
 * Moves the endpoint's position forward: the next RPC it gets is service
 * seqid @to_seqid, everything before counts as delivered (no dead letter
 * is written).  acked + 1 <= @to_seqid <= head + 1 (head + 1 = skip all).
 * A connected endpoint is reconnected. */
gboolean tr_push_skip (TrPush *push, const char *service, const char *endpoint, guint64 to_seqid,
                       GError **error);

/* tr_push_skip_by:
 * Skips the next @count RPCs of the endpoint in one step on the push thread
 * (so the position read and the move cannot race with acknowledgements):
 * the acknowledged seqid becomes acked + @count and the next RPC sent is
 * acked + @count + 1, which is stored in @to_seqid_out (optional).
 * 1 <= @count <= head - acked; like tr_push_skip() otherwise. */
gboolean tr_push_skip_by (TrPush *push, const char *service, const char *endpoint, guint64 count,
                          guint64 *to_seqid_out, GError **error);

/* tr_push_rewind:
 * Moves the endpoint's position back: RPCs from service seqid @to_seqid on
 * are delivered again.  first stored seqid <= @to_seqid <= acked + 1; a
 * seqid already deleted by retention is refused.  Retention is held back
 * to @to_seqid at once.  A connected endpoint is reconnected. */
gboolean tr_push_rewind (TrPush *push, const char *service, const char *endpoint, guint64 to_seqid,
                         GError **error);

/* tr_push_reload (tr_push_reload.c):
 * Makes the running push side match @config (a reloaded configuration
 * whose new services the store already knows, tr_rpcstore_add_service()):
 * adds and removes services and endpoints, copies retry / backoff /
 * timeout / max_inflight / on_failure settings, reconnects an endpoint
 * whose host or port changed, applies each endpoint's stop_send from the
 * file.  Untouched endpoints keep their connection and position.  An added
 * endpoint resumes from its send state file if it has one, else starts at
 * the service head (start = head) or the first stored seqid (earliest).
 * Removed endpoints record their send state; their files are kept.
 * All or nothing: a send state file that cannot be read fails the call
 * (TR_STORAGE_ERROR) and nothing changes.  Runs on the push thread; the
 * caller waits (any thread but the push thread). */
gboolean tr_push_reload (TrPush *push, const TrConfig *config, GError **error);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (TrPush, tr_push_free)

G_END_DECLS
