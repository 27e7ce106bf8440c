/* tr-bench.c - the router benchmark (issue 3, "Performance"): a fast sink
 * endpoint, a synchronous load generator, an fdatasync probe, and the W1 / W2
 * orchestration with the target ratios.  docs/performance.md has the figures;
 * tools/bench.sh is the one command.
 *
 *   tr-bench sink  --port P [--expect N] [--report FILE] [--no-verify]
 *   tr-bench load  --port P --conns C --count N --size S [--host H]
 *   tr-bench fsync [--dir DIR] [--samples 2000]
 *   tr-bench run   --workload W1|W2|direct|all [--sync always|interval]
 *                  [--count N] [--size S] [--router PATH] [--dir /var/tmp]
 *
 * The mode is the first argument or --mode.  All traffic is on 127.0.0.1.
 *
 * Wire handling goes through router/net/tr_frame.h (the project's one Thrift
 * codec).  The producer puts a CLOCK_MONOTONIC timestamp (u64 BE, ns) in the
 * first 8 bytes of the binary argument; the sink subtracts it from its receive
 * time of each seqid's first delivery (same host, same clock).
 *
 * Sink seqid check: per connection, each seqid must be the previous one + 1;
 * a new connection may restart at or below (highest seen + 1) (redelivery
 * after a reconnect: the repeats count as duplicates).  A jump forward is a
 * gap (error); a seqid going backwards on one connection is an error. */
#include "tr_frame.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <glib.h>
#include <glib/gstdio.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define RPC_NAME "log_event"
#define BARRIER_PREFIX "__thriftrouter"
#define SINK_READ_CHUNK (256 * 1024)
#define MAX_FRAME TR_FRAME_DEFAULT_MAX_SIZE
#define TMPFS_MAGIC_NUMBER 0x01021994
#define MAX_SEQID (1 << 28)

/* ------------------------------------------------------------------ utils */

