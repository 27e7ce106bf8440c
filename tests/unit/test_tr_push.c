/* test_tr_push.c - the push module (router/push/tr_push.h) against a fake Thrift
 * endpoint on loopback: order, byte-identical bodies, oneways and barriers,
 * reconnects, wrong seqids, skip / block policies, stop_send, send state. */
#include <criterion/criterion.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tr_config.h"
#include "tr_fault_io.h"
#include "tr_frame.h"
#include "tr_push.h"
#include "tr_rpcstore.h"
#include "tr_test_util.h"

#define BARRIER TR_CONFIG_DEFAULT_BARRIER_METHOD

/* ---- fake endpoint ---- */

typedef struct {
  char *name;
  TrMsgType type;
  gint32 seqid;
  GBytes *body;
} Received;

typedef struct {
  int listen_fd;
  guint16 port;
  GThread *thread;
  gint stop;
  GMutex lock;
  GPtrArray *received; /* (element-type Received) protected by ->lock */
  guint connections;   /* protected by ->lock */
  /* behaviour, set before start */
  gint32 exception_seqid;  /* CALL with this seqid: EXCEPTION (0 = never) */
  guint wrong_seqid_call;  /* answer the Nth CALL (1-based) with a wrong seqid, once */
  guint calls;
} Fake;

static void
received_free (gpointer data)
{
  Received *r = data;
  g_free (r->name);
  g_bytes_unref (r->body);
  g_free (r);
}

static void
send_all (int fd, const guint8 *data, gsize len)
{
  while (len > 0) {
    ssize_t n = send (fd, data, len, MSG_NOSIGNAL);
    if (n <= 0)
      return;
    data += n;
    len -= (gsize) n;
  }
}

/* Records one message and appends the answer to @out. */
static void
fake_handle (Fake *fake, const guint8 *msg, gsize len, GByteArray *out)
{
  TrMsgHeader header;
  Received *r = g_new0 (Received, 1);

  cr_assert_eq (tr_frame_parse_header (msg, len, &header), TR_FRAME_OK);
  cr_assert (header.strict);
  r->name = g_strndup ((const char *) header.name, header.name_len);
  r->type = header.type;
  r->seqid = header.seqid;
  r->body = g_bytes_new (msg + header.body_offset, len - header.body_offset);
  g_mutex_lock (&fake->lock);
  g_ptr_array_add (fake->received, r);
  g_mutex_unlock (&fake->lock);
  if (header.type != TR_MSG_CALL)
    return;
  if (strcmp (r->name, BARRIER) == 0) {
    tr_frame_build_exception (out, r->name, strlen (r->name), r->seqid, TR_APP_EXC_UNKNOWN_METHOD, "unknown");
    return;
  }
  fake->calls++;
  if (fake->exception_seqid != 0 && r->seqid == fake->exception_seqid)
    tr_frame_build_exception (out, r->name, strlen (r->name), r->seqid, TR_APP_EXC_INTERNAL_ERROR, "refused");
  else if (fake->wrong_seqid_call != 0 && fake->calls == fake->wrong_seqid_call)
    tr_frame_build_void_reply (out, r->name, strlen (r->name), r->seqid + 100);
  else
    tr_frame_build_void_reply (out, r->name, strlen (r->name), r->seqid);
}

static void
fake_serve (Fake *fake, int fd)
{
  g_autoptr (GByteArray) in = g_byte_array_new ();

  while (!g_atomic_int_get (&fake->stop)) {
    struct pollfd p = { fd, POLLIN, 0 };
    guint8 buf[65536];
    gsize pos = 0;
    guint32 frame_len;
    g_autoptr (GByteArray) out = g_byte_array_new ();
    ssize_t n;

    if (poll (&p, 1, 50) <= 0)
      continue;
    n = recv (fd, buf, sizeof buf, 0);
    if (n <= 0)
      return;
    g_byte_array_append (in, buf, (guint) n);
    while (tr_frame_next (in->data + pos, in->len - pos, TR_FRAME_DEFAULT_MAX_SIZE, &frame_len) == TR_FRAME_OK) {
      fake_handle (fake, in->data + pos + TR_FRAME_LEN_SIZE, frame_len, out);
      pos += TR_FRAME_LEN_SIZE + frame_len;
    }
    g_byte_array_remove_range (in, 0, (guint) pos);
    send_all (fd, out->data, out->len);
  }
}

