/* main.c - the thriftrouter daemon: command line, start-up, signals, shutdown.
 *
 * Start-up order: load and validate the configuration, open the store (runs
 * recovery), start push (loads every endpoint's send state), listen for
 * producers, then serve the admin port.  Shutdown (SIGTERM/SIGINT) is the
 * reverse: stop accepting, stop the admin service, let the commits in
 * flight finish and be answered, stop push (which records every endpoint's acknowledged seqid), close the store (final sync
 * and checkpoint).  A second signal during shutdown exits at once; that is
 * as safe as kill -9, i.e. nothing acknowledged is lost.  SIGHUP reloads
 * the configuration (tr_reload.h), like tr-admin reload.
 */
#include "tr_admin.h"
#include "tr_config.h"
#include "tr_ingress.h"
#include "tr_node.h"
#include "tr_push.h"
#include "tr_rpcstore.h"

#include <glib-unix.h>
#include <signal.h>
#include <sys/resource.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define TR_SHUTDOWN_DRAIN_MS 10000

typedef struct {
  GMainLoop *loop;
  TrIngress *ingress;
  TrAdmin *admin;
  gboolean stopping;
} Daemon;

static gboolean
on_signal (gpointer data)
{
  Daemon *daemon = data;

  if (daemon->stopping) {
    g_message ("second signal: exiting now (recovery will run at next start)");
    _exit (1);
  }
  daemon->stopping = TRUE;
  g_message ("shutting down: no new producer connections; %u answers still to send",
             tr_ingress_pending (daemon->ingress));
  tr_ingress_stop_accepting (daemon->ingress);
  g_main_loop_quit (daemon->loop);
  return G_SOURCE_CONTINUE;
}

/* SIGHUP: reload the configuration (on the admin thread; logged there). */
static gboolean
on_sighup (gpointer data)
{
  Daemon *daemon = data;

  if (daemon->stopping || daemon->admin == NULL)
    return G_SOURCE_CONTINUE; /* shutting down, or start-up failed */
  g_message ("SIGHUP: reloading the configuration");
  tr_admin_reload_async (daemon->admin);
  return G_SOURCE_CONTINUE;
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

static int
run (TrConfig *config)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GPtrArray) names = g_ptr_array_new ();
  TrRpcStoreOptions options = store_options (config);
  TrRpcStore *store;
  TrPush *push;
  TrAdmin *admin = NULL;
  Daemon daemon = { 0 };
  guint64 epoch = 0;
  guint term_id, int_id, hup_id;

  for (guint i = 0; i < config->services->len; i++)
    g_ptr_array_add (names, ((TrServiceConfig *) g_ptr_array_index (config->services, i))->name);
  g_ptr_array_add (names, NULL);
  raise_fd_limit (config);
  if (!tr_node_check_identity (tr_io_posix (), config, &epoch, &error)) {
    g_printerr ("thriftrouter: %s\n", error->message);
    return 1;
  }
  store = tr_rpcstore_open (tr_io_posix (), config->data_dir, &options, (const char *const *) names->pdata, &error);
  if (store == NULL) {
    g_printerr ("thriftrouter: %s\n", error->message);
    return 1;
  }
  push = tr_push_new (store, config, &error);
  if (push == NULL) {
    g_printerr ("thriftrouter: %s\n", error->message);
    tr_rpcstore_close (store);
    return 1;
  }
  tr_rpcstore_add_subscriber (store, tr_push_on_store_event, push);
  /* SIGTERM/SIGINT handlers go in before the producer port opens: whoever
   * sees the port listening may stop the node at once, and that must be a
   * clean stop (the signal waits in GLib until the loop runs), not death by
   * the default action while the admin service is still starting (seen
   * under ThreadSanitizer, where start-up is slow). */
  daemon.loop = g_main_loop_new (NULL, FALSE);
  term_id = g_unix_signal_add (SIGTERM, on_signal, &daemon);
  int_id = g_unix_signal_add (SIGINT, on_signal, &daemon);
  /* SIGHUP too: one sent during start-up waits and reloads once the loop runs. */
  hup_id = g_unix_signal_add (SIGHUP, on_sighup, &daemon);
  daemon.ingress = tr_ingress_new (store, config, &error);
  if (daemon.ingress != NULL)
    admin = tr_admin_new (config, store, push, daemon.ingress, g_main_context_default (), &error);
  if (daemon.ingress == NULL || admin == NULL) {
    g_printerr ("thriftrouter: %s\n", error->message);
    g_source_remove (term_id);
    g_source_remove (int_id);
    g_source_remove (hup_id);
    g_main_loop_unref (daemon.loop);
    g_clear_pointer (&daemon.ingress, tr_ingress_free);
    tr_push_free (push);
    tr_rpcstore_close (store);
    return 1;
  }
  tr_admin_set_epoch (admin, epoch);

  daemon.admin = admin;
  g_message ("thriftrouter %s: %s node '%s' accepting producers on %s:%u, data in %s, %u services, rpc %"
             G_GUINT64_FORMAT " is the head",
             TR_VERSION, "MASTER", config->server_id, config->listen_host, tr_ingress_get_port (daemon.ingress),
             config->data_dir, config->services->len, tr_rpcstore_head (store));
  g_main_loop_run (daemon.loop);

  tr_admin_free (admin);
  drain_in_flight (daemon.ingress);
  tr_rpcstore_remove_subscriber (store, tr_push_on_store_event, push);
  tr_push_free (push);
  tr_rpcstore_close (store);
  tr_ingress_free (daemon.ingress);
  g_main_loop_unref (daemon.loop);
  g_message ("thriftrouter stopped cleanly");
  return 0;
}

