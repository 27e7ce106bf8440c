/* tr_push_endpoint.c - one endpoint's connection: connect, send, match
 * replies, fail and back off.  Runs on the push thread only.
 *
 * State machine (each endpoint owns one GSource for its whole life: the
 * socket is added to it with g_source_add_unix_fd() and its ready time is
 * the one timer: connect deadline, end of backoff, or socket timeout):
 *
 *   STOPPED (stop_send; never connects, keeps its position)
 *
 *   BACKOFF --timer: connect_endpoint()--> CONNECTING
 *   CONNECTING --writable, SO_ERROR 0: on_connected()--> SENDING
 *   CONNECTING --refused / connect_timeout_ms: endpoint_fail()--> BACKOFF
 *   SENDING --reset, bad reply, wrong seqid, exception, socket_timeout_ms
 *             with messages in flight: endpoint_fail()--> BACKOFF
 *
 * Invariants:
 *  - acked < every seqid in ->inflight < next_seqid; inflight seqids are
 *    acked+1, acked+2, ... in order (a barrier repeats the seqid of the
 *    oneway before it);
 *  - after any failure the connection is closed, inflight dropped and
 *    next_seqid = acked + 1: delivery restarts at the first unacknowledged
 *    seqid, so an endpoint may see duplicates but never a gap;
 *  - after an RPC failure of seqid S only S is in flight until S is
 *    acknowledged or dead-lettered (window_limit()): the RPCs behind S are
 *    not replayed at every retry;
 *  - the endpoint is sent one connection's worth of messages only: with
 *    max_connection > 1 one connection is still used (per-endpoint order).
 *
 * Matching: Thrift servers answer one connection's requests in order, and
 * oneways get no answer.  The expected answer is for the first non-ONEWAY
 * entry in flight; any answer to it acknowledges the oneways before it.
 * With oneway_barrier on, every run of oneways is followed by a CALL of
 * barrier_method carrying the last oneway's seqid; its answer (normally
 * UNKNOWN_METHOD) acknowledges the run; after a oneway named
 * "Service:method" (TMultiplexedProtocol) the barrier is named
 * "Service:barrier_method", so a TMultiplexedProcessor endpoint hands it to
 * that service, which answers UNKNOWN_METHOD, instead of hanging up on a
 * name without a service.  With it off, a oneway counts as
 * delivered once fully written to the socket.  The barrier may take the
 * in-flight count one past max_inflight.
 *
 * Limits: seqids go on the wire as Thrift i32 (tr_frame_wire_seqid()): past
 * 2^31 - 1 RPCs in a service the endpoint sees them wrap to -2^31; replies
 * are matched on the same 32 bits, so delivery goes on.
 *
 * Connecting: an IP address is used as is; a name is looked up with GIO's
 * resolver, off the push thread (a slow DNS server delays only that
 * endpoint, up to connect_timeout_ms), again at every reconnection, and
 * each address it gives is tried in turn before the attempt counts as
 * failed.
 * A message the store cannot read or parse is treated as an RPC-level
 * failure of its seqid (so on_failure = skip dead-letters it).
 */
#undef G_LOG_DOMAIN
#define G_LOG_DOMAIN "tr-push"

#include "tr_push_private.h"

#include "tr_frame.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define TR_PUSH_MAX_REPLY_FRAME (16u * 1024 * 1024)
#define TR_PUSH_READ_CHUNK (64 * 1024)
#define TR_PUSH_FAIL_LOG_INTERVAL_US (10 * G_TIME_SPAN_SECOND)
#define TR_PUSH_BLOCKED_WARN_EVERY 10
/* Cap of the backoff before an endpoint was ever reached: one started after
 * the router is not a failing endpoint, and a connection attempt a second
 * is cheap (docs/delivery.md "Retries and backoff"). */
#define TR_PUSH_FIRST_CONTACT_RETRY_MS 1000

typedef enum {
  FAIL_CONNECTION, /* always retried */
  FAIL_RPC,        /* the endpoint rejected seqid S: max_retries / on_failure apply */
} FailKind;

typedef struct {
  GSource base;
  TrPushEndpoint *endpoint;
} EndpointSource;

static void connect_endpoint (TrPushEndpoint *endpoint);

static void
set_timer_ms (TrPushEndpoint *endpoint, guint64 ms)
{
  g_source_set_ready_time (endpoint->source, g_get_monotonic_time () + (gint64) ms * 1000);
}

static void
set_state (TrPushEndpoint *endpoint, TrPushEndpointState state)
{
  endpoint->state = state;
}

