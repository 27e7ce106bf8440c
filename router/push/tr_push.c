/* tr_push.c - push module life cycle: send state files, retention low-water
 * marks, the push thread, wake-ups and statistics.  What an endpoint
 * sends and what its replies mean is in tr_push_endpoint.c, its
 * connection state machine in tr_peer.c.
 *
 * Send state: one file per endpoint, DATA_DIR/state/<service>@<endpoint id>
 * (format and crash behaviour: storage/tr_positions.h).
 *
 * Written (without fsync) at most every state_flush_ms after acknowledgements
 * (0 = after every batch of replies), and written + synced in tr_push_free().
 * Not syncing while running is safe: a process crash keeps the page cache,
 * and after a power loss an older state only means duplicates (an endpoint
 * never sees a gap: the position only moves past acknowledged seqids).
 *
 * Missing state file at start-up: the endpoint starts after the first seqid
 * still stored for its service minus one, so nothing stored is skipped (an
 * endpoint added by a reload follows its `start` key: tr_push_reload.c).
 *
 * Retention: for every service the store's low-water mark is the minimum
 * over its endpoints (stopped ones included) of acked + 1 (no endpoint:
 * G_MAXUINT64, it needs nothing).  It is set at start and whenever that
 * minimum grows.
 *
 * Threads: tr_push_new() / tr_push_free() / tr_push_get_stats() on any
 * non-push thread, tr_push_wake() from any thread; everything else on the
 * push thread (its own GMainContext).
 */
#undef G_LOG_DOMAIN
#define G_LOG_DOMAIN "tr-push"

#include "tr_push_private.h"

#include "tr_invoke.h"
#include "tr_storage_error.h"

#include <glib/gstdio.h>
#include <unistd.h>

#define TR_PUSH_POLL_MS 1000
#define TR_PUSH_LINGER_MS 1
/* Batches at least this large make a push pass start with their fsync. */
#define TR_PUSH_EARLY_BATCH 16

const char *
tr_push_endpoint_state_to_string (TrPushEndpointState state)
{
  switch (state) {
  case TR_PUSH_STOPPED:
    return "STOPPED";
  case TR_PUSH_CONNECTING:
    return "CONNECTING";
  case TR_PUSH_SENDING:
    return "SENDING";
  case TR_PUSH_BACKOFF:
    return "BACKOFF";
  case TR_PUSH_BLOCKED:
    return "BLOCKED";
  }
  return "?";
}

void
tr_push__log (TrPushEndpoint *endpoint, GLogLevelFlags level, guint64 seqid, const char *format, ...)
{
  g_autofree char *message = NULL;
  char seqid_text[24];
  va_list args;

  va_start (args, format);
  message = g_strdup_vprintf (format, args);
  va_end (args);
  g_snprintf (seqid_text, sizeof seqid_text, "%" G_GUINT64_FORMAT, seqid);
  g_log_structured (G_LOG_DOMAIN, level, "TR_SERVICE", endpoint->service->name, "TR_ENDPOINT", endpoint->id,
                    "TR_SEQID", seqid_text, "MESSAGE", "%s/%s: %s", endpoint->service->name, endpoint->id,
                    message);
}

/* ---- send state ---- */

static gboolean
state_write (TrPushEndpoint *endpoint, GError **error)
{
  if (!tr_positions_endpoint_write (endpoint->state_file, endpoint->acked, error))
    return FALSE;
  endpoint->state_dirty = FALSE;
  return TRUE;
}

/* Opens the endpoint's state file and sets ->acked from it (or from the
 * first stored seqid when there is none). */
static gboolean
state_load (TrPush *push, TrPushEndpoint *endpoint, GError **error)
{
  g_autoptr (GError) local_error = NULL;
  guint32 service_id = endpoint->service->service_id;

  endpoint->state_file = tr_positions_open_endpoint (push->positions, endpoint->service->name, endpoint->id, error);
  if (endpoint->state_file == NULL)
    return FALSE;
  if (tr_positions_endpoint_load (endpoint->state_file, &endpoint->acked, &local_error))
    return TRUE;
  if (g_error_matches (local_error, TR_STORAGE_ERROR, TR_STORAGE_ERROR_NOT_FOUND)) {
    guint64 first = tr_rpcstore_service_first (push->store, service_id);
    endpoint->acked = first > 0 ? first - 1 : 0;
    endpoint->state_dirty = TRUE; /* no state on disk yet (tr_push__endpoint_new_loaded) */
    return TRUE;
  }
  g_propagate_error (error, g_steal_pointer (&local_error));
  return FALSE;
}

