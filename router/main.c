/* main.c - the thriftrouter daemon: command line, signals, exit codes.
 *
 * What a node is made of, and the order of start-up and shutdown, is in
 * tr_daemon.h.  Here: parse the options, load and validate the
 * configuration, build the node, run it until SIGTERM/SIGINT, free it.  A
 * second signal during shutdown exits at once; that is as safe as kill -9,
 * i.e. nothing acknowledged is lost.  SIGHUP reloads the configuration
 * (tr_reload.h), like tr-admin reload.
 *
 * Exit codes: 0 after a clean stop (and for --check, --version), 1 when the
 * configuration or start-up fails, 2 for a usage error.
 */
#include "tr_config.h"
#include "tr_daemon.h"
#include "tr_notify.h"

#include <glib-unix.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

typedef struct {
  TrDaemon *daemon; /* (nullable) until built */
  gboolean stopping;
} Signals;

static gboolean
on_signal (gpointer data)
{
  Signals *signals = data;

  if (signals->stopping) {
    g_message ("second signal: exiting now (recovery will run at next start)");
    _exit (1);
  }
  signals->stopping = TRUE;
  if (signals->daemon != NULL)
    tr_daemon_stop (signals->daemon);
  return G_SOURCE_CONTINUE;
}

/* SIGHUP: reload the configuration (on the admin thread; logged there). */
static gboolean
on_sighup (gpointer data)
{
  Signals *signals = data;

  if (signals->stopping || signals->daemon == NULL)
    return G_SOURCE_CONTINUE; /* shutting down, or start-up failed */
  g_message ("SIGHUP: reloading the configuration");
  tr_daemon_reload (signals->daemon);
  return G_SOURCE_CONTINUE;
}

static int
run (TrConfig *config)
{
  g_autoptr (GError) error = NULL;
  Signals signals = { 0 };
  guint term_id, int_id, hup_id;

  /* SIGTERM/SIGINT handlers go in before the producer port opens: whoever
   * sees the port listening may stop the node at once, and that must be a
   * clean stop (the signal waits in GLib until the loop runs), not death by
   * the default action while the admin service is still starting (seen
   * under ThreadSanitizer, where start-up is slow). */
  term_id = g_unix_signal_add (SIGTERM, on_signal, &signals);
  int_id = g_unix_signal_add (SIGINT, on_signal, &signals);
  /* SIGHUP too: one sent during start-up waits and reloads once the loop runs. */
  hup_id = g_unix_signal_add (SIGHUP, on_sighup, &signals);
  signals.daemon = tr_daemon_new (config, &error);
  if (signals.daemon == NULL) {
    g_printerr ("thriftrouter: %s\n", error->message);
    g_source_remove (term_id);
    g_source_remove (int_id);
    g_source_remove (hup_id);
    return 1;
  }
  /* A signal handled while the node was being built found no daemon. */
  if (signals.stopping)
    tr_daemon_stop (signals.daemon);
  tr_daemon_run (signals.daemon);
  g_clear_pointer (&signals.daemon, tr_daemon_free);
  g_source_remove (term_id);
  g_source_remove (int_id);
  g_source_remove (hup_id);
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
    printf ("thriftrouter %s\nsd_notify: %s\n", TR_VERSION, tr_notify_supported () ? "yes (libsystemd)" : "no");
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