static gpointer
fake_thread (gpointer data)
{
  Fake *fake = data;

  while (!g_atomic_int_get (&fake->stop)) {
    struct pollfd p = { fake->listen_fd, POLLIN, 0 };
    int fd;
    if (poll (&p, 1, 50) <= 0)
      continue;
    fd = accept (fake->listen_fd, NULL, NULL);
    if (fd < 0)
      continue;
    g_mutex_lock (&fake->lock);
    fake->connections++;
    g_mutex_unlock (&fake->lock);
    fake_serve (fake, fd);
    close (fd);
  }
  return NULL;
}

static void
fake_init (Fake *fake)
{
  memset (fake, 0, sizeof *fake);
  g_mutex_init (&fake->lock);
  fake->received = g_ptr_array_new_with_free_func (received_free);
  fake->listen_fd = tr_test_bind_loopback (0, TRUE, &fake->port);
}

static void
fake_run (Fake *fake)
{
  fake->thread = g_thread_new ("fake-endpoint", fake_thread, fake);
}

static void
fake_stop (Fake *fake)
{
  g_atomic_int_set (&fake->stop, 1);
  if (fake->thread != NULL)
    g_thread_join (fake->thread);
  close (fake->listen_fd);
  g_ptr_array_unref (fake->received);
  g_mutex_clear (&fake->lock);
}

/* Copies of the recorded messages other than barriers, in arrival order. */
static guint
fake_count (Fake *fake)
{
  guint n;
  g_mutex_lock (&fake->lock);
  n = fake->received->len;
  g_mutex_unlock (&fake->lock);
  return n;
}

/* ---- store, config, push ---- */

typedef struct {
  char *root;
  TrConfig *config;
  TrRpcStore *store;
  TrPush *push;
  guint32 service_id;
  GMutex lock;
  GCond cond;
  guint committed;
  TrFaultIo *fault; /* (nullable): set before open_store() to give the store a fault io */
} Fixture;

static Fixture fx;

static void
setup (void)
{
  fx.root = tr_test_mkdtemp ();
  g_mutex_init (&fx.lock);
  g_cond_init (&fx.cond);
}

static void
teardown (void)
{
  if (fx.store != NULL)
    tr_rpcstore_remove_subscriber (fx.store, tr_push_on_store_event, fx.push);
  tr_push_free (fx.push);
  tr_rpcstore_close (fx.store);
  tr_config_free (fx.config);
  tr_fault_io_free (fx.fault);
  tr_test_rmdir (fx.root);
  g_free (fx.root);
  g_mutex_clear (&fx.lock);
  g_cond_clear (&fx.cond);
  memset (&fx, 0, sizeof fx);
}

/* Writes router.conf + services/svc.conf (endpoint "e1" on @port plus
 * @extra service keys), loads them and opens the store. */
static void
open_store (guint16 port, const char *extra, gboolean stop_send)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *services = g_build_filename (fx.root, "services", NULL);
  g_autofree char *data = g_build_filename (fx.root, "data", NULL);
  g_autofree char *router_path = g_build_filename (fx.root, "router.conf", NULL);
  g_autofree char *service_path = g_build_filename (services, "svc.conf", NULL);
  const char *router = "[router]\ndata_dir = data\nservices = svc\nstate_flush_ms = 10\ngroup_file_size = 1M\nmax_frame_size = 64K\n";
  g_autofree char *service = g_strdup_printf ("[service]\nrpcs = log_event, fire\n%s"
                                              "retry_backoff_ms = 5\nretry_backoff_max_ms = 50\n%s\n"
                                              "[endpoint e1]\nhost = 127.0.0.1\nport = %u\nstop_send = %s\n",
                                              strstr (extra, "max_inflight") ? "" : "max_inflight = 4\n",
                                              extra, port, stop_send ? "true" : "false");
  const char *names[] = { "svc", NULL };
  TrRpcStoreOptions options = { 0 };

  cr_assert_eq (g_mkdir_with_parents (services, 0700), 0);
  cr_assert_eq (g_mkdir_with_parents (data, 0700), 0);
  tr_test_write_file (router_path, router, strlen (router));
  tr_test_write_file (service_path, service, strlen (service));
  fx.config = tr_config_load (router_path, &error);
  cr_assert_not_null (fx.config, "config: %s", error ? error->message : "");
  options.group_file_size = fx.config->group_file_size;
  options.rpc_cache_size = 64 * 1024;
  options.sync_mode = TR_SYNC_NONE;
  options.sync_interval_ms = 10;
  options.checkpoint_interval_ms = 50;
  options.max_message_size = 64 * 1024;
  fx.store = tr_rpcstore_open (fx.fault != NULL ? tr_fault_io_get_io (fx.fault) : tr_io_posix (),
                               fx.config->data_dir, &options, names, &error);
  cr_assert_not_null (fx.store, "store: %s", error ? error->message : "");
  fx.service_id = (guint32) tr_rpcstore_service_id (fx.store, "svc");
}

