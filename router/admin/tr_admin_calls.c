/* tr_admin_calls.c - the admin calls (status, services, endpoints,
 * set_stop_send, skip, rewind, dump, rpc_id_of, dead_letters, redrive, reload, digest) and what only
 * they use: lookups, rates, the reload and the call table
 * (tr_admin__find_call()).  The server that decodes, authorises and
 * answers them is tr_admin.c; both run on the admin thread.
 *
 * Rates: once a second the admin thread samples the store's stats (head
 * rpc id and the cumulative commit latency histogram) into a ring of
 * ADMIN_RATE_SAMPLES; status compares the live stats with the oldest sample
 * of the last ADMIN_RATE_WINDOW_S seconds.
 */
#undef G_LOG_DOMAIN
#define G_LOG_DOMAIN "tr-admin"

#include "tr_admin_private.h"

#include "tr_dwfile.h"
#include "tr_invoke.h"
#include "tr_reload.h"
#include "tr_router_error.h"
#include "tr_storage_error.h"
#include "tr_thrift_value.h"

#include <string.h>

#define ADMIN_INGRESS_WAIT_US (2 * G_TIME_SPAN_SECOND)
#define ADMIN_MAX_DEAD_LETTERS 10000

/* ---- lookups ---- */

static char *
arg_dup (const Args *args, guint id)
{
  return g_strndup ((const char *) args->str[id], args->str[id] != NULL ? args->str_len[id] : 0);
}

gboolean
tr_admin__refuse (Refusal *refusal, TrAdminCode code, const char *format, ...)
{
  va_list ap;

  va_start (ap, format);
  refusal->code = code;
  refusal->message = g_strdup_vprintf (format, ap);
  va_end (ap);
  return FALSE;
}

static const TrServiceConfig *
find_service (TrAdmin *admin, const char *name, Refusal *refusal)
{
  const TrServiceConfig *service = tr_config_lookup_service (admin->config, name);

  if (service == NULL)
    tr_admin__refuse (refusal, TR_ADMIN_CODE_UNKNOWN_SERVICE, "no service '%s' on this node", name);
  return service;
}

/* (transfer none): in ->config, which the admin thread owns. */
static TrEndpointConfig *
find_endpoint (TrAdmin *admin, const char *service_name, const char *endpoint_id, Refusal *refusal)
{
  const TrServiceConfig *service = find_service (admin, service_name, refusal);
  TrEndpointConfig *endpoint;

  if (service == NULL)
    return NULL;
  if ((endpoint = tr_config_lookup_endpoint (service, endpoint_id)) != NULL)
    return endpoint;
  tr_admin__refuse (refusal, TR_ADMIN_CODE_UNKNOWN_ENDPOINT, "service '%s' has no endpoint '%s'", service_name,
                    endpoint_id);
  return NULL;
}

/* TR_ROUTER_ERROR from push control -> AdminError. */
static gboolean
refuse_error (Refusal *refusal, const GError *error)
{
  TrAdminCode code = TR_ADMIN_CODE_FAILED;

  if (g_error_matches (error, TR_ROUTER_ERROR, TR_ROUTER_ERROR_INVALID))
    code = TR_ADMIN_CODE_OUT_OF_RANGE;
  else if (g_error_matches (error, TR_ROUTER_ERROR, TR_ROUTER_ERROR_NOT_FOUND))
    code = TR_ADMIN_CODE_UNKNOWN_ENDPOINT;
  return tr_admin__refuse (refusal, code, "%s", error->message);
}

/* ---- rates ---- */

static void
take_sample (TrAdmin *admin, RateSample *sample)
{
  TrRpcStoreStats stats;

  tr_rpcstore_get_stats (admin->store, &stats);
  sample->time_us = g_get_monotonic_time ();
  sample->head_rpc_id = stats.head_rpc_id;
  memcpy (sample->latency, stats.commit_latency.counts, sizeof sample->latency);
}

gboolean
tr_admin__on_rate_tick (gpointer user_data)
{
  TrAdmin *admin = user_data;

  take_sample (admin, &admin->samples[admin->next_sample]);
  admin->next_sample = (admin->next_sample + 1) % ADMIN_RATE_SAMPLES;
  return G_SOURCE_CONTINUE;
}

/* Upper bound (us) of the log2 bucket holding quantile @q of @counts. */
static gint64
latency_quantile (const guint64 *counts, guint64 total, double q)
{
  guint64 rank = (guint64) (q * (double) total + 0.999999), seen = 0;

  for (guint b = 0; b < TR_RPCSTORE_LATENCY_BUCKETS; b++) {
    seen += counts[b];
    if (seen >= MAX (rank, 1))
      return (gint64) 1 << (b + 1);
  }
  return 0;
}

/* RPCs/s and commit latency p50/p99 over the last ADMIN_RATE_WINDOW_S
 * seconds (less right after start-up). */
static void
current_rates (TrAdmin *admin, double *rate_out, gint64 *p50_out, gint64 *p99_out)
{
  RateSample now;
  const RateSample *oldest = NULL;
  guint64 diff[TR_RPCSTORE_LATENCY_BUCKETS], total = 0;

  take_sample (admin, &now);
  for (guint i = 0; i < ADMIN_RATE_SAMPLES; i++) {
    const RateSample *s = &admin->samples[i];
    if (s->time_us == 0 || now.time_us - s->time_us > ADMIN_RATE_WINDOW_S * G_TIME_SPAN_SECOND + G_TIME_SPAN_SECOND / 2)
      continue;
    if (oldest == NULL || s->time_us < oldest->time_us)
      oldest = s;
  }
  *rate_out = 0;
  *p50_out = *p99_out = 0;
  if (oldest == NULL || now.time_us <= oldest->time_us)
    return;
  *rate_out = (double) (now.head_rpc_id - oldest->head_rpc_id) * G_TIME_SPAN_SECOND
              / (double) (now.time_us - oldest->time_us);
  for (guint b = 0; b < TR_RPCSTORE_LATENCY_BUCKETS; b++) {
    diff[b] = now.latency[b] - oldest->latency[b];
    total += diff[b];
  }
  if (total > 0) {
    *p50_out = latency_quantile (diff, total, 0.50);
    *p99_out = latency_quantile (diff, total, 0.99);
  }
}

