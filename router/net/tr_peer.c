/* tr_peer.c - one outbound Thrift connection (tr_peer.h): resolve,
 * connect, back off, pipeline within a window, match replies by order and
 * seqid, and say why a server that hangs up before its first reply may
 * have done so.  Runs on the thread of the attached context only.
 *
 * The peer owns one GSource for its whole life: the socket is added to it
 * with g_source_add_unix_fd() and its ready time is the one timer (connect
 * deadline, end of backoff, or socket timeout).
 *
 *   IDLE --tr_peer_start(): connect_peer()--> CONNECTING
 *   BACKOFF --timer: connect_peer()--> CONNECTING
 *   CONNECTING --writable, SO_ERROR 0: on_connected()--> CONNECTED
 *   CONNECTING --refused / connect_timeout_ms, no address left: peer_fail()--> BACKOFF
 *   CONNECTED --reset, bad reply, wrong seqid, socket_timeout_ms with entries
 *               in flight, tr_peer_fail(): peer_fail()--> BACKOFF
 *   any --tr_peer_stop()--> IDLE
 *
 * Invariants: ->fd >= 0 only in CONNECTING (connect in progress) and
 * CONNECTED; ->inflight and the buffers are empty outside CONNECTED; the
 * entries in flight are in the order their bytes are in the output.
 *
 * Connecting: an IP address is used as is; a name is looked up with GIO's
 * resolver, off the owning thread (a slow DNS server delays only this
 * peer, up to connect_timeout_ms), again at every attempt, and each
 * address it gives is tried in turn before the attempt counts as failed.
 */
#include "tr_peer.h"

#include <errno.h>
#include <gio/gio.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define TR_PEER_MAX_REPLY_FRAME (16u * 1024 * 1024)
#define TR_PEER_READ_CHUNK (64 * 1024)

struct _TrPeer {
  char *host;
  guint16 port;
  TrPeerSettings settings;
  const TrPeerCallbacks *callbacks;
  gpointer user_data;

  TrPeerState state;
  GSource *source;         /* fd watch + timer; lives as long as the peer */
  gpointer fd_tag;         /* (nullable) g_source_add_unix_fd() tag */
  GIOCondition fd_events;  /* what fd_tag currently waits for */
  int fd;                  /* -1 when not connected */
  GCancellable *resolving; /* (nullable) the lookup of ->host in flight */
  GPtrArray *addresses;    /* (nullable) (element-type GSocketAddress) ->host resolved, tried in turn */
  guint next_address;      /* index in ->addresses of the next one to try */
  gboolean contacted;      /* connected at least once to host:port */

  gint64 last_progress;    /* monotonic µs of the last reply / start of waiting */
  guint64 replies;         /* replies read on the current connection */
  GByteArray *out;         /* bytes queued for the socket */
  gsize out_pos;           /* bytes of ->out already written */
  guint64 out_total;       /* stream position after everything queued */
  guint64 written_total;   /* stream position written to the socket */
  GByteArray *in;          /* bytes read, not yet parsed */
  GQueue inflight;         /* (element-type TrPeerInflight) oldest first */

  guint retries;           /* consecutive failures, for backoff */
  guint window;            /* in-flight limit after tr_peer_window_shrink(); 0 = max_inflight */
  char *last_error;        /* (nullable) */
};

typedef struct {
  GSource base;
  TrPeer *peer;
} PeerSource;

static void connect_peer (TrPeer *peer);

static void
set_timer_ms (TrPeer *peer, guint64 ms)
{
  g_source_set_ready_time (peer->source, g_get_monotonic_time () + (gint64) ms * 1000);
}

static void
drop_socket (TrPeer *peer)
{
  if (peer->fd_tag != NULL) {
    g_source_remove_unix_fd (peer->source, peer->fd_tag);
    peer->fd_tag = NULL;
  }
  if (peer->fd >= 0) {
    close (peer->fd);
    peer->fd = -1;
  }
}

