/* tr_invoke.c - run a function on another thread's main context and wait
 * for it (tr_invoke.h). */
#include "tr_invoke.h"

/* Shared by the waiter and the idle source (refcounted, g_atomic_rc_box):
 * whichever lets go last frees it, so a waiter that gave up leaves nothing
 * dangling for a late run. */
typedef struct {
  void (*func) (gpointer data);
  gpointer data;
  GDestroyNotify destroy;
  GMutex lock;
  GCond cond;
  gboolean done;      /* protected by ->lock: func returned */
  gboolean abandoned; /* protected by ->lock: the waiter gave up, data is ours */
} Call;

static void
call_clear (gpointer data)
{
  Call *call = data;

  /* Last reference: an abandoned call frees the caller's data whether or
   * not func ran (its context may have been dropped without running it). */
  if (call->abandoned && call->destroy != NULL)
    call->destroy (call->data);
  g_mutex_clear (&call->lock);
  g_cond_clear (&call->cond);
}

static void
call_release (gpointer data)
{
  g_atomic_rc_box_release_full (data, call_clear);
}

static gboolean
on_call (gpointer user_data)
{
  Call *call = user_data;

  call->func (call->data);
  g_mutex_lock (&call->lock);
  call->done = TRUE;
  g_cond_signal (&call->cond);
  g_mutex_unlock (&call->lock);
  return G_SOURCE_REMOVE;
}

gboolean
tr_invoke_wait (GMainContext *context, gint priority, void (*func) (gpointer data), gpointer data,
                GDestroyNotify destroy, gint64 deadline)
{
  Call *call;
  gboolean done;

  g_return_val_if_fail (context != NULL && func != NULL, FALSE);

  call = g_atomic_rc_box_new0 (Call);
  call->func = func;
  call->data = data;
  call->destroy = destroy;
  g_mutex_init (&call->lock);
  g_cond_init (&call->cond);
  g_main_context_invoke_full (context, priority, on_call, g_atomic_rc_box_acquire (call), call_release);
  g_mutex_lock (&call->lock);
  while (!call->done) {
    if (deadline == G_MAXINT64)
      g_cond_wait (&call->cond, &call->lock);
    else if (!g_cond_wait_until (&call->cond, &call->lock, deadline))
      break;
  }
  done = call->done;
  call->abandoned = !done;
  g_mutex_unlock (&call->lock);
  call_release (call);
  return done;
}

static gboolean
quit_loop (gpointer loop)
{
  g_main_loop_quit (loop);
  return G_SOURCE_REMOVE;
}

void
tr_invoke_stop_loop (GMainContext *context, GMainLoop *loop, GThread *thread)
{
  GSource *quit = g_idle_source_new ();

  g_source_set_priority (quit, G_PRIORITY_HIGH);
  g_source_set_callback (quit, quit_loop, loop, NULL);
  g_source_attach (quit, context);
  g_source_unref (quit);
  g_thread_join (thread);
}
