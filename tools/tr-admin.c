/* tr-admin.c - command-line client of the admin service (thrift/admin.thrift,
 * docs/operations.md "Admin (tr-admin)").
 *
 *   tr-admin [-c conf/router.conf | -a HOST:PORT] [--token-file F] [--json] COMMAND ...
 *
 * Uses the c_glib code generated from admin.thrift: a short-lived tool, so
 * c_glib's per-object leak does not matter here (the router side is
 * hand-encoded, router/tr_admin.c).  Exit status: 0 done, 1 refused by the
 * router (AdminError; message on stderr), 2 usage error, 3 cannot reach the
 * router (or it broke the connection).
 */
#include "tr_admin_admin.h"
#include "tr_config.h"
#include "tr_frame.h"

#include <glib.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <thrift/c_glib/protocol/thrift_binary_protocol.h>
#include <thrift/c_glib/thrift_application_exception.h>
#include <thrift/c_glib/transport/thrift_framed_transport.h>
#include <thrift/c_glib/transport/thrift_socket.h>

#define EXIT_REFUSED 1
#define EXIT_USAGE 2
#define EXIT_UNREACHABLE 3

typedef struct {
  ThriftSocket *socket;
  ThriftTransport *framed;
  ThriftProtocol *protocol;
  tr_adminAdminIf *client;
  char *token;
  gboolean json;
} Session;

typedef int (*CommandFunc) (Session *session, char **args);

typedef struct {
  const char *name;
  const char *usage;
  int min_args;
  int max_args;
  const char *help;
  CommandFunc func;
} Command;

static const char *const main_usage =
    "Usage: tr-admin [-c ROUTER_CONF | -a HOST:PORT] [--token-file FILE] [--json] COMMAND [ARGS]\n"
    "\n"
    "Commands:\n"
    "  status                           node identity, store and producer counters, rates\n"
    "  services                         services with their rpcs and seqid range\n"
    "  endpoints [SERVICE]              endpoints: state, acknowledged seqid, lag (RPCs, bytes),\n"
    "                                   delivered, RPCs/s out, last error\n"
    "  stop-send SERVICE ENDPOINT       stop delivery to an endpoint (kept across restarts)\n"
    "  start-send SERVICE ENDPOINT      resume delivery to an endpoint (kept across restarts)\n"
    "  skip SERVICE ENDPOINT SEQID|+N   next RPC sent is SEQID, or skip the next N RPCs\n"
    "  rewind SERVICE ENDPOINT SEQID    deliver again from SEQID (must still be stored)\n"
    "  dump RPC_ID                      one stored RPC: name, type, size, hex\n"
    "  dead-letters SERVICE [--from N] [--max N]\n"
    "                                   RPCs given up (on_failure = skip) with the reason\n"
    "  reload                           re-read router.conf and the service files, apply changes\n"
    "\n"
    "Options:\n"
    "  -c FILE           read admin_listen and admin_token_file from the router configuration\n"
    "  -a HOST:PORT      admin address (default 127.0.0.1:9091)\n"
    "  --token-file FILE admin token (overrides the one from -c)\n"
    "  --json            machine-readable output (one JSON document on stdout)\n"
    "  -h, --help        this help; 'tr-admin COMMAND --help' for one command\n"
    "\n"
    "Exit status: 0 done, 1 refused by the router, 2 usage error, 3 cannot reach the router.\n";

/* ---- output helpers ---- */

static void
json_string (GString *out, const char *text)
{
  g_string_append_c (out, '"');
  for (const char *p = text != NULL ? text : ""; *p != '\0'; p++) {
    guchar c = (guchar) *p;
    if (c == '"' || c == '\\')
      g_string_append_printf (out, "\\%c", c);
    else if (c < 0x20)
      g_string_append_printf (out, "\\u%04x", c);
    else
      g_string_append_c (out, (char) c);
  }
  g_string_append_c (out, '"');
}

/* Prints @rows (each a NULL-terminated char* array; row 0 = header) with
 * every column padded to its widest cell; the last column is not padded. */