/* Clamps a position the store cannot serve (retention ran ahead, or the
 * store lost its tail) and says so. */
static void
check_position (TrPush *push, TrPushEndpoint *endpoint)
{
  guint32 service_id = endpoint->service->service_id;
  guint64 first = tr_rpcstore_service_first (push->store, service_id);
  guint64 head = tr_rpcstore_service_head (push->store, service_id);

  if (first > 0 && endpoint->acked + 1 < first) {
    tr_push__log (endpoint, G_LOG_LEVEL_WARNING, endpoint->acked,
                  "acknowledged seqid %" G_GUINT64_FORMAT " is before the first stored seqid %" G_GUINT64_FORMAT
                  "; resuming there",
                  endpoint->acked, first);
    endpoint->acked = first - 1;
    endpoint->state_dirty = TRUE;
  }
  if (endpoint->acked > head)
    tr_push__log (endpoint, G_LOG_LEVEL_WARNING, endpoint->acked,
                  "acknowledged seqid %" G_GUINT64_FORMAT " is beyond the service head %" G_GUINT64_FORMAT
                  "; waiting for the head to pass it",
                  endpoint->acked, head);
}

/* ---- retention ---- */

static void
update_low_water (TrPush *push, TrPushService *service, gboolean force)
{
  guint64 low = G_MAXUINT64;

  for (guint i = 0; i < service->endpoints->len; i++) {
    TrPushEndpoint *endpoint = g_ptr_array_index (service->endpoints, i);
    low = MIN (low, endpoint->acked + 1);
  }
  /* No endpoint: G_MAXUINT64, the service holds nothing back, not even the
   * RPCs it gets later (head + 1 here pinned every one after it). */
  if (force || low > service->low_water) {
    service->low_water = low;
    tr_rpcstore_set_low_water (push->store, service->service_id, low);
  }
}

void
tr_push__positions_moved (TrPush *push, TrPushService *service)
{
  update_low_water (push, service, TRUE);
}

/* ---- state flush ---- */

static void
flush_states (TrPush *push)
{
  for (guint s = 0; s < push->services->len; s++) {
    TrPushService *service = g_ptr_array_index (push->services, s);
    for (guint i = 0; i < service->endpoints->len; i++) {
      TrPushEndpoint *endpoint = g_ptr_array_index (service->endpoints, i);
      g_autoptr (GError) error = NULL;
      if (endpoint->state_dirty && !state_write (endpoint, &error))
        tr_push__log (endpoint, G_LOG_LEVEL_WARNING, endpoint->acked, "cannot record send state: %s",
                      error->message);
    }
  }
}

static gboolean
on_flush (gpointer user_data)
{
  TrPush *push = user_data;

  g_clear_pointer (&push->flush_source, g_source_unref);
  flush_states (push);
  return G_SOURCE_REMOVE;
}

void
tr_push__acked (TrPushEndpoint *endpoint)
{
  TrPush *push = endpoint->push;

  endpoint->state_dirty = TRUE;
  update_low_water (push, endpoint->service, FALSE);
  if (push->flush_source != NULL)
    return;
  /* state_flush_ms 0 still defers to an idle so one batch of replies costs
   * one write, not one per reply. */
  push->flush_source = push->state_flush_ms > 0 ? g_timeout_source_new (push->state_flush_ms) : g_idle_source_new ();
  g_source_set_callback (push->flush_source, on_flush, push, NULL);
  g_source_attach (push->flush_source, push->context);
}

/* ---- wake-ups ---- */

static void
fill_all (TrPush *push)
{
  for (guint s = 0; s < push->services->len; s++) {
    TrPushService *service = g_ptr_array_index (push->services, s);
    for (guint i = 0; i < service->endpoints->len; i++)
      tr_push__endpoint_fill (g_ptr_array_index (service->endpoints, i));
  }
}

