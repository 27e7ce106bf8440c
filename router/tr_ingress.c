/* tr_ingress.c - producer connections of a MASTER (see tr_ingress.h).
 *
 * Connection life:
 *
 *   accept_cb --> OPEN --EOF / error / bad frame length--> CLOSING --last answer--> freed
 *                  |  (reading paused while too many answers are pending)
 *
 * A connection is freed only when its socket is closed AND no commit
 * callback still refers to it (->refs counts pending answers + the socket),
 * and never inside its own GSource dispatch (conn_unref defers via idle).
 *
 * Bad input (DESIGN.md §2.1): a frame whose length is negative, too small or
 * over max_frame_size cannot be skipped safely, so the connection is closed.
 * Inside a well-framed message, a header that cannot be parsed gets a
 * TApplicationException PROTOCOL_ERROR if the seqid could be read (else the
 * connection is closed); a REPLY/EXCEPTION from a producer gets
 * INVALID_MESSAGE_TYPE; an rpc nobody subscribes to gets UNKNOWN_METHOD.
 * Each is counted and logged, at most once per second per kind.
 */
#include "tr_ingress.h"

#include "tr_frame.h"

#include <errno.h>
#include <fcntl.h>
#include <gio/gio.h>
#include <glib-unix.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define TR_READ_CHUNK (64 * 1024)
#define TR_MAX_PENDING_PER_CONN 4096
#define TR_MAX_OUT_PER_CONN (4 * 1024 * 1024)
#define TR_ACTIVE_WINDOW_US (100 * G_TIME_SPAN_MILLISECOND)
#define TR_HINT_INTERVAL_MS 50

typedef struct _Conn Conn;

typedef struct {
  Conn *conn;          /* holds a ref */
  gboolean ready;      /* answer known (or none needed) */
  gboolean oneway;
  char *name;
  gint32 seqid;
  guint64 rpc_id;      /* set by the commit callback */
  GError *error;       /* set by the commit callback */
  GByteArray *answer;  /* NULL: nothing to send */
} Pending;

struct _Conn {
  TrIngress *ingress;
  int fd;           /* -1 once closed */
  guint32 events;   /* EPOLL* events the connection is registered for */
  GByteArray *in;
  GByteArray *out;
  gsize out_sent;
  GQueue pending;  /* Pending*, request order */
  gint64 last_submit_us; /* monotonic time of its last RPC (commit hint) */
  guint refs;
  char *peer;
  guint64 frames;  /* whole frames read: a protocol hint only before the first */
};

typedef struct {
  gint64 last_us;
  guint suppressed;
} RateLimit;

struct _TrIngress {
  TrRpcStore *store;
  guint32 max_frame_size;
  guint max_connections;
  GHashTable *routes; /* rpc name -> GArray of guint32 service ids */
  int listen_fd;
  guint16 port;
  guint listen_source;
  guint hint_source;
  int epoll_fd;      /* every producer connection; one GLib fd for all */
  guint epoll_source;
  GHashTable *conns; /* Conn* set */
  TrRpcBatch *batch;        /* RPCs read in this loop iteration, not yet committed */
  guint commit_hint;        /* producers active in the last TR_ACTIVE_WINDOW_US */
  guint previous_batch;     /* RPCs in the last group commit */
  guint n_pending;          /* submitted, not yet completed */
  gboolean stopping;        /* shutting down: no more reads */
  TrIngressStats stats;
  RateLimit limits[4];
};

enum { LIMIT_BAD_FRAME, LIMIT_UNKNOWN, LIMIT_CONN, LIMIT_COMMIT };

static void conn_close (Conn *conn, const char *why);
static void conn_update_condition (Conn *conn);

/* ---- helpers ---------------------------------------------------------- */

/* TRUE if a message of this kind may be logged now; folds the rest into a
 * count reported with the next one. */
static gboolean
rate_ok (TrIngress *ingress, int kind, guint *suppressed_out)
{
  RateLimit *limit = &ingress->limits[kind];
  gint64 now = g_get_monotonic_time ();

  if (now - limit->last_us < G_TIME_SPAN_SECOND) {
    limit->suppressed++;
    return FALSE;
  }
  limit->last_us = now;
  *suppressed_out = limit->suppressed;
  limit->suppressed = 0;
  return TRUE;
}

