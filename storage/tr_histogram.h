/* tr_histogram.h - a histogram with fixed buckets and atomic counts, the one
 * histogram type of thriftrouter (commit latency, batch size, fdatasync
 * latency in the store; delivery latency per endpoint in push), exported by
 * router/metrics/ in the Prometheus format.
 *
 * A histogram counts observations (integers in the unit of its bounds:
 * microseconds, RPCs) in buckets given by a constant table of inclusive
 * upper bounds, plus a last bucket for everything above the last bound
 * (Prometheus' le="+Inf").  Observing is a binary search over the bounds
 * and two relaxed atomic additions: no lock, so the thread that owns a hot
 * path (the ingress loop's commit, the push thread) pays a few nanoseconds
 * and a reader on another thread never makes it wait.
 *
 * A snapshot reads each count atomically but not all of them at one
 * instant: an observation made during the snapshot may be in its bucket
 * and not yet in ->sum.  Counts only grow, so a snapshot is never less than
 * an earlier one (what Prometheus needs of a counter).
 *
 * Threads: tr_histogram_observe() and tr_histogram_snapshot() from any
 * thread at any time; tr_histogram_init() before the histogram is shared.
 */
#pragma once

#include <glib.h>
#include <stdatomic.h>

G_BEGIN_DECLS

/* Buckets of a histogram at most: the bounds plus the +Inf bucket. */
#define TR_HISTOGRAM_MAX_BUCKETS 32

/* Latency in microseconds, log2 buckets: bucket i holds 2^i .. 2^(i+1) - 1
 * (bucket 0 also 0), the last one everything from 2^31 us (36 min) on.
 * The store's commit and fdatasync latency (TR_HISTOGRAM_MAX_BUCKETS
 * buckets, what tr-admin status reads its p50/p99 from). */
extern const guint64 tr_histogram_bounds_latency_us[TR_HISTOGRAM_MAX_BUCKETS - 1];
/* Every other bound of the above from 1 ms (1023 us) to 18 min: an
 * endpoint's delivery latency, 12 buckets per endpoint. */
extern const guint64 tr_histogram_bounds_delivery_us[11];
/* Counts by powers of two, 1 .. 65536: RPCs per group commit. */
extern const guint64 tr_histogram_bounds_count[17];

/* A plain struct so that it can be embedded in the object that observes;
 * its fields are only touched through the functions below. */
typedef struct {
  const guint64 *bounds; /* (transfer none) a constant table, ascending */
  guint n_bounds;        /* buckets = n_bounds + 1 */
  _Atomic guint64 counts[TR_HISTOGRAM_MAX_BUCKETS];
  _Atomic guint64 sum;
} TrHistogram;

typedef struct {
  const guint64 *bounds; /* (transfer none) the histogram's table */
  guint n_bounds;
  guint64 counts[TR_HISTOGRAM_MAX_BUCKETS]; /* per bucket (not cumulative), n_bounds + 1 used */
  guint64 sum;                              /* of every observed value */
} TrHistogramSnapshot;

/* tr_histogram_init:
 * Empties @histogram and gives it @bounds (@n_bounds ascending inclusive
 * upper bounds, 1 <= @n_bounds < TR_HISTOGRAM_MAX_BUCKETS), which must
 * outlive it (use the tables above or another constant table). */
void tr_histogram_init (TrHistogram *histogram, const guint64 *bounds, guint n_bounds);

/* Counts @value in its bucket and adds it to the sum.  Any thread. */
void tr_histogram_observe (TrHistogram *histogram, guint64 value);

/* Copies the counts and the sum into @snapshot_out.  Any thread. */
void tr_histogram_snapshot (const TrHistogram *histogram, TrHistogramSnapshot *snapshot_out);

/* Returns: the number of observations in @snapshot (its buckets' total). */
guint64 tr_histogram_snapshot_count (const TrHistogramSnapshot *snapshot);

G_END_DECLS
