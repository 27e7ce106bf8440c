/* tr_push_endpoint.c - one endpoint of a service: what to send (RPCs read
 * from the store, oneway barriers), what a reply means, what a failure of
 * an RPC costs (max_retries, on_failure, dead letters), and the log lines
 * about it.  The connection itself (resolve, connect, backoff, window,
 * reply matching, first-reply hints) is a TrPeer (tr_peer.h).  Runs on
 * the push thread only.
 *
 * Endpoint state (tr_push__endpoint_state()): STOPPED while stop_send is
 * on (the peer is IDLE, the position kept); otherwise the peer's state:
 *
 *   BACKOFF --timer--> CONNECTING --connected: on_connected()--> SENDING
 *   CONNECTING --refused / connect_timeout_ms--> BACKOFF (on_failed())
 *   SENDING --reset, bad reply, wrong seqid, socket_timeout_ms with
 *             messages in flight: on_failed()--> BACKOFF
 *   SENDING --exception or non-empty result: endpoint_fail_rpc()--> BACKOFF
 *
 * BLOCKED is shown in place of the peer's state while on_failure = block
 * holds the endpoint on one seqid (blocked()): that seqid failed at the RPC
 * level more than max_retries times in a row and the last failure was that
 * refusal, not a connection failure (a connection failure shows BACKOFF:
 * the endpoint is down, not refusing).  Acknowledging, dead-lettering or an
 * operator's skip / rewind / stop_send of that seqid ends it.
 *
 * Last error: every failure stamps ->last_error_time (wall clock) and makes
 * the error current; it becomes past (->last_error_resolved) at the next
 * acknowledgement, or for a connection failure at the next connection.
 *
 * Invariants:
 *  - acked < every seqid in flight < next_seqid; seqids in flight are
 *    acked+1, acked+2, ... in order (a barrier repeats the seqid of the
 *    oneway before it);
 *  - after any failure the connection is closed, inflight dropped and
 *    next_seqid = acked + 1: delivery restarts at the first unacknowledged
 *    seqid, so an endpoint may see duplicates but never a gap;
 *  - after an RPC failure of seqid S only S is in flight until S is
 *    acknowledged or dead-lettered (tr_peer_window_shrink()): the RPCs
 *    behind S are not replayed at every retry;
 *  - the endpoint is sent one connection's worth of messages only: with
 *    max_connection > 1 one connection is still used (per-endpoint order).
 *
 * Matching: the peer hands over the answer to the first entry in flight
 * that awaits one (not a ONEWAY), its seqid checked; any answer to it
 * acknowledges the oneways before it.  With oneway_barrier on, every run
 * of oneways is followed by a CALL of barrier_method carrying the last
 * oneway's seqid; its answer (normally UNKNOWN_METHOD) acknowledges the
 * run; after a oneway named "Service:method" (TMultiplexedProtocol) the
 * barrier is named "Service:barrier_method", so a TMultiplexedProcessor
 * endpoint hands it to that service, which answers UNKNOWN_METHOD, instead
 * of hanging up on a name without a service.  With it off, a oneway counts
 * as delivered once fully written to the socket.  The barrier may take the
 * in-flight count one past max_inflight.
 *
 * Limits: seqids go on the wire as Thrift i32 (tr_frame_wire_seqid()): past
 * 2^31 - 1 RPCs in a service the endpoint sees them wrap to -2^31; replies
 * are matched on the same 32 bits, so delivery goes on.
 *
 * A message the store cannot read or parse is treated as an RPC-level
 * failure of its seqid (so on_failure = skip dead-letters it).
 */
#undef G_LOG_DOMAIN
#define G_LOG_DOMAIN "tr-push"

#include "tr_push_private.h"

#include "tr_frame.h"

#include <string.h>

#define TR_PUSH_BLOCKED_WARN_EVERY 10