/* ---- calls: each appends its return value as result field 0 (nothing
 * for void) to @result, or fills @refusal and returns FALSE ---- */

static gboolean
call_status (TrAdmin *admin, const Args *args, GByteArray *result, Refusal *refusal)
{
  static const char *const types[] = { "MASTER", "BACKUP", "REPLY" };
  TrRpcStoreStats store;
  TrIngressStats ingress;
  double rate;
  gint64 p50, p99;

  (void) args;
  (void) refusal;
  tr_rpcstore_get_stats (admin->store, &store);
  if (admin->ingress == NULL
      || !tr_ingress_get_stats_wait (admin->ingress, admin->ingress_context,
                                     g_get_monotonic_time () + ADMIN_INGRESS_WAIT_US, &ingress))
    memset (&ingress, 0, sizeof ingress);
  current_rates (admin, &rate, &p50, &p99);
  tr_thrift_write_field_begin (result, TR_TTYPE_STRUCT, 0);
  tr_thrift_write_field_string (result, 1, admin->config->server_id);
  tr_thrift_write_field_string (result, 2, types[admin->config->server_type]);
  tr_thrift_write_field_i64 (result, 3, (gint64) admin->epoch);
  tr_thrift_write_field_i64 (result, 4, (gint64) store.head_rpc_id);
  tr_thrift_write_field_i64 (result, 5, (gint64) store.data_bytes);
  tr_thrift_write_field_i32 (result, 6, (gint32) store.data_parts);
  tr_thrift_write_field_i32 (result, 7, (gint32) ingress.connections);
  tr_thrift_write_field_i64 (result, 8, (gint64) ingress.rpcs_in);
  tr_thrift_write_field_i64 (result, 9, (gint64) ingress.rpcs_committed);
  tr_thrift_write_field_i64 (result, 10, (gint64) (ingress.commit_errors + store.commit_errors));
  tr_thrift_write_field_double (result, 11, rate);
  tr_thrift_write_field_i64 (result, 12, p50);
  tr_thrift_write_field_i64 (result, 13, p99);
  tr_thrift_write_field_i64 (result, 14, (gint64) store.cache_rpcs);
  tr_thrift_write_field_i64 (result, 15, (gint64) store.cache_bytes);
  tr_thrift_write_field_i64 (result, 16, (gint64) store.cache_limit);
  tr_thrift_write_field_i64 (result, 17, (gint64) store.reads_from_cache);
  tr_thrift_write_field_i64 (result, 18, (gint64) store.reads_from_disk);
  tr_thrift_write_field_bool (result, 19, admin->fenced);
  tr_thrift_write_field_stop (result);
  return TRUE;
}

static gboolean
call_services (TrAdmin *admin, const Args *args, GByteArray *result, Refusal *refusal)
{
  GPtrArray *services = admin->config->services;

  (void) args;
  (void) refusal;
  tr_thrift_write_field_begin (result, TR_TTYPE_LIST, 0);
  tr_thrift_write_list_begin (result, TR_TTYPE_STRUCT, services->len);
  for (guint i = 0; i < services->len; i++) {
    const TrServiceConfig *service = g_ptr_array_index (services, i);
    gint id = tr_rpcstore_service_id (admin->store, service->name);
    tr_thrift_write_field_string (result, 1, service->name);
    tr_thrift_write_field_begin (result, TR_TTYPE_LIST, 2);
    tr_thrift_write_list_begin (result, TR_TTYPE_STRING, service->rpcs->len);
    for (guint r = 0; r < service->rpcs->len; r++)
      tr_thrift_write_string (result, g_ptr_array_index (service->rpcs, r));
    tr_thrift_write_field_i64 (result, 3, id < 0 ? 0 : (gint64) tr_rpcstore_service_head (admin->store, (guint32) id));
    tr_thrift_write_field_i64 (result, 4,
                               id < 0 ? 0 : (gint64) tr_rpcstore_service_first (admin->store, (guint32) id));
    tr_thrift_write_field_i32 (result, 5, (gint32) service->endpoints->len);
    tr_thrift_write_field_stop (result);
  }
  return TRUE;
}

/* The refusal of a call that steers push on a BACKUP, which has none. */
static gboolean
refuse_held (Refusal *refusal)
{
  return tr_admin__refuse (refusal, TR_ADMIN_CODE_FAILED,
                           "this node is a BACKUP: it pushes nothing while its master lives (endpoints are held "
                           "until promotion), so there is no send state to change");
}

/* A replication link's lag in bytes: the global store from the replica's
 * acknowledged id + 1 to the master's head; -1 if unreadable. */
static gint64
link_lag_bytes (TrAdmin *admin, const TrPushEndpointStats *e)
{
  guint64 first_offset, head_offset;
  guint32 first_len, head_len;

  if (e->acked >= e->head)
    return 0;
  if (!tr_rpcstore_locate (admin->store, e->acked + 1, &first_offset, &first_len, NULL)
      || !tr_rpcstore_locate (admin->store, e->head, &head_offset, &head_len, NULL)
      || head_offset + head_len < first_offset)
    return -1;
  return (gint64) (head_offset + head_len - first_offset);
}

