/* tr_daemon.c - wiring of a node's objects (see tr_daemon.h). */
#undef G_LOG_DOMAIN
#define G_LOG_DOMAIN "thriftrouter"

#include "tr_daemon.h"

#include "tr_admin.h"
#include "tr_ingress.h"
#include "tr_lockfile.h"
#include "tr_metrics.h"
#include "tr_node.h"
#include "tr_notify.h"
#include "tr_push.h"
#include "tr_repl_sink.h"
#include "tr_repl_source.h"
#include "tr_rpcstore.h"

#include <string.h>
#include <sys/resource.h>

#define TR_SHUTDOWN_DRAIN_MS 10000

struct _TrDaemon {
  TrConfig *config;   /* (transfer none) */
  TrLockFile *lock;
  TrNode *node;
  TrRpcStore *store;
  TrPush *push;       /* (nullable) */
  TrIngress *ingress; /* (nullable) */
  TrAdmin *admin;     /* (nullable) */
  TrNotify *notify;   /* the service manager (systemd), when there is one */
  char *status;       /* the one-line state the service manager shows */
  TrMetrics *metrics; /* (nullable) metrics_listen not set */
  TrReplSource *repl_source; /* (nullable) a MASTER with replicas */
  TrReplSink *repl_sink;     /* (nullable) a BACKUP */
  GMainLoop *loop;
  gboolean stop_requested;
};

static TrRpcStoreOptions
store_options (const TrConfig *config)
{
  TrRpcStoreOptions options = { 0 };

  options.group_file_size = config->group_file_size;
  options.rpc_cache_size = config->rpc_cache_size;
  options.sync_mode = config->sync_mode;
  options.sync_interval_ms = config->sync_interval_ms;
  options.checkpoint_interval_ms = 1000;
  options.max_message_size = config->max_frame_size;
  options.min_free_bytes = config->min_free_bytes;
  options.min_free_percent = config->min_free_percent;
  return options;
}

/* Every producer and endpoint connection is a descriptor: raise the soft
 * limit to the hard one, and say so when max_connections cannot fit. */
static void
raise_fd_limit (const TrConfig *config)
{
  struct rlimit limit;

  if (getrlimit (RLIMIT_NOFILE, &limit) < 0)
    return;
  if (limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    if (setrlimit (RLIMIT_NOFILE, &limit) < 0)
      getrlimit (RLIMIT_NOFILE, &limit);
  }
  if (limit.rlim_cur != RLIM_INFINITY && limit.rlim_cur < (rlim_t) config->max_connections + 64)
    g_warning ("open file limit %lu is too low for max_connections = %u: producers beyond about %lu "
               "connections will be refused (raise it with ulimit -n / LimitNOFILE)",
               (unsigned long) limit.rlim_cur, config->max_connections, (unsigned long) limit.rlim_cur - 64);
}

/* Lets the answers still owed go out (a producer slow to read them would
 * otherwise see the connection close and resend stored RPCs). */
static void
drain_in_flight (TrIngress *ingress)
{
  gint64 deadline = g_get_monotonic_time () + TR_SHUTDOWN_DRAIN_MS * G_TIME_SPAN_MILLISECOND;

  while (tr_ingress_pending (ingress) > 0 && g_get_monotonic_time () < deadline)
    g_main_context_iteration (NULL, TRUE);
  if (tr_ingress_pending (ingress) > 0)
    g_warning ("%u answers still unsent after %d ms (producers not reading); their rpcs are stored, "
               "the producers see the connection close",
               tr_ingress_pending (ingress), TR_SHUTDOWN_DRAIN_MS);
}

static gboolean
open_store (TrDaemon *daemon, GError **error)
{
  const TrConfig *config = daemon->config;
  g_autoptr (GPtrArray) names = g_ptr_array_new ();
  TrRpcStoreOptions options = store_options (config);

  for (guint i = 0; i < config->services->len; i++)
    g_ptr_array_add (names, ((TrServiceConfig *) g_ptr_array_index (config->services, i))->name);
  g_ptr_array_add (names, NULL);
  daemon->store = tr_rpcstore_open (tr_io_posix (), config->data_dir, &options, (const char *const *) names->pdata,
                                    error);
  return daemon->store != NULL;
}