static void
sample_rates (TrPush *push)
{
  gint64 now = g_get_monotonic_time ();

  for (guint s = 0; s < push->services->len; s++) {
    TrPushService *service = g_ptr_array_index (push->services, s);
    for (guint i = 0; i < service->endpoints->len; i++)
      tr_push__endpoint_sample_rate (g_ptr_array_index (service->endpoints, i), now);
  }
}

static gboolean
on_wake (gpointer user_data)
{
  TrPush *push = user_data;

  /* Clear first: a commit after this point queues a new wake. */
  g_atomic_int_set (&push->wake_pending, 0);
  fill_all (push);
  return G_SOURCE_REMOVE;
}

static gboolean
on_poll (gpointer user_data)
{
  tr_push__check_backlogs (user_data);
  fill_all (user_data);
  sample_rates (user_data);
  return G_SOURCE_CONTINUE;
}

static gboolean
on_early_wake (gpointer user_data)
{
  /* ->wake_pending stays set: the lingering pass still comes and finds
   * little left, and commits meanwhile need no timer of their own. */
  fill_all (user_data);
  return G_SOURCE_REMOVE;
}

/* A large batch is about to be fsynced (TR_RPC_NOTIFY_SYNCING): the
 * committing thread now waits for the disk, and the producers of the batch
 * wait for their answers, so the CPU is free.  Send what earlier commits
 * published (a lingering pass is pending for it) now rather than when the
 * linger ends, which tends to fall while the next batch is being read and
 * answered.  Small batches do not qualify: with 4 producers a pass per
 * commit costs more than it saves (docs/performance.md). */
static void
wake_early (TrPush *push, guint64 batch_len)
{
  GSource *source;

  if (batch_len < TR_PUSH_EARLY_BATCH || !g_atomic_int_get (&push->wake_pending))
    return;
  source = g_idle_source_new ();
  g_source_set_callback (source, on_early_wake, push, NULL);
  g_source_set_priority (source, G_PRIORITY_HIGH);
  g_source_attach (source, push->context);
  g_source_unref (source);
}

void
tr_push_on_store_event (gpointer push, TrRpcNotify what, guint64 value)
{
  g_return_if_fail (push != NULL);

  if (what == TR_RPC_NOTIFY_COMMITTED)
    tr_push_wake (push);
  else if (what == TR_RPC_NOTIFY_SYNCING)
    wake_early (push, value);
}

void
tr_push_wake (TrPush *push)
{
  g_return_if_fail (push != NULL);

  if (g_atomic_int_compare_and_exchange (&push->wake_pending, 0, 1)) {
    /* Linger: RPCs committed within the next TR_PUSH_LINGER_MS go out in
     * one pass (one send per endpoint), instead of one wake-up, one send
     * and one reply read per RPC per endpoint.  Costs at most that much
     * delivery latency; the producer's answer does not wait for it. */
    GSource *source = g_timeout_source_new (TR_PUSH_LINGER_MS);
    g_source_set_callback (source, on_wake, push, NULL);
    g_source_set_priority (source, G_PRIORITY_HIGH);
    g_source_attach (source, push->context);
    g_source_unref (source);
  }
}

/* ---- thread ---- */

static gpointer
push_thread (gpointer user_data)
{
  TrPush *push = user_data;

  g_main_context_push_thread_default (push->context);
  /* GIO registers a type on its first use, under g_once; two resolver
   * threads that both build the first addresses do it at once.  That is
   * safe, but the g_once fast path is inlined in Debian's uninstrumented
   * libgio, so ThreadSanitizer (tools/tsan.sh) reports a race in it.
   * Registering the address types here, before any lookup, keeps GIO's
   * own registration off the resolver threads. */
  g_type_ensure (G_TYPE_INET_ADDRESS);
  g_type_ensure (G_TYPE_INET_SOCKET_ADDRESS);
  for (guint s = 0; s < push->services->len; s++) {
    TrPushService *service = g_ptr_array_index (push->services, s);
    for (guint i = 0; i < service->endpoints->len; i++)
      tr_push__endpoint_start (g_ptr_array_index (service->endpoints, i));
  }
  g_main_loop_run (push->loop);
  g_main_context_pop_thread_default (push->context);
  return NULL;
}