static void
start_push (void)
{
  g_autoptr (GError) error = NULL;

  fx.push = tr_push_new (fx.store, fx.config, &error);
  cr_assert_not_null (fx.push, "push: %s", error ? error->message : "");
  tr_rpcstore_add_subscriber (fx.store, tr_push_on_store_event, fx.push);
}

static void
stop_push (void)
{
  tr_rpcstore_remove_subscriber (fx.store, tr_push_on_store_event, fx.push);
  tr_push_free (fx.push);
  fx.push = NULL;
}

static void
on_commit (gpointer user_data, guint64 rpc_id, const GError *error)
{
  (void) user_data;
  (void) rpc_id;
  cr_assert_null (error);
  g_mutex_lock (&fx.lock);
  fx.committed++;
  g_cond_signal (&fx.cond);
  g_mutex_unlock (&fx.lock);
}

/* The args struct of RPC number @i: {1: string "event-<i>-..."}. */
static GBytes *
body_of (guint i)
{
  g_autofree char *text = g_strdup_printf ("event-%u-%s", i, i % 2 ? "odd" : "even, somewhat longer");
  gsize len = strlen (text);
  guint8 *body = g_malloc (len + 8);

  body[0] = TR_TTYPE_STRING;
  tr_put_be16 (body + 1, 1);
  tr_put_be32 (body + 3, (guint32) len);
  memcpy (body + 7, text, len);
  body[7 + len] = TR_TTYPE_STOP;
  return g_bytes_new_take (body, len + 8);
}

/* Submits RPC number @i (the @i-th of the service, so seqid @i) and waits
 * for its commit. */
static void
submit (guint i, TrMsgType type)
{
  g_autoptr (GBytes) body = body_of (i);
  g_autoptr (GByteArray) frame = g_byte_array_new ();
  g_autoptr (GBytes) message = NULL;
  const char *name = type == TR_MSG_ONEWAY ? "fire" : "log_event";
  gint64 end = g_get_monotonic_time () + 10 * G_TIME_SPAN_SECOND;
  gsize body_len;
  const guint8 *body_data = g_bytes_get_data (body, &body_len);
  guint target;

  /* Producer seqid 0, like every stock client; strip the frame length. */
  tr_frame_build_call (frame, type, name, strlen (name), 0, body_data, body_len);
  message = g_bytes_new (frame->data + TR_FRAME_LEN_SIZE, frame->len - TR_FRAME_LEN_SIZE);
  g_mutex_lock (&fx.lock);
  target = fx.committed + 1;
  g_mutex_unlock (&fx.lock);
  tr_rpcstore_submit (fx.store, message, &fx.service_id, 1, on_commit, NULL);
  g_mutex_lock (&fx.lock);
  while (fx.committed < target)
    cr_assert (g_cond_wait_until (&fx.cond, &fx.lock, end), "commit timed out");
  g_mutex_unlock (&fx.lock);
}

static void
submit_range (guint first, guint last, TrMsgType type)
{
  for (guint i = first; i <= last; i++)
    submit (i, type);
}