/* The /metrics endpoint, when metrics_listen is set. */
static gboolean
start_metrics (TrDaemon *daemon, GError **error)
{
  TrMetricsSources sources = { 0 };

  if (daemon->config->metrics_host == NULL)
    return TRUE;
  sources.config = daemon->config;
  sources.store = daemon->store;
  sources.push = daemon->push;
  sources.ingress = daemon->ingress;
  sources.ingress_context = g_main_context_default ();
  sources.role = tr_node_get_role (daemon->node);
  sources.epoch = tr_node_get_epoch (daemon->node);
  daemon->metrics = tr_metrics_new (&sources, error);
  return daemon->metrics != NULL;
}

static char *
format_address (const char *host, guint16 port)
{
  return strchr (host, ':') != NULL ? g_strdup_printf ("[%s]:%u", host, port) : g_strdup_printf ("%s:%u", host, port);
}

static gboolean
start_admin (TrDaemon *daemon, GError **error)
{
  daemon->admin = tr_admin_new (daemon->config, daemon->store, daemon->push, daemon->ingress,
                                g_main_context_default (), error);
  if (daemon->admin == NULL)
    return FALSE;
  tr_admin_set_node_state (daemon->admin, tr_node_get_epoch (daemon->node), tr_node_is_fenced (daemon->node));
  return TRUE;
}

static void
link_stats_clear (gpointer data)
{
  TrPushEndpointStats *stats = data;

  g_free (stats->service);
  g_free (stats->endpoint);
  g_free (stats->last_error);
}

/* tr-admin endpoints: the replication links as endpoints of their BACKUP
 * service, with global rpc ids for seqids (TrAdminLinksFunc, admin thread). */
static GArray *
replica_links (gpointer user_data)
{
  TrDaemon *daemon = user_data;
  g_autoptr (GPtrArray) links = tr_repl_source_get_links (daemon->repl_source);
  GArray *out = g_array_sized_new (FALSE, TRUE, sizeof (TrPushEndpointStats), links->len);

  g_array_set_clear_func (out, link_stats_clear);
  for (guint i = 0; i < links->len; i++) {
    TrReplLinkInfo *link = g_ptr_array_index (links, i);
    TrPushEndpointStats stats = { 0 };
    stats.service = g_steal_pointer (&link->service);
    stats.endpoint = g_steal_pointer (&link->endpoint);
    stats.state = link->state == TR_REPL_LINK_STOPPED     ? TR_PUSH_STOPPED
                  : link->state == TR_REPL_LINK_STREAMING ? TR_PUSH_SENDING
                  : link->state == TR_REPL_LINK_BACKOFF   ? TR_PUSH_BACKOFF
                                                          : TR_PUSH_CONNECTING;
    stats.acked = link->acked;
    stats.head = link->head;
    stats.retries = link->retries;
    stats.last_error = g_steal_pointer (&link->last_error);
    stats.delivered = link->sent;
    g_array_append_val (out, stats);
  }
  return out;
}

/* The parts of a node that takes writes: push (with the store's notify),
 * ingress, the replication source when the configuration names replicas,
 * and the admin service. */
static gboolean
start_writer (TrDaemon *daemon, GError **error)
{
  daemon->push = tr_push_new (daemon->store, daemon->config, error);
  if (daemon->push == NULL)
    return FALSE;
  tr_rpcstore_add_subscriber (daemon->store, tr_push_on_store_event, daemon->push);
  daemon->ingress = tr_ingress_new (daemon->store, daemon->config, error);
  if (daemon->ingress == NULL)
    return FALSE;
  if (daemon->config->replicas->len > 0) {
    g_autofree char *address = format_address (daemon->config->listen_host, tr_ingress_get_port (daemon->ingress));
    daemon->repl_source = tr_repl_source_new (daemon->config, daemon->store, tr_node_get_epoch (daemon->node),
                                              address);
    tr_rpcstore_add_subscriber (daemon->store, tr_repl_source_on_store_event, daemon->repl_source);
  }
  if (!start_admin (daemon, error))
    return FALSE;
  if (daemon->repl_source != NULL)
    tr_admin_set_replica_links (daemon->admin, replica_links, daemon);
  return TRUE;
}

