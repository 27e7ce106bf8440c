/* test_tr_net.c - the inbound network layer (router/net/tr_net.h): listening
 * sockets and their errors, accept, connection buffers with partial writes,
 * checked epoll registration, and the rate-limited log helper. */
#include <criterion/criterion.h>
#include <errno.h>
#include <gio/gio.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tr_net.h"

/* ---- listen / accept ---- */

static int
connect_loopback (guint16 port)
{
  struct sockaddr_in address = { .sin_family = AF_INET, .sin_port = g_htons (port) };
  int fd = socket (AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

  cr_assert_geq (fd, 0);
  address.sin_addr.s_addr = g_htonl (INADDR_LOOPBACK);
  cr_assert_eq (connect (fd, (struct sockaddr *) &address, sizeof address), 0, "connect: %s", g_strerror (errno));
  return fd;
}

Test (tr_net, listen_on_port_0_reports_the_bound_port)
{
  g_autoptr (GError) error = NULL;
  guint16 port = 0;
  int fd = tr_net_listen ("127.0.0.1", 0, 16, &port, &error);

  cr_assert_geq (fd, 0, "%s", error ? error->message : "");
  cr_assert_neq (port, 0);
  close (connect_loopback (port));
  close (fd);
}

Test (tr_net, listen_on_a_busy_address_names_it)
{
  g_autoptr (GError) error = NULL;
  guint16 port = 0, again = 0;
  int fd = tr_net_listen ("127.0.0.1", 0, 16, &port, &error);
  g_autofree char *address = g_strdup_printf ("cannot listen on 127.0.0.1:%u: ", port);

  cr_assert_geq (fd, 0);
  cr_assert_eq (tr_net_listen ("127.0.0.1", port, 16, &again, &error), -1);
  cr_assert (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_ADDRESS_IN_USE), "%s", error->message);
  cr_assert (g_str_has_prefix (error->message, address), "%s", error->message);
  close (fd);
}

Test (tr_net, accept_says_would_block_then_accepts_with_a_peer_name)
{
  g_autoptr (GError) error = NULL;
  guint16 port = 0;
  int listen_fd = tr_net_listen ("127.0.0.1", 0, 16, &port, &error);
  int client, accepted;
  g_autofree char *peer = NULL;

  cr_assert_geq (listen_fd, 0);
  cr_assert_eq (tr_net_accept (listen_fd, &error), -1);
  cr_assert (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK), "%s", error->message);
  g_clear_error (&error);
  client = connect_loopback (port);
  accepted = tr_net_accept (listen_fd, &error);
  cr_assert_geq (accepted, 0, "%s", error ? error->message : "");
  peer = tr_net_peer_name (accepted);
  cr_assert (g_str_has_prefix (peer, "127.0.0.1:"), "%s", peer);
  close (accepted);
  close (client);
  close (listen_fd);
}

/* A listener whose callback does not accept: the socket stays readable,
 * as it does when accept() fails with EMFILE. */
typedef struct {
  GSource *source;
  int calls;
  gboolean pause;
} PauseProbe;

static gboolean
count_and_maybe_pause (gpointer data)
{
  PauseProbe *probe = data;

  probe->calls++;
  if (probe->pause)
    tr_net_listen_source_pause (probe->source, 50);
  return G_SOURCE_CONTINUE;
}

Test (tr_net, a_paused_listener_is_not_called_until_its_pause_ends)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GMainContext) context = g_main_context_new ();
  guint16 port = 0;
  int listen_fd = tr_net_listen ("127.0.0.1", 0, 16, &port, &error);
  PauseProbe probe = { .pause = TRUE };
  int client;
  gint64 start, end;

  cr_assert_geq (listen_fd, 0);
  probe.source = tr_net_listen_source_new (listen_fd, count_and_maybe_pause, &probe);
  g_source_attach (probe.source, context);
  client = connect_loopback (port);
  start = g_get_monotonic_time ();
  end = start + 180 * G_TIME_SPAN_MILLISECOND;
  while (g_get_monotonic_time () < end)
    if (!g_main_context_iteration (context, FALSE))
      g_usleep (1000);
  /* Readable all the time: called at once, then once per 50 ms pause
   * (3 or 4 in 180 ms), not thousands of times. */
  cr_assert_geq (probe.calls, 3, "calls = %d", probe.calls);
  cr_assert_leq (probe.calls, 5, "calls = %d", probe.calls);
  /* Resumed: without pausing again, it is called as long as it is readable. */
  probe.pause = FALSE;
  probe.calls = 0;
  for (int i = 0; i < 200 && probe.calls < 10; i++)
    if (!g_main_context_iteration (context, FALSE))
      g_usleep (1000);
  cr_assert_geq (probe.calls, 10, "calls = %d after the pause ended", probe.calls);
  g_source_destroy (probe.source);
  g_source_unref (probe.source);
  close (client);
  close (listen_fd);
}