static void
peer_close (TrPeer *peer)
{
  drop_socket (peer);
  if (peer->resolving != NULL) {
    /* on_resolved() then returns without touching the peer. */
    g_cancellable_cancel (peer->resolving);
    g_clear_object (&peer->resolving);
  }
  /* The next attempt resolves the name again. */
  g_clear_pointer (&peer->addresses, g_ptr_array_unref);
  g_byte_array_set_size (peer->out, 0);
  g_byte_array_set_size (peer->in, 0);
  peer->out_pos = 0;
  peer->out_total = 0;
  peer->written_total = 0;
  g_queue_clear_full (&peer->inflight, g_free);
}

static void
watch (TrPeer *peer, GIOCondition events)
{
  /* Only when it changes: every g_source_modify_unix_fd() costs an
   * epoll_ctl and a loop wake-up. */
  if (peer->fd_tag != NULL && peer->fd_events != events) {
    g_source_modify_unix_fd (peer->source, peer->fd_tag, events);
    peer->fd_events = events;
  }
}

/* ---- failure ---- */

static guint64
backoff_ms (const TrPeer *peer)
{
  guint64 delay = peer->settings.retry_backoff_ms;

  for (guint i = 0; i < peer->retries && delay < peer->settings.retry_backoff_max_ms; i++)
    delay *= 2;
  delay = MIN (delay, (guint64) peer->settings.retry_backoff_max_ms);
  if (!peer->contacted)
    delay = MIN (delay, TR_PEER_FIRST_CONTACT_RETRY_MS);
  return delay;
}

/* Closes the connection, drops what is in flight and backs off.  Safe
 * inside the peer's own dispatch: the GSource itself stays. */
static void
peer_fail_reason (TrPeer *peer, char *reason)
{
  guint64 delay;

  g_free (peer->last_error);
  peer->last_error = reason;
  peer_close (peer);
  delay = backoff_ms (peer);
  peer->retries++;
  peer->state = TR_PEER_BACKOFF;
  set_timer_ms (peer, delay);
  peer->callbacks->failed (peer, peer->last_error, delay, peer->user_data);
}

static void peer_fail (TrPeer *peer, const char *format, ...) G_GNUC_PRINTF (2, 3);

static void
peer_fail (TrPeer *peer, const char *format, ...)
{
  va_list args;

  va_start (args, format);
  peer_fail_reason (peer, g_strdup_vprintf (format, args));
  va_end (args);
}

void
tr_peer_fail (TrPeer *peer, const char *format, ...)
{
  va_list args;

  g_return_if_fail (peer != NULL);
  va_start (args, format);
  peer_fail_reason (peer, g_strdup_vprintf (format, args));
  va_end (args);
}

/* The oldest entry in flight that awaits a reply. */
static TrPeerInflight *
expected_entry (const TrPeer *peer)
{
  for (GList *l = peer->inflight.head; l != NULL; l = l->next) {
    TrPeerInflight *entry = l->data;
    if (entry->awaits_reply)
      return entry;
  }
  return NULL;
}

/* A server that is not framed binary reads our calls as garbage and hangs
 * up (EOF, or a reset when our bytes were still unread) without a word:
 * say so when nothing was answered yet on this connection. */
static const char *
hangup_hint (const TrPeer *peer)
{
  if (peer->replies == 0 && expected_entry (peer) != NULL)
    return " before its first reply (a server that is not framed binary does this, and so does a "
           "TMultiplexedProcessor sent a name without 'SERVICE:')";
  return "";
}

/* ---- sending ---- */