/* ---- construction ---- */

static TrPushEndpoint *
endpoint_new (TrPush *push, TrPushService *service, const TrEndpointConfig *config)
{
  TrPushEndpoint *endpoint = g_new0 (TrPushEndpoint, 1);

  endpoint->push = push;
  endpoint->service = service;
  endpoint->id = g_strdup (config->id);
  endpoint->host = g_strdup (config->host);
  endpoint->port = config->port;
  endpoint->stopped = config->stop_send;
  endpoint->peer = tr_push__endpoint_peer_new (endpoint, config->host, config->port);
  endpoint->fail_log = tr_net_log_limit_new (G_LOG_DOMAIN, TR_PUSH_FAIL_LOG_INTERVAL_US);
  tr_histogram_init (&endpoint->delivery_latency, tr_histogram_bounds_delivery_us,
                     G_N_ELEMENTS (tr_histogram_bounds_delivery_us));
  if (config->max_connection > 1)
    g_message ("%s/%s: max_connection = %u accepted, but one connection is used so that the endpoint "
               "receives its RPCs in order",
               service->name, endpoint->id, config->max_connection);
  return endpoint;
}

static void
endpoint_free (gpointer data)
{
  TrPushEndpoint *endpoint = data;

  tr_peer_free (endpoint->peer);
  tr_net_log_limit_free (endpoint->fail_log);
  tr_positions_endpoint_free (endpoint->state_file);
  g_free (endpoint->id);
  g_free (endpoint->host);
  g_free (endpoint);
}

static void
service_free (gpointer data)
{
  TrPushService *service = data;

  g_ptr_array_unref (service->endpoints);
  g_free (service->name);
  g_free (service->barrier_method);
  g_free (service);
}

void
tr_push__service_configure (TrPushService *service, const TrServiceConfig *config)
{
  service->max_inflight = MAX (config->max_inflight, 1);
  service->on_failure = config->on_failure;
  service->max_retries = config->max_retries;
  service->retry_backoff_ms = MAX (config->retry_backoff_ms, 1);
  service->retry_backoff_max_ms = MAX (config->retry_backoff_max_ms, service->retry_backoff_ms);
  service->connect_timeout_ms = config->connect_timeout_ms;
  service->socket_timeout_ms = config->socket_timeout_ms;
  service->oneway_barrier = config->oneway_barrier;
  g_free (service->barrier_method);
  service->barrier_method = g_strdup (config->barrier_method);
  service->limits.max_bytes = config->max_backlog_bytes;
  service->limits.max_age_us = (gint64) config->max_backlog_age_s * G_TIME_SPAN_SECOND;
  for (guint i = 0; service->endpoints != NULL && i < service->endpoints->len; i++)
    tr_push__endpoint_configure (g_ptr_array_index (service->endpoints, i));
}

static TrPushService *
service_new (TrPush *push, const TrServiceConfig *config, GError **error)
{
  TrPushService *service;
  gint service_id = tr_rpcstore_service_id (push->store, config->name);

  if (service_id < 0) {
    g_set_error (error, TR_STORAGE_ERROR, TR_STORAGE_ERROR_NOT_FOUND, "service '%s' is not known to the store",
                 config->name);
    return NULL;
  }
  service = g_new0 (TrPushService, 1);
  service->name = g_strdup (config->name);
  service->service_id = (guint32) service_id;
  tr_push__service_configure (service, config);
  service->endpoints = g_ptr_array_new_with_free_func (endpoint_free);
  for (guint i = 0; i < config->endpoints->len; i++) {
    TrPushEndpoint *endpoint = endpoint_new (push, service, g_ptr_array_index (config->endpoints, i));
    g_ptr_array_add (service->endpoints, endpoint);
    if (!state_load (push, endpoint, error)) {
      service_free (service);
      return NULL;
    }
    check_position (push, endpoint);
    endpoint->next_seqid = endpoint->acked + 1;
  }
  return service;
}