static void
print_table (GPtrArray *rows)
{
  guint columns = rows->len > 0 ? g_strv_length (g_ptr_array_index (rows, 0)) : 0;
  g_autofree gsize *width = g_new0 (gsize, columns + 1);

  for (guint r = 0; r < rows->len; r++) {
    char **row = g_ptr_array_index (rows, r);
    for (guint c = 0; c < columns && row[c] != NULL; c++)
      width[c] = MAX (width[c], strlen (row[c]));
  }
  for (guint r = 0; r < rows->len; r++) {
    char **row = g_ptr_array_index (rows, r);
    for (guint c = 0; c < columns && row[c] != NULL; c++) {
      if (c + 1 < columns)
        printf ("%-*s  ", (int) width[c], row[c]);
      else
        printf ("%s", row[c]);
    }
    printf ("\n");
  }
}

/* Ends a listing: @json is the open JSON array of its items ("[" + items),
 * @rows the table (header first).  Prints one or the other as asked, and
 * frees @json. */
static void
print_listing (const Session *session, GString *json, GPtrArray *rows)
{
  g_string_append (json, "]");
  if (session->json)
    printf ("%s\n", json->str);
  else
    print_table (rows);
  g_string_free (json, TRUE);
}

static char *
i64 (gint64 value)
{
  return g_strdup_printf ("%" G_GINT64_FORMAT, value);
}

/* ---- errors ---- */

/* After a failed call: an AdminError is a refusal (1), anything else means
 * the router could not be reached or broke the connection (3). */
static int
call_failed (const char *what, tr_adminAdminError *admin_error, GError *error)
{
  int rc;

  if (admin_error != NULL) {
    g_printerr ("tr-admin: %s refused (code %d): %s\n", what, admin_error->code,
                admin_error->message != NULL ? admin_error->message : "");
    g_object_unref (admin_error);
    rc = EXIT_REFUSED;
  } else if (g_error_matches (error, THRIFT_APPLICATION_EXCEPTION_ERROR,
                              THRIFT_APPLICATION_EXCEPTION_ERROR_UNKNOWN_METHOD)) {
    /* The producer port, or an endpoint, answers any admin call so. */
    g_printerr ("tr-admin: %s: the server at this address does not know the admin calls (%s): it is not a "
                "thriftrouter admin port; use admin_listen from router.conf, not listen\n",
                what, error->message);
    rc = EXIT_UNREACHABLE;
  } else {
    g_printerr ("tr-admin: %s: cannot reach the router: %s\n", what, error != NULL ? error->message : "?");
    rc = EXIT_UNREACHABLE;
  }
  g_clear_error (&error);
  return rc;
}

/* ---- commands ---- */

static int
cmd_status (Session *session, char **args)
{
  /* c_glib reads a struct result into an object the caller provides. */
  tr_adminNodeStatus *status = g_object_new (TR_ADMIN_TYPE_NODE_STATUS, NULL);
  tr_adminAdminError *admin_error = NULL;
  GError *error = NULL;

  (void) args;
  if (!tr_admin_admin_if_status (session->client, &status, session->token, &admin_error, &error)) {
    g_object_unref (status);
    return call_failed ("status", admin_error, error);
  }
  if (session->json) {
    GString *out = g_string_new ("{\"server_id\": ");
    json_string (out, status->server_id);
    g_string_append (out, ", \"server_type\": ");
    json_string (out, status->server_type);
    g_string_append_printf (out,
                            ", \"epoch\": %" G_GINT64_FORMAT ", \"head_rpc_id\": %" G_GINT64_FORMAT
                            ", \"store_bytes\": %" G_GINT64_FORMAT ", \"store_parts\": %d"
                            ", \"producer_connections\": %d, \"rpcs_in\": %" G_GINT64_FORMAT
                            ", \"rpcs_committed\": %" G_GINT64_FORMAT ", \"commit_errors\": %" G_GINT64_FORMAT
                            ", \"rpcs_in_per_sec\": %.1f, \"commit_p50_us\": %" G_GINT64_FORMAT
                            ", \"commit_p99_us\": %" G_GINT64_FORMAT ", \"cache_rpcs\": %" G_GINT64_FORMAT
                            ", \"cache_bytes\": %" G_GINT64_FORMAT ", \"cache_limit_bytes\": %" G_GINT64_FORMAT
                            ", \"reads_from_cache\": %" G_GINT64_FORMAT ", \"reads_from_disk\": %" G_GINT64_FORMAT "}",
                            status->epoch, status->head_rpc_id, status->store_bytes, status->store_parts,
                            status->producer_connections, status->rpcs_in, status->rpcs_committed,
                            status->commit_errors, status->rpcs_in_per_sec, status->commit_p50_us,
                            status->commit_p99_us, status->cache_rpcs, status->cache_bytes,
                            status->cache_limit_bytes, status->reads_from_cache, status->reads_from_disk);
    printf ("%s\n", out->str);
    g_string_free (out, TRUE);
  } else {
    printf ("server_id             %s\n", status->server_id);
    printf ("server_type           %s\n", status->server_type);
    printf ("epoch                 %" G_GINT64_FORMAT "\n", status->epoch);
    printf ("head_rpc_id           %" G_GINT64_FORMAT "\n", status->head_rpc_id);
    printf ("store_bytes           %" G_GINT64_FORMAT "\n", status->store_bytes);
    printf ("store_parts           %d\n", status->store_parts);
    printf ("producer_connections  %d\n", status->producer_connections);
    printf ("rpcs_in               %" G_GINT64_FORMAT "\n", status->rpcs_in);
    printf ("rpcs_committed        %" G_GINT64_FORMAT "\n", status->rpcs_committed);
    printf ("commit_errors         %" G_GINT64_FORMAT "\n", status->commit_errors);
    printf ("rpcs_in_per_sec       %.1f  (last 10 s)\n", status->rpcs_in_per_sec);
    printf ("commit_p50_us         <= %" G_GINT64_FORMAT "  (last 10 s)\n", status->commit_p50_us);
    printf ("commit_p99_us         <= %" G_GINT64_FORMAT "  (last 10 s)\n", status->commit_p99_us);
    printf ("cache_rpcs            %" G_GINT64_FORMAT "\n", status->cache_rpcs);
    printf ("cache_bytes           %" G_GINT64_FORMAT " of %" G_GINT64_FORMAT "\n", status->cache_bytes,
            status->cache_limit_bytes);
    printf ("reads_from_cache      %" G_GINT64_FORMAT "\n", status->reads_from_cache);
    printf ("reads_from_disk       %" G_GINT64_FORMAT "\n", status->reads_from_disk);
  }
  g_object_unref (status);
  return 0;
}

