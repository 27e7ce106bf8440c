/* tr_admin_private.h - shared between the files of the admin service:
 * tr_admin.c (the server: messages, connections, life cycle) and
 * tr_admin_calls.c (the calls, the rates they report and the reload).
 * Nothing outside router/tr_admin*.c may include this header.
 *
 * Threads: the calls, connections and rate samples run on the admin thread
 * (tr_admin_reload_async() only queues the reload there).  The main thread
 * still reads ->port and sets ->epoch (tr_admin_set_node_state(), per the field
 * comment before the first call) after that thread has started.
 */
#pragma once

#include "tr_admin.h"
#include "tr_net.h"

#include <glib.h>

G_BEGIN_DECLS

#define ADMIN_MAX_ARG 6
#define ADMIN_RATE_WINDOW_S 10
#define ADMIN_RATE_SAMPLES (ADMIN_RATE_WINDOW_S + 1)

/* One per-second sample of the store's counters. */
typedef struct {
  gint64 time_us; /* monotonic; 0 = empty slot */
  guint64 head_rpc_id;
  guint64 latency[TR_RPCSTORE_LATENCY_BUCKETS];
} RateSample;

struct _TrAdmin {
  TrConfig *config; /* owned: the running configuration, a copy of main's or the last reload's;
                     * admin thread only after start (stop-send changes it, reload replaces it) */
  guint64 epoch;    /* from the node metadata; set before the first call */
  gboolean fenced; /* likewise */
  TrRpcStore *store;
  TrPush *push;
  TrIngress *ingress;
  GMainContext *ingress_context;
  char *token; /* (nullable) */
  gsize token_len;
  int listen_fd;
  guint16 port;
  GMainContext *context;
  GMainLoop *loop;
  GThread *thread;
  GSource *listen_source;
  GHashTable *conns; /* (element-type AdminConn) owned; admin thread only */
  TrNetLogLimit *log_limit; /* per-connection warnings; admin thread only */
  GSource *rate_source;
  RateSample samples[ADMIN_RATE_SAMPLES]; /* ring; admin thread only */
  guint next_sample;
  /* (nullable) tr_admin_set_replica_links(): set once, atomically, read by
   * the admin thread */
  struct TrAdminLinks *links;
};

struct TrAdminLinks {
  TrAdminLinksFunc func;
  gpointer user_data;
};

/* The decoded args struct of any admin call. */
typedef struct {
  const guint8 *str[ADMIN_MAX_ARG];
  gsize str_len[ADMIN_MAX_ARG];
  gint64 num[ADMIN_MAX_ARG]; /* i64, i32 and bool fields */
} Args;

/* A refusal to send as AdminError. */
typedef struct {
  TrAdminCode code;
  char *message;
} Refusal;

/* An admin call: appends its return value as result field 0 (nothing for
 * void) to @result, or fills @refusal and returns FALSE. */
typedef gboolean (*CallFunc) (TrAdmin *admin, const Args *args, GByteArray *result, Refusal *refusal);

/* The call named @name (@name_len bytes, not NUL-terminated), or NULL for
 * an unknown method. */
CallFunc tr_admin__find_call (const char *name, gsize name_len);

/* Fills @refusal (the caller frees ->message) and returns FALSE, so that a
 * call can end with "return tr_admin__refuse (...)". */
gboolean tr_admin__refuse (Refusal *refusal, TrAdminCode code, const char *format, ...) G_GNUC_PRINTF (3, 4);

/* Takes the next per-second rate sample: the admin thread's 1 s timeout,
 * and once from tr_admin_new() so that the first window has a start. */
gboolean tr_admin__on_rate_tick (gpointer user_data);

G_END_DECLS