static void
log_bad_input (Conn *conn, int kind, const char *what)
{
  guint suppressed = 0;

  if (rate_ok (conn->ingress, kind, &suppressed))
    g_log_structured (G_LOG_DOMAIN, G_LOG_LEVEL_WARNING, "TR_PEER", conn->peer, "MESSAGE",
                      "producer %s: %s (%u similar messages suppressed in the last second)", conn->peer,
                      what, suppressed);
}

static void
conn_free (Conn *conn)
{
  g_assert (conn->fd < 0 && g_queue_is_empty (&conn->pending));
  g_byte_array_unref (conn->in);
  g_byte_array_unref (conn->out);
  g_free (conn->peer);
  g_free (conn);
}

static gboolean
conn_free_idle (gpointer data)
{
  conn_free (data);
  return G_SOURCE_REMOVE;
}

static void
conn_unref (Conn *conn)
{
  g_assert (conn->refs > 0);
  if (--conn->refs == 0)
    g_idle_add (conn_free_idle, conn); /* never free inside our own dispatch */
}

static void
pending_free (Pending *pending)
{
  g_free (pending->name);
  g_clear_error (&pending->error);
  if (pending->answer)
    g_byte_array_unref (pending->answer);
  g_free (pending);
}

/* ---- output ----------------------------------------------------------- */

