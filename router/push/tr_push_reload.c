/* tr_push_reload.c - applying a reloaded configuration to the push side
 * (tr_push_reload(), called by tr_reload.c).
 *
 * Runs on the push thread (tr_push__run_sync(), as in tr_push_control.c)
 * in two phases, so that a failure changes nothing:
 *
 *   prepare: every endpoint the new configuration adds (to a running or to
 *            a new service) is created and its send state loaded; a state
 *            file that cannot be read fails the whole reload;
 *   apply:   removed services and endpoints write their send state and are
 *            dropped (their files stay), settings are copied, changed
 *            endpoints reconnect, stop_send follows the file, prepared
 *            endpoints are attached and started, and the services and
 *            endpoints are put in configuration order.
 *
 * Untouched endpoints keep their connection, what is in flight and their
 * position.  An endpoint whose host or port changed is reconnected from
 * its first unacknowledged seqid (duplicates possible, no gap).  Changing
 * oneway_barrier or barrier_method reconnects every endpoint of the service
 * (what is in flight was sent under the old rule).  A removed service no
 * longer holds retention back (its low-water mark goes past its head).
 */
#undef G_LOG_DOMAIN
#define G_LOG_DOMAIN "tr-push"

#include "tr_push_private.h"

#include "tr_storage_error.h"

#include <string.h>

typedef struct {
  TrPush *push;
  const TrConfig *config;
  GPtrArray *new_services;  /* (element-type TrPushService) owned until applied */
  GPtrArray *new_endpoints; /* (element-type TrPushEndpoint) added to running services */
  gboolean ok;
  GError *error;
} ReloadRequest;

static TrPushService *
find_service (TrPush *push, const char *name)
{
  for (guint s = 0; s < push->services->len; s++) {
    TrPushService *service = g_ptr_array_index (push->services, s);
    if (strcmp (service->name, name) == 0)
      return service;
  }
  return NULL;
}

static TrPushEndpoint *
find_endpoint (TrPushService *service, const char *id)
{
  for (guint i = 0; i < service->endpoints->len; i++) {
    TrPushEndpoint *endpoint = g_ptr_array_index (service->endpoints, i);
    if (strcmp (endpoint->id, id) == 0)
      return endpoint;
  }
  return NULL;
}

/* Copies the service-wide settings; TRUE if the oneway rule changed. */
static gboolean
apply_settings (TrPushService *service, const TrServiceConfig *config)
{
  gboolean barrier_changed = service->barrier_method != NULL
                             && (service->oneway_barrier != config->oneway_barrier
                                 || strcmp (service->barrier_method, config->barrier_method) != 0);

  tr_push__service_configure (service, config);
  return barrier_changed;
}

static void
service_free (gpointer data)
{
  tr_push__service_free (data);
}

static void
endpoint_free (gpointer data)
{
  tr_push__endpoint_free (data);
}

/* ---- prepare ---- */

static TrPushService *
prepare_service (TrPush *push, const TrServiceConfig *config, GError **error)
{
  gint service_id = tr_rpcstore_service_id (push->store, config->name);
  TrPushService *service;

  if (service_id < 0) {
    g_set_error (error, TR_STORAGE_ERROR, TR_STORAGE_ERROR_NOT_FOUND, "service '%s' is not known to the store",
                 config->name);
    return NULL;
  }
  service = g_new0 (TrPushService, 1);
  service->name = g_strdup (config->name);
  service->service_id = (guint32) service_id;
  service->endpoints = g_ptr_array_new_with_free_func (endpoint_free);
  apply_settings (service, config);
  for (guint i = 0; i < config->endpoints->len; i++) {
    TrPushEndpoint *endpoint = tr_push__endpoint_new_loaded (push, service, g_ptr_array_index (config->endpoints, i),
                                                             TRUE, error);
    if (endpoint == NULL) {
      service_free (service);
      return NULL;
    }
    g_ptr_array_add (service->endpoints, endpoint);
  }
  return service;
}

static gboolean
prepare (ReloadRequest *request, GError **error)
{
  for (guint s = 0; s < request->config->services->len; s++) {
    const TrServiceConfig *config = g_ptr_array_index (request->config->services, s);
    TrPushService *service = find_service (request->push, config->name);
    if (service == NULL) {
      service = prepare_service (request->push, config, error);
      if (service == NULL)
        return FALSE;
      g_ptr_array_add (request->new_services, service);
      continue;
    }
    for (guint i = 0; i < config->endpoints->len; i++) {
      const TrEndpointConfig *endpoint_config = g_ptr_array_index (config->endpoints, i);
      TrPushEndpoint *endpoint;
      if (find_endpoint (service, endpoint_config->id) != NULL)
        continue;
      endpoint = tr_push__endpoint_new_loaded (request->push, service, endpoint_config, TRUE, error);
      if (endpoint == NULL)
        return FALSE;
      g_ptr_array_add (request->new_endpoints, endpoint);
    }
  }
  return TRUE;
}

/* ---- apply ---- */

static void
start_endpoint (TrPushEndpoint *endpoint)
{
  tr_peer_attach (endpoint->peer, endpoint->push->context);
  tr_push__endpoint_start (endpoint);
}

