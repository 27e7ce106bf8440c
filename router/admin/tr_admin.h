/* tr_admin.h - the admin service of a node (thrift/admin.thrift, DESIGN.md §6).
 *
 * One admin thread with its own GMainContext serves admin_listen with
 * non-blocking sockets: many admin clients at once, an idle or slow one
 * never blocks another, and nothing here runs on the ingress loop or the
 * push thread.  Calls are framed binary-protocol CALLs parsed with tr_frame
 * and decoded / answered with tr_thrift_value by hand: no c_glib object is
 * created per call (c_glib leaks ~100 B per object, ../shared/THRIFT.md §2).
 *
 * Where answers come from: store reads (thread-safe), push stats and
 * control (tr_push_get_stats / tr_push_set_stop_send / _skip / _rewind,
 * which wait for the push thread), ingress counters (asked on the ingress
 * loop's context with a 2 s bound, 0 when it does not answer).
 * set_stop_send also rewrites conf/services/NAME.conf through
 * tr_dwfile_replace (a short blocking write on the admin thread).
 * reload (and SIGHUP, tr_admin_reload_async) runs tr_reload_run() on the
 * admin thread, which then owns the new configuration.
 *
 * Configuration: tr_admin_new() copies @config; the copy belongs to the
 * admin thread alone (stop-send updates it, a reload replaces it), and the
 * caller's configuration is never touched (ownership rules: tr_config.h).
 *
 * Token: with admin_token_file set, every call whose token differs is
 * refused with AdminError NOT_AUTHORISED (constant-time compare).
 *
 * Threads: tr_admin_new() and tr_admin_free() on the main thread.
 */
#pragma once

#include "tr_config.h"
#include "tr_ingress.h"
#include "tr_push.h"
#include "tr_rpcstore.h"

#include <glib.h>

G_BEGIN_DECLS

typedef struct _TrAdmin TrAdmin;

/* AdminError.code values of thrift/admin.thrift. */
typedef enum {
  TR_ADMIN_CODE_UNKNOWN_SERVICE = 1,
  TR_ADMIN_CODE_UNKNOWN_ENDPOINT = 2,
  TR_ADMIN_CODE_OUT_OF_RANGE = 3,
  TR_ADMIN_CODE_NOT_AUTHORISED = 4,
  TR_ADMIN_CODE_FAILED = 5,
  TR_ADMIN_CODE_INVALID_CONFIG = 6,
  TR_ADMIN_CODE_RESTART_NEEDED = 7,
} TrAdminCode;

/* tr_admin_new:
 * @config: (transfer none): copied, read during the call only
 * @store, @push, @ingress: (transfer none): outlive the TrAdmin
 * (free it first).  @ingress may be NULL (counters then read 0).  @push
 * is NULL on a BACKUP (nothing is pushed until promotion): endpoints lists
 * none, stop-send / skip / rewind and reload are refused.
 * @ingress_context: (transfer none) (nullable): the context @ingress runs on.
 *
 * Reads the token file, binds config->admin_host:admin_port and starts the
 * admin thread.
 * Returns: (transfer full) (nullable): NULL with @error (G_IO_ERROR from
 * the socket, G_FILE_ERROR / TR_CONFIG_ERROR from the token file). */
TrAdmin *tr_admin_new (const TrConfig *config, TrRpcStore *store, TrPush *push, TrIngress *ingress,
                       GMainContext *ingress_context, GError **error);

/* The port actually bound (useful with admin port 0). */
guint16 tr_admin_get_port (TrAdmin *admin);

/* Stops the admin thread and closes every admin connection (waits at most
 * for the call being served).  NULL is ignored. */
void tr_admin_free (TrAdmin *admin);

/* TrAdminReloadDone:
 * @outcome: one line, "reload applied (N changes)" or "reload refused: why"
 * @applied: TRUE if the new configuration runs. */
typedef void (*TrAdminReloadDone) (const char *outcome, gboolean applied, gpointer user_data);

/* tr_admin_reload_async:
 * @done: (nullable): called on the caller's thread-default main context
 *   once the reload has been applied or refused (tr_daemon: READY=1 for the
 *   service manager); never called if the TrAdmin is freed first.
 *
 * Reloads the configuration on the admin thread, where admin calls are
 * served (so it never runs beside an admin reload or stop-send), without
 * waiting: the result is logged (SIGHUP).  Main thread. */
void tr_admin_reload_async (TrAdmin *admin, TrAdminReloadDone done, gpointer user_data);

/* The node's epoch and whether it is fenced (node metadata, tr_node.h),
 * reported by status.  Call before tr_admin_start(). */
void tr_admin_set_node_state (TrAdmin *admin, guint64 epoch, gboolean fenced);

/* A source of replication links (the master's BACKUP services): returns
 * (transfer full) (element-type TrPushEndpointStats) one entry per link,
 * whose ->service is a service_type = BACKUP service and whose ->acked and
 * ->head are global rpc ids (the replica's acknowledged head, the
 * master's); free with g_array_unref() (the strings are freed with it).
 * Called on the admin thread. */
typedef GArray *(*TrAdminLinksFunc) (gpointer user_data);

/* tr_admin_set_replica_links:
 * `tr-admin endpoints` lists what @func returns after the COMMON
 * endpoints (lag in RPCs and bytes of the global store).  Once, from the
 * thread that created @admin; @user_data outlives @admin. */
void tr_admin_set_replica_links (TrAdmin *admin, TrAdminLinksFunc func, gpointer user_data);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (TrAdmin, tr_admin_free)

G_END_DECLS