gboolean
tr_peer_flush (TrPeer *peer)
{
  GIOCondition events = G_IO_IN;

  g_return_val_if_fail (peer != NULL, FALSE);
  if (peer->state != TR_PEER_CONNECTED)
    return FALSE;
  while (peer->out_pos < peer->out->len) {
    ssize_t n = send (peer->fd, peer->out->data + peer->out_pos, peer->out->len - peer->out_pos, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
      break;
    if (n < 0) {
      int saved_errno = errno;
      peer_fail (peer, "send: %s%s", g_strerror (saved_errno),
                 saved_errno == ECONNRESET || saved_errno == EPIPE ? hangup_hint (peer) : "");
      return FALSE;
    }
    peer->out_pos += (gsize) n;
    peer->written_total += (guint64) n;
  }
  if (peer->out_pos == peer->out->len) {
    g_byte_array_set_size (peer->out, 0);
    peer->out_pos = 0;
  } else {
    events |= G_IO_OUT;
    if (peer->out_pos >= TR_PEER_READ_CHUNK) {
      g_byte_array_remove_range (peer->out, 0, (guint) peer->out_pos);
      peer->out_pos = 0;
    }
  }
  if (peer->callbacks->written != NULL)
    peer->callbacks->written (peer, peer->user_data);
  watch (peer, events);
  return TRUE;
}

void
tr_peer_queue (TrPeer *peer, const guint8 *prefix, gsize prefix_len, const guint8 *body, gsize body_len,
               guint64 seqid, gboolean awaits_reply, guint kind, guint64 tag)
{
  TrPeerInflight *entry;

  g_return_if_fail (peer != NULL && peer->state == TR_PEER_CONNECTED);
  if (g_queue_is_empty (&peer->inflight)) {
    /* The socket timeout counts from when something is awaited. */
    peer->last_progress = g_get_monotonic_time ();
    if (g_source_get_ready_time (peer->source) < 0)
      set_timer_ms (peer, peer->settings.socket_timeout_ms);
  }
  g_byte_array_append (peer->out, prefix, (guint) prefix_len);
  g_byte_array_append (peer->out, body, (guint) body_len);
  peer->out_total += prefix_len + body_len;
  entry = g_new0 (TrPeerInflight, 1);
  entry->seqid = seqid;
  entry->end = peer->out_total;
  entry->tag = tag;
  entry->kind = kind;
  entry->awaits_reply = awaits_reply;
  g_queue_push_tail (&peer->inflight, entry);
}

/* ---- replies ---- */

/* Returns FALSE if the peer failed. */
static gboolean
handle_reply (TrPeer *peer, const guint8 *msg, gsize len)
{
  TrReply reply;
  TrFrameStatus status = tr_frame_parse_reply (msg, len, &reply);
  TrPeerInflight *expected;

  if (status != TR_FRAME_OK) {
    /* @msg follows its frame length in ->in: the hint reads from there. */
    const char *hint = peer->replies == 0 ? tr_frame_protocol_hint (msg - TR_FRAME_LEN_SIZE,
                                                                    len + TR_FRAME_LEN_SIZE)
                                          : NULL;
    peer_fail (peer, "unparsable reply: %s%s%s", tr_frame_status_to_string (status), hint ? "; " : "",
               hint ? hint : "");
    return FALSE;
  }
  expected = expected_entry (peer);
  if (expected == NULL) {
    peer_fail (peer, "endpoint answered seqid %d, but no call awaits an answer", reply.header.seqid);
    return FALSE;
  }
  if (reply.header.seqid != tr_frame_wire_seqid (expected->seqid)) {
    peer_fail (peer, "endpoint answered seqid %d, expected %d", reply.header.seqid,
               tr_frame_wire_seqid (expected->seqid));
    return FALSE;
  }
  peer->last_progress = g_get_monotonic_time ();
  peer->replies++;
  return peer->callbacks->reply (peer, &reply, expected, peer->user_data);
}

/* Reads what is available and handles every complete reply.  Returns
 * FALSE if the peer failed. */
static gboolean
read_input (TrPeer *peer)
{
  GByteArray *in = peer->in;
  gsize pos = 0;
  guint old = in->len;
  ssize_t n;

  g_byte_array_set_size (in, old + TR_PEER_READ_CHUNK);
  do
    n = recv (peer->fd, in->data + old, TR_PEER_READ_CHUNK, 0);
  while (n < 0 && errno == EINTR);
  g_byte_array_set_size (in, old + (guint) MAX (n, 0));
  if (n == 0) {
    peer_fail (peer, "connection closed by the endpoint%s", hangup_hint (peer));
    return FALSE;
  }
  if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
    int saved_errno = errno;
    peer_fail (peer, "recv: %s%s", g_strerror (saved_errno), saved_errno == ECONNRESET ? hangup_hint (peer) : "");
    return FALSE;
  }
  for (;;) {
    guint32 frame_len = 0;
    TrFrameStatus status = tr_frame_next (in->data + pos, in->len - pos, TR_PEER_MAX_REPLY_FRAME, &frame_len);
    if (status == TR_FRAME_NEED_MORE)
      break;
    if (status != TR_FRAME_OK) {
      const char *hint = peer->replies == 0 ? tr_frame_protocol_hint (in->data + pos, in->len - pos) : NULL;
      peer_fail (peer, "bad reply frame: %s%s%s", tr_frame_status_to_string (status), hint ? "; " : "",
                 hint ? hint : "");
      return FALSE;
    }
    if (!handle_reply (peer, in->data + pos + TR_FRAME_LEN_SIZE, frame_len))
      return FALSE;
    pos += TR_FRAME_LEN_SIZE + frame_len;
  }
  g_byte_array_remove_range (in, 0, (guint) pos);
  return TRUE;
}

