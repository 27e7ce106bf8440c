/* test_tr_peer.c - the outbound peer (router/net/tr_peer.h) against a socket
 * server thread of this file on loopback: connect, pipelined sending and
 * replies matched in order, wrong seqid, hang-up hint, socket timeout,
 * backoff (first contact, then exponential) and the window.  The peer runs
 * on a GMainContext that each test iterates on its own thread. */
#include <criterion/criterion.h>
#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tr_frame.h"
#include "tr_peer.h"
#include "tr_test_util.h"

/* ---- the server ---- */

typedef enum {
  SERVER_ECHO,        /* answers every CALL with a void reply of its seqid */
  SERVER_WRONG_SEQID, /* answers every CALL with seqid + 1000 */
  SERVER_HANG_UP,     /* closes the connection on the first message */
  SERVER_SILENT,      /* reads, never answers */
} ServerMode;

typedef struct {
  int listen_fd;
  guint16 port;
  ServerMode mode;
  GThread *thread;
  gint stop;
  gint connections; /* atomic */
  gint messages;    /* atomic: messages read */
} Server;

static void
server_answer (Server *server, int fd, const guint8 *msg, gsize len)
{
  TrMsgHeader header;
  g_autoptr (GByteArray) out = g_byte_array_new ();
  gint32 seqid;

  cr_assert_eq (tr_frame_parse_header (msg, len, &header), TR_FRAME_OK);
  g_atomic_int_inc (&server->messages);
  if (header.type != TR_MSG_CALL || server->mode == SERVER_SILENT)
    return;
  seqid = server->mode == SERVER_WRONG_SEQID ? header.seqid + 1000 : header.seqid;
  tr_frame_build_void_reply (out, (const char *) header.name, header.name_len, seqid);
  cr_assert_eq (send (fd, out->data, out->len, MSG_NOSIGNAL), (ssize_t) out->len);
}

static void
server_serve (Server *server, int fd)
{
  g_autoptr (GByteArray) in = g_byte_array_new ();

  while (!g_atomic_int_get (&server->stop)) {
    struct pollfd p = { fd, POLLIN, 0 };
    guint8 buf[4096];
    gsize pos = 0;
    guint32 frame_len;
    ssize_t n;

    if (poll (&p, 1, 20) <= 0)
      continue;
    n = recv (fd, buf, sizeof buf, 0);
    if (n <= 0)
      return;
    if (server->mode == SERVER_HANG_UP)
      return;
    g_byte_array_append (in, buf, (guint) n);
    while (tr_frame_next (in->data + pos, in->len - pos, TR_FRAME_DEFAULT_MAX_SIZE, &frame_len) == TR_FRAME_OK) {
      server_answer (server, fd, in->data + pos + TR_FRAME_LEN_SIZE, frame_len);
      pos += TR_FRAME_LEN_SIZE + frame_len;
    }
    g_byte_array_remove_range (in, 0, (guint) pos);
  }
}

static gpointer
server_thread (gpointer data)
{
  Server *server = data;

  while (!g_atomic_int_get (&server->stop)) {
    struct pollfd p = { server->listen_fd, POLLIN, 0 };
    int fd;
    if (poll (&p, 1, 20) <= 0)
      continue;
    fd = accept (server->listen_fd, NULL, NULL);
    if (fd < 0)
      continue;
    g_atomic_int_inc (&server->connections);
    server_serve (server, fd);
    close (fd);
  }
  return NULL;
}

static void
server_start (Server *server, ServerMode mode)
{
  memset (server, 0, sizeof *server);
  server->mode = mode;
  server->listen_fd = tr_test_bind_loopback (0, TRUE, &server->port);
  server->thread = g_thread_new ("peer-test-server", server_thread, server);
}

static void
server_stop (Server *server)
{
  g_atomic_int_set (&server->stop, 1);
  g_thread_join (server->thread);
  close (server->listen_fd);
}

/* ---- the peer's user ---- */

typedef struct {
  guint connected;
  guint failed;
  guint64 last_delay_ms;
  char *last_reason;
  GArray *acked; /* (element-type guint64) seqids whose reply came, in order */
} User;