static gboolean
is_replica_service (const TrAdmin *admin, const char *name)
{
  for (guint i = 0; i < admin->config->replicas->len; i++)
    if (strcmp (((const TrServiceConfig *) g_ptr_array_index (admin->config->replicas, i))->name, name) == 0)
      return TRUE;
  return FALSE;
}

static gboolean
call_endpoints (TrAdmin *admin, const Args *args, GByteArray *result, Refusal *refusal)
{
  g_autofree char *service = arg_dup (args, 2);
  g_autoptr (GArray) stats = NULL;
  g_autoptr (GArray) links = NULL;
  struct TrAdminLinks *source = g_atomic_pointer_get (&admin->links);
  guint count = 0;

  if (service[0] != '\0' && !is_replica_service (admin, service) && find_service (admin, service, refusal) == NULL)
    return FALSE;
  /* A BACKUP has no push: its endpoints are held until promotion. */
  stats = admin->push != NULL ? tr_push_get_stats (admin->push) : g_array_new (FALSE, TRUE, sizeof (TrPushEndpointStats));
  links = source != NULL ? source->func (source->user_data) : g_array_new (FALSE, TRUE, sizeof (TrPushEndpointStats));
  for (guint i = 0; i < stats->len + links->len; i++) {
    const TrPushEndpointStats *e = i < stats->len ? &g_array_index (stats, TrPushEndpointStats, i)
                                                  : &g_array_index (links, TrPushEndpointStats, i - stats->len);
    if (service[0] == '\0' || strcmp (e->service, service) == 0)
      count++;
  }
  tr_thrift_write_field_begin (result, TR_TTYPE_LIST, 0);
  tr_thrift_write_list_begin (result, TR_TTYPE_STRUCT, count);
  for (guint i = 0; i < stats->len + links->len; i++) {
    gboolean link = i >= stats->len;
    const TrPushEndpointStats *e = !link ? &g_array_index (stats, TrPushEndpointStats, i)
                                         : &g_array_index (links, TrPushEndpointStats, i - stats->len);
    if (service[0] != '\0' && strcmp (e->service, service) != 0)
      continue;
    tr_thrift_write_field_string (result, 1, e->service);
    tr_thrift_write_field_string (result, 2, e->endpoint);
    tr_thrift_write_field_string (result, 3, tr_push_endpoint_state_to_string (e->state));
    tr_thrift_write_field_i64 (result, 4, (gint64) e->acked);
    tr_thrift_write_field_i64 (result, 5, (gint64) e->head);
    tr_thrift_write_field_i64 (result, 6, e->head > e->acked ? (gint64) (e->head - e->acked) : 0);
    tr_thrift_write_field_i32 (result, 7, (gint32) e->retries);
    tr_thrift_write_field_string (result, 8, e->last_error);
    tr_thrift_write_field_bool (result, 9, e->state == TR_PUSH_STOPPED);
    tr_thrift_write_field_i64 (result, 10, (gint64) e->delivered);
    tr_thrift_write_field_double (result, 11, e->rpcs_out_per_sec);
    tr_thrift_write_field_i64 (result, 12, link ? link_lag_bytes (admin, e) : tr_push_endpoint_lag_bytes (admin->store, e));
    tr_thrift_write_field_i64 (result, 20, (gint64) e->expired);
    tr_thrift_write_field_i64 (result, 21, (gint64) e->blocked_seqid);
    tr_thrift_write_field_i64 (result, 22, (gint64) e->blocked_rpc_id);
    tr_thrift_write_field_i64 (result, 23, e->last_error_time / 1000);
    tr_thrift_write_field_i64 (result, 24, e->last_error_resolved / 1000);
    tr_thrift_write_field_stop (result);
  }
  return TRUE;
}

/* Writes stop_send of [endpoint ID] into the service file through
 * DoubleWriteFile, changing that one line (or adding it): every other
 * byte stays as the operator wrote it, so config management and
 * `git diff` see one line (tr_config_edit_endpoint_key). */
static gboolean
persist_stop_send (const TrServiceConfig *service, const char *endpoint, gboolean stop, GError **error)
{
  g_autoptr (GBytes) old = NULL;
  g_autofree char *text = NULL;
  const char *data;
  gsize data_len;

  old = tr_dwfile_read (tr_io_posix (), service->path, error);
  if (old == NULL)
    return FALSE;
  data = g_bytes_get_data (old, &data_len);
  text = tr_config_edit_endpoint_key (data, data_len, endpoint, "stop_send", stop ? "true" : "false", error);
  if (text == NULL) {
    g_prefix_error (error, "%s: ", service->path);
    return FALSE;
  }
  return tr_dwfile_replace (tr_io_posix (), service->path, text, strlen (text), error);
}

static gboolean
call_set_stop_send (TrAdmin *admin, const Args *args, GByteArray *result, Refusal *refusal)
{
  g_autofree char *service_name = arg_dup (args, 2);
  g_autofree char *endpoint = arg_dup (args, 3);
  gboolean stop = args->num[4] != 0;
  g_autoptr (GError) error = NULL;
  const TrServiceConfig *service;
  TrEndpointConfig *endpoint_config;

  (void) result;
  if ((endpoint_config = find_endpoint (admin, service_name, endpoint, refusal)) == NULL)
    return FALSE;
  if (admin->push == NULL)
    return refuse_held (refusal);
  service = tr_config_lookup_service (admin->config, service_name);
  /* File first: if it cannot be written, nothing changed at all. */
  if (!persist_stop_send (service, endpoint, stop, &error))
    return tr_admin__refuse (refusal, TR_ADMIN_CODE_FAILED, "cannot write stop_send into %s (nothing changed): %s",
                             service->path, error->message);
  if (!tr_push_set_stop_send (admin->push, service_name, endpoint, stop, &error))
    return refuse_error (refusal, error);
  endpoint_config->stop_send = stop; /* running config = file, for the next reload's comparison */
  g_log_structured (G_LOG_DOMAIN, G_LOG_LEVEL_MESSAGE, "TR_SERVICE", service_name, "TR_ENDPOINT", endpoint,
                    "TR_FILE", service->path, "MESSAGE", "admin: %s/%s stop_send = %s (written to %s)",
                    service_name, endpoint, stop ? "true" : "false", service->path);
  return TRUE;
}