Test (tr_net, accept_pauses_only_for_want_of_descriptors_or_memory)
{
  g_autoptr (GError) emfile = g_error_new_literal (G_IO_ERROR, g_io_error_from_errno (EMFILE), "x");
  g_autoptr (GError) enfile = g_error_new_literal (G_IO_ERROR, g_io_error_from_errno (ENFILE), "x");
  g_autoptr (GError) nomem = g_error_new_literal (G_IO_ERROR, G_IO_ERROR_NO_SPACE, "x");
  g_autoptr (GError) again = g_error_new_literal (G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK, "x");
  g_autoptr (GError) other = g_error_new_literal (G_IO_ERROR, G_IO_ERROR_FAILED, "x");

  cr_assert (tr_net_accept_must_pause (emfile));
  cr_assert (tr_net_accept_must_pause (enfile));
  cr_assert (tr_net_accept_must_pause (nomem));
  cr_assert_not (tr_net_accept_must_pause (again));
  cr_assert_not (tr_net_accept_must_pause (other));
}

/* ---- connection buffers ---- */

Test (tr_net, flush_takes_partial_writes_until_all_is_sent)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GByteArray) received = g_byte_array_new ();
  int pair[2];
  int size = 4096;
  TrNetConn conn;
  TrNetIoStatus status;
  const gsize total = 1024 * 1024;

  cr_assert_eq (socketpair (AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, pair), 0);
  setsockopt (pair[0], SOL_SOCKET, SO_SNDBUF, &size, sizeof size);
  tr_net_conn_init (&conn, pair[0]);
  for (gsize i = 0; i < total; i++) {
    guint8 byte = (guint8) (i * 7);
    g_byte_array_append (conn.out, &byte, 1);
  }
  status = tr_net_conn_flush (&conn, &error);
  cr_assert_eq (status, TR_NET_IO_AGAIN, "a 1 MiB answer into a 4 KiB buffer cannot go at once");
  cr_assert_gt (conn.out_sent, 0);
  cr_assert_eq (tr_net_conn_out_pending (&conn), total - conn.out_sent);
  while (status == TR_NET_IO_AGAIN || received->len < total) {
    guint8 buf[65536];
    ssize_t n = recv (pair[1], buf, sizeof buf, 0);
    if (n > 0)
      g_byte_array_append (received, buf, (guint) n);
    if (status == TR_NET_IO_AGAIN)
      status = tr_net_conn_flush (&conn, &error);
    cr_assert_neq (status, TR_NET_IO_CLOSED, "%s", error ? error->message : "");
  }
  cr_assert_eq (conn.out->len, 0, "the queue is emptied once all is sent");
  cr_assert_eq (conn.out_sent, 0);
  cr_assert_eq (received->len, total);
  for (gsize i = 0; i < total; i++)
    cr_assert_eq (received->data[i], (guint8) (i * 7), "byte %zu", i);
  tr_net_conn_clear (&conn);
  close (pair[1]);
}

