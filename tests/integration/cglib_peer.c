/* cglib_peer - a c_glib Thrift peer for the integration tests: an
 * independent implementation (generated c_glib client and server) talking
 * to the router.
 *
 *   cglib_peer produce PORT COUNT PREFIX   calls log_event(PREFIX-i) COUNT times,
 *                                          then fire(PREFIX-oneway), then other(1)
 *                                          and prints "unknown-method ok" if the
 *                                          router answered UNKNOWN_METHOD
 *   cglib_peer serve PORT                  a ThriftSimpleServer endpoint that prints
 *                                          "<method> <payload>" per call (stdout)
 */
#include "tr_demo_event_log.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <thrift/c_glib/protocol/thrift_binary_protocol.h>
#include <thrift/c_glib/protocol/thrift_binary_protocol_factory.h>
#include <thrift/c_glib/server/thrift_simple_server.h>
#include <thrift/c_glib/thrift_application_exception.h>
#include <thrift/c_glib/transport/thrift_framed_transport.h>
#include <thrift/c_glib/transport/thrift_framed_transport_factory.h>
#include <thrift/c_glib/transport/thrift_server_socket.h>
#include <thrift/c_glib/transport/thrift_socket.h>

static int
produce (int port, int count, const char *prefix)
{
  GError *error = NULL;
  ThriftSocket *socket = g_object_new (THRIFT_TYPE_SOCKET, "hostname", "127.0.0.1", "port", port, NULL);
  ThriftTransport *framed = g_object_new (THRIFT_TYPE_FRAMED_TRANSPORT, "transport", socket, NULL);
  ThriftProtocol *protocol = g_object_new (THRIFT_TYPE_BINARY_PROTOCOL, "transport", framed, NULL);
  tr_demoEventLogIf *client = g_object_new (TR_DEMO_TYPE_EVENT_LOG_CLIENT, "input_protocol", protocol,
                                           "output_protocol", protocol, NULL);
  int rc = 0;

  if (!thrift_transport_open (framed, &error)) {
    fprintf (stderr, "open: %s\n", error->message);
    return 1;
  }
  for (int i = 0; i < count && rc == 0; i++) {
    char text[256];
    GByteArray *data = g_byte_array_new ();
    snprintf (text, sizeof text, "%s-%d", prefix, i);
    g_byte_array_append (data, (const guint8 *) text, (guint) strlen (text));
    if (!tr_demo_event_log_if_log_event (client, data, &error)) {
      fprintf (stderr, "log_event %d: %s\n", i, error->message);
      rc = 1;
    }
    g_byte_array_unref (data);
  }
  if (rc == 0) {
    char text[256];
    GByteArray *data = g_byte_array_new ();
    snprintf (text, sizeof text, "%s-oneway", prefix);
    g_byte_array_append (data, (const guint8 *) text, (guint) strlen (text));
    if (!tr_demo_event_log_if_fire (client, data, &error)) {
      fprintf (stderr, "fire: %s\n", error->message);
      rc = 1;
    }
    g_byte_array_unref (data);
  }
  if (rc == 0) {
    if (tr_demo_event_log_if_other (client, 1, &error)) {
      fprintf (stderr, "other: expected UNKNOWN_METHOD, got success\n");
      rc = 1;
    } else if (error->domain == THRIFT_APPLICATION_EXCEPTION_ERROR
               && error->code == THRIFT_APPLICATION_EXCEPTION_ERROR_UNKNOWN_METHOD) {
      printf ("unknown-method ok\n");
    } else {
      fprintf (stderr, "other: unexpected error %s\n", error->message);
      rc = 1;
    }
    g_clear_error (&error);
  }
  thrift_transport_close (framed, NULL);
  g_object_unref (client);
  g_object_unref (protocol);
  g_object_unref (framed);
  g_object_unref (socket);
  return rc;
}

/* ---- endpoint: a handler subclass of the generated tr_demoEventLogHandler */

typedef struct {
  tr_demoEventLogHandler parent;
} PeerHandler;
typedef struct {
  tr_demoEventLogHandlerClass parent;
} PeerHandlerClass;

GType peer_handler_get_type (void);
G_DEFINE_TYPE (PeerHandler, peer_handler, TR_DEMO_TYPE_EVENT_LOG_HANDLER)

static void
print_call (const char *method, const GByteArray *data)
{
  printf ("%s %.*s\n", method, (int) data->len, (const char *) data->data);
  fflush (stdout);
}

static gboolean
peer_log_event (tr_demoEventLogIf *iface, const GByteArray *data, GError **error)
{
  (void) iface;
  (void) error;
  print_call ("log_event", data);
  return TRUE;
}

static gboolean
peer_fire (tr_demoEventLogIf *iface, const GByteArray *data, GError **error)
{
  (void) iface;
  (void) error;
  print_call ("fire", data);
  return TRUE;
}

static gboolean
peer_other (tr_demoEventLogIf *iface, const gint32 x, GError **error)
{
  (void) iface;
  (void) error;
  printf ("other %d\n", x);
  fflush (stdout);
  return TRUE;
}

static void
peer_handler_init (PeerHandler *self)
{
  (void) self;
}

static void
peer_handler_class_init (PeerHandlerClass *klass)
{
  tr_demoEventLogHandlerClass *handler = TR_DEMO_EVENT_LOG_HANDLER_CLASS (klass);
  handler->log_event = peer_log_event;
  handler->fire = peer_fire;
  handler->other = peer_other;
}

static int
serve (int port)
{
  GError *error = NULL;
  PeerHandler *handler = g_object_new (peer_handler_get_type (), NULL);
  tr_demoEventLogProcessor *processor = g_object_new (TR_DEMO_TYPE_EVENT_LOG_PROCESSOR, "handler", handler, NULL);
  ThriftServerTransport *transport = g_object_new (THRIFT_TYPE_SERVER_SOCKET, "port", port, NULL);
  ThriftTransportFactory *tf = g_object_new (THRIFT_TYPE_FRAMED_TRANSPORT_FACTORY, NULL);
  ThriftProtocolFactory *pf = g_object_new (THRIFT_TYPE_BINARY_PROTOCOL_FACTORY, NULL);
  ThriftServer *server = g_object_new (THRIFT_TYPE_SIMPLE_SERVER, "processor", processor, "server_transport",
                                       transport, "input_transport_factory", tf, "output_transport_factory", tf,
                                       "input_protocol_factory", pf, "output_protocol_factory", pf, NULL);

  signal (SIGPIPE, SIG_IGN);
  printf ("listening %d\n", port);
  fflush (stdout);
  /* Runs until killed by the test (by PID). */
  thrift_server_serve (server, &error);
  fprintf (stderr, "serve: %s\n", error ? error->message : "stopped");
  return 1;
}

int
main (int argc, char **argv)
{
  if (argc == 5 && strcmp (argv[1], "produce") == 0)
    return produce (atoi (argv[2]), atoi (argv[3]), argv[4]);
  if (argc == 3 && strcmp (argv[1], "serve") == 0)
    return serve (atoi (argv[2]));
  fprintf (stderr, "usage: cglib_peer produce PORT COUNT PREFIX | cglib_peer serve PORT\n");
  return 2;
}
