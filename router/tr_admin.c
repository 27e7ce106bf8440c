/* tr_admin.c - the admin server (see tr_admin.h; IDL thrift/admin.thrift).
 *
 * Per connection: bytes read go to ->in; every complete frame is one
 * message, parsed with tr_frame_parse_header(); a CALL is decoded (args by
 * field id, unknown fields skipped), served, and its answer appended to
 * ->out, written as the socket takes it.  While more than
 * ADMIN_OUT_HIGH_WATER bytes wait to be written the connection is not read
 * (a client that does not read its answers only stalls itself).
 *
 * Answers: a REPLY whose result struct has field 0 (the return value) on
 * success, or field 1 (AdminError {1: i32 code, 2: string message}); an
 * unknown method gets a TApplicationException UNKNOWN_METHOD, undecodable
 * args PROTOCOL_ERROR; a frame that is not a message closes the connection.
 *
 * Every admin argument shares one field layout (admin.thrift): 1 token,
 * 2 service_name (dump: 2 rpc_id), 3 endpoint (dead_letters: 3 from_index),
 * 4 stop / to_seqid / max, 5 by; so the args struct is decoded once into an
 * Args by field id.
 *
 * Rates: once a second the admin thread samples the store's stats (head
 * rpc id and the cumulative commit latency histogram) into a ring of
 * ADMIN_RATE_SAMPLES; status compares the live stats with the oldest sample
 * of the last ADMIN_RATE_WINDOW_S seconds.
 */
#undef G_LOG_DOMAIN
#define G_LOG_DOMAIN "tr-admin"

#include "tr_admin.h"

#include "tr_dwfile.h"
#include "tr_frame.h"
#include "tr_reload.h"
#include "tr_router_error.h"
#include "tr_storage_error.h"
#include "tr_thrift_value.h"

#include <errno.h>
#include <gio/gio.h>
#include <glib-unix.h>
#include <netdb.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define ADMIN_MAX_REQUEST_FRAME (64 * 1024)
#define ADMIN_OUT_HIGH_WATER (1024 * 1024)
#define ADMIN_READ_CHUNK (16 * 1024)
#define ADMIN_MAX_CONNECTIONS 64
#define ADMIN_INGRESS_WAIT_US (2 * G_TIME_SPAN_SECOND)
#define ADMIN_MAX_ARG 6
#define ADMIN_RATE_WINDOW_S 10
#define ADMIN_RATE_SAMPLES (ADMIN_RATE_WINDOW_S + 1)
#define ADMIN_MAX_DEAD_LETTERS 10000

/* One per-second sample of the store's counters. */
typedef struct {
  gint64 time_us; /* monotonic; 0 = empty slot */
  guint64 head_rpc_id;
  guint64 latency[TR_RPCSTORE_LATENCY_BUCKETS];
} RateSample;

struct _TrAdmin {
  TrConfig *config;   /* the running configuration; admin thread only after start */
  TrConfig *reloaded;     /* (nullable) owned: ->config after a reload */
  guint64 epoch; /* from the node metadata; set before the first call */
  TrRpcStore *store;
  TrPush *push;
  TrIngress *ingress;
  GMainContext *ingress_context;
  char *token; /* (nullable) */
  gsize token_len;
  int listen_fd;
  guint16 port;
  GMainContext *context;
  GMainLoop *loop;
  GThread *thread;
  GSource *listen_source;
  GHashTable *conns; /* (element-type AdminConn) owned; admin thread only */
  GSource *rate_source;
  RateSample samples[ADMIN_RATE_SAMPLES]; /* ring; admin thread only */
  guint next_sample;
};

typedef struct {
  GSource base;
  gpointer conn;
} ConnSource;

typedef struct {
  TrAdmin *admin;
  int fd;
  char *peer;
  GSource *source;
  gpointer fd_tag;
  GIOCondition events;
  GByteArray *in;
  GByteArray *out;
  gsize out_pos;
} AdminConn;

/* The decoded args struct of any admin call. */
typedef struct {
  const guint8 *str[ADMIN_MAX_ARG];
  gsize str_len[ADMIN_MAX_ARG];
  gint64 num[ADMIN_MAX_ARG]; /* i64, i32 and bool fields */
} Args;

/* A refusal to send as AdminError. */
typedef struct {
  TrAdminCode code;
  char *message;
} Refusal;

/* ---- ingress counters, asked on the ingress loop ---- */