static int
cmd_services (Session *session, char **args)
{
  GPtrArray *services = g_ptr_array_new_with_free_func (g_object_unref);
  tr_adminAdminError *admin_error = NULL;
  GError *error = NULL;
  GString *out = g_string_new ("[");
  g_autoptr (GPtrArray) rows = g_ptr_array_new_with_free_func ((GDestroyNotify) g_strfreev);

  (void) args;
  if (!tr_admin_admin_if_services (session->client, &services, session->token, &admin_error, &error)) {
    g_ptr_array_unref (services);
    g_string_free (out, TRUE);
    return call_failed ("services", admin_error, error);
  }
  g_ptr_array_add (rows, g_strsplit ("SERVICE FIRST HEAD ENDPOINTS RPCS", " ", -1));
  for (guint i = 0; i < services->len; i++) {
    tr_adminServiceInfo *service = g_ptr_array_index (services, i);
    g_autoptr (GPtrArray) rpcs = g_ptr_array_new ();
    char **row = g_new0 (char *, 6);
    for (guint r = 0; service->rpcs != NULL && r < service->rpcs->len; r++)
      g_ptr_array_add (rpcs, g_ptr_array_index (service->rpcs, r));
    g_ptr_array_add (rpcs, NULL);
    row[0] = g_strdup (service->name);
    row[1] = i64 (service->first_seqid);
    row[2] = i64 (service->head_seqid);
    row[3] = i64 (service->endpoints);
    row[4] = g_strjoinv (",", (char **) rpcs->pdata);
    g_ptr_array_add (rows, row);
    g_string_append (out, i > 0 ? ", {\"name\": " : "{\"name\": ");
    json_string (out, service->name);
    g_string_append (out, ", \"rpcs\": [");
    for (guint r = 0; service->rpcs != NULL && r < service->rpcs->len; r++) {
      if (r > 0)
        g_string_append (out, ", ");
      json_string (out, g_ptr_array_index (service->rpcs, r));
    }
    g_string_append_printf (out, "], \"first_seqid\": %" G_GINT64_FORMAT ", \"head_seqid\": %" G_GINT64_FORMAT
                            ", \"endpoints\": %d}", service->first_seqid, service->head_seqid, service->endpoints);
  }
  print_listing (session, out, rows);
  g_ptr_array_unref (services);
  return 0;
}