static void
conn_flush (Conn *conn)
{
  while (conn->fd >= 0 && conn->out_sent < conn->out->len) {
    ssize_t n = send (conn->fd, conn->out->data + conn->out_sent, conn->out->len - conn->out_sent,
                      MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
      break;
    if (n <= 0) {
      conn_close (conn, g_strerror (errno));
      return;
    }
    conn->out_sent += (gsize) n;
  }
  if (conn->out_sent == conn->out->len) {
    g_byte_array_set_size (conn->out, 0);
    conn->out_sent = 0;
  }
  conn_update_condition (conn);
}

/* Moves every answer at the head of the FIFO that is ready into ->out. */
static void
conn_emit_ready (Conn *conn)
{
  Pending *head;

  while ((head = g_queue_peek_head (&conn->pending)) != NULL && head->ready) {
    g_queue_pop_head (&conn->pending);
    if (head->answer != NULL && conn->fd >= 0)
      g_byte_array_append (conn->out, head->answer->data, head->answer->len);
    pending_free (head);
    conn_unref (conn);
  }
  if (conn->fd >= 0)
    conn_flush (conn);
}

/* Queues an answer known at once (errors), behind earlier pending answers. */
static void
conn_answer_now (Conn *conn, GByteArray *answer)
{
  Pending *pending = g_new0 (Pending, 1);

  pending->conn = conn;
  pending->ready = TRUE;
  pending->answer = answer;
  conn->refs++;
  g_queue_push_tail (&conn->pending, pending);
  conn_emit_ready (conn);
}

static void
answer_exception (Conn *conn, const TrMsgHeader *header, TrAppExceptionType type, const char *message)
{
  GByteArray *out = g_byte_array_new ();

  tr_frame_build_exception (out, (const char *) header->name, header->name_len, header->seqid, type,
                            message);
  conn_answer_now (conn, out);
}

/* ---- commit completions ----------------------------------------------- */

static void
complete_pending (TrIngress *ingress, Pending *pending)
{
  Conn *conn = pending->conn;

  ingress->n_pending--;
  if (pending->error != NULL) {
    g_autofree char *message = g_strdup_printf ("thriftrouter could not store the rpc: %s",
                                                pending->error->message);
    guint suppressed = 0;
    ingress->stats.commit_errors++;
    if (rate_ok (ingress, LIMIT_COMMIT, &suppressed))
      g_warning ("answering INTERNAL_ERROR to %s: %s (%u more suppressed)", conn->peer,
                 pending->error->message, suppressed);
    if (!pending->oneway) {
      pending->answer = g_byte_array_new ();
      tr_frame_build_exception (pending->answer, pending->name, strlen (pending->name), pending->seqid,
                                TR_APP_EXC_INTERNAL_ERROR, message);
    }
  } else {
    ingress->stats.rpcs_committed++;
    if (!pending->oneway) {
      pending->answer = g_byte_array_sized_new (32);
      tr_frame_build_void_reply (pending->answer, pending->name, strlen (pending->name), pending->seqid);
    }
  }
  pending->ready = TRUE;
  conn_emit_ready (conn);
}

/* The store's commit callback; runs on this thread, inside
 * commit_batch_now(). */
static void
on_commit (gpointer user_data, guint64 rpc_id, const GError *error)
{
  Pending *pending = user_data;

  pending->rpc_id = rpc_id;
  pending->error = error ? g_error_copy (error) : NULL;
  complete_pending (pending->conn->ingress, pending);
}

/* ---- input ------------------------------------------------------------ */

/* The sentence a bad first frame gets appended: what the peer seems to
 * speak instead (tr_frame_protocol_hint()), or nothing. */
static char *
protocol_hint (gboolean first_frame, const guint8 *frame, gsize avail)
{
  const char *hint = first_frame ? tr_frame_protocol_hint (frame, avail) : NULL;

  return hint != NULL ? g_strconcat ("; ", hint, NULL) : g_strdup ("");
}

/* @msg: the frame's payload, right after its length (in ->in). */
static void
handle_message (Conn *conn, const guint8 *msg, gsize len)
{
  TrIngress *ingress = conn->ingress;
  TrMsgHeader header;
  TrFrameStatus status = tr_frame_parse_header (msg, len, &header);
  char name[TR_FRAME_MAX_NAME_LEN + 1];
  GArray *services;
  Pending *pending;
  gboolean first_frame = conn->frames++ == 0;

  if (status != TR_FRAME_OK) {
    g_autofree char *hint = protocol_hint (first_frame, msg - TR_FRAME_LEN_SIZE, len + TR_FRAME_LEN_SIZE);
    g_autofree char *what = g_strdup_printf ("malformed message: %s%s", tr_frame_status_to_string (status), hint);
    ingress->stats.bad_frames++;
    log_bad_input (conn, LIMIT_BAD_FRAME, what);
    /* No answer can echo a name we refuse to handle (too long): close. */
    if (!header.seqid_valid || header.name_len > TR_FRAME_MAX_NAME_LEN) {
      conn_close (conn, what);
      return;
    }
    answer_exception (conn, &header, TR_APP_EXC_PROTOCOL_ERROR, what);
    return;
  }
  if (header.type != TR_MSG_CALL && header.type != TR_MSG_ONEWAY) {
    ingress->stats.bad_frames++;
    log_bad_input (conn, LIMIT_BAD_FRAME, "sent a REPLY/EXCEPTION message; producers send CALL or ONEWAY");
    answer_exception (conn, &header, TR_APP_EXC_INVALID_MESSAGE_TYPE,
                      "thriftrouter accepts only CALL and ONEWAY messages");
    return;
  }
  memcpy (name, header.name, header.name_len);
  name[header.name_len] = '\0';
  services = g_hash_table_lookup (ingress->routes, name);
  if (services == NULL) {
    g_autofree char *what = g_strdup_printf ("no service subscribes to rpc '%s'", name);
    ingress->stats.unknown_rpcs++;
    log_bad_input (conn, LIMIT_UNKNOWN, what);
    if (header.type == TR_MSG_CALL)
      answer_exception (conn, &header, TR_APP_EXC_UNKNOWN_METHOD, what);
    return;
  }
  pending = g_new0 (Pending, 1);
  pending->conn = conn;
  pending->oneway = header.type == TR_MSG_ONEWAY;
  pending->name = g_strdup (name);
  pending->seqid = header.seqid;
  conn->refs++;
  g_queue_push_tail (&conn->pending, pending);
  ingress->n_pending++;
  ingress->stats.rpcs_in++;
  conn->last_submit_us = g_get_monotonic_time ();
  {
    g_autoptr (GBytes) message = tr_rpcstore_copy_message (ingress->store, msg, len);
    tr_rpcbatch_add (ingress->batch, message, (const guint32 *) services->data, services->len, on_commit,
                     pending);
  }
}

/* Group commit.  With sync_mode always, while the batch holds fewer RPCs
 * than the producers active lately (and than the last batch plus this
 * one), wait a little (tr_rpcstore_group_commit_delay_us()) for the others
 * to arrive, reading them on this thread: synchronous producers answered
 * by one fsync come back together about a round trip later, and without
 * the wait the last of them would miss the next fsync.  Then commit the
 * whole batch here (the callbacks queue the answers) and send them. */
static void dispatch_ready (int epoll_fd);

static void
gather_batch (TrIngress *ingress, int epoll_fd)
{
  guint have = tr_rpcbatch_len (ingress->batch);
  guint target = MIN (ingress->commit_hint, ingress->previous_batch + have);
  gint64 delay = tr_rpcstore_group_commit_delay_us (ingress->store);
  gint64 deadline = g_get_monotonic_time () + delay;

  while (delay > 0 && tr_rpcbatch_len (ingress->batch) < target) {
    gint64 left = deadline - g_get_monotonic_time ();
    struct pollfd pfd = { .fd = epoll_fd, .events = POLLIN };
    struct timespec ts;
    if (left <= 0)
      break;
    ts.tv_sec = left / G_USEC_PER_SEC;
    ts.tv_nsec = (left % G_USEC_PER_SEC) * 1000;
    if (ppoll (&pfd, 1, &ts, NULL) <= 0)
      break;
    dispatch_ready (epoll_fd);
  }
}

static void
commit_batch_now (TrIngress *ingress, int epoll_fd)
{
  if (tr_rpcbatch_len (ingress->batch) == 0)
    return;
  gather_batch (ingress, epoll_fd);
  ingress->previous_batch = tr_rpcbatch_len (ingress->batch);
  tr_rpcstore_submit_batch (ingress->store, ingress->batch);
}

/* Parses every complete frame in ->in; FALSE if the connection was closed. */
static gboolean
conn_parse_frames (Conn *conn)
{
  gsize offset = 0;

  while (conn->fd >= 0) {
    guint32 frame_len = 0;
    TrFrameStatus status = tr_frame_next (conn->in->data + offset, conn->in->len - offset,
                                          conn->ingress->max_frame_size, &frame_len);
    if (status == TR_FRAME_NEED_MORE)
      break;
    if (status != TR_FRAME_OK) {
      g_autofree char *hint = protocol_hint (conn->frames == 0, conn->in->data + offset, conn->in->len - offset);
      g_autofree char *limit = status == TR_FRAME_TOO_LARGE
                                   ? g_strdup_printf (" (%u bytes; max_frame_size is %u)",
                                                      tr_get_be32 (conn->in->data + offset),
                                                      conn->ingress->max_frame_size)
                                   : g_strdup ("");
      g_autofree char *what = g_strdup_printf ("%s%s%s; closing the connection", tr_frame_status_to_string (status),
                                               limit, hint);
      conn->ingress->stats.bad_frames++;
      log_bad_input (conn, LIMIT_BAD_FRAME, what);
      conn_close (conn, what);
      return FALSE;
    }
    handle_message (conn, conn->in->data + offset + TR_FRAME_LEN_SIZE, frame_len);
    offset += TR_FRAME_LEN_SIZE + frame_len;
  }
  if (offset > 0 && conn->fd >= 0)
    g_byte_array_remove_range (conn->in, 0, (guint) offset);
  return conn->fd >= 0;
}

static void
conn_read (Conn *conn)
{
  for (int round = 0; round < 16 && conn->fd >= 0; round++) {
    gsize old = conn->in->len;
    ssize_t n;
    g_byte_array_set_size (conn->in, (guint) (old + TR_READ_CHUNK));
    n = recv (conn->fd, conn->in->data + old, TR_READ_CHUNK, MSG_DONTWAIT);
    g_byte_array_set_size (conn->in, (guint) (old + (n > 0 ? (gsize) n : 0)));
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
      break;
    if (n <= 0) {
      if (conn->in->len > 0)
        log_bad_input (conn, LIMIT_CONN, "disconnected in the middle of a frame");
      conn_close (conn, n == 0 ? "closed by the producer" : g_strerror (errno));
      return;
    }
    if (!conn_parse_frames (conn))
      return;
    if (n < TR_READ_CHUNK)
      break; /* drained: skip the recv that would only say EAGAIN */
    if (g_queue_get_length (&conn->pending) > TR_MAX_PENDING_PER_CONN)
      break;
  }
  conn_update_condition (conn);
}

/* Reading pauses while the producer has too many unanswered requests or
 * does not read its answers: memory stays bounded per connection. */
static void
conn_update_condition (Conn *conn)
{
  guint32 events = 0;

  if (conn->fd < 0)
    return;
  if (!conn->ingress->stopping && g_queue_get_length (&conn->pending) <= TR_MAX_PENDING_PER_CONN
      && conn->out->len < TR_MAX_OUT_PER_CONN)
    events |= EPOLLIN;
  if (conn->out_sent < conn->out->len)
    events |= EPOLLOUT;
  if (events != conn->events) {
    struct epoll_event ev = { .events = events, .data.ptr = conn };
    epoll_ctl (conn->ingress->epoll_fd, EPOLL_CTL_MOD, conn->fd, &ev);
    conn->events = events;
  }
}

static void
conn_dispatch (Conn *conn, guint32 ready)
{
  conn->refs++; /* keep it alive through this dispatch */
  if (ready & (EPOLLERR | EPOLLHUP | EPOLLIN))
    conn_read (conn);
  if (conn->fd >= 0 && (ready & EPOLLOUT))
    conn_flush (conn);
  conn_unref (conn);
}

/* Producer connections live in one epoll set, so the GLib loop (which polls
 * every source's fds on each iteration) watches one fd, not one per
 * producer: with 1,000 idle producers a wake-up still costs O(1). */
static void
dispatch_ready (int epoll_fd)
{
  struct epoll_event events[64];
  int n = epoll_wait (epoll_fd, events, G_N_ELEMENTS (events), 0);

  for (int i = 0; i < n; i++)
    conn_dispatch (events[i].data.ptr, events[i].events);
}

static gboolean
epoll_cb (gint fd, GIOCondition condition, gpointer data)
{
  (void) condition;
  dispatch_ready (fd);
  commit_batch_now (data, fd);
  return G_SOURCE_CONTINUE;
}

static void
conn_close (Conn *conn, const char *why)
{
  TrIngress *ingress = conn->ingress;

  if (conn->fd < 0)
    return;
  g_log_structured (G_LOG_DOMAIN, G_LOG_LEVEL_INFO, "TR_PEER", conn->peer, "MESSAGE",
                    "producer %s disconnected: %s", conn->peer, why);
  epoll_ctl (ingress->epoll_fd, EPOLL_CTL_DEL, conn->fd, NULL);
  close (conn->fd);
  conn->fd = -1;
  g_hash_table_remove (ingress->conns, conn);
  ingress->stats.connections--;
  conn_unref (conn); /* the socket's reference; pending answers hold theirs */
}

static char *
peer_name (int fd)
{
  struct sockaddr_storage addr;
  socklen_t len = sizeof addr;
  char host[NI_MAXHOST], port[NI_MAXSERV];

  if (getpeername (fd, (struct sockaddr *) &addr, &len) < 0
      || getnameinfo ((struct sockaddr *) &addr, len, host, sizeof host, port, sizeof port,
                      NI_NUMERICHOST | NI_NUMERICSERV) != 0)
    return g_strdup_printf ("fd %d", fd);
  return g_strdup_printf ("%s:%s", host, port);
}

static gboolean
accept_cb (gint fd, GIOCondition condition, gpointer data)
{
  TrIngress *ingress = data;

  (void) condition;
  for (int i = 0; i < 64; i++) {
    int one = 1;
    int client = accept4 (fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    Conn *conn;
    if (client < 0) {
      guint suppressed = 0;
      if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR && rate_ok (ingress, LIMIT_CONN, &suppressed))
        g_warning ("accept on port %u failed: %s", ingress->port, g_strerror (errno));
      break;
    }
    if (ingress->stats.connections >= ingress->max_connections) {
      guint suppressed = 0;
      ingress->stats.refused++;
      if (rate_ok (ingress, LIMIT_CONN, &suppressed))
        g_warning ("refusing a producer connection: max_connections (%u) reached (%u more suppressed)",
                   ingress->max_connections, suppressed);
      close (client);
      continue;
    }
    setsockopt (client, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    conn = g_new0 (Conn, 1);
    conn->ingress = ingress;
    conn->fd = client;
    conn->refs = 1;
    conn->in = g_byte_array_new ();
    conn->out = g_byte_array_new ();
    conn->peer = peer_name (client);
    g_queue_init (&conn->pending);
    conn->events = EPOLLIN;
    {
      struct epoll_event ev = { .events = EPOLLIN, .data.ptr = conn };
      if (epoll_ctl (ingress->epoll_fd, EPOLL_CTL_ADD, client, &ev) < 0) {
        g_warning ("cannot watch producer connection: %s", g_strerror (errno));
        close (client);
        g_byte_array_unref (conn->in);
        g_byte_array_unref (conn->out);
        g_free (conn->peer);
        g_free (conn);
        continue;
      }
    }
    g_hash_table_add (ingress->conns, conn);
    ingress->stats.connections++;
    ingress->stats.accepted++;
    g_log_structured (G_LOG_DOMAIN, G_LOG_LEVEL_INFO, "TR_PEER", conn->peer, "MESSAGE",
                      "producer %s connected", conn->peer);
  }
  return G_SOURCE_CONTINUE;
}

/* ---- setup ------------------------------------------------------------ */

/* Watches @fd for input on the default context.  The source may recurse:
 * GLib then does not block it around each dispatch, which would remove and
 * re-add its fd and wake the loop through its eventfd twice per dispatch
 * (two write()s, one extra poll() and read() per wake-up, measured). */
static guint
add_fd_source (int fd, GUnixFDSourceFunc func, gpointer data)
{
  GSource *source = g_unix_fd_source_new (fd, G_IO_IN);
  guint id;

  g_source_set_callback (source, G_SOURCE_FUNC (func), data, NULL);
  g_source_set_can_recurse (source, TRUE);
  id = g_source_attach (source, NULL);
  g_source_unref (source);
  return id;
}

GHashTable *
tr_ingress_routes_new (TrRpcStore *store, const TrConfig *config)
{
  GHashTable *routes = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, (GDestroyNotify) g_array_unref);

  for (guint i = 0; i < config->services->len; i++) {
    const TrServiceConfig *service = g_ptr_array_index (config->services, i);
    guint32 id = (guint32) tr_rpcstore_service_id (store, service->name);
    for (guint r = 0; r < service->rpcs->len; r++) {
      const char *rpc = g_ptr_array_index (service->rpcs, r);
      GArray *ids = g_hash_table_lookup (routes, rpc);
      if (ids == NULL) {
        ids = g_array_new (FALSE, FALSE, sizeof (guint32));
        g_hash_table_insert (routes, g_strdup (rpc), ids);
      }
      g_array_append_val (ids, id);
    }
  }
  return routes;
}

void
tr_ingress_set_routes (TrIngress *ingress, GHashTable *routes)
{
  /* Loop thread, between messages: every RPC is routed by the old table
   * or by the new one, never by a mix. */
  g_hash_table_destroy (ingress->routes);
  ingress->routes = routes;
}

static void
build_routes (TrIngress *ingress, const TrConfig *config)
{
  ingress->routes = tr_ingress_routes_new (ingress->store, config);
}

/* The group commit waits for the producers likely to submit next
 * (gather_batch()): those that sent an RPC recently.  Idle connections
 * must not count, or every commit would wait for them. */
static gboolean
update_commit_hint (gpointer data)
{
  TrIngress *ingress = data;
  gint64 since = g_get_monotonic_time () - TR_ACTIVE_WINDOW_US;
  GHashTableIter iter;
  gpointer key;
  guint active = 0;

  g_hash_table_iter_init (&iter, ingress->conns);
  while (g_hash_table_iter_next (&iter, &key, NULL))
    if (((Conn *) key)->last_submit_us > since)
      active++;
  ingress->commit_hint = MAX (active, 1);
  return G_SOURCE_CONTINUE;
}

static int
listen_on (const char *host, guint16 port, guint16 *bound_port, GError **error)
{
  struct addrinfo hints = { 0 }, *res = NULL;
  char service[8];
  int fd = -1, one = 1, rc;

  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  g_snprintf (service, sizeof service, "%u", port);
  rc = getaddrinfo (host, service, &hints, &res);
  if (rc != 0) {
    g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT, "cannot resolve listen address %s:%u: %s", host,
                 port, gai_strerror (rc));
    return -1;
  }
  fd = socket (res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd >= 0)
    setsockopt (fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (fd < 0 || bind (fd, res->ai_addr, res->ai_addrlen) < 0 || listen (fd, 1024) < 0) {
    int saved = errno;
    g_set_error (error, G_IO_ERROR, g_io_error_from_errno (saved), "cannot listen on %s:%u: %s", host, port,
                 g_strerror (saved));
    if (fd >= 0)
      close (fd);
    freeaddrinfo (res);
    return -1;
  }
  freeaddrinfo (res);
  {
    struct sockaddr_storage addr;
    socklen_t len = sizeof addr;
    getsockname (fd, (struct sockaddr *) &addr, &len);
    *bound_port = ntohs (addr.ss_family == AF_INET6 ? ((struct sockaddr_in6 *) &addr)->sin6_port
                                                    : ((struct sockaddr_in *) &addr)->sin_port);
  }
  return fd;
}

TrIngress *
tr_ingress_new (TrRpcStore *store, const TrConfig *config, GError **error)
{
  TrIngress *ingress;

  g_return_val_if_fail (store != NULL && config != NULL, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);
  ingress = g_new0 (TrIngress, 1);
  ingress->store = store;
  ingress->max_frame_size = config->max_frame_size;
  ingress->max_connections = config->max_connections;
  ingress->conns = g_hash_table_new (g_direct_hash, g_direct_equal);
  ingress->batch = tr_rpcbatch_new ();
  ingress->commit_hint = 1;
  ingress->epoll_fd = epoll_create1 (EPOLL_CLOEXEC);
  build_routes (ingress, config);
  if (ingress->epoll_fd < 0) {
    int saved = errno;
    g_set_error (error, G_IO_ERROR, g_io_error_from_errno (saved), "cannot create an epoll set: %s",
                 g_strerror (saved));
    tr_ingress_free (ingress);
    return NULL;
  }
  ingress->listen_fd = listen_on (config->listen_host, config->listen_port, &ingress->port, error);
  if (ingress->listen_fd < 0) {
    tr_ingress_free (ingress);
    return NULL;
  }
  ingress->listen_source = add_fd_source (ingress->listen_fd, accept_cb, ingress);
  ingress->epoll_source = add_fd_source (ingress->epoll_fd, epoll_cb, ingress);
  ingress->hint_source = g_timeout_add (TR_HINT_INTERVAL_MS, update_commit_hint, ingress);
  return ingress;
}

void
tr_ingress_stop_accepting (TrIngress *ingress)
{
  GHashTableIter iter;
  gpointer key;

  /* Stop reading too: what a producer sends now gets no answer (it was not
   * acknowledged, so it may be retried), and the drain can end. */
  ingress->stopping = TRUE;
  g_hash_table_iter_init (&iter, ingress->conns);
  while (g_hash_table_iter_next (&iter, &key, NULL))
    conn_update_condition (key);
  if (ingress->listen_source != 0)
    g_source_remove (ingress->listen_source);
  ingress->listen_source = 0;
  if (ingress->listen_fd >= 0)
    close (ingress->listen_fd);
  ingress->listen_fd = -1;
}

guint
tr_ingress_pending (TrIngress *ingress)
{
  guint n = ingress->n_pending;
  GHashTableIter iter;
  gpointer key;

  g_hash_table_iter_init (&iter, ingress->conns);
  while (g_hash_table_iter_next (&iter, &key, NULL)) {
    const Conn *conn = key;
    if (conn->out_sent < conn->out->len)
      n++;
  }
  return n;
}

guint16
tr_ingress_get_port (TrIngress *ingress)
{
  return ingress->port;
}

void
tr_ingress_get_stats (TrIngress *ingress, TrIngressStats *stats_out)
{
  *stats_out = ingress->stats;
}

void
tr_ingress_free (TrIngress *ingress)
{
  GList *conns;

  if (ingress == NULL)
    return;
  tr_ingress_stop_accepting (ingress);
  if (ingress->hint_source != 0)
    g_source_remove (ingress->hint_source);
  conns = g_hash_table_get_keys (ingress->conns);
  for (GList *l = conns; l != NULL; l = l->next)
    conn_close (l->data, "router shutting down");
  g_list_free (conns);
  /* Deferred frees run from idle sources; let them go now. */
  while (g_main_context_iteration (NULL, FALSE))
    ;
  if (ingress->epoll_source != 0)
    g_source_remove (ingress->epoll_source);
  if (ingress->epoll_fd >= 0)
    close (ingress->epoll_fd);
  g_hash_table_destroy (ingress->conns);
  g_hash_table_destroy (ingress->routes);
  tr_rpcbatch_free (ingress->batch);
  g_free (ingress);
}