static void
drop_socket (TrPushEndpoint *endpoint)
{
  if (endpoint->fd_tag != NULL) {
    g_source_remove_unix_fd (endpoint->source, endpoint->fd_tag);
    endpoint->fd_tag = NULL;
  }
  if (endpoint->fd >= 0) {
    close (endpoint->fd);
    endpoint->fd = -1;
  }
}

void
tr_push__endpoint_close (TrPushEndpoint *endpoint)
{
  drop_socket (endpoint);
  if (endpoint->resolving != NULL) {
    /* on_resolved() then returns without touching the endpoint. */
    g_cancellable_cancel (endpoint->resolving);
    g_clear_object (&endpoint->resolving);
  }
  /* The next attempt resolves the name again. */
  g_clear_pointer (&endpoint->addresses, g_ptr_array_unref);
  g_byte_array_set_size (endpoint->out, 0);
  g_byte_array_set_size (endpoint->in, 0);
  endpoint->out_pos = 0;
  endpoint->out_total = 0;
  endpoint->written_total = 0;
  g_queue_clear_full (&endpoint->inflight, g_free);
  endpoint->stop_fill_at = 0;
}

/* ---- acknowledgement ---- */

/* How many messages may be in flight.  After an RPC failure only the
 * failing seqid goes out until it is acknowledged (or dead-lettered): the
 * endpoint's server processes everything pipelined behind a refused RPC,
 * so a full window would replay those RPCs at every retry.  Then the
 * window doubles with each acknowledgement back to max_inflight. */
static guint
window_limit (const TrPushEndpoint *endpoint)
{
  guint max_inflight = endpoint->service->max_inflight;

  if (endpoint->rpc_fail_seqid > endpoint->acked)
    return 1;
  return endpoint->window == 0 ? max_inflight : MIN (endpoint->window, max_inflight);
}

static void
progress (TrPushEndpoint *endpoint)
{
  endpoint->retries = 0;
  if (endpoint->acked >= endpoint->rpc_fail_seqid) {
    endpoint->rpc_fail_seqid = 0;
    endpoint->rpc_fail_count = 0;
    if (endpoint->window != 0)
      endpoint->window = endpoint->window >= endpoint->service->max_inflight / 2 ? 0 : endpoint->window * 2;
  }
  tr_push__acked (endpoint);
}

/* Acknowledges every entry in flight up to and including @last. */
static void
ack_through (TrPushEndpoint *endpoint, TrPushInflight *last)
{
  TrPushInflight *entry;

  do {
    entry = g_queue_pop_head (&endpoint->inflight);
    endpoint->acked = MAX (endpoint->acked, entry->seqid);
    if (entry->kind != TR_PUSH_KIND_BARRIER)
      endpoint->delivered++;
    if (entry != last)
      g_free (entry);
  } while (entry != last);
  g_free (last);
  progress (endpoint);
}

/* Acknowledges the entries in flight before @entry (all oneways). */
static void
ack_before (TrPushEndpoint *endpoint, TrPushInflight *entry)
{
  gboolean any = FALSE;

  while (g_queue_peek_head (&endpoint->inflight) != entry) {
    TrPushInflight *oneway = g_queue_pop_head (&endpoint->inflight);
    endpoint->acked = oneway->seqid;
    endpoint->delivered++;
    g_free (oneway);
    any = TRUE;
  }
  if (any)
    progress (endpoint);
}

/* oneway_barrier off: a oneway is delivered once written. */
static void
ack_written_oneways (TrPushEndpoint *endpoint)
{
  TrPushInflight *entry;
  gboolean any = FALSE;

  while ((entry = g_queue_peek_head (&endpoint->inflight)) != NULL && entry->kind == TR_PUSH_KIND_ONEWAY &&
         entry->end <= endpoint->written_total) {
    endpoint->acked = entry->seqid;
    endpoint->delivered++;
    g_free (g_queue_pop_head (&endpoint->inflight));
    any = TRUE;
  }
  if (any)
    progress (endpoint);
}

/* ---- failure ---- */

static guint64
backoff_ms (const TrPushService *service, guint retries)
{
  guint64 delay = service->retry_backoff_ms;

  for (guint i = 0; i < retries && delay < service->retry_backoff_max_ms; i++)
    delay *= 2;
  return MIN (delay, (guint64) service->retry_backoff_max_ms);
}

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
  endpoint->rpc_fail_count++;
  endpoint->window = 1; /* window_limit() */
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
  endpoint->acked = seqid;
  progress (endpoint);
}

