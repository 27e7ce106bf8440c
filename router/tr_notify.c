/* tr_notify.c - sd_notify(3) for the daemon (see tr_notify.h).
 *
 * The one place that knows about libsystemd.  TR_HAVE_LIBSYSTEMD is set by
 * router/CMakeLists.txt when libsystemd was found and TR_SYSTEMD is ON;
 * without it notify_send() drops every message, watchdog_usec() finds no
 * watchdog and tr_notify_new() says once that NOTIFY_SOCKET is ignored.
 */
#undef G_LOG_DOMAIN
#define G_LOG_DOMAIN "thriftrouter"

#include "tr_notify.h"

#ifdef TR_HAVE_LIBSYSTEMD
#include <systemd/sd-daemon.h>
#endif

struct _TrNotify {
  GSource *watchdog; /* (nullable) the keep-alive timer */
  gboolean failed; /* a send failed and was logged: do not log every keep-alive */
};

#ifdef TR_HAVE_LIBSYSTEMD
static void
notify_send (TrNotify *notify, const char *message)
{
  int r = sd_notify (0, message);

  /* 0 means no NOTIFY_SOCKET: nobody listens, nothing to report. */
  if (r < 0 && !notify->failed) {
    notify->failed = TRUE;
    g_warning ("cannot notify the service manager on NOTIFY_SOCKET=%s: %s (later failures are not logged)",
               g_getenv ("NOTIFY_SOCKET"), g_strerror (-r));
  }
}

static guint64
watchdog_usec (void)
{
  uint64_t usec = 0;

  /* Also checks WATCHDOG_PID: a child started by the daemon ignores it. */
  return sd_watchdog_enabled (0, &usec) > 0 ? usec : 0;
}
#else
static void
notify_send (TrNotify *notify, const char *message)
{
  (void) notify;
  (void) message;
}

static guint64
watchdog_usec (void)
{
  return 0;
}
#endif

gboolean
tr_notify_supported (void)
{
#ifdef TR_HAVE_LIBSYSTEMD
  return TRUE;
#else
  return FALSE;
#endif
}

static gboolean
on_watchdog (gpointer data)
{
  notify_send (data, "WATCHDOG=1");
  return G_SOURCE_CONTINUE;
}

TrNotify *
tr_notify_new (GMainContext *context)
{
  TrNotify *notify = g_new0 (TrNotify, 1);
  guint64 period_usec = watchdog_usec ();

  if (!tr_notify_supported () && g_getenv ("NOTIFY_SOCKET") != NULL)
    g_message ("built without libsystemd: NOTIFY_SOCKET is ignored (no READY=1, STATUS= or WATCHDOG=1 for the "
               "service manager; use Type=simple, or rebuild with libsystemd-dev installed)");
  if (period_usec > 0) {
    /* Half the period, as sd_watchdog_enabled(3) advises: one late turn of
     * a busy loop must not get a healthy node killed. */
    guint interval_ms = (guint) MAX (period_usec / 2000, 1);

    notify->watchdog = g_timeout_source_new (interval_ms);
    g_source_set_callback (notify->watchdog, on_watchdog, notify, NULL);
    g_source_set_name (notify->watchdog, "tr-notify-watchdog");
    g_source_attach (notify->watchdog, context);
    g_message ("service manager watchdog: keep-alive every %u ms (WatchdogSec=%" G_GUINT64_FORMAT " ms)",
               interval_ms, period_usec / 1000);
  }
  return notify;
}

/* STATUS= ends at the first newline; keep the whole line readable. */
static char *
status_line (const char *status)
{
  char *line = g_strdup (status);

  g_strdelimit (line, "\r\n", ' ');
  return line;
}

void
tr_notify_ready (TrNotify *notify, const char *status)
{
  g_autofree char *line = NULL;
  g_autofree char *message = NULL;

  g_return_if_fail (notify != NULL);

  if (status == NULL) {
    notify_send (notify, "READY=1");
    return;
  }
  line = status_line (status);
  message = g_strdup_printf ("READY=1\nSTATUS=%s", line);
  notify_send (notify, message);
}

void
tr_notify_reloading (TrNotify *notify)
{
  g_autofree char *message = NULL;

  g_return_if_fail (notify != NULL);

  /* MONOTONIC_USEC (CLOCK_MONOTONIC, as g_get_monotonic_time on Linux)
   * lets systemd >= 253 tell this reload from an earlier one. */
  message = g_strdup_printf ("RELOADING=1\nSTATUS=reloading the configuration\nMONOTONIC_USEC=%" G_GINT64_FORMAT,
                             g_get_monotonic_time ());
  notify_send (notify, message);
}

void
tr_notify_stopping (TrNotify *notify)
{
  g_return_if_fail (notify != NULL);

  /* The watchdog timer keeps running: the shutdown turns the loop while it
   * drains the answers still owed (tr_daemon.c). */
  notify_send (notify, "STOPPING=1\nSTATUS=shutting down");
}

void
tr_notify_free (TrNotify *notify)
{
  if (notify == NULL)
    return;
  if (notify->watchdog != NULL) {
    g_source_destroy (notify->watchdog);
    g_source_unref (notify->watchdog);
  }
  g_free (notify);
}
