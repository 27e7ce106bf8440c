/* tr_metrics.c - the /metrics endpoint: a SoupServer on the metrics
 * thread's own GMainContext, and the scrape (see tr_metrics.h; the metric
 * list is in docs/operations.md "Metrics", keep both in step).
 *
 * A scrape writes every family with all its samples together (the text
 * format wants them so), endpoint families one endpoint after the other.
 * Counters that are "since the node started" restart at 0 with the
 * process, and an endpoint's counters also when a reload adds it again:
 * Prometheus' rate() and increase() take such resets into account.
 */
#undef G_LOG_DOMAIN
#define G_LOG_DOMAIN "tr-metrics"

#include "tr_metrics.h"

#include "tr_invoke.h"
#include "tr_metrics_text.h"
#include "tr_net.h"
#include "tr_node.h"

#include <errno.h>
#include <gio/gio.h>
#include <glib-unix.h>
#include <libsoup/soup.h>
#include <string.h>
#include <sys/statvfs.h>
#include <unistd.h>

#define METRICS_LISTEN_BACKLOG 16
/* Scraper connections open at once; more are closed as they arrive.  Every
 * connection is a descriptor of the process, the same budget producers'
 * connections come from: a client opening connections without end may
 * keep Prometheus out, never a producer. */
#define METRICS_MAX_CONNECTIONS 32
#define METRICS_LOG_INTERVAL_US (10 * G_TIME_SPAN_SECOND)
#define METRICS_INGRESS_WAIT_US (2 * G_TIME_SPAN_SECOND)
#define METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"
/* Scrapes closer together than this get the last text again: however fast
 * a client asks, the ingress loop and the push thread answer at most 5
 * snapshot requests a second (Prometheus scrapes every few seconds). */
#define METRICS_MIN_COLLECT_INTERVAL_US (200 * G_TIME_SPAN_MILLISECOND)
#define MICROSECONDS 6 /* decimals: a value in microseconds written as seconds */

struct _TrMetrics {
  TrRpcStore *store;
  TrPush *push;                  /* (nullable) */
  TrIngress *ingress;            /* (nullable) */
  GMainContext *ingress_context;
  TrServerType role;
  guint64 epoch;
  char *server_id;
  char *data_dir;
  gint64 start_real_us;
  gint64 start_monotonic_us;
  guint16 port;
  GMainContext *context;         /* the metrics thread's */
  GMainLoop *loop;
  GThread *thread;
  int listen_fd;
  GSource *listen_source;        /* on ->context: accepts, hands connections to ->server */
  guint *connections;            /* (g_rc_box) connections ->server holds; each holds a reference, so
                                  * that one let go after tr_metrics_free() touches no freed memory;
                                  * counted on the metrics thread (and in tr_metrics_free()) */
  TrNetLogLimit *log_limit;      /* metrics thread */
  SoupServer *server;            /* metrics thread only, after tr_metrics_new() */
  GBytes *last_text;             /* (nullable) metrics thread: the last scrape's text */
  gint64 last_collect_us;        /* metrics thread: monotonic time of that scrape */
};

/* ---- node, producers, store ---- */

static void
write_node (TrMetrics *metrics, GString *out)
{
  static const TrServerType roles[] = { TR_SERVER_MASTER, TR_SERVER_BACKUP, TR_SERVER_REPLY };
  const char *build[] = { "version", TR_VERSION, NULL };
  gint64 now = g_get_monotonic_time ();

  tr_metrics_text_family (out, "thriftrouter_build_info", "gauge", "Always 1; the version is a label.");
  tr_metrics_text_sample_u64 (out, "thriftrouter_build_info", build, 1);
  tr_metrics_text_family (out, "thriftrouter_node_role", "gauge",
                          "1 for the role this node runs as (node.meta), 0 for the others.");
  for (guint i = 0; i < G_N_ELEMENTS (roles); i++) {
    const char *labels[] = { "server_id", metrics->server_id, "role", tr_node_role_to_string (roles[i]), NULL };
    tr_metrics_text_sample_u64 (out, "thriftrouter_node_role", labels, roles[i] == metrics->role);
  }
  tr_metrics_text_family (out, "thriftrouter_node_epoch", "gauge", "Master term this node last knew (node.meta).");
  tr_metrics_text_sample_u64 (out, "thriftrouter_node_epoch", NULL, metrics->epoch);
  tr_metrics_text_family (out, "thriftrouter_start_time_seconds", "gauge",
                          "Unix time the node started, in seconds.");
  tr_metrics_text_sample_fixed (out, "thriftrouter_start_time_seconds", NULL, metrics->start_real_us, MICROSECONDS);
  tr_metrics_text_family (out, "thriftrouter_uptime_seconds", "gauge", "Seconds since the node started.");
  tr_metrics_text_sample_fixed (out, "thriftrouter_uptime_seconds", NULL, now - metrics->start_monotonic_us, MICROSECONDS);
}