/* The entries' kinds (TrPeerInflight.kind). */
typedef enum {
  TR_PUSH_KIND_CALL,
  TR_PUSH_KIND_ONEWAY,
  TR_PUSH_KIND_BARRIER, /* CALL of barrier_method; its seqid is the oneway's before it */
} TrPushKind;

/* See the header comment: held on one seqid by on_failure = block. */
static gboolean
blocked (const TrPushEndpoint *endpoint)
{
  const TrPushService *service = endpoint->service;

  return service->on_failure == TR_ON_FAILURE_BLOCK && endpoint->failure_is_rpc && endpoint->rpc_fail_seqid != 0
         && endpoint->rpc_fail_count > service->max_retries;
}

TrPushEndpointState
tr_push__endpoint_state (const TrPushEndpoint *endpoint)
{
  if (endpoint->stopped)
    return TR_PUSH_STOPPED;
  if (blocked (endpoint))
    return TR_PUSH_BLOCKED;
  switch (tr_peer_get_state (endpoint->peer)) {
  case TR_PEER_CONNECTING:
    return TR_PUSH_CONNECTING;
  case TR_PEER_CONNECTED:
    return TR_PUSH_SENDING;
  case TR_PEER_IDLE: /* not started yet */
  case TR_PEER_BACKOFF:
    break;
  }
  return TR_PUSH_BACKOFF;
}

/* ---- acknowledgement ---- */

/* Any acknowledgement: the backoff starts over; once the failing seqid
 * is acknowledged, the window grows back (it was 1 since the failure: the
 * endpoint's server processes everything pipelined behind a refused RPC,
 * so a full window would replay those RPCs at every retry). */
static void
progress (TrPushEndpoint *endpoint)
{
  tr_peer_reset_backoff (endpoint->peer);
  if (endpoint->acked >= endpoint->rpc_fail_seqid) {
    endpoint->rpc_fail_seqid = 0;
    endpoint->rpc_fail_rpc_id = 0;
    endpoint->rpc_fail_count = 0;
    endpoint->failure_is_rpc = FALSE;
    tr_peer_window_grow (endpoint->peer);
  }
  if (endpoint->last_error_time != 0 && endpoint->last_error_resolved == 0)
    endpoint->last_error_resolved = g_get_real_time ();
  tr_push__acked (endpoint);
}

/* @entry (not a barrier) is delivered: counts it, and its latency from
 * the RPC's commit (real time: the commit time is stored with the RPC, so
 * it survives restarts and is comparable to the producer's clock). */
static void
count_delivered (TrPushEndpoint *endpoint, const TrPeerInflight *entry, gint64 now)
{
  endpoint->delivered++;
  if (entry->time_us > 0)
    tr_histogram_observe (&endpoint->delivery_latency, (guint64) MAX (now - entry->time_us, 0));
}

/* Acknowledges every entry in flight up to and including @last. */
static void
ack_through (TrPushEndpoint *endpoint, TrPeerInflight *last)
{
  TrPeerInflight *entry;
  gint64 now = g_get_real_time ();

  do {
    entry = tr_peer_inflight_pop (endpoint->peer);
    endpoint->acked = MAX (endpoint->acked, entry->seqid);
    if (entry->kind != TR_PUSH_KIND_BARRIER)
      count_delivered (endpoint, entry, now);
    if (entry != last)
      g_free (entry);
  } while (entry != last);
  g_free (last);
  progress (endpoint);
}

/* Acknowledges the entries in flight before @entry (all oneways). */
static void
ack_before (TrPushEndpoint *endpoint, TrPeerInflight *entry)
{
  gboolean any = FALSE;
  gint64 now = g_get_real_time ();

  while (tr_peer_inflight_peek_head (endpoint->peer) != entry) {
    TrPeerInflight *oneway = tr_peer_inflight_pop (endpoint->peer);
    endpoint->acked = oneway->seqid;
    count_delivered (endpoint, oneway, now);
    g_free (oneway);
    any = TRUE;
  }
  if (any)
    progress (endpoint);
}