static int
cmd_endpoints (Session *session, char **args)
{
  GPtrArray *endpoints = g_ptr_array_new_with_free_func (g_object_unref);
  tr_adminAdminError *admin_error = NULL;
  GError *error = NULL;
  GString *out = g_string_new ("[");
  g_autoptr (GPtrArray) rows = g_ptr_array_new_with_free_func ((GDestroyNotify) g_strfreev);

  if (!tr_admin_admin_if_endpoints (session->client, &endpoints, session->token, args[0] != NULL ? args[0] : "",
                                    &admin_error, &error)) {
    g_ptr_array_unref (endpoints);
    g_string_free (out, TRUE);
    return call_failed ("endpoints", admin_error, error);
  }
  g_ptr_array_add (rows, g_strsplit ("SERVICE ENDPOINT STATE ACKED HEAD LAG RETRIES STOP_SEND LAG_BYTES DELIVERED "
                                      "OUT/S LAST_ERROR",
                                      " ", -1));
  for (guint i = 0; i < endpoints->len; i++) {
    tr_adminEndpointInfo *e = g_ptr_array_index (endpoints, i);
    char **row = g_new0 (char *, 13);
    row[0] = g_strdup (e->service_name);
    row[1] = g_strdup (e->endpoint);
    row[2] = g_strdup (e->state);
    row[3] = i64 (e->acked_seqid);
    row[4] = i64 (e->head_seqid);
    row[5] = i64 (e->lag);
    row[6] = i64 (e->retries);
    row[7] = g_strdup (e->stop_send ? "yes" : "no");
    row[8] = e->lag_bytes >= 0 ? i64 (e->lag_bytes) : g_strdup ("?");
    row[9] = i64 (e->delivered);
    row[10] = g_strdup_printf ("%.1f", e->rpcs_out_per_sec);
    row[11] = g_strdup (e->last_error != NULL && e->last_error[0] != '\0' ? e->last_error : "-");
    g_ptr_array_add (rows, row);
    g_string_append (out, i > 0 ? ", {\"service\": " : "{\"service\": ");
    json_string (out, e->service_name);
    g_string_append (out, ", \"endpoint\": ");
    json_string (out, e->endpoint);
    g_string_append (out, ", \"state\": ");
    json_string (out, e->state);
    g_string_append_printf (out,
                            ", \"acked_seqid\": %" G_GINT64_FORMAT ", \"head_seqid\": %" G_GINT64_FORMAT
                            ", \"lag\": %" G_GINT64_FORMAT ", \"retries\": %d, \"stop_send\": %s, \"last_error\": ",
                            e->acked_seqid, e->head_seqid, e->lag, e->retries, e->stop_send ? "true" : "false");
    json_string (out, e->last_error);
    g_string_append_printf (out, ", \"delivered\": %" G_GINT64_FORMAT ", \"rpcs_out_per_sec\": %.1f"
                            ", \"lag_bytes\": %" G_GINT64_FORMAT "}",
                            e->delivered, e->rpcs_out_per_sec, e->lag_bytes);
  }
  print_listing (session, out, rows);
  g_ptr_array_unref (endpoints);
  return 0;
}

static void
print_done (Session *session, const char *text)
{
  if (session->json)
    printf ("{\"ok\": true}\n");
  else
    printf ("%s\n", text);
}

static int
set_stop (Session *session, char **args, gboolean stop)
{
  tr_adminAdminError *admin_error = NULL;
  GError *error = NULL;
  g_autofree char *done = NULL;

  if (!tr_admin_admin_if_set_stop_send (session->client, session->token, args[0], args[1], stop, &admin_error,
                                        &error))
    return call_failed (stop ? "stop-send" : "start-send", admin_error, error);
  done = g_strdup_printf ("%s/%s: stop_send = %s (written to the service file)", args[0], args[1],
                          stop ? "true" : "false");
  print_done (session, done);
  return 0;
}

static int
cmd_stop_send (Session *session, char **args)
{
  return set_stop (session, args, TRUE);
}

static int
cmd_start_send (Session *session, char **args)
{
  return set_stop (session, args, FALSE);
}

static gboolean
parse_positive (const char *text, gint64 *out)
{
  guint64 value;

  if (!g_ascii_string_to_unsigned (text, 10, 1, G_MAXINT64, &value, NULL))
    return FALSE;
  *out = (gint64) value;
  return TRUE;
}

