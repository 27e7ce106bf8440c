/* tr_reload.h - configuration reload of a running node (tr-admin reload,
 * SIGHUP; behaviour in docs/configuration.md "Reload").
 *
 * Re-reads router.conf and every service file it lists, with the same
 * loader and the same checks as at start-up.  Refused as a whole, with the
 * running configuration left as it was, when a file is invalid or when a
 * [router] key other than `services` changed (those need a restart).
 * Otherwise applied in this order: new services get a permanent id and an
 * open list in the store (tr_rpcstore_add_service), the push side is made
 * to match (tr_push_reload), then the ingress routing table is swapped on
 * the loop thread (tr_ingress_set_routes), so a new endpoint that starts at
 * the head never misses an RPC routed under the new table.
 *
 * Threads: tr_reload_run() blocks until the store's writer, the push
 * thread and the ingress loop have each done their part; call it from a
 * thread that is none of them (the admin thread).
 */
#pragma once

#include "tr_config.h"
#include "tr_ingress.h"
#include "tr_push.h"
#include "tr_rpcstore.h"

#include <glib.h>

G_BEGIN_DECLS

/* What a reload acts on; all borrowed. */
typedef struct {
  TrRpcStore *store;
  TrPush *push;
  TrIngress *ingress;            /* (nullable) no routing table to swap */
  GMainContext *ingress_context; /* (nullable) the context @ingress runs on */
} TrReloadTargets;

/* tr_reload_check_router_keys:
 * The first check of a reload: every [router] key of @loaded other than
 * `services` and `min_free_space` (which tr_reload_run() gives to the
 * store) must have the typed value it has in @running.
 * Returns: TRUE if so; FALSE with @error TR_CONFIG_ERROR_RESTART naming
 * each changed key with its new and running value.  Any thread. */
gboolean tr_reload_check_router_keys (const TrConfig *running, const TrConfig *loaded, GError **error);

/* tr_reload_describe:
 * The differences a reload from @running to @loaded applies to services and
 * endpoints, one line each as tr_reload_run() logs them ("service X added
 * ...", "endpoint S/E removed ...", "service S: max_retries 10 -> 3").
 * Returns: (transfer full) (element-type utf8): the lines, empty if none.
 * Any thread. */
GPtrArray *tr_reload_describe (const TrConfig *running, const TrConfig *loaded);

/* tr_reload_run:
 * @running: (transfer none): the configuration the node runs with
 * @changes_out: (out) (transfer full) (element-type utf8) (optional): one
 *   line per change, as logged ("service X added ..."); empty when the
 *   files say what already runs
 *
 * Loads @running->path again and applies the differences.  Every change is
 * logged (g_message, fields TR_SERVICE / TR_ENDPOINT).
 * Returns: (transfer full) (nullable): the new configuration, or NULL with
 * @error: TR_CONFIG_ERROR_PARSE / _INVALID / _IO (a file is invalid; the
 * message names file, group and key), TR_CONFIG_ERROR_RESTART (a key that
 * only a restart can change), TR_STORAGE_ERROR (the store or a send state
 * file failed).  On error nothing changed in the running node, except that
 * a new service may already have its permanent id (harmless). */
TrConfig *tr_reload_run (const TrConfig *running, const TrReloadTargets *targets, GPtrArray **changes_out,
                         GError **error);

G_END_DECLS
