/* tr_net.c - listen, accept, connection buffers, epoll registration and
 * rate-limited log lines (see tr_net.h).
 *
 * Before this module ingress and admin each had their own listen_on() and
 * peer_name() with different error handling (ingress did not check
 * getsockname() nor epoll_ctl()), and each module its own log limiter.
 * Everything that fails here returns a GError naming the operation; the
 * caller decides whether that closes a connection or stops start-up.
 */
#include "tr_net.h"

#include <errno.h>
#include <gio/gio.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* ---- listening sockets ---- */

static guint16
sockaddr_port (const struct sockaddr_storage *address)
{
  if (address->ss_family == AF_INET6)
    return g_ntohs (((const struct sockaddr_in6 *) address)->sin6_port);
  return g_ntohs (((const struct sockaddr_in *) address)->sin_port);
}

int
tr_net_listen (const char *host, guint16 port, int backlog, guint16 *port_out, GError **error)
{
  struct addrinfo hints = { 0 };
  struct addrinfo *res = NULL;
  struct sockaddr_storage bound;
  socklen_t bound_len = sizeof bound;
  char service[8];
  int one = 1;
  int fd, rc;

  g_return_val_if_fail (host != NULL && port_out != NULL, -1);
  g_return_val_if_fail (error == NULL || *error == NULL, -1);
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
  /* getsockname() is checked too: with port 0 the bound port is what the
   * daemon announces, and a wrong one would send producers elsewhere. */
  if (fd < 0 || setsockopt (fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0
      || bind (fd, res->ai_addr, res->ai_addrlen) < 0 || listen (fd, backlog) < 0
      || getsockname (fd, (struct sockaddr *) &bound, &bound_len) < 0) {
    int saved = errno;
    g_set_error (error, G_IO_ERROR, g_io_error_from_errno (saved), "cannot listen on %s:%u: %s", host, port,
                 g_strerror (saved));
    if (fd >= 0)
      close (fd);
    freeaddrinfo (res);
    return -1;
  }
  freeaddrinfo (res);
  *port_out = sockaddr_port (&bound);
  return fd;
}

int
tr_net_accept (int listen_fd, GError **error)
{
  int one = 1;
  int fd;

  g_return_val_if_fail (error == NULL || *error == NULL, -1);
  do
    fd = accept4 (listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
  while (fd < 0 && errno == EINTR);
  if (fd < 0) {
    int saved = errno;
    /* GLib maps ENOBUFS to G_IO_ERROR_FAILED: name it as the lack of
     * memory it is, so that tr_net_accept_must_pause() sees it. */
    GIOErrorEnum code = saved == ENOBUFS ? G_IO_ERROR_NO_SPACE : g_io_error_from_errno (saved);
    g_set_error (error, G_IO_ERROR, code, "accept failed: %s", g_strerror (saved));
    return -1;
  }
  if (setsockopt (fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) < 0) {
    int saved = errno;
    g_set_error (error, G_IO_ERROR, g_io_error_from_errno (saved), "cannot set TCP_NODELAY on an accepted socket: %s",
                 g_strerror (saved));
    close (fd);
    return -1;
  }
  return fd;
}

gboolean
tr_net_accept_must_pause (const GError *error)
{
  return g_error_matches (error, G_IO_ERROR, G_IO_ERROR_TOO_MANY_OPEN_FILES)
         || g_error_matches (error, G_IO_ERROR, G_IO_ERROR_NO_SPACE);
}

/* ---- listen source ------------------------------------------------------ */

/* A paused listener watches no events and has a ready time instead; when it
 * comes, dispatch watches the socket again and runs the callback once. */
typedef struct {
  GSource source;
  gpointer tag;
} ListenSource;

static gboolean
listen_source_dispatch (GSource *source, GSourceFunc callback, gpointer data)
{
  ListenSource *listen = (ListenSource *) source;

  if (g_source_get_ready_time (source) != -1) {
    g_source_set_ready_time (source, -1);
    g_source_modify_unix_fd (source, listen->tag, G_IO_IN);
  }
  return callback (data);
}

static GSourceFuncs listen_source_funcs = {
  .dispatch = listen_source_dispatch,
};

GSource *
tr_net_listen_source_new (int listen_fd, GSourceFunc func, gpointer data)
{
  GSource *source = g_source_new (&listen_source_funcs, sizeof (ListenSource));
  ListenSource *listen = (ListenSource *) source;

  listen->tag = g_source_add_unix_fd (source, listen_fd, G_IO_IN);
  g_source_set_callback (source, func, data, NULL);
  g_source_set_name (source, "tr-net listen");
  return source;
}

void
tr_net_listen_source_pause (GSource *source, guint ms)
{
  ListenSource *listen = (ListenSource *) source;

  g_source_modify_unix_fd (source, listen->tag, 0);
  g_source_set_ready_time (source, g_get_monotonic_time () + (gint64) ms * G_TIME_SPAN_MILLISECOND);
}

char *
tr_net_peer_name (int fd)
{
  struct sockaddr_storage address;
  socklen_t address_len = sizeof address;
  char host[NI_MAXHOST], port[NI_MAXSERV];

  if (getpeername (fd, (struct sockaddr *) &address, &address_len) < 0
      || getnameinfo ((struct sockaddr *) &address, address_len, host, sizeof host, port, sizeof port,
                      NI_NUMERICHOST | NI_NUMERICSERV) != 0)
    return g_strdup_printf ("fd %d", fd);
  return g_strdup_printf ("%s:%s", host, port);
}

/* ---- connections ---- */

void
tr_net_conn_init (TrNetConn *conn, int fd)
{
  conn->fd = fd;
  conn->peer = tr_net_peer_name (fd);
  conn->in = g_byte_array_new ();
  conn->out = g_byte_array_new ();
  conn->out_sent = 0;
}

void
tr_net_conn_close (TrNetConn *conn)
{
  if (conn->fd < 0)
    return;
  close (conn->fd);
  conn->fd = -1;
}

void
tr_net_conn_clear (TrNetConn *conn)
{
  tr_net_conn_close (conn);
  g_clear_pointer (&conn->in, g_byte_array_unref);
  g_clear_pointer (&conn->out, g_byte_array_unref);
  g_clear_pointer (&conn->peer, g_free);
}

static TrNetIoStatus
io_failed (const char *what, int saved_errno, GError **error)
{
  g_set_error (error, G_IO_ERROR, g_io_error_from_errno (saved_errno), "%s: %s", what, g_strerror (saved_errno));
  return TR_NET_IO_CLOSED;
}

TrNetIoStatus
tr_net_conn_read (TrNetConn *conn, gsize max, gsize *n_read, GError **error)
{
  GByteArray *in = conn->in;
  guint old = in->len;
  ssize_t n;

  *n_read = 0;
  /* Read straight into the buffer's tail: no intermediate copy. */
  g_byte_array_set_size (in, (guint) (old + max));
  do
    n = recv (conn->fd, in->data + old, max, MSG_DONTWAIT);
  while (n < 0 && errno == EINTR);
  g_byte_array_set_size (in, (guint) (old + (n > 0 ? (gsize) n : 0)));
  if (n > 0) {
    *n_read = (gsize) n;
    return TR_NET_IO_OK;
  }
  if (n == 0) {
    g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_CONNECTION_CLOSED, "closed by the peer");
    return TR_NET_IO_CLOSED;
  }
  if (errno == EAGAIN || errno == EWOULDBLOCK)
    return TR_NET_IO_AGAIN;
  return io_failed ("recv", errno, error);
}

void
tr_net_conn_consume (TrNetConn *conn, gsize n)
{
  g_assert (n <= conn->in->len);
  if (n > 0)
    g_byte_array_remove_range (conn->in, 0, (guint) n);
}

TrNetIoStatus
tr_net_conn_flush (TrNetConn *conn, GError **error)
{
  while (conn->out_sent < conn->out->len) {
    ssize_t n = send (conn->fd, conn->out->data + conn->out_sent, conn->out->len - conn->out_sent,
                      MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
      return TR_NET_IO_AGAIN;
    if (n < 0)
      return io_failed ("send", errno, error);
    if (n == 0) {
      g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_CONNECTION_CLOSED, "send: the socket took no bytes");
      return TR_NET_IO_CLOSED;
    }
    conn->out_sent += (gsize) n;
  }
  g_byte_array_set_size (conn->out, 0);
  conn->out_sent = 0;
  return TR_NET_IO_OK;
}

/* ---- epoll ---- */

int
tr_net_epoll_new (GError **error)
{
  int fd = epoll_create1 (EPOLL_CLOEXEC);

  if (fd < 0) {
    int saved = errno;
    g_set_error (error, G_IO_ERROR, g_io_error_from_errno (saved), "cannot create an epoll set: %s",
                 g_strerror (saved));
  }
  return fd;
}

static gboolean
epoll_control (int epoll_fd, int op, const char *what, int fd, guint32 events, gpointer data, GError **error)
{
  struct epoll_event event = { .events = events, .data.ptr = data };

  if (epoll_ctl (epoll_fd, op, fd, &event) == 0)
    return TRUE;
  {
    int saved = errno;
    g_set_error (error, G_IO_ERROR, g_io_error_from_errno (saved), "epoll_ctl %s of fd %d: %s", what, fd,
                 g_strerror (saved));
  }
  return FALSE;
}

gboolean
tr_net_epoll_add (int epoll_fd, int fd, guint32 events, gpointer data, GError **error)
{
  return epoll_control (epoll_fd, EPOLL_CTL_ADD, "ADD", fd, events, data, error);
}

gboolean
tr_net_epoll_modify (int epoll_fd, int fd, guint32 events, gpointer data, GError **error)
{
  return epoll_control (epoll_fd, EPOLL_CTL_MOD, "MOD", fd, events, data, error);
}

gboolean
tr_net_epoll_remove (int epoll_fd, int fd, GError **error)
{
  return epoll_control (epoll_fd, EPOLL_CTL_DEL, "DEL", fd, 0, NULL, error);
}

/* ---- rate-limited log lines ---- */

typedef struct {
  gint64 last_us; /* monotonic time of the last admitted line; 0: none yet */
  guint suppressed;
} LimitSlot;

struct _TrNetLogLimit {
  const char *log_domain;
  gint64 interval_us;
  GHashTable *kinds; /* kind (owned) -> LimitSlot* (owned) */
  LimitSlot overflow; /* the kinds past TR_NET_LOG_LIMIT_MAX_KINDS */
};

TrNetLogLimit *
tr_net_log_limit_new (const char *log_domain, gint64 interval_us)
{
  TrNetLogLimit *limit;

  g_return_val_if_fail (log_domain != NULL && interval_us > 0, NULL);
  limit = g_new0 (TrNetLogLimit, 1);
  limit->log_domain = log_domain;
  limit->interval_us = interval_us;
  limit->kinds = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  return limit;
}

void
tr_net_log_limit_free (TrNetLogLimit *limit)
{
  if (limit == NULL)
    return;
  g_hash_table_destroy (limit->kinds);
  g_free (limit);
}

static LimitSlot *
limit_slot (TrNetLogLimit *limit, const char *kind)
{
  LimitSlot *slot = g_hash_table_lookup (limit->kinds, kind);

  if (slot != NULL)
    return slot;
  if (g_hash_table_size (limit->kinds) >= TR_NET_LOG_LIMIT_MAX_KINDS)
    return &limit->overflow;
  slot = g_new0 (LimitSlot, 1);
  g_hash_table_insert (limit->kinds, g_strdup (kind), slot);
  return slot;
}

gboolean
tr_net_log_limit_admit (TrNetLogLimit *limit, const char *kind, guint *suppressed_out)
{
  LimitSlot *slot;
  gint64 now = g_get_monotonic_time ();

  g_return_val_if_fail (limit != NULL && kind != NULL && suppressed_out != NULL, FALSE);
  slot = limit_slot (limit, kind);
  if (slot->last_us != 0 && now - slot->last_us < limit->interval_us) {
    slot->suppressed++;
    return FALSE;
  }
  slot->last_us = now;
  *suppressed_out = slot->suppressed;
  slot->suppressed = 0;
  return TRUE;
}

/* "" when nothing was suppressed: a "(0 … suppressed)" tail on every line
 * only made lines longer. */
char *
tr_net_log_limit_suffix (const TrNetLogLimit *limit, guint suppressed)
{
  if (suppressed == 0)
    return g_strdup ("");
  if (limit->interval_us == G_TIME_SPAN_SECOND)
    return g_strdup_printf (" (%u similar messages suppressed in the last second)", suppressed);
  if (limit->interval_us % G_TIME_SPAN_SECOND == 0)
    return g_strdup_printf (" (%u similar messages suppressed in the last %" G_GINT64_FORMAT " s)", suppressed,
                            limit->interval_us / G_TIME_SPAN_SECOND);
  return g_strdup_printf (" (%u similar messages suppressed in the last %" G_GINT64_FORMAT " ms)", suppressed,
                          limit->interval_us / G_TIME_SPAN_MILLISECOND);
}

void
tr_net_log_limited (TrNetLogLimit *limit, const char *kind, GLogLevelFlags level, const char *peer,
                    const char *format, ...)
{
  g_autofree char *text = NULL;
  g_autofree char *suffix = NULL;
  guint suppressed = 0;
  va_list ap;

  if (!tr_net_log_limit_admit (limit, kind, &suppressed))
    return;
  va_start (ap, format);
  text = g_strdup_vprintf (format, ap);
  va_end (ap);
  suffix = tr_net_log_limit_suffix (limit, suppressed);
  if (peer != NULL)
    g_log_structured (limit->log_domain, level, "TR_PEER", peer, "MESSAGE", "%s%s", text, suffix);
  else
    g_log_structured (limit->log_domain, level, "MESSAGE", "%s%s", text, suffix);
}