/* skip (@forward) or rewind; skip with by >= 1 (field 5) skips that many
 * rpcs instead of going to to_seqid, in one step on the push thread. */
static gboolean
call_move (TrAdmin *admin, const Args *args, Refusal *refusal, gboolean forward, guint64 *to_out)
{
  g_autofree char *service = arg_dup (args, 2);
  g_autofree char *endpoint = arg_dup (args, 3);
  gint64 to_seqid = args->num[4];
  gint64 by = forward ? args->num[5] : 0;
  guint64 to = (guint64) to_seqid;
  g_autoptr (GError) error = NULL;
  gboolean ok;

  if (find_endpoint (admin, service, endpoint, refusal) == NULL)
    return FALSE;
  if (admin->push == NULL)
    return refuse_held (refusal);
  if (by < 0 || (by > 0 && to_seqid != 0))
    return tr_admin__refuse (refusal, TR_ADMIN_CODE_OUT_OF_RANGE, "skip by %" G_GINT64_FORMAT " (with to_seqid %"
                             G_GINT64_FORMAT "): give either a seqid or a count >= 1", by, to_seqid);
  if (by == 0 && to_seqid <= 0)
    return tr_admin__refuse (refusal, TR_ADMIN_CODE_OUT_OF_RANGE, "seqid %" G_GINT64_FORMAT " is not a seqid (>= 1)",
                             to_seqid);
  if (by > 0)
    ok = tr_push_skip_by (admin->push, service, endpoint, (guint64) by, &to, &error);
  else if (forward)
    ok = tr_push_skip (admin->push, service, endpoint, to, &error);
  else
    ok = tr_push_rewind (admin->push, service, endpoint, to, &error);
  if (!ok)
    return refuse_error (refusal, error);
  g_log_structured (G_LOG_DOMAIN, G_LOG_LEVEL_MESSAGE, "TR_SERVICE", service, "TR_ENDPOINT", endpoint, "MESSAGE",
                    "admin: %s %s/%s to seqid %" G_GUINT64_FORMAT, forward ? "skip" : "rewind", service, endpoint,
                    to);
  if (to_out != NULL)
    *to_out = to;
  return TRUE;
}

static gboolean
call_skip (TrAdmin *admin, const Args *args, GByteArray *result, Refusal *refusal)
{
  guint64 to = 0;

  if (!call_move (admin, args, refusal, TRUE, &to))
    return FALSE;
  tr_thrift_write_field_i64 (result, 0, (gint64) to);
  return TRUE;
}

static gboolean
call_rewind (TrAdmin *admin, const Args *args, GByteArray *result, Refusal *refusal)
{
  (void) result;
  return call_move (admin, args, refusal, FALSE, NULL);
}

static gboolean
call_dump (TrAdmin *admin, const Args *args, GByteArray *result, Refusal *refusal)
{
  gint64 rpc_id = args->num[2];
  g_autoptr (GError) error = NULL;
  g_autoptr (GBytes) message = NULL;
  TrRpcStoreStats stats;
  const guint8 *data;
  gsize len;

  tr_rpcstore_get_stats (admin->store, &stats);
  if (rpc_id <= 0 || (guint64) rpc_id > stats.head_rpc_id)
    return tr_admin__refuse (refusal, TR_ADMIN_CODE_OUT_OF_RANGE, "rpc %" G_GINT64_FORMAT " does not exist (head is %"
                             G_GUINT64_FORMAT ")", rpc_id, stats.head_rpc_id);
  message = tr_rpcstore_get (admin->store, (guint64) rpc_id, NULL, &error);
  if (message == NULL && g_error_matches (error, TR_STORAGE_ERROR, TR_STORAGE_ERROR_NOT_FOUND))
    return tr_admin__refuse (refusal, TR_ADMIN_CODE_OUT_OF_RANGE, "rpc %" G_GINT64_FORMAT " is no longer stored "
                             "(retention; first stored is %" G_GUINT64_FORMAT "): %s", rpc_id, stats.first_rpc_id,
                             error->message);
  if (message == NULL)
    return tr_admin__refuse (refusal, TR_ADMIN_CODE_FAILED, "rpc %" G_GINT64_FORMAT ": %s", rpc_id, error->message);
  data = g_bytes_get_data (message, &len);
  tr_thrift_write_field_begin (result, TR_TTYPE_STRING, 0);
  tr_thrift_write_binary (result, data, len);
  return TRUE;
}