static void
log_failure (TrPushEndpoint *endpoint, guint64 delay_ms)
{
  gint64 now = g_get_monotonic_time ();

  if (endpoint->last_fail_log != 0 && now - endpoint->last_fail_log < TR_PUSH_FAIL_LOG_INTERVAL_US) {
    endpoint->fail_log_suppressed++;
    return;
  }
  if (endpoint->fail_log_suppressed > 0)
    tr_push__log (endpoint, G_LOG_LEVEL_WARNING, endpoint->acked + 1,
                  "backoff %" G_GUINT64_FORMAT " ms at seqid %" G_GUINT64_FORMAT ": %s (%u more failures since "
                  "the last such message)",
                  delay_ms, endpoint->acked + 1, endpoint->last_error, endpoint->fail_log_suppressed);
  else
    tr_push__log (endpoint, G_LOG_LEVEL_WARNING, endpoint->acked + 1,
                  "backoff %" G_GUINT64_FORMAT " ms at seqid %" G_GUINT64_FORMAT ": %s", delay_ms,
                  endpoint->acked + 1, endpoint->last_error);
  endpoint->last_fail_log = now;
  endpoint->fail_log_suppressed = 0;
  endpoint->down_logged = TRUE;
}

/* Closes the connection, drops what is in flight and backs off.  Safe
 * inside the endpoint's own dispatch: the GSource itself stays. */
static void
endpoint_fail (TrPushEndpoint *endpoint, FailKind kind, guint64 seqid, guint64 rpc_id, const char *format, ...)
    G_GNUC_PRINTF (5, 6);

static void
endpoint_fail (TrPushEndpoint *endpoint, FailKind kind, guint64 seqid, guint64 rpc_id, const char *format, ...)
{
  va_list args;
  guint64 delay;

  g_free (endpoint->last_error);
  va_start (args, format);
  endpoint->last_error = g_strdup_vprintf (format, args);
  va_end (args);

  if (endpoint->down_since == 0)
    endpoint->down_since = g_get_monotonic_time ();
  endpoint->down_failures++;
  tr_push__endpoint_close (endpoint);
  if (kind == FAIL_RPC)
    rpc_failed (endpoint, seqid, rpc_id, endpoint->last_error);
  endpoint->next_seqid = endpoint->acked + 1;
  delay = backoff_ms (endpoint->service, endpoint->retries);
  if (!endpoint->contacted && kind == FAIL_CONNECTION)
    delay = MIN (delay, TR_PUSH_FIRST_CONTACT_RETRY_MS);
  endpoint->retries++;
  set_state (endpoint, TR_PUSH_BACKOFF);
  set_timer_ms (endpoint, delay);
  log_failure (endpoint, delay);
}

/* ---- sending ---- */

/* The oldest in-flight entry that awaits a reply (not a oneway). */
static TrPushInflight *
expected_entry (TrPushEndpoint *endpoint)
{
  for (GList *l = endpoint->inflight.head; l != NULL; l = l->next) {
    TrPushInflight *entry = l->data;
    if (entry->kind != TR_PUSH_KIND_ONEWAY)
      return entry;
  }
  return NULL;
}

/* A server that is not framed binary reads a push as garbage and hangs
 * up (EOF, or a reset when our bytes were still unread) without a word:
 * say so when nothing was answered yet on this connection. */
static const char *
hangup_hint (TrPushEndpoint *endpoint)
{
  if (endpoint->replies == 0 && expected_entry (endpoint) != NULL)
    return " before its first reply (a server that is not framed binary does this, and so does a "
           "TMultiplexedProcessor sent a name without 'SERVICE:')";
  return "";
}