/* A BACKUP's sink learnt (again) who its master is: producers that call
 * this node are told where to write. */
static void
on_master (const char *server_id, const char *producer_address, gpointer user_data)
{
  TrDaemon *daemon = user_data;
  g_autofree char *reason = g_strdup_printf ("thriftrouter node '%s' is a BACKUP and takes no producer writes "
                                             "(nothing stored); send them to the master '%s' at %s",
                                             daemon->config->server_id, server_id, producer_address);

  tr_ingress_refuse_writes (daemon->ingress, reason);
}

/* A BACKUP: the sink applies its master's stream; ingress keeps the listen
 * port but refuses every write (naming the master once it said hello);
 * nothing is pushed (the COMMON endpoints are held until promotion). */
static gboolean
start_backup (TrDaemon *daemon, GError **error)
{
  g_autofree char *reason = g_strdup_printf ("thriftrouter node '%s' is a BACKUP and takes no producer writes "
                                             "(nothing stored); send them to its master (it has not connected "
                                             "since this node started)", daemon->config->server_id);

  daemon->ingress = tr_ingress_new (daemon->store, daemon->config, error);
  if (daemon->ingress == NULL)
    return FALSE;
  tr_ingress_refuse_writes (daemon->ingress, reason);
  daemon->repl_sink = tr_repl_sink_new (daemon->config, daemon->store, tr_node_get_epoch (daemon->node), on_master,
                                        daemon, error);
  if (daemon->repl_sink == NULL)
    return FALSE;
  g_message ("BACKUP node: producer writes are refused, and nothing is pushed to the endpoints of its %u COMMON "
             "service%s while the master lives (held until promotion)", daemon->config->services->len,
             daemon->config->services->len == 1 ? "" : "s");
  return start_admin (daemon, error);
}

static gboolean
start_role (TrDaemon *daemon, GError **error)
{
  TrServerType role = tr_node_get_role (daemon->node);

  switch (role) {
  case TR_SERVER_MASTER:
    return start_writer (daemon, error);
  case TR_SERVER_BACKUP:
    return start_backup (daemon, error);
  case TR_SERVER_REPLY:
    /* The configuration refuses REPLY; a data dir that says so cannot be
     * served by this version. */
    g_set_error (error, TR_CONFIG_ERROR, TR_CONFIG_ERROR_INVALID,
                 "%s: role REPLY is not supported by this version", tr_node_get_path (daemon->node));
    return FALSE;
  }
  g_assert_not_reached ();
  return FALSE;
}