/* One family with one unlabelled sample. */
static void
write_one (GString *out, const char *name, const char *type, const char *help, guint64 value)
{
  tr_metrics_text_family (out, name, type, help);
  tr_metrics_text_sample_u64 (out, name, NULL, value);
}

static void
write_producers (GString *out, const TrIngressStats *in)
{
  static const char *const reasons[] = { "unknown_method", "bad_frame", "commit_failed" };
  const guint64 counts[] = { in->unknown_rpcs, in->bad_frames, in->commit_errors };

  write_one (out, "thriftrouter_producer_connections", "gauge", "Open producer connections.", in->connections);
  write_one (out, "thriftrouter_producer_connections_accepted_total", "counter",
             "Producer connections accepted since the node started.", in->accepted);
  write_one (out, "thriftrouter_producer_connections_refused_total", "counter",
             "Producer connections refused because max_connections were open.", in->refused);
  write_one (out, "thriftrouter_rpcs_received_total", "counter",
             "RPCs received from producers and submitted to the store.", in->rpcs_in);
  write_one (out, "thriftrouter_rpcs_committed_total", "counter",
             "RPCs committed to the store and acknowledged to their producer.", in->rpcs_committed);
  tr_metrics_text_family (out, "thriftrouter_rpcs_refused_total", "counter",
                          "Producer input refused, by reason: unknown_method (no service subscribes to the rpc), "
                          "bad_frame (malformed input), commit_failed (answered INTERNAL_ERROR: the store "
                          "could not commit).");
  for (guint i = 0; i < G_N_ELEMENTS (reasons); i++) {
    const char *labels[] = { "reason", reasons[i], NULL };
    tr_metrics_text_sample_u64 (out, "thriftrouter_rpcs_refused_total", labels, counts[i]);
  }
}

static void
write_store (GString *out, const TrRpcStoreStats *store)
{
  write_one (out, "thriftrouter_store_head_rpc_id", "gauge", "Global rpc id of the newest committed RPC.",
             store->head_rpc_id);
  write_one (out, "thriftrouter_store_first_rpc_id", "gauge", "Oldest global rpc id still on disk.",
             store->first_rpc_id);
  write_one (out, "thriftrouter_store_bytes", "gauge", "Bytes of the data files on disk.", store->data_bytes);
  write_one (out, "thriftrouter_store_parts", "gauge", "Parts of the data file on disk.", store->data_parts);
  write_one (out, "thriftrouter_store_commits_total", "counter", "Group commits (batches) since the node started.",
             store->batches);
  write_one (out, "thriftrouter_store_commit_errors_total", "counter",
             "RPCs whose commit failed (write or fdatasync error) since the node started.", store->commit_errors);
  tr_metrics_text_family (out, "thriftrouter_commit_latency_seconds", "histogram",
                          "Seconds from an RPC's submission to its commit (durable as sync_mode promises).");
  tr_metrics_text_histogram (out, "thriftrouter_commit_latency_seconds", NULL, &store->commit_latency, MICROSECONDS);
  tr_metrics_text_family (out, "thriftrouter_commit_batch_rpcs", "histogram", "RPCs per group commit.");
  tr_metrics_text_histogram (out, "thriftrouter_commit_batch_rpcs", NULL, &store->batch_size, 0);
  tr_metrics_text_family (out, "thriftrouter_store_fdatasync_seconds", "histogram",
                          "Seconds per fdatasync of the data file for commits or the interval sync.");
  tr_metrics_text_histogram (out, "thriftrouter_store_fdatasync_seconds", NULL, &store->fsync_latency, MICROSECONDS);
  write_one (out, "thriftrouter_cache_hits_total", "counter", "Stored RPCs read from the RPC cache.",
             store->reads_from_cache);
  write_one (out, "thriftrouter_cache_misses_total", "counter", "Stored RPCs read from disk (not in the cache).",
             store->reads_from_disk);
  write_one (out, "thriftrouter_cache_rpcs", "gauge", "RPCs in the cache.", store->cache_rpcs);
  write_one (out, "thriftrouter_cache_bytes", "gauge", "Bytes the cached RPCs count against the cache limit.",
             store->cache_bytes);
  write_one (out, "thriftrouter_cache_limit_bytes", "gauge", "The cache limit (rpc_cache_size minus its index).",
             store->cache_limit);
}

