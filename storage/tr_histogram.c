/* tr_histogram.c - fixed buckets, atomic counts (see tr_histogram.h).
 *
 * Relaxed atomics: each count and the sum is a counter of its own, nobody
 * orders other memory by them, and on x86-64 a relaxed fetch-add is one
 * locked instruction. */
#include "tr_histogram.h"

#include <string.h>

#define B(i) ((G_GUINT64_CONSTANT (1) << (i)) - 1)

const guint64 tr_histogram_bounds_latency_us[TR_HISTOGRAM_MAX_BUCKETS - 1] = {
  B (1),  B (2),  B (3),  B (4),  B (5),  B (6),  B (7),  B (8),  B (9),  B (10), B (11),
  B (12), B (13), B (14), B (15), B (16), B (17), B (18), B (19), B (20), B (21), B (22),
  B (23), B (24), B (25), B (26), B (27), B (28), B (29), B (30), B (31),
};

const guint64 tr_histogram_bounds_delivery_us[11] = {
  B (10), B (12), B (14), B (16), B (18), B (20), B (22), B (24), B (26), B (28), B (30),
};

const guint64 tr_histogram_bounds_count[17] = {
  1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536,
};

void
tr_histogram_init (TrHistogram *histogram, const guint64 *bounds, guint n_bounds)
{
  g_return_if_fail (histogram != NULL && bounds != NULL);
  g_return_if_fail (n_bounds >= 1 && n_bounds < TR_HISTOGRAM_MAX_BUCKETS);

  histogram->bounds = bounds;
  histogram->n_bounds = n_bounds;
  for (guint i = 0; i < TR_HISTOGRAM_MAX_BUCKETS; i++)
    atomic_init (&histogram->counts[i], 0);
  atomic_init (&histogram->sum, 0);
}

void
tr_histogram_observe (TrHistogram *histogram, guint64 value)
{
  guint low = 0, high = histogram->n_bounds;

  /* The first bound >= @value; n_bounds (the +Inf bucket) if none. */
  while (low < high) {
    guint mid = (low + high) / 2;
    if (histogram->bounds[mid] < value)
      low = mid + 1;
    else
      high = mid;
  }
  atomic_fetch_add_explicit (&histogram->counts[low], 1, memory_order_relaxed);
  atomic_fetch_add_explicit (&histogram->sum, value, memory_order_relaxed);
}

void
tr_histogram_snapshot (const TrHistogram *histogram, TrHistogramSnapshot *snapshot_out)
{
  g_return_if_fail (histogram != NULL && snapshot_out != NULL);

  memset (snapshot_out, 0, sizeof *snapshot_out);
  snapshot_out->bounds = histogram->bounds;
  snapshot_out->n_bounds = histogram->n_bounds;
  for (guint i = 0; i <= histogram->n_bounds; i++)
    snapshot_out->counts[i] = atomic_load_explicit (&histogram->counts[i], memory_order_relaxed);
  snapshot_out->sum = atomic_load_explicit (&histogram->sum, memory_order_relaxed);
}

guint64
tr_histogram_snapshot_count (const TrHistogramSnapshot *snapshot)
{
  guint64 total = 0;

  for (guint i = 0; i <= snapshot->n_bounds; i++)
    total += snapshot->counts[i];
  return total;
}