static gboolean
call_digest (TrAdmin *admin, const Args *args, GByteArray *result, Refusal *refusal)
{
  gint64 from = args->num[2];
  gint64 to = args->num[3];
  g_autoptr (GError) error = NULL;
  guint64 count = 0, digest = 0;

  if (from <= 0 || to <= 0)
    return tr_admin__refuse (refusal, TR_ADMIN_CODE_OUT_OF_RANGE, "digest %" G_GINT64_FORMAT "..%" G_GINT64_FORMAT
                             ": rpc ids start at 1", from, to);
  if (!tr_rpcstore_digest (admin->store, (guint64) from, (guint64) to, &count, &digest, &error)) {
    if (g_error_matches (error, TR_STORAGE_ERROR, TR_STORAGE_ERROR_NOT_FOUND))
      return tr_admin__refuse (refusal, TR_ADMIN_CODE_OUT_OF_RANGE, "digest %" G_GINT64_FORMAT "..%" G_GINT64_FORMAT
                               ": %s", from, to, error->message);
    return tr_admin__refuse (refusal, TR_ADMIN_CODE_FAILED, "digest %" G_GINT64_FORMAT "..%" G_GINT64_FORMAT ": %s",
                             from, to, error->message);
  }
  tr_thrift_write_field_begin (result, TR_TTYPE_STRUCT, 0);
  tr_thrift_write_field_i64 (result, 1, from);
  tr_thrift_write_field_i64 (result, 2, to);
  tr_thrift_write_field_i64 (result, 3, (gint64) count);
  tr_thrift_write_field_i64 (result, 4, (gint64) digest);
  tr_thrift_write_field_stop (result);
  return TRUE;
}

static gboolean
call_rpc_id_of (TrAdmin *admin, const Args *args, GByteArray *result, Refusal *refusal)
{
  g_autofree char *service = arg_dup (args, 2);
  gint64 seqid = args->num[3];
  g_autoptr (GError) error = NULL;
  guint64 first, head, rpc_id = 0;
  gint id;

  if (find_service (admin, service, refusal) == NULL)
    return FALSE;
  id = tr_rpcstore_service_id (admin->store, service);
  if (id < 0)
    return tr_admin__refuse (refusal, TR_ADMIN_CODE_FAILED, "service '%s' has no store id", service);
  first = tr_rpcstore_service_first (admin->store, (guint32) id);
  head = tr_rpcstore_service_head (admin->store, (guint32) id);
  if (seqid < 1 || (guint64) seqid < first || (guint64) seqid > head)
    return tr_admin__refuse (refusal, TR_ADMIN_CODE_OUT_OF_RANGE, "%s has no seqid %" G_GINT64_FORMAT " stored "
                             "(stored: %" G_GUINT64_FORMAT "..%" G_GUINT64_FORMAT ")", service, seqid, first, head);
  if (!tr_rpcstore_service_lookup (admin->store, (guint32) id, (guint64) seqid, &rpc_id, &error))
    return tr_admin__refuse (refusal, g_error_matches (error, TR_STORAGE_ERROR, TR_STORAGE_ERROR_NOT_FOUND)
                                          ? TR_ADMIN_CODE_OUT_OF_RANGE : TR_ADMIN_CODE_FAILED,
                             "%s seqid %" G_GINT64_FORMAT ": %s", service, seqid, error->message);
  tr_thrift_write_field_i64 (result, 0, (gint64) rpc_id);
  return TRUE;
}

/* Dead-letter index -> the rpc id it was last redriven as (@id's marks). */
static GHashTable *
redriven_by_index (TrAdmin *admin, guint32 id, GError **error)
{
  g_autoptr (GArray) marks = tr_rpcstore_list_redrives (admin->store, id, error);
  GHashTable *by_index;

  if (marks == NULL)
    return NULL;
  by_index = g_hash_table_new_full (g_int64_hash, g_int64_equal, g_free, NULL);
  for (guint i = 0; i < marks->len; i++) {
    const TrRedriveMark *mark = &g_array_index (marks, TrRedriveMark, i);
    g_hash_table_insert (by_index, g_memdup2 (&mark->index, sizeof mark->index), GSIZE_TO_POINTER (mark->new_rpc_id));
  }
  return by_index;
}

static gint64
redriven_as (GHashTable *redriven, guint64 index)
{
  return (gint64) GPOINTER_TO_SIZE (g_hash_table_lookup (redriven, &index));
}

static gboolean
call_dead_letters (TrAdmin *admin, const Args *args, GByteArray *result, Refusal *refusal)
{
  g_autofree char *service = arg_dup (args, 2);
  gint64 from = args->num[3];
  gint64 max = args->num[4];
  g_autoptr (GError) error = NULL;
  g_autoptr (GArray) letters = NULL;
  g_autoptr (GHashTable) redriven = NULL;
  guint64 unreadable = 0;
  gint id;

  if (find_service (admin, service, refusal) == NULL)
    return FALSE;
  if (from < 0 || max < 1 || max > ADMIN_MAX_DEAD_LETTERS)
    return tr_admin__refuse (refusal, TR_ADMIN_CODE_OUT_OF_RANGE, "dead letters from %" G_GINT64_FORMAT " max %"
                             G_GINT64_FORMAT ": from must be >= 0 and max 1..%d", from, max, ADMIN_MAX_DEAD_LETTERS);
  id = tr_rpcstore_service_id (admin->store, service);
  if (id < 0)
    return tr_admin__refuse (refusal, TR_ADMIN_CODE_FAILED, "service '%s' has no store id", service);
  letters = tr_rpcstore_list_dead_letters (admin->store, (guint32) id, (guint64) from, (guint) max, &unreadable,
                                           &error);
  if (letters == NULL)
    return tr_admin__refuse (refusal, TR_ADMIN_CODE_FAILED, "dead letters of '%s': %s", service, error->message);
  if ((redriven = redriven_by_index (admin, (guint32) id, &error)) == NULL)
    return tr_admin__refuse (refusal, TR_ADMIN_CODE_FAILED, "dead letters of '%s': %s", service, error->message);
  /* A torn tail is logged by the store (with the bytes lost); the listing
   * simply ends there. */
  tr_thrift_write_field_begin (result, TR_TTYPE_LIST, 0);
  tr_thrift_write_list_begin (result, TR_TTYPE_STRUCT, letters->len);
  for (guint i = 0; i < letters->len; i++) {
    const TrDeadLetter *l = &g_array_index (letters, TrDeadLetter, i);
    tr_thrift_write_field_i64 (result, 1, (gint64) l->index);
    tr_thrift_write_field_i64 (result, 2, (gint64) l->seqid);
    tr_thrift_write_field_i64 (result, 3, (gint64) l->rpc_id);
    tr_thrift_write_field_string (result, 4, l->reason);
    tr_thrift_write_field_i64 (result, 5, redriven_as (redriven, l->index));
    tr_thrift_write_field_stop (result);
  }
  return TRUE;
}