int
main (int argc, char **argv)
{
  g_autofree char *config_path = NULL;
  gboolean check = FALSE, version = FALSE;
  GOptionEntry entries[] = {
    { "config", 'c', 0, G_OPTION_ARG_FILENAME, &config_path, "router configuration file (required)", "FILE" },
    { "check", 0, 0, G_OPTION_ARG_NONE, &check,
      "validate the configuration, print the effective settings (defaults included) and exit", NULL },
    { "version", 0, 0, G_OPTION_ARG_NONE, &version, "print the version and exit", NULL },
    { NULL, 0, 0, 0, NULL, NULL, NULL },
  };
  g_autoptr (GOptionContext) context = g_option_context_new ("- persistent publish/subscribe router for Thrift RPCs");
  g_autoptr (GError) error = NULL;
  g_autoptr (TrConfig) config = NULL;

  g_option_context_add_main_entries (context, entries, NULL);
  g_option_context_set_description (context,
                                    "Runs a node in the foreground and logs to stderr.  SIGTERM or SIGINT stop it\n"
                                    "cleanly; SIGHUP reloads the configuration (as tr-admin reload).\n"
                                    "Configuration reference: docs/configuration.md.\n"
                                    "Example: thriftrouter -c conf/router.conf");
  if (!g_option_context_parse (context, &argc, &argv, &error)) {
    g_printerr ("thriftrouter: %s\nTry 'thriftrouter --help'.\n", error->message);
    return 2;
  }
  if (version) {
    printf ("thriftrouter %s\n", TR_VERSION);
    return 0;
  }
  if (config_path == NULL) {
    g_printerr ("thriftrouter: missing -c FILE (the router configuration)\nTry 'thriftrouter --help'.\n");
    return 2;
  }
  config = tr_config_load (config_path, &error);
  if (config == NULL) {
    g_printerr ("thriftrouter: configuration error: %s\n", error->message);
    return 1;
  }
  if (check) {
    g_autofree char *text = tr_config_to_string (config);
    printf ("%s", text);
    g_printerr ("thriftrouter: configuration OK\n");
    return 0;
  }
  signal (SIGPIPE, SIG_IGN);
  signal (SIGHUP, SIG_IGN); /* during start-up: run() installs the reload handler */
  return run (config);
}
