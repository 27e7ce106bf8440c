/* tr_metrics.h - the Prometheus /metrics endpoint of a node
 * (metrics_listen in router.conf; docs/operations.md "Metrics").
 *
 * One metrics thread with its own GMainContext runs a libsoup SoupServer on
 * metrics_listen: HTTP parsing, slow or hostile scrapers (a client that
 * never reads its answer, sends garbage or keeps a connection idle) and the
 * text formatting all stay on that thread, so they never delay a producer
 * on the ingress loop or a push to an endpoint.  At most 32 scraper
 * connections are open at once (more are closed as they arrive): each is a
 * descriptor from the budget producers' connections come from.
 *
 * A scrape reads what the admin thread reads for `tr-admin status` and
 * `endpoints`, with the same functions and locks: tr_rpcstore_get_stats()
 * (store locks, atomic histograms), tr_ingress_get_stats_wait() (asked on
 * the ingress loop, 2 s bound: the ingress samples are left out if it does
 * not answer, and thriftrouter_scrape_partial says so),
 * tr_push_get_stats() (waits for the push thread) and
 * tr_push_endpoint_lag_bytes() (index lookups).  Scrapes less than 200 ms
 * apart get the same text, so a client that scrapes in a loop costs the
 * ingress loop and the push thread at most 5 snapshots a second.  Nothing on a hot path
 * does more for metrics than count in a field its thread owns or in an
 * atomic histogram (tr_histogram.h).
 *
 * Threads: tr_metrics_new(), tr_metrics_get_port() and tr_metrics_free()
 * on the main thread; everything else on the metrics thread.
 */
#pragma once

#include "tr_config.h"
#include "tr_ingress.h"
#include "tr_push.h"
#include "tr_rpcstore.h"

#include <glib.h>

G_BEGIN_DECLS

typedef struct _TrMetrics TrMetrics;

/* What a scrape reads; every pointer is borrowed and must outlive the
 * TrMetrics. */
typedef struct {
  const TrConfig *config;        /* read during tr_metrics_new() only */
  TrRpcStore *store;
  TrPush *push;                  /* (nullable) no endpoint samples without it */
  TrIngress *ingress;            /* (nullable) no producer samples without it */
  GMainContext *ingress_context; /* the loop @ingress runs on */
  TrServerType role;             /* the node's role and epoch (tr_node), as of start-up: */
  guint64 epoch;                 /* they change only with replication, which does not exist yet */
} TrMetricsSources;

/* tr_metrics_new:
 * Listens on config->metrics_host:metrics_port (which must be set) and
 * starts the metrics thread.
 * Returns: (transfer full) (nullable): NULL with @error (G_IO_ERROR
 * "cannot listen on HOST:PORT: ..." naming metrics_listen). */
TrMetrics *tr_metrics_new (const TrMetricsSources *sources, GError **error);

/* The port actually bound (metrics_listen with port 0). */
guint16 tr_metrics_get_port (TrMetrics *metrics);

/* tr_metrics_collect:
 * The exposition text of one scrape (what GET /metrics answers).  Any
 * thread but the push thread and the ingress loop (it waits for both).
 * Returns: (transfer full): free with g_free(). */
char *tr_metrics_collect (TrMetrics *metrics);

/* Stops the metrics thread (a scrape being answered finishes first),
 * closes the listening socket and every scraper connection.  NULL is
 * ignored. */
void tr_metrics_free (TrMetrics *metrics);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (TrMetrics, tr_metrics_free)

G_END_DECLS