/* Writes what the socket takes.  Returns FALSE if the endpoint failed. */
static gboolean
flush_out (TrPushEndpoint *endpoint)
{
  GIOCondition events = G_IO_IN;

  while (endpoint->out_pos < endpoint->out->len) {
    ssize_t n = send (endpoint->fd, endpoint->out->data + endpoint->out_pos, endpoint->out->len - endpoint->out_pos,
                      MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
      break;
    if (n < 0) {
      int saved_errno = errno;
      endpoint_fail (endpoint, FAIL_CONNECTION, 0, 0, "send: %s%s", g_strerror (saved_errno),
                     saved_errno == ECONNRESET || saved_errno == EPIPE ? hangup_hint (endpoint) : "");
      return FALSE;
    }
    endpoint->out_pos += (gsize) n;
    endpoint->written_total += (guint64) n;
  }
  if (endpoint->out_pos == endpoint->out->len) {
    g_byte_array_set_size (endpoint->out, 0);
    endpoint->out_pos = 0;
  } else {
    events |= G_IO_OUT;
    if (endpoint->out_pos >= TR_PUSH_READ_CHUNK) {
      g_byte_array_remove_range (endpoint->out, 0, (guint) endpoint->out_pos);
      endpoint->out_pos = 0;
    }
  }
  if (!endpoint->service->oneway_barrier)
    ack_written_oneways (endpoint);
  tr_push__endpoint_watch (endpoint, events);
  return TRUE;
}

static void
push_inflight (TrPushEndpoint *endpoint, guint64 seqid, guint64 rpc_id, TrPushKind kind)
{
  TrPushInflight *entry = g_new0 (TrPushInflight, 1);

  if (g_queue_is_empty (&endpoint->inflight)) {
    /* The socket timeout counts from when something is awaited. */
    endpoint->last_progress = g_get_monotonic_time ();
    if (g_source_get_ready_time (endpoint->source) < 0)
      set_timer_ms (endpoint, endpoint->service->socket_timeout_ms);
  }
  entry->seqid = seqid;
  entry->rpc_id = rpc_id;
  entry->kind = kind;
  entry->end = endpoint->out_total;
  g_queue_push_tail (&endpoint->inflight, entry);
}

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
  if (!g_queue_is_empty (&endpoint->inflight)) {
    endpoint->stop_fill_at = seqid;
    return QUEUE_WAIT;
  }
  tr_push__log (endpoint, G_LOG_LEVEL_WARNING, seqid, "stored rpc %" G_GUINT64_FORMAT " of seqid %" G_GUINT64_FORMAT
                " is unreadable: %s", rpc_id, seqid, why);
  endpoint_fail (endpoint, FAIL_RPC, seqid, rpc_id, "stored rpc unreadable: %s", why);
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
  TrMsgHeader header;
  TrFrameStatus status;
  const guint8 *data;
  gsize len, prefix_len;

  if (!tr_rpcstore_service_lookup (store, endpoint->service->service_id, seqid, &rpc_id, &error))
    return unreadable (endpoint, seqid, rpc_id, error->message);
  message = tr_rpcstore_get (store, rpc_id, NULL, &error);
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
  g_byte_array_append (endpoint->out, prefix, (guint) prefix_len);
  g_byte_array_append (endpoint->out, data + header.body_offset, (guint) (len - header.body_offset));
  endpoint->out_total += prefix_len + len - header.body_offset;
  push_inflight (endpoint, seqid, rpc_id, header.type == TR_MSG_ONEWAY ? TR_PUSH_KIND_ONEWAY : TR_PUSH_KIND_CALL);
  endpoint->next_seqid = seqid + 1;
  return QUEUE_OK;
}

static void
queue_barrier (TrPushEndpoint *endpoint, guint64 seqid)
{
  const char *method = endpoint->service->barrier_method;
  guint before = endpoint->out->len;
  g_autofree char *name = g_strdup_printf ("%.*s%s", (int) endpoint->barrier_prefix_len, endpoint->barrier_prefix,
                                           method);

  tr_frame_build_call (endpoint->out, TR_MSG_CALL, name, strlen (name), tr_frame_wire_seqid (seqid), NULL, 0);
  endpoint->out_total += endpoint->out->len - before;
  push_inflight (endpoint, seqid, 0, TR_PUSH_KIND_BARRIER);
}