static void
remove_services (TrPush *push, const TrConfig *config)
{
  for (guint s = push->services->len; s-- > 0;) {
    TrPushService *service = g_ptr_array_index (push->services, s);
    if (tr_config_lookup_service (config, service->name) != NULL)
      continue;
    for (guint i = 0; i < service->endpoints->len; i++)
      tr_push__endpoint_save (g_ptr_array_index (service->endpoints, i));
    /* Nothing is routed to it any more: let retention go past it. */
    g_ptr_array_set_size (service->endpoints, 0);
    tr_push__positions_moved (push, service);
    g_ptr_array_remove_index (push->services, s);
  }
}

/* Endpoint in both: host/port and stop_send follow the file. */
static void
update_endpoint (TrPushEndpoint *endpoint, const TrEndpointConfig *config, gboolean reconnect)
{
  gboolean moved = strcmp (endpoint->host, config->host) != 0 || endpoint->port != config->port;

  if (moved) {
    g_free (endpoint->host);
    endpoint->host = g_strdup (config->host);
    endpoint->port = config->port;
    tr_peer_set_address (endpoint->peer, config->host, config->port);
  }
  if (config->stop_send != endpoint->stopped) {
    tr_push__endpoint_set_stop_send (endpoint, config->stop_send);
    return;
  }
  if ((moved || reconnect) && !endpoint->stopped) {
    tr_push__endpoint_disconnect (endpoint);
    tr_push__endpoint_start (endpoint);
  }
}

static void
update_service (TrPushService *service, const TrServiceConfig *config)
{
  gboolean reconnect = apply_settings (service, config);

  for (guint i = service->endpoints->len; i-- > 0;) {
    TrPushEndpoint *endpoint = g_ptr_array_index (service->endpoints, i);
    const TrEndpointConfig *endpoint_config = tr_config_lookup_endpoint (config, endpoint->id);
    if (endpoint_config != NULL) {
      update_endpoint (endpoint, endpoint_config, reconnect);
      continue;
    }
    tr_push__endpoint_save (endpoint);
    g_ptr_array_remove_index (service->endpoints, i);
  }
}

static gint
config_index (const TrConfig *config, const char *service_name)
{
  for (guint s = 0; s < config->services->len; s++)
    if (strcmp (((TrServiceConfig *) g_ptr_array_index (config->services, s))->name, service_name) == 0)
      return (gint) s;
  return G_MAXINT;
}

static gint
compare_services (gconstpointer a, gconstpointer b, gpointer user_data)
{
  const TrPushService *sa = *(TrPushService *const *) a, *sb = *(TrPushService *const *) b;

  return config_index (user_data, sa->name) - config_index (user_data, sb->name);
}

static gint
endpoint_index (const TrServiceConfig *config, const char *id)
{
  for (guint i = 0; i < config->endpoints->len; i++)
    if (strcmp (((TrEndpointConfig *) g_ptr_array_index (config->endpoints, i))->id, id) == 0)
      return (gint) i;
  return G_MAXINT;
}

static gint
compare_endpoints (gconstpointer a, gconstpointer b, gpointer user_data)
{
  const TrPushEndpoint *ea = *(TrPushEndpoint *const *) a, *eb = *(TrPushEndpoint *const *) b;

  return endpoint_index (user_data, ea->id) - endpoint_index (user_data, eb->id);
}

/* Configuration order for stats; low-water marks recomputed. */
static void
reorder (TrPush *push, const TrConfig *config)
{
  g_ptr_array_sort_with_data (push->services, compare_services, (gpointer) config);
  for (guint s = 0; s < push->services->len; s++) {
    TrPushService *service = g_ptr_array_index (push->services, s);
    g_ptr_array_sort_with_data (service->endpoints, compare_endpoints,
                                tr_config_lookup_service (config, service->name));
    tr_push__positions_moved (push, service);
  }
}

static void
apply (ReloadRequest *request)
{
  TrPush *push = request->push;

  remove_services (push, request->config);
  for (guint s = 0; s < push->services->len; s++) {
    TrPushService *service = g_ptr_array_index (push->services, s);
    update_service (service, tr_config_lookup_service (request->config, service->name));
  }
  for (guint i = 0; i < request->new_endpoints->len; i++) {
    TrPushEndpoint *endpoint = g_ptr_array_index (request->new_endpoints, i);
    g_ptr_array_add (endpoint->service->endpoints, endpoint);
    start_endpoint (endpoint);
  }
  g_ptr_array_set_free_func (request->new_endpoints, NULL);
  for (guint s = 0; s < request->new_services->len; s++) {
    TrPushService *service = g_ptr_array_index (request->new_services, s);
    g_ptr_array_add (push->services, service);
    for (guint i = 0; i < service->endpoints->len; i++)
      start_endpoint (g_ptr_array_index (service->endpoints, i));
  }
  g_ptr_array_set_free_func (request->new_services, NULL);
  reorder (push, request->config);
}

static void
on_reload (gpointer user_data)
{
  ReloadRequest *request = user_data;

  request->ok = prepare (request, &request->error);
  if (request->ok)
    apply (request);
}

gboolean
tr_push_reload (TrPush *push, const TrConfig *config, GError **error)
{
  ReloadRequest request = { 0 };

  g_return_val_if_fail (push != NULL && config != NULL, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  request.push = push;
  request.config = config;
  request.new_services = g_ptr_array_new_with_free_func (service_free);
  request.new_endpoints = g_ptr_array_new_with_free_func (endpoint_free);
  tr_push__run_sync (push, on_reload, &request);
  g_ptr_array_unref (request.new_services);
  g_ptr_array_unref (request.new_endpoints);
  if (!request.ok) {
    g_propagate_error (error, request.error);
    return FALSE;
  }
  return TRUE;
}
