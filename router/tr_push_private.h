/* tr_push_private.h - shared internals of the push module (tr_push.c: life
 * cycle, send state files, retention, stats; tr_push_endpoint.c: one
 * endpoint's connection, sending, reply matching and failure handling;
 * tr_push_control.c: operator control, stop_send / skip / rewind;
 * tr_push_reload.c: applying a reloaded configuration).
 * Nothing outside router/tr_push*.c may include this header.
 *
 * Threads: after tr_push_new() returns, every field below is owned by the
 * push thread, except TrPush.wake_pending (atomic).  tr_push_free() touches
 * them again only after joining that thread.
 */
#pragma once

#include "tr_frame.h"
#include "tr_push.h"
#include "tr_positions.h"

#include <gio/gio.h>
#include <glib.h>

G_BEGIN_DECLS

/* One sent but unacknowledged message on an endpoint's connection. */
typedef enum {
  TR_PUSH_KIND_CALL,
  TR_PUSH_KIND_ONEWAY,
  TR_PUSH_KIND_BARRIER, /* CALL of barrier_method; its seqid is the oneway's before it */
} TrPushKind;

typedef struct {
  guint64 seqid;
  guint64 rpc_id;  /* 0 for a barrier */
  guint64 end;     /* output stream position just after this message */
  TrPushKind kind;
} TrPushInflight;

/* Delivery rate: one sample of ->delivered per second (the poll timer),
 * rate over the last TR_PUSH_RATE_WINDOW_S seconds. */
#define TR_PUSH_RATE_WINDOW_S 10
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

  TrPushEndpointState state;
  guint64 acked;           /* last acknowledged service seqid */
  guint64 next_seqid;      /* next seqid to queue on the connection */

  GSource *source;         /* fd watch + timer (ready time); lives as long as the endpoint */
  gpointer fd_tag;         /* (nullable) g_source_add_unix_fd() tag */
  GIOCondition fd_events;  /* what fd_tag currently waits for */
  int fd;                  /* -1 when not connected */
  GCancellable *resolving; /* (nullable) the lookup of ->host in flight */
  GPtrArray *addresses;    /* (nullable) (element-type GSocketAddress) ->host resolved, tried in turn */
  guint next_address;      /* index in ->addresses of the next one to try */
  gint64 last_progress;    /* monotonic µs of the last reply / start of waiting */
  guint64 replies;         /* replies read on the current connection */
  char barrier_prefix[TR_FRAME_MAX_NAME_LEN + 1]; /* "Service:" of the last oneway queued, for its barrier */
  gsize barrier_prefix_len;

  GByteArray *out;         /* bytes queued for the socket */
  gsize out_pos;           /* bytes of ->out already written */
  guint64 out_total;       /* stream position after everything queued */
  guint64 written_total;   /* stream position written to the socket */
  GByteArray *in;          /* bytes read, not yet parsed */
  GQueue inflight;         /* (element-type TrPushInflight) oldest first */
  guint64 stop_fill_at;    /* seqid whose message is unreadable (0 = none) */
  gboolean fill_held;      /* the last fill left committed RPCs unsent (window full, or waiting) */

  guint retries;           /* consecutive failures, for backoff */
  guint64 rpc_fail_seqid;  /* seqid of the current run of RPC-level failures */
  guint rpc_fail_count;
  char *last_error;        /* (nullable) */
  guint64 delivered;       /* RPCs acknowledged by the endpoint since start (or its reload) */
  gint64 rate_time[TR_PUSH_RATE_SAMPLES];      /* monotonic µs; 0 = empty */
  guint64 rate_delivered[TR_PUSH_RATE_SAMPLES]; /* ->delivered at rate_time */
  guint rate_next;
  gint64 last_fail_log;    /* monotonic µs */
  guint fail_log_suppressed;
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

void tr_push__endpoint_start (TrPushEndpoint *endpoint);
void tr_push__endpoint_fill (TrPushEndpoint *endpoint);
void tr_push__endpoint_close (TrPushEndpoint *endpoint);
void tr_push__endpoint_watch (TrPushEndpoint *endpoint, GIOCondition events);
GSource *tr_push__endpoint_source_new (TrPushEndpoint *endpoint);
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

/* Structured log line about @endpoint with TR_SERVICE, TR_ENDPOINT, TR_SEQID. */
void tr_push__log (TrPushEndpoint *endpoint, GLogLevelFlags level, guint64 seqid, const char *format, ...)
    G_GNUC_PRINTF (4, 5);

G_END_DECLS