static TrPushEndpointStats
get_stats (void)
{
  g_autoptr (GArray) stats = tr_push_get_stats (fx.push);
  TrPushEndpointStats copy;

  cr_assert_eq (stats->len, 1);
  copy = g_array_index (stats, TrPushEndpointStats, 0);
  cr_assert_str_eq (copy.service, "svc");
  cr_assert_str_eq (copy.endpoint, "e1");
  copy.service = copy.endpoint = NULL;
  copy.last_error = g_strdup (copy.last_error); /* the array frees its own */
  return copy;
}

static void
wait_acked (guint64 seqid)
{
  gint64 end = g_get_monotonic_time () + 20 * G_TIME_SPAN_SECOND;

  for (;;) {
    TrPushEndpointStats stats = get_stats ();
    g_free (stats.last_error);
    if (stats.acked >= seqid)
      return;
    cr_assert (g_get_monotonic_time () < end, "acked %" G_GUINT64_FORMAT " < %" G_GUINT64_FORMAT " (state %s)",
               stats.acked, seqid, tr_push_endpoint_state_to_string (stats.state));
    g_usleep (10 * 1000);
  }
}

/* Waits (at most 20 s) until the endpoint has failed @failures times in a
 * row; returns its stats then (the caller frees last_error). */
static TrPushEndpointStats
wait_failures (guint failures)
{
  gint64 end = g_get_monotonic_time () + 20 * G_TIME_SPAN_SECOND;

  for (;;) {
    TrPushEndpointStats stats = get_stats ();
    if (stats.retries >= failures)
      return stats;
    cr_assert (g_get_monotonic_time () < end, "%u failures in a row, waiting for %u (state %s)", stats.retries,
               failures, tr_push_endpoint_state_to_string (stats.state));
    g_free (stats.last_error);
    g_usleep (10 * 1000);
  }
}

/* Every non-barrier message received: no gap (each seqid at most one past
 * the highest so far), seqids @first..@last all seen, bodies identical. */
static void
check_no_gap (Fake *fake, gint32 first, gint32 last)
{
  gint32 highest = first - 1;

  g_mutex_lock (&fake->lock);
  for (guint k = 0; k < fake->received->len; k++) {
    Received *r = g_ptr_array_index (fake->received, k);
    g_autoptr (GBytes) expect = NULL;
    if (strcmp (r->name, BARRIER) == 0)
      continue;
    cr_assert (r->seqid >= first && r->seqid <= highest + 1, "seqid %d after %d: gap or out of range", r->seqid,
               highest);
    highest = MAX (highest, r->seqid);
    expect = body_of ((guint) r->seqid);
    cr_assert (g_bytes_equal (expect, r->body), "body of seqid %d differs", r->seqid);
  }
  g_mutex_unlock (&fake->lock);
  cr_assert_eq (highest, last);
}

static guint
count_seqid (Fake *fake, gint32 seqid)
{
  guint n = 0;
  g_mutex_lock (&fake->lock);
  for (guint k = 0; k < fake->received->len; k++) {
    Received *r = g_ptr_array_index (fake->received, k);
    if (r->seqid == seqid && strcmp (r->name, BARRIER) != 0)
      n++;
  }
  g_mutex_unlock (&fake->lock);
  return n;
}

/* Waits (at most 20 s) until @seqid arrived @count times. */
static void
wait_count_seqid (Fake *fake, gint32 seqid, guint count)
{
  gint64 end = g_get_monotonic_time () + 20 * G_TIME_SPAN_SECOND;

  while (count_seqid (fake, seqid) < count) {
    cr_assert (g_get_monotonic_time () < end, "seqid %d arrived %u times, waiting for %u", seqid,
               count_seqid (fake, seqid), count);
    g_usleep (10 * 1000);
  }
}

TestSuite (tr_push, .init = setup, .fini = teardown, .timeout = 30);