/* oneway_barrier off: a oneway is delivered once written. */
static void
on_written (TrPeer *peer, gpointer user_data)
{
  TrPushEndpoint *endpoint = user_data;
  TrPeerInflight *entry;
  gboolean any = FALSE;
  gint64 now = g_get_real_time ();

  if (endpoint->service->oneway_barrier)
    return;
  while ((entry = tr_peer_inflight_peek_head (peer)) != NULL && entry->kind == TR_PUSH_KIND_ONEWAY &&
         entry->end <= tr_peer_get_written (peer)) {
    endpoint->acked = entry->seqid;
    count_delivered (endpoint, entry, now);
    g_free (tr_peer_inflight_pop (peer));
    any = TRUE;
  }
  if (any)
    progress (endpoint);
}

/* ---- failure ---- */

/* RPC-level failure of @seqid: counts it, and applies on_failure once it
 * failed more than max_retries times in a row. */
static void
rpc_failed (TrPushEndpoint *endpoint, guint64 seqid, guint64 rpc_id, const char *reason)
{
  TrPushService *service = endpoint->service;
  g_autoptr (GError) error = NULL;

  if (endpoint->rpc_fail_seqid != seqid) {
    endpoint->rpc_fail_seqid = seqid;
    endpoint->rpc_fail_count = 0;
  }
  endpoint->rpc_fail_rpc_id = rpc_id;
  endpoint->rpc_fail_count++;
  tr_peer_window_shrink (endpoint->peer);
  if (endpoint->rpc_fail_count <= service->max_retries)
    return;
  if (service->on_failure == TR_ON_FAILURE_BLOCK) {
    if ((endpoint->rpc_fail_count - service->max_retries - 1) % TR_PUSH_BLOCKED_WARN_EVERY == 0)
      tr_push__log (endpoint, G_LOG_LEVEL_WARNING, seqid,
                    "blocked on seqid %" G_GUINT64_FORMAT " after %u attempts (on_failure = block): %s", seqid,
                    endpoint->rpc_fail_count, reason);
    return;
  }
  if (endpoint->acked + 1 != seqid) {
    /* Cannot happen: the failed seqid is always the first unacknowledged. */
    tr_push__log (endpoint, G_LOG_LEVEL_WARNING, seqid, "not skipping seqid %" G_GUINT64_FORMAT ": acked is %"
                  G_GUINT64_FORMAT, seqid, endpoint->acked);
    return;
  }
  if (!tr_rpcstore_add_dead_letter (endpoint->push->store, service->service_id, seqid, rpc_id, reason, &error)) {
    tr_push__log (endpoint, G_LOG_LEVEL_WARNING, seqid,
                  "cannot record seqid %" G_GUINT64_FORMAT " as a dead letter, retrying it: %s", seqid,
                  error->message);
    return;
  }
  tr_push__log (endpoint, G_LOG_LEVEL_WARNING, seqid,
                "skipped seqid %" G_GUINT64_FORMAT " (rpc %" G_GUINT64_FORMAT ") after %u attempts, now a dead "
                "letter: %s",
                seqid, rpc_id, endpoint->rpc_fail_count, reason);
  endpoint->dead_letters++;
  endpoint->acked = seqid;
  progress (endpoint);
}

static void
log_failure (TrPushEndpoint *endpoint, guint64 delay_ms)
{
  g_autofree char *suffix = NULL;
  guint suppressed = 0;

  if (!tr_net_log_limit_admit (endpoint->fail_log, "backoff", &suppressed))
    return;
  suffix = tr_net_log_limit_suffix (endpoint->fail_log, suppressed);
  tr_push__log (endpoint, G_LOG_LEVEL_WARNING, endpoint->acked + 1,
                "backoff %" G_GUINT64_FORMAT " ms at seqid %" G_GUINT64_FORMAT ": %s%s", delay_ms,
                endpoint->acked + 1, tr_peer_get_last_error (endpoint->peer), suffix);
  endpoint->down_logged = TRUE;
}