Test (tr_net, read_appends_consume_drops_and_eof_is_connection_closed)
{
  g_autoptr (GError) error = NULL;
  int pair[2];
  TrNetConn conn;
  gsize n = 0;

  cr_assert_eq (socketpair (AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, pair), 0);
  tr_net_conn_init (&conn, pair[0]);
  cr_assert_not_null (conn.peer);
  cr_assert_eq (tr_net_conn_read (&conn, 64, &n, &error), TR_NET_IO_AGAIN);
  cr_assert_eq (send (pair[1], "abcdef", 6, 0), 6);
  cr_assert_eq (tr_net_conn_read (&conn, 64, &n, &error), TR_NET_IO_OK);
  cr_assert_eq (n, 6);
  cr_assert_eq (send (pair[1], "gh", 2, 0), 2);
  cr_assert_eq (tr_net_conn_read (&conn, 64, &n, &error), TR_NET_IO_OK);
  cr_assert_eq (conn.in->len, 8, "reads append");
  tr_net_conn_consume (&conn, 3);
  cr_assert_eq (conn.in->len, 5);
  cr_assert_eq (memcmp (conn.in->data, "defgh", 5), 0);
  close (pair[1]);
  cr_assert_eq (tr_net_conn_read (&conn, 64, &n, &error), TR_NET_IO_CLOSED);
  cr_assert (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CONNECTION_CLOSED));
  tr_net_conn_close (&conn);
  cr_assert_eq (conn.fd, -1);
  tr_net_conn_close (&conn); /* twice is harmless */
  tr_net_conn_clear (&conn);
}

/* ---- epoll ---- */

Test (tr_net, epoll_registration_errors_are_reported)
{
  g_autoptr (GError) error = NULL;
  int epoll_fd = tr_net_epoll_new (&error);
  int pair[2];

  cr_assert_geq (epoll_fd, 0);
  cr_assert_eq (socketpair (AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, pair), 0);
  cr_assert (!tr_net_epoll_modify (epoll_fd, pair[0], EPOLLIN, NULL, &error), "MOD of an unregistered fd");
  cr_assert (g_str_has_prefix (error->message, "epoll_ctl MOD of fd "), "%s", error->message);
  g_clear_error (&error);
  cr_assert (tr_net_epoll_add (epoll_fd, pair[0], EPOLLIN, NULL, &error));
  cr_assert (!tr_net_epoll_add (epoll_fd, pair[0], EPOLLIN, NULL, &error), "ADD twice");
  g_clear_error (&error);
  cr_assert (tr_net_epoll_modify (epoll_fd, pair[0], EPOLLIN | EPOLLOUT, NULL, &error));
  cr_assert (tr_net_epoll_remove (epoll_fd, pair[0], &error));
  cr_assert (!tr_net_epoll_remove (epoll_fd, pair[0], &error), "DEL twice");
  close (pair[0]);
  close (pair[1]);
  close (epoll_fd);
}

/* ---- rate-limited log lines ---- */

Test (tr_net, log_limit_admits_one_line_per_kind_and_counts_the_rest)
{
  g_autoptr (TrNetLogLimit) limit = tr_net_log_limit_new ("tr-test", G_TIME_SPAN_HOUR);
  guint suppressed = 99;

  cr_assert (tr_net_log_limit_admit (limit, "a", &suppressed));
  cr_assert_eq (suppressed, 0);
  cr_assert (!tr_net_log_limit_admit (limit, "a", &suppressed));
  cr_assert (!tr_net_log_limit_admit (limit, "a", &suppressed));
  cr_assert (tr_net_log_limit_admit (limit, "b", &suppressed), "another kind is not suppressed by the first");
}

Test (tr_net, log_limit_admits_again_after_the_interval_with_the_count)
{
  g_autoptr (TrNetLogLimit) limit = tr_net_log_limit_new ("tr-test", 20 * G_TIME_SPAN_MILLISECOND);
  gint64 deadline = g_get_monotonic_time () + 10 * G_TIME_SPAN_SECOND;
  guint suppressed = 0;
  guint refused = 0;

  cr_assert (tr_net_log_limit_admit (limit, "a", &suppressed));
  while (!tr_net_log_limit_admit (limit, "a", &suppressed)) {
    refused++;
    cr_assert_lt (g_get_monotonic_time (), deadline, "never admitted again");
    g_usleep (1000);
  }
  cr_assert_eq (suppressed, refused, "the admitted line reports every refused one");
}

Test (tr_net, log_limit_suffix_names_the_count_and_the_interval)
{
  g_autoptr (TrNetLogLimit) second = tr_net_log_limit_new ("tr-test", G_TIME_SPAN_SECOND);
  g_autoptr (TrNetLogLimit) ten = tr_net_log_limit_new ("tr-test", 10 * G_TIME_SPAN_SECOND);
  g_autofree char *none = tr_net_log_limit_suffix (second, 0);
  g_autofree char *three = tr_net_log_limit_suffix (second, 3);
  g_autofree char *five = tr_net_log_limit_suffix (ten, 5);

  cr_assert_str_eq (none, "");
  cr_assert_str_eq (three, " (3 similar messages suppressed in the last second)");
  cr_assert_str_eq (five, " (5 similar messages suppressed in the last 10 s)");
}