static User user;
static GMainContext *context;

static void
on_connected (TrPeer *peer, const char *where, gpointer user_data)
{
  (void) peer;
  (void) user_data;
  cr_assert_not_null (strstr (where, "127.0.0.1:"), "%s", where);
  user.connected++;
}

static gboolean
on_reply (TrPeer *peer, const TrReply *reply, TrPeerInflight *expected, gpointer user_data)
{
  TrPeerInflight *entry;

  (void) user_data;
  cr_assert_eq (reply->header.type, TR_MSG_REPLY);
  cr_assert_eq (reply->result_field_id, -1);
  /* The reply acknowledges @expected and the oneways before it. */
  do {
    entry = tr_peer_inflight_pop (peer);
    g_array_append_val (user.acked, entry->seqid);
    if (entry != expected)
      g_free (entry);
  } while (entry != expected);
  g_free (entry);
  tr_peer_reset_backoff (peer);
  return TRUE;
}

static void
on_failed (TrPeer *peer, const char *reason, guint64 delay_ms, gpointer user_data)
{
  (void) user_data;
  cr_assert_eq (tr_peer_get_state (peer), TR_PEER_BACKOFF);
  cr_assert_eq (tr_peer_inflight_length (peer), 0);
  cr_assert_str_eq (tr_peer_get_last_error (peer), reason);
  g_free (user.last_reason);
  user.last_reason = g_strdup (reason);
  user.last_delay_ms = delay_ms;
  user.failed++;
}

static const TrPeerCallbacks callbacks = {
  .connected = on_connected,
  .reply = on_reply,
  .failed = on_failed,
};

static void
setup (void)
{
  memset (&user, 0, sizeof user);
  user.acked = g_array_new (FALSE, FALSE, sizeof (guint64));
  context = g_main_context_new ();
  g_main_context_push_thread_default (context);
}

static void
teardown (void)
{
  g_main_context_pop_thread_default (context);
  g_main_context_unref (context);
  g_array_unref (user.acked);
  g_free (user.last_reason);
}

static TrPeerSettings
settings_with (guint max_inflight, guint socket_timeout_ms, guint backoff_ms, guint backoff_max_ms)
{
  TrPeerSettings settings = { 0 };

  settings.max_inflight = max_inflight;
  settings.connect_timeout_ms = 2000;
  settings.socket_timeout_ms = socket_timeout_ms;
  settings.retry_backoff_ms = backoff_ms;
  settings.retry_backoff_max_ms = backoff_max_ms;
  return settings;
}