Test (tr_push, delivers_in_order_with_service_seqids, .timeout = 30)
{
  Fake fake;

  fake_init (&fake);
  fake_run (&fake);
  open_store (fake.port, "", FALSE);
  start_push ();
  submit_range (1, 30, TR_MSG_CALL);
  wait_acked (30);
  /* Exactly once each, in order, renamed seqids, identical bodies. */
  cr_assert_eq (fake_count (&fake), 30);
  for (guint k = 0; k < 30; k++) {
    Received *r = g_ptr_array_index (fake.received, k);
    g_autoptr (GBytes) expect = body_of (k + 1);
    cr_assert_str_eq (r->name, "log_event");
    cr_assert_eq (r->type, TR_MSG_CALL);
    cr_assert_eq (r->seqid, (gint32) k + 1);
    cr_assert (g_bytes_equal (expect, r->body));
  }
  stop_push ();
  fake_stop (&fake);
}

Test (tr_push, oneways_are_confirmed_by_a_barrier, .timeout = 30)
{
  Fake fake;
  Received *last;

  fake_init (&fake);
  fake_run (&fake);
  open_store (fake.port, "max_inflight = 64", FALSE);
  submit (1, TR_MSG_CALL);
  submit_range (2, 4, TR_MSG_ONEWAY);
  submit (5, TR_MSG_CALL);
  submit (6, TR_MSG_ONEWAY);
  start_push ();
  wait_acked (6);
  check_no_gap (&fake, 1, 6);
  g_mutex_lock (&fake.lock);
  last = g_ptr_array_index (fake.received, fake.received->len - 1);
  cr_assert_str_eq (last->name, BARRIER);
  cr_assert_eq (last->type, TR_MSG_CALL);
  cr_assert_eq (last->seqid, 6);
  cr_assert_eq (g_bytes_get_size (last->body), 1); /* empty struct */
  g_mutex_unlock (&fake.lock);
  cr_assert_eq (((Received *) g_ptr_array_index (fake.received, 1))->type, TR_MSG_ONEWAY);
  stop_push ();
  fake_stop (&fake);
}

Test (tr_push, oneways_without_barrier_count_once_written, .timeout = 30)
{
  Fake fake;

  fake_init (&fake);
  fake_run (&fake);
  open_store (fake.port, "oneway_barrier = false", FALSE);
  start_push ();
  submit_range (1, 5, TR_MSG_ONEWAY);
  wait_acked (5);
  g_usleep (100 * 1000);
  check_no_gap (&fake, 1, 5);
  for (guint k = 0; k < fake_count (&fake); k++)
    cr_assert_str_neq (((Received *) g_ptr_array_index (fake.received, k))->name, BARRIER);
  stop_push ();
  fake_stop (&fake);
}

Test (tr_push, endpoint_down_then_up_catches_up, .timeout = 30)
{
  Fake fake;
  guint16 port;
  int reserved = tr_test_bind_loopback (0, FALSE, &port);
  TrPushEndpointStats stats;

  close (reserved); /* nobody listens there: connections are refused */
  open_store (port, "", FALSE);
  start_push ();
  submit_range (1, 12, TR_MSG_CALL);
  stats = wait_failures (2);
  cr_assert_eq (stats.acked, 0);
  cr_assert_eq (stats.head, 12);
  cr_assert_neq (stats.state, TR_PUSH_SENDING);
  cr_assert_not_null (stats.last_error);
  cr_assert (strstr (stats.last_error, "connect") != NULL, "%s", stats.last_error);
  /* Down (connection refused), not blocked; the error is current. */
  cr_assert_eq (stats.state == TR_PUSH_BLOCKED, FALSE);
  cr_assert_eq (stats.blocked_seqid, 0);
  cr_assert_gt (stats.last_error_time, 0);
  cr_assert_eq (stats.last_error_resolved, 0);
  g_free (stats.last_error);

  memset (&fake, 0, sizeof fake);
  g_mutex_init (&fake.lock);
  fake.received = g_ptr_array_new_with_free_func (received_free);
  fake.listen_fd = tr_test_bind_loopback (port, TRUE, &fake.port);
  fake_run (&fake);
  submit_range (13, 15, TR_MSG_CALL);
  wait_acked (15);
  check_no_gap (&fake, 1, 15);
  stats = get_stats ();
  /* Recovered: the last error is kept, marked past. */
  cr_assert (strstr (stats.last_error, "connect") != NULL, "%s", stats.last_error);
  cr_assert_geq (stats.last_error_resolved, stats.last_error_time);
  g_free (stats.last_error);
  stop_push ();
  fake_stop (&fake);
}

