/* tr_invoke.h - run a function on another thread's main context and wait
 * for it.
 *
 * The router's threads own their state: the ingress loop its connections
 * and routes, the push thread its endpoints.  Another thread that needs to
 * read or change that state (admin calls, reloads, shutdown) hands a
 * function to the owner's GMainContext with tr_invoke_wait() and waits.
 */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* tr_invoke_wait:
 * @context: the context whose thread runs @func
 * @priority: of the idle source that runs it (G_PRIORITY_*)
 * @func: runs once, on @context's thread
 * @data: (transfer full) given to @func and @destroy
 * @destroy: (nullable): frees @data when the call is abandoned, see below
 * @deadline: g_get_monotonic_time() limit of the wait; G_MAXINT64: no limit
 *
 * Waits until @func has returned or the deadline passed.
 *
 * Returns: TRUE if @func ran: the caller gets @data back (read what @func
 * left there, then free it itself; @destroy is not called).  FALSE if the
 * deadline passed first (e.g. the loop is blocked on a slow disk or shutting
 * down): the call is abandoned, and @func may still run later; @data then
 * belongs to the call, which frees it with @destroy after @func ran, or
 * without running @func if @context is dropped first.  The caller must
 * not touch @data after FALSE. */
gboolean tr_invoke_wait (GMainContext *context, gint priority, void (*func) (gpointer data), gpointer data,
                         GDestroyNotify destroy, gint64 deadline);

/* tr_invoke_stop_loop:
 * Stops a thread that runs g_main_loop_run (@loop) on @context and joins
 * it.  The quit is sent as a high-priority idle on @context, so that it runs
 * inside the loop: a g_main_loop_quit() issued before the thread reached
 * g_main_loop_run() would be lost.  Sources still pending on @context are
 * left to the caller (the thread is gone: they are the caller's now). */
void tr_invoke_stop_loop (GMainContext *context, GMainLoop *loop, GThread *thread);

G_END_DECLS