/* ---- redrive ---- */

/* One dead letter of a redrive and what became of it. */
typedef struct {
  TrDeadLetter *letter;  /* (transfer none): in the listing */
  guint64 before_rpc_id; /* redriven before as (0: never) */
  guint64 new_rpc_id;    /* committed now as (0: left alone) */
  guint64 new_seqid;
  GBytes *message;       /* (nullable) the original, read before anything is committed */
  GError *error;         /* (nullable) its commit failed */
} RedriveItem;

static void
redrive_item_clear (gpointer data)
{
  RedriveItem *item = data;

  g_clear_pointer (&item->message, g_bytes_unref);
  g_clear_error (&item->error);
}

static void
on_redrive_committed (gpointer user_data, guint64 rpc_id, const GError *error)
{
  RedriveItem *item = user_data;

  item->new_rpc_id = rpc_id;
  if (error != NULL)
    item->error = g_error_copy (error);
}

/* The seqid of @rpc_id in a service's list: the list holds rpc ids in
 * increasing order, so a binary search over first..head.  0 if absent. */
static guint64
seqid_of_rpc (TrAdmin *admin, guint32 id, guint64 rpc_id)
{
  guint64 low = tr_rpcstore_service_first (admin->store, id), high = tr_rpcstore_service_head (admin->store, id);

  while (low <= high && low > 0) {
    guint64 mid = low + (high - low) / 2, found = 0;
    if (!tr_rpcstore_service_lookup (admin->store, id, mid, &found, NULL))
      return 0;
    if (found == rpc_id)
      return mid;
    if (found < rpc_id)
      low = mid + 1;
    else
      high = mid - 1;
  }
  return 0;
}

/* The dead letters @from..@to (@to -1: to the last) of service @id, at most
 * ADMIN_MAX_DEAD_LETTERS, into *@out; refuses a range past the last one. */
static gboolean
redrive_select (TrAdmin *admin, const char *service, guint32 id, gint64 from, gint64 to, GArray **out,
                Refusal *refusal)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GArray) letters = NULL;
  guint want = to < 0 ? ADMIN_MAX_DEAD_LETTERS + 1 : (guint) MIN (to - from + 1, ADMIN_MAX_DEAD_LETTERS + 1);

  if (from < 0 || to < -1 || (to >= 0 && to < from))
    return tr_admin__refuse (refusal, TR_ADMIN_CODE_OUT_OF_RANGE, "redrive %" G_GINT64_FORMAT "..%" G_GINT64_FORMAT
                             ": give dead-letter indexes FROM <= TO, from 0", from, to);
  if (want > ADMIN_MAX_DEAD_LETTERS && to >= 0)
    return tr_admin__refuse (refusal, TR_ADMIN_CODE_OUT_OF_RANGE, "redrive %" G_GINT64_FORMAT "..%" G_GINT64_FORMAT
                             ": at most %d dead letters per call", from, to, ADMIN_MAX_DEAD_LETTERS);
  letters = tr_rpcstore_list_dead_letters (admin->store, id, (guint64) from, want, NULL, &error);
  if (letters == NULL)
    return tr_admin__refuse (refusal, TR_ADMIN_CODE_FAILED, "dead letters of '%s': %s", service, error->message);
  if (letters->len == 0)
    return tr_admin__refuse (refusal, TR_ADMIN_CODE_OUT_OF_RANGE, "%s has no dead letter %" G_GINT64_FORMAT
                             " (see tr-admin dead-letters %s)", service, from, service);
  if (letters->len > ADMIN_MAX_DEAD_LETTERS)
    return tr_admin__refuse (refusal, TR_ADMIN_CODE_OUT_OF_RANGE, "%s has more than %d dead letters from %"
                             G_GINT64_FORMAT ": redrive them in ranges (FROM TO)", service, ADMIN_MAX_DEAD_LETTERS,
                             from);
  if (to >= 0 && letters->len < (guint) (to - from + 1))
    return tr_admin__refuse (refusal, TR_ADMIN_CODE_OUT_OF_RANGE, "%s has no dead letter %" G_GINT64_FORMAT
                             " (the last is %" G_GUINT64_FORMAT ")", service, to,
                             g_array_index (letters, TrDeadLetter, letters->len - 1).index);
  *out = g_steal_pointer (&letters);
  return TRUE;
}

/* Reads the original of every item to send (an original retention deleted
 * refuses the call: nothing is committed), then commits them in one batch:
 * one copy per rpc id, as several endpoints may have given up the same. */
