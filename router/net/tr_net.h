/* tr_net.h - the inbound network layer shared by ingress, admin and (next)
 * the replication server: listen, accept, peer names, connection buffers
 * with a send queue, epoll registration, and the rate-limited log helper.
 *
 * Threads: nothing here is thread-safe on one object.  A TrNetConn, an
 * epoll set and a TrNetLogLimit are used only by the thread whose loop owns
 * them (ingress: the default-context loop thread; admin: the tr-admin
 * thread; push, for TrNetLogLimit: the tr-push thread).  tr_net_listen(),
 * tr_net_accept(), tr_net_peer_name() and tr_net_epoll_*() touch no shared
 * state and may run on any thread.
 *
 * Errors: G_IO_ERROR codes from errno (g_io_error_from_errno()); a peer
 * that hung up is G_IO_ERROR_CONNECTION_CLOSED, a socket with nothing to
 * accept G_IO_ERROR_WOULD_BLOCK.
 *
 * The per-message path (tr_net_conn_read(), tr_net_conn_flush()) is one
 * recv()/send() per call, into and out of the connection's own buffers:
 * no copy, no syscall is added to what a caller would do by hand.
 */
#pragma once

#include <glib.h>
#include <sys/epoll.h>

G_BEGIN_DECLS

/* ---- listening sockets ---- */

/* tr_net_listen:
 * Binds a non-blocking, close-on-exec TCP socket to @host:@port
 * (SO_REUSEADDR; port 0 picks a free port) and listens with @backlog.
 * @port_out: the port actually bound.
 * Returns: the socket, or -1 with @error (G_IO_ERROR) naming the address:
 * "cannot resolve listen address HOST:PORT: …" or
 * "cannot listen on HOST:PORT: …". */
int tr_net_listen (const char *host, guint16 port, int backlog, guint16 *port_out, GError **error);

/* tr_net_accept:
 * Accepts one connection from @listen_fd: non-blocking, close-on-exec, with
 * TCP_NODELAY (answers are small and must not wait for Nagle).
 * Returns: the socket, or -1 with @error: G_IO_ERROR_WOULD_BLOCK when no
 * connection is waiting (not a failure: stop accepting for this wake-up),
 * any other G_IO_ERROR code when accept() failed (EMFILE, ENOBUFS, …). */
int tr_net_accept (int listen_fd, GError **error);

/* How long a listener stops accepting after accept() ran out of descriptors
 * or memory (see tr_net_listen_source_new()). */
#define TR_NET_ACCEPT_PAUSE_MS 100

/* tr_net_accept_must_pause:
 * TRUE when tr_net_accept() failed for want of descriptors (EMFILE, ENFILE)
 * or kernel memory (ENOBUFS, ENOMEM).  The connection then stays queued and
 * the listening socket stays readable: retrying at once would spin, so the
 * caller pauses its listener with tr_net_listen_source_pause(). */
gboolean tr_net_accept_must_pause (const GError *error);

/* tr_net_listen_source_new:
 * A source that calls @func (@data) whenever @listen_fd is readable, like
 * g_unix_fd_source_new(), but which tr_net_listen_source_pause() can stop
 * watching its socket for a while.  Attach it to the context that accepts. */
GSource *tr_net_listen_source_new (int listen_fd, GSourceFunc func, gpointer data);

/* tr_net_listen_source_pause:
 * Called from @source's callback: stop watching the socket for @ms, then
 * call the callback again (once), whether or not a connection waits. */
void tr_net_listen_source_pause (GSource *source, guint ms);

/* tr_net_peer_name:
 * Returns: (transfer full): "HOST:PORT" of @fd's peer (numeric), or
 * "fd N" when the socket no longer has one. */
char *tr_net_peer_name (int fd);

/* ---- connections ---- */

/* One accepted connection's socket and buffers.  Embedded by its owner
 * (ingress, admin) in its own connection struct, so that a connection is
 * one allocation and frames are built straight into ->out (tr_frame_build_*
 * append to a GByteArray).  The owner reads the fields and appends to ->out;
 * everything else goes through tr_net_conn_*(). */
typedef struct {
  int fd;           /* -1 once closed */
  char *peer;       /* "HOST:PORT", for log lines */
  GByteArray *in;   /* bytes read and not yet consumed (tr_net_conn_consume()) */
  GByteArray *out;  /* bytes to send; the first ->out_sent of them are sent */
  gsize out_sent;
} TrNetConn;

typedef enum {
  TR_NET_IO_OK,     /* read: bytes appended to ->in; flush: ->out is empty */
  TR_NET_IO_AGAIN,  /* the socket would block: wait for readiness */
  TR_NET_IO_CLOSED, /* hung up or failed: @error set, close the connection */
} TrNetIoStatus;

/* Takes ownership of @fd (an accepted socket) and names its peer. */
void tr_net_conn_init (TrNetConn *conn, int fd);

/* Closes the socket (once; the buffers stay, so answers still queued can
 * be counted and the struct freed later). */
void tr_net_conn_close (TrNetConn *conn);

