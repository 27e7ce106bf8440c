/* Tests for the Prometheus text exposition writer
 * (router/metrics/tr_metrics_text.h): HELP/TYPE lines, label and HELP
 * escaping, numbers without the locale, exact fixed-point values and the
 * histogram samples (cumulative buckets, +Inf, _sum, _count). */
#include "tr_metrics_text.h"

#include <criterion/criterion.h>
#include <locale.h>

Test (tr_metrics_text, family_and_plain_samples)
{
  g_autoptr (GString) out = g_string_new (NULL);
  const char *labels[] = { "service", "books", "endpoint", "a", NULL };

  tr_metrics_text_family (out, "thriftrouter_x_total", "counter", "RPCs \"in\" C:\\dir\nsecond line.");
  tr_metrics_text_sample_u64 (out, "thriftrouter_x_total", NULL, G_MAXUINT64);
  tr_metrics_text_sample_u64 (out, "thriftrouter_x_total", labels, 0);
  cr_assert_str_eq (out->str, "# HELP thriftrouter_x_total RPCs \"in\" C:\\\\dir\\nsecond line.\n"
                              "# TYPE thriftrouter_x_total counter\n"
                              "thriftrouter_x_total 18446744073709551615\n"
                              "thriftrouter_x_total{service=\"books\",endpoint=\"a\"} 0\n");
}

Test (tr_metrics_text, label_values_are_escaped)
{
  g_autoptr (GString) out = g_string_new (NULL);
  const char *labels[] = { "reason", "say \"hi\"\\\nbye", NULL };

  tr_metrics_text_sample_u64 (out, "m", labels, 1);
  cr_assert_str_eq (out->str, "m{reason=\"say \\\"hi\\\"\\\\\\nbye\"} 1\n");
}

Test (tr_metrics_text, doubles_and_their_special_values)
{
  g_autoptr (GString) out = g_string_new (NULL);

  tr_metrics_text_sample_double (out, "a", NULL, 2.5);
  tr_metrics_text_sample_double (out, "b", NULL, 1.0 / 0.0);
  tr_metrics_text_sample_double (out, "c", NULL, -1.0 / 0.0);
  tr_metrics_text_sample_double (out, "d", NULL, 0.0 / 0.0);
  cr_assert_str_eq (out->str, "a 2.5\nb +Inf\nc -Inf\nd NaN\n");
}

/* A decimal comma would make the line unreadable to Prometheus. */
Test (tr_metrics_text, doubles_ignore_the_locale)
{
  g_autoptr (GString) out = g_string_new (NULL);

  if (setlocale (LC_NUMERIC, "de_DE.UTF-8") == NULL)
    cr_skip_test ("no de_DE.UTF-8 locale on this machine (locales package)");
  tr_metrics_text_sample_double (out, "a", NULL, 2.5);
  setlocale (LC_NUMERIC, "C");
  cr_assert_str_eq (out->str, "a 2.5\n");
}

Test (tr_metrics_text, fixed_point_is_exact)
{
  g_autoptr (GString) out = g_string_new (NULL);

  tr_metrics_text_sample_fixed (out, "a", NULL, 1500, 6);
  tr_metrics_text_sample_fixed (out, "b", NULL, 1, 6);
  tr_metrics_text_sample_fixed (out, "c", NULL, 3000000, 6);
  tr_metrics_text_sample_fixed (out, "d", NULL, -2500000, 6);
  tr_metrics_text_sample_fixed (out, "e", NULL, 1796303318245351, 6);
  tr_metrics_text_sample_fixed (out, "f", NULL, 42, 0);
  cr_assert_str_eq (out->str, "a 0.0015\nb 0.000001\nc 3\nd -2.5\ne 1796303318.245351\nf 42\n");
}

Test (tr_metrics_text, histogram_buckets_are_cumulative_and_end_with_inf)
{
  static const guint64 bounds[] = { 1023, 4095 };
  g_autoptr (GString) out = g_string_new (NULL);
  const char *labels[] = { "service", "s", "endpoint", "e\"1", NULL };
  TrHistogram h;
  TrHistogramSnapshot s;

  tr_histogram_init (&h, bounds, G_N_ELEMENTS (bounds));
  tr_histogram_observe (&h, 500);
  tr_histogram_observe (&h, 2000);
  tr_histogram_observe (&h, 3000);
  tr_histogram_observe (&h, 1000000);
  tr_histogram_snapshot (&h, &s);
  tr_metrics_text_histogram (out, "lat_seconds", labels, &s, 6);
  tr_metrics_text_histogram (out, "n", NULL, &s, 0);
  cr_assert_str_eq (out->str,
                    "lat_seconds_bucket{service=\"s\",endpoint=\"e\\\"1\",le=\"0.001023\"} 1\n"
                    "lat_seconds_bucket{service=\"s\",endpoint=\"e\\\"1\",le=\"0.004095\"} 3\n"
                    "lat_seconds_bucket{service=\"s\",endpoint=\"e\\\"1\",le=\"+Inf\"} 4\n"
                    "lat_seconds_sum{service=\"s\",endpoint=\"e\\\"1\"} 1.0055\n"
                    "lat_seconds_count{service=\"s\",endpoint=\"e\\\"1\"} 4\n"
                    "n_bucket{le=\"1023\"} 1\n"
                    "n_bucket{le=\"4095\"} 3\n"
                    "n_bucket{le=\"+Inf\"} 4\n"
                    "n_sum 1005500\n"
                    "n_count 4\n");
}
