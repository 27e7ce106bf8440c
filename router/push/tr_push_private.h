/* tr_push_private.h - shared internals of the push module (tr_push.c: life
 * cycle, send state files, retention, stats; tr_push_endpoint.c: one
 * endpoint's connection, sending, reply matching and failure handling;
 * tr_push_control.c: operator control, stop_send / skip / rewind;
 * tr_push_reload.c: applying a reloaded configuration; tr_push_backlog.c:
 * expiring what is beyond a service's backlog limits).
 * Nothing outside router/tr_push*.c may include this header.
 *
 * Threads: after tr_push_new() returns, every field below is owned by the
 * push thread, except TrPush.wake_pending (atomic).  tr_push_free() touches
 * them again only after joining that thread.
 */
#pragma once

#include "tr_frame.h"
#include "tr_net.h"
#include "tr_peer.h"
#include "tr_push.h"
#include "tr_positions.h"

#include <gio/gio.h>
#include <glib.h>

G_BEGIN_DECLS

/* Delivery rate: one sample of ->delivered per second (the poll timer),
 * rate over the last TR_PUSH_RATE_WINDOW_S seconds. */
#define TR_PUSH_RATE_WINDOW_S 10
/* An endpoint's connection and backoff failures: at most one line per 10 s. */
#define TR_PUSH_FAIL_LOG_INTERVAL_US (10 * G_TIME_SPAN_SECOND)
#define TR_PUSH_RATE_SAMPLES (TR_PUSH_RATE_WINDOW_S + 1)

typedef struct _TrPushService TrPushService;
typedef struct _TrPushEndpoint TrPushEndpoint;

struct _TrPushEndpoint {
  TrPush *push;            /* (transfer none) */
  TrPushService *service;  /* (transfer none) */
  char *id;
  char *host;
  guint16 port;

  TrPositionsEndpoint *state_file; /* send state, DATA_DIR/state/<service>@<id> */
  gboolean state_dirty;    /* acked changed since the last state write */

  TrPeer *peer;            /* the connection (host, port, backoff, window, in flight) */
  gboolean stopped;        /* stop_send: the peer stays IDLE */
  guint64 acked;           /* last acknowledged service seqid */
  guint64 next_seqid;      /* next seqid to queue on the connection */

  char barrier_prefix[TR_FRAME_MAX_NAME_LEN + 1]; /* "Service:" of the last oneway queued, for its barrier */
  gsize barrier_prefix_len;
  guint64 stop_fill_at;    /* seqid whose message is unreadable (0 = none) */
  gboolean fill_held;      /* the last fill left committed RPCs unsent (window full, or waiting) */

  guint64 rpc_fail_seqid;  /* seqid of the current run of RPC-level failures */
  guint64 rpc_fail_rpc_id; /* its global rpc id (0 = unknown) */
  guint rpc_fail_count;
  gboolean failing_rpc;    /* inside endpoint_fail_rpc(): the peer failure is an RPC's */
  gboolean failure_is_rpc; /* the last failure was the endpoint refusing an RPC, not the
                            * connection: with on_failure = block, BLOCKED, not BACKOFF */
  gint64 last_error_time;  /* g_get_real_time() of the last failure; 0 = none yet */
  gint64 last_error_resolved; /* g_get_real_time() it was resolved at; 0 = current */
  guint64 delivered;       /* RPCs acknowledged by the endpoint since start (or its reload) */
  gint64 rate_time[TR_PUSH_RATE_SAMPLES];      /* monotonic µs; 0 = empty */
  guint64 rate_delivered[TR_PUSH_RATE_SAMPLES]; /* ->delivered at rate_time */
  guint rate_next;
  TrNetLogLimit *fail_log; /* the connection/backoff lines: one per TR_PUSH_FAIL_LOG_INTERVAL_US */
  gint64 down_since;       /* monotonic µs of the first failure since the last connection; 0 = none */
  guint down_failures;     /* failures since the last connection */
  gboolean down_logged;    /* one of them was logged (not suppressed): so is the reconnection */

  /* Backlog limits (tr_push_backlog.c). */
  guint64 expired;         /* RPCs expired by max_backlog_bytes / _age since start (or its reload) */
  guint64 overflow_first;  /* first seqid expired in the current overflow; 0 = within the limits */
  guint64 overflow_last;   /* last seqid expired in it */
  guint overflow_steps;    /* ranges recorded in it */

  /* For metrics (tr_push_get_stats()), since start or the reload that added the endpoint. */
  guint64 failures;        /* connection and RPC failures (each backoff) */
  guint64 dead_letters;    /* seqids skipped into the dead-letter list */
  TrHistogram delivery_latency; /* us from an RPC's commit to its acknowledgement; atomic */
};