/* The peer failed (its own failure or endpoint_fail_rpc()): the
 * connection is closed, nothing is in flight. */
static void
on_failed (TrPeer *peer, const char *reason, guint64 delay_ms, gpointer user_data)
{
  TrPushEndpoint *endpoint = user_data;

  (void) peer;
  (void) reason;
  /* A refused RPC that was just dead-lettered (rpc_fail_seqid cleared by
   * progress()) is over: the next connection resolves it. */
  endpoint->failure_is_rpc = endpoint->failing_rpc && endpoint->rpc_fail_seqid != 0;
  endpoint->last_error_time = g_get_real_time ();
  endpoint->last_error_resolved = 0;
  if (endpoint->down_since == 0)
    endpoint->down_since = g_get_monotonic_time ();
  endpoint->down_failures++;
  endpoint->failures++;
  endpoint->next_seqid = endpoint->acked + 1;
  endpoint->stop_fill_at = 0;
  log_failure (endpoint, delay_ms);
}

/* The endpoint rejected @seqid: on_failure may apply (rpc_failed()), then
 * the connection is closed and backs off like any failure.  Safe inside
 * the peer's own callbacks. */
static void
endpoint_fail_rpc (TrPushEndpoint *endpoint, guint64 seqid, guint64 rpc_id, const char *format, ...)
    G_GNUC_PRINTF (4, 5);

static void
endpoint_fail_rpc (TrPushEndpoint *endpoint, guint64 seqid, guint64 rpc_id, const char *format, ...)
{
  g_autofree char *reason = NULL;
  va_list args;

  va_start (args, format);
  reason = g_strdup_vprintf (format, args);
  va_end (args);
  /* Before the peer backs off: a dead letter is progress, and the backoff
   * starts over from it. */
  rpc_failed (endpoint, seqid, rpc_id, reason);
  endpoint->failing_rpc = TRUE;
  tr_peer_fail (endpoint->peer, "%s", reason);
  endpoint->failing_rpc = FALSE;
}

/* ---- sending ---- */

typedef enum {
  QUEUE_OK,
  QUEUE_WAIT,   /* unreadable message: first let what is in flight drain */
  QUEUE_FAILED, /* the endpoint failed (now in BACKOFF) */
} QueueResult;

/* A message that cannot be read or parsed: once it is the first
 * unacknowledged seqid, fail it as an RPC-level failure. */
static QueueResult
unreadable (TrPushEndpoint *endpoint, guint64 seqid, guint64 rpc_id, const char *why)
{
  if (tr_peer_inflight_length (endpoint->peer) > 0) {
    endpoint->stop_fill_at = seqid;
    return QUEUE_WAIT;
  }
  tr_push__log (endpoint, G_LOG_LEVEL_WARNING, seqid, "stored rpc %" G_GUINT64_FORMAT " of seqid %" G_GUINT64_FORMAT
                " is unreadable: %s", rpc_id, seqid, why);
  endpoint_fail_rpc (endpoint, seqid, rpc_id, "stored rpc unreadable: %s", why);
  return QUEUE_FAILED;
}

/* The "Service:" part of a oneway's name (up to its last ':'), empty when
 * it has none: the barrier queued after it carries the same part. */
static void
remember_barrier_prefix (TrPushEndpoint *endpoint, const TrMsgHeader *header)
{
  gsize len = header->name_len;

  while (len > 0 && header->name[len - 1] != ':')
    len--;
  len = MIN (len, sizeof endpoint->barrier_prefix - 1);
  memcpy (endpoint->barrier_prefix, header->name, len);
  endpoint->barrier_prefix_len = len;
}