/* Iterates the context until @done holds; at most 10 s. */
#define RUN_UNTIL(done)                                                                                              \
  do {                                                                                                               \
    gint64 end_ = g_get_monotonic_time () + 10 * G_TIME_SPAN_SECOND;                                                 \
    while (!(done)) {                                                                                                \
      cr_assert (g_get_monotonic_time () < end_, "timed out waiting for %s", #done);                                 \
      g_main_context_iteration (context, FALSE);                                                                     \
      g_usleep (1000);                                                                                               \
    }                                                                                                                \
  } while (0)

static void
queue_call (TrPeer *peer, TrMsgType type, guint64 seqid)
{
  g_autoptr (GByteArray) message = g_byte_array_new ();

  tr_frame_build_call (message, type, "log_event", strlen ("log_event"), tr_frame_wire_seqid (seqid), NULL, 0);
  tr_peer_queue (peer, message->data, message->len, NULL, 0, seqid, type == TR_MSG_CALL, 0, seqid * 10);
}

TestSuite (tr_peer, .init = setup, .fini = teardown, .timeout = 30);

Test (tr_peer, pipelines_and_matches_replies_in_order)
{
  Server server;
  TrPeerSettings settings = settings_with (8, 5000, 20, 200);
  g_autoptr (TrPeer) peer = NULL;

  server_start (&server, SERVER_ECHO);
  peer = tr_peer_new ("127.0.0.1", server.port, &settings, &callbacks, NULL);
  tr_peer_attach (peer, context);
  cr_assert_eq (tr_peer_get_state (peer), TR_PEER_IDLE);
  cr_assert_not (tr_peer_get_contacted (peer));
  tr_peer_start (peer);
  RUN_UNTIL (user.connected == 1);
  cr_assert_eq (tr_peer_get_state (peer), TR_PEER_CONNECTED);
  cr_assert (tr_peer_get_contacted (peer));
  /* 1, 2 calls; 3 oneway; 4 call: the reply to 4 acknowledges 3 too. */
  queue_call (peer, TR_MSG_CALL, 1);
  queue_call (peer, TR_MSG_CALL, 2);
  queue_call (peer, TR_MSG_ONEWAY, 3);
  queue_call (peer, TR_MSG_CALL, 4);
  cr_assert_eq (tr_peer_inflight_length (peer), 4);
  cr_assert_eq (tr_peer_inflight_peek_head (peer)->tag, 10);
  cr_assert_eq (tr_peer_inflight_peek_tail (peer)->seqid, 4);
  cr_assert (tr_peer_inflight_peek_tail (peer)->awaits_reply);
  cr_assert (tr_peer_flush (peer));
  RUN_UNTIL (user.acked->len == 4);
  for (guint i = 0; i < 4; i++)
    cr_assert_eq (g_array_index (user.acked, guint64, i), i + 1);
  cr_assert_eq (tr_peer_inflight_length (peer), 0);
  cr_assert_eq (user.failed, 0);
  cr_assert_gt (tr_peer_get_written (peer), 0);
  cr_assert_eq (g_atomic_int_get (&server.messages), 4);
  tr_peer_stop (peer);
  cr_assert_eq (tr_peer_get_state (peer), TR_PEER_IDLE);
  server_stop (&server);
}

Test (tr_peer, wrong_seqid_fails_and_reconnects_after_backoff)
{
  Server server;
  TrPeerSettings settings = settings_with (8, 5000, 20, 200);
  g_autoptr (TrPeer) peer = NULL;

  server_start (&server, SERVER_WRONG_SEQID);
  peer = tr_peer_new ("127.0.0.1", server.port, &settings, &callbacks, NULL);
  tr_peer_attach (peer, context);
  tr_peer_start (peer);
  RUN_UNTIL (user.connected == 1);
  queue_call (peer, TR_MSG_CALL, 7);
  tr_peer_flush (peer);
  RUN_UNTIL (user.failed == 1);
  cr_assert_not_null (strstr (user.last_reason, "answered seqid 1007, expected 7"), "%s", user.last_reason);
  cr_assert_eq (user.last_delay_ms, 20);
  cr_assert_eq (tr_peer_get_retries (peer), 1);
  cr_assert_eq (user.acked->len, 0);
  /* The backoff timer connects again by itself. */
  RUN_UNTIL (user.connected == 2);
  cr_assert_eq (g_atomic_int_get (&server.connections), 2);
  server_stop (&server);
}

Test (tr_peer, hang_up_before_the_first_reply_is_explained)
{
  Server server;
  TrPeerSettings settings = settings_with (8, 5000, 20, 200);
  g_autoptr (TrPeer) peer = NULL;

  server_start (&server, SERVER_HANG_UP);
  peer = tr_peer_new ("127.0.0.1", server.port, &settings, &callbacks, NULL);
  tr_peer_attach (peer, context);
  tr_peer_start (peer);
  RUN_UNTIL (user.connected == 1);
  queue_call (peer, TR_MSG_CALL, 1);
  tr_peer_flush (peer);
  RUN_UNTIL (user.failed == 1);
  cr_assert_not_null (strstr (user.last_reason, "before its first reply"), "%s", user.last_reason);
  server_stop (&server);
}

Test (tr_peer, no_answer_within_socket_timeout_fails)
{
  Server server;
  TrPeerSettings settings = settings_with (8, 100, 20, 200);
  g_autoptr (TrPeer) peer = NULL;
  gint64 start;

  server_start (&server, SERVER_SILENT);
  peer = tr_peer_new ("127.0.0.1", server.port, &settings, &callbacks, NULL);
  tr_peer_attach (peer, context);
  tr_peer_start (peer);
  RUN_UNTIL (user.connected == 1);
  start = g_get_monotonic_time ();
  queue_call (peer, TR_MSG_CALL, 1);
  queue_call (peer, TR_MSG_CALL, 2);
  tr_peer_flush (peer);
  RUN_UNTIL (user.failed == 1);
  cr_assert_geq (g_get_monotonic_time () - start, 100 * 1000);
  cr_assert_str_eq (user.last_reason, "no answer for 100 ms with 2 messages in flight");
  server_stop (&server);
}

Test (tr_peer, refused_before_first_contact_retries_within_a_second_then_backs_off)
{
  Server server;
  guint16 port;
  int reserved = tr_test_bind_loopback (0, FALSE, &port);
  TrPeerSettings settings = settings_with (8, 5000, 5000, 60000);
  g_autoptr (TrPeer) peer = NULL;

  close (reserved); /* nobody listens there: connections are refused */
  peer = tr_peer_new ("127.0.0.1", port, &settings, &callbacks, NULL);
  tr_peer_attach (peer, context);
  tr_peer_start (peer);
  RUN_UNTIL (user.failed == 1);
  cr_assert_not_null (strstr (user.last_reason, "Connection refused"), "%s", user.last_reason);
  cr_assert_eq (user.last_delay_ms, TR_PEER_FIRST_CONTACT_RETRY_MS);
  RUN_UNTIL (user.failed == 2);
  cr_assert_eq (user.last_delay_ms, TR_PEER_FIRST_CONTACT_RETRY_MS);

  /* Once contacted, a failure backs off as configured: 5 s, then 10 s. */
  memset (&server, 0, sizeof server);
  server.mode = SERVER_HANG_UP;
  server.listen_fd = tr_test_bind_loopback (port, TRUE, &server.port);
  server.thread = g_thread_new ("peer-test-server", server_thread, &server);
  tr_peer_start (peer); /* BACKOFF -> CONNECTING now */
  RUN_UNTIL (user.connected == 1);
  queue_call (peer, TR_MSG_CALL, 1);
  tr_peer_flush (peer);
  RUN_UNTIL (user.failed == 3);
  cr_assert_eq (user.last_delay_ms, 5000 * 4, "delay %" G_GUINT64_FORMAT, user.last_delay_ms);
  tr_peer_reset_backoff (peer);
  tr_peer_start (peer);
  RUN_UNTIL (user.connected == 2);
  queue_call (peer, TR_MSG_CALL, 1);
  tr_peer_flush (peer);
  RUN_UNTIL (user.failed == 4);
  cr_assert_eq (user.last_delay_ms, 5000);

  /* A new address counts as never contacted. */
  tr_peer_set_address (peer, "127.0.0.1", port);
  cr_assert_not (tr_peer_get_contacted (peer));
  server_stop (&server);
}

Test (tr_peer, window_shrinks_to_one_and_grows_back)
{
  TrPeerSettings settings = settings_with (8, 5000, 20, 200);
  g_autoptr (TrPeer) peer = tr_peer_new ("127.0.0.1", 9, &settings, &callbacks, NULL);

  cr_assert_eq (tr_peer_window (peer), 8);
  tr_peer_window_shrink (peer);
  cr_assert_eq (tr_peer_window (peer), 1);
  tr_peer_window_grow (peer);
  cr_assert_eq (tr_peer_window (peer), 2);
  tr_peer_window_grow (peer);
  cr_assert_eq (tr_peer_window (peer), 4);
  tr_peer_window_grow (peer);
  cr_assert_eq (tr_peer_window (peer), 8);
  tr_peer_window_grow (peer);
  cr_assert_eq (tr_peer_window (peer), 8);
  /* New settings apply to the window at once. */
  settings.max_inflight = 3;
  tr_peer_set_settings (peer, &settings);
  cr_assert_eq (tr_peer_window (peer), 3);
  tr_peer_window_shrink (peer);
  tr_peer_stop (peer);
  cr_assert_eq (tr_peer_window (peer), 3);
}
