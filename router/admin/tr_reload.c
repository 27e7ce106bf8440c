/* tr_reload.c - configuration reload (see tr_reload.h).
 *
 * Steps: load (tr_config_load, the start-up loader) -> refuse changed
 * [router] keys other than services and min_free_space -> describe the
 * differences (one line each, logged) -> store (ids and lists of new
 * services) -> push (tr_push_reload) -> the store's min_free_space ->
 * ingress routing table (built here, swapped on the
 * ingress loop) -> removed services stop holding retention back
 * (tr_rpcstore_retire_service, on the ingress loop right after the swap:
 * every RPC routed to them until then is committed, and a swap that runs
 * late still retires them).  The first three change nothing, so an invalid file or a
 * key needing a restart leaves the running node exactly as it was.
 *
 * stop_send: the files hold what the operator last set with stop-send /
 * start-send (written there through DoubleWriteFile), so a reload reads
 * the operator's choice back; tr_push_reload compares the file with the
 * endpoint's running state and logs a difference itself.
 */
#undef G_LOG_DOMAIN
#define G_LOG_DOMAIN "tr-admin"

#include "tr_reload.h"

#include "tr_invoke.h"

#include <string.h>

#define RELOAD_INGRESS_WAIT_US (5 * G_TIME_SPAN_SECOND)

/* ---- router.conf keys that need a restart ---- */

/* Every [router] key is compared as a typed value (tr_config_diff_router),
 * so a key that is unset on one side (admin_token_file) is a difference like
 * any other: only `services` and `min_free_space` (the store takes a new
 * limit at once, tr_rpcstore_set_min_free_space) may change without a
 * restart. */