void
tr_push__endpoint_fill (TrPushEndpoint *endpoint)
{
  TrPushService *service = endpoint->service;
  TrPushInflight *tail;
  guint64 head;

  if (endpoint->state != TR_PUSH_SENDING)
    return;
  head = tr_rpcstore_service_head (endpoint->push->store, service->service_id);
  while (g_queue_get_length (&endpoint->inflight) < window_limit (endpoint) && endpoint->next_seqid <= head) {
    QueueResult result;
    if (endpoint->stop_fill_at != 0 && !g_queue_is_empty (&endpoint->inflight))
      break;
    result = queue_message (endpoint, endpoint->next_seqid);
    if (result == QUEUE_FAILED)
      return;
    if (result == QUEUE_WAIT)
      break;
  }
  endpoint->fill_held = endpoint->next_seqid <= head;
  tail = g_queue_peek_tail (&endpoint->inflight);
  if (service->oneway_barrier && tail != NULL && tail->kind == TR_PUSH_KIND_ONEWAY)
    queue_barrier (endpoint, tail->seqid);
  flush_out (endpoint);
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

/* Returns FALSE if the endpoint failed. */
static gboolean
handle_reply (TrPushEndpoint *endpoint, const guint8 *msg, gsize len)
{
  TrReply reply;
  TrFrameStatus status = tr_frame_parse_reply (msg, len, &reply);
  TrPushInflight *expected;
  g_autofree char *text = NULL;

  if (status != TR_FRAME_OK) {
    /* @msg follows its frame length in ->in: the hint reads from there. */
    const char *hint = endpoint->replies == 0 ? tr_frame_protocol_hint (msg - TR_FRAME_LEN_SIZE,
                                                                        len + TR_FRAME_LEN_SIZE)
                                              : NULL;
    endpoint_fail (endpoint, FAIL_CONNECTION, 0, 0, "unparsable reply: %s%s%s", tr_frame_status_to_string (status),
                   hint ? "; " : "", hint ? hint : "");
    return FALSE;
  }
  expected = expected_entry (endpoint);
  if (expected == NULL) {
    endpoint_fail (endpoint, FAIL_CONNECTION, 0, 0, "endpoint answered seqid %d, but no call awaits an answer",
                   reply.header.seqid);
    return FALSE;
  }
  if (reply.header.seqid != tr_frame_wire_seqid (expected->seqid)) {
    endpoint_fail (endpoint, FAIL_CONNECTION, 0, 0, "endpoint answered seqid %d, expected %d", reply.header.seqid,
                   tr_frame_wire_seqid (expected->seqid));
    return FALSE;
  }
  endpoint->last_progress = g_get_monotonic_time ();
  endpoint->replies++;
  if (reply.header.type == TR_MSG_EXCEPTION)
    text = printable (reply.exception_message, reply.exception_message_len);
  if (expected->kind == TR_PUSH_KIND_BARRIER) {
    if (reply.header.type == TR_MSG_REPLY || reply.exception_type == TR_APP_EXC_UNKNOWN_METHOD) {
      ack_through (endpoint, expected);
      return TRUE;
    }
    endpoint_fail (endpoint, FAIL_CONNECTION, 0, 0, "barrier call answered with exception type %d: %s",
                   reply.exception_type, text);
    return FALSE;
  }
  if (reply.header.type == TR_MSG_REPLY && reply.result_field_id == -1) {
    ack_through (endpoint, expected);
    return TRUE;
  }
  ack_before (endpoint, expected);
  if (reply.header.type == TR_MSG_REPLY && reply.result_field_id == 0)
    endpoint_fail (endpoint, FAIL_RPC, expected->seqid, expected->rpc_id,
                   "endpoint returned a value (result field 0): its method is not void, and routed methods must "
                   "be void or oneway");
  else if (reply.header.type == TR_MSG_REPLY)
    endpoint_fail (endpoint, FAIL_RPC, expected->seqid, expected->rpc_id,
                   "endpoint answered a declared exception (result field %d)", reply.result_field_id);
  else
    endpoint_fail (endpoint, FAIL_RPC, expected->seqid, expected->rpc_id,
                   "endpoint answered TApplicationException type %d: %s", reply.exception_type, text);
  return FALSE;
}

/* Reads what is available and handles every complete reply.  Returns
 * FALSE if the endpoint failed. */
static gboolean
read_input (TrPushEndpoint *endpoint)
{
  GByteArray *in = endpoint->in;
  gsize pos = 0;
  guint old = in->len;
  ssize_t n;

  g_byte_array_set_size (in, old + TR_PUSH_READ_CHUNK);
  do
    n = recv (endpoint->fd, in->data + old, TR_PUSH_READ_CHUNK, 0);
  while (n < 0 && errno == EINTR);
  g_byte_array_set_size (in, old + (guint) MAX (n, 0));
  if (n == 0) {
    endpoint_fail (endpoint, FAIL_CONNECTION, 0, 0, "connection closed by the endpoint%s", hangup_hint (endpoint));
    return FALSE;
  }
  if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
    int saved_errno = errno;
    endpoint_fail (endpoint, FAIL_CONNECTION, 0, 0, "recv: %s%s", g_strerror (saved_errno),
                   saved_errno == ECONNRESET ? hangup_hint (endpoint) : "");
    return FALSE;
  }
  for (;;) {
    guint32 frame_len = 0;
    TrFrameStatus status = tr_frame_next (in->data + pos, in->len - pos, TR_PUSH_MAX_REPLY_FRAME, &frame_len);
    if (status == TR_FRAME_NEED_MORE)
      break;
    if (status != TR_FRAME_OK) {
      const char *hint = endpoint->replies == 0 ? tr_frame_protocol_hint (in->data + pos, in->len - pos) : NULL;
      endpoint_fail (endpoint, FAIL_CONNECTION, 0, 0, "bad reply frame: %s%s%s", tr_frame_status_to_string (status),
                     hint ? "; " : "", hint ? hint : "");
      return FALSE;
    }
    if (!handle_reply (endpoint, in->data + pos + TR_FRAME_LEN_SIZE, frame_len))
      return FALSE;
    pos += TR_FRAME_LEN_SIZE + frame_len;
  }
  g_byte_array_remove_range (in, 0, (guint) pos);
  return TRUE;
}

/* ---- connecting ---- */