static QueueResult
queue_message (TrPushEndpoint *endpoint, guint64 seqid)
{
  TrRpcStore *store = endpoint->push->store;
  g_autoptr (GError) error = NULL;
  g_autoptr (GBytes) message = NULL;
  guint8 prefix[TR_FRAME_PUSH_PREFIX_MAX];
  guint64 rpc_id = 0;
  gint64 commit_time_us = 0;
  TrMsgHeader header;
  TrFrameStatus status;
  const guint8 *data;
  gsize len, prefix_len;

  if (!tr_rpcstore_service_lookup (store, endpoint->service->service_id, seqid, &rpc_id, &error))
    return unreadable (endpoint, seqid, rpc_id, error->message);
  message = tr_rpcstore_get (store, rpc_id, &commit_time_us, &error);
  if (message == NULL)
    return unreadable (endpoint, seqid, rpc_id, error->message);
  data = g_bytes_get_data (message, &len);
  status = tr_frame_parse_header (data, len, &header);
  if (status == TR_FRAME_OK && header.type != TR_MSG_CALL && header.type != TR_MSG_ONEWAY)
    status = TR_FRAME_BAD_TYPE;
  if (status != TR_FRAME_OK)
    return unreadable (endpoint, seqid, rpc_id, tr_frame_status_to_string (status));

  if (header.type == TR_MSG_ONEWAY)
    remember_barrier_prefix (endpoint, &header);
  prefix_len = tr_frame_push_prefix (data, len, &header, tr_frame_wire_seqid (seqid), prefix);
  tr_peer_queue (endpoint->peer, prefix, prefix_len, data + header.body_offset, len - header.body_offset, seqid,
                 header.type != TR_MSG_ONEWAY, header.type == TR_MSG_ONEWAY ? TR_PUSH_KIND_ONEWAY : TR_PUSH_KIND_CALL,
                 rpc_id);
  tr_peer_inflight_peek_tail (endpoint->peer)->time_us = commit_time_us;
  endpoint->next_seqid = seqid + 1;
  return QUEUE_OK;
}

static void
queue_barrier (TrPushEndpoint *endpoint, guint64 seqid)
{
  const char *method = endpoint->service->barrier_method;
  g_autoptr (GByteArray) call = g_byte_array_new ();
  g_autofree char *name = g_strdup_printf ("%.*s%s", (int) endpoint->barrier_prefix_len, endpoint->barrier_prefix,
                                           method);

  tr_frame_build_call (call, TR_MSG_CALL, name, strlen (name), tr_frame_wire_seqid (seqid), NULL, 0);
  tr_peer_queue (endpoint->peer, call->data, call->len, NULL, 0, seqid, TRUE, TR_PUSH_KIND_BARRIER, 0);
}

void
tr_push__endpoint_fill (TrPushEndpoint *endpoint)
{
  TrPushService *service = endpoint->service;
  TrPeerInflight *tail;
  guint64 head;

  if (endpoint->stopped || tr_peer_get_state (endpoint->peer) != TR_PEER_CONNECTED)
    return;
  head = tr_rpcstore_service_head (endpoint->push->store, service->service_id);
  while (tr_peer_inflight_length (endpoint->peer) < tr_peer_window (endpoint->peer) && endpoint->next_seqid <= head) {
    QueueResult result;
    if (endpoint->stop_fill_at != 0 && tr_peer_inflight_length (endpoint->peer) > 0)
      break;
    result = queue_message (endpoint, endpoint->next_seqid);
    if (result == QUEUE_FAILED)
      return;
    if (result == QUEUE_WAIT)
      break;
  }
  endpoint->fill_held = endpoint->next_seqid <= head;
  tail = tr_peer_inflight_peek_tail (endpoint->peer);
  if (service->oneway_barrier && tail != NULL && tail->kind == TR_PUSH_KIND_ONEWAY)
    queue_barrier (endpoint, tail->seqid);
  tr_peer_flush (endpoint->peer);
}


/* ---- replies ---- */

