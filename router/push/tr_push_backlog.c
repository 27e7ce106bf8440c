/* tr_push_backlog.c - retention limits of a service's backlog
 * (max_backlog_bytes, max_backlog_age; docs/delivery.md "Backlog limits").
 *
 * Once a second (the poll timer) every endpoint of a service with a limit
 * is measured from its first unacknowledged seqid
 * (tr_rpcstore_backlog_cut()).  When the backlog is over a limit, the
 * seqids before the first one within the limits expire:
 *
 *   1. the range is recorded durably first, as one dead letter of the
 *      service (seqid and rpc id of its first RPC; the reason names the
 *      endpoint, the whole seqid and rpc id range, the limit and the
 *      measure), so nothing is lost silently; if that write fails nothing
 *      moves and the next check tries again;
 *   2. the endpoint's position moves past the range (tr_push__endpoint_move():
 *      like an operator's skip; the connection is closed and reopened, so
 *      what was in flight from the range is not waited for);
 *   3. the endpoint's expired counter grows; retention then frees the
 *      parts no other endpoint needs.
 *
 * Logging: an overflow is the run of checks that find the endpoint over a
 * limit.  Its first range is logged as a warning; further ranges of the
 * same overflow (an endpoint that stays down under steady traffic is cut
 * every second) only at info level, and the end of the overflow (a check
 * that finds the backlog within the limits) as one message summing up the
 * whole range.  Every range is in the dead-letter list either way.
 *
 * Threads: the push thread.
 */
#undef G_LOG_DOMAIN
#define G_LOG_DOMAIN "tr-push"

#include "tr_push_private.h"

/* The overflow of @endpoint (if any) is over: one line for all of it. */
static void
end_overflow (TrPushEndpoint *endpoint)
{
  if (endpoint->overflow_first == 0)
    return;
  if (endpoint->overflow_steps > 1)
    tr_push__log (endpoint, G_LOG_LEVEL_MESSAGE, endpoint->acked + 1,
                  "backlog within its limits again; this overflow expired seqids %" G_GUINT64_FORMAT "..%"
                  G_GUINT64_FORMAT " (%" G_GUINT64_FORMAT " rpcs in %u ranges, listed by tr-admin dead-letters)",
                  endpoint->overflow_first, endpoint->overflow_last,
                  endpoint->overflow_last - endpoint->overflow_first + 1, endpoint->overflow_steps);
  endpoint->overflow_first = 0;
  endpoint->overflow_last = 0;
  endpoint->overflow_steps = 0;
}

/* "backlog N bytes > max_backlog_bytes L" or "oldest unacknowledged rpc
 * N s old > max_backlog_age L". */
static char *
describe_excess (const TrPushService *service, const TrBacklogCut *cut)
{
  if (cut->excess == TR_BACKLOG_BYTES)
    return g_strdup_printf ("backlog %" G_GUINT64_FORMAT " bytes > max_backlog_bytes %" G_GUINT64_FORMAT,
                            cut->bytes, service->limits.max_bytes);
  return g_strdup_printf ("oldest unacknowledged rpc %" G_GINT64_FORMAT " s old > max_backlog_age %" G_GINT64_FORMAT
                          " s",
                          cut->age_us / G_TIME_SPAN_SECOND, service->limits.max_age_us / G_TIME_SPAN_SECOND);
}

/* Records seqids @first..@last of @endpoint as expired (durably) and moves
 * the endpoint past them.  FALSE (nothing moved) if the record failed. */