static void connect_endpoint (TrPushEndpoint *endpoint);

/* "127.0.0.1:9000" for an IP host, "name (127.0.0.1:9000)" for a name:
 * which address failed is what the operator needs. */
static char *
describe_address (TrPushEndpoint *endpoint, GSocketAddress *address)
{
  GInetAddress *ip = g_inet_socket_address_get_address (G_INET_SOCKET_ADDRESS (address));
  g_autofree char *text = g_inet_address_to_string (ip);
  gboolean v6 = g_inet_address_get_family (ip) == G_SOCKET_FAMILY_IPV6;
  g_autofree char *with_port = g_strdup_printf (v6 ? "[%s]:%u" : "%s:%u", text, endpoint->port);

  if (g_strcmp0 (text, endpoint->host) == 0)
    return g_steal_pointer (&with_port);
  return g_strdup_printf ("%s (%s)", endpoint->host, with_port);
}

/* The address being connected to (the one before ->next_address). */
static char *
describe_current (TrPushEndpoint *endpoint)
{
  if (endpoint->addresses == NULL || endpoint->next_address == 0)
    return g_strdup_printf ("%s:%u", endpoint->host, endpoint->port);
  return describe_address (endpoint, g_ptr_array_index (endpoint->addresses, endpoint->next_address - 1));
}

static gboolean
more_addresses (TrPushEndpoint *endpoint)
{
  return endpoint->addresses != NULL && endpoint->next_address < endpoint->addresses->len;
}

/* A connection attempt to one address failed: try the next one at once,
 * or fail the attempt when none is left (backoff; the name is resolved
 * again next time). */
static void
address_failed (TrPushEndpoint *endpoint, const char *why)
{
  if (more_addresses (endpoint)) {
    tr_push__log (endpoint, G_LOG_LEVEL_INFO, endpoint->acked + 1, "%s; trying the next address", why);
    drop_socket (endpoint);
    connect_endpoint (endpoint);
    return;
  }
  endpoint_fail (endpoint, FAIL_CONNECTION, 0, 0, "%s", why);
}

/* The failures were logged as warnings (rate-limited): the reconnection
 * that ends them is logged where an operator sees it too, or the last word
 * visible stays "Connection refused".  One whose failures were all
 * suppressed stays at info level, like the failures themselves. */
static void
log_connected (TrPushEndpoint *endpoint, const char *where)
{
  guint64 from = endpoint->acked + 1;

  if (endpoint->down_failures == 0)
    tr_push__log (endpoint, endpoint->retries == 0 ? G_LOG_LEVEL_MESSAGE : G_LOG_LEVEL_INFO, from,
                  "connected to %s, sending from seqid %" G_GUINT64_FORMAT, where, from);
  else
    tr_push__log (endpoint, endpoint->down_logged ? G_LOG_LEVEL_MESSAGE : G_LOG_LEVEL_INFO, from,
                  "connected to %s after %u failed attempt%s in %.1f s (last: %s), sending from seqid %"
                  G_GUINT64_FORMAT, where, endpoint->down_failures, endpoint->down_failures == 1 ? "" : "s",
                  (double) (g_get_monotonic_time () - endpoint->down_since) / G_TIME_SPAN_SECOND,
                  endpoint->last_error, from);
  endpoint->down_since = 0;
  endpoint->down_failures = 0;
  endpoint->down_logged = FALSE;
}

static void
on_connected (TrPushEndpoint *endpoint)
{
  int error = 0;
  socklen_t error_len = sizeof error;
  g_autofree char *where = describe_current (endpoint);

  if (getsockopt (endpoint->fd, SOL_SOCKET, SO_ERROR, &error, &error_len) < 0)
    error = errno;
  if (error != 0) {
    g_autofree char *why = g_strdup_printf ("connect to %s: %s", where, g_strerror (error));
    address_failed (endpoint, why);
    return;
  }
  g_clear_pointer (&endpoint->addresses, g_ptr_array_unref);
  endpoint->replies = 0;
  endpoint->contacted = TRUE;
  set_state (endpoint, TR_PUSH_SENDING);
  g_source_set_ready_time (endpoint->source, -1);
  log_connected (endpoint, where);
  tr_push__endpoint_watch (endpoint, G_IO_IN);
  tr_push__endpoint_fill (endpoint);
}

/* Starts a non-blocking connection to the next address in ->addresses.
 * Returns the socket, or -1 with the reason in @why (transfer full) when
 * it cannot even start. */
