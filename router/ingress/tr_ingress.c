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
#include "tr_invoke.h"
#include "tr_net.h"

#include <gio/gio.h>
#include <glib-unix.h>
#include <poll.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#define TR_READ_CHUNK (64 * 1024)
#define TR_MAX_PENDING_PER_CONN 4096
#define TR_MAX_OUT_PER_CONN (4 * 1024 * 1024)
#define TR_ACTIVE_WINDOW_US (100 * G_TIME_SPAN_MILLISECOND)
#define TR_HINT_INTERVAL_MS 50
#define TR_LISTEN_BACKLOG 1024

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
  TrNetConn net;    /* socket (fd -1 once closed), peer name, in/out buffers */
  guint32 events;   /* EPOLL* events the connection is registered for */
  GQueue pending;  /* Pending*, request order */
  gint64 last_submit_us; /* monotonic time of its last RPC (commit hint) */
  guint refs;
  guint64 frames;  /* whole frames read: a protocol hint only before the first */
};

struct _TrIngress {
  TrRpcStore *store;
  guint32 max_frame_size;
  guint max_connections;
  GHashTable *routes; /* rpc name -> GArray of guint32 service ids */
  int listen_fd;
  guint16 port;
  GSource *listen_source;
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
  TrNetLogLimit *log_limit; /* one line per second per kind of message */
  /* tr_ingress_refuse_writes(): set from any thread, read per message here
   * (the flag alone while writes are taken, the text under the lock when
   * they are refused). */
  gint refusing;
  GMutex refusal_lock;
  char *refusal;
};

/* Kinds of rate-limited log lines (tr_net_log_limited()): one line per
 * second per kind, so that one diagnosis never hides another.  A bad frame's
 * kind is its status and protocol hint (log_bad_frame()). */
#define LIMIT_REPLY "producer sent a reply"
#define LIMIT_UNKNOWN "unknown rpc"
#define LIMIT_MID_FRAME "disconnected mid-frame"
#define LIMIT_ACCEPT "accept failed"
#define LIMIT_WATCH "cannot watch"
#define LIMIT_MAX_CONNECTIONS "max_connections"
#define LIMIT_COMMIT "commit"
#define LIMIT_REFUSED "writes refused"

static void conn_close (Conn *conn, const char *why);
static void conn_update_condition (Conn *conn);

/* ---- helpers ---------------------------------------------------------- */

static void
log_bad_input (Conn *conn, const char *kind, const char *what)
{
  tr_net_log_limited (conn->ingress->log_limit, kind, G_LOG_LEVEL_WARNING, conn->net.peer, "producer %s: %s",
                      conn->net.peer, what);
}

/* @hint: "; <what the peer seems to speak>" or "" (protocol_hint()).
 * The kind is built from constant strings only: the set stays small. */
static void
log_bad_frame (Conn *conn, TrFrameStatus status, const char *hint, const char *what)
{
  g_autofree char *kind = g_strconcat (tr_frame_status_to_string (status), hint, NULL);

  log_bad_input (conn, kind, what);
}