Test (tr_net, log_limit_bounds_the_number_of_kinds)
{
  g_autoptr (TrNetLogLimit) limit = tr_net_log_limit_new ("tr-test", G_TIME_SPAN_HOUR);
  guint suppressed = 0;

  for (guint i = 0; i < TR_NET_LOG_LIMIT_MAX_KINDS; i++) {
    g_autofree char *kind = g_strdup_printf ("kind %u", i);
    cr_assert (tr_net_log_limit_admit (limit, kind, &suppressed));
  }
  cr_assert (tr_net_log_limit_admit (limit, "one too many", &suppressed), "the shared slot admits its first line");
  cr_assert (!tr_net_log_limit_admit (limit, "and another", &suppressed), "kinds past the limit share one count");
  cr_assert (!tr_net_log_limit_admit (limit, "kind 0", &suppressed), "known kinds keep their own count");
}

/* Lines written by tr_net_log_limited(), captured instead of printed. */
static GPtrArray *captured;

static GLogWriterOutput
capture_writer (GLogLevelFlags level, const GLogField *fields, gsize n_fields, gpointer user_data)
{
  (void) level;
  (void) user_data;
  for (gsize i = 0; i < n_fields; i++)
    if (strcmp (fields[i].key, "MESSAGE") == 0)
      g_ptr_array_add (captured, g_strdup (fields[i].value));
  return G_LOG_WRITER_HANDLED;
}

static void
capture_start (void)
{
  captured = g_ptr_array_new_with_free_func (g_free);
  g_log_set_writer_func (capture_writer, NULL, NULL);
}

Test (tr_net, log_line_says_suppressed_only_when_something_was, .init = capture_start)
{
  g_autoptr (TrNetLogLimit) limit = tr_net_log_limit_new ("tr-test", 20 * G_TIME_SPAN_MILLISECOND);
  gint64 deadline = g_get_monotonic_time () + 10 * G_TIME_SPAN_SECOND;

  tr_net_log_limited (limit, "a", G_LOG_LEVEL_WARNING, "peer:1", "first %d", 1);
  cr_assert_eq (captured->len, 1);
  cr_assert_str_eq (g_ptr_array_index (captured, 0), "first 1", "nothing was suppressed: no suffix");
  tr_net_log_limited (limit, "a", G_LOG_LEVEL_WARNING, NULL, "refused");
  cr_assert_eq (captured->len, 1, "a second line of the kind within the interval is suppressed");
  while (captured->len < 2) {
    cr_assert_lt (g_get_monotonic_time (), deadline, "never admitted again");
    g_usleep (5000);
    tr_net_log_limited (limit, "a", G_LOG_LEVEL_WARNING, NULL, "again");
  }
  cr_assert (g_str_has_prefix (g_ptr_array_index (captured, 1), "again ("), "%s",
             (char *) g_ptr_array_index (captured, 1));
  cr_assert (g_str_has_suffix (g_ptr_array_index (captured, 1), " similar messages suppressed in the last 20 ms)"),
             "%s", (char *) g_ptr_array_index (captured, 1));
}

Test (tr_net, log_lines_of_two_kinds_do_not_suppress_each_other, .init = capture_start)
{
  g_autoptr (TrNetLogLimit) limit = tr_net_log_limit_new ("tr-test", G_TIME_SPAN_HOUR);

  tr_net_log_limited (limit, "unframed", G_LOG_LEVEL_WARNING, NULL, "unframed binary");
  tr_net_log_limited (limit, "framed compact", G_LOG_LEVEL_WARNING, NULL, "framed compact");
  tr_net_log_limited (limit, "unframed", G_LOG_LEVEL_WARNING, NULL, "unframed binary again");
  cr_assert_eq (captured->len, 2);
  cr_assert_str_eq (g_ptr_array_index (captured, 0), "unframed binary");
  cr_assert_str_eq (g_ptr_array_index (captured, 1), "framed compact");
}