/* The exception text is the endpoint's: keep it short and printable. */
static char *
printable (const guint8 *text, gsize len)
{
  char *copy = g_strndup ((const char *) text, MIN (len, 200));

  for (char *p = copy; *p != '\0'; p++)
    if ((guchar) *p < 0x20 || (guchar) *p >= 0x7f)
      *p = '?';
  return copy;
}


/* The peer matched a reply to @expected.  Returns FALSE if the endpoint
 * failed. */
static gboolean
on_reply (TrPeer *peer, const TrReply *reply, TrPeerInflight *expected, gpointer user_data)
{
  TrPushEndpoint *endpoint = user_data;
  g_autofree char *text = NULL;

  if (reply->header.type == TR_MSG_EXCEPTION)
    text = printable (reply->exception_message, reply->exception_message_len);
  if (expected->kind == TR_PUSH_KIND_BARRIER) {
    if (reply->header.type == TR_MSG_REPLY || reply->exception_type == TR_APP_EXC_UNKNOWN_METHOD) {
      ack_through (endpoint, expected);
      return TRUE;
    }
    tr_peer_fail (peer, "barrier call answered with exception type %d: %s", reply->exception_type, text);
    return FALSE;
  }
  if (reply->header.type == TR_MSG_REPLY && reply->result_field_id == -1) {
    ack_through (endpoint, expected);
    return TRUE;
  }
  ack_before (endpoint, expected);
  if (reply->header.type == TR_MSG_REPLY && reply->result_field_id == 0)
    endpoint_fail_rpc (endpoint, expected->seqid, expected->tag,
                       "endpoint returned a value (result field 0): its method is not void, and routed methods "
                       "must be void or oneway");
  else if (reply->header.type == TR_MSG_REPLY)
    endpoint_fail_rpc (endpoint, expected->seqid, expected->tag,
                       "endpoint answered a declared exception (result field %d)", reply->result_field_id);
  else
    endpoint_fail_rpc (endpoint, expected->seqid, expected->tag, "endpoint answered TApplicationException type %d: %s",
                       reply->exception_type, text);
  return FALSE;
}

/* Replies make room in the window; only an endpoint that the window (or
 * an unreadable message) held back needs filling now.  RPCs committed
 * since the last fill go out with the next wake-up (tr_push_wake(): one
 * per commit, lingering), in one send with whatever else came meanwhile:
 * filling on every batch of replies sent a few RPCs at a time and woke
 * the endpoint for each. */
static void
on_io_done (TrPeer *peer, gpointer user_data)
{
  TrPushEndpoint *endpoint = user_data;

  (void) peer;
  if (endpoint->fill_held)
    tr_push__endpoint_fill (endpoint);
}

/* ---- connecting ---- */

/* The failures were logged as warnings (rate-limited): the reconnection
 * that ends them is logged where an operator sees it too, or the last word
 * visible stays "Connection refused".  One whose failures were all
 * suppressed stays at info level, like the failures themselves. */
static void
log_connected (TrPushEndpoint *endpoint, const char *where)
{
  guint64 from = endpoint->acked + 1;

  if (endpoint->down_failures == 0)
    tr_push__log (endpoint, tr_peer_get_retries (endpoint->peer) == 0 ? G_LOG_LEVEL_MESSAGE : G_LOG_LEVEL_INFO, from,
                  "connected to %s, sending from seqid %" G_GUINT64_FORMAT, where, from);
  else
    tr_push__log (endpoint, endpoint->down_logged ? G_LOG_LEVEL_MESSAGE : G_LOG_LEVEL_INFO, from,
                  "connected to %s after %u failed attempt%s in %.1f s (last: %s), sending from seqid %"
                  G_GUINT64_FORMAT, where, endpoint->down_failures, endpoint->down_failures == 1 ? "" : "s",
                  (double) (g_get_monotonic_time () - endpoint->down_since) / G_TIME_SPAN_SECOND,
                  tr_peer_get_last_error (endpoint->peer), from);
  endpoint->down_since = 0;
  endpoint->down_failures = 0;
  endpoint->down_logged = FALSE;
}