/* Closes the socket if still open and frees the buffers and peer name. */
void tr_net_conn_clear (TrNetConn *conn);

/* tr_net_conn_read:
 * One recv() of at most @max bytes appended to ->in (EINTR retried).
 * @n_read: bytes appended (0 unless TR_NET_IO_OK).
 * Returns: TR_NET_IO_OK, TR_NET_IO_AGAIN, or TR_NET_IO_CLOSED with @error
 * (G_IO_ERROR_CONNECTION_CLOSED: the peer closed its side). */
TrNetIoStatus tr_net_conn_read (TrNetConn *conn, gsize max, gsize *n_read, GError **error);

/* Drops the first @n bytes of ->in (the frames handled). */
void tr_net_conn_consume (TrNetConn *conn, gsize n);

/* tr_net_conn_flush:
 * Sends what ->out holds past ->out_sent, as far as the socket takes it
 * (partial writes advance ->out_sent; ->out is emptied once all is sent).
 * Returns: TR_NET_IO_OK (nothing left), TR_NET_IO_AGAIN (bytes left: wait
 * for EPOLLOUT / G_IO_OUT), or TR_NET_IO_CLOSED with @error. */
TrNetIoStatus tr_net_conn_flush (TrNetConn *conn, GError **error);

/* Bytes queued in ->out and not yet sent. */
static inline gsize
tr_net_conn_out_pending (const TrNetConn *conn)
{
  return conn->out->len - conn->out_sent;
}

/* ---- epoll ---- */

/* tr_net_epoll_new:
 * Returns: a close-on-exec epoll set, or -1 with @error. */
int tr_net_epoll_new (GError **error);

/* Registers @fd in @epoll_fd for @events (EPOLLIN, EPOLLOUT, …), with
 * @data handed back by epoll_wait().  FALSE with @error (G_IO_ERROR, naming
 * the operation) if epoll_ctl() failed: the fd is then not watched. */
gboolean tr_net_epoll_add (int epoll_fd, int fd, guint32 events, gpointer data, GError **error);

/* Changes the events of a registered @fd; FALSE with @error as above: the
 * caller cannot rely on readiness for @fd any more and should close it. */
gboolean tr_net_epoll_modify (int epoll_fd, int fd, guint32 events, gpointer data, GError **error);

/* Unregisters @fd (before it is closed); FALSE with @error as above. */
gboolean tr_net_epoll_remove (int epoll_fd, int fd, GError **error);

/* ---- rate-limited log lines ---- */

/* Counts log lines per kind of message: of each kind at most one line per
 * interval is logged; the others are folded into a count that the next
 * admitted line of that kind reports.  Two kinds never suppress each other.
 * A kind is a string from a small fixed set (a constant, or a combination
 * of constants such as a frame status and a protocol hint): never a peer
 * address or an rpc name, which would make the set unbounded.  Past
 * TR_NET_LOG_LIMIT_MAX_KINDS different kinds, the rest share one count. */
typedef struct _TrNetLogLimit TrNetLogLimit;

#define TR_NET_LOG_LIMIT_MAX_KINDS 64

/* tr_net_log_limit_new:
 * @log_domain: (transfer none): the domain of the lines tr_net_log_limited()
 * writes (the caller's G_LOG_DOMAIN, a string constant).
 * @interval_us: at most one line per kind per this many microseconds.
 * Returns: (transfer full). */
TrNetLogLimit *tr_net_log_limit_new (const char *log_domain, gint64 interval_us);

/* NULL is ignored. */
void tr_net_log_limit_free (TrNetLogLimit *limit);

/* tr_net_log_limit_admit:
 * TRUE if a line of @kind may be logged now; then @suppressed_out is the
 * number of lines of @kind refused since the last admitted one.  FALSE
 * counts one more refused line.  For callers that write the line
 * themselves with their own structured fields (push). */
gboolean tr_net_log_limit_admit (TrNetLogLimit *limit, const char *kind, guint *suppressed_out);

/* tr_net_log_limit_suffix:
 * The tail of an admitted line that follows @suppressed refused ones, as
 * tr_net_log_limited() writes it: "" when @suppressed is 0, else
 * " (N similar messages suppressed in the last second)" ("… last S s",
 * "… last M ms" for other intervals).  For callers of
 * tr_net_log_limit_admit(), so that every limited line reads alike.
 * Returns: (transfer full). */
char *tr_net_log_limit_suffix (const TrNetLogLimit *limit, guint suppressed);

/* tr_net_log_limited:
 * If a line of @kind is admitted, logs @format at @level in the limit's
 * domain, with the structured field TR_PEER = @peer when @peer is not NULL,
 * and " (N similar messages suppressed in the last second)" (or "… the
 * last S s", "… the last M ms") appended only when N > 0. */
void tr_net_log_limited (TrNetLogLimit *limit, const char *kind, GLogLevelFlags level, const char *peer,
                         const char *format, ...) G_GNUC_PRINTF (5, 6);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (TrNetLogLimit, tr_net_log_limit_free)

G_END_DECLS
