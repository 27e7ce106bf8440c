/* tr_rpcstore_space.c - the free-space guard of the RPC store
 * (tr_rpcstore_set_min_free_space()).
 *
 * Why a guard and not only ENOSPC: when the data file cannot be written the
 * store fails, reopens every 500 ms and refuses everything meanwhile, and
 * the same full filesystem also holds the endpoints' send state, the
 * checkpoint, the DoubleWriteBuffer journal and the dead letters, which
 * delivery and retention need to make progress and free space again.
 * Refusing new producer writes while a margin is left keeps all of those
 * working: the store stays healthy, endpoints catch up, retention deletes
 * parts and writes resume by themselves.
 *
 * Cost: one statvfs() per TR_RPCSTORE_SPACE_CHECK_MS, made by the thread
 * that commits (under ->commit_lock, before the batch), never one per RPC;
 * between two, the bytes appended to the data file since the last one are
 * counted as used, and once that estimate falls below the limit every batch
 * measures (statvfs is a microsecond), so a fast producer cannot write far
 * past the limit inside one interval (measured: a 12 MiB tmpfs with a 3 MiB
 * limit was left with under 1 MiB free when only the interval decided).
 *
 * Threads: everything here runs with ->commit_lock held.
 */
#include "tr_rpcstore_private.h"
#include "tr_storage_error.h"

/* The limit in bytes for a filesystem of @total bytes. */
static guint64
space_limit (TrRpcStore *store, guint64 total)
{
  return MAX (store->min_free_bytes, total / 100 * store->min_free_percent);
}

/* In MiB with one decimal, with a plain space (g_format_size() puts a
 * no-break space in, which grep and log searches trip over). */
static char *
format_mib (guint64 bytes)
{
  return g_strdup_printf ("%.1f MiB", (double) bytes / (1 << 20));
}

static char *
describe_limit (TrRpcStore *store, guint64 limit)
{
  g_autofree char *size = format_mib (limit);

  if (store->min_free_percent > 0)
    return g_strdup_printf ("%u%% of the filesystem (%s)", store->min_free_percent, size);
  return g_steal_pointer (&size);
}

/* A failed statvfs() does not refuse anything (the guard is a margin, not
 * the last line: ENOSPC still is); it is logged once per distinct error. */
static void
report_measure_error (TrRpcStore *store, const GError *error)
{
  if (error == NULL) {
    g_clear_pointer (&store->space_error, g_free);
    return;
  }
  if (g_strcmp0 (store->space_error, error->message) != 0)
    g_warning ("min_free_space: cannot measure the free space, the guard is off until it can: %s",
               error->message);
  g_free (store->space_error);
  store->space_error = g_strdup (error->message);
}

static void
measure (TrRpcStore *store)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *avail_text = NULL;
  g_autofree char *limit_text = NULL;
  guint64 avail = 0, total = 0, limit;

  if (!tr_io_free_space (store->io, store->dir, &avail, &total, &error)) {
    report_measure_error (store, error);
    return;
  }
  report_measure_error (store, NULL);
  limit = space_limit (store, total);
  store->space_avail = avail;
  store->space_limit = limit;
  store->space_data_end = store->data_end;
  avail_text = format_mib (avail);
  limit_text = describe_limit (store, limit);
  if (avail < limit) {
    gboolean was_refusing = store->space_refusal != NULL;
    g_clear_error (&store->space_refusal);
    g_set_error (&store->space_refusal, TR_STORAGE_ERROR, TR_STORAGE_ERROR_SPACE_LOW,
                 "free space on the filesystem of %s is %s (%" G_GUINT64_FORMAT " bytes), below min_free_space "
                 "%s: new writes are refused until space is freed",
                 store->dir, avail_text, avail, limit_text);
    if (!was_refusing)
      g_log_structured (G_LOG_DOMAIN, G_LOG_LEVEL_WARNING, "TR_FILE", store->dir, "MESSAGE",
                        "%s; delivery, acknowledgements and checkpoints go on (docs/operations.md, Disk full)",
                        store->space_refusal->message);
  } else if (store->space_refusal != NULL) {
    g_clear_error (&store->space_refusal);
    g_log_structured (G_LOG_DOMAIN, G_LOG_LEVEL_MESSAGE, "TR_FILE", store->dir, "MESSAGE",
                      "free space on the filesystem of %s is %s again, above min_free_space %s: accepting writes",
                      store->dir, avail_text, limit_text);
  }
}

gboolean
tr_rpcstore__check_space (TrRpcStore *store, GError **error)
{
  guint64 appended;
  gint64 now;

  if (store->min_free_bytes == 0 && store->min_free_percent == 0)
    return TRUE;
  now = g_get_monotonic_time ();
  appended = store->data_end > store->space_data_end ? store->data_end - store->space_data_end : 0;
  if (store->space_checked_us == 0
      || now - store->space_checked_us >= (gint64) TR_RPCSTORE_SPACE_CHECK_MS * G_TIME_SPAN_MILLISECOND
      || (store->space_refusal == NULL && store->space_avail < store->space_limit + appended)) {
    store->space_checked_us = now;
    measure (store);
  }
  if (store->space_refusal != NULL) {
    g_propagate_error (error, g_error_copy (store->space_refusal));
    return FALSE;
  }
  return TRUE;
}

void
tr_rpcstore_set_min_free_space (TrRpcStore *store, guint64 min_bytes, guint min_percent)
{
  g_return_if_fail (store != NULL);

  g_mutex_lock (&store->commit_lock);
  store->min_free_bytes = min_bytes;
  store->min_free_percent = MIN (min_percent, 100);
  store->space_checked_us = 0;
  if (min_bytes == 0 && min_percent == 0 && store->space_refusal != NULL) {
    g_clear_error (&store->space_refusal);
    g_message ("min_free_space is off now: accepting writes");
  }
  g_mutex_unlock (&store->commit_lock);
}