static void
conn_free (Conn *conn)
{
  g_assert (conn->net.fd < 0 && g_queue_is_empty (&conn->pending));
  tr_net_conn_clear (&conn->net);
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
  g_autoptr (GError) error = NULL;

  if (conn->net.fd < 0)
    return;
  if (tr_net_conn_flush (&conn->net, &error) == TR_NET_IO_CLOSED) {
    conn_close (conn, error->message);
    return;
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
    if (head->answer != NULL && conn->net.fd >= 0)
      g_byte_array_append (conn->net.out, head->answer->data, head->answer->len);
    pending_free (head);
    conn_unref (conn);
  }
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
    ingress->stats.commit_errors++;
    tr_net_log_limited (ingress->log_limit, LIMIT_COMMIT, G_LOG_LEVEL_WARNING, conn->net.peer,
                        "answering INTERNAL_ERROR to %s: %s", conn->net.peer, pending->error->message);
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
    log_bad_frame (conn, status, hint, what);
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
    log_bad_input (conn, LIMIT_REPLY, "sent a REPLY/EXCEPTION message; producers send CALL or ONEWAY");
    answer_exception (conn, &header, TR_APP_EXC_INVALID_MESSAGE_TYPE,
                      "thriftrouter accepts only CALL and ONEWAY messages");
    return;
  }
  if (g_atomic_int_get (&ingress->refusing)) {
    g_autofree char *reason = NULL;
    g_mutex_lock (&ingress->refusal_lock);
    reason = g_strdup (ingress->refusal);
    g_mutex_unlock (&ingress->refusal_lock);
    log_bad_input (conn, LIMIT_REFUSED, reason);
    /* Never stored, never acknowledged: a oneway is dropped here. */
    if (header.type == TR_MSG_CALL)
      answer_exception (conn, &header, TR_APP_EXC_INTERNAL_ERROR, reason);
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
  GByteArray *in = conn->net.in;
  gsize offset = 0;

  while (conn->net.fd >= 0) {
    guint32 frame_len = 0;
    TrFrameStatus status = tr_frame_next (in->data + offset, in->len - offset, conn->ingress->max_frame_size,
                                          &frame_len);
    if (status == TR_FRAME_NEED_MORE)
      break;
    if (status != TR_FRAME_OK) {
      g_autofree char *hint = protocol_hint (conn->frames == 0, in->data + offset, in->len - offset);
      g_autofree char *limit = status == TR_FRAME_TOO_LARGE
                                   ? g_strdup_printf (" (%u bytes; max_frame_size is %u)",
                                                      tr_get_be32 (in->data + offset),
                                                      conn->ingress->max_frame_size)
                                   : g_strdup ("");
      g_autofree char *what = g_strdup_printf ("%s%s%s; closing the connection", tr_frame_status_to_string (status),
                                               limit, hint);
      conn->ingress->stats.bad_frames++;
      log_bad_frame (conn, status, hint, what);
      conn_close (conn, what);
      return FALSE;
    }
    handle_message (conn, in->data + offset + TR_FRAME_LEN_SIZE, frame_len);
    offset += TR_FRAME_LEN_SIZE + frame_len;
  }
  if (conn->net.fd < 0)
    return FALSE;
  tr_net_conn_consume (&conn->net, offset);
  return TRUE;
}