static gboolean
redrive_commit (TrAdmin *admin, const char *service, guint32 id, GArray *items, Refusal *refusal)
{
  g_autoptr (GHashTable) by_rpc = g_hash_table_new (g_int64_hash, g_int64_equal);
  TrRpcBatch *batch = tr_rpcbatch_new ();

  for (guint i = 0; i < items->len; i++) {
    RedriveItem *item = &g_array_index (items, RedriveItem, i);
    g_autoptr (GError) error = NULL;
    if (item->before_rpc_id != 0 || g_hash_table_contains (by_rpc, &item->letter->rpc_id))
      continue;
    item->message = tr_rpcstore_get (admin->store, item->letter->rpc_id, NULL, &error);
    if (item->message == NULL) {
      tr_rpcbatch_free (batch);
      return tr_admin__refuse (refusal, g_error_matches (error, TR_STORAGE_ERROR, TR_STORAGE_ERROR_NOT_FOUND)
                                            ? TR_ADMIN_CODE_OUT_OF_RANGE : TR_ADMIN_CODE_FAILED,
                               "nothing redriven: dead letter %" G_GUINT64_FORMAT " (rpc %" G_GUINT64_FORMAT
                               ") of %s cannot be read: %s", item->letter->index, item->letter->rpc_id, service,
                               error->message);
    }
    g_hash_table_insert (by_rpc, &item->letter->rpc_id, item);
    tr_rpcbatch_add (batch, item->message, &id, 1, on_redrive_committed, item);
  }
  tr_rpcstore_submit_batch (admin->store, batch);
  tr_rpcbatch_free (batch);
  for (guint i = 0; i < items->len; i++) {
    RedriveItem *item = &g_array_index (items, RedriveItem, i);
    RedriveItem *sent = g_hash_table_lookup (by_rpc, &item->letter->rpc_id);
    if (sent != NULL && sent->error != NULL)
      return tr_admin__refuse (refusal, TR_ADMIN_CODE_FAILED, "redrive of %s: committing rpc %" G_GUINT64_FORMAT
                               " failed (nothing recorded as redriven): %s", service, item->letter->rpc_id,
                               sent->error->message);
    if (sent != NULL && item->before_rpc_id == 0) {
      item->new_rpc_id = sent->new_rpc_id;
      item->new_seqid = seqid_of_rpc (admin, id, sent->new_rpc_id);
    }
  }
  return TRUE;
}

static void
write_redriven (GByteArray *result, GArray *items)
{
  tr_thrift_write_field_begin (result, TR_TTYPE_LIST, 0);
  tr_thrift_write_list_begin (result, TR_TTYPE_STRUCT, items->len);
  for (guint i = 0; i < items->len; i++) {
    const RedriveItem *item = &g_array_index (items, RedriveItem, i);
    tr_thrift_write_field_i64 (result, 1, (gint64) item->letter->index);
    tr_thrift_write_field_i64 (result, 2, (gint64) item->letter->seqid);
    tr_thrift_write_field_i64 (result, 3, (gint64) item->letter->rpc_id);
    tr_thrift_write_field_i64 (result, 4, (gint64) item->new_rpc_id);
    tr_thrift_write_field_i64 (result, 5, (gint64) item->new_seqid);
    tr_thrift_write_field_i64 (result, 6, (gint64) item->before_rpc_id);
    tr_thrift_write_field_stop (result);
  }
}

/* Commits copies first, then records them: a crash in between sends them
 * again on the next redrive (at least once, like every delivery), never
 * records a redrive that did not happen. */
static gboolean
call_redrive (TrAdmin *admin, const Args *args, GByteArray *result, Refusal *refusal)
{
  g_autofree char *service = arg_dup (args, 2);
  gboolean force = args->num[5] != 0;
  g_autoptr (GError) error = NULL;
  g_autoptr (GArray) letters = NULL;
  g_autoptr (GArray) items = g_array_new (FALSE, TRUE, sizeof (RedriveItem));
  g_autoptr (GArray) marks = g_array_new (FALSE, TRUE, sizeof (TrRedriveMark));
  g_autoptr (GHashTable) redriven = NULL;
  gint64 now = g_get_real_time ();
  gint id;

  if (find_service (admin, service, refusal) == NULL)
    return FALSE;
  if ((id = tr_rpcstore_service_id (admin->store, service)) < 0)
    return tr_admin__refuse (refusal, TR_ADMIN_CODE_FAILED, "service '%s' has no store id", service);
  if (!redrive_select (admin, service, (guint32) id, args->num[3], args->num[4], &letters, refusal))
    return FALSE;
  if ((redriven = redriven_by_index (admin, (guint32) id, &error)) == NULL)
    return tr_admin__refuse (refusal, TR_ADMIN_CODE_FAILED, "nothing redriven: %s", error->message);
  g_array_set_clear_func (items, redrive_item_clear);
  for (guint i = 0; i < letters->len; i++) {
    RedriveItem item = { &g_array_index (letters, TrDeadLetter, i), 0, 0, 0, NULL, NULL };
    if (!force)
      item.before_rpc_id = (guint64) redriven_as (redriven, item.letter->index);
    g_array_append_val (items, item);
  }
  if (!redrive_commit (admin, service, (guint32) id, items, refusal))
    return FALSE;
  for (guint i = 0; i < items->len; i++) {
    const RedriveItem *item = &g_array_index (items, RedriveItem, i);
    TrRedriveMark mark = { item->letter->index, item->new_rpc_id, now };
    if (item->new_rpc_id != 0)
      g_array_append_val (marks, mark);
  }
  if (marks->len > 0 && !tr_rpcstore_add_redrives (admin->store, (guint32) id, (TrRedriveMark *) marks->data,
                                                   marks->len, &error))
    return tr_admin__refuse (refusal, TR_ADMIN_CODE_FAILED, "%u dead letters of %s were sent again (rpc %"
                             G_GUINT64_FORMAT "...) but could not be recorded as redriven, so a later redrive "
                             "would send them once more: %s", marks->len, service,
                             g_array_index (marks, TrRedriveMark, 0).new_rpc_id, error->message);
  g_log_structured (G_LOG_DOMAIN, G_LOG_LEVEL_MESSAGE, "TR_SERVICE", service, "MESSAGE",
                    "admin: redrive %s dead letters %" G_GUINT64_FORMAT "..%" G_GUINT64_FORMAT ": %u sent again "
                    "as new rpcs of the service, %u redriven before left alone", service,
                    g_array_index (letters, TrDeadLetter, 0).index,
                    g_array_index (letters, TrDeadLetter, letters->len - 1).index, marks->len,
                    letters->len - marks->len);
  write_redriven (result, items);
  return TRUE;
}