typedef struct {
  TrIngress *ingress;
  TrIngressStats stats;
  GMutex lock;
  GCond cond;
  gboolean done; /* protected by ->lock */
} IngressRequest;

static void
ingress_request_clear (gpointer data)
{
  IngressRequest *request = data;

  g_mutex_clear (&request->lock);
  g_cond_clear (&request->cond);
}

static gboolean
on_ingress_stats (gpointer user_data)
{
  IngressRequest *request = user_data;

  tr_ingress_get_stats (request->ingress, &request->stats);
  g_mutex_lock (&request->lock);
  request->done = TRUE;
  g_cond_signal (&request->cond);
  g_mutex_unlock (&request->lock);
  return G_SOURCE_REMOVE;
}

static void
ingress_request_release (gpointer data)
{
  g_atomic_rc_box_release_full (data, ingress_request_clear);
}

/* The request is refcounted: if the ingress loop does not answer within
 * the bound (shutdown), the admin thread gives up and the late callback
 * still has a valid request to write into. */
static gboolean
get_ingress_stats (TrAdmin *admin, TrIngressStats *out)
{
  IngressRequest *request;
  gint64 deadline = g_get_monotonic_time () + ADMIN_INGRESS_WAIT_US;
  gboolean done;

  memset (out, 0, sizeof *out);
  if (admin->ingress == NULL || admin->ingress_context == NULL)
    return FALSE;
  request = g_atomic_rc_box_new0 (IngressRequest);
  request->ingress = admin->ingress;
  g_mutex_init (&request->lock);
  g_cond_init (&request->cond);
  g_main_context_invoke_full (admin->ingress_context, G_PRIORITY_DEFAULT, on_ingress_stats,
                              g_atomic_rc_box_acquire (request), ingress_request_release);
  g_mutex_lock (&request->lock);
  while (!request->done)
    if (!g_cond_wait_until (&request->cond, &request->lock, deadline))
      break;
  done = request->done;
  if (done)
    *out = request->stats;
  g_mutex_unlock (&request->lock);
  ingress_request_release (request);
  return done;
}

/* ---- token ---- */

/* Constant time in the length of @given (never in the secret's content). */
static gboolean
token_ok (const TrAdmin *admin, const guint8 *given, gsize given_len)
{
  guint8 diff;

  if (admin->token == NULL)
    return TRUE;
  diff = given_len != admin->token_len;
  for (gsize i = 0; i < given_len; i++)
    diff |= (guint8) (given[i] ^ (guint8) admin->token[i % admin->token_len]);
  return diff == 0;
}

/* ---- lookups ---- */

static char *
arg_dup (const Args *args, guint id)
{
  return g_strndup ((const char *) args->str[id], args->str[id] != NULL ? args->str_len[id] : 0);
}

static G_GNUC_PRINTF (3, 4) gboolean
refuse (Refusal *refusal, TrAdminCode code, const char *format, ...)
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
    refuse (refusal, TR_ADMIN_CODE_UNKNOWN_SERVICE, "no service '%s' on this node", name);
  return service;
}