static int
start_connect (TrPushEndpoint *endpoint, char **why)
{
  GSocketAddress *address = g_ptr_array_index (endpoint->addresses, endpoint->next_address++);
  struct sockaddr_storage native;
  gssize native_len = g_socket_address_get_native_size (address);
  g_autoptr (GError) error = NULL;
  int one = 1;
  int fd, rc;

  if (native_len <= 0 || !g_socket_address_to_native (address, &native, sizeof native, &error)) {
    g_autofree char *where = describe_current (endpoint);
    *why = g_strdup_printf ("connect to %s: unusable address%s%s", where, error ? ": " : "",
                            error ? error->message : "");
    return -1;
  }
  fd = socket (native.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    *why = g_strdup_printf ("socket: %s", g_strerror (errno));
    return -1;
  }
  if (setsockopt (fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) < 0)
    g_debug ("%s/%s: TCP_NODELAY: %s", endpoint->service->name, endpoint->id, g_strerror (errno));
  rc = connect (fd, (struct sockaddr *) &native, (socklen_t) native_len);
  if (rc < 0 && errno != EINPROGRESS) {
    int saved_errno = errno;
    g_autofree char *where = describe_current (endpoint);
    *why = g_strdup_printf ("connect to %s: %s", where, g_strerror (saved_errno));
    close (fd);
    return -1;
  }
  return fd;
}

static void
on_resolved (GObject *resolver, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (GError) error = NULL;
  GList *found = g_resolver_lookup_by_name_finish (G_RESOLVER (resolver), result, &error);
  TrPushEndpoint *endpoint = user_data;

  /* Cancelled by tr_push__endpoint_close(): the endpoint may be gone. */
  if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
    return;
  g_clear_object (&endpoint->resolving);
  if (found == NULL) {
    /* GLib's own text repeats the name, in quotes a C locale cannot show. */
    const char *why = g_error_matches (error, G_RESOLVER_ERROR, G_RESOLVER_ERROR_NOT_FOUND) ? "no such host"
                      : g_error_matches (error, G_RESOLVER_ERROR, G_RESOLVER_ERROR_TEMPORARY_FAILURE)
                          ? "temporary failure in name resolution"
                          : error->message;
    endpoint_fail (endpoint, FAIL_CONNECTION, 0, 0, "cannot resolve %s: %s", endpoint->host, why);
    return;
  }
  endpoint->addresses = g_ptr_array_new_with_free_func (g_object_unref);
  endpoint->next_address = 0;
  for (GList *l = found; l != NULL; l = l->next)
    g_ptr_array_add (endpoint->addresses, g_inet_socket_address_new (l->data, endpoint->port));
  g_resolver_free_addresses (found);
  connect_endpoint (endpoint);
}

/* Fills ->addresses: at once for an IP address (TRUE); for a name, starts
 * a lookup on GIO's resolver threads and returns FALSE (the endpoint waits
 * in CONNECTING, bounded by connect_timeout_ms; on_resolved() goes on). */
static gboolean
resolve (TrPushEndpoint *endpoint)
{
  GSocketAddress *literal = g_inet_socket_address_new_from_string (endpoint->host, endpoint->port);
  GResolver *resolver;

  if (literal != NULL) {
    endpoint->addresses = g_ptr_array_new_with_free_func (g_object_unref);
    endpoint->next_address = 0;
    g_ptr_array_add (endpoint->addresses, literal);
    return TRUE;
  }
  /* The result comes back on this thread's default context: the push
   * thread's, where every endpoint function runs. */
  resolver = g_resolver_get_default ();
  endpoint->resolving = g_cancellable_new ();
  g_resolver_lookup_by_name_async (resolver, endpoint->host, endpoint->resolving, on_resolved, endpoint);
  g_object_unref (resolver);
  set_state (endpoint, TR_PUSH_CONNECTING);
  set_timer_ms (endpoint, endpoint->service->connect_timeout_ms);
  return FALSE;
}

static void
connect_endpoint (TrPushEndpoint *endpoint)
{
  g_autofree char *why = NULL;
  int fd;

  if (!more_addresses (endpoint)) {
    g_clear_pointer (&endpoint->addresses, g_ptr_array_unref);
    if (!resolve (endpoint))
      return;
  }
  fd = start_connect (endpoint, &why);
  if (fd < 0) {
    address_failed (endpoint, why);
    return;
  }
  endpoint->fd = fd;
  endpoint->fd_tag = g_source_add_unix_fd (endpoint->source, fd, G_IO_OUT);
  endpoint->fd_events = G_IO_OUT;
  set_state (endpoint, TR_PUSH_CONNECTING);
  set_timer_ms (endpoint, endpoint->service->connect_timeout_ms);
}