struct _TrPushService {
  char *name;
  guint32 service_id;
  guint max_inflight;
  TrOnFailure on_failure;
  guint max_retries;
  guint retry_backoff_ms;
  guint retry_backoff_max_ms;
  guint connect_timeout_ms;
  guint socket_timeout_ms;
  gboolean oneway_barrier;
  char *barrier_method;
  TrBacklogLimits limits;  /* max_backlog_bytes, max_backlog_age */
  GPtrArray *endpoints;    /* (element-type TrPushEndpoint) */
  guint64 low_water;       /* last value given to the store */
};

struct _TrPush {
  TrRpcStore *store;
  TrPositions *positions;  /* the node's send state files (tr_positions.h) */
  guint state_flush_ms;
  GPtrArray *services;     /* (element-type TrPushService) */
  GMainContext *context;
  GMainLoop *loop;
  GThread *thread;
  GSource *flush_source;   /* (nullable) pending state flush */
  GSource *poll_source;    /* periodic head check, in case a wake was missed */
  gint wake_pending;       /* atomic: a wake is queued on ->context */
};

/* tr_push_endpoint.c */
/* Copies the service-wide settings of @config (window, failure policy,
 * retries and backoff, timeouts, oneway barrier) into @service: at
 * start-up and on reload. */
void tr_push__service_configure (TrPushService *service, const TrServiceConfig *config);

/* Runs @func (@data) on the push thread and waits until it has returned.
 * Any thread but the push thread. */
void tr_push__run_sync (TrPush *push, void (*func) (gpointer data), gpointer data);

/* The endpoint's TrPeer to @host:@port, with the service's settings; not
 * attached yet.  Returns: (transfer full) */
TrPeer *tr_push__endpoint_peer_new (TrPushEndpoint *endpoint, const char *host, guint16 port);
/* Gives the service's settings (after a reload) to the endpoint's peer. */
void tr_push__endpoint_configure (TrPushEndpoint *endpoint);
/* Connects, unless stop_send is on (then logs that it sends nothing). */
void tr_push__endpoint_start (TrPushEndpoint *endpoint);
void tr_push__endpoint_fill (TrPushEndpoint *endpoint);
/* STOPPED, or the peer's state. */
TrPushEndpointState tr_push__endpoint_state (const TrPushEndpoint *endpoint);
/* Records ->delivered at @now (monotonic µs); once a second. */
void tr_push__endpoint_sample_rate (TrPushEndpoint *endpoint, gint64 now);
/* RPCs delivered per second over the last TR_PUSH_RATE_WINDOW_S seconds. */
double tr_push__endpoint_rate (const TrPushEndpoint *endpoint, gint64 now);

/* tr_push.c */
/* Called after ->acked advanced: marks the state dirty, schedules a flush
 * and updates the service's low-water mark. */
void tr_push__acked (TrPushEndpoint *endpoint);
/* After an operator moved a position (either way): recomputes the
 * service's low-water mark and gives it to the store even if it went down. */
void tr_push__positions_moved (TrPush *push, TrPushService *service);
/* Reload: a new endpoint of @service with its send state loaded; with no
 * state file it starts at the first stored seqid, or with @use_start at
 * the service head when config->start is head.  Its GSource is not
 * attached yet.  NULL with @error (state file). */
TrPushEndpoint *tr_push__endpoint_new_loaded (TrPush *push, TrPushService *service, const TrEndpointConfig *config,
                                              gboolean use_start, GError **error);
void tr_push__endpoint_free (TrPushEndpoint *endpoint);
void tr_push__service_free (TrPushService *service);
/* Closes the connection and writes + syncs the send state (reload removes
 * the endpoint next). */
void tr_push__endpoint_save (TrPushEndpoint *endpoint);

/* tr_push_control.c */
/* Closes the connection, drops what is in flight, next_seqid = acked + 1. */
void tr_push__endpoint_disconnect (TrPushEndpoint *endpoint);
/* stop_send on/off on the push thread (logged). */
void tr_push__endpoint_set_stop_send (TrPushEndpoint *endpoint, gboolean stop);
/* Moves the position to @to_seqid (either way) without logging: closes the
 * connection, records the position like an acknowledgement, recomputes
 * the low-water mark, reconnects unless stopped.  The caller logs why. */
void tr_push__endpoint_move (TrPushEndpoint *endpoint, guint64 to_seqid);

/* tr_push_backlog.c */
/* Expires what each endpoint's backlog has beyond its service's limits
 * (once a second, from the poll timer). */
void tr_push__check_backlogs (TrPush *push);

/* Structured log line about @endpoint with TR_SERVICE, TR_ENDPOINT, TR_SEQID. */
void tr_push__log (TrPushEndpoint *endpoint, GLogLevelFlags level, guint64 seqid, const char *format, ...)
    G_GNUC_PRINTF (4, 5);

G_END_DECLS
