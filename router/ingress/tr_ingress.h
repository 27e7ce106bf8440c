/* tr_ingress.h - producer side of a MASTER: accept, frame, route, commit, answer.
 *
 * Runs on the thread that owns the default GMainContext (the event loop
 * thread); not thread-safe.  Each producer connection is a non-blocking
 * socket read into a buffer; complete frames are parsed with tr_frame (the
 * one Thrift codec), routed by rpc name to the subscribing services and
 * submitted to the TrRpcStore.  Answers go back in request order on each
 * connection (a FIFO of pending answers): a CALL gets a void T_REPLY once its
 * RPC is committed, a ONEWAY nothing; bad input and unknown rpcs get a
 * TApplicationException (DESIGN.md §2.1-2.5, docs/delivery.md).
 *
 * The RPCs read in one loop iteration are committed as one batch on this
 * thread (group commit; with sync_mode always the loop first waits up to
 * tr_rpcstore_group_commit_delay_us() for the other active producers), and
 * their answers go out right after: no thread hop between a producer's
 * request and its answer.  The loop is blocked during the fdatasync, which
 * costs nothing here: every producer is waiting on that fsync anyway.
 */
#pragma once

#include "tr_config.h"
#include "tr_rpcstore.h"

#include <glib.h>

G_BEGIN_DECLS

typedef struct _TrIngress TrIngress;

typedef struct {
  guint connections;        /* open producer connections */
  guint64 accepted;         /* connections accepted since start */
  guint64 refused;          /* connections refused (max_connections) */
  guint64 rpcs_in;          /* RPCs submitted to the store */
  guint64 rpcs_committed;   /* RPCs committed (acknowledged) */
  guint64 commit_errors;    /* RPCs answered INTERNAL_ERROR */
  guint64 unknown_rpcs;     /* answered UNKNOWN_METHOD */
  guint64 bad_frames;       /* malformed input of any kind */
} TrIngressStats;

/* tr_ingress_new:
 * Binds config->listen_host:listen_port and starts accepting on the default
 * main context.  @store is borrowed and must outlive the ingress; @config is
 * read during the call only.
 * Returns: (transfer full) (nullable): NULL with a G_IO_ERROR naming the
 * address when it cannot listen. */
TrIngress *tr_ingress_new (TrRpcStore *store, const TrConfig *config, GError **error);

/* Stops accepting and closes the listening socket (shutdown step 1). */
void tr_ingress_stop_accepting (TrIngress *ingress);

/* Answers still owed: RPCs being committed plus producer connections with
 * answers not yet fully sent (a producer slow to read).  Shutdown waits
 * for 0, so no stored RPC loses its answer to the stop. */
guint tr_ingress_pending (TrIngress *ingress);

/* Loop thread only; from another thread use tr_ingress_get_stats_wait(). */
void tr_ingress_get_stats (TrIngress *ingress, TrIngressStats *stats_out);

/* tr_ingress_get_stats_wait:
 * From any other thread (admin status, metrics): runs
 * tr_ingress_get_stats() on @context, the loop the ingress runs on, and
 * waits for it until @deadline_us (monotonic).  If the loop does not answer
 * in time (shutdown, a slow disk holding the inline commit) the caller
 * gives up and the request is left to the late run (tr_invoke_wait()).
 * Returns: TRUE with @stats_out filled, FALSE if the loop did not answer. */
gboolean tr_ingress_get_stats_wait (TrIngress *ingress, GMainContext *context, gint64 deadline_us,
                                    TrIngressStats *stats_out);

/* The port actually bound (useful with listen port 0). */
guint16 tr_ingress_get_port (TrIngress *ingress);

/* tr_ingress_routes_new:
 * The routing table of @config (rpc name -> GArray of guint32 service
 * ids); every service must be known to @store.  Any thread.
 * Returns: (transfer full): for tr_ingress_set_routes(). */
GHashTable *tr_ingress_routes_new (TrRpcStore *store, const TrConfig *config);

/* tr_ingress_set_routes:
 * Replaces the routing table (configuration reload).  @routes: (transfer
 * full) from tr_ingress_routes_new().  Loop thread only. */
void tr_ingress_set_routes (TrIngress *ingress, GHashTable *routes);

/* tr_ingress_refuse_writes:
 * From now on every producer RPC is refused, never stored nor
 * acknowledged: a CALL gets a TApplicationException INTERNAL_ERROR whose
 * message is @reason, a ONEWAY is dropped; both are logged rate-limited.
 * For a node that must not take writes (a BACKUP: @reason names the
 * master's address).  NULL takes writes again.  Any thread. */
void tr_ingress_refuse_writes (TrIngress *ingress, const char *reason);

/* Closes every connection and frees.  Call when tr_ingress_pending() is 0
 * (or after the store is closed).  NULL is ignored. */
void tr_ingress_free (TrIngress *ingress);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (TrIngress, tr_ingress_free)

G_END_DECLS