/* The file system holding data_dir, for the disk-full alert; left out if
 * statvfs() fails. */
static void
write_filesystem (TrMetrics *metrics, GString *out)
{
  struct statvfs fs;

  if (statvfs (metrics->data_dir, &fs) < 0) {
    g_debug ("statvfs %s: %s", metrics->data_dir, g_strerror (errno));
    return;
  }
  write_one (out, "thriftrouter_store_filesystem_avail_bytes", "gauge",
             "Bytes available to the router on the file system of data_dir.",
             (guint64) fs.f_bavail * (guint64) fs.f_frsize);
  write_one (out, "thriftrouter_store_filesystem_size_bytes", "gauge", "Size of the file system of data_dir.",
             (guint64) fs.f_blocks * (guint64) fs.f_frsize);
}

/* ---- endpoints ---- */

typedef enum {
  EP_ACKED,
  EP_HEAD,
  EP_LAG,
  EP_RETRIES,
  EP_FAILURES,
  EP_DEAD_LETTERS,
  EP_DELIVERED,
  EP_EXPIRED,
} EndpointValue;

static const struct {
  const char *name, *type, *help;
} endpoint_families[] = {
  [EP_ACKED] = { "thriftrouter_endpoint_acked_seqid", "gauge", "Last service seqid the endpoint acknowledged." },
  [EP_HEAD] = { "thriftrouter_endpoint_head_seqid", "gauge", "Newest service seqid (the service head)." },
  [EP_LAG] = { "thriftrouter_endpoint_lag_rpcs", "gauge", "RPCs committed and not yet acknowledged (head - acked)." },
  [EP_RETRIES] = { "thriftrouter_endpoint_retries", "gauge", "Consecutive failures so far (0 once it delivers)." },
  [EP_FAILURES] = { "thriftrouter_endpoint_failures_total", "counter",
                    "Connection and RPC failures that made the endpoint back off." },
  [EP_DEAD_LETTERS] = { "thriftrouter_endpoint_dead_letters_total", "counter",
                        "Seqids skipped into the dead-letter list (on_failure = skip)." },
  [EP_DELIVERED] = { "thriftrouter_endpoint_delivered_total", "counter",
                     "RPCs the endpoint acknowledged (redeliveries after a rewind count again)." },
  [EP_EXPIRED] = { "thriftrouter_endpoint_expired_rpcs_total", "counter",
                   "RPCs never delivered because the backlog went over max_backlog_bytes or max_backlog_age "
                   "(each range is a dead letter)." },
};

static guint64
endpoint_value (const TrPushEndpointStats *e, EndpointValue which)
{
  switch (which) {
  case EP_ACKED:
    return e->acked;
  case EP_HEAD:
    return e->head;
  case EP_LAG:
    return e->head > e->acked ? e->head - e->acked : 0;
  case EP_RETRIES:
    return e->retries;
  case EP_FAILURES:
    return e->failures;
  case EP_DEAD_LETTERS:
    return e->dead_letters;
  case EP_DELIVERED:
    return e->delivered;
  case EP_EXPIRED:
    return e->expired;
  }
  g_assert_not_reached ();
  return 0;
}

#define ENDPOINT_LABELS(e) { "service", (e)->service, "endpoint", (e)->endpoint, NULL }

static void
write_endpoint_states (GString *out, GArray *endpoints)
{
  tr_metrics_text_family (out, "thriftrouter_endpoint_state", "gauge",
                          "1 for the endpoint's state (as tr-admin endpoints shows it), 0 for the others.");
  for (guint i = 0; i < endpoints->len; i++) {
    const TrPushEndpointStats *e = &g_array_index (endpoints, TrPushEndpointStats, i);
    for (TrPushEndpointState s = TR_PUSH_STOPPED; s <= TR_PUSH_BLOCKED; s++) {
      const char *labels[] = { "service", e->service, "endpoint", e->endpoint, "state",
                               tr_push_endpoint_state_to_string (s), NULL };
      tr_metrics_text_sample_u64 (out, "thriftrouter_endpoint_state", labels, e->state == s);
    }
  }
}

