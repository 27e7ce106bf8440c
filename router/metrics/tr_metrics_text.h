/* tr_metrics_text.h - the Prometheus text exposition format (version
 * 0.0.4), written into a GString.
 *
 * https://prometheus.io/docs/instrumenting/exposition_formats/: a family is
 * a "# HELP name text" line, a "# TYPE name type" line and then all of its
 * samples together ("name{label="value",...} number").  HELP text escapes
 * \ and newline; label values escape \, " and newline.  A histogram family
 * "name" has the samples name_bucket{le="..."} (cumulative, ascending, the
 * last le="+Inf"), name_sum and name_count (= the +Inf bucket).
 *
 * Numbers are written without the locale: integers in full, doubles with
 * g_ascii_dtostr() (shortest text that reads back the same), fixed-point
 * values (microseconds written as seconds) exactly as decimals.
 *
 * Labels are given as a NULL-terminated array of name, value pairs
 * ({ "service", "books", "endpoint", "a", NULL }); NULL for none.  Names of
 * metrics and labels are the caller's constants and are not checked.
 *
 * Threads: pure functions on the caller's GString; any thread.
 */
#pragma once

#include "tr_histogram.h"

#include <glib.h>

G_BEGIN_DECLS

/* Writes the HELP and TYPE lines of family @name; @type is "counter",
 * "gauge" or "histogram". */
void tr_metrics_text_family (GString *out, const char *name, const char *type, const char *help);

/* Writes one sample with an integer value. */
void tr_metrics_text_sample_u64 (GString *out, const char *name, const char *const *labels, guint64 value);

/* Writes one sample with a floating point value (NaN and infinities as
 * Prometheus spells them). */
void tr_metrics_text_sample_double (GString *out, const char *name, const char *const *labels, double value);

/* Writes one sample whose value is @value / 10^@decimals, exactly (@value
 * 1500 with @decimals 6 is 0.0015: microseconds as seconds). */
void tr_metrics_text_sample_fixed (GString *out, const char *name, const char *const *labels, gint64 value,
                                   guint decimals);

/* Writes the _bucket, _sum and _count samples of histogram family @name
 * from @snapshot, whose bounds and sum are scaled by 10^-@decimals
 * (@decimals 6: microseconds as seconds; 0: counts).  @labels come before
 * the "le" label. */
void tr_metrics_text_histogram (GString *out, const char *name, const char *const *labels,
                                const TrHistogramSnapshot *snapshot, guint decimals);

/* Appends @value escaped as a label value (\\, \" and \n), without quotes. */
void tr_metrics_text_escape_label (GString *out, const char *value);

G_END_DECLS