static int
move (Session *session, char **args, gboolean forward)
{
  const char *what = forward ? "skip" : "rewind";
  tr_adminAdminError *admin_error = NULL;
  GError *error = NULL;
  g_autofree char *done = NULL;
  gint64 seqid = 0, by = 0, next = 0;
  gboolean ok;

  if (forward && args[2][0] == '+') {
    if (!parse_positive (args[2] + 1, &by)) {
      g_printerr ("tr-admin: skip: '%s' is not a count (+1, +2, ...)\n", args[2]);
      return EXIT_USAGE;
    }
  } else if (!parse_positive (args[2], &seqid)) {
    g_printerr ("tr-admin: %s: '%s' is not a seqid (1, 2, ...)\n", what, args[2]);
    return EXIT_USAGE;
  }
  ok = forward ? tr_admin_admin_if_skip (session->client, &next, session->token, args[0], args[1], seqid, by,
                                         &admin_error, &error)
               : tr_admin_admin_if_rewind (session->client, session->token, args[0], args[1], seqid, &admin_error,
                                           &error);
  if (!ok)
    return call_failed (what, admin_error, error);
  if (!forward)
    next = seqid;
  if (session->json) {
    printf ("{\"ok\": true, \"next_seqid\": %" G_GINT64_FORMAT "}\n", next);
    return 0;
  }
  done = g_strdup_printf ("%s/%s: next seqid to send is %" G_GINT64_FORMAT, args[0], args[1], next);
  print_done (session, done);
  return 0;
}

static int
cmd_skip (Session *session, char **args)
{
  return move (session, args, TRUE);
}

static int
cmd_rewind (Session *session, char **args)
{
  return move (session, args, FALSE);
}

static const char *
msg_type_name (TrMsgType type)
{
  switch (type) {
  case TR_MSG_CALL:
    return "CALL";
  case TR_MSG_REPLY:
    return "REPLY";
  case TR_MSG_EXCEPTION:
    return "EXCEPTION";
  case TR_MSG_ONEWAY:
    return "ONEWAY";
  }
  return "?";
}

static int
cmd_dump (Session *session, char **args)
{
  GByteArray *message = NULL;
  tr_adminAdminError *admin_error = NULL;
  GError *error = NULL;
  g_autofree char *name = NULL;
  GString *hex = g_string_new (NULL);
  TrMsgHeader header;
  TrFrameStatus status;
  gint64 rpc_id;

  if (!parse_positive (args[0], &rpc_id)) {
    g_printerr ("tr-admin: dump: '%s' is not an rpc id (1, 2, ...)\n", args[0]);
    g_string_free (hex, TRUE);
    return EXIT_USAGE;
  }
  if (!tr_admin_admin_if_dump (session->client, &message, session->token, rpc_id, &admin_error, &error)) {
    g_string_free (hex, TRUE);
    return call_failed ("dump", admin_error, error);
  }
  status = tr_frame_parse_header (message->data, message->len, &header);
  name = status == TR_FRAME_OK ? g_strndup ((const char *) header.name, header.name_len) : g_strdup ("?");
  for (guint i = 0; i < message->len; i++)
    g_string_append_printf (hex, "%02x", message->data[i]);
  if (session->json) {
    GString *out = g_string_new (NULL);
    g_string_append_printf (out, "{\"rpc_id\": %" G_GINT64_FORMAT ", \"name\": ", rpc_id);
    json_string (out, name);
    g_string_append (out, ", \"type\": ");
    json_string (out, status == TR_FRAME_OK ? msg_type_name (header.type) : "?");
    g_string_append_printf (out, ", \"size\": %u, \"hex\": \"%s\"}", message->len, hex->str);
    printf ("%s\n", out->str);
    g_string_free (out, TRUE);
  } else {
    printf ("rpc_id  %" G_GINT64_FORMAT "\nname    %s\ntype    %s\nsize    %u bytes\n", rpc_id, name,
            status == TR_FRAME_OK ? msg_type_name (header.type) : tr_frame_status_to_string (status), message->len);
    for (guint off = 0; off < message->len; off += 16) {
      printf ("%08x ", off);
      for (guint i = off; i < off + 16; i++)
        printf (i < message->len ? " %02x" : "   ", i < message->len ? message->data[i] : 0);
      printf ("  ");
      for (guint i = off; i < off + 16 && i < message->len; i++)
        putchar (message->data[i] >= 0x20 && message->data[i] < 0x7f ? message->data[i] : '.');
      printf ("\n");
    }
  }
  g_string_free (hex, TRUE);
  g_byte_array_unref (message);
  return 0;
}

