/* tr_notify.h - the service manager's notify protocol (sd_notify(3)).
 *
 * Under systemd (Type=notify, packaging/thriftrouter.service) the daemon
 * tells the manager where it is in its life:
 *
 *     start --READY=1--> running --RELOADING=1--> reloading --READY=1--> running
 *                          |  WATCHDOG=1 every WATCHDOG_USEC/2 from the loop
 *                          +--STOPPING=1--> stopping
 *
 * tr_daemon sends READY=1 once recovery has run and both ports accept
 * (tr_notify_ready), RELOADING=1 when SIGHUP starts a reload and READY=1
 * when it is done (tr_notify_reloading, tr_notify_ready), STOPPING=1 when
 * the shutdown begins (tr_notify_stopping).  Each message can carry a
 * one-line STATUS= that systemctl status shows.  With WatchdogSec= set the
 * manager passes WATCHDOG_USEC: a timer on the daemon's main context then
 * sends WATCHDOG=1 at half that period, so a loop that stops turning (a
 * hung fdatasync, a deadlock) gets the node restarted.
 *
 * Without NOTIFY_SOCKET in the environment (started from a shell, by the
 * tests, by another supervisor) every call does nothing.  Built without
 * libsystemd (cmake -DTR_SYSTEMD=OFF, or libsystemd-dev missing), every call
 * does nothing and tr_notify_new() logs once that NOTIFY_SOCKET is ignored.
 *
 * Threads: main thread (the thread running @context).
 */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

typedef struct _TrNotify TrNotify;

/* tr_notify_new:
 * @context: (transfer none): the context the watchdog timer runs on (the
 *   daemon's main loop: a stuck loop must stop the keep-alives); must
 *   outlive the TrNotify.
 *
 * Reads NOTIFY_SOCKET and WATCHDOG_USEC (for this process: the variables
 * are checked against WATCHDOG_PID) and starts the watchdog timer when the
 * manager asks for one.
 * Returns: (transfer full): never NULL. */
TrNotify *tr_notify_new (GMainContext *context);

/* TRUE when the notify protocol is compiled in (libsystemd). */
gboolean tr_notify_supported (void);

/* tr_notify_ready:
 * @status: (nullable): one line for STATUS=, or NULL to keep the last.
 * Sends READY=1 (after start-up, and after a reload). */
void tr_notify_ready (TrNotify *notify, const char *status);

/* Sends RELOADING=1 with MONOTONIC_USEC (a reload has started). */
void tr_notify_reloading (TrNotify *notify);

/* Sends STOPPING=1 (the shutdown has started). */
void tr_notify_stopping (TrNotify *notify);

/* Stops the watchdog timer.  NULL is ignored. */
void tr_notify_free (TrNotify *notify);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (TrNotify, tr_notify_free)

G_END_DECLS