static gboolean
expire (TrPushEndpoint *endpoint, guint64 first, guint64 last, const TrBacklogCut *cut)
{
  TrPushService *service = endpoint->service;
  TrRpcStore *store = endpoint->push->store;
  g_autoptr (GError) error = NULL;
  g_autofree char *excess = describe_excess (service, cut);
  g_autofree char *reason = NULL;
  guint64 first_rpc = 0, last_rpc = 0;
  guint64 count = last - first + 1;

  /* Both are stored (first >= the first stored seqid, last < the head); a
   * failed lookup only leaves 0 in the text. */
  tr_rpcstore_service_lookup (store, service->service_id, first, &first_rpc, NULL);
  tr_rpcstore_service_lookup (store, service->service_id, last, &last_rpc, NULL);
  reason = g_strdup_printf ("expired for endpoint %s: seqids %" G_GUINT64_FORMAT "..%" G_GUINT64_FORMAT
                            " (rpc ids %" G_GUINT64_FORMAT "..%" G_GUINT64_FORMAT ", %" G_GUINT64_FORMAT
                            " rpcs) not delivered: %s",
                            endpoint->id, first, last, first_rpc, last_rpc, count, excess);
  if (!tr_rpcstore_add_dead_letter (store, service->service_id, first, first_rpc, reason, &error)) {
    guint suppressed = 0;
    if (tr_net_log_limit_admit (endpoint->fail_log, "expire", &suppressed)) {
      g_autofree char *suffix = tr_net_log_limit_suffix (endpoint->fail_log, suppressed);
      tr_push__log (endpoint, G_LOG_LEVEL_WARNING, first,
                    "cannot record the expiry of seqids %" G_GUINT64_FORMAT "..%" G_GUINT64_FORMAT
                    ", keeping them (tried again every second): %s%s",
                    first, last, error->message, suffix);
    }
    return FALSE;
  }
  tr_push__log (endpoint, endpoint->overflow_first == 0 ? G_LOG_LEVEL_WARNING : G_LOG_LEVEL_INFO, first,
                "%s; moved to seqid %" G_GUINT64_FORMAT " (recorded as dead letter, tr-admin dead-letters %s)",
                reason, last + 1, service->name);
  if (endpoint->overflow_first == 0)
    endpoint->overflow_first = first;
  endpoint->overflow_last = last;
  endpoint->overflow_steps++;
  endpoint->expired += count;
  tr_push__endpoint_move (endpoint, last + 1);
  return TRUE;
}

static void
check_endpoint (TrPushEndpoint *endpoint, gint64 now_us)
{
  TrPushService *service = endpoint->service;
  g_autoptr (GError) error = NULL;
  TrBacklogCut cut;
  guint suppressed = 0;

  if (!tr_rpcstore_backlog_cut (endpoint->push->store, service->service_id, endpoint->acked + 1, &service->limits,
                                now_us, &cut, &error)) {
    /* A read failing now (retention racing the check) is retried next second. */
    if (tr_net_log_limit_admit (endpoint->fail_log, "backlog", &suppressed)) {
      g_autofree char *suffix = tr_net_log_limit_suffix (endpoint->fail_log, suppressed);
      tr_push__log (endpoint, G_LOG_LEVEL_WARNING, endpoint->acked + 1, "cannot measure the backlog: %s%s",
                    error->message, suffix);
    }
    return;
  }
  if (cut.excess == TR_BACKLOG_WITHIN || cut.cut <= endpoint->acked + 1) {
    end_overflow (endpoint);
    return;
  }
  expire (endpoint, endpoint->acked + 1, cut.cut - 1, &cut);
}

void
tr_push__check_backlogs (TrPush *push)
{
  gint64 now_us = g_get_real_time (); /* commit times are wall-clock */

  for (guint s = 0; s < push->services->len; s++) {
    TrPushService *service = g_ptr_array_index (push->services, s);
    gboolean limited = service->limits.max_bytes > 0 || service->limits.max_age_us > 0;
    for (guint i = 0; i < service->endpoints->len; i++) {
      TrPushEndpoint *endpoint = g_ptr_array_index (service->endpoints, i);
      if (limited)
        check_endpoint (endpoint, now_us);
      else
        end_overflow (endpoint); /* a reload turned the limits off */
    }
  }
}