/* ---- connecting ---- */

/* "127.0.0.1:9000" for an IP host, "name (127.0.0.1:9000)" for a name:
 * which address failed is what the operator needs. */
static char *
describe_address (const TrPeer *peer, GSocketAddress *address)
{
  GInetAddress *ip = g_inet_socket_address_get_address (G_INET_SOCKET_ADDRESS (address));
  g_autofree char *text = g_inet_address_to_string (ip);
  gboolean v6 = g_inet_address_get_family (ip) == G_SOCKET_FAMILY_IPV6;
  g_autofree char *with_port = g_strdup_printf (v6 ? "[%s]:%u" : "%s:%u", text, peer->port);

  if (g_strcmp0 (text, peer->host) == 0)
    return g_steal_pointer (&with_port);
  return g_strdup_printf ("%s (%s)", peer->host, with_port);
}

/* The address being connected to (the one before ->next_address). */
static char *
describe_current (const TrPeer *peer)
{
  if (peer->addresses == NULL || peer->next_address == 0)
    return g_strdup_printf ("%s:%u", peer->host, peer->port);
  return describe_address (peer, g_ptr_array_index (peer->addresses, peer->next_address - 1));
}

static gboolean
more_addresses (const TrPeer *peer)
{
  return peer->addresses != NULL && peer->next_address < peer->addresses->len;
}

/* A connection attempt to one address failed: try the next one at once,
 * or fail the attempt when none is left (backoff; the name is resolved
 * again next time). */
static void
address_failed (TrPeer *peer, const char *why)
{
  if (more_addresses (peer)) {
    if (peer->callbacks->note != NULL) {
      g_autofree char *message = g_strdup_printf ("%s; trying the next address", why);
      peer->callbacks->note (peer, G_LOG_LEVEL_INFO, message, peer->user_data);
    }
    drop_socket (peer);
    connect_peer (peer);
    return;
  }
  peer_fail (peer, "%s", why);
}

static void
on_connected (TrPeer *peer)
{
  int error = 0;
  socklen_t error_len = sizeof error;
  g_autofree char *where = describe_current (peer);

  if (getsockopt (peer->fd, SOL_SOCKET, SO_ERROR, &error, &error_len) < 0)
    error = errno;
  if (error != 0) {
    g_autofree char *why = g_strdup_printf ("connect to %s: %s", where, g_strerror (error));
    address_failed (peer, why);
    return;
  }
  g_clear_pointer (&peer->addresses, g_ptr_array_unref);
  peer->replies = 0;
  peer->contacted = TRUE;
  peer->state = TR_PEER_CONNECTED;
  g_source_set_ready_time (peer->source, -1);
  watch (peer, G_IO_IN);
  peer->callbacks->connected (peer, where, peer->user_data);
}

/* Starts a non-blocking connection to the next address in ->addresses.
 * Returns the socket, or -1 with the reason in @why (transfer full) when
 * it cannot even start. */