static void
push_free_unstarted (TrPush *push)
{
  g_ptr_array_unref (push->services);
  g_main_loop_unref (push->loop);
  g_main_context_unref (push->context);
  tr_positions_free (push->positions);
  g_free (push);
}

TrPush *
tr_push_new (TrRpcStore *store, const TrConfig *config, GError **error)
{
  TrPush *push;

  g_return_val_if_fail (store != NULL, NULL);
  g_return_val_if_fail (config != NULL, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  push = g_new0 (TrPush, 1);
  push->store = store;
  push->state_flush_ms = config->state_flush_ms;
  push->services = g_ptr_array_new_with_free_func (service_free);
  push->context = g_main_context_new ();
  push->loop = g_main_loop_new (push->context, FALSE);
  push->positions = tr_positions_open (tr_io_posix (), config->data_dir, error);
  if (push->positions == NULL) {
    push_free_unstarted (push);
    return NULL;
  }
  for (guint s = 0; s < config->services->len; s++) {
    TrPushService *service = service_new (push, g_ptr_array_index (config->services, s), error);
    if (service == NULL) {
      push_free_unstarted (push);
      return NULL;
    }
    g_ptr_array_add (push->services, service);
    update_low_water (push, service, TRUE);
    for (guint i = 0; i < service->endpoints->len; i++) {
      TrPushEndpoint *endpoint = g_ptr_array_index (service->endpoints, i);
      tr_peer_attach (endpoint->peer, push->context);
    }
  }
  push->poll_source = g_timeout_source_new (TR_PUSH_POLL_MS);
  g_source_set_callback (push->poll_source, on_poll, push, NULL);
  g_source_attach (push->poll_source, push->context);
  push->thread = g_thread_new ("tr-push", push_thread, push);
  return push;
}

void
tr_push_free (TrPush *push)
{
  if (push == NULL)
    return;
  tr_invoke_stop_loop (push->context, push->loop, push->thread);

  /* The push thread is gone: its state is ours now. */
  if (push->flush_source != NULL) {
    g_source_destroy (push->flush_source);
    g_clear_pointer (&push->flush_source, g_source_unref);
  }
  g_source_destroy (push->poll_source);
  g_source_unref (push->poll_source);
  for (guint s = 0; s < push->services->len; s++) {
    TrPushService *service = g_ptr_array_index (push->services, s);
    for (guint i = 0; i < service->endpoints->len; i++) {
      TrPushEndpoint *endpoint = g_ptr_array_index (service->endpoints, i);
      g_autoptr (GError) error = NULL;
      tr_peer_stop (endpoint->peer);
      if (!state_write (endpoint, &error) || !tr_positions_endpoint_sync (endpoint->state_file, &error))
        tr_push__log (endpoint, G_LOG_LEVEL_WARNING, endpoint->acked,
                      "cannot record send state at shutdown (it will resend from an older position): %s",
                      error->message);
    }
  }
  push_free_unstarted (push);
}

/* ---- statistics ---- */

/* ---- calls run on the push thread ---- */

void
tr_push__run_sync (TrPush *push, void (*func) (gpointer data), gpointer data)
{
  /* No limit: the push thread never blocks for long, and @data is often
   * on the caller's stack. */
  tr_invoke_wait (push->context, G_PRIORITY_DEFAULT, func, data, NULL, G_MAXINT64);
}

typedef struct {
  TrPush *push;
  GArray *stats;
} StatsRequest;

static void
stats_clear (gpointer data)
{
  TrPushEndpointStats *stats = data;

  g_free (stats->service);
  g_free (stats->endpoint);
  g_free (stats->last_error);
}

static void
collect_stats (gpointer user_data)
{
  StatsRequest *request = user_data;
  TrPush *push = request->push;
  gint64 now = g_get_monotonic_time ();

  for (guint s = 0; s < push->services->len; s++) {
    TrPushService *service = g_ptr_array_index (push->services, s);
    guint64 head = tr_rpcstore_service_head (push->store, service->service_id);
    for (guint i = 0; i < service->endpoints->len; i++) {
      TrPushEndpoint *endpoint = g_ptr_array_index (service->endpoints, i);
      TrPushEndpointStats stats = { 0 };
      stats.service = g_strdup (service->name);
      stats.endpoint = g_strdup (endpoint->id);
      stats.state = tr_push__endpoint_state (endpoint);
      stats.acked = endpoint->acked;
      stats.head = head;
      stats.retries = tr_peer_get_retries (endpoint->peer);
      stats.last_error = g_strdup (tr_peer_get_last_error (endpoint->peer));
      stats.delivered = endpoint->delivered;
      stats.rpcs_out_per_sec = tr_push__endpoint_rate (endpoint, now);
      stats.expired = endpoint->expired;
      if (stats.state == TR_PUSH_BLOCKED) {
        stats.blocked_seqid = endpoint->rpc_fail_seqid;
        stats.blocked_rpc_id = endpoint->rpc_fail_rpc_id;
      }
      stats.last_error_time = endpoint->last_error_time;
      stats.last_error_resolved = endpoint->last_error_resolved;
      stats.failures = endpoint->failures;
      stats.dead_letters = endpoint->dead_letters;
      tr_histogram_snapshot (&endpoint->delivery_latency, &stats.delivery_latency);
      g_array_append_val (request->stats, stats);
    }
  }
}

GArray *
tr_push_get_stats (TrPush *push)
{
  StatsRequest request = { 0 };

  g_return_val_if_fail (push != NULL, NULL);

  request.push = push;
  request.stats = g_array_new (FALSE, TRUE, sizeof (TrPushEndpointStats));
  g_array_set_clear_func (request.stats, stats_clear);
  tr_push__run_sync (push, collect_stats, &request);
  return request.stats;
}

gint64
tr_push_endpoint_lag_bytes (TrRpcStore *store, const TrPushEndpointStats *stats)
{
  gint id;
  guint64 first_seqid, first_rpc, head_rpc, first_offset, head_offset;
  guint32 first_len, head_len;

  g_return_val_if_fail (store != NULL && stats != NULL, -1);

  id = tr_rpcstore_service_id (store, stats->service);
  if (id < 0 || stats->acked >= stats->head)
    return 0;
  first_seqid = MAX (stats->acked + 1, tr_rpcstore_service_first (store, (guint32) id));
  if (!tr_rpcstore_service_lookup (store, (guint32) id, first_seqid, &first_rpc, NULL)
      || !tr_rpcstore_service_lookup (store, (guint32) id, stats->head, &head_rpc, NULL)
      || !tr_rpcstore_locate (store, first_rpc, &first_offset, &first_len, NULL)
      || !tr_rpcstore_locate (store, head_rpc, &head_offset, &head_len, NULL)
      || head_offset + head_len < first_offset)
    return -1;
  return (gint64) (head_offset + head_len - first_offset);
}

/* ---- pieces for a configuration reload (tr_push_reload.c) ---- */

TrPushEndpoint *
tr_push__endpoint_new_loaded (TrPush *push, TrPushService *service, const TrEndpointConfig *config,
                              gboolean use_start, GError **error)
{
  TrPushEndpoint *endpoint = endpoint_new (push, service, config);

  if (!state_load (push, endpoint, error)) {
    endpoint_free (endpoint);
    return NULL;
  }
  if (use_start && endpoint->state_dirty && config->start == TR_START_HEAD)
    endpoint->acked = tr_rpcstore_service_head (push->store, service->service_id);
  check_position (push, endpoint);
  endpoint->next_seqid = endpoint->acked + 1;
  return endpoint;
}

void
tr_push__endpoint_free (TrPushEndpoint *endpoint)
{
  endpoint_free (endpoint);
}

void
tr_push__service_free (TrPushService *service)
{
  service_free (service);
}

void
tr_push__endpoint_save (TrPushEndpoint *endpoint)
{
  g_autoptr (GError) error = NULL;

  tr_peer_stop (endpoint->peer);
  if (!state_write (endpoint, &error) || !tr_positions_endpoint_sync (endpoint->state_file, &error))
    tr_push__log (endpoint, G_LOG_LEVEL_WARNING, endpoint->acked,
                  "cannot record send state (it will resend from an older position if added again): %s",
                  error->message);
}