Test (tr_push, wrong_seqid_reconnects_and_resends_without_gap, .timeout = 30)
{
  Fake fake;

  fake_init (&fake);
  fake.wrong_seqid_call = 3;
  fake_run (&fake);
  open_store (fake.port, "", FALSE);
  submit_range (1, 10, TR_MSG_CALL);
  start_push ();
  wait_acked (10);
  check_no_gap (&fake, 1, 10);
  cr_assert_geq (count_seqid (&fake, 3), 2);
  g_mutex_lock (&fake.lock);
  cr_assert_geq (fake.connections, 2);
  g_mutex_unlock (&fake.lock);
  stop_push ();
  fake_stop (&fake);
}

Test (tr_push, skip_policy_dead_letters_after_max_retries, .timeout = 30)
{
  Fake fake;
  TrPushEndpointStats stats;

  fake_init (&fake);
  fake.exception_seqid = 2;
  fake_run (&fake);
  open_store (fake.port, "on_failure = skip\nmax_retries = 2", FALSE);
  submit_range (1, 4, TR_MSG_CALL);
  start_push ();
  wait_acked (4);
  check_no_gap (&fake, 1, 4);
  /* One attempt plus max_retries retries, then skipped. */
  cr_assert_eq (count_seqid (&fake, 2), 3);
  stats = get_stats ();
  cr_assert_eq (stats.state, TR_PUSH_SENDING);
  cr_assert (strstr (stats.last_error, "TApplicationException") != NULL, "%s", stats.last_error);
  /* Seqid 2 was dead-lettered and 3, 4 acknowledged: the error is past. */
  cr_assert_gt (stats.last_error_time, 0);
  cr_assert_geq (stats.last_error_resolved, stats.last_error_time);
  g_free (stats.last_error);
  stop_push ();
  fake_stop (&fake);
}

Test (tr_push, block_policy_keeps_retrying, .timeout = 30)
{
  Fake fake;
  TrPushEndpointStats stats;

  fake_init (&fake);
  fake.exception_seqid = 2;
  fake_run (&fake);
  open_store (fake.port, "on_failure = block\nmax_retries = 1", FALSE);
  submit_range (1, 3, TR_MSG_CALL);
  start_push ();
  wait_acked (1);
  wait_count_seqid (&fake, 2, 3);
  stats = get_stats ();
  cr_assert_eq (stats.acked, 1);
  /* Seqid 3 went out behind the first attempt of 2 at most; while 2 keeps
   * failing only 2 is in flight (docs/delivery.md). */
  cr_assert_leq (count_seqid (&fake, 3), 1);
  /* The endpoint answers but refuses seqid 2 (rpc 2: one service). */
  cr_assert_eq (stats.state, TR_PUSH_BLOCKED, "state %s", tr_push_endpoint_state_to_string (stats.state));
  cr_assert_eq (stats.blocked_seqid, 2);
  cr_assert_eq (stats.blocked_rpc_id, 2);
  cr_assert (strstr (stats.last_error, "TApplicationException") != NULL, "%s", stats.last_error);
  cr_assert_gt (stats.last_error_time, 0);
  cr_assert_eq (stats.last_error_resolved, 0);
  g_free (stats.last_error);

  /* Then the endpoint goes down: a connection failure, so BACKOFF (down),
   * no longer BLOCKED (refusing). */
  fake_stop (&fake);
  {
    gint64 end = g_get_monotonic_time () + 20 * G_TIME_SPAN_SECOND;
    for (;;) {
      stats = get_stats ();
      g_free (stats.last_error);
      if (stats.state != TR_PUSH_BLOCKED)
        break;
      cr_assert (g_get_monotonic_time () < end, "still BLOCKED with the endpoint down");
      g_usleep (10 * 1000);
    }
  }
  cr_assert (stats.state == TR_PUSH_BACKOFF || stats.state == TR_PUSH_CONNECTING, "state %s",
             tr_push_endpoint_state_to_string (stats.state));
  cr_assert_eq (stats.blocked_seqid, 0);
  cr_assert_eq (stats.acked, 1);
  stop_push ();
}