static int
cmd_dead_letters (Session *session, char **args)
{
  GPtrArray *letters = g_ptr_array_new_with_free_func (g_object_unref);
  tr_adminAdminError *admin_error = NULL;
  GError *error = NULL;
  GString *out = g_string_new ("[");
  g_autoptr (GPtrArray) rows = g_ptr_array_new_with_free_func ((GDestroyNotify) g_strfreev);
  const char *service = NULL;
  gint64 from = 0, max = 100;

  for (guint i = 0; args[i] != NULL; i++) {
    gboolean is_from = strcmp (args[i], "--from") == 0;
    if (is_from || strcmp (args[i], "--max") == 0) {
      guint64 value;
      if (args[i + 1] == NULL
          || !g_ascii_string_to_unsigned (args[i + 1], 10, is_from ? 0 : 1, is_from ? G_MAXINT64 : 10000, &value,
                                          NULL)) {
        g_printerr ("tr-admin: dead-letters: %s needs %s\n", args[i], is_from ? "an index (0, 1, ...)" : "1..10000");
        g_ptr_array_unref (letters);
        g_string_free (out, TRUE);
        return EXIT_USAGE;
      }
      *(is_from ? &from : &max) = (gint64) value;
      i++;
    } else if (service == NULL && args[i][0] != '-') {
      service = args[i];
    } else {
      g_printerr ("tr-admin: dead-letters: unexpected '%s'\nTry 'tr-admin dead-letters --help'.\n", args[i]);
      g_ptr_array_unref (letters);
      g_string_free (out, TRUE);
      return EXIT_USAGE;
    }
  }
  if (service == NULL) {
    g_printerr ("tr-admin: usage: tr-admin [OPTIONS] dead-letters SERVICE [--from N] [--max N]\n");
    g_ptr_array_unref (letters);
    g_string_free (out, TRUE);
    return EXIT_USAGE;
  }
  if (!tr_admin_admin_if_dead_letters (session->client, &letters, session->token, service, from, (gint32) max,
                                       &admin_error, &error)) {
    g_ptr_array_unref (letters);
    g_string_free (out, TRUE);
    return call_failed ("dead-letters", admin_error, error);
  }
  g_ptr_array_add (rows, g_strsplit ("INDEX SEQID RPC_ID REASON", " ", -1));
  for (guint i = 0; i < letters->len; i++) {
    tr_adminDeadLetter *l = g_ptr_array_index (letters, i);
    char **row = g_new0 (char *, 5);
    row[0] = i64 (l->index);
    row[1] = i64 (l->seqid);
    row[2] = i64 (l->rpc_id);
    row[3] = g_strdup (l->reason);
    g_ptr_array_add (rows, row);
    g_string_append_printf (out,
                            "%s{\"index\": %" G_GINT64_FORMAT ", \"seqid\": %" G_GINT64_FORMAT
                            ", \"rpc_id\": %" G_GINT64_FORMAT ", \"reason\": ",
                            i > 0 ? ", " : "", l->index, l->seqid, l->rpc_id);
    json_string (out, l->reason);
    g_string_append (out, "}");
  }
  print_listing (session, out, rows);
  g_ptr_array_unref (letters);
  return 0;
}

static int
cmd_reload (Session *session, char **args)
{
  GPtrArray *changes = g_ptr_array_new_with_free_func (g_free);
  tr_adminAdminError *admin_error = NULL;
  GError *error = NULL;
  g_autoptr (GString) out = g_string_new ("{\"ok\": true, \"changes\": [");

  (void) args;
  if (!tr_admin_admin_if_reload (session->client, &changes, session->token, &admin_error, &error)) {
    g_ptr_array_unref (changes);
    return call_failed ("reload", admin_error, error);
  }
  for (guint i = 0; i < changes->len; i++) {
    if (i > 0)
      g_string_append (out, ", ");
    json_string (out, g_ptr_array_index (changes, i));
    if (!session->json)
      printf ("%s\n", (char *) g_ptr_array_index (changes, i));
  }
  g_string_append (out, "]}");
  if (session->json)
    printf ("%s\n", out->str);
  else
    printf ("reload done: %u change%s\n", changes->len, changes->len == 1 ? "" : "s");
  g_ptr_array_unref (changes);
  return 0;
}

