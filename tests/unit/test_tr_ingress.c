/* test_tr_ingress.c - the producer side (router/ingress/tr_ingress.h) on loopback
 * against a real store in a temporary directory: this process is both the
 * producer (a plain socket) and the ingress loop (the default
 * GMainContext, iterated while waiting for an answer). */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tr_config.h"
#include "tr_frame.h"
#include "tr_ingress.h"
#include "tr_rpcstore.h"
#include "tr_test_util.h"

typedef struct {
  char *root;
  TrConfig *config;
  TrRpcStore *store;
  TrIngress *ingress;
} Fixture;

static Fixture fx;

static void
setup (void)
{
  fx.root = tr_test_mkdtemp ();
}

static void
teardown (void)
{
  tr_ingress_free (fx.ingress);
  tr_rpcstore_close (fx.store);
  tr_config_free (fx.config);
  tr_test_rmdir (fx.root);
  g_free (fx.root);
  memset (&fx, 0, sizeof fx);
}

/* Writes router.conf (listen on an ephemeral loopback port) and
 * services/svc.conf (rpcs log_event and fire; its endpoint is never
 * contacted: no push runs here), loads them and opens the store. */
static void
open_store (void)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *services = g_build_filename (fx.root, "services", NULL);
  g_autofree char *router_path = g_build_filename (fx.root, "router.conf", NULL);
  g_autofree char *service_path = g_build_filename (services, "svc.conf", NULL);
  const char *router = "[router]\nlisten = 127.0.0.1:0\ndata_dir = data\nservices = svc\n"
                       "group_file_size = 1M\nmax_frame_size = 64K\n";
  const char *service = "[service]\nrpcs = log_event, fire\n\n[endpoint e1]\nhost = 127.0.0.1\nport = 1\n";
  const char *names[] = { "svc", NULL };
  TrRpcStoreOptions options = { 0 };

  cr_assert_eq (g_mkdir_with_parents (services, 0700), 0);
  tr_test_write_file (router_path, router, strlen (router));
  tr_test_write_file (service_path, service, strlen (service));
  fx.config = tr_config_load (router_path, &error);
  cr_assert_not_null (fx.config, "config: %s", error ? error->message : "");
  options.group_file_size = fx.config->group_file_size;
  options.rpc_cache_size = 64 * 1024;
  options.sync_mode = TR_SYNC_NONE;
  options.sync_interval_ms = 10;
  options.checkpoint_interval_ms = 50;
  options.max_message_size = fx.config->max_frame_size;
  fx.store = tr_rpcstore_open (tr_io_posix (), fx.config->data_dir, &options, names, &error);
  cr_assert_not_null (fx.store, "store: %s", error ? error->message : "");
}

TestSuite (tr_ingress, .init = setup, .fini = teardown, .timeout = 30);

/* ---- set-up failures ---- */

/* An fd is open when fcntl() knows it. */
static gboolean
fd_is_open (int fd)
{
  return fcntl (fd, F_GETFD) != -1;
}

Test (tr_ingress, failed_epoll_creation_leaves_fd_0_open)
{
  g_autoptr (GError) error = NULL;
  struct rlimit saved, limit;
  int lowest_free;

  open_store ();
  if (!fd_is_open (0))
    cr_assert_eq (open ("/dev/null", O_RDONLY | O_CLOEXEC), 0, "fd 0 must be open for this test");
  /* Every fd the loop needs exists before the limit drops: the default
   * context's wake-up fd is made once, here. */
  g_main_context_iteration (NULL, FALSE);
  lowest_free = open ("/dev/null", O_RDONLY | O_CLOEXEC);
  cr_assert_gt (lowest_free, 0);
  close (lowest_free);
  cr_assert_eq (getrlimit (RLIMIT_NOFILE, &saved), 0);
  limit = saved;
  limit.rlim_cur = (rlim_t) lowest_free; /* no new fd can be made: epoll_create1 fails with EMFILE */
  cr_assert_eq (setrlimit (RLIMIT_NOFILE, &limit), 0);
  fx.ingress = tr_ingress_new (fx.store, fx.config, &error);
  cr_assert_eq (setrlimit (RLIMIT_NOFILE, &saved), 0);
  cr_assert_null (fx.ingress);
  cr_assert (g_str_has_prefix (error->message, "cannot create an epoll set: "), "%s", error->message);
  cr_assert (fd_is_open (0), "the failed ingress closed fd 0, which it never opened");
}