Test (tr_push, stop_send_sends_nothing_and_keeps_position, .timeout = 30)
{
  Fake fake;
  TrPushEndpointStats stats;

  fake_init (&fake);
  fake_run (&fake);
  open_store (fake.port, "", TRUE);
  start_push ();
  submit_range (1, 5, TR_MSG_CALL);
  g_usleep (300 * 1000);
  stats = get_stats ();
  cr_assert_eq (stats.state, TR_PUSH_STOPPED);
  cr_assert_eq (stats.acked, 0);
  cr_assert_eq (stats.head, 5);
  g_free (stats.last_error);
  cr_assert_eq (fake_count (&fake), 0);
  g_mutex_lock (&fake.lock);
  cr_assert_eq (fake.connections, 0);
  g_mutex_unlock (&fake.lock);
  stop_push ();
  fake_stop (&fake);
}

Test (tr_push, send_state_survives_restart, .timeout = 30)
{
  Fake fake;

  fake_init (&fake);
  fake_run (&fake);
  open_store (fake.port, "", FALSE);
  start_push ();
  submit_range (1, 5, TR_MSG_CALL);
  wait_acked (5);
  stop_push ();
  g_mutex_lock (&fake.lock);
  g_ptr_array_set_size (fake.received, 0);
  g_mutex_unlock (&fake.lock);

  start_push ();
  submit_range (6, 8, TR_MSG_CALL);
  wait_acked (8);
  /* Nothing acknowledged before the shutdown is sent again. */
  check_no_gap (&fake, 6, 8);
  cr_assert_eq (fake_count (&fake), 3);
  cr_assert_eq (((Received *) g_ptr_array_index (fake.received, 0))->seqid, 6);
  stop_push ();
  fake_stop (&fake);
}

/* Backlog limits (router/push/tr_push_backlog.c): the expired range is a
 * dead letter before the endpoint moves; when that record cannot be
 * written, nothing moves (never lost silently), and it is tried again. */
Test (tr_push, backlog_expiry_is_recorded_before_the_endpoint_moves, .timeout = 30)
{
  Fake fake;
  TrPushEndpointStats stats;
  g_autoptr (GArray) letters = NULL;
  g_autoptr (GError) error = NULL;
  gint64 end;

  fake_init (&fake);
  fake_run (&fake);
  fx.fault = tr_fault_io_new ();
  open_store (fake.port, "max_backlog_age = 1s\n", TRUE);
  tr_fault_io_set_path_filter (fx.fault, "/dead-");
  tr_fault_io_arm (fx.fault, TR_FAULT_OPEN, 1, EIO, TRUE, FALSE);
  start_push ();
  submit_range (1, 5, TR_MSG_CALL);
  end = g_get_monotonic_time () + 20 * G_TIME_SPAN_SECOND;
  while (!tr_fault_io_fired (fx.fault)) {
    cr_assert (g_get_monotonic_time () < end, "the expiry was never tried");
    g_usleep (10 * 1000);
  }
  stats = get_stats ();
  g_free (stats.last_error);
  cr_assert_eq (stats.acked, 0, "moved although the expiry could not be recorded");
  cr_assert_eq (stats.expired, 0);
  /* The disk works again: the next check records and moves. */
  tr_fault_io_disarm (fx.fault);
  wait_acked (5);
  stats = get_stats ();
  g_free (stats.last_error);
  cr_assert_eq (stats.expired, 5);
  letters = tr_rpcstore_list_dead_letters (fx.store, fx.service_id, 0, 10, NULL, &error);
  cr_assert_not_null (letters, "%s", error ? error->message : "");
  cr_assert_eq (letters->len, 1);
  cr_assert_eq (g_array_index (letters, TrDeadLetter, 0).seqid, 1);
  cr_assert (g_str_has_prefix (g_array_index (letters, TrDeadLetter, 0).reason,
                               "expired for endpoint e1: seqids 1..5 (rpc ids 1..5, 5 rpcs) not delivered: "
                               "oldest unacknowledged rpc "),
             "%s", g_array_index (letters, TrDeadLetter, 0).reason);
  cr_assert_eq (fake_count (&fake), 0, "a stopped endpoint got something");
  stop_push ();
  fake_stop (&fake);
}
