/* Tests for tr_invoke_wait() (router/core/tr_invoke.h): a call that runs, a
 * call whose waiter gives up before a late run, and a call whose context
 * is dropped without running it.  The data must be freed exactly once in
 * each case, and by the caller only when the call ran. */
#include "tr_invoke.h"

#include <criterion/criterion.h>

typedef struct {
  gint ran;       /* atomic */
  gint destroyed; /* atomic */
} Probe;

typedef struct {
  Probe *probe;
  int result;
} Data;

static void
write_result (gpointer data)
{
  Data *d = data;

  d->result = 42;
  g_atomic_int_inc (&d->probe->ran);
}

static void
data_free (gpointer data)
{
  Data *d = data;

  g_atomic_int_inc (&d->probe->destroyed);
  g_free (d);
}

/* A thread that owns @context and runs it until told to stop. */
typedef struct {
  GMainContext *context;
  GMutex lock;
  GCond cond;
  gboolean blocked; /* protected by ->lock: the thread holds back */
  gint stop;        /* atomic */
} Runner;

static gpointer
runner_main (gpointer data)
{
  Runner *r = data;

  g_main_context_push_thread_default (r->context);
  while (!g_atomic_int_get (&r->stop)) {
    g_mutex_lock (&r->lock);
    while (r->blocked)
      g_cond_wait (&r->cond, &r->lock);
    g_mutex_unlock (&r->lock);
    g_main_context_iteration (r->context, FALSE);
    g_usleep (1000);
  }
  g_main_context_pop_thread_default (r->context);
  return NULL;
}

static void
runner_block (Runner *r, gboolean blocked)
{
  g_mutex_lock (&r->lock);
  r->blocked = blocked;
  g_cond_broadcast (&r->cond);
  g_mutex_unlock (&r->lock);
}

Test (tr_invoke, a_call_that_runs_returns_the_data_to_the_caller)
{
  Runner r = { .context = g_main_context_new () };
  Probe probe = { 0 };
  Data *d = g_new0 (Data, 1);
  GThread *thread = g_thread_new ("runner", runner_main, &r);

  d->probe = &probe;
  cr_assert (tr_invoke_wait (r.context, G_PRIORITY_DEFAULT, write_result, d, data_free,
                             g_get_monotonic_time () + 10 * G_TIME_SPAN_SECOND));
  cr_assert_eq (d->result, 42);
  cr_assert_eq (g_atomic_int_get (&probe.ran), 1);
  cr_assert_eq (g_atomic_int_get (&probe.destroyed), 0, "destroy must not run when the call ran");
  data_free (d);
  g_atomic_int_set (&r.stop, 1);
  g_thread_join (thread);
  g_main_context_unref (r.context);
}

static gpointer
unblock_later (gpointer data)
{
  g_usleep (100 * 1000);
  runner_block (data, FALSE);
  return NULL;
}

Test (tr_invoke, no_limit_waits_for_a_slow_thread)
{
  Runner r = { .context = g_main_context_new (), .blocked = TRUE };
  Probe probe = { 0 };
  Data d = { .probe = &probe };
  GThread *thread = g_thread_new ("runner", runner_main, &r);
  GThread *unblock = g_thread_new ("unblock", unblock_later, &r);
  gint64 start = g_get_monotonic_time ();

  /* Data on the stack, no destroy: what tr_push__run_sync() does. */
  cr_assert (tr_invoke_wait (r.context, G_PRIORITY_DEFAULT, write_result, &d, NULL, G_MAXINT64));
  cr_assert_eq (d.result, 42);
  cr_assert_geq (g_get_monotonic_time () - start, 90 * 1000, "returned before the runner could run it");
  g_thread_join (unblock);
  g_atomic_int_set (&r.stop, 1);
  g_thread_join (thread);
  g_main_context_unref (r.context);
}

Test (tr_invoke, an_abandoned_call_runs_late_and_frees_the_data_once)
{
  Runner r = { .context = g_main_context_new (), .blocked = TRUE };
  Probe probe = { 0 };
  Data *d = g_new0 (Data, 1);
  GThread *thread = g_thread_new ("runner", runner_main, &r);
  gint64 give_up = g_get_monotonic_time () + 2 * G_TIME_SPAN_SECOND;

  d->probe = &probe;
  cr_assert_not (tr_invoke_wait (r.context, G_PRIORITY_DEFAULT, write_result, d, data_free,
                                 g_get_monotonic_time () + 20 * 1000));
  cr_assert_eq (g_atomic_int_get (&probe.ran), 0);
  cr_assert_eq (g_atomic_int_get (&probe.destroyed), 0, "the late run still needs the data");
  runner_block (&r, FALSE);
  while (g_atomic_int_get (&probe.destroyed) == 0 && g_get_monotonic_time () < give_up)
    g_usleep (1000);
  cr_assert_eq (g_atomic_int_get (&probe.ran), 1, "the abandoned call must still run");
  cr_assert_eq (g_atomic_int_get (&probe.destroyed), 1, "the late run must free the data once");
  g_atomic_int_set (&r.stop, 1);
  g_thread_join (thread);
  g_main_context_unref (r.context);
}

Test (tr_invoke, an_abandoned_call_whose_context_is_dropped_frees_the_data)
{
  /* Nobody runs this context: the call can only be dropped with it. */
  GMainContext *context = g_main_context_new ();
  Probe probe = { 0 };
  Data *d = g_new0 (Data, 1);

  d->probe = &probe;
  cr_assert_not (tr_invoke_wait (context, G_PRIORITY_DEFAULT, write_result, d, data_free,
                                 g_get_monotonic_time () + 10 * 1000));
  cr_assert_eq (g_atomic_int_get (&probe.destroyed), 0);
  g_main_context_unref (context);
  cr_assert_eq (g_atomic_int_get (&probe.ran), 0);
  cr_assert_eq (g_atomic_int_get (&probe.destroyed), 1, "dropping the context must free the data");
}