static void
write_endpoint_lag_bytes (TrMetrics *metrics, GString *out, GArray *endpoints)
{
  tr_metrics_text_family (out, "thriftrouter_endpoint_lag_bytes", "gauge",
                          "Bytes of the data files from the endpoint's first unacknowledged RPC to its service "
                          "head (RPCs of other services stored in between included); left out when the index "
                          "cannot be read.");
  for (guint i = 0; i < endpoints->len; i++) {
    const TrPushEndpointStats *e = &g_array_index (endpoints, TrPushEndpointStats, i);
    const char *labels[] = ENDPOINT_LABELS (e);
    gint64 bytes = tr_push_endpoint_lag_bytes (metrics->store, e);
    if (bytes >= 0)
      tr_metrics_text_sample_u64 (out, "thriftrouter_endpoint_lag_bytes", labels, (guint64) bytes);
  }
}

static void
write_endpoints (TrMetrics *metrics, GString *out, GArray *endpoints)
{
  for (EndpointValue v = EP_ACKED; v <= EP_EXPIRED; v++) {
    tr_metrics_text_family (out, endpoint_families[v].name, endpoint_families[v].type, endpoint_families[v].help);
    for (guint i = 0; i < endpoints->len; i++) {
      const TrPushEndpointStats *e = &g_array_index (endpoints, TrPushEndpointStats, i);
      const char *labels[] = ENDPOINT_LABELS (e);
      tr_metrics_text_sample_u64 (out, endpoint_families[v].name, labels, endpoint_value (e, v));
    }
  }
  write_endpoint_lag_bytes (metrics, out, endpoints);
  write_endpoint_states (out, endpoints);
  tr_metrics_text_family (out, "thriftrouter_endpoint_delivery_latency_seconds", "histogram",
                          "Seconds from an RPC's commit to the endpoint's acknowledgement of it.");
  for (guint i = 0; i < endpoints->len; i++) {
    const TrPushEndpointStats *e = &g_array_index (endpoints, TrPushEndpointStats, i);
    const char *labels[] = ENDPOINT_LABELS (e);
    tr_metrics_text_histogram (out, "thriftrouter_endpoint_delivery_latency_seconds", labels, &e->delivery_latency,
                               MICROSECONDS);
  }
  tr_metrics_text_family (out, "thriftrouter_endpoint_last_error_timestamp_seconds", "gauge",
                          "Unix time of the endpoint's last failure; left out if it has not failed.");
  for (guint i = 0; i < endpoints->len; i++) {
    const TrPushEndpointStats *e = &g_array_index (endpoints, TrPushEndpointStats, i);
    const char *labels[] = ENDPOINT_LABELS (e);
    if (e->last_error_time > 0)
      tr_metrics_text_sample_fixed (out, "thriftrouter_endpoint_last_error_timestamp_seconds", labels,
                                    e->last_error_time, MICROSECONDS);
  }
}

/* ---- the scrape ---- */

char *
tr_metrics_collect (TrMetrics *metrics)
{
  GString *out = g_string_sized_new (16384);
  TrRpcStoreStats store;
  TrIngressStats ingress;
  gboolean partial = FALSE;

  g_return_val_if_fail (metrics != NULL, NULL);

  write_node (metrics, out);
  if (metrics->ingress != NULL
      && tr_ingress_get_stats_wait (metrics->ingress, metrics->ingress_context,
                                    g_get_monotonic_time () + METRICS_INGRESS_WAIT_US, &ingress))
    write_producers (out, &ingress);
  else
    partial = metrics->ingress != NULL;
  tr_rpcstore_get_stats (metrics->store, &store);
  write_store (out, &store);
  write_filesystem (metrics, out);
  if (metrics->push != NULL) {
    g_autoptr (GArray) endpoints = tr_push_get_stats (metrics->push);
    write_endpoints (metrics, out, endpoints);
  }
  write_one (out, "thriftrouter_scrape_partial", "gauge",
             "1 if the ingress loop did not answer within 2 s (a slow disk or shutdown) and the producer "
             "samples are missing from this scrape.",
             partial);
  return g_string_free (out, FALSE);
}