static const Command commands[] = {
  { "status", "status", 0, 0,
    "Node identity (server_id, type, epoch), store head/size/parts, producer counters, RPCs/s\n"
    "committed and commit latency p50/p99 over the last 10 s (latency as the upper bound of its\n"
    "power-of-two bucket in microseconds).",
    cmd_status },
  { "services", "services", 0, 0, "Every service with its rpc names and the seqids it still stores (first..head).",
    cmd_services },
  { "endpoints", "endpoints [SERVICE]", 0, 1,
    "Endpoints of SERVICE (all services without it): state (STOPPED, CONNECTING, SENDING, BACKOFF),\n"
    "last acknowledged seqid, service head, lag in RPCs, consecutive failures, stop_send,\n"
    "LAG_BYTES (data-store bytes from its first unacknowledged RPC to the service head; RPCs of\n"
    "other services stored in between count too, so an upper bound; ? if unreadable), DELIVERED\n"
    "(RPCs it acknowledged since the node started), OUT/S (delivered per second over the last\n"
    "10 s), last error.",
    cmd_endpoints },
  { "stop-send", "stop-send SERVICE ENDPOINT", 2, 2,
    "Stops delivery to ENDPOINT at once; its position is kept and RPCs pile up on disk.\n"
    "Written into conf/services/SERVICE.conf (stop_send = true) so it survives restarts.",
    cmd_stop_send },
  { "start-send", "start-send SERVICE ENDPOINT", 2, 2,
    "Resumes delivery to ENDPOINT from its first unacknowledged seqid, and writes\n"
    "stop_send = false into conf/services/SERVICE.conf.",
    cmd_start_send },
  { "skip", "skip SERVICE ENDPOINT (SEQID | +N)", 3, 3,
    "Moves ENDPOINT forward: the next RPC it gets is SEQID; the ones before count as delivered\n"
    "(no dead letters).  SEQID from next-to-send up to service head + 1 (= skip everything).\n"
    "+N skips the next N RPCs: the acknowledged seqid becomes acked + N (N from 1 up to the lag),\n"
    "done in one step by the router so it cannot race with deliveries.  Prints the next seqid.",
    cmd_skip },
  { "rewind", "rewind SERVICE ENDPOINT SEQID", 3, 3,
    "Moves ENDPOINT back: RPCs from SEQID on are delivered again.  SEQID must still be stored\n"
    "(see FIRST in 'tr-admin services'); a seqid deleted by retention is refused.",
    cmd_rewind },
  { "dump", "dump RPC_ID", 1, 1, "One stored RPC by global rpc id: name, message type, size and a hex dump.",
    cmd_dump },
  { "dead-letters", "dead-letters SERVICE [--from N] [--max N]", 1, 5,
    "Dead letters of SERVICE, oldest first: RPCs given up after max_retries with on_failure = skip.\n"
    "INDEX (position in the dead-letter file), service SEQID, global RPC_ID (see 'dump') and REASON.\n"
    "--from N starts at index N (default 0), --max N lists at most N (1..10000, default 100).",
    cmd_dead_letters },
  { "reload", "reload", 0, 0,
    "Re-reads router.conf and every service file and applies the differences: services and\n"
    "endpoints added or removed, rpc names, retry/backoff/timeouts/max_inflight/on_failure,\n"
    "stop_send.  Untouched endpoints keep their connection and position; a new endpoint starts\n"
    "at the service head (start = earliest: at the first stored seqid).  Prints one line per\n"
    "change.  Refused as a whole, nothing changed, when a file is invalid (code 6) or when a\n"
    "[router] key other than services changed (code 7: needs a restart).  Same as SIGHUP.",
    cmd_reload },
};

/* ---- connection ---- */

static gboolean
parse_address (const char *text, char **host, guint16 *port)
{
  const char *colon = strrchr (text, ':');
  guint64 value;

  if (colon == NULL || colon == text ||
      !g_ascii_string_to_unsigned (colon + 1, 10, 1, 65535, &value, NULL))
    return FALSE;
  if (text[0] == '[' && colon[-1] == ']')
    *host = g_strndup (text + 1, (gsize) (colon - text - 2));
  else
    *host = g_strndup (text, (gsize) (colon - text));
  *port = (guint16) value;
  return TRUE;
}

static char *
read_token (const char *path)
{
  g_autoptr (GError) error = NULL;
  char *text = NULL;

  if (!g_file_get_contents (path, &text, NULL, &error)) {
    g_printerr ("tr-admin: token file: %s\n", error->message);
    return NULL;
  }
  return g_strstrip (text);
}

static int
usage_error (const char *format, const char *arg)
{
  g_printerr ("tr-admin: ");
  g_printerr (format, arg);
  g_printerr ("\nTry 'tr-admin --help'.\n");
  return EXIT_USAGE;
}