void
tr_push__endpoint_start (TrPushEndpoint *endpoint)
{
  if (endpoint->state == TR_PUSH_STOPPED) {
    tr_push__log (endpoint, G_LOG_LEVEL_MESSAGE, endpoint->acked + 1,
                  "stop_send: sending nothing, position kept at seqid %" G_GUINT64_FORMAT, endpoint->acked + 1);
    return;
  }
  connect_endpoint (endpoint);
}

/* ---- the endpoint's GSource ---- */

static void
on_timer (TrPushEndpoint *endpoint)
{
  TrPushService *service = endpoint->service;
  gint64 deadline;

  switch (endpoint->state) {
  case TR_PUSH_STOPPED:
    break;
  case TR_PUSH_BACKOFF:
    connect_endpoint (endpoint);
    break;
  case TR_PUSH_CONNECTING:
    if (endpoint->resolving != NULL) {
      endpoint_fail (endpoint, FAIL_CONNECTION, 0, 0, "resolving %s timed out after %u ms", endpoint->host,
                     service->connect_timeout_ms);
    } else {
      g_autofree char *where = describe_current (endpoint);
      g_autofree char *why = g_strdup_printf ("connect to %s timed out after %u ms", where,
                                              service->connect_timeout_ms);
      address_failed (endpoint, why);
    }
    break;
  case TR_PUSH_SENDING:
    if (g_queue_is_empty (&endpoint->inflight))
      break;
    deadline = endpoint->last_progress + (gint64) service->socket_timeout_ms * 1000;
    if (g_get_monotonic_time () < deadline) {
      g_source_set_ready_time (endpoint->source, deadline);
      break;
    }
    endpoint_fail (endpoint, FAIL_CONNECTION, 0, 0, "no answer for %u ms with %u messages in flight",
                   service->socket_timeout_ms, g_queue_get_length (&endpoint->inflight));
    break;
  }
}

static void
on_io (TrPushEndpoint *endpoint, GIOCondition condition)
{
  if (endpoint->state == TR_PUSH_CONNECTING) {
    on_connected (endpoint);
    return;
  }
  if (endpoint->state != TR_PUSH_SENDING)
    return;
  if ((condition & G_IO_OUT) && !flush_out (endpoint))
    return;
  if ((condition & (G_IO_IN | G_IO_HUP | G_IO_ERR)) && !read_input (endpoint))
    return;
  /* Replies make room in the window; only an endpoint that the window (or
   * an unreadable message) held back needs filling now.  RPCs committed
   * since the last fill go out with the next wake-up (tr_push_wake(): one
   * per commit, lingering), in one send with whatever else came meanwhile:
   * filling on every batch of replies sent a few RPCs at a time and woke
   * the endpoint for each. */
  if (endpoint->fill_held)
    tr_push__endpoint_fill (endpoint);
}

static gboolean
endpoint_source_dispatch (GSource *source, GSourceFunc callback, gpointer user_data)
{
  TrPushEndpoint *endpoint = ((EndpointSource *) source)->endpoint;
  gint64 ready_time = g_source_get_ready_time (source);
  GIOCondition condition = 0;

  (void) callback;
  (void) user_data;
  if (ready_time >= 0 && g_source_get_time (source) >= ready_time) {
    /* One event per dispatch: a socket still ready is dispatched again. */
    g_source_set_ready_time (source, -1);
    on_timer (endpoint);
    return G_SOURCE_CONTINUE;
  }
  if (endpoint->fd_tag != NULL)
    condition = g_source_query_unix_fd (source, endpoint->fd_tag);
  if (condition != 0)
    on_io (endpoint, condition);
  return G_SOURCE_CONTINUE;
}

static GSourceFuncs endpoint_source_funcs = {
  .prepare = NULL,
  .check = NULL,
  .dispatch = endpoint_source_dispatch,
  .finalize = NULL,
};

/* Changes what the socket waits for, only when it changes: every
 * g_source_modify_unix_fd() costs an epoll_ctl and a loop wake-up. */
void
tr_push__endpoint_watch (TrPushEndpoint *endpoint, GIOCondition events)
{
  if (endpoint->fd_tag != NULL && endpoint->fd_events != events) {
    g_source_modify_unix_fd (endpoint->source, endpoint->fd_tag, events);
    endpoint->fd_events = events;
  }
}

GSource *
tr_push__endpoint_source_new (TrPushEndpoint *endpoint)
{
  GSource *source = g_source_new (&endpoint_source_funcs, sizeof (EndpointSource));

  ((EndpointSource *) source)->endpoint = endpoint;
  g_source_set_name (source, "tr-push endpoint");
  /* A non-recursive source is blocked and unblocked around each dispatch,
   * which costs GLib two wake-up writes per dispatch; ours never recurse. */
  g_source_set_can_recurse (source, TRUE);
  return source;
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