/* The metrics thread: SoupServer's handler for /metrics. */
static void
on_request (SoupServer *server, SoupServerMessage *msg, const char *path, GHashTable *query, gpointer user_data)
{
  TrMetrics *metrics = user_data;
  const char *method = soup_server_message_get_method (msg);
  gint64 now;
  char *text;

  (void) server;
  (void) query;
  if (g_strcmp0 (path, "/metrics") != 0) {
    soup_server_message_set_status (msg, SOUP_STATUS_NOT_FOUND, NULL);
    return;
  }
  if (method != SOUP_METHOD_GET && method != SOUP_METHOD_HEAD) {
    soup_server_message_set_status (msg, SOUP_STATUS_METHOD_NOT_ALLOWED, NULL);
    soup_message_headers_replace (soup_server_message_get_response_headers (msg), "Allow", "GET, HEAD");
    return;
  }
  now = g_get_monotonic_time ();
  if (metrics->last_text == NULL || now - metrics->last_collect_us >= METRICS_MIN_COLLECT_INTERVAL_US) {
    text = tr_metrics_collect (metrics);
    g_clear_pointer (&metrics->last_text, g_bytes_unref);
    metrics->last_text = g_bytes_new_take (text, strlen (text));
    metrics->last_collect_us = now;
  }
  soup_server_message_set_status (msg, SOUP_STATUS_OK, NULL);
  soup_message_headers_set_content_type (soup_server_message_get_response_headers (msg), METRICS_CONTENT_TYPE, NULL);
  soup_message_body_append_bytes (soup_server_message_get_response_body (msg), metrics->last_text);
}

static gpointer
metrics_thread (gpointer data)
{
  TrMetrics *metrics = data;

  g_main_context_push_thread_default (metrics->context);
  g_main_loop_run (metrics->loop);
  g_main_context_pop_thread_default (metrics->context);
  return NULL;
}

/* A connection's GSocketConnection is finalized: the server let it go.
 * @data: the count (a g_rc_box reference of its own). */
static void
on_connection_gone (gpointer data, GObject *where_the_object_was)
{
  guint *connections = data;

  (void) where_the_object_was;
  (*connections)--;
  g_rc_box_release (connections);
}

/* Gives accepted socket @fd to the SoupServer, which answers on it. */
static void
serve_connection (TrMetrics *metrics, int fd)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GSocket) socket = g_socket_new_from_fd (fd, &error);
  g_autoptr (GSocketConnection) connection = NULL;
  g_autoptr (GSocketAddress) local = NULL;
  g_autoptr (GSocketAddress) remote = NULL;

  if (socket == NULL) {
    close (fd);
    tr_net_log_limited (metrics->log_limit, "socket", G_LOG_LEVEL_WARNING, NULL, "metrics: port %u: %s",
                        metrics->port, error->message);
    return;
  }
  connection = g_socket_connection_factory_create_connection (socket);
  local = g_socket_get_local_address (socket, NULL);
  remote = g_socket_get_remote_address (socket, NULL);
  if (!soup_server_accept_iostream (metrics->server, G_IO_STREAM (connection), local, remote, &error)) {
    tr_net_log_limited (metrics->log_limit, "socket", G_LOG_LEVEL_WARNING, NULL, "metrics: port %u: %s",
                        metrics->port, error->message);
    return;
  }
  (*metrics->connections)++;
  g_object_weak_ref (G_OBJECT (connection), on_connection_gone, g_rc_box_acquire (metrics->connections));
}

/* The metrics thread: accepts here rather than in SoupServer, to bound the
 * connections (METRICS_MAX_CONNECTIONS).  (Debian's libsoup 3.2 closes a
 * connection given to soup_server_accept_iostream() after one answer, so
 * every scrape is a connection of its own; Prometheus is fine with that.) */
static gboolean
on_accept (gint fd, GIOCondition condition, gpointer user_data)
{
  TrMetrics *metrics = user_data;

  (void) fd;
  (void) condition;
  for (;;) {
    g_autoptr (GError) error = NULL;
    int client = tr_net_accept (metrics->listen_fd, &error);
    if (client < 0) {
      /* Nothing waiting, or a transient error (EMFILE): the next
       * readiness retries. */
      if (!g_error_matches (error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK))
        tr_net_log_limited (metrics->log_limit, "accept", G_LOG_LEVEL_WARNING, NULL, "metrics: port %u: %s",
                            metrics->port, error->message);
      break;
    }
    if (*metrics->connections >= METRICS_MAX_CONNECTIONS) {
      g_autofree char *peer = tr_net_peer_name (client);
      tr_net_log_limited (metrics->log_limit, "max connections", G_LOG_LEVEL_WARNING, peer,
                          "metrics: refusing %s: %d scraper connections open", peer, METRICS_MAX_CONNECTIONS);
      close (client);
      continue;
    }
    serve_connection (metrics, client);
  }
  return G_SOURCE_CONTINUE;
}