int
main (int argc, char **argv)
{
  const char *config_path = NULL, *address = NULL, *token_file = NULL;
  g_autofree char *host = NULL;
  g_autofree char *config_token_file = NULL;
  guint16 port = 9091;
  Session session = { 0 };
  const Command *command = NULL;
  GError *error = NULL;
  int i, n_args, rc;

  signal (SIGPIPE, SIG_IGN);
  for (i = 1; i < argc && argv[i][0] == '-'; i++) {
    const char *opt = argv[i];
    if (strcmp (opt, "-h") == 0 || strcmp (opt, "--help") == 0) {
      printf ("%s", main_usage);
      return 0;
    } else if (strcmp (opt, "--json") == 0) {
      session.json = TRUE;
    } else if (strcmp (opt, "-c") == 0 || strcmp (opt, "-a") == 0 || strcmp (opt, "--token-file") == 0) {
      if (i + 1 >= argc)
        return usage_error ("option %s needs a value", opt);
      if (opt[1] == 'c')
        config_path = argv[++i];
      else if (opt[1] == 'a')
        address = argv[++i];
      else
        token_file = argv[++i];
    } else {
      return usage_error ("unknown option '%s'", opt);
    }
  }
  if (i >= argc)
    return usage_error ("%s", "missing COMMAND");
  for (guint c = 0; c < G_N_ELEMENTS (commands); c++)
    if (strcmp (commands[c].name, argv[i]) == 0)
      command = &commands[c];
  if (command == NULL)
    return usage_error ("unknown command '%s'", argv[i]);
  i++;
  for (int j = i; j < argc; j++) {
    if (strcmp (argv[j], "--help") == 0 || strcmp (argv[j], "-h") == 0) {
      printf ("Usage: tr-admin [OPTIONS] %s\n\n%s\n", command->usage, command->help);
      return 0;
    }
  }
  n_args = argc - i;
  if (n_args < command->min_args || n_args > command->max_args) {
    g_printerr ("tr-admin: usage: tr-admin [OPTIONS] %s\nTry 'tr-admin %s --help'.\n", command->usage,
                command->name);
    return EXIT_USAGE;
  }
  if (config_path != NULL && address != NULL)
    return usage_error ("%s", "-c and -a exclude each other");
  if (address != NULL && !parse_address (address, &host, &port))
    return usage_error ("'%s' is not HOST:PORT", address);
  if (config_path != NULL) {
    g_autoptr (TrConfig) config = tr_config_load_router (config_path, &error);
    if (config == NULL) {
      g_printerr ("tr-admin: %s\n", error->message);
      g_error_free (error);
      return EXIT_USAGE;
    }
    /* A wildcard listen address is reached on loopback. */
    if (strcmp (config->admin_host, "0.0.0.0") == 0)
      host = g_strdup ("127.0.0.1");
    else if (strcmp (config->admin_host, "::") == 0)
      host = g_strdup ("::1");
    else
      host = g_strdup (config->admin_host);
    port = config->admin_port;
    config_token_file = g_strdup (config->admin_token_file);
  }
  if (host == NULL)
    host = g_strdup ("127.0.0.1");
  if (token_file == NULL)
    token_file = config_token_file;
  session.token = token_file != NULL ? read_token (token_file) : g_strdup ("");
  if (session.token == NULL)
    return EXIT_USAGE;

  session.socket = g_object_new (THRIFT_TYPE_SOCKET, "hostname", host, "port", port, NULL);
  session.framed = g_object_new (THRIFT_TYPE_FRAMED_TRANSPORT, "transport", session.socket, NULL);
  session.protocol = g_object_new (THRIFT_TYPE_BINARY_PROTOCOL, "transport", session.framed, NULL);
  session.client = g_object_new (TR_ADMIN_TYPE_ADMIN_CLIENT, "input_protocol", session.protocol,
                                 "output_protocol", session.protocol, NULL);
  if (!thrift_transport_open (session.framed, &error)) {
    g_printerr ("tr-admin: cannot reach the router at %s:%u: %s\n", host, port, error->message);
    g_error_free (error);
    rc = EXIT_UNREACHABLE;
  } else {
    rc = command->func (&session, argv + i);
    thrift_transport_close (session.framed, NULL);
  }
  g_object_unref (session.client);
  g_object_unref (session.protocol);
  g_object_unref (session.framed);
  g_object_unref (session.socket);
  g_free (session.token);
  return rc;
}
