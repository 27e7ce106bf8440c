/* tr_daemon.h - the objects a running node is made of, and their order.
 *
 * tr_daemon_new() builds a node from its configuration: it locks the data
 * directory (tr_lockfile.h, before anything reads or repairs it), opens the
 * node state (tr_node.h), the store (runs recovery), and then the parts the
 * node's role needs.  A role is data here, not branches elsewhere:
 *  - MASTER: push (loads every endpoint's send state), ingress (takes
 *    producer writes), the replication source when a service has
 *    service_type = BACKUP (tr_repl_source.h), the admin service;
 *  - BACKUP: ingress refusing every write (naming the master), the
 *    replication sink on replication_listen (tr_repl_sink.h), the admin
 *    service; no push (the COMMON endpoints are held until promotion).
 *
 * Shutdown (tr_daemon_stop(), then tr_daemon_free()) is the reverse: stop
 * accepting, stop the admin service and the replication sink, let the commits in flight finish and
 * be answered, stop push (which records every endpoint's acknowledged
 * seqid), close the store (final sync and checkpoint), release the lock.
 *
 * The service manager (systemd, tr_notify.h) is told READY=1 when
 * tr_daemon_run() starts the loop and STOPPING=1 by tr_daemon_stop().
 *
 * Threads: everything on the main thread, which runs the default
 * GMainContext in tr_daemon_run().  Signal handling stays with the caller
 * (router/main.c).
 */
#pragma once

#include "tr_config.h"

#include <glib.h>

G_BEGIN_DECLS

typedef struct _TrDaemon TrDaemon;

/* tr_daemon_new:
 * @config: (transfer none): must outlive the daemon (the admin service
 *   reloads into it).
 *
 * Builds and starts the node; when it returns, producers can connect.
 *
 * Returns: (transfer full) (nullable): the daemon, or NULL with @error
 *   (TR_STORAGE_ERROR_BUSY: the data directory is in use; TR_CONFIG_ERROR:
 *   the data directory belongs to another node; TR_STORAGE_ERROR: the store
 *   or a send state cannot be opened; listen errors).  Nothing is left
 *   running after a failure. */
TrDaemon *tr_daemon_new (TrConfig *config, GError **error);

/* tr_daemon_run:
 * Logs the ready line, sends READY=1 and runs the default main context until
 * tr_daemon_stop() (at once if it was called already). */
void tr_daemon_run (TrDaemon *daemon);

/* tr_daemon_stop:
 * Stops accepting producers and makes tr_daemon_run() return.  From a
 * callback of the default main context (a signal handler source). */
void tr_daemon_stop (TrDaemon *daemon);

/* tr_daemon_reload:
 * Reloads the configuration on the admin thread (as tr-admin reload); the
 * outcome is logged there.  The service manager sees RELOADING=1 now and
 * READY=1 with the outcome in STATUS= when the reload is done (tr_notify.h). */
void tr_daemon_reload (TrDaemon *daemon);

/* tr_daemon_free:
 * Shuts the node down in order (see above) and logs "thriftrouter stopped
 * cleanly".  NULL is ignored. */
void tr_daemon_free (TrDaemon *daemon);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (TrDaemon, tr_daemon_free)

G_END_DECLS