static gboolean
start_server (TrMetrics *metrics, const TrConfig *config, GError **error)
{
  metrics->listen_fd = tr_net_listen (config->metrics_host, config->metrics_port, METRICS_LISTEN_BACKLOG,
                                      &metrics->port, error);
  if (metrics->listen_fd < 0) {
    g_prefix_error (error, "metrics_listen: ");
    return FALSE;
  }
  metrics->server = soup_server_new ("server-header", "thriftrouter/" TR_VERSION " ", NULL);
  soup_server_add_handler (metrics->server, NULL, on_request, metrics, NULL);
  metrics->listen_source = g_unix_fd_source_new (metrics->listen_fd, G_IO_IN);
  g_source_set_callback (metrics->listen_source, G_SOURCE_FUNC (on_accept), metrics, NULL);
  g_source_attach (metrics->listen_source, metrics->context);
  return TRUE;
}

TrMetrics *
tr_metrics_new (const TrMetricsSources *sources, GError **error)
{
  g_autoptr (TrMetrics) metrics = NULL;

  g_return_val_if_fail (sources != NULL && sources->config != NULL && sources->store != NULL, NULL);
  g_return_val_if_fail (sources->config->metrics_host != NULL, NULL);
  g_return_val_if_fail (sources->ingress == NULL || sources->ingress_context != NULL, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  metrics = g_new0 (TrMetrics, 1);
  metrics->listen_fd = -1;
  metrics->connections = g_rc_box_new0 (guint);
  metrics->log_limit = tr_net_log_limit_new (G_LOG_DOMAIN, METRICS_LOG_INTERVAL_US);
  metrics->store = sources->store;
  metrics->push = sources->push;
  metrics->ingress = sources->ingress;
  metrics->ingress_context = sources->ingress_context;
  metrics->role = sources->role;
  metrics->epoch = sources->epoch;
  metrics->server_id = g_strdup (sources->config->server_id);
  metrics->data_dir = g_strdup (sources->config->data_dir);
  metrics->start_real_us = g_get_real_time ();
  metrics->start_monotonic_us = g_get_monotonic_time ();
  metrics->context = g_main_context_new ();
  metrics->loop = g_main_loop_new (metrics->context, FALSE);
  if (!start_server (metrics, sources->config, error))
    return NULL;
  metrics->thread = g_thread_new ("tr-metrics", metrics_thread, metrics);
  g_message ("metrics: serving /metrics on %s:%u", sources->config->metrics_host, metrics->port);
  return g_steal_pointer (&metrics);
}

guint16
tr_metrics_get_port (TrMetrics *metrics)
{
  g_return_val_if_fail (metrics != NULL, 0);

  return metrics->port;
}

void
tr_metrics_free (TrMetrics *metrics)
{
  if (metrics == NULL)
    return;
  if (metrics->thread != NULL)
    tr_invoke_stop_loop (metrics->context, metrics->loop, metrics->thread);
  if (metrics->listen_source != NULL) {
    g_source_destroy (metrics->listen_source);
    g_source_unref (metrics->listen_source);
  }
  if (metrics->listen_fd >= 0)
    close (metrics->listen_fd);
  if (metrics->server != NULL) {
    /* The connections' sources are on ->context: dispose of them there. */
    g_main_context_push_thread_default (metrics->context);
    soup_server_disconnect (metrics->server);
    g_clear_object (&metrics->server);
    g_main_context_pop_thread_default (metrics->context);
  }
  g_clear_pointer (&metrics->last_text, g_bytes_unref);
  tr_net_log_limit_free (metrics->log_limit);
  g_rc_box_release (metrics->connections);
  g_main_loop_unref (metrics->loop);
  g_main_context_unref (metrics->context);
  g_free (metrics->server_id);
  g_free (metrics->data_dir);
  g_free (metrics);
}