gboolean
tr_reload_check_router_keys (const TrConfig *running, const TrConfig *loaded, GError **error)
{
  g_autoptr (GPtrArray) keys = NULL;
  g_autoptr (GString) changed = g_string_new (NULL);

  g_return_val_if_fail (running != NULL && loaded != NULL, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  keys = tr_config_diff_router (running, loaded);
  for (guint i = 0; i < keys->len; i++) {
    const TrConfigKeyChange *change = g_ptr_array_index (keys, i);
    if (strcmp (change->key, "services") == 0 || strcmp (change->key, "min_free_space") == 0)
      continue;
    g_string_append_printf (changed, "%s%s = %s (running: %s)", changed->len > 0 ? ", " : "", change->key,
                            change->loaded, change->running);
  }
  if (changed->len == 0)
    return TRUE;
  g_set_error (error, TR_CONFIG_ERROR, TR_CONFIG_ERROR_RESTART,
               "%s: [router] %s: only services and min_free_space can change without a restart; restart the node to apply "
               "this, or put the running value back and reload again",
               running->path, changed->str);
  return FALSE;
}

/* ---- describing the differences ---- */

static void note (GPtrArray *changes, const char *format, ...) G_GNUC_PRINTF (2, 3);

/* Adds one change line (logged once the reload has been applied). */
static void
note (GPtrArray *changes, const char *format, ...)
{
  va_list args;

  va_start (args, format);
  g_ptr_array_add (changes, g_strdup_vprintf (format, args));
  va_end (args);
}

static char *
join_rpcs (const TrServiceConfig *service)
{
  g_autoptr (GString) out = g_string_new (NULL);

  for (guint i = 0; i < service->rpcs->len; i++)
    g_string_append_printf (out, "%s%s", i > 0 ? ", " : "", (char *) g_ptr_array_index (service->rpcs, i));
  return g_string_free (g_steal_pointer (&out), FALSE);
}

static void
diff_uint (GString *out, const char *key, guint old_value, guint new_value)
{
  if (old_value != new_value)
    g_string_append_printf (out, "%s%s %u -> %u", out->len > 0 ? ", " : "", key, old_value, new_value);
}

/* Service-wide settings that differ, as "key old -> new, ...". */
static char *
diff_settings (const TrServiceConfig *a, const TrServiceConfig *b)
{
  GString *out = g_string_new (NULL);

  diff_uint (out, "max_inflight", a->max_inflight, b->max_inflight);
  if (a->on_failure != b->on_failure)
    g_string_append_printf (out, "%son_failure %s -> %s", out->len > 0 ? ", " : "",
                            tr_config_on_failure_to_string (a->on_failure),
                            tr_config_on_failure_to_string (b->on_failure));
  diff_uint (out, "max_retries", a->max_retries, b->max_retries);
  diff_uint (out, "retry_backoff_ms", a->retry_backoff_ms, b->retry_backoff_ms);
  diff_uint (out, "retry_backoff_max_ms", a->retry_backoff_max_ms, b->retry_backoff_max_ms);
  diff_uint (out, "connect_timeout_ms", a->connect_timeout_ms, b->connect_timeout_ms);
  diff_uint (out, "socket_timeout_ms", a->socket_timeout_ms, b->socket_timeout_ms);
  diff_uint (out, "oneway_barrier", a->oneway_barrier, b->oneway_barrier);
  if (strcmp (a->barrier_method, b->barrier_method) != 0)
    g_string_append_printf (out, "%sbarrier_method %s -> %s", out->len > 0 ? ", " : "", a->barrier_method,
                            b->barrier_method);
  if (a->max_backlog_bytes != b->max_backlog_bytes)
    g_string_append_printf (out, "%smax_backlog_bytes %" G_GUINT64_FORMAT " -> %" G_GUINT64_FORMAT,
                            out->len > 0 ? ", " : "", a->max_backlog_bytes, b->max_backlog_bytes);
  if (a->max_backlog_age_s != b->max_backlog_age_s) {
    g_autofree char *old_age = tr_config_format_duration (a->max_backlog_age_s);
    g_autofree char *new_age = tr_config_format_duration (b->max_backlog_age_s);
    g_string_append_printf (out, "%smax_backlog_age %s -> %s", out->len > 0 ? ", " : "", old_age, new_age);
  }
  return g_string_free (out, out->len == 0);
}

/* @a running, @b loaded: endpoints removed, moved, stop_send changed by
 * editing the file (the running config follows tr-admin stop-send). */
static void
diff_endpoints (GPtrArray *changes, const TrServiceConfig *a, const TrServiceConfig *b)
{
  for (guint i = 0; i < a->endpoints->len; i++) {
    const TrEndpointConfig *old_endpoint = g_ptr_array_index (a->endpoints, i);
    const TrEndpointConfig *new_endpoint = tr_config_lookup_endpoint (b, old_endpoint->id);
    if (new_endpoint == NULL)
      note (changes, "endpoint %s/%s removed (nothing more is sent to it; its send state file is kept)",
            a->name, old_endpoint->id);
    else if (strcmp (old_endpoint->host, new_endpoint->host) != 0 || old_endpoint->port != new_endpoint->port)
      note (changes, "endpoint %s/%s changed: %s:%u -> %s:%u (reconnects, resumes after its acknowledged seqid)",
            a->name, old_endpoint->id, old_endpoint->host, old_endpoint->port, new_endpoint->host,
            new_endpoint->port);
    if (new_endpoint == NULL)
      continue;
    if (old_endpoint->stop_send != new_endpoint->stop_send)
      note (changes, "endpoint %s/%s: stop_send %s -> %s", a->name, old_endpoint->id,
            old_endpoint->stop_send ? "true" : "false", new_endpoint->stop_send ? "true" : "false");
    /* Neither changes what runs, but a reload reports every key it reads. */
    if (old_endpoint->max_connection != new_endpoint->max_connection)
      note (changes, "endpoint %s/%s: max_connection %u -> %u (one connection is opened either way)", a->name,
            old_endpoint->id, old_endpoint->max_connection, new_endpoint->max_connection);
    if (old_endpoint->start != new_endpoint->start)
      note (changes, "endpoint %s/%s: start %s -> %s (applies only to an endpoint added by a reload)", a->name,
            old_endpoint->id, tr_config_start_to_string (old_endpoint->start),
            tr_config_start_to_string (new_endpoint->start));
  }
  for (guint i = 0; i < b->endpoints->len; i++) {
    const TrEndpointConfig *new_endpoint = g_ptr_array_index (b->endpoints, i);
    if (tr_config_lookup_endpoint (a, new_endpoint->id) == NULL)
      note (changes, "endpoint %s/%s added at %s:%u (start = %s: with no send state it begins at the %s)", b->name,
            new_endpoint->id, new_endpoint->host, new_endpoint->port,
            tr_config_start_to_string (new_endpoint->start),
            new_endpoint->start == TR_START_HEAD ? "service head" : "first stored seqid");
  }
}

static void
diff_service (GPtrArray *changes, const TrServiceConfig *a, const TrServiceConfig *b)
{
  g_autofree char *old_rpcs = join_rpcs (a);
  g_autofree char *new_rpcs = join_rpcs (b);
  g_autofree char *settings = diff_settings (a, b);

  if (strcmp (old_rpcs, new_rpcs) != 0)
    note (changes, "service %s: rpcs changed from [%s] to [%s]", a->name, old_rpcs, new_rpcs);
  if (settings != NULL)
    note (changes, "service %s: %s", a->name, settings);
  diff_endpoints (changes, a, b);
}

GPtrArray *
tr_reload_describe (const TrConfig *running, const TrConfig *loaded)
{
  g_return_val_if_fail (running != NULL && loaded != NULL, NULL);

  GPtrArray *changes = g_ptr_array_new_with_free_func (g_free);

  for (guint s = 0; s < running->services->len; s++) {
    const TrServiceConfig *a = g_ptr_array_index (running->services, s);
    const TrServiceConfig *b = tr_config_lookup_service (loaded, a->name);
    if (b != NULL)
      diff_service (changes, a, b);
    else
      note (changes,
            "service %s removed (no longer routed or pushed; its list, dead letters and send states stay in "
            "the data dir)",
            a->name);
  }
  for (guint s = 0; s < loaded->services->len; s++) {
    const TrServiceConfig *b = g_ptr_array_index (loaded->services, s);
    g_autofree char *rpcs = join_rpcs (b);
    if (tr_config_lookup_service (running, b->name) == NULL)
      note (changes, "service %s added (rpcs %s; %u endpoints)", b->name, rpcs, b->endpoints->len);
  }
  return changes;
}

/* ---- applying ---- */

static gboolean
add_new_services (const TrConfig *running, const TrConfig *loaded, TrRpcStore *store, GError **error)
{
  for (guint s = 0; s < loaded->services->len; s++) {
    const TrServiceConfig *service = g_ptr_array_index (loaded->services, s);
    if (tr_config_lookup_service (running, service->name) == NULL
        && tr_rpcstore_add_service (store, service->name, error) < 0)
      return FALSE;
  }
  return TRUE;
}

typedef struct {
  TrIngress *ingress;
  GHashTable *routes; /* owned until swapped */
  TrRpcStore *store;
  GArray *retire;     /* guint32 ids of removed services */
} RoutesRequest;

static void
routes_request_free (gpointer data)
{
  RoutesRequest *request = data;

  g_clear_pointer (&request->routes, g_hash_table_destroy);
  g_clear_pointer (&request->retire, g_array_unref);
  g_free (request);
}

static void
retire_services (TrRpcStore *store, const GArray *ids)
{
  for (guint i = 0; i < ids->len; i++)
    tr_rpcstore_retire_service (store, g_array_index (ids, guint32, i));
}

static void
on_set_routes (gpointer data)
{
  RoutesRequest *request = data;

  tr_ingress_set_routes (request->ingress, g_steal_pointer (&request->routes));
  /* Here, on the loop that commits, every RPC routed by the old table is
   * committed already: the removed services can let retention go past
   * their heads.  Done with the swap, so it happens even when the swap
   * runs after swap_routes() stopped waiting. */
  retire_services (request->store, request->retire);
}

/* Ids of the services @running has and @loaded has not. */
static GArray *
removed_service_ids (const TrConfig *running, const TrConfig *loaded, TrRpcStore *store)
{
  GArray *ids = g_array_new (FALSE, FALSE, sizeof (guint32));

  for (guint s = 0; s < running->services->len; s++) {
    const TrServiceConfig *service = g_ptr_array_index (running->services, s);
    gint id = tr_rpcstore_service_id (store, service->name);
    if (tr_config_lookup_service (loaded, service->name) == NULL && id >= 0) {
      guint32 value = (guint32) id;
      g_array_append_val (ids, value);
    }
  }
  return ids;
}

/* Swaps the routing table on the ingress loop, retires the removed
 * services there, and waits (bounded: during shutdown, or while the loop
 * waits on a slow disk, it may not run in time; the request then goes to
 * the late run, which is still complete and safe: tr_invoke_wait()).  FALSE
 * if it did not happen in time. */
static gboolean
swap_routes (const TrConfig *running, const TrReloadTargets *targets, const TrConfig *loaded)
{
  RoutesRequest *request;

  if (targets->ingress == NULL || targets->ingress_context == NULL) {
    /* No producers: nothing is routed, only the retirement is left. */
    g_autoptr (GArray) retire = removed_service_ids (running, loaded, targets->store);
    retire_services (targets->store, retire);
    return TRUE;
  }
  request = g_new0 (RoutesRequest, 1);
  request->ingress = targets->ingress;
  request->routes = tr_ingress_routes_new (targets->store, loaded);
  request->store = targets->store;
  request->retire = removed_service_ids (running, loaded, targets->store);
  if (!tr_invoke_wait (targets->ingress_context, G_PRIORITY_HIGH, on_set_routes, request, routes_request_free,
                       g_get_monotonic_time () + RELOAD_INGRESS_WAIT_US))
    return FALSE;
  routes_request_free (request);
  return TRUE;
}

static void
log_changes (const GPtrArray *changes, const char *path)
{
  for (guint i = 0; i < changes->len; i++)
    g_log_structured (G_LOG_DOMAIN, G_LOG_LEVEL_MESSAGE, "TR_FILE", path, "MESSAGE", "reload: %s",
                      (const char *) g_ptr_array_index (changes, i));
  g_log_structured (G_LOG_DOMAIN, G_LOG_LEVEL_MESSAGE, "TR_FILE", path, "MESSAGE",
                    "reload of %s done: %u change%s", path, changes->len, changes->len == 1 ? "" : "s");
}

TrConfig *
tr_reload_run (const TrConfig *running, const TrReloadTargets *targets, GPtrArray **changes_out, GError **error)
{
  g_autoptr (TrConfig) loaded = NULL;
  g_autoptr (GPtrArray) changes = NULL;

  g_return_val_if_fail (running != NULL && targets != NULL, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  loaded = tr_config_load (running->path, error);
  if (loaded == NULL || !tr_reload_check_router_keys (running, loaded, error))
    return NULL;
  changes = tr_reload_describe (running, loaded);
  if (!add_new_services (running, loaded, targets->store, error) || !tr_push_reload (targets->push, loaded, error))
    return NULL;
  if (running->min_free_bytes != loaded->min_free_bytes || running->min_free_percent != loaded->min_free_percent) {
    g_autofree char *old_limit = tr_config_format_min_free_space (running);
    g_autofree char *new_limit = tr_config_format_min_free_space (loaded);
    tr_rpcstore_set_min_free_space (targets->store, loaded->min_free_bytes, loaded->min_free_percent);
    note (changes, "min_free_space %s -> %s", old_limit, new_limit);
  }
  if (!swap_routes (running, targets, loaded))
    g_warning ("reload: the ingress loop did not take the new routing table within %d s (shutting down, or "
               "a slow disk holds the loop); it takes it, and retires removed services, when it runs again",
               (int) (RELOAD_INGRESS_WAIT_US / G_TIME_SPAN_SECOND));
  log_changes (changes, running->path);
  if (changes_out != NULL)
    *changes_out = g_steal_pointer (&changes);
  return g_steal_pointer (&loaded);
}