static int
start_connect (TrPeer *peer, char **why)
{
  GSocketAddress *address = g_ptr_array_index (peer->addresses, peer->next_address++);
  struct sockaddr_storage native;
  gssize native_len = g_socket_address_get_native_size (address);
  g_autoptr (GError) error = NULL;
  int one = 1;
  int fd, rc;

  if (native_len <= 0 || !g_socket_address_to_native (address, &native, sizeof native, &error)) {
    g_autofree char *where = describe_current (peer);
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
    g_debug ("%s:%u: TCP_NODELAY: %s", peer->host, peer->port, g_strerror (errno));
  rc = connect (fd, (struct sockaddr *) &native, (socklen_t) native_len);
  if (rc < 0 && errno != EINPROGRESS) {
    int saved_errno = errno;
    g_autofree char *where = describe_current (peer);
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
  TrPeer *peer = user_data;

  /* Cancelled by peer_close(): the peer may be gone. */
  if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
    return;
  g_clear_object (&peer->resolving);
  if (found == NULL) {
    /* GLib's own text repeats the name, in quotes a C locale cannot show. */
    const char *why = g_error_matches (error, G_RESOLVER_ERROR, G_RESOLVER_ERROR_NOT_FOUND) ? "no such host"
                      : g_error_matches (error, G_RESOLVER_ERROR, G_RESOLVER_ERROR_TEMPORARY_FAILURE)
                          ? "temporary failure in name resolution"
                          : error->message;
    peer_fail (peer, "cannot resolve %s: %s", peer->host, why);
    return;
  }
  peer->addresses = g_ptr_array_new_with_free_func (g_object_unref);
  peer->next_address = 0;
  for (GList *l = found; l != NULL; l = l->next)
    g_ptr_array_add (peer->addresses, g_inet_socket_address_new (l->data, peer->port));
  g_resolver_free_addresses (found);
  connect_peer (peer);
}

/* Fills ->addresses: at once for an IP address (TRUE); for a name, starts
 * a lookup on GIO's resolver threads and returns FALSE (the peer waits in
 * CONNECTING, bounded by connect_timeout_ms; on_resolved() goes on). */
static gboolean
resolve (TrPeer *peer)
{
  GSocketAddress *literal = g_inet_socket_address_new_from_string (peer->host, peer->port);
  GResolver *resolver;

  if (literal != NULL) {
    peer->addresses = g_ptr_array_new_with_free_func (g_object_unref);
    peer->next_address = 0;
    g_ptr_array_add (peer->addresses, literal);
    return TRUE;
  }
  /* The result comes back on this thread's default context: the owning
   * thread's, where every peer function runs. */
  resolver = g_resolver_get_default ();
  peer->resolving = g_cancellable_new ();
  g_resolver_lookup_by_name_async (resolver, peer->host, peer->resolving, on_resolved, peer);
  g_object_unref (resolver);
  peer->state = TR_PEER_CONNECTING;
  set_timer_ms (peer, peer->settings.connect_timeout_ms);
  return FALSE;
}

static void
connect_peer (TrPeer *peer)
{
  g_autofree char *why = NULL;
  int fd;

  if (!more_addresses (peer)) {
    g_clear_pointer (&peer->addresses, g_ptr_array_unref);
    if (!resolve (peer))
      return;
  }
  fd = start_connect (peer, &why);
  if (fd < 0) {
    address_failed (peer, why);
    return;
  }
  peer->fd = fd;
  peer->fd_tag = g_source_add_unix_fd (peer->source, fd, G_IO_OUT);
  peer->fd_events = G_IO_OUT;
  peer->state = TR_PEER_CONNECTING;
  set_timer_ms (peer, peer->settings.connect_timeout_ms);
}

/* ---- the peer's GSource ---- */

static void
on_timer (TrPeer *peer)
{
  gint64 deadline;

  switch (peer->state) {
  case TR_PEER_IDLE:
    break;
  case TR_PEER_BACKOFF:
    connect_peer (peer);
    break;
  case TR_PEER_CONNECTING:
    if (peer->resolving != NULL) {
      peer_fail (peer, "resolving %s timed out after %u ms", peer->host, peer->settings.connect_timeout_ms);
    } else {
      g_autofree char *where = describe_current (peer);
      g_autofree char *why = g_strdup_printf ("connect to %s timed out after %u ms", where,
                                              peer->settings.connect_timeout_ms);
      address_failed (peer, why);
    }
    break;
  case TR_PEER_CONNECTED:
    if (g_queue_is_empty (&peer->inflight))
      break;
    deadline = peer->last_progress + (gint64) peer->settings.socket_timeout_ms * 1000;
    if (g_get_monotonic_time () < deadline) {
      g_source_set_ready_time (peer->source, deadline);
      break;
    }
    peer_fail (peer, "no answer for %u ms with %u messages in flight", peer->settings.socket_timeout_ms,
               g_queue_get_length (&peer->inflight));
    break;
  }
}

static void
on_io (TrPeer *peer, GIOCondition condition)
{
  if (peer->state == TR_PEER_CONNECTING) {
    on_connected (peer);
    return;
  }
  if (peer->state != TR_PEER_CONNECTED)
    return;
  if ((condition & G_IO_OUT) && !tr_peer_flush (peer))
    return;
  if ((condition & (G_IO_IN | G_IO_HUP | G_IO_ERR)) && !read_input (peer))
    return;
  if (peer->callbacks->io_done != NULL)
    peer->callbacks->io_done (peer, peer->user_data);
}

static gboolean
peer_source_dispatch (GSource *source, GSourceFunc callback, gpointer user_data)
{
  TrPeer *peer = ((PeerSource *) source)->peer;
  gint64 ready_time = g_source_get_ready_time (source);
  GIOCondition condition = 0;

  (void) callback;
  (void) user_data;
  if (ready_time >= 0 && g_source_get_time (source) >= ready_time) {
    /* One event per dispatch: a socket still ready is dispatched again. */
    g_source_set_ready_time (source, -1);
    on_timer (peer);
    return G_SOURCE_CONTINUE;
  }
  if (peer->fd_tag != NULL)
    condition = g_source_query_unix_fd (source, peer->fd_tag);
  if (condition != 0)
    on_io (peer, condition);
  return G_SOURCE_CONTINUE;
}

static GSourceFuncs peer_source_funcs = {
  .prepare = NULL,
  .check = NULL,
  .dispatch = peer_source_dispatch,
  .finalize = NULL,
};

/* ---- life cycle ---- */

/* The GIO types a peer uses are registered on first use, behind a g_once
 * compiled into libgio.  Peers run on several threads (push, replication),
 * so two could be the first at once: correct, but through synchronisation
 * that ThreadSanitizer's instrumented GLib does not see (tools/tsan.sh
 * reported it as a race in g_type_fundamental).  Registering them here, on
 * the thread that builds the peers before their threads start, leaves
 * nothing to race on. */
static void
register_gio_types (void)
{
  g_type_ensure (G_TYPE_INET_ADDRESS);
  g_type_ensure (G_TYPE_INET_SOCKET_ADDRESS);
  g_type_ensure (G_TYPE_SOCKET_ADDRESS);
  g_type_ensure (G_TYPE_RESOLVER);
  g_type_ensure (G_TYPE_CANCELLABLE);
}

TrPeer *
tr_peer_new (const char *host, guint16 port, const TrPeerSettings *settings, const TrPeerCallbacks *callbacks,
             gpointer user_data)
{
  TrPeer *peer;

  g_return_val_if_fail (host != NULL && settings != NULL && callbacks != NULL, NULL);
  g_return_val_if_fail (callbacks->connected != NULL && callbacks->reply != NULL && callbacks->failed != NULL,
                        NULL);
  register_gio_types ();
  peer = g_new0 (TrPeer, 1);
  peer->host = g_strdup (host);
  peer->port = port;
  peer->settings = *settings;
  peer->callbacks = callbacks;
  peer->user_data = user_data;
  peer->state = TR_PEER_IDLE;
  peer->fd = -1;
  peer->out = g_byte_array_new ();
  peer->in = g_byte_array_new ();
  g_queue_init (&peer->inflight);
  peer->source = g_source_new (&peer_source_funcs, sizeof (PeerSource));
  ((PeerSource *) peer->source)->peer = peer;
  g_source_set_name (peer->source, "tr-peer");
  /* A non-recursive source is blocked and unblocked around each dispatch,
   * which costs GLib two wake-up writes per dispatch; ours never recurse. */
  g_source_set_can_recurse (peer->source, TRUE);
  return peer;
}

void
tr_peer_attach (TrPeer *peer, GMainContext *context)
{
  g_return_if_fail (peer != NULL);
  g_source_attach (peer->source, context);
}

void
tr_peer_free (TrPeer *peer)
{
  if (peer == NULL)
    return;
  peer_close (peer);
  g_source_destroy (peer->source);
  g_source_unref (peer->source);
  g_free (peer->host);
  g_byte_array_unref (peer->out);
  g_byte_array_unref (peer->in);
  g_free (peer->last_error);
  g_free (peer);
}

void
tr_peer_set_settings (TrPeer *peer, const TrPeerSettings *settings)
{
  g_return_if_fail (peer != NULL && settings != NULL);
  peer->settings = *settings;
}

void
tr_peer_set_address (TrPeer *peer, const char *host, guint16 port)
{
  g_return_if_fail (peer != NULL && host != NULL);
  g_free (peer->host);
  peer->host = g_strdup (host);
  peer->port = port;
  peer->contacted = FALSE; /* a new address gets the quick first-contact retries */
}

void
tr_peer_start (TrPeer *peer)
{
  g_return_if_fail (peer != NULL);
  if (peer->state == TR_PEER_IDLE || peer->state == TR_PEER_BACKOFF)
    connect_peer (peer);
}

void
tr_peer_stop (TrPeer *peer)
{
  g_return_if_fail (peer != NULL);
  peer_close (peer);
  g_source_set_ready_time (peer->source, -1);
  peer->state = TR_PEER_IDLE;
  peer->retries = 0;
  peer->window = 0;
}

void
tr_peer_reset_backoff (TrPeer *peer)
{
  g_return_if_fail (peer != NULL);
  peer->retries = 0;
}

/* ---- window ---- */

guint
tr_peer_window (const TrPeer *peer)
{
  guint max_inflight = MAX (peer->settings.max_inflight, 1);

  return peer->window == 0 ? max_inflight : MIN (peer->window, max_inflight);
}

void
tr_peer_window_shrink (TrPeer *peer)
{
  peer->window = 1;
}

void
tr_peer_window_grow (TrPeer *peer)
{
  if (peer->window != 0)
    peer->window = peer->window >= peer->settings.max_inflight / 2 ? 0 : peer->window * 2;
}

/* ---- in flight ---- */

guint
tr_peer_inflight_length (const TrPeer *peer)
{
  return g_queue_get_length ((GQueue *) &peer->inflight);
}

TrPeerInflight *
tr_peer_inflight_peek_head (const TrPeer *peer)
{
  return g_queue_peek_head ((GQueue *) &peer->inflight);
}

TrPeerInflight *
tr_peer_inflight_peek_tail (const TrPeer *peer)
{
  return g_queue_peek_tail ((GQueue *) &peer->inflight);
}

TrPeerInflight *
tr_peer_inflight_pop (TrPeer *peer)
{
  return g_queue_pop_head (&peer->inflight);
}

/* ---- state ---- */

TrPeerState
tr_peer_get_state (const TrPeer *peer)
{
  return peer->state;
}

guint
tr_peer_get_retries (const TrPeer *peer)
{
  return peer->retries;
}

const char *
tr_peer_get_last_error (const TrPeer *peer)
{
  return peer->last_error;
}

guint64
tr_peer_get_written (const TrPeer *peer)
{
  return peer->written_total;
}

gboolean
tr_peer_get_contacted (const TrPeer *peer)
{
  return peer->contacted;
}