/* ---- reload (tr_reload.c; also SIGHUP through tr_admin_reload_async) ---- */

/* Reloads on the admin thread; the new configuration replaces ->config. */
static gboolean
reload (TrAdmin *admin, GPtrArray **changes_out, GError **error)
{
  TrReloadTargets targets = { admin->store, admin->push, admin->ingress, admin->ingress_context };
  TrConfig *config;

  if (admin->push == NULL) {
    g_set_error (error, TR_CONFIG_ERROR, TR_CONFIG_ERROR_RESTART,
                 "this node is a BACKUP: a reload is not supported on it yet (docs/replication.md); restart it to "
                 "apply a configuration");
    return FALSE;
  }
  config = tr_reload_run (admin->config, &targets, changes_out, error);
  if (config == NULL)
    return FALSE;
  tr_config_free (admin->config);
  admin->config = config;
  return TRUE;
}

static gboolean
call_reload (TrAdmin *admin, const Args *args, GByteArray *result, Refusal *refusal)
{
  g_autoptr (GPtrArray) changes = NULL;
  g_autoptr (GError) error = NULL;
  TrAdminCode code = TR_ADMIN_CODE_FAILED;

  (void) args;
  if (!reload (admin, &changes, &error)) {
    g_warning ("reload refused (tr-admin), running configuration unchanged: %s", error->message);
    if (g_error_matches (error, TR_CONFIG_ERROR, TR_CONFIG_ERROR_RESTART))
      code = TR_ADMIN_CODE_RESTART_NEEDED;
    else if (error->domain == TR_CONFIG_ERROR)
      code = TR_ADMIN_CODE_INVALID_CONFIG;
    return tr_admin__refuse (refusal, code, "reload refused, running configuration unchanged: %s", error->message);
  }
  tr_thrift_write_field_begin (result, TR_TTYPE_LIST, 0);
  tr_thrift_write_list_begin (result, TR_TTYPE_STRING, changes->len);
  for (guint i = 0; i < changes->len; i++)
    tr_thrift_write_string (result, g_ptr_array_index (changes, i));
  return TRUE;
}

/* A SIGHUP reload on its way to the admin thread and back. */
typedef struct {
  TrAdmin *admin;       /* the admin thread's record only */
  GMainContext *caller; /* (owned) where @done runs */
  TrAdminReloadDone done;
  gpointer user_data;
  char *outcome; /* (nullable) the caller's record only */
  gboolean applied;
} SignalReload;

static void
signal_reload_free (gpointer data)
{
  SignalReload *reload_data = data;

  g_main_context_unref (reload_data->caller);
  g_free (reload_data->outcome);
  g_free (reload_data);
}

static gboolean
on_signal_reload_done (gpointer data)
{
  SignalReload *reload_data = data;

  reload_data->done (reload_data->outcome, reload_data->applied, reload_data->user_data);
  return G_SOURCE_REMOVE;
}

static gboolean
on_signal_reload (gpointer data)
{
  SignalReload *reload_data = data;
  SignalReload *answer;
  g_autoptr (GPtrArray) changes = NULL;
  g_autoptr (GError) error = NULL;
  gboolean applied = reload (reload_data->admin, &changes, &error);

  if (!applied)
    g_warning ("reload refused (SIGHUP), running configuration unchanged: %s", error->message);
  if (reload_data->done == NULL)
    return G_SOURCE_REMOVE;
  /* The caller gets its own record: this one is freed with this source. */
  answer = g_new0 (SignalReload, 1);
  answer->caller = g_main_context_ref (reload_data->caller);
  answer->done = reload_data->done;
  answer->user_data = reload_data->user_data;
  answer->applied = applied;
  answer->outcome = applied ? g_strdup_printf ("reload applied (%u changes)", changes->len)
                            : g_strdup_printf ("reload refused: %s", error->message);
  g_main_context_invoke_full (answer->caller, G_PRIORITY_DEFAULT, on_signal_reload_done, answer, signal_reload_free);
  return G_SOURCE_REMOVE;
}

void
tr_admin_reload_async (TrAdmin *admin, TrAdminReloadDone done, gpointer user_data)
{
  SignalReload *reload_data;

  g_return_if_fail (admin != NULL);

  reload_data = g_new0 (SignalReload, 1);
  reload_data->admin = admin;
  reload_data->caller = g_main_context_ref_thread_default ();
  reload_data->done = done;
  reload_data->user_data = user_data;
  g_main_context_invoke_full (admin->context, G_PRIORITY_DEFAULT, on_signal_reload, reload_data,
                              signal_reload_free);
}

/* ---- the call table ---- */

static const struct {
  const char *name;
  CallFunc func;
} calls[] = {
  { "status", call_status },     { "services", call_services }, { "endpoints", call_endpoints },
  { "set_stop_send", call_set_stop_send }, { "skip", call_skip }, { "rewind", call_rewind },
  { "dump", call_dump },         { "dead_letters", call_dead_letters }, { "reload", call_reload },
  { "digest", call_digest },
  { "rpc_id_of", call_rpc_id_of }, { "redrive", call_redrive },
};

CallFunc
tr_admin__find_call (const char *name, gsize name_len)
{
  CallFunc func = NULL;

  for (guint i = 0; i < G_N_ELEMENTS (calls); i++)
    if (strlen (calls[i].name) == name_len && memcmp (calls[i].name, name, name_len) == 0)
      func = calls[i].func;
  return func;
}