static void
on_connected (TrPeer *peer, const char *where, gpointer user_data)
{
  TrPushEndpoint *endpoint = user_data;

  (void) peer;
  /* A connection failure is over once connected; an RPC's refusal only
   * once that RPC is acknowledged (progress()). */
  if (!endpoint->failure_is_rpc && endpoint->last_error_time != 0 && endpoint->last_error_resolved == 0)
    endpoint->last_error_resolved = g_get_real_time ();
  log_connected (endpoint, where);
  tr_push__endpoint_fill (endpoint);
}

static void
on_note (TrPeer *peer, GLogLevelFlags level, const char *message, gpointer user_data)
{
  TrPushEndpoint *endpoint = user_data;

  (void) peer;
  tr_push__log (endpoint, level, endpoint->acked + 1, "%s", message);
}

static const TrPeerCallbacks endpoint_peer_callbacks = {
  .connected = on_connected,
  .reply = on_reply,
  .written = on_written,
  .io_done = on_io_done,
  .failed = on_failed,
  .note = on_note,
};

static void
peer_settings (const TrPushService *service, TrPeerSettings *settings)
{
  settings->max_inflight = service->max_inflight;
  settings->connect_timeout_ms = service->connect_timeout_ms;
  settings->socket_timeout_ms = service->socket_timeout_ms;
  settings->retry_backoff_ms = service->retry_backoff_ms;
  settings->retry_backoff_max_ms = service->retry_backoff_max_ms;
}

TrPeer *
tr_push__endpoint_peer_new (TrPushEndpoint *endpoint, const char *host, guint16 port)
{
  TrPeerSettings settings;

  peer_settings (endpoint->service, &settings);
  return tr_peer_new (host, port, &settings, &endpoint_peer_callbacks, endpoint);
}

void
tr_push__endpoint_configure (TrPushEndpoint *endpoint)
{
  TrPeerSettings settings;

  peer_settings (endpoint->service, &settings);
  tr_peer_set_settings (endpoint->peer, &settings);
}

void
tr_push__endpoint_start (TrPushEndpoint *endpoint)
{
  if (endpoint->stopped) {
    tr_push__log (endpoint, G_LOG_LEVEL_MESSAGE, endpoint->acked + 1,
                  "stop_send: sending nothing, position kept at seqid %" G_GUINT64_FORMAT, endpoint->acked + 1);
    return;
  }
  tr_peer_start (endpoint->peer);
}

/* ---- delivery rate ---- */

void
tr_push__endpoint_sample_rate (TrPushEndpoint *endpoint, gint64 now)
{
  endpoint->rate_time[endpoint->rate_next] = now;
  endpoint->rate_delivered[endpoint->rate_next] = endpoint->delivered;
  endpoint->rate_next = (endpoint->rate_next + 1) % TR_PUSH_RATE_SAMPLES;
}

double
tr_push__endpoint_rate (const TrPushEndpoint *endpoint, gint64 now)
{
  gint64 window = TR_PUSH_RATE_WINDOW_S * G_TIME_SPAN_SECOND;
  gint64 oldest_time = 0;
  guint64 oldest_count = 0;

  /* The oldest sample not older than the window (plus half a sample). */
  for (guint i = 0; i < TR_PUSH_RATE_SAMPLES; i++) {
    gint64 t = endpoint->rate_time[i];
    if (t != 0 && now - t <= window + G_TIME_SPAN_SECOND / 2 && (oldest_time == 0 || t < oldest_time)) {
      oldest_time = t;
      oldest_count = endpoint->rate_delivered[i];
    }
  }
  if (oldest_time == 0 || now <= oldest_time)
    return 0.0;
  return (double) (endpoint->delivered - oldest_count) * G_TIME_SPAN_SECOND / (double) (now - oldest_time);
}
