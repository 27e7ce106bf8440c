/* tr_metrics_text.c - the Prometheus text exposition format (see
 * tr_metrics_text.h). */
#include "tr_metrics_text.h"

#include <math.h>

void
tr_metrics_text_escape_label (GString *out, const char *value)
{
  for (const char *p = value; *p != '\0'; p++) {
    if (*p == '\\')
      g_string_append (out, "\\\\");
    else if (*p == '"')
      g_string_append (out, "\\\"");
    else if (*p == '\n')
      g_string_append (out, "\\n");
    else
      g_string_append_c (out, *p);
  }
}

void
tr_metrics_text_family (GString *out, const char *name, const char *type, const char *help)
{
  g_string_append_printf (out, "# HELP %s ", name);
  /* HELP escapes only \ and newline (a " stays as it is). */
  for (const char *p = help; *p != '\0'; p++) {
    if (*p == '\\')
      g_string_append (out, "\\\\");
    else if (*p == '\n')
      g_string_append (out, "\\n");
    else
      g_string_append_c (out, *p);
  }
  g_string_append_printf (out, "\n# TYPE %s %s\n", name, type);
}

/* name{a="x",b="y"  -- without the closing brace, so that "le" can follow;
 * *@open_out: whether a brace was opened. */
static void
begin_sample (GString *out, const char *name, const char *suffix, const char *const *labels, gboolean *open_out)
{
  g_string_append (out, name);
  g_string_append (out, suffix);
  *open_out = FALSE;
  for (guint i = 0; labels != NULL && labels[i] != NULL && labels[i + 1] != NULL; i += 2) {
    g_string_append_c (out, *open_out ? ',' : '{');
    *open_out = TRUE;
    g_string_append_printf (out, "%s=\"", labels[i]);
    tr_metrics_text_escape_label (out, labels[i + 1]);
    g_string_append_c (out, '"');
  }
}

static void
end_labels (GString *out, gboolean open)
{
  g_string_append (out, open ? "} " : " ");
}

/* @value / 10^@decimals as an exact decimal: "0.0015", "3", "-2.5". */
static void
append_fixed (GString *out, gint64 value, guint decimals)
{
  guint64 magnitude = value < 0 ? (guint64) 0 - (guint64) value : (guint64) value;
  guint64 scale = 1;
  guint64 fraction;
  char digits[24];
  int len;

  for (guint i = 0; i < decimals; i++)
    scale *= 10;
  if (value < 0)
    g_string_append_c (out, '-');
  g_string_append_printf (out, "%" G_GUINT64_FORMAT, magnitude / scale);
  fraction = magnitude % scale;
  if (fraction == 0)
    return;
  len = g_snprintf (digits, sizeof digits, "%0*" G_GUINT64_FORMAT, (int) decimals, fraction);
  while (len > 0 && digits[len - 1] == '0')
    digits[--len] = '\0';
  g_string_append_printf (out, ".%s", digits);
}

void
tr_metrics_text_sample_u64 (GString *out, const char *name, const char *const *labels, guint64 value)
{
  gboolean open;

  begin_sample (out, name, "", labels, &open);
  end_labels (out, open);
  g_string_append_printf (out, "%" G_GUINT64_FORMAT "\n", value);
}

void
tr_metrics_text_sample_double (GString *out, const char *name, const char *const *labels, double value)
{
  char text[G_ASCII_DTOSTR_BUF_SIZE];
  gboolean open;

  begin_sample (out, name, "", labels, &open);
  end_labels (out, open);
  if (isnan (value))
    g_string_append (out, "NaN\n");
  else if (isinf (value))
    g_string_append (out, value > 0 ? "+Inf\n" : "-Inf\n");
  else
    g_string_append_printf (out, "%s\n", g_ascii_dtostr (text, sizeof text, value));
}

void
tr_metrics_text_sample_fixed (GString *out, const char *name, const char *const *labels, gint64 value,
                              guint decimals)
{
  gboolean open;

  g_return_if_fail (decimals <= 18);

  begin_sample (out, name, "", labels, &open);
  end_labels (out, open);
  append_fixed (out, value, decimals);
  g_string_append_c (out, '\n');
}

void
tr_metrics_text_histogram (GString *out, const char *name, const char *const *labels,
                           const TrHistogramSnapshot *snapshot, guint decimals)
{
  guint64 cumulative = 0;
  gboolean open;

  g_return_if_fail (snapshot != NULL && decimals <= 18);

  for (guint b = 0; b <= snapshot->n_bounds; b++) {
    cumulative += snapshot->counts[b];
    begin_sample (out, name, "_bucket", labels, &open);
    g_string_append (out, open ? ",le=\"" : "{le=\"");
    if (b < snapshot->n_bounds)
      append_fixed (out, (gint64) snapshot->bounds[b], decimals);
    else
      g_string_append (out, "+Inf");
    g_string_append_printf (out, "\"} %" G_GUINT64_FORMAT "\n", cumulative);
  }
  begin_sample (out, name, "_sum", labels, &open);
  end_labels (out, open);
  append_fixed (out, (gint64) MIN (snapshot->sum, (guint64) G_MAXINT64), decimals);
  g_string_append_c (out, '\n');
  begin_sample (out, name, "_count", labels, &open);
  end_labels (out, open);
  g_string_append_printf (out, "%" G_GUINT64_FORMAT "\n", cumulative);
}
