/* Tests for the histogram (storage/tr_histogram.h): buckets by inclusive
 * upper bound, the +Inf bucket, the sum, and counts from several threads. */
#include "tr_histogram.h"

#include <criterion/criterion.h>

static const guint64 bounds[] = { 10, 100, 1000 };

Test (tr_histogram, values_land_in_the_first_bucket_whose_bound_they_do_not_exceed)
{
  TrHistogram h;
  TrHistogramSnapshot s;
  const guint64 values[] = { 0, 10, 11, 100, 101, 1000, 1001, G_MAXUINT32 };

  tr_histogram_init (&h, bounds, G_N_ELEMENTS (bounds));
  for (guint i = 0; i < G_N_ELEMENTS (values); i++)
    tr_histogram_observe (&h, values[i]);
  tr_histogram_snapshot (&h, &s);
  cr_assert_eq (s.n_bounds, 3);
  cr_assert_eq (s.bounds, bounds);
  cr_assert_eq (s.counts[0], 2); /* 0, 10 */
  cr_assert_eq (s.counts[1], 2); /* 11, 100 */
  cr_assert_eq (s.counts[2], 2); /* 101, 1000 */
  cr_assert_eq (s.counts[3], 2); /* +Inf: 1001, 2^32 - 1 */
  cr_assert_eq (tr_histogram_snapshot_count (&s), 8);
  cr_assert_eq (s.sum, 0 + 10 + 11 + 100 + 101 + 1000 + 1001 + (guint64) G_MAXUINT32);
}

/* The log2 latency table keeps the store's old buckets (tr-admin status
 * reads p50/p99 from them): bucket i holds 2^i .. 2^(i+1) - 1 us. */
Test (tr_histogram, latency_table_is_log2_microseconds)
{
  TrHistogram h;
  TrHistogramSnapshot s;

  tr_histogram_init (&h, tr_histogram_bounds_latency_us, G_N_ELEMENTS (tr_histogram_bounds_latency_us));
  tr_histogram_observe (&h, 1);
  tr_histogram_observe (&h, 2);
  tr_histogram_observe (&h, 3);
  tr_histogram_observe (&h, 1024);
  tr_histogram_observe (&h, G_GUINT64_CONSTANT (1) << 40);
  tr_histogram_snapshot (&h, &s);
  cr_assert_eq (s.counts[0], 1);
  cr_assert_eq (s.counts[1], 2);
  cr_assert_eq (s.counts[10], 1);
  cr_assert_eq (s.counts[TR_HISTOGRAM_MAX_BUCKETS - 1], 1);
}

typedef struct {
  TrHistogram *h;
  guint n;
} Worker;

static gpointer
observe_many (gpointer data)
{
  Worker *w = data;

  for (guint i = 0; i < w->n; i++)
    tr_histogram_observe (w->h, i % 2000);
  return NULL;
}

/* No lock: four threads observing at once lose no count. */
Test (tr_histogram, concurrent_observers_lose_nothing, .timeout = 60)
{
  TrHistogram h;
  TrHistogramSnapshot s;
  Worker w = { &h, 200000 };
  GThread *threads[4];

  tr_histogram_init (&h, bounds, G_N_ELEMENTS (bounds));
  for (guint i = 0; i < G_N_ELEMENTS (threads); i++)
    threads[i] = g_thread_new ("observer", observe_many, &w);
  for (guint i = 0; i < G_N_ELEMENTS (threads); i++)
    g_thread_join (threads[i]);
  tr_histogram_snapshot (&h, &s);
  cr_assert_eq (tr_histogram_snapshot_count (&s), 4 * 200000);
  /* Of every 2000 values 0..1999, 999 (1001..1999) are above the last bound. */
  cr_assert_eq (s.counts[3], 4 * 100 * 999);
}