static const TrEndpointConfig *
find_endpoint (TrAdmin *admin, const char *service_name, const char *endpoint_id, Refusal *refusal)
{
  const TrServiceConfig *service = find_service (admin, service_name, refusal);
  const TrEndpointConfig *endpoint;

  if (service == NULL)
    return NULL;
  if ((endpoint = tr_config_lookup_endpoint (service, endpoint_id)) != NULL)
    return endpoint;
  refuse (refusal, TR_ADMIN_CODE_UNKNOWN_ENDPOINT, "service '%s' has no endpoint '%s'", service_name,
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
  return refuse (refusal, code, "%s", error->message);
}

/* ---- rates ---- */

static void
take_sample (TrAdmin *admin, RateSample *sample)
{
  TrRpcStoreStats stats;

  tr_rpcstore_get_stats (admin->store, &stats);
  sample->time_us = g_get_monotonic_time ();
  sample->head_rpc_id = stats.head_rpc_id;
  memcpy (sample->latency, stats.commit_latency, sizeof sample->latency);
}

static gboolean
on_rate_tick (gpointer user_data)
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
  get_ingress_stats (admin, &ingress);
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

/* Bytes of the data store from the first unacknowledged RPC of @e to its
 * service head (see lag_bytes in admin.thrift); -1 if unreadable. */
static gint64
lag_bytes (TrAdmin *admin, const TrPushEndpointStats *e)
{
  gint id = tr_rpcstore_service_id (admin->store, e->service);
  guint64 first_seqid, first_rpc, head_rpc, first_offset, head_offset;
  guint32 first_len, head_len;

  if (id < 0 || e->acked >= e->head)
    return 0;
  first_seqid = MAX (e->acked + 1, tr_rpcstore_service_first (admin->store, (guint32) id));
  if (!tr_rpcstore_service_lookup (admin->store, (guint32) id, first_seqid, &first_rpc, NULL)
      || !tr_rpcstore_service_lookup (admin->store, (guint32) id, e->head, &head_rpc, NULL)
      || !tr_rpcstore_locate (admin->store, first_rpc, &first_offset, &first_len, NULL)
      || !tr_rpcstore_locate (admin->store, head_rpc, &head_offset, &head_len, NULL)
      || head_offset + head_len < first_offset)
    return -1;
  return (gint64) (head_offset + head_len - first_offset);
}

static gboolean
call_endpoints (TrAdmin *admin, const Args *args, GByteArray *result, Refusal *refusal)
{
  g_autofree char *service = arg_dup (args, 2);
  g_autoptr (GArray) stats = NULL;
  guint count = 0;

  if (service[0] != '\0' && find_service (admin, service, refusal) == NULL)
    return FALSE;
  stats = tr_push_get_stats (admin->push);
  for (guint i = 0; i < stats->len; i++)
    if (service[0] == '\0' || strcmp (g_array_index (stats, TrPushEndpointStats, i).service, service) == 0)
      count++;
  tr_thrift_write_field_begin (result, TR_TTYPE_LIST, 0);
  tr_thrift_write_list_begin (result, TR_TTYPE_STRUCT, count);
  for (guint i = 0; i < stats->len; i++) {
    const TrPushEndpointStats *e = &g_array_index (stats, TrPushEndpointStats, i);
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
    tr_thrift_write_field_i64 (result, 12, lag_bytes (admin, e));
    tr_thrift_write_field_stop (result);
  }
  return TRUE;
}

/* Writes stop_send of [endpoint ID] into the service file, keeping every
 * other key and every comment, through DoubleWriteFile. */
static gboolean
persist_stop_send (const TrServiceConfig *service, const char *endpoint, gboolean stop, GError **error)
{
  g_autoptr (GKeyFile) keyfile = g_key_file_new ();
  g_autoptr (GBytes) old = NULL;
  g_autofree char *group = g_strconcat ("endpoint ", endpoint, NULL);
  g_autofree char *text = NULL;
  gsize len = 0;
  const char *data;
  gsize data_len;

  old = tr_dwfile_read (tr_io_posix (), service->path, error);
  if (old == NULL)
    return FALSE;
  data = g_bytes_get_data (old, &data_len);
  if (!g_key_file_load_from_data (keyfile, data != NULL ? data : "", data_len, G_KEY_FILE_KEEP_COMMENTS, error)) {
    g_prefix_error (error, "%s: ", service->path);
    return FALSE;
  }
  g_key_file_set_boolean (keyfile, group, "stop_send", stop);
  text = g_key_file_to_data (keyfile, &len, NULL);
  return tr_dwfile_replace (tr_io_posix (), service->path, text, len, error);
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
  /* Cast: the config is the admin thread's (see ->config). */
  if ((endpoint_config = (TrEndpointConfig *) find_endpoint (admin, service_name, endpoint, refusal)) == NULL)
    return FALSE;
  service = tr_config_lookup_service (admin->config, service_name);
  /* File first: if it cannot be written, nothing changed at all. */
  if (!persist_stop_send (service, endpoint, stop, &error))
    return refuse (refusal, TR_ADMIN_CODE_FAILED, "cannot write stop_send into %s (nothing changed): %s",
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
  if (by < 0 || (by > 0 && to_seqid != 0))
    return refuse (refusal, TR_ADMIN_CODE_OUT_OF_RANGE, "skip by %" G_GINT64_FORMAT " (with to_seqid %"
                   G_GINT64_FORMAT "): give either a seqid or a count >= 1", by, to_seqid);
  if (by == 0 && to_seqid <= 0)
    return refuse (refusal, TR_ADMIN_CODE_OUT_OF_RANGE, "seqid %" G_GINT64_FORMAT " is not a seqid (>= 1)",
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
    return refuse (refusal, TR_ADMIN_CODE_OUT_OF_RANGE, "rpc %" G_GINT64_FORMAT " does not exist (head is %"
                   G_GUINT64_FORMAT ")", rpc_id, stats.head_rpc_id);
  message = tr_rpcstore_get (admin->store, (guint64) rpc_id, NULL, &error);
  if (message == NULL && g_error_matches (error, TR_STORAGE_ERROR, TR_STORAGE_ERROR_NOT_FOUND))
    return refuse (refusal, TR_ADMIN_CODE_OUT_OF_RANGE, "rpc %" G_GINT64_FORMAT " is no longer stored "
                   "(retention; first stored is %" G_GUINT64_FORMAT "): %s", rpc_id, stats.first_rpc_id,
                   error->message);
  if (message == NULL)
    return refuse (refusal, TR_ADMIN_CODE_FAILED, "rpc %" G_GINT64_FORMAT ": %s", rpc_id, error->message);
  data = g_bytes_get_data (message, &len);
  tr_thrift_write_field_begin (result, TR_TTYPE_STRING, 0);
  tr_thrift_write_binary (result, data, len);
  return TRUE;
}

static gboolean
call_dead_letters (TrAdmin *admin, const Args *args, GByteArray *result, Refusal *refusal)
{
  g_autofree char *service = arg_dup (args, 2);
  gint64 from = args->num[3];
  gint64 max = args->num[4];
  g_autoptr (GError) error = NULL;
  g_autoptr (GArray) letters = NULL;
  guint64 unreadable = 0;
  gint id;

  if (find_service (admin, service, refusal) == NULL)
    return FALSE;
  if (from < 0 || max < 1 || max > ADMIN_MAX_DEAD_LETTERS)
    return refuse (refusal, TR_ADMIN_CODE_OUT_OF_RANGE, "dead letters from %" G_GINT64_FORMAT " max %"
                   G_GINT64_FORMAT ": from must be >= 0 and max 1..%d", from, max, ADMIN_MAX_DEAD_LETTERS);
  id = tr_rpcstore_service_id (admin->store, service);
  if (id < 0)
    return refuse (refusal, TR_ADMIN_CODE_FAILED, "service '%s' has no store id", service);
  letters = tr_rpcstore_list_dead_letters (admin->store, (guint32) id, (guint64) from, (guint) max, &unreadable,
                                           &error);
  if (letters == NULL)
    return refuse (refusal, TR_ADMIN_CODE_FAILED, "dead letters of '%s': %s", service, error->message);
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
    tr_thrift_write_field_stop (result);
  }
  return TRUE;
}

/* ---- reload (tr_reload.c; also SIGHUP through tr_admin_reload_async) ---- */

/* Reloads on the admin thread; the new configuration replaces ->config. */
static gboolean
reload (TrAdmin *admin, GPtrArray **changes_out, GError **error)
{
  TrReloadTargets targets = { admin->store, admin->push, admin->ingress, admin->ingress_context };
  TrConfig *config = tr_reload_run (admin->config, &targets, changes_out, error);

  if (config == NULL)
    return FALSE;
  tr_config_free (admin->reloaded);
  admin->reloaded = config;
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
    return refuse (refusal, code, "reload refused, running configuration unchanged: %s", error->message);
  }
  tr_thrift_write_field_begin (result, TR_TTYPE_LIST, 0);
  tr_thrift_write_list_begin (result, TR_TTYPE_STRING, changes->len);
  for (guint i = 0; i < changes->len; i++)
    tr_thrift_write_string (result, g_ptr_array_index (changes, i));
  return TRUE;
}

static gboolean
on_signal_reload (gpointer user_data)
{
  g_autoptr (GError) error = NULL;

  if (!reload (user_data, NULL, &error))
    g_warning ("reload refused (SIGHUP), running configuration unchanged: %s", error->message);
  return G_SOURCE_REMOVE;
}

void
tr_admin_reload_async (TrAdmin *admin)
{
  g_return_if_fail (admin != NULL);

  g_main_context_invoke (admin->context, on_signal_reload, admin);
}

typedef gboolean (*CallFunc) (TrAdmin *admin, const Args *args, GByteArray *result, Refusal *refusal);

static const struct {
  const char *name;
  CallFunc func;
} calls[] = {
  { "status", call_status },     { "services", call_services }, { "endpoints", call_endpoints },
  { "set_stop_send", call_set_stop_send }, { "skip", call_skip }, { "rewind", call_rewind },
  { "dump", call_dump },         { "dead_letters", call_dead_letters }, { "reload", call_reload },
};

/* ---- messages ---- */

static TrFrameStatus
decode_args (const guint8 *body, gsize len, Args *args)
{
  TrThriftReader reader;

  memset (args, 0, sizeof *args);
  tr_thrift_reader_init (&reader, body, len);
  for (;;) {
    guint8 type;
    gint16 id;
    gint32 i32;
    gboolean b;
    TrFrameStatus status = tr_thrift_read_field_begin (&reader, &type, &id);
    if (status != TR_FRAME_OK || type == TR_TTYPE_STOP)
      return status;
    if (id <= 0 || id >= ADMIN_MAX_ARG)
      status = tr_thrift_read_skip (&reader, type);
    else if (type == TR_TTYPE_STRING)
      status = tr_thrift_read_binary (&reader, &args->str[id], &args->str_len[id]);
    else if (type == TR_TTYPE_I64)
      status = tr_thrift_read_i64 (&reader, &args->num[id]);
    else if (type == TR_TTYPE_I32 && (status = tr_thrift_read_i32 (&reader, &i32)) == TR_FRAME_OK)
      args->num[id] = i32;
    else if (type == TR_TTYPE_BOOL && (status = tr_thrift_read_bool (&reader, &b)) == TR_FRAME_OK)
      args->num[id] = b;
    else if (type != TR_TTYPE_I32 && type != TR_TTYPE_BOOL)
      status = tr_thrift_read_skip (&reader, type);
    if (status != TR_FRAME_OK)
      return status;
  }
}

/* Serves one CALL; appends the answer frame to conn->out. */
static void
serve_call (AdminConn *conn, const guint8 *msg, gsize len, const TrMsgHeader *header)
{
  TrAdmin *admin = conn->admin;
  const char *name = (const char *) header->name;
  g_autoptr (GByteArray) result = g_byte_array_new ();
  Refusal refusal = { 0 };
  CallFunc func = NULL;
  Args args;
  TrFrameStatus status;

  for (guint i = 0; i < G_N_ELEMENTS (calls); i++)
    if (strlen (calls[i].name) == header->name_len && memcmp (calls[i].name, name, header->name_len) == 0)
      func = calls[i].func;
  if (func == NULL) {
    g_autofree char *text = g_strdup_printf ("unknown admin method '%.*s'", (int) header->name_len, name);
    tr_frame_build_exception (conn->out, name, header->name_len, header->seqid, TR_APP_EXC_UNKNOWN_METHOD, text);
    return;
  }
  status = decode_args (msg + header->body_offset, len - header->body_offset, &args);
  if (status != TR_FRAME_OK) {
    g_autofree char *text = g_strdup_printf ("bad arguments: %s", tr_frame_status_to_string (status));
    tr_frame_build_exception (conn->out, name, header->name_len, header->seqid, TR_APP_EXC_PROTOCOL_ERROR, text);
    return;
  }
  if (!token_ok (admin, args.str[1], args.str[1] != NULL ? args.str_len[1] : 0)) {
    refuse (&refusal, TR_ADMIN_CODE_NOT_AUTHORISED, "not authorised: wrong or missing admin token");
    g_log_structured (G_LOG_DOMAIN, G_LOG_LEVEL_MESSAGE, "TR_PEER", conn->peer, "MESSAGE",
                      "admin: refused a call from %s: wrong or missing token", conn->peer);
  } else if (func (admin, &args, result, &refusal)) {
    tr_thrift_write_field_stop (result);
  }
  if (refusal.message != NULL) {
    g_byte_array_set_size (result, 0);
    tr_thrift_write_field_begin (result, TR_TTYPE_STRUCT, 1);
    tr_thrift_write_field_i32 (result, 1, (gint32) refusal.code);
    tr_thrift_write_field_string (result, 2, refusal.message);
    tr_thrift_write_field_stop (result);
    tr_thrift_write_field_stop (result);
    g_free (refusal.message);
  }
  tr_frame_build_call (conn->out, TR_MSG_REPLY, name, header->name_len, header->seqid, result->data, result->len);
}

/* Handles one frame payload.  Returns FALSE to close the connection. */
static gboolean
handle_message (AdminConn *conn, const guint8 *msg, gsize len)
{
  TrMsgHeader header;
  TrFrameStatus status = tr_frame_parse_header (msg, len, &header);

  if (status != TR_FRAME_OK && header.seqid_valid && header.name_len <= TR_FRAME_MAX_NAME_LEN &&
      header.type == TR_MSG_CALL) {
    tr_frame_build_exception (conn->out, (const char *) header.name, header.name_len, header.seqid,
                              TR_APP_EXC_PROTOCOL_ERROR, tr_frame_status_to_string (status));
    return TRUE;
  }
  if (status != TR_FRAME_OK)
    return FALSE;
  if (header.type == TR_MSG_ONEWAY)
    return TRUE; /* no admin call is oneway: nothing to answer */
  if (header.type != TR_MSG_CALL)
    return FALSE;
  serve_call (conn, msg, len, &header);
  return TRUE;
}

/* ---- connections ---- */

static void conn_watch (AdminConn *conn, GIOCondition events);

static void
conn_free (gpointer data)
{
  AdminConn *conn = data;

  if (conn->source != NULL) {
    g_source_destroy (conn->source);
    g_source_unref (conn->source);
  }
  if (conn->fd >= 0)
    close (conn->fd);
  g_byte_array_unref (conn->in);
  g_byte_array_unref (conn->out);
  g_free (conn->peer);
  g_free (conn);
}

static gboolean
on_conn_free (gpointer user_data)
{
  conn_free (user_data);
  return G_SOURCE_REMOVE;
}

/* Called inside the connection's own dispatch: stop its source now, free
 * it from an idle (never inside its own callback). */
static void
conn_close (AdminConn *conn)
{
  GSource *idle;

  g_hash_table_steal (conn->admin->conns, conn);
  g_source_destroy (conn->source);
  idle = g_idle_source_new ();
  g_source_set_callback (idle, on_conn_free, conn, NULL);
  g_source_attach (idle, conn->admin->context);
  g_source_unref (idle);
}

/* Returns FALSE if the connection failed. */
static gboolean
conn_flush (AdminConn *conn)
{
  while (conn->out_pos < conn->out->len) {
    ssize_t n = send (conn->fd, conn->out->data + conn->out_pos, conn->out->len - conn->out_pos, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
      break;
    if (n < 0)
      return FALSE;
    conn->out_pos += (gsize) n;
  }
  if (conn->out_pos == conn->out->len) {
    g_byte_array_set_size (conn->out, 0);
    conn->out_pos = 0;
  }
  return TRUE;
}

/* Returns FALSE if the connection is to be closed. */
static gboolean
conn_read (AdminConn *conn)
{
  GByteArray *in = conn->in;
  guint old = in->len;
  gsize pos = 0;
  ssize_t n;

  g_byte_array_set_size (in, old + ADMIN_READ_CHUNK);
  do
    n = recv (conn->fd, in->data + old, ADMIN_READ_CHUNK, 0);
  while (n < 0 && errno == EINTR);
  g_byte_array_set_size (in, old + (guint) MAX (n, 0));
  if (n == 0)
    return FALSE;
  if (n < 0)
    return errno == EAGAIN || errno == EWOULDBLOCK;
  for (;;) {
    guint32 frame_len = 0;
    TrFrameStatus status = tr_frame_next (in->data + pos, in->len - pos, ADMIN_MAX_REQUEST_FRAME, &frame_len);
    if (status == TR_FRAME_NEED_MORE)
      break;
    if (status != TR_FRAME_OK) {
      g_log_structured (G_LOG_DOMAIN, G_LOG_LEVEL_WARNING, "TR_PEER", conn->peer, "MESSAGE",
                        "admin: closing %s: %s", conn->peer, tr_frame_status_to_string (status));
      return FALSE;
    }
    if (!handle_message (conn, in->data + pos + TR_FRAME_LEN_SIZE, frame_len))
      return FALSE;
    pos += TR_FRAME_LEN_SIZE + frame_len;
    if (conn->out->len - conn->out_pos > ADMIN_OUT_HIGH_WATER)
      break;
  }
  g_byte_array_remove_range (in, 0, (guint) pos);
  return TRUE;
}

static void
conn_io (AdminConn *conn, GIOCondition condition)
{
  if ((condition & (G_IO_IN | G_IO_HUP | G_IO_ERR)) && !conn_read (conn)) {
    conn_close (conn);
    return;
  }
  if (!conn_flush (conn)) {
    conn_close (conn);
    return;
  }
  if (conn->out->len - conn->out_pos > ADMIN_OUT_HIGH_WATER)
    conn_watch (conn, G_IO_OUT);
  else if (conn->out->len > conn->out_pos)
    conn_watch (conn, G_IO_IN | G_IO_OUT);
  else
    conn_watch (conn, G_IO_IN);
}

static gboolean
conn_source_dispatch (GSource *source, GSourceFunc callback, gpointer user_data)
{
  AdminConn *conn = ((ConnSource *) source)->conn;
  GIOCondition condition = g_source_query_unix_fd (source, conn->fd_tag);

  (void) callback;
  (void) user_data;
  if (condition != 0)
    conn_io (conn, condition);
  return G_SOURCE_CONTINUE;
}

static GSourceFuncs conn_source_funcs = {
  .dispatch = conn_source_dispatch,
};

static void
conn_watch (AdminConn *conn, GIOCondition events)
{
  if (conn->events != events) {
    g_source_modify_unix_fd (conn->source, conn->fd_tag, events);
    conn->events = events;
  }
}

static char *
peer_name (int fd)
{
  struct sockaddr_storage address;
  socklen_t address_len = sizeof address;
  char host[NI_MAXHOST], port[NI_MAXSERV];

  if (getpeername (fd, (struct sockaddr *) &address, &address_len) < 0 ||
      getnameinfo ((struct sockaddr *) &address, address_len, host, sizeof host, port, sizeof port,
                   NI_NUMERICHOST | NI_NUMERICSERV) != 0)
    return g_strdup ("?");
  return g_strdup_printf ("%s:%s", host, port);
}

static gboolean
on_accept (gint fd, GIOCondition condition, gpointer user_data)
{
  TrAdmin *admin = user_data;

  (void) fd;
  (void) condition;
  for (;;) {
    int client = accept4 (admin->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    AdminConn *conn;
    if (client < 0)
      break; /* EAGAIN, or a transient error: the next readiness retries */
    if (g_hash_table_size (admin->conns) >= ADMIN_MAX_CONNECTIONS) {
      g_autofree char *peer = peer_name (client);
      g_log_structured (G_LOG_DOMAIN, G_LOG_LEVEL_WARNING, "TR_PEER", peer, "MESSAGE",
                        "admin: refusing %s: %d admin connections open", peer, ADMIN_MAX_CONNECTIONS);
      close (client);
      continue;
    }
    conn = g_new0 (AdminConn, 1);
    conn->admin = admin;
    conn->fd = client;
    conn->peer = peer_name (client);
    conn->in = g_byte_array_new ();
    conn->out = g_byte_array_new ();
    conn->source = g_source_new (&conn_source_funcs, sizeof (ConnSource));
    ((ConnSource *) conn->source)->conn = conn;
    g_source_set_name (conn->source, "tr-admin connection");
    conn->fd_tag = g_source_add_unix_fd (conn->source, client, G_IO_IN);
    conn->events = G_IO_IN;
    g_source_attach (conn->source, admin->context);
    g_hash_table_add (admin->conns, conn);
    g_debug ("admin: connection from %s", conn->peer);
  }
  return G_SOURCE_CONTINUE;
}

/* ---- life cycle ---- */

static int
listen_on (const char *host, guint16 port, guint16 *port_out, GError **error)
{
  struct addrinfo hints = { 0 };
  struct addrinfo *res = NULL;
  struct sockaddr_storage bound;
  socklen_t bound_len = sizeof bound;
  char service[8];
  int one = 1;
  int fd, rc;

  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  g_snprintf (service, sizeof service, "%u", port);
  rc = getaddrinfo (host, service, &hints, &res);
  if (rc != 0) {
    g_set_error (error, G_IO_ERROR, G_IO_ERROR_FAILED, "admin_listen %s:%u: %s", host, port, gai_strerror (rc));
    return -1;
  }
  fd = socket (res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd >= 0)
    setsockopt (fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (fd < 0 || bind (fd, res->ai_addr, res->ai_addrlen) < 0 || listen (fd, 64) < 0 ||
      getsockname (fd, (struct sockaddr *) &bound, &bound_len) < 0) {
    int saved_errno = errno;
    g_set_error (error, G_IO_ERROR, g_io_error_from_errno (saved_errno), "admin_listen %s:%u: %s", host, port,
                 g_strerror (saved_errno));
    if (fd >= 0)
      close (fd);
    freeaddrinfo (res);
    return -1;
  }
  freeaddrinfo (res);
  *port_out = g_ntohs (bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *) &bound)->sin6_port
                                                   : ((struct sockaddr_in *) &bound)->sin_port);
  return fd;
}

static gboolean
read_token (TrAdmin *admin, const char *path, GError **error)
{
  g_autofree char *text = NULL;

  if (!g_file_get_contents (path, &text, NULL, error)) {
    g_prefix_error (error, "admin_token_file: ");
    return FALSE;
  }
  g_strstrip (text);
  if (text[0] == '\0') {
    g_set_error (error, TR_CONFIG_ERROR, TR_CONFIG_ERROR_INVALID, "admin_token_file %s holds no token", path);
    return FALSE;
  }
  admin->token_len = strlen (text);
  admin->token = g_steal_pointer (&text);
  return TRUE;
}

static gpointer
admin_thread (gpointer user_data)
{
  TrAdmin *admin = user_data;

  g_main_context_push_thread_default (admin->context);
  g_main_loop_run (admin->loop);
  g_main_context_pop_thread_default (admin->context);
  return NULL;
}

static void
admin_free_unstarted (TrAdmin *admin)
{
  if (admin->listen_source != NULL) {
    g_source_destroy (admin->listen_source);
    g_source_unref (admin->listen_source);
  }
  if (admin->rate_source != NULL) {
    g_source_destroy (admin->rate_source);
    g_source_unref (admin->rate_source);
  }
  g_hash_table_unref (admin->conns);
  if (admin->listen_fd >= 0)
    close (admin->listen_fd);
  g_main_loop_unref (admin->loop);
  g_main_context_unref (admin->context);
  if (admin->token != NULL)
    memset (admin->token, 0, admin->token_len);
  g_free (admin->token);
  g_free (admin);
}

TrAdmin *
tr_admin_new (TrConfig *config, TrRpcStore *store, TrPush *push, TrIngress *ingress,
              GMainContext *ingress_context, GError **error)
{
  TrAdmin *admin;

  g_return_val_if_fail (config != NULL && store != NULL && push != NULL, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  admin = g_new0 (TrAdmin, 1);
  admin->config = config;
  admin->store = store;
  admin->push = push;
  admin->ingress = ingress;
  admin->ingress_context = ingress_context;
  admin->listen_fd = -1;
  admin->context = g_main_context_new ();
  admin->loop = g_main_loop_new (admin->context, FALSE);
  admin->conns = g_hash_table_new_full (NULL, NULL, conn_free, NULL);
  if ((config->admin_token_file != NULL && !read_token (admin, config->admin_token_file, error)) ||
      (admin->listen_fd = listen_on (config->admin_host, config->admin_port, &admin->port, error)) < 0) {
    admin_free_unstarted (admin);
    return NULL;
  }
  admin->listen_source = g_unix_fd_source_new (admin->listen_fd, G_IO_IN);
  g_source_set_callback (admin->listen_source, G_SOURCE_FUNC (on_accept), admin, NULL);
  g_source_attach (admin->listen_source, admin->context);
  on_rate_tick (admin);
  admin->rate_source = g_timeout_source_new_seconds (1);
  g_source_set_callback (admin->rate_source, on_rate_tick, admin, NULL);
  g_source_attach (admin->rate_source, admin->context);
  admin->thread = g_thread_new ("tr-admin", admin_thread, admin);
  g_message ("admin service on %s:%u (%s)", config->admin_host, admin->port,
             admin->token != NULL ? "token required" : "no token");
  return admin;
}

guint16
tr_admin_get_port (TrAdmin *admin)
{
  g_return_val_if_fail (admin != NULL, 0);
  return admin->port;
}

static gboolean
on_quit (gpointer user_data)
{
  g_main_loop_quit (((TrAdmin *) user_data)->loop);
  return G_SOURCE_REMOVE;
}

void
tr_admin_free (TrAdmin *admin)
{
  GSource *quit_source;

  if (admin == NULL)
    return;
  quit_source = g_idle_source_new ();
  g_source_set_priority (quit_source, G_PRIORITY_HIGH);
  g_source_set_callback (quit_source, on_quit, admin, NULL);
  g_source_attach (quit_source, admin->context);
  g_source_unref (quit_source);
  g_thread_join (admin->thread);
  /* Connections closed but not yet freed by their idle are freed with the
   * context's sources: run what is pending. */
  while (g_main_context_iteration (admin->context, FALSE))
    ;
  g_hash_table_remove_all (admin->conns);
  tr_config_free (admin->reloaded);
  admin_free_unstarted (admin);
}

void
tr_admin_set_epoch (TrAdmin *admin, guint64 epoch)
{
  admin->epoch = epoch;
}