Test (tr_ingress, listen_on_a_busy_port_fails_naming_it_and_closes_nothing_else)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *expected = NULL;
  TrIngress *first;

  open_store ();
  first = tr_ingress_new (fx.store, fx.config, &error);
  cr_assert_not_null (first, "%s", error ? error->message : "");
  fx.config->listen_port = tr_ingress_get_port (first);
  expected = g_strdup_printf ("cannot listen on 127.0.0.1:%u: ", fx.config->listen_port);
  fx.ingress = tr_ingress_new (fx.store, fx.config, &error);
  cr_assert_null (fx.ingress);
  cr_assert (g_str_has_prefix (error->message, expected), "%s", error->message);
  cr_assert (fd_is_open (0));
  tr_ingress_free (first);
}

/* ---- a producer on loopback ---- */

static void
start_ingress (void)
{
  g_autoptr (GError) error = NULL;

  open_store ();
  fx.ingress = tr_ingress_new (fx.store, fx.config, &error);
  cr_assert_not_null (fx.ingress, "%s", error ? error->message : "");
}

static int
connect_producer (void)
{
  struct sockaddr_in address = { .sin_family = AF_INET, .sin_port = g_htons (tr_ingress_get_port (fx.ingress)) };
  int fd = socket (AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

  cr_assert_geq (fd, 0);
  address.sin_addr.s_addr = g_htonl (INADDR_LOOPBACK);
  cr_assert_eq (connect (fd, (struct sockaddr *) &address, sizeof address), 0, "connect: %s", g_strerror (errno));
  return fd;
}

static void
send_bytes (int fd, const guint8 *data, gsize len)
{
  while (len > 0) {
    ssize_t n = send (fd, data, len, MSG_NOSIGNAL);
    cr_assert_gt (n, 0, "send: %s", g_strerror (errno));
    data += n;
    len -= (gsize) n;
  }
}

static void
send_message (int fd, TrMsgType type, const char *name, gint32 seqid)
{
  g_autoptr (GByteArray) frame = g_byte_array_new ();

  tr_frame_build_call (frame, type, name, strlen (name), seqid, NULL, 0);
  send_bytes (fd, frame->data, frame->len);
}

typedef enum { GOT_FRAME, GOT_CLOSED, GOT_NOTHING } Got;

/* Runs the ingress loop until @fd has a whole frame (its payload into
 * @payload), is closed by the router, or @wait_ms pass. */
static Got
wait_answer (int fd, GByteArray *payload, guint wait_ms)
{
  g_autoptr (GByteArray) in = g_byte_array_new ();
  gint64 deadline = g_get_monotonic_time () + wait_ms * G_TIME_SPAN_MILLISECOND;

  while (g_get_monotonic_time () < deadline) {
    struct pollfd p = { .fd = fd, .events = POLLIN };
    guint32 frame_len = 0;
    while (g_main_context_iteration (NULL, FALSE))
      ;
    if (poll (&p, 1, 5) == 1) {
      guint8 buf[4096];
      ssize_t n = recv (fd, buf, sizeof buf, 0);
      if (n <= 0)
        return GOT_CLOSED;
      g_byte_array_append (in, buf, (guint) n);
    }
    if (tr_frame_next (in->data, in->len, TR_FRAME_DEFAULT_MAX_SIZE, &frame_len) == TR_FRAME_OK) {
      g_byte_array_append (payload, in->data + TR_FRAME_LEN_SIZE, frame_len);
      return GOT_FRAME;
    }
  }
  return GOT_NOTHING;
}

static guint64
store_head (void)
{
  TrRpcStoreStats stats;

  tr_rpcstore_get_stats (fx.store, &stats);
  return stats.head_rpc_id;
}

static TrIngressStats
ingress_stats (void)
{
  TrIngressStats stats;

  tr_ingress_get_stats (fx.ingress, &stats);
  return stats;
}

/* ---- what a producer gets ---- */

Test (tr_ingress, call_is_answered_once_committed)
{
  g_autoptr (GByteArray) answer = g_byte_array_new ();
  int fd;
  TrReply reply;

  start_ingress ();
  fd = connect_producer ();
  send_message (fd, TR_MSG_CALL, "log_event", 41);
  cr_assert_eq (wait_answer (fd, answer, 10000), GOT_FRAME);
  cr_assert_eq (store_head (), 1, "answered only once the rpc is committed");
  cr_assert_eq (tr_frame_parse_reply (answer->data, answer->len, &reply), TR_FRAME_OK);
  cr_assert_eq (reply.header.type, TR_MSG_REPLY);
  cr_assert_eq (reply.header.seqid, 41, "the producer's seqid is echoed");
  cr_assert_eq (reply.result_field_id, -1, "a void success");
  cr_assert_eq (ingress_stats ().rpcs_committed, 1);
  close (fd);
}

Test (tr_ingress, oneway_is_stored_and_not_answered)
{
  g_autoptr (GByteArray) answer = g_byte_array_new ();
  int fd;
  TrReply reply;

  start_ingress ();
  fd = connect_producer ();
  send_message (fd, TR_MSG_ONEWAY, "fire", 1);
  send_message (fd, TR_MSG_CALL, "log_event", 2);
  /* Answers go in request order: had the oneway been answered, its answer
   * would come first. */
  cr_assert_eq (wait_answer (fd, answer, 10000), GOT_FRAME);
  cr_assert_eq (tr_frame_parse_reply (answer->data, answer->len, &reply), TR_FRAME_OK);
  cr_assert_eq (reply.header.seqid, 2, "the first answer is the call's");
  cr_assert_eq (store_head (), 2, "the oneway was stored too");
  g_byte_array_set_size (answer, 0);
  cr_assert_eq (wait_answer (fd, answer, 200), GOT_NOTHING, "nothing else is sent");
  close (fd);
}

Test (tr_ingress, unrouted_name_gets_unknown_method_and_is_not_stored)
{
  g_autoptr (GByteArray) answer = g_byte_array_new ();
  int fd;
  TrReply reply;

  start_ingress ();
  fd = connect_producer ();
  send_message (fd, TR_MSG_CALL, "nobody_subscribes", 7);
  cr_assert_eq (wait_answer (fd, answer, 10000), GOT_FRAME);
  cr_assert_eq (tr_frame_parse_reply (answer->data, answer->len, &reply), TR_FRAME_OK);
  cr_assert_eq (reply.header.type, TR_MSG_EXCEPTION);
  cr_assert_eq (reply.header.seqid, 7);
  cr_assert_eq (reply.exception_type, TR_APP_EXC_UNKNOWN_METHOD);
  cr_assert_eq (store_head (), 0);
  cr_assert_eq (ingress_stats ().unknown_rpcs, 1);
  /* The connection stays open and is served. */
  send_message (fd, TR_MSG_CALL, "log_event", 8);
  g_byte_array_set_size (answer, 0);
  cr_assert_eq (wait_answer (fd, answer, 10000), GOT_FRAME);
  cr_assert_eq (tr_frame_parse_reply (answer->data, answer->len, &reply), TR_FRAME_OK);
  cr_assert_eq (reply.header.type, TR_MSG_REPLY);
  close (fd);
}

Test (tr_ingress, malformed_frame_closes_the_connection_and_others_are_served)
{
  g_autoptr (GByteArray) answer = g_byte_array_new ();
  /* A frame whose header cannot be read up to a seqid: no answer can be
   * addressed, so the connection is closed. */
  const guint8 garbage[] = { 0, 0, 0, 9, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 1 };
  int bad, good;

  start_ingress ();
  bad = connect_producer ();
  good = connect_producer ();
  send_bytes (bad, garbage, sizeof garbage);
  cr_assert_eq (wait_answer (bad, answer, 10000), GOT_CLOSED);
  cr_assert_eq (ingress_stats ().bad_frames, 1);
  send_message (good, TR_MSG_CALL, "log_event", 1);
  cr_assert_eq (wait_answer (good, answer, 10000), GOT_FRAME);
  cr_assert_eq (store_head (), 1);
  close (bad);
  close (good);
}

Test (tr_ingress, oversize_frame_closes_the_connection_unanswered)
{
  g_autoptr (GByteArray) answer = g_byte_array_new ();
  guint8 head[4 + 64];
  int fd;

  start_ingress ();
  fd = connect_producer ();
  memset (head, 'x', sizeof head);
  tr_put_be32 (head, fx.config->max_frame_size + 1);
  send_bytes (fd, head, sizeof head);
  cr_assert_eq (wait_answer (fd, answer, 10000), GOT_CLOSED, "an oversize frame cannot be skipped: closed");
  cr_assert_eq (answer->len, 0);
  cr_assert_eq (ingress_stats ().bad_frames, 1);
  cr_assert_eq (store_head (), 0);
  close (fd);
}