static void
conn_read (Conn *conn)
{
  for (int round = 0; round < 16 && conn->net.fd >= 0; round++) {
    g_autoptr (GError) error = NULL;
    gsize n = 0;
    TrNetIoStatus status = tr_net_conn_read (&conn->net, TR_READ_CHUNK, &n, &error);
    if (status == TR_NET_IO_AGAIN)
      break;
    if (status == TR_NET_IO_CLOSED) {
      if (conn->net.in->len > 0)
        log_bad_input (conn, LIMIT_MID_FRAME, "disconnected in the middle of a frame");
      conn_close (conn, g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CONNECTION_CLOSED) ? "closed by the producer"
                                                                                          : error->message);
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
  g_autoptr (GError) error = NULL;
  guint32 events = 0;

  if (conn->net.fd < 0)
    return;
  if (!conn->ingress->stopping && g_queue_get_length (&conn->pending) <= TR_MAX_PENDING_PER_CONN
      && conn->net.out->len < TR_MAX_OUT_PER_CONN)
    events |= EPOLLIN;
  if (tr_net_conn_out_pending (&conn->net) > 0)
    events |= EPOLLOUT;
  if (events == conn->events)
    return;
  /* A connection whose readiness can no longer be watched would hang its
   * producer: close it, the producer reconnects. */
  if (!tr_net_epoll_modify (conn->ingress->epoll_fd, conn->net.fd, events, conn, &error)) {
    conn_close (conn, error->message);
    return;
  }
  conn->events = events;
}

static void
conn_dispatch (Conn *conn, guint32 ready)
{
  conn->refs++; /* keep it alive through this dispatch */
  if (ready & (EPOLLERR | EPOLLHUP | EPOLLIN))
    conn_read (conn);
  if (conn->net.fd >= 0 && (ready & EPOLLOUT))
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
  g_autoptr (GError) error = NULL;

  if (conn->net.fd < 0)
    return;
  g_log_structured (G_LOG_DOMAIN, G_LOG_LEVEL_INFO, "TR_PEER", conn->net.peer, "MESSAGE",
                    "producer %s disconnected: %s", conn->net.peer, why);
  /* close() drops the registration too (the fd is never duplicated); a
   * failure here means the set and the connection disagree: say so. */
  if (!tr_net_epoll_remove (ingress->epoll_fd, conn->net.fd, &error))
    g_warning ("producer %s: %s", conn->net.peer, error->message);
  tr_net_conn_close (&conn->net);
  g_hash_table_remove (ingress->conns, conn);
  ingress->stats.connections--;
  conn_unref (conn); /* the socket's reference; pending answers hold theirs */
}

/* A new producer connection, or (logged) @client closed again if it
 * cannot be watched. */
static void
conn_open (TrIngress *ingress, int client)
{
  g_autoptr (GError) error = NULL;
  Conn *conn = g_new0 (Conn, 1);

  conn->ingress = ingress;
  conn->refs = 1;
  tr_net_conn_init (&conn->net, client);
  g_queue_init (&conn->pending);
  conn->events = EPOLLIN;
  if (!tr_net_epoll_add (ingress->epoll_fd, client, EPOLLIN, conn, &error)) {
    tr_net_log_limited (ingress->log_limit, LIMIT_WATCH, G_LOG_LEVEL_WARNING, conn->net.peer,
                        "cannot watch producer connection %s, closing it: %s", conn->net.peer, error->message);
    tr_net_conn_clear (&conn->net);
    g_free (conn);
    return;
  }
  g_hash_table_add (ingress->conns, conn);
  ingress->stats.connections++;
  ingress->stats.accepted++;
  g_log_structured (G_LOG_DOMAIN, G_LOG_LEVEL_INFO, "TR_PEER", conn->net.peer, "MESSAGE", "producer %s connected",
                    conn->net.peer);
}

static gboolean
accept_cb (gpointer data)
{
  TrIngress *ingress = data;

  for (int i = 0; i < 64; i++) {
    g_autoptr (GError) error = NULL;
    int client = tr_net_accept (ingress->listen_fd, &error);
    if (client < 0) {
      if (tr_net_accept_must_pause (error)) {
        tr_net_log_limited (ingress->log_limit, LIMIT_ACCEPT, G_LOG_LEVEL_WARNING, NULL,
                            "port %u: %s; not accepting producers for %d ms (open file limit: ulimit -n / "
                            "LimitNOFILE, or lower max_connections)",
                            ingress->port, error->message, TR_NET_ACCEPT_PAUSE_MS);
        tr_net_listen_source_pause (ingress->listen_source, TR_NET_ACCEPT_PAUSE_MS);
      } else if (!g_error_matches (error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK)) {
        tr_net_log_limited (ingress->log_limit, LIMIT_ACCEPT, G_LOG_LEVEL_WARNING, NULL, "port %u: %s",
                            ingress->port, error->message);
      }
      break;
    }
    if (ingress->stats.connections >= ingress->max_connections) {
      ingress->stats.refused++;
      tr_net_log_limited (ingress->log_limit, LIMIT_MAX_CONNECTIONS, G_LOG_LEVEL_WARNING, NULL,
                          "refusing a producer connection: max_connections (%u) reached", ingress->max_connections);
      close (client);
      continue;
    }
    conn_open (ingress, client);
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

TrIngress *
tr_ingress_new (TrRpcStore *store, const TrConfig *config, GError **error)
{
  TrIngress *ingress;

  g_return_val_if_fail (store != NULL && config != NULL, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);
  ingress = g_new0 (TrIngress, 1);
  /* Not 0 (g_new0): tr_ingress_free() after a failed start must not close
   * fd 0, which this ingress never opened. */
  ingress->listen_fd = -1;
  ingress->epoll_fd = -1;
  ingress->store = store;
  ingress->max_frame_size = config->max_frame_size;
  ingress->max_connections = config->max_connections;
  ingress->conns = g_hash_table_new (g_direct_hash, g_direct_equal);
  ingress->batch = tr_rpcbatch_new ();
  ingress->commit_hint = 1;
  ingress->log_limit = tr_net_log_limit_new (G_LOG_DOMAIN, G_TIME_SPAN_SECOND);
  g_mutex_init (&ingress->refusal_lock);
  build_routes (ingress, config);
  ingress->epoll_fd = tr_net_epoll_new (error);
  if (ingress->epoll_fd < 0) {
    tr_ingress_free (ingress);
    return NULL;
  }
  ingress->listen_fd = tr_net_listen (config->listen_host, config->listen_port, TR_LISTEN_BACKLOG, &ingress->port,
                                      error);
  if (ingress->listen_fd < 0) {
    tr_ingress_free (ingress);
    return NULL;
  }
  ingress->listen_source = tr_net_listen_source_new (ingress->listen_fd, accept_cb, ingress);
  g_source_attach (ingress->listen_source, NULL);
  ingress->epoll_source = add_fd_source (ingress->epoll_fd, epoll_cb, ingress);
  ingress->hint_source = g_timeout_add (TR_HINT_INTERVAL_MS, update_commit_hint, ingress);
  return ingress;
}

void
tr_ingress_stop_accepting (TrIngress *ingress)
{
  GList *conns;

  /* Stop reading too: what a producer sends now gets no answer (it was not
   * acknowledged, so it may be retried), and the drain can end.  A list of
   * the connections, not an iterator: conn_update_condition() may close one
   * (and so remove it from ->conns). */
  ingress->stopping = TRUE;
  conns = g_hash_table_get_keys (ingress->conns);
  for (GList *l = conns; l != NULL; l = l->next)
    conn_update_condition (l->data);
  g_list_free (conns);
  if (ingress->listen_source != NULL) {
    g_source_destroy (ingress->listen_source);
    g_clear_pointer (&ingress->listen_source, g_source_unref);
  }
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
    if (tr_net_conn_out_pending (&conn->net) > 0)
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

typedef struct {
  TrIngress *ingress;
  TrIngressStats stats;
} StatsRequest;

static void
on_stats_request (gpointer data)
{
  StatsRequest *request = data;

  tr_ingress_get_stats (request->ingress, &request->stats);
}

gboolean
tr_ingress_get_stats_wait (TrIngress *ingress, GMainContext *context, gint64 deadline_us, TrIngressStats *stats_out)
{
  StatsRequest *request;

  g_return_val_if_fail (ingress != NULL && context != NULL && stats_out != NULL, FALSE);

  request = g_new0 (StatsRequest, 1);
  request->ingress = ingress;
  /* On a timeout tr_invoke_wait() keeps @request for the late run and
   * frees it then with g_free. */
  if (!tr_invoke_wait (context, G_PRIORITY_DEFAULT, on_stats_request, request, g_free, deadline_us))
    return FALSE;
  *stats_out = request->stats;
  g_free (request);
  return TRUE;
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
  tr_net_log_limit_free (ingress->log_limit);
  g_mutex_clear (&ingress->refusal_lock);
  g_free (ingress->refusal);
  g_free (ingress);
}

void
tr_ingress_refuse_writes (TrIngress *ingress, const char *reason)
{
  g_return_if_fail (ingress != NULL);

  g_mutex_lock (&ingress->refusal_lock);
  g_free (ingress->refusal);
  ingress->refusal = g_strdup (reason);
  g_mutex_unlock (&ingress->refusal_lock);
  g_atomic_int_set (&ingress->refusing, reason != NULL);
}