TrDaemon *
tr_daemon_new (TrConfig *config, GError **error)
{
  g_autoptr (TrDaemon) daemon = NULL;
  TrNodeIdentity identity;

  g_return_val_if_fail (config != NULL, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  daemon = g_new0 (TrDaemon, 1);
  daemon->config = config;
  daemon->loop = g_main_loop_new (NULL, FALSE);
  /* Before recovery, which can be long: the watchdog runs from the start. */
  daemon->notify = tr_notify_new (g_main_context_default ());
  /* First of all: a second process on a directory in use must not even
   * read it (recovery would repair records the holder is still writing). */
  daemon->lock = tr_lockfile_acquire (tr_io_posix (), config->data_dir, error);
  if (daemon->lock == NULL)
    return NULL;
  raise_fd_limit (config);
  identity = tr_node_identity_from_config (config);
  daemon->node = tr_node_open (tr_io_posix (), config->data_dir, &identity, error);
  if (daemon->node == NULL || !open_store (daemon, error) || !start_role (daemon, error) || !start_metrics (daemon, error))
    return NULL;
  return g_steal_pointer (&daemon);
}

void
tr_daemon_run (TrDaemon *daemon)
{
  const TrConfig *config;

  g_return_if_fail (daemon != NULL);

  config = daemon->config;
  g_message ("thriftrouter %s: %s node '%s' %s producers on %s:%u, data in %s, %u services, rpc %"
             G_GUINT64_FORMAT " is the head",
             TR_VERSION, tr_node_role_to_string (tr_node_get_role (daemon->node)), config->server_id,
             daemon->repl_sink != NULL ? "refusing" : "accepting", config->listen_host, tr_ingress_get_port (daemon->ingress), config->data_dir, config->services->len,
             tr_rpcstore_head (daemon->store));
  /* Both ports accept from here on (tr_daemon_new returned): READY=1 lets
   * units ordered After=thriftrouter.service start. */
  daemon->status = g_strdup_printf ("%s node %s: producers on %s:%u, admin on %s:%u", tr_node_role_to_string (
                                      tr_node_get_role (daemon->node)), config->server_id, config->listen_host,
                                    tr_ingress_get_port (daemon->ingress), config->admin_host,
                                    tr_admin_get_port (daemon->admin));
  tr_notify_ready (daemon->notify, daemon->status);
  /* A stop requested before the loop runs would be lost by
   * g_main_loop_quit(): check the flag. */
  if (!daemon->stop_requested)
    g_main_loop_run (daemon->loop);
}

void
tr_daemon_stop (TrDaemon *daemon)
{
  g_return_if_fail (daemon != NULL);

  daemon->stop_requested = TRUE;
  tr_notify_stopping (daemon->notify);
  if (daemon->ingress != NULL) {
    g_message ("shutting down: no new producer connections; %u answers still to send",
               tr_ingress_pending (daemon->ingress));
    tr_ingress_stop_accepting (daemon->ingress);
  }
  g_main_loop_quit (daemon->loop);
}

/* The admin thread has applied or refused a SIGHUP reload (main thread). */
static void
on_reload_done (const char *outcome, gboolean applied, gpointer user_data)
{
  TrDaemon *daemon = user_data;
  g_autofree char *status = NULL;

  (void) applied;
  /* STOPPING=1 went out already: a READY=1 now would say the opposite. */
  if (daemon->stop_requested)
    return;
  status = g_strdup_printf ("%s; %s", daemon->status, outcome);
  tr_notify_ready (daemon->notify, status);
}

void
tr_daemon_reload (TrDaemon *daemon)
{
  g_return_if_fail (daemon != NULL);

  if (daemon->admin == NULL)
    return;
  tr_notify_reloading (daemon->notify);
  tr_admin_reload_async (daemon->admin, on_reload_done, daemon);
}

void
tr_daemon_free (TrDaemon *daemon)
{
  gboolean started;

  if (daemon == NULL)
    return;
  started = daemon->admin != NULL;
  /* First: a scrape reads push, ingress and the store. */
  g_clear_pointer (&daemon->metrics, tr_metrics_free);
  g_clear_pointer (&daemon->admin, tr_admin_free);
  /* No more batches from a master: what it sent and was answered is stored. */
  g_clear_pointer (&daemon->repl_sink, tr_repl_sink_free);
  if (daemon->ingress != NULL && started)
    drain_in_flight (daemon->ingress);
  if (daemon->store != NULL && daemon->push != NULL)
    tr_rpcstore_remove_subscriber (daemon->store, tr_push_on_store_event, daemon->push);
  if (daemon->store != NULL && daemon->repl_source != NULL)
    tr_rpcstore_remove_subscriber (daemon->store, tr_repl_source_on_store_event, daemon->repl_source);
  g_clear_pointer (&daemon->repl_source, tr_repl_source_free);
  g_clear_pointer (&daemon->push, tr_push_free);
  g_clear_pointer (&daemon->store, tr_rpcstore_close);
  g_clear_pointer (&daemon->ingress, tr_ingress_free);
  g_clear_pointer (&daemon->node, tr_node_free);
  g_clear_pointer (&daemon->notify, tr_notify_free);
  g_free (daemon->status);
  g_main_loop_unref (daemon->loop);
  if (started)
    g_message ("thriftrouter stopped cleanly");
  /* Last: the directory is free only once every file in it is closed. */
  g_clear_pointer (&daemon->lock, tr_lockfile_free);
  g_free (daemon);
}