static gint64
now_ns (void)
{
  struct timespec ts;

  clock_gettime (CLOCK_MONOTONIC, &ts);
  return (gint64) ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int
cmp_i64 (const void *a, const void *b)
{
  gint64 x = *(const gint64 *) a, y = *(const gint64 *) b;

  return (x > y) - (x < y);
}

/* percentile_us: @p in (0,1] of the sorted @v[0..@n), in µs (ns input). */
static double
percentile_us (const gint64 *v, gsize n, double p)
{
  gsize i;

  if (n == 0)
    return 0.0;
  i = (gsize) (p * (double) n + 0.999999);
  if (i == 0)
    i = 1;
  if (i > n)
    i = n;
  return (double) v[i - 1] / 1000.0;
}

static gboolean
write_all (int fd, const guint8 *p, gsize len)
{
  while (len > 0) {
    ssize_t n = send (fd, p, len, MSG_NOSIGNAL);

    if (n < 0) {
      if (errno == EINTR)
        continue;
      return FALSE;
    }
    p += n;
    len -= (gsize) n;
  }
  return TRUE;
}

static void
set_nodelay (int fd)
{
  int one = 1;

  setsockopt (fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

static int
connect_loopback (guint16 port, int timeout_s)
{
  struct sockaddr_in sa = { 0 };
  struct timeval tv = { .tv_sec = timeout_s };
  int fd = socket (AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

  if (fd < 0)
    return -1;
  sa.sin_family = AF_INET;
  sa.sin_port = htons (port);
  sa.sin_addr.s_addr = htonl (INADDR_LOOPBACK);
  if (connect (fd, (struct sockaddr *) &sa, sizeof sa) < 0) {
    close (fd);
    return -1;
  }
  set_nodelay (fd);
  setsockopt (fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt (fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  return fd;
}

/* listen_loopback: a listening socket on 127.0.0.1:@port (0 = any); stores
 * the bound port in *@port_out. */
static int
listen_loopback (guint16 port, guint16 *port_out)
{
  struct sockaddr_in sa = { 0 };
  socklen_t sl = sizeof sa;
  int one = 1;
  int fd = socket (AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);

  if (fd < 0)
    return -1;
  setsockopt (fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sa.sin_family = AF_INET;
  sa.sin_port = htons (port);
  sa.sin_addr.s_addr = htonl (INADDR_LOOPBACK);
  if (bind (fd, (struct sockaddr *) &sa, sizeof sa) < 0 || listen (fd, 1024) < 0
      || getsockname (fd, (struct sockaddr *) &sa, &sl) < 0) {
    close (fd);
    return -1;
  }
  *port_out = ntohs (sa.sin_port);
  return fd;
}

/* free_port: a port that was free a moment ago (bind 0, close).  Racy by
 * nature; fine on a benchmark machine. */
static guint16
free_port (void)
{
  guint16 port = 0;
  int fd = listen_loopback (0, &port);

  if (fd >= 0)
    close (fd);
  return port;
}

static int
rm_entry (const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
  (void) sb;
  (void) flag;
  (void) ftw;
  return remove (path);
}

static void
remove_tree (const char *path)
{
  nftw (path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* ------------------------------------------------------------------- sink */

typedef struct {
  int fd;
  guint8 *in;
  gsize in_len, in_cap;
  GByteArray *out;
  gsize out_off;
  gboolean want_out;
  gint32 last_seqid; /* 0: nothing on this connection yet */
} SinkConn;

typedef struct {
  int listen_fd;
  guint16 port;
  int epfd;
  gboolean verify;
  guint64 expect;     /* 0: until stopped */
  gboolean stop_when_done;
  gint stop;          /* atomic */
  gint done;          /* atomic: expect reached */
  gint64 unique;      /* atomic reads from other threads */
  GThread *thread;
  /* owned by the sink thread until it is joined */
  GArray *first_ns;   /* gint64 per seqid (verify), 0 = not seen */
  GArray *lat_ns;     /* gint64 per unique delivery with a timestamp */
  gint32 max_seen;
  guint64 dups, gaps, errors, calls, oneways, barriers, no_ts, conns;
  gint64 first_recv_ns, last_new_ns;
} Sink;

static volatile sig_atomic_t g_signalled;

static void
on_term (int sig)
{
  (void) sig;
  g_signalled = 1;
}

static void
sink_conn_close (Sink *s, SinkConn *c)
{
  epoll_ctl (s->epfd, EPOLL_CTL_DEL, c->fd, NULL);
  close (c->fd);
  g_free (c->in);
  g_byte_array_unref (c->out);
  g_free (c);
}

static void
sink_record (Sink *s, SinkConn *c, const guint8 *msg, gsize len, const TrMsgHeader *h, gint64 t)
{
  gboolean is_new = TRUE;
  gint32 seq = h->seqid;

  s->calls++;
  if (s->verify) {
    if (seq <= 0 || seq > MAX_SEQID) {
      s->errors++;
      return;
    }
    if (c->last_seqid == 0) {
      if (seq > s->max_seen + 1)
        s->gaps += (guint64) (seq - s->max_seen - 1);
    } else if (seq > c->last_seqid + 1) {
      s->gaps += (guint64) (seq - c->last_seqid - 1);
    } else if (seq <= c->last_seqid) {
      s->errors++; /* backwards on one connection */
    }
    c->last_seqid = seq;
    if ((guint) seq >= s->first_ns->len)
      g_array_set_size (s->first_ns, MAX ((guint) seq + 1, s->first_ns->len * 2));
    if (g_array_index (s->first_ns, gint64, seq) != 0) {
      is_new = FALSE;
      s->dups++;
    } else {
      g_array_index (s->first_ns, gint64, seq) = t;
      if (seq > s->max_seen)
        s->max_seen = seq;
    }
  }
  if (!is_new)
    return;
  if (s->first_recv_ns == 0)
    s->first_recv_ns = t;
  s->last_new_ns = t;
  /* args struct {1: binary}: 0b 0001 len(4) data; timestamp = data[0..8) */
  {
    gsize bo = h->body_offset;

    if (len >= bo + 15 && msg[bo] == TR_TTYPE_STRING && tr_get_be16 (msg + bo + 1) == 1
        && tr_get_be32 (msg + bo + 3) >= 8) {
      gint64 ts = (gint64) tr_get_be64 (msg + bo + 7);
      gint64 lat = t - ts;

      g_array_append_val (s->lat_ns, lat);
    } else {
      s->no_ts++;
    }
  }
  __atomic_store_n (&s->unique, s->unique + 1, __ATOMIC_RELEASE); /* single writer */
  if (s->expect > 0 && (guint64) s->unique >= s->expect)
    g_atomic_int_set (&s->done, 1);
}

/* sink_process: handles every whole frame in c->in; FALSE = close it. */
static gboolean
sink_process (Sink *s, SinkConn *c, gint64 t)
{
  gsize off = 0;
  guint32 flen = 0;
  TrFrameStatus st;

  while ((st = tr_frame_next (c->in + off, c->in_len - off, MAX_FRAME, &flen)) == TR_FRAME_OK) {
    const guint8 *msg = c->in + off + TR_FRAME_LEN_SIZE;
    TrMsgHeader h;

    if (tr_frame_parse_header (msg, flen, &h) != TR_FRAME_OK
        || (h.type != TR_MSG_CALL && h.type != TR_MSG_ONEWAY)) {
      s->errors++;
      return FALSE;
    }
    if (h.name_len >= strlen (BARRIER_PREFIX) && memcmp (h.name, BARRIER_PREFIX, strlen (BARRIER_PREFIX)) == 0) {
      s->barriers++;
      /* a barrier may or may not take a seqid of the sequence */
      if (h.seqid == c->last_seqid + 1)
        c->last_seqid = h.seqid;
      if (h.type == TR_MSG_CALL)
        tr_frame_build_exception (c->out, (const char *) h.name, h.name_len, h.seqid,
                                  TR_APP_EXC_UNKNOWN_METHOD, "unknown method");
    } else {
      sink_record (s, c, msg, flen, &h, t);
      if (h.type == TR_MSG_CALL)
        tr_frame_build_void_reply (c->out, (const char *) h.name, h.name_len, h.seqid);
      else
        s->oneways++;
    }
    off += TR_FRAME_LEN_SIZE + flen;
  }
  if (st != TR_FRAME_NEED_MORE) {
    s->errors++;
    return FALSE;
  }
  if (off > 0) {
    memmove (c->in, c->in + off, c->in_len - off);
    c->in_len -= off;
  }
  if (c->in_len >= TR_FRAME_LEN_SIZE && TR_FRAME_LEN_SIZE + (gsize) flen > c->in_cap) {
    c->in_cap = TR_FRAME_LEN_SIZE + (gsize) flen;
    c->in = g_realloc (c->in, c->in_cap);
  }
  return TRUE;
}

static gboolean
sink_flush (Sink *s, SinkConn *c)
{
  while (c->out_off < c->out->len) {
    ssize_t n = send (c->fd, c->out->data + c->out_off, c->out->len - c->out_off, MSG_NOSIGNAL);

    if (n < 0) {
      if (errno == EINTR)
        continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK)
        break;
      return FALSE;
    }
    c->out_off += (gsize) n;
  }
  if (c->out_off == c->out->len) {
    g_byte_array_set_size (c->out, 0);
    c->out_off = 0;
  }
  gboolean want = c->out->len > 0;
  if (want != c->want_out) {
    struct epoll_event ev = { .events = EPOLLIN | (want ? EPOLLOUT : 0), .data.ptr = c };

    epoll_ctl (s->epfd, EPOLL_CTL_MOD, c->fd, &ev);
    c->want_out = want;
  }
  return TRUE;
}

static gpointer
sink_thread (gpointer data)
{
  Sink *s = data;
  struct epoll_event evs[64];
  GPtrArray *conns = g_ptr_array_new ();

  while (!g_atomic_int_get (&s->stop) && !g_signalled) {
    int n = epoll_wait (s->epfd, evs, G_N_ELEMENTS (evs), 100);

    if (n < 0 && errno != EINTR)
      break;
    for (int i = 0; i < n; i++) {
      SinkConn *c = evs[i].data.ptr;

      if (c == NULL) { /* the listener */
        int fd;

        while ((fd = accept4 (s->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
          struct epoll_event ev = { .events = EPOLLIN };

          c = g_new0 (SinkConn, 1);
          c->fd = fd;
          c->in_cap = SINK_READ_CHUNK;
          c->in = g_malloc (c->in_cap);
          c->out = g_byte_array_sized_new (4096);
          ev.data.ptr = c;
          set_nodelay (fd);
          epoll_ctl (s->epfd, EPOLL_CTL_ADD, fd, &ev);
          g_ptr_array_add (conns, c);
          s->conns++;
        }
        continue;
      }
      gboolean ok = TRUE;
      if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
        ssize_t r = recv (c->fd, c->in + c->in_len, c->in_cap - c->in_len, 0);

        if (r == 0)
          ok = FALSE;
        else if (r < 0)
          ok = (errno == EAGAIN || errno == EINTR);
        else {
          c->in_len += (gsize) r;
          ok = sink_process (s, c, now_ns ());
        }
      }
      if (ok)
        ok = sink_flush (s, c);
      if (!ok) {
        g_ptr_array_remove_fast (conns, c);
        sink_conn_close (s, c);
      }
    }
    if (s->stop_when_done && g_atomic_int_get (&s->done))
      break;
  }
  for (guint i = 0; i < conns->len; i++)
    sink_conn_close (s, g_ptr_array_index (conns, i));
  g_ptr_array_free (conns, TRUE);
  return NULL;
}

static Sink *
sink_new (guint16 port, guint64 expect, gboolean verify)
{
  Sink *s = g_new0 (Sink, 1);
  struct epoll_event ev = { .events = EPOLLIN, .data.ptr = NULL };

  s->listen_fd = listen_loopback (port, &s->port);
  if (s->listen_fd < 0) {
    g_printerr ("tr-bench: sink: cannot listen on 127.0.0.1:%u: %s\n", port, g_strerror (errno));
    exit (1);
  }
  s->epfd = epoll_create1 (EPOLL_CLOEXEC);
  epoll_ctl (s->epfd, EPOLL_CTL_ADD, s->listen_fd, &ev);
  s->expect = expect;
  s->verify = verify;
  s->first_ns = g_array_sized_new (FALSE, TRUE, sizeof (gint64), 1024);
  g_array_set_size (s->first_ns, 1024);
  s->lat_ns = g_array_sized_new (FALSE, FALSE, sizeof (gint64), expect > 0 ? (guint) expect : 1024);
  return s;
}

static void
sink_start (Sink *s)
{
  s->thread = g_thread_new ("sink", sink_thread, s);
}

static void
sink_stop (Sink *s)
{
  g_atomic_int_set (&s->stop, 1);
  if (s->thread != NULL)
    g_thread_join (s->thread);
  s->thread = NULL;
}

static void
sink_free (Sink *s)
{
  close (s->listen_fd);
  close (s->epfd);
  g_array_unref (s->first_ns);
  g_array_unref (s->lat_ns);
  g_free (s);
}

static gint64
sink_unique (Sink *s)
{
  return __atomic_load_n (&s->unique, __ATOMIC_ACQUIRE);
}

static char *
sink_summary_json (Sink *s)
{
  gint64 *v = (gint64 *) s->lat_ns->data;
  gsize n = s->lat_ns->len;
  double secs = (double) (s->last_new_ns - s->first_recv_ns) / 1e9;

  qsort (v, n, sizeof *v, cmp_i64);
  return g_strdup_printf ("{\"port\":%u,\"unique\":%" G_GINT64_FORMAT ",\"calls\":%" G_GUINT64_FORMAT
                          ",\"duplicates\":%" G_GUINT64_FORMAT ",\"gaps\":%" G_GUINT64_FORMAT
                          ",\"errors\":%" G_GUINT64_FORMAT ",\"oneways\":%" G_GUINT64_FORMAT
                          ",\"barriers\":%" G_GUINT64_FORMAT ",\"connections\":%" G_GUINT64_FORMAT
                          ",\"no_timestamp\":%" G_GUINT64_FORMAT ",\"receive_seconds\":%.6f"
                          ",\"rpc_per_s\":%.0f,\"delivery_p50_us\":%.1f,\"delivery_p99_us\":%.1f}",
                          s->port, s->unique, s->calls, s->dups, s->gaps, s->errors, s->oneways, s->barriers,
                          s->conns, s->no_ts, secs, secs > 0 ? (double) s->unique / secs : 0.0,
                          percentile_us (v, n, 0.50), percentile_us (v, n, 0.99));
}

/* ------------------------------------------------------------------- load */

typedef struct {
  guint16 port;
  guint64 count;
  gsize size;
  gint64 *lat; /* ack latency per RPC, ns */
  guint64 done, errors;
  gint64 end_ns;
  gboolean connected;
  /* start gate */
  GMutex *mu;
  GCond *cond;
  gint *ready;
  gboolean *go;
} LoadThread;

typedef struct {
  guint64 ok, errors;
  gint64 start_ns, end_ns;
  double rps, ack_p50_us, ack_p99_us;
} LoadResult;

static gpointer
load_thread (gpointer data)
{
  LoadThread *t = data;
  g_autoptr (GByteArray) frame = g_byte_array_new ();
  g_autofree guint8 *body = g_malloc0 (t->size + 8);
  guint8 inbuf[4096];
  gsize in_len = 0;
  TrMsgHeader h;
  gsize seq_off, ts_off;
  int fd = connect_loopback (t->port, 30);

  /* args struct {1: binary data[size]} */
  body[0] = TR_TTYPE_STRING;
  tr_put_be16 (body + 1, 1);
  tr_put_be32 (body + 3, (guint32) t->size);
  memset (body + 7, 'x', t->size);
  body[7 + t->size] = TR_TTYPE_STOP;
  tr_frame_build_call (frame, TR_MSG_CALL, RPC_NAME, strlen (RPC_NAME), 1, body, t->size + 8);
  if (tr_frame_parse_header (frame->data + 4, frame->len - 4, &h) != TR_FRAME_OK)
    g_error ("tr-bench: cannot parse my own call");
  seq_off = 4 + h.seqid_offset;
  ts_off = 4 + h.body_offset + 7;

  g_mutex_lock (t->mu);
  t->connected = fd >= 0;
  (*t->ready)++;
  g_cond_broadcast (t->cond);
  while (!*t->go)
    g_cond_wait (t->cond, t->mu);
  g_mutex_unlock (t->mu);
  if (fd < 0) {
    t->errors = t->count;
    t->end_ns = now_ns ();
    return NULL;
  }

  for (guint64 i = 0; i < t->count; i++) {
    gint32 seq = (gint32) (i + 1);
    gint64 t0 = now_ns ();
    guint32 flen = 0;
    TrFrameStatus st;
    TrReply r;

    tr_put_be32 (frame->data + seq_off, (guint32) seq);
    if (t->size >= 8)
      tr_put_be64 (frame->data + ts_off, (guint64) t0);
    if (!write_all (fd, frame->data, frame->len))
      break;
    while ((st = tr_frame_next (inbuf, in_len, sizeof inbuf, &flen)) == TR_FRAME_NEED_MORE) {
      ssize_t n = recv (fd, inbuf + in_len, sizeof inbuf - in_len, 0);

      if (n < 0 && errno == EINTR)
        continue;
      if (n <= 0) {
        st = TR_FRAME_TRUNCATED;
        break;
      }
      in_len += (gsize) n;
    }
    if (st != TR_FRAME_OK)
      break;
    t->lat[t->done] = now_ns () - t0;
    if (tr_frame_parse_reply (inbuf + 4, flen, &r) != TR_FRAME_OK || r.header.type != TR_MSG_REPLY
        || r.result_field_id != -1 || r.header.seqid != seq)
      t->errors++;
    else
      t->done++;
    memmove (inbuf, inbuf + 4 + flen, in_len - 4 - flen);
    in_len -= 4 + flen;
  }
  t->end_ns = now_ns ();
  if (t->done + t->errors < t->count)
    t->errors = t->count - t->done;
  close (fd);
  return NULL;
}

static LoadResult
load_run (guint16 port, guint conns, guint64 count, gsize size)
{
  LoadThread *ts = g_new0 (LoadThread, conns);
  GThread **th = g_new0 (GThread *, conns);
  GMutex mu;
  GCond cond;
  gint ready = 0;
  gboolean go = FALSE;
  LoadResult res = { 0 };
  gint64 *all;
  gsize n = 0;

  g_mutex_init (&mu);
  g_cond_init (&cond);
  for (guint i = 0; i < conns; i++) {
    ts[i].port = port;
    ts[i].count = count / conns + (i < count % conns ? 1 : 0);
    ts[i].size = size;
    ts[i].lat = g_new (gint64, ts[i].count + 1);
    ts[i].mu = &mu;
    ts[i].cond = &cond;
    ts[i].ready = &ready;
    ts[i].go = &go;
    th[i] = g_thread_new ("load", load_thread, &ts[i]);
  }
  g_mutex_lock (&mu);
  while (ready < (gint) conns)
    g_cond_wait (&cond, &mu);
  res.start_ns = now_ns ();
  go = TRUE;
  g_cond_broadcast (&cond);
  g_mutex_unlock (&mu);

  all = g_new (gint64, count + 1);
  for (guint i = 0; i < conns; i++) {
    g_thread_join (th[i]);
    memcpy (all + n, ts[i].lat, ts[i].done * sizeof (gint64));
    n += ts[i].done;
    res.ok += ts[i].done;
    res.errors += ts[i].errors;
    res.end_ns = MAX (res.end_ns, ts[i].end_ns);
    g_free (ts[i].lat);
  }
  qsort (all, n, sizeof *all, cmp_i64);
  res.ack_p50_us = percentile_us (all, n, 0.50);
  res.ack_p99_us = percentile_us (all, n, 0.99);
  res.rps = res.end_ns > res.start_ns ? (double) res.ok * 1e9 / (double) (res.end_ns - res.start_ns) : 0;
  g_free (all);
  g_free (ts);
  g_free (th);
  g_mutex_clear (&mu);
  g_cond_clear (&cond);
  return res;
}

/* ------------------------------------------------------------------ fsync */

/* CPU seconds (user + system) used so far by this process
 * (RUSAGE_SELF: the load generator and the sinks run here, so a run's share
 * tells how much of the machine the benchmark itself takes) or by the
 * calling thread (RUSAGE_THREAD). */
static double
cpu_s (int who)
{
  struct rusage ru;

  getrusage (who, &ru);
  return (double) ru.ru_utime.tv_sec + (double) ru.ru_utime.tv_usec / 1e6 + (double) ru.ru_stime.tv_sec
         + (double) ru.ru_stime.tv_usec / 1e6;
}

typedef struct {
  double p50_us, p99_us;
  double cpu_us; /* CPU time of the probing thread per append + fdatasync */
} FsyncResult;

static gboolean
fsync_run (const char *dir, guint samples, FsyncResult *out)
{
  g_autofree char *path = g_strdup_printf ("%s/tr-bench-fsync.%d", dir, (int) getpid ());
  guint8 block[4096];
  gint64 *v = g_new (gint64, samples);
  double cpu;
  int fd = open (path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0600);

  if (fd < 0) {
    g_printerr ("tr-bench: fsync: %s: %s\n", path, g_strerror (errno));
    g_free (v);
    return FALSE;
  }
  memset (block, 0xA5, sizeof block);
  cpu = cpu_s (RUSAGE_THREAD);
  for (guint i = 0; i < samples; i++) {
    gint64 t0 = now_ns ();

    if (write (fd, block, sizeof block) != (ssize_t) sizeof block || fdatasync (fd) != 0) {
      g_printerr ("tr-bench: fsync: %s: %s\n", path, g_strerror (errno));
      close (fd);
      unlink (path);
      g_free (v);
      return FALSE;
    }
    v[i] = now_ns () - t0;
  }
  out->cpu_us = (cpu_s (RUSAGE_THREAD) - cpu) * 1e6 / samples;
  close (fd);
  unlink (path);
  qsort (v, samples, sizeof *v, cmp_i64);
  out->p50_us = percentile_us (v, samples, 0.50);
  out->p99_us = percentile_us (v, samples, 0.99);
  g_free (v);
  return TRUE;
}

/* -------------------------------------------------------------------- run */


typedef struct {
  char *name;
  guint conns;
  const char *sync;
  gboolean router; /* FALSE: direct */
  gboolean ok;
  double producer_rps, e2e_rps, ack_p50, ack_p99, del_p50, del_p99;
  double rss_mib, cpu_s, cpu_us_per_rpc;
  double bench_cpu_us_per_rpc; /* this process: load generator + sinks */
  guint64 dups, gaps, errors, load_errors, delivered;
} Row;

static struct {
  char *mode;
  gint port;
  gint64 expect;
  char *report;
  gboolean no_verify;
  char *host;
  gint conns;
  gint64 count;
  gint size;
  char *dir;
  gint samples;
  char *workload;
  char *sync;
  char *router;
  gint interval_ms;
  char *cache_size;
  gboolean keep;
  gboolean allow_tmpfs;
  char *perf;
} opt = {
  .port = 0, .expect = 0, .conns = 4, .count = 100000, .size = 1024, .samples = 2000,
  .interval_ms = 10,
};

static gboolean
read_proc (pid_t pid, double *rss_mib, double *cpu_s)
{
  g_autofree char *status_path = g_strdup_printf ("/proc/%d/status", (int) pid);
  g_autofree char *stat_path = g_strdup_printf ("/proc/%d/stat", (int) pid);
  g_autofree char *status = NULL, *stat = NULL;
  const char *p;
  unsigned long long ut = 0, st = 0;

  if (!g_file_get_contents (status_path, &status, NULL, NULL)
      || !g_file_get_contents (stat_path, &stat, NULL, NULL))
    return FALSE;
  p = strstr (status, "VmHWM:");
  *rss_mib = p ? g_ascii_strtod (p + 6, NULL) / 1024.0 : 0;
  p = strrchr (stat, ')');
  if (p == NULL)
    return FALSE;
  /* fields after ") ": 3=state ... 14=utime 15=stime */
  if (sscanf (p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
    return FALSE;
  *cpu_s = (double) (ut + st) / (double) sysconf (_SC_CLK_TCK);
  return TRUE;
}

static char *
default_router_path (void)
{
  g_autofree char *self = g_file_read_link ("/proc/self/exe", NULL);
  g_autofree char *dir = self ? g_path_get_dirname (self) : g_strdup (".");

  return g_build_filename (dir, "..", "router", "thriftrouter", NULL);
}

static gboolean
write_config (const char *tmp, guint16 listen_port, const char *sync, Sink **sinks, guint nsinks)
{
  g_autofree char *svcdir = g_build_filename (tmp, "services", NULL);
  g_autofree char *conf = g_build_filename (tmp, "router.conf", NULL);
  GString *s = g_string_new (NULL);
  gboolean ok;

  g_mkdir_with_parents (svcdir, 0700);
  g_string_append_printf (s,
                          "[router]\nserver_id = bench\nserver_type = MASTER\nlisten = 127.0.0.1:%u\n"
                          "admin_listen = 127.0.0.1:0\ndata_dir = %s/data\nsync_mode = %s\n"
                          "sync_interval_ms = %d\nrpc_cache_size = %s\nservices = ",
                          listen_port, tmp, sync, opt.interval_ms, opt.cache_size);
  for (guint i = 0; i < nsinks; i++)
    g_string_append_printf (s, "%ss%u", i ? ", " : "", i + 1);
  g_string_append (s, "\n");
  ok = g_file_set_contents (conf, s->str, -1, NULL);
  for (guint i = 0; ok && i < nsinks; i++) {
    g_autofree char *path = g_strdup_printf ("%s/s%u.conf", svcdir, i + 1);

    g_string_printf (s,
                     "[service]\nservice_type = COMMON\nrpcs = " RPC_NAME "\nmax_inflight = 64\n\n"
                     "[endpoint a]\nhost = 127.0.0.1\nport = %u\n",
                     sinks[i]->port);
    ok = g_file_set_contents (path, s->str, -1, NULL);
  }
  g_string_free (s, TRUE);
  return ok;
}

static void
print_log_tail (const char *log)
{
  g_autofree char *text = NULL;
  gsize len = 0;

  if (g_file_get_contents (log, &text, &len, NULL))
    g_printerr ("--- router log (%s), last part ---\n%s\n---\n", log, len > 3000 ? text + len - 3000 : text);
}

/* Prints the router's group commit summary ("store closed: N rpcs
 * committed in M group commits") so each run shows how well commits were
 * grouped. */
static void
print_commit_summary (const char *name, const char *sync, const char *log)
{
  g_autofree char *text = NULL;
  const char *line;

  if (!g_file_get_contents (log, &text, NULL, NULL) || (line = strstr (text, "store closed: ")) == NULL)
    return;
  printf ("# %s %s: %.*s\n", name, sync, (int) strcspn (line, "\n"), line);
}

/* wait_child: waits up to @ms for @pid; TRUE if it exited (status stored). */
static gboolean
wait_child (pid_t pid, int ms, int *status)
{
  for (int waited = 0; waited <= ms; waited += 10) {
    if (waitpid (pid, status, WNOHANG) == pid)
      return TRUE;
    g_usleep (10000);
  }
  return FALSE;
}

static char *
make_tmp (void)
{
  g_autofree char *tmpl = g_build_filename (opt.dir, "tr-bench-XXXXXX", NULL);
  struct statfs sf;

  if (g_mkdtemp (tmpl) == NULL) {
    g_printerr ("tr-bench: cannot create %s: %s\n", tmpl, g_strerror (errno));
    return NULL;
  }
  if (statfs (tmpl, &sf) == 0 && sf.f_type == TMPFS_MAGIC_NUMBER && !opt.allow_tmpfs) {
    g_printerr ("tr-bench: %s is on tmpfs: fsync figures would be meaningless (--allow-tmpfs)\n", opt.dir);
    g_rmdir (tmpl);
    return NULL;
  }
  return g_steal_pointer (&tmpl);
}

/* run_router: one router workload with 3 sinks. */
static Row
run_router (const char *name, guint conns, const char *sync)
{
  Row row = { .name = g_strdup (name), .conns = conns, .sync = sync, .router = TRUE };
  g_autofree char *tmp = make_tmp ();
  g_autofree char *conf = NULL, *log = NULL, *router = NULL;
  Sink *sinks[3];
  guint16 port;
  pid_t pid, perf_pid = 0;
  int logfd, status = 0;
  gint64 deadline, last = 0;
  LoadResult lr = { 0 };
  GArray *lat;
  gboolean all_done = FALSE, exited = FALSE;
  double bench_cpu = 0;

  if (tmp == NULL)
    return row;
  conf = g_build_filename (tmp, "router.conf", NULL);
  log = g_build_filename (tmp, "router.log", NULL);
  router = opt.router ? g_strdup (opt.router) : default_router_path ();
  for (guint i = 0; i < 3; i++) {
    sinks[i] = sink_new (0, (guint64) opt.count, TRUE);
    sink_start (sinks[i]);
  }
  port = free_port ();
  if (!write_config (tmp, port, sync, sinks, 3)) {
    g_printerr ("tr-bench: cannot write the configuration in %s\n", tmp);
    goto out_sinks;
  }
  logfd = open (log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  pid = fork ();
  if (pid == 0) {
    dup2 (logfd, 1);
    dup2 (logfd, 2);
    execl (router, router, "-c", conf, (char *) NULL);
    _exit (127);
  }
  close (logfd);
  if (pid < 0) {
    g_printerr ("tr-bench: fork: %s\n", g_strerror (errno));
    goto out_sinks;
  }
  /* wait until it accepts producers (bounded) */
  deadline = now_ns () + 20 * G_GINT64_CONSTANT (1000000000);
  for (;;) {
    int fd = connect_loopback (port, 1);

    if (fd >= 0) {
      close (fd);
      break;
    }
    if (waitpid (pid, &status, WNOHANG) == pid || now_ns () > deadline) {
      g_printerr ("tr-bench: %s: the router (%s) did not start\n", name, router);
      print_log_tail (log);
      if (!wait_child (pid, 0, &status)) {
        kill (pid, SIGKILL);
        waitpid (pid, &status, 0);
      }
      goto out_sinks;
    }
    g_usleep (20000);
  }

  if (opt.perf) {
    g_autofree char *out = g_strdup_printf ("%s.%s-%s", opt.perf, name, sync);
    g_autofree char *pidstr = g_strdup_printf ("%d", (int) pid);

    perf_pid = fork ();
    if (perf_pid == 0) {
      int devnull = open ("/dev/null", O_WRONLY);

      dup2 (devnull, 1);
      dup2 (devnull, 2);
      execlp ("perf", "perf", "record", "-e", "cpu-clock", "-F", "2000", "-g", "-p", pidstr, "-o", out,
              (char *) NULL);
      _exit (127);
    }
    g_usleep (500000); /* let perf attach */
  }
  bench_cpu = cpu_s (RUSAGE_SELF);
  lr = load_run (port, conns, (guint64) opt.count, (gsize) opt.size);
  row.producer_rps = lr.rps;
  row.ack_p50 = lr.ack_p50_us;
  row.ack_p99 = lr.ack_p99_us;
  row.load_errors = lr.errors;

  /* wait until all 3 endpoints have every acknowledged RPC */
  deadline = now_ns () + MAX (60 * G_GINT64_CONSTANT (1000000000), 3 * (lr.end_ns - lr.start_ns));
  while (now_ns () < deadline) {
    all_done = TRUE;
    for (guint i = 0; i < 3; i++)
      all_done = all_done && (guint64) sink_unique (sinks[i]) >= lr.ok;
    if (all_done)
      break;
    if (waitpid (pid, &status, WNOHANG) == pid) {
      exited = TRUE;
      break;
    }
    g_usleep (2000);
  }
  if (lr.ok > 0)
    row.bench_cpu_us_per_rpc = (cpu_s (RUSAGE_SELF) - bench_cpu) * 1e6 / (double) lr.ok;
  if (!exited)
    read_proc (pid, &row.rss_mib, &row.cpu_s);
  if (perf_pid > 0) {
    int pst;

    kill (perf_pid, SIGINT);
    if (!wait_child (perf_pid, 30000, &pst)) {
      kill (perf_pid, SIGKILL);
      waitpid (perf_pid, &pst, 0);
    }
  }
  row.cpu_us_per_rpc = lr.ok ? row.cpu_s * 1e6 / (double) lr.ok : 0;
  if (!exited) {
    kill (pid, SIGTERM);
    if (!wait_child (pid, 15000, &status)) {
      g_printerr ("tr-bench: %s: the router did not stop within 15 s of SIGTERM; killing it\n", name);
      kill (pid, SIGKILL);
      waitpid (pid, &status, 0);
    }
  } else {
    g_printerr ("tr-bench: %s: the router exited during the run\n", name);
  }
  print_commit_summary (name, sync, log);
  if (!all_done || exited || lr.errors > 0 || !WIFEXITED (status) || WEXITSTATUS (status) != 0) {
    g_printerr ("tr-bench: %s: incomplete (load errors %" G_GUINT64_FORMAT ", router exit status 0x%x)\n", name,
                lr.errors, status);
    print_log_tail (log);
  }

out_sinks:
  lat = g_array_new (FALSE, FALSE, sizeof (gint64));
  for (guint i = 0; i < 3; i++) {
    sink_stop (sinks[i]);
    g_array_append_vals (lat, sinks[i]->lat_ns->data, sinks[i]->lat_ns->len);
    row.dups += sinks[i]->dups;
    row.gaps += sinks[i]->gaps;
    row.errors += sinks[i]->errors;
    row.delivered += (guint64) sinks[i]->unique;
    last = MAX (last, sinks[i]->last_new_ns);
    sink_free (sinks[i]);
  }
  qsort (lat->data, lat->len, sizeof (gint64), cmp_i64);
  row.del_p50 = percentile_us ((gint64 *) lat->data, lat->len, 0.50);
  row.del_p99 = percentile_us ((gint64 *) lat->data, lat->len, 0.99);
  g_array_unref (lat);
  if (all_done && last > lr.start_ns)
    row.e2e_rps = (double) lr.ok * 1e9 / (double) (last - lr.start_ns);
  row.ok = all_done && !exited && lr.errors == 0 && row.gaps == 0 && row.errors == 0;
  if (!opt.keep || row.ok)
    remove_tree (tmp);
  else
    g_printerr ("tr-bench: %s: kept %s\n", name, tmp);
  return row;
}

static Row
run_direct (guint conns)
{
  Row row = { .name = g_strdup ("direct"), .conns = conns, .sync = "-", .router = FALSE };
  Sink *s = sink_new (0, (guint64) opt.count, FALSE);
  LoadResult lr = { 0 };
  double bench_cpu;

  sink_start (s);
  bench_cpu = cpu_s (RUSAGE_SELF);
  lr = load_run (s->port, conns, (guint64) opt.count, (gsize) opt.size);
  sink_stop (s);
  if (lr.ok > 0)
    row.bench_cpu_us_per_rpc = (cpu_s (RUSAGE_SELF) - bench_cpu) * 1e6 / (double) lr.ok;
  row.producer_rps = lr.rps;
  row.ack_p50 = lr.ack_p50_us;
  row.ack_p99 = lr.ack_p99_us;
  row.load_errors = lr.errors;
  row.delivered = (guint64) s->unique;
  row.errors = s->errors;
  if (s->last_new_ns > lr.start_ns)
    row.e2e_rps = (double) s->unique * 1e9 / (double) (s->last_new_ns - lr.start_ns);
  qsort (s->lat_ns->data, s->lat_ns->len, sizeof (gint64), cmp_i64);
  row.del_p50 = percentile_us ((gint64 *) s->lat_ns->data, s->lat_ns->len, 0.50);
  row.del_p99 = percentile_us ((gint64 *) s->lat_ns->data, s->lat_ns->len, 0.99);
  row.ok = lr.errors == 0 && row.errors == 0;
  sink_free (s);
  return row;
}

static void
print_header (void)
{
  printf ("| run | conns | sync | producer RPC/s | end-to-end RPC/s | ack p50 µs | ack p99 µs | delivery p50 µs "
          "| delivery p99 µs | router peak RSS MiB | router CPU s | router CPU µs/RPC | bench CPU µs/RPC "
          "| sinks: delivered/dup/gap/err |\n");
  printf ("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
  fflush (stdout);
}

static void
print_row (const Row *r)
{
  if (r->router)
    printf ("| %s | %u | %s | %.0f | %.0f | %.0f | %.0f | %.0f | %.0f | %.1f | %.2f | %.1f | %.1f | %" G_GUINT64_FORMAT
            "/%" G_GUINT64_FORMAT "/%" G_GUINT64_FORMAT "/%" G_GUINT64_FORMAT "%s |\n",
            r->name, r->conns, r->sync, r->producer_rps, r->e2e_rps, r->ack_p50, r->ack_p99, r->del_p50,
            r->del_p99, r->rss_mib, r->cpu_s, r->cpu_us_per_rpc, r->bench_cpu_us_per_rpc, r->delivered, r->dups, r->gaps,
            r->errors + r->load_errors, r->ok ? "" : " INCOMPLETE");
  else
    printf ("| %s | %u | - | %.0f | %.0f | %.0f | %.0f | %.0f | %.0f | - | - | - | %.1f | %" G_GUINT64_FORMAT
            "/-/-/%" G_GUINT64_FORMAT "%s |\n",
            r->name, r->conns, r->producer_rps, r->e2e_rps, r->ack_p50, r->ack_p99, r->del_p50, r->del_p99,
            r->bench_cpu_us_per_rpc, r->delivered, r->errors + r->load_errors, r->ok ? "" : " INCOMPLETE");
  fflush (stdout);
}

static guint misses;

static void
target (const char *what, gboolean known, gboolean pass, const char *fmt, ...) G_GNUC_PRINTF (4, 5);

static void
target (const char *what, gboolean known, gboolean pass, const char *fmt, ...)
{
  va_list ap;
  g_autofree char *detail = NULL;

  va_start (ap, fmt);
  detail = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  if (!known) {
    printf ("- n/a  %s (not measured in this run)\n", what);
    return;
  }
  if (!pass)
    misses++;
  printf ("- %s %s: %s\n", pass ? "PASS" : "MISS", what, detail);
}

static double
cache_size_mib (void)
{
  const char *s = opt.cache_size;
  char *end = NULL;
  double v = g_ascii_strtod (s, &end);

  switch (end && *end ? g_ascii_toupper (*end) : 0) {
  case 'K':
    return v / 1024.0;
  case 'M':
    return v;
  case 'G':
    return v * 1024.0;
  default:
    return v / (1024.0 * 1024.0);
  }
}

static int
mode_run (void)
{
  g_auto (GStrv) parts = g_strsplit (opt.workload ? opt.workload : "all", ",", -1);
  gboolean w1a = FALSE, w1i = FALSE, w2 = FALSE, direct = TRUE;
  Row rw1a = { 0 }, rw1i = { 0 }, rw2 = { 0 }, rd = { 0 };
  FsyncResult fs = { 0 };
  gboolean have_fs;
  const char *sync = opt.sync ? opt.sync : "always";
  g_autofree char *tmp = NULL;
  double rss_limit = 16.0 + cache_size_mib ();

  for (guint i = 0; parts[i]; i++) {
    char *w = g_strstrip (parts[i]);

    if (g_ascii_strcasecmp (w, "all") == 0)
      w1a = w1i = w2 = TRUE;
    else if (g_ascii_strcasecmp (w, "W1") == 0)
      *(strcmp (sync, "interval") == 0 ? &w1i : &w1a) = TRUE;
    else if (g_ascii_strcasecmp (w, "W1i") == 0)
      w1i = TRUE;
    else if (g_ascii_strcasecmp (w, "W2") == 0)
      w2 = TRUE;
    else if (g_ascii_strcasecmp (w, "direct") == 0)
      direct = TRUE;
    else {
      g_printerr ("tr-bench: unknown workload '%s' (W1, W1i, W2, direct, all)\n", w);
      return 2;
    }
  }
  if (strcmp (sync, "always") != 0 && strcmp (sync, "interval") != 0) {
    g_printerr ("tr-bench: --sync must be always or interval\n");
    return 2;
  }

  /* fsync probe in the data parent directory (the same file system) */
  tmp = make_tmp ();
  if (tmp == NULL)
    return 1;
  have_fs = fsync_run (tmp, (guint) opt.samples, &fs);
  remove_tree (tmp);
  printf ("fdatasync of a 4 KiB append in %s: p50 %.0f µs, p99 %.0f µs, CPU %.0f µs per append+fdatasync "
          "(%d samples)\n", opt.dir, fs.p50_us, fs.p99_us, fs.cpu_us, opt.samples);
  printf ("count %" G_GINT64_FORMAT " RPCs per run, payload %d B, rpc_cache_size %s\n\n", opt.count, opt.size,
          opt.cache_size);
  print_header ();
  if (direct) {
    rd = run_direct (4);
    print_row (&rd);
  }
  if (w1a) {
    rw1a = run_router ("W1", 4, "always");
    print_row (&rw1a);
  }
  if (w1i) {
    rw1i = run_router ("W1", 4, "interval");
    print_row (&rw1i);
  }
  if (w2) {
    rw2 = run_router ("W2", 64, strcmp (sync, "interval") == 0 && !w1a ? "interval" : "always");
    print_row (&rw2);
  }

  printf ("\nTargets:\n");
  {
    double bound = (have_fs && rd.ok) ? 0.75 * 4.0 / ((fs.p50_us + rd.ack_p50) / 1e6) : 0;

    target ("W1 durable end-to-end >= 0.75 x 4 / (fsync_p50 + direct_rtt_p50)", w1a && have_fs && rd.ok,
            rw1a.ok && rw1a.e2e_rps >= bound, "%.0f RPC/s vs %.0f (= 0.75 x 4 / (%.0f + %.0f µs))", rw1a.e2e_rps,
            bound, fs.p50_us, rd.ack_p50);
    target ("W1 durable ack p99 <= 3 x fsync_p99", w1a && have_fs, rw1a.ok && rw1a.ack_p99 <= 3 * fs.p99_us,
            "%.0f µs vs %.0f µs", rw1a.ack_p99, 3 * fs.p99_us);
    target ("W1 interval end-to-end >= 0.55 x direct", w1i && rd.ok, rw1i.ok && rw1i.e2e_rps >= 0.55 * rd.producer_rps,
            "%.0f RPC/s vs %.0f (= 0.55 x %.0f)", rw1i.e2e_rps, 0.55 * rd.producer_rps, rd.producer_rps);
    Row *rows[] = { &rw1a, &rw1i, &rw2 };
    for (guint i = 0; i < G_N_ELEMENTS (rows); i++) {
      Row *r = rows[i];

      if (r->name == NULL)
        continue;
      g_autofree char *w = g_strdup_printf ("%s %s: router CPU <= 15 µs per RPC", r->name, r->sync);
      target (w, TRUE, r->ok && r->cpu_us_per_rpc <= 15.0, "%.1f µs", r->cpu_us_per_rpc);
      g_free (w);
      w = g_strdup_printf ("%s %s: router peak RSS <= 16 MiB + rpc_cache_size", r->name, r->sync);
      target (w, TRUE, r->ok && r->rss_mib <= rss_limit, "%.1f MiB vs %.1f MiB", r->rss_mib, rss_limit);
    }
    target ("W2 durable end-to-end >= 4 x W1 durable", w2 && w1a && strcmp (rw2.sync, "always") == 0,
            rw2.ok && rw1a.ok && rw2.e2e_rps >= 4 * rw1a.e2e_rps, "%.0f RPC/s vs %.0f (= 4 x %.0f)", rw2.e2e_rps,
            4 * rw1a.e2e_rps, rw1a.e2e_rps);
  }
  printf ("\n%u target(s) missed\n", misses);
  /* The benchmark shares the machine with the router: at most
   * cores / (bench + router CPU per RPC) RPCs per second can be carried. */
  printf ("\nCPU ceiling (%ld cores; no run can go faster than cores / (bench + router CPU per RPC)):\n",
          sysconf (_SC_NPROCESSORS_ONLN));
  for (guint i = 0; i < 4; i++) {
    const Row *r = ((const Row *[]) { &rd, &rw1a, &rw1i, &rw2 })[i];
    double per_rpc = r->bench_cpu_us_per_rpc + r->cpu_us_per_rpc;

    if (r->name != NULL && per_rpc > 0)
      printf ("- %s %s: bench %.1f + router %.1f µs per RPC -> ceiling %.0f RPC/s (measured %.0f)\n", r->name,
              r->sync, r->bench_cpu_us_per_rpc, r->cpu_us_per_rpc,
              (double) sysconf (_SC_NPROCESSORS_ONLN) * 1e6 / per_rpc, r->e2e_rps);
  }
  for (guint i = 0; i < 4; i++)
    g_free (((Row *[]) { &rw1a, &rw1i, &rw2, &rd })[i]->name);
  return 0;
}

/* ------------------------------------------------------------------- main */

static int
mode_sink (void)
{
  Sink *s;
  char *json;
  struct sigaction sa = { .sa_handler = on_term };

  sigaction (SIGTERM, &sa, NULL);
  sigaction (SIGINT, &sa, NULL);
  s = sink_new ((guint16) opt.port, (guint64) MAX (opt.expect, 0), !opt.no_verify);
  s->stop_when_done = TRUE;
  g_printerr ("tr-bench: sink listening on 127.0.0.1:%u\n", s->port);
  sink_thread (s);
  json = sink_summary_json (s);
  if (opt.report) {
    g_autofree char *line = g_strconcat (json, "\n", NULL);

    if (!g_file_set_contents (opt.report, line, -1, NULL))
      g_printerr ("tr-bench: cannot write %s\n", opt.report);
  } else {
    printf ("%s\n", json);
  }
  g_free (json);
  sink_free (s);
  return 0;
}

static int
mode_load (void)
{
  LoadResult r;

  if (opt.port <= 0 || opt.conns <= 0 || opt.count <= 0 || opt.size < 8) {
    g_printerr ("tr-bench: load needs --port, --conns >= 1, --count >= 1, --size >= 8\n");
    return 2;
  }
  r = load_run ((guint16) opt.port, (guint) opt.conns, (guint64) opt.count, (gsize) opt.size);
  printf ("{\"rpcs\":%" G_GUINT64_FORMAT ",\"errors\":%" G_GUINT64_FORMAT ",\"seconds\":%.6f,\"rpc_per_s\":%.0f,"
          "\"ack_p50_us\":%.1f,\"ack_p99_us\":%.1f}\n",
          r.ok, r.errors, (double) (r.end_ns - r.start_ns) / 1e9, r.rps, r.ack_p50_us, r.ack_p99_us);
  return r.errors ? 1 : 0;
}

static int
mode_fsync (void)
{
  FsyncResult r;

  if (!fsync_run (opt.dir, (guint) opt.samples, &r))
    return 1;
  printf ("{\"dir\":\"%s\",\"samples\":%d,\"fdatasync_p50_us\":%.1f,\"fdatasync_p99_us\":%.1f,"
          "\"cpu_us_per_sync\":%.1f}\n", opt.dir, opt.samples, r.p50_us, r.p99_us, r.cpu_us);
  return 0;
}

int
main (int argc, char **argv)
{
  g_autoptr (GOptionContext) ctx = g_option_context_new ("sink|load|fsync|run - thriftrouter benchmark");
  g_autoptr (GError) error = NULL;
  GOptionEntry entries[] = {
    { "mode", 0, 0, G_OPTION_ARG_STRING, &opt.mode, "sink, load, fsync or run (or the first argument)", "MODE" },
    { "port", 'p', 0, G_OPTION_ARG_INT, &opt.port, "sink: port to listen on (0 = any); load: port to call", "P" },
    { "expect", 0, 0, G_OPTION_ARG_INT64, &opt.expect, "sink: stop after N unique seqids", "N" },
    { "report", 0, 0, G_OPTION_ARG_FILENAME, &opt.report, "sink: write the JSON summary here", "FILE" },
    { "no-verify", 0, 0, G_OPTION_ARG_NONE, &opt.no_verify, "sink: count calls, do not check seqids", NULL },
    { "conns", 'c', 0, G_OPTION_ARG_INT, &opt.conns, "load: producer connections (default 4)", "C" },
    { "count", 'n', 0, G_OPTION_ARG_INT64, &opt.count, "load/run: RPCs in total (default 100000)", "N" },
    { "size", 's', 0, G_OPTION_ARG_INT, &opt.size, "load/run: binary argument bytes (default 1024)", "S" },
    { "dir", 'd', 0, G_OPTION_ARG_FILENAME, &opt.dir, "fsync/run: directory on the disk (default /var/tmp)", "DIR" },
    { "samples", 0, 0, G_OPTION_ARG_INT, &opt.samples, "fsync: samples (default 2000)", "N" },
    { "workload", 'w', 0, G_OPTION_ARG_STRING, &opt.workload, "run: W1, W1i (interval), W2, direct, all or a list",
      "W" },
    { "sync", 0, 0, G_OPTION_ARG_STRING, &opt.sync, "run: sync_mode for W1/W2 (always|interval)", "MODE" },
    { "interval-ms", 0, 0, G_OPTION_ARG_INT, &opt.interval_ms, "run: sync_interval_ms (default 10)", "MS" },
    { "cache-size", 0, 0, G_OPTION_ARG_STRING, &opt.cache_size, "run: rpc_cache_size (default 64M)", "SIZE" },
    { "router", 0, 0, G_OPTION_ARG_FILENAME, &opt.router, "run: thriftrouter binary", "PATH" },
    { "keep", 0, 0, G_OPTION_ARG_NONE, &opt.keep, "run: keep the temporary directory of a failed run", NULL },
    { "perf", 0, 0, G_OPTION_ARG_FILENAME, &opt.perf,
      "run: perf record -g the router during each router workload into FILE.<run>-<sync>", "FILE" },
    { "allow-tmpfs", 0, 0, G_OPTION_ARG_NONE, &opt.allow_tmpfs, "run/fsync: allow a tmpfs directory", NULL },
    { NULL },
  };
  const char *mode;

  g_option_context_add_main_entries (ctx, entries, NULL);
  if (!g_option_context_parse (ctx, &argc, &argv, &error)) {
    g_printerr ("tr-bench: %s\n", error->message);
    return 2;
  }
  if (opt.dir == NULL)
    opt.dir = g_strdup ("/var/tmp");
  if (opt.cache_size == NULL)
    opt.cache_size = g_strdup ("64M");
  mode = opt.mode ? opt.mode : (argc > 1 ? argv[1] : NULL);
  signal (SIGPIPE, SIG_IGN);
  if (g_strcmp0 (mode, "sink") == 0)
    return mode_sink ();
  if (g_strcmp0 (mode, "load") == 0)
    return mode_load ();
  if (g_strcmp0 (mode, "fsync") == 0)
    return mode_fsync ();
  if (g_strcmp0 (mode, "run") == 0)
    return mode_run ();
  g_printerr ("tr-bench: need a mode: sink, load, fsync or run (see --help)\n");
  return 2;
}
