/* tr-admin.c - command-line client of the admin service (thrift/admin.thrift,
 * docs/operations.md "Admin (tr-admin)").
 *
 *   tr-admin [-c conf/router.conf | -a HOST:PORT] [--token-file F] [--json] COMMAND ...
 *
 * Options are parsed with GOption, so they may come before or after the
 * command (`tr-admin status --json`).  --json output is built with
 * json-glib: one document on stdout, also for an error ({"ok": false,
 * "exit_status": N, "code": C, "error": "..."}; the line on stderr stays).
 *
 * Uses the c_glib code generated from admin.thrift: a short-lived tool, so
 * c_glib's per-object leak does not matter here (the router side is
 * hand-encoded, router/admin/tr_admin.c).  Exit status: 0 done, 1 refused by the
 * router (AdminError; message on stderr), 2 usage error, 3 cannot reach the
 * router (or it broke the connection).
 */
#include "tr_admin_admin.h"
#include "tr_config.h"
#include "tr_frame.h"
#include "tr_admin_dump.h"
#include "tr_thrift_idl.h"

#include <glib.h>
#include <json-glib/json-glib.h>
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
  gint64 from; /* dead-letters --from; -1 = not given */
  gint max;    /* dead-letters --max; -1 = not given */
  const char *idl_path; /* dump --idl; NULL = not given */
  gboolean hex;         /* dump --hex */
  gboolean force;       /* redrive --force */
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

static const char *const commands_summary =
    "Commands:\n"
    "  status                           node identity, store and producer counters, rates\n"
    "  services                         services with their rpcs and seqid range\n"
    "  endpoints [SERVICE]              endpoints: state (BLOCKED on which RPC), acknowledged seqid,\n"
    "                                   lag (RPCs, bytes), delivered, RPCs/s out, last error and when\n"
    "  stop-send SERVICE ENDPOINT       stop delivery to an endpoint (kept across restarts)\n"
    "  start-send SERVICE ENDPOINT      resume delivery to an endpoint (kept across restarts)\n"
    "  skip SERVICE ENDPOINT SEQID|+N   next RPC sent is SEQID, or skip the next N RPCs\n"
    "  rewind SERVICE ENDPOINT SEQID    deliver again from SEQID (must still be stored)\n"
    "  dump (RPC_ID | SERVICE SEQID) [--idl FILE.thrift] [--hex]\n"
    "                                   one stored RPC: ids, name, type, decoded arguments\n"
    "  dead-letters SERVICE [--from N] [--max N]\n"
    "                                   RPCs given up (on_failure = skip), the reason, redriven\n"
    "  redrive SERVICE [FROM [TO]] [--force]\n"
    "                                   send dead letters again, as new RPCs of the service\n"
    "  reload                           re-read router.conf and the service files, apply changes\n"
    "  digest FROM TO                   checksum of the stored records FROM..TO (compare two nodes)\n"
    "\n"
    "Options may come before or after the command.  'tr-admin COMMAND --help' explains one\n"
    "command.  Without -c or -a the admin address is 127.0.0.1:9091.";

static const char *const exit_status_description =
    "Exit status: 0 done, 1 refused by the router, 2 usage error, 3 cannot reach the router.\n"
    "With --json, an error is also one JSON document on stdout:\n"
    "  {\"ok\": false, \"exit_status\": N, \"code\": C, \"error\": \"...\"}  (code: the router's\n"
    "  AdminError code, 0 when the router did not refuse).  Reference: docs/operations.md.";

/* ---- output helpers ---- */

/* Prints @root as one line of JSON on stdout; takes @root. */
static void
print_json (JsonNode *root)
{
  g_autoptr (JsonGenerator) generator = json_generator_new ();
  g_autofree char *text = NULL;

  json_generator_set_root (generator, root);
  text = json_generator_to_data (generator, NULL);
  printf ("%s\n", text);
  json_node_unref (root);
}

/* Prints the document of @builder (a complete value). */
static void
print_builder (JsonBuilder *builder)
{
  print_json (json_builder_get_root (builder));
}

static void
add_string (JsonBuilder *builder, const char *name, const char *value)
{
  json_builder_set_member_name (builder, name);
  json_builder_add_string_value (builder, value != NULL ? value : "");
}

static void
add_int (JsonBuilder *builder, const char *name, gint64 value)
{
  json_builder_set_member_name (builder, name);
  json_builder_add_int_value (builder, value);
}

static void
add_double (JsonBuilder *builder, const char *name, double value)
{
  json_builder_set_member_name (builder, name);
  json_builder_add_double_value (builder, value);
}

static void
add_bool (JsonBuilder *builder, const char *name, gboolean value)
{
  json_builder_set_member_name (builder, name);
  json_builder_add_boolean_value (builder, value);
}

/* The error document of --json: what went wrong, on stdout for scripts
 * (the human line is on stderr as without --json). */
static void
print_json_error (int exit_status, gint64 code, const char *message)
{
  g_autoptr (JsonBuilder) builder = json_builder_new ();

  json_builder_begin_object (builder);
  add_bool (builder, "ok", FALSE);
  add_int (builder, "exit_status", exit_status);
  add_int (builder, "code", code);
  add_string (builder, "error", message);
  json_builder_end_object (builder);
  print_builder (builder);
}

/* Prints "tr-admin: MESSAGE" on stderr and, with --json, the error
 * document; returns @exit_status. */
static int fail (const Session *session, int exit_status, gint64 code, const char *format, ...) G_GNUC_PRINTF (4, 5);

static int
fail (const Session *session, int exit_status, gint64 code, const char *format, ...)
{
  g_autofree char *message = NULL;
  va_list ap;

  va_start (ap, format);
  message = g_strdup_vprintf (format, ap);
  va_end (ap);
  g_printerr ("tr-admin: %s\n", message);
  if (session->json)
    print_json_error (exit_status, code, message);
  return exit_status;
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

/* Ends a listing: @builder holds the open JSON array of its items, @rows
 * the table (header first).  Prints one or the other as asked. */
static void
print_listing (const Session *session, JsonBuilder *builder, GPtrArray *rows)
{
  json_builder_end_array (builder);
  if (session->json)
    print_builder (builder);
  else
    print_table (rows);
}

static char *
i64 (gint64 value)
{
  return g_strdup_printf ("%" G_GINT64_FORMAT, value);
}

/* Unix time in ms as ISO 8601 UTC to the second ("2026-05-04T10:11:12Z");
 * NULL for 0 (no such time). */
static char *
iso_time_ms (gint64 ms)
{
  g_autoptr (GDateTime) time = ms > 0 ? g_date_time_new_from_unix_utc (ms / 1000) : NULL;

  return time != NULL ? g_date_time_format (time, "%Y-%m-%dT%H:%M:%SZ") : NULL;
}

/* ISO string member, or null for 0. */
static void
add_time (JsonBuilder *builder, const char *name, gint64 ms)
{
  g_autofree char *text = iso_time_ms (ms);

  json_builder_set_member_name (builder, name);
  if (text != NULL)
    json_builder_add_string_value (builder, text);
  else
    json_builder_add_null_value (builder);
}

/* ---- errors ---- */

/* After a failed call: an AdminError is a refusal (1), anything else means
 * the router could not be reached or broke the connection (3). */
static int
call_failed (const Session *session, const char *what, tr_adminAdminError *admin_error, GError *error)
{
  int rc;

  if (admin_error != NULL) {
    rc = fail (session, EXIT_REFUSED, admin_error->code, "%s refused (code %d): %s", what, admin_error->code,
               admin_error->message != NULL ? admin_error->message : "");
    g_object_unref (admin_error);
  } else if (g_error_matches (error, THRIFT_APPLICATION_EXCEPTION_ERROR,
                              THRIFT_APPLICATION_EXCEPTION_ERROR_UNKNOWN_METHOD)) {
    /* The producer port, or an endpoint, answers any admin call so. */
    rc = fail (session, EXIT_UNREACHABLE, 0,
               "%s: the server at this address does not know the admin calls (%s): it is not a "
               "thriftrouter admin port; use admin_listen from router.conf, not listen",
               what, error->message);
  } else {
    rc = fail (session, EXIT_UNREACHABLE, 0, "%s: cannot reach the router: %s", what,
               error != NULL ? error->message : "?");
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
    return call_failed (session, "status", admin_error, error);
  }
  if (session->json) {
    g_autoptr (JsonBuilder) builder = json_builder_new ();
    json_builder_begin_object (builder);
    add_string (builder, "server_id", status->server_id);
    add_string (builder, "server_type", status->server_type);
    add_int (builder, "epoch", status->epoch);
    add_int (builder, "head_rpc_id", status->head_rpc_id);
    add_int (builder, "store_bytes", status->store_bytes);
    add_int (builder, "store_parts", status->store_parts);
    add_int (builder, "producer_connections", status->producer_connections);
    add_int (builder, "rpcs_in", status->rpcs_in);
    add_int (builder, "rpcs_committed", status->rpcs_committed);
    add_int (builder, "commit_errors", status->commit_errors);
    add_double (builder, "rpcs_in_per_sec", status->rpcs_in_per_sec);
    add_int (builder, "commit_p50_us", status->commit_p50_us);
    add_int (builder, "commit_p99_us", status->commit_p99_us);
    add_int (builder, "cache_rpcs", status->cache_rpcs);
    add_int (builder, "cache_bytes", status->cache_bytes);
    add_int (builder, "cache_limit_bytes", status->cache_limit_bytes);
    add_int (builder, "reads_from_cache", status->reads_from_cache);
    add_int (builder, "reads_from_disk", status->reads_from_disk);
    json_builder_set_member_name (builder, "fenced");
    json_builder_add_boolean_value (builder, status->fenced);
    json_builder_end_object (builder);
    print_builder (builder);
  } else {
    printf ("server_id             %s\n", status->server_id);
    printf ("server_type           %s\n", status->server_type);
    printf ("epoch                 %" G_GINT64_FORMAT "\n", status->epoch);
    printf ("fenced                %s\n", status->fenced ? "yes: a newer epoch exists, writes are refused" : "no");
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
  g_autoptr (JsonBuilder) out = json_builder_new ();
  g_autoptr (GPtrArray) rows = g_ptr_array_new_with_free_func ((GDestroyNotify) g_strfreev);

  (void) args;
  json_builder_begin_array (out);
  if (!tr_admin_admin_if_services (session->client, &services, session->token, &admin_error, &error)) {
    g_ptr_array_unref (services);
    return call_failed (session, "services", admin_error, error);
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
    json_builder_begin_object (out);
    add_string (out, "name", service->name);
    json_builder_set_member_name (out, "rpcs");
    json_builder_begin_array (out);
    for (guint r = 0; service->rpcs != NULL && r < service->rpcs->len; r++)
      json_builder_add_string_value (out, g_ptr_array_index (service->rpcs, r));
    json_builder_end_array (out);
    add_int (out, "first_seqid", service->first_seqid);
    add_int (out, "head_seqid", service->head_seqid);
    add_int (out, "endpoints", service->endpoints);
    json_builder_end_object (out);
  }
  print_listing (session, out, rows);
  g_ptr_array_unref (services);
  return 0;
}

/* LAST_ERROR of the table: "-", or "TIME ERROR", with " (resolved at
 * TIME)" once the endpoint recovered, so an old error does not read as a
 * current one. */
static char *
last_error_text (const tr_adminEndpointInfo *e)
{
  g_autofree char *when = iso_time_ms (e->last_error_time_ms);
  g_autofree char *resolved = iso_time_ms (e->last_error_resolved_ms);

  if (e->last_error == NULL || e->last_error[0] == '\0')
    return g_strdup ("-");
  if (resolved != NULL)
    return g_strdup_printf ("%s %s (resolved at %s)", when != NULL ? when : "?", e->last_error, resolved);
  return g_strdup_printf ("%s %s", when != NULL ? when : "?", e->last_error);
}

static int
cmd_endpoints (Session *session, char **args)
{
  GPtrArray *endpoints = g_ptr_array_new_with_free_func (g_object_unref);
  tr_adminAdminError *admin_error = NULL;
  GError *error = NULL;
  g_autoptr (JsonBuilder) out = json_builder_new ();
  g_autoptr (GPtrArray) rows = g_ptr_array_new_with_free_func ((GDestroyNotify) g_strfreev);

  json_builder_begin_array (out);
  if (!tr_admin_admin_if_endpoints (session->client, &endpoints, session->token, args[0] != NULL ? args[0] : "",
                                    &admin_error, &error)) {
    g_ptr_array_unref (endpoints);
    return call_failed (session, "endpoints", admin_error, error);
  }
  g_ptr_array_add (rows, g_strsplit ("SERVICE ENDPOINT STATE ACKED HEAD LAG RETRIES STOP_SEND LAG_BYTES DELIVERED "
                                      "OUT/S EXPIRED BLOCKED_ON LAST_ERROR",
                                      " ", -1));
  for (guint i = 0; i < endpoints->len; i++) {
    tr_adminEndpointInfo *e = g_ptr_array_index (endpoints, i);
    char **row = g_new0 (char *, 15);
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
    row[11] = i64 (e->expired_rpcs);
    row[12] = e->blocked_seqid > 0 ? g_strdup_printf ("seqid=%" G_GINT64_FORMAT ",rpc=%" G_GINT64_FORMAT,
                                                      e->blocked_seqid, e->blocked_rpc_id)
                                   : g_strdup ("-");
    row[13] = last_error_text (e);
    g_ptr_array_add (rows, row);
    json_builder_begin_object (out);
    add_string (out, "service", e->service_name);
    add_string (out, "endpoint", e->endpoint);
    add_string (out, "state", e->state);
    add_int (out, "acked_seqid", e->acked_seqid);
    add_int (out, "head_seqid", e->head_seqid);
    add_int (out, "lag", e->lag);
    add_int (out, "retries", e->retries);
    add_bool (out, "stop_send", e->stop_send);
    add_string (out, "last_error", e->last_error);
    add_time (out, "last_error_time", e->last_error_time_ms);
    add_int (out, "last_error_time_ms", e->last_error_time_ms);
    add_bool (out, "last_error_past", e->last_error_resolved_ms > 0);
    add_time (out, "last_error_resolved_time", e->last_error_resolved_ms);
    add_int (out, "last_error_resolved_ms", e->last_error_resolved_ms);
    add_int (out, "blocked_seqid", e->blocked_seqid);
    add_int (out, "blocked_rpc_id", e->blocked_rpc_id);
    add_int (out, "delivered", e->delivered);
    add_double (out, "rpcs_out_per_sec", e->rpcs_out_per_sec);
    add_int (out, "lag_bytes", e->lag_bytes);
    add_int (out, "expired_rpcs", e->expired_rpcs);
    json_builder_end_object (out);
  }
  print_listing (session, out, rows);
  g_ptr_array_unref (endpoints);
  return 0;
}

static void
print_done (Session *session, const char *text)
{
  if (session->json) {
    g_autoptr (JsonBuilder) builder = json_builder_new ();
    json_builder_begin_object (builder);
    add_bool (builder, "ok", TRUE);
    json_builder_end_object (builder);
    print_builder (builder);
  } else {
    printf ("%s\n", text);
  }
}

static int
set_stop (Session *session, char **args, gboolean stop)
{
  tr_adminAdminError *admin_error = NULL;
  GError *error = NULL;
  g_autofree char *done = NULL;

  if (!tr_admin_admin_if_set_stop_send (session->client, session->token, args[0], args[1], stop, &admin_error,
                                        &error))
    return call_failed (session, stop ? "stop-send" : "start-send", admin_error, error);
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
      return fail (session, EXIT_USAGE, 0, "skip: '%s' is not a count (+1, +2, ...)", args[2]);
    }
  } else if (!parse_positive (args[2], &seqid)) {
    return fail (session, EXIT_USAGE, 0, "%s: '%s' is not a seqid (1, 2, ...)", what, args[2]);
  }
  ok = forward ? tr_admin_admin_if_skip (session->client, &next, session->token, args[0], args[1], seqid, by,
                                         &admin_error, &error)
               : tr_admin_admin_if_rewind (session->client, session->token, args[0], args[1], seqid, &admin_error,
                                           &error);
  if (!ok)
    return call_failed (session, what, admin_error, error);
  if (!forward)
    next = seqid;
  if (session->json) {
    g_autoptr (JsonBuilder) builder = json_builder_new ();
    json_builder_begin_object (builder);
    add_bool (builder, "ok", TRUE);
    add_int (builder, "next_seqid", next);
    json_builder_end_object (builder);
    print_builder (builder);
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

/* dump RPC_ID, or dump SERVICE SEQID (the service's rpc id looked up
 * first); the message is decoded and printed by tr_admin_dump.c. */
static int
cmd_digest (Session *session, char **args)
{
  tr_adminRangeDigest *digest = g_object_new (TR_ADMIN_TYPE_RANGE_DIGEST, NULL);
  tr_adminAdminError *admin_error = NULL;
  GError *error = NULL;
  g_autofree char *hex = NULL;
  gint64 from, to;

  if (!parse_positive (args[0], &from) || !parse_positive (args[1], &to) || from > to) {
    g_object_unref (digest);
    return fail (session, EXIT_USAGE, 0, "digest: '%s %s' is not a range of rpc ids (FROM <= TO, from 1)", args[0],
                 args[1]);
  }
  if (!tr_admin_admin_if_digest (session->client, &digest, session->token, from, to, &admin_error, &error)) {
    g_object_unref (digest);
    return call_failed (session, "digest", admin_error, error);
  }
  hex = g_strdup_printf ("%016" G_GINT64_MODIFIER "x", (guint64) digest->digest);
  if (session->json) {
    g_autoptr (JsonBuilder) builder = json_builder_new ();
    json_builder_begin_object (builder);
    add_int (builder, "from", digest->from_id);
    add_int (builder, "to", digest->to_id);
    add_int (builder, "count", digest->count);
    add_string (builder, "digest", hex);
    json_builder_end_object (builder);
    print_builder (builder);
  } else {
    printf ("%" G_GINT64_FORMAT "..%" G_GINT64_FORMAT "  %" G_GINT64_FORMAT " records  xxh3-64 %s\n", digest->from_id,
            digest->to_id, digest->count, hex);
  }
  g_object_unref (digest);
  return 0;
}

static int
cmd_dump (Session *session, char **args)
{
  g_autoptr (TrThriftIdl) idl = NULL;
  g_autoptr (GError) idl_error = NULL;
  tr_adminAdminError *admin_error = NULL;
  GError *error = NULL;
  GByteArray *message = NULL;
  const char *service = NULL;
  gint64 seqid = 0, rpc_id = 0;

  if (args[1] != NULL) {
    service = args[0];
    if (!parse_positive (args[1], &seqid))
      return fail (session, EXIT_USAGE, 0, "dump: '%s' is not a seqid (1, 2, ...)", args[1]);
  } else if (!parse_positive (args[0], &rpc_id)) {
    return fail (session, EXIT_USAGE, 0, "dump: '%s' is not an rpc id (1, 2, ...); or give SERVICE SEQID", args[0]);
  }
  /* The IDL first: a file that cannot be read is the operator's to fix
   * before anything is asked of the router. */
  if (session->idl_path != NULL && (idl = tr_thrift_idl_load (session->idl_path, &idl_error)) == NULL)
    return fail (session, EXIT_USAGE, 0, "dump --idl: %s", idl_error->message);
  if (service != NULL && !tr_admin_admin_if_rpc_id_of (session->client, &rpc_id, session->token, service, seqid,
                                                        &admin_error, &error))
    return call_failed (session, "dump", admin_error, error);
  if (!tr_admin_admin_if_dump (session->client, &message, session->token, rpc_id, &admin_error, &error))
    return call_failed (session, "dump", admin_error, error);
  tr_admin_dump_print (service, seqid, rpc_id, message, idl,
                       (session->json ? TR_ADMIN_DUMP_JSON : 0) | (session->hex ? TR_ADMIN_DUMP_HEX : 0));
  g_byte_array_unref (message);
  return 0;
}

/* --from and --max are GOption options of the whole command line (so they
 * may come anywhere); the service is the one argument. */
static int
cmd_dead_letters (Session *session, char **args)
{
  GPtrArray *letters = g_ptr_array_new_with_free_func (g_object_unref);
  tr_adminAdminError *admin_error = NULL;
  GError *error = NULL;
  g_autoptr (JsonBuilder) out = json_builder_new ();
  g_autoptr (GPtrArray) rows = g_ptr_array_new_with_free_func ((GDestroyNotify) g_strfreev);
  gint64 from = session->from >= 0 ? session->from : 0;
  gint max = session->max >= 0 ? session->max : 100;

  json_builder_begin_array (out);
  if (!tr_admin_admin_if_dead_letters (session->client, &letters, session->token, args[0], from, max, &admin_error,
                                       &error)) {
    g_ptr_array_unref (letters);
    return call_failed (session, "dead-letters", admin_error, error);
  }
  g_ptr_array_add (rows, g_strsplit ("INDEX SEQID RPC_ID REDRIVEN_AS REASON", " ", -1));
  for (guint i = 0; i < letters->len; i++) {
    tr_adminDeadLetter *l = g_ptr_array_index (letters, i);
    char **row = g_new0 (char *, 6);
    row[0] = i64 (l->index);
    row[1] = i64 (l->seqid);
    row[2] = i64 (l->rpc_id);
    row[3] = l->redriven_rpc_id > 0 ? i64 (l->redriven_rpc_id) : g_strdup ("-");
    row[4] = g_strdup (l->reason);
    g_ptr_array_add (rows, row);
    json_builder_begin_object (out);
    add_int (out, "index", l->index);
    add_int (out, "seqid", l->seqid);
    add_int (out, "rpc_id", l->rpc_id);
    add_string (out, "reason", l->reason);
    add_int (out, "redriven_rpc_id", l->redriven_rpc_id);
    json_builder_end_object (out);
  }
  print_listing (session, out, rows);
  g_ptr_array_unref (letters);
  return 0;
}

static gboolean
parse_index (const char *text, gint64 *out)
{
  guint64 value;

  if (!g_ascii_string_to_unsigned (text, 10, 0, G_MAXINT64, &value, NULL))
    return FALSE;
  *out = (gint64) value;
  return TRUE;
}

/* redrive SERVICE [FROM [TO]]: the dead letters sent again, and those left
 * alone because they were redriven before. */
static int
cmd_redrive (Session *session, char **args)
{
  GPtrArray *done = g_ptr_array_new_with_free_func (g_object_unref);
  tr_adminAdminError *admin_error = NULL;
  GError *error = NULL;
  g_autoptr (JsonBuilder) out = json_builder_new ();
  g_autoptr (GPtrArray) rows = g_ptr_array_new_with_free_func ((GDestroyNotify) g_strfreev);
  gint64 from = 0, to = -1, first_seqid = 0, last_seqid = 0;
  guint sent = 0;

  if (args[1] != NULL && !parse_index (args[1], &from)) {
    g_ptr_array_unref (done);
    return fail (session, EXIT_USAGE, 0, "redrive: '%s' is not a dead-letter index (0, 1, ...)", args[1]);
  }
  if (args[1] != NULL && args[2] != NULL && !parse_index (args[2], &to)) {
    g_ptr_array_unref (done);
    return fail (session, EXIT_USAGE, 0, "redrive: '%s' is not a dead-letter index (0, 1, ...)", args[2]);
  }
  if (!tr_admin_admin_if_redrive (session->client, &done, session->token, args[0], from, to, session->force,
                                  &admin_error, &error)) {
    g_ptr_array_unref (done);
    return call_failed (session, "redrive", admin_error, error);
  }
  json_builder_begin_object (out);
  add_bool (out, "ok", TRUE);
  json_builder_set_member_name (out, "dead_letters");
  json_builder_begin_array (out);
  g_ptr_array_add (rows, g_strsplit ("INDEX SEQID RPC_ID NEW_RPC_ID NEW_SEQID DONE", " ", -1));
  for (guint i = 0; i < done->len; i++) {
    tr_adminRedriven *r = g_ptr_array_index (done, i);
    char **row = g_new0 (char *, 7);
    row[0] = i64 (r->index);
    row[1] = i64 (r->seqid);
    row[2] = i64 (r->rpc_id);
    row[3] = r->new_rpc_id > 0 ? i64 (r->new_rpc_id) : g_strdup ("-");
    row[4] = r->new_seqid > 0 ? i64 (r->new_seqid) : g_strdup ("-");
    row[5] = r->new_rpc_id > 0 ? g_strdup ("sent again")
                               : g_strdup_printf ("left alone: redriven before as rpc %" G_GINT64_FORMAT,
                                                  r->before_rpc_id);
    g_ptr_array_add (rows, row);
    if (r->new_rpc_id > 0) {
      sent++;
      first_seqid = first_seqid == 0 ? r->new_seqid : MIN (first_seqid, r->new_seqid);
      last_seqid = MAX (last_seqid, r->new_seqid);
    }
    json_builder_begin_object (out);
    add_int (out, "index", r->index);
    add_int (out, "seqid", r->seqid);
    add_int (out, "rpc_id", r->rpc_id);
    add_int (out, "new_rpc_id", r->new_rpc_id);
    add_int (out, "new_seqid", r->new_seqid);
    add_int (out, "before_rpc_id", r->before_rpc_id);
    json_builder_end_object (out);
  }
  json_builder_end_array (out);
  add_int (out, "sent", sent);
  add_int (out, "left_alone", done->len - sent);
  json_builder_end_object (out);
  if (session->json) {
    print_builder (out);
  } else {
    print_table (rows);
    if (sent > 0)
      printf ("%s: %u dead letter%s sent again as new RPCs of the service (seqid %" G_GINT64_FORMAT "..%"
              G_GINT64_FORMAT ", to every endpoint of %s)", args[0], sent, sent == 1 ? "" : "s", first_seqid,
              last_seqid, args[0]);
    else
      printf ("%s: nothing sent again", args[0]);
    if (done->len > sent)
      printf ("; %u left alone, redriven before (--force sends them again)", done->len - sent);
    printf ("\n");
  }
  g_ptr_array_unref (done);
  return 0;
}

static int
cmd_reload (Session *session, char **args)
{
  GPtrArray *changes = g_ptr_array_new_with_free_func (g_free);
  tr_adminAdminError *admin_error = NULL;
  GError *error = NULL;

  (void) args;
  if (!tr_admin_admin_if_reload (session->client, &changes, session->token, &admin_error, &error)) {
    g_ptr_array_unref (changes);
    return call_failed (session, "reload", admin_error, error);
  }
  if (session->json) {
    g_autoptr (JsonBuilder) builder = json_builder_new ();
    json_builder_begin_object (builder);
    add_bool (builder, "ok", TRUE);
    json_builder_set_member_name (builder, "changes");
    json_builder_begin_array (builder);
    for (guint i = 0; i < changes->len; i++)
      json_builder_add_string_value (builder, g_ptr_array_index (changes, i));
    json_builder_end_array (builder);
    json_builder_end_object (builder);
    print_builder (builder);
  } else {
    for (guint i = 0; i < changes->len; i++)
      printf ("%s\n", (char *) g_ptr_array_index (changes, i));
    printf ("reload done: %u change%s\n", changes->len, changes->len == 1 ? "" : "s");
  }
  g_ptr_array_unref (changes);
  return 0;
}

static const Command commands[] = {
  { "status", "status", 0, 0,
    "Node identity (server_id, type, epoch, fenced), store head/size/parts, producer counters, RPCs/s\n"
    "committed and commit latency p50/p99 over the last 10 s (latency as the upper bound of its\n"
    "power-of-two bucket in microseconds).",
    cmd_status },
  { "services", "services", 0, 0, "Every service with its rpc names and the seqids it still stores (first..head).",
    cmd_services },
  { "endpoints", "endpoints [SERVICE]", 0, 1,
    "Endpoints of SERVICE (all services without it): state (STOPPED, CONNECTING, SENDING, BACKOFF,\n"
    "BLOCKED), last acknowledged seqid, service head, lag in RPCs, consecutive failures, stop_send,\n"
    "LAG_BYTES (data-store bytes from its first unacknowledged RPC to the service head; RPCs of\n"
    "other services stored in between count too, so an upper bound; ? if unreadable), DELIVERED\n"
    "(RPCs it acknowledged since the node started), OUT/S (delivered per second over the last\n"
    "10 s), EXPIRED (RPCs never delivered because the backlog went over max_backlog_bytes or\n"
    "max_backlog_age since the node started; each range is listed by dead-letters),\n"
    "BLOCKED_ON and LAST_ERROR.\n"
    "BACKOFF: the endpoint cannot be reached or broke the connection (down).  BLOCKED: it answers,\n"
    "but refused the same RPC more than max_retries times and on_failure = block holds it there;\n"
    "BLOCKED_ON is that seqid and its global rpc id (see 'dump').  LAST_ERROR starts with when it\n"
    "happened (UTC) and ends with '(resolved at TIME)' once the endpoint recovered (acknowledged\n"
    "an RPC; after a connection failure: connected again).  --json: blocked_seqid, blocked_rpc_id,\n"
    "last_error_time (ISO 8601), last_error_time_ms, last_error_past, last_error_resolved_time.\n"
    "On a MASTER the replication links (service_type = BACKUP) are listed too, with global rpc ids\n"
    "for seqids; a BACKUP, which pushes nothing, lists no endpoints.",
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
  { "dump", "dump (RPC_ID | SERVICE SEQID) [--idl FILE.thrift] [--hex]", 1, 2,
    "One stored RPC, by global rpc id or by a service's seqid (shown with its rpc id): name,\n"
    "message type, size and the arguments decoded: field id, wire type and value for every\n"
    "field, nested structs, lists, sets and maps indented below their field.  Text is shown\n"
    "quoted, other binary values in hex.  --idl FILE.thrift adds the names (method arguments,\n"
    "struct fields, enum values) from that IDL file; the reader refuses what it does not read\n"
    "(include, annotations, ...) naming the line.  --hex adds a hex dump of the whole message\n"
    "(also shown when the arguments cannot be decoded).  --json: args (a tree of {id, name,\n"
    "type, idl_type, value | hex | fields | elements | entries}) and hex.",
    cmd_dump },
  { "dead-letters", "dead-letters SERVICE [--from N] [--max N]", 1, 1,
    "Dead letters of SERVICE, oldest first: RPCs given up after max_retries with on_failure = skip.\n"
    "INDEX (position in the dead-letter file), service SEQID, global RPC_ID (see 'dump'),\n"
    "REDRIVEN_AS (the rpc id 'redrive' last sent it again as; - never) and REASON.\n"
    "--from N starts at index N (default 0), --max N lists at most N (1..10000, default 100).",
    cmd_dead_letters },
  { "redrive", "redrive SERVICE [FROM [TO]] [--force]", 1, 3,
    "Sends dead letters of SERVICE again: those with INDEX FROM..TO as 'dead-letters' lists them\n"
    "(without TO: to the last; without FROM: all; at most 10000 per call).  Each is committed\n"
    "again as a new RPC of SERVICE (a new rpc id and the next seqids after the head), so every\n"
    "endpoint of SERVICE gets it after what it already has, with consecutive seqids; endpoints\n"
    "that had delivered the original get it a second time.  Several dead letters of one rpc\n"
    "(several endpoints gave it up) make one copy.  Each dead letter is recorded as redriven\n"
    "(REDRIVEN_AS in 'dead-letters'); one redriven before is left alone unless --force.  Nothing\n"
    "is sent when an original is no longer stored (code 3: retention deleted it).",
    cmd_redrive },
  { "reload", "reload", 0, 0,
    "Re-reads router.conf and every service file and applies the differences: services and\n"
    "endpoints added or removed, rpc names, retry/backoff/timeouts/max_inflight/on_failure,\n"
    "stop_send, max_backlog_bytes/max_backlog_age, oneway barriers, min_free_space.  Untouched endpoints keep their connection and position; a new endpoint starts\n"
    "at the service head (start = earliest: at the first stored seqid).  Prints one line per\n"
    "change.  Refused as a whole, nothing changed, when a file is invalid (code 6) or when a\n"
    "[router] key other than services and min_free_space changed (code 7: needs a restart).\n"
    "A BACKUP refuses every reload (restart it).  Same as SIGHUP.",
    cmd_reload },
  { "digest", "digest FROM TO", 2, 2,
    "A checksum (XXH3-64) over the stored records of global rpc ids FROM..TO, as they are on disk.\n"
    "Two nodes that print the same digest for a range hold byte-identical records for it (same ids,\n"
    "commit times, messages and services).  Both ids must still be stored: TO <= head_rpc_id of\n"
    "'status', FROM >= the first id retention kept (a refusal, code 3, names the stored range;\n"
    "/metrics: thriftrouter_store_first_rpc_id); reads every record from disk.  --json: from, to, count, digest (16 hex digits).",
    cmd_digest },
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
read_token (const Session *session, const char *path)
{
  g_autoptr (GError) error = NULL;
  char *text = NULL;

  if (!g_file_get_contents (path, &text, NULL, &error)) {
    fail (session, EXIT_USAGE, 0, "token file: %s", error->message);
    return NULL;
  }
  return g_strstrip (text);
}

static int usage_error (const Session *session, const Command *command, const char *format, ...)
    G_GNUC_PRINTF (3, 4);

/* A usage error: the message (and, with --json, its document), then where
 * to look: the help of @command, or the general help when NULL. */
static int
usage_error (const Session *session, const Command *command, const char *format, ...)
{
  g_autofree char *message = NULL;
  va_list ap;

  va_start (ap, format);
  message = g_strdup_vprintf (format, ap);
  va_end (ap);
  fail (session, EXIT_USAGE, 0, "%s", message);
  if (command != NULL)
    g_printerr ("Try 'tr-admin %s --help'.\n", command->name);
  else
    g_printerr ("Try 'tr-admin --help'.\n");
  return EXIT_USAGE;
}

/* What the command line says, filled by GOption. */
typedef struct {
  char *config_path;
  char *address;
  char *token_file;
  gboolean json;
  gboolean help;
  gint64 from;
  gint max;
  char *idl_path;
  gboolean hex;
  gboolean force;
} Options;

static gboolean
parse_bounded (const char *name, const char *value, gint64 min, gint64 max, const char *what, gint64 *out,
               GError **error)
{
  gint64 n;

  if (!g_ascii_string_to_signed (value, 10, min, max, &n, NULL)) {
    g_set_error (error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE, "%s needs %s, not '%s'", name, what, value);
    return FALSE;
  }
  *out = n;
  return TRUE;
}

static gboolean
on_from (const char *name, const char *value, gpointer data, GError **error)
{
  return parse_bounded (name, value, 0, G_MAXINT64, "an index (0, 1, ...)", &((Options *) data)->from, error);
}

static gboolean
on_max (const char *name, const char *value, gpointer data, GError **error)
{
  gint64 n = 0;

  if (!parse_bounded (name, value, 1, 10000, "1..10000", &n, error))
    return FALSE;
  ((Options *) data)->max = (gint) n;
  return TRUE;
}

/* GOption's own message for a value-taking option given none ("Missing
 * argument for --from") says what is missing, not what is wanted. */
static char *
option_error_message (const GError *error)
{
  if (g_error_matches (error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE) && strstr (error->message, "needs") == NULL) {
    if (strstr (error->message, "--from") != NULL)
      return g_strdup_printf ("--from needs an index (0, 1, ...) (%s)", error->message);
    if (strstr (error->message, "--max") != NULL)
      return g_strdup_printf ("--max needs 1..10000 (%s)", error->message);
  }
  if (g_error_matches (error, G_OPTION_ERROR, G_OPTION_ERROR_UNKNOWN_OPTION))
    return g_strdup_printf ("unknown option (%s)", error->message);
  return g_strdup (error->message);
}

static GOptionContext *
option_context_new (Options *options)
{
  const GOptionEntry entries[] = {
    { "config", 'c', 0, G_OPTION_ARG_FILENAME, &options->config_path,
      "read admin_listen and admin_token_file from the router configuration", "ROUTER_CONF" },
    { "address", 'a', 0, G_OPTION_ARG_STRING, &options->address, "admin address (default 127.0.0.1:9091)",
      "HOST:PORT" },
    { "token-file", 0, 0, G_OPTION_ARG_FILENAME, &options->token_file, "admin token (overrides the one from -c)",
      "FILE" },
    { "json", 0, 0, G_OPTION_ARG_NONE, &options->json,
      "machine-readable output: one JSON document on stdout, errors included", NULL },
    { "from", 0, 0, G_OPTION_ARG_CALLBACK, (gpointer) on_from, "dead-letters: start at index N (default 0)", "N" },
    { "max", 0, 0, G_OPTION_ARG_CALLBACK, (gpointer) on_max, "dead-letters: list at most N (1..10000, default 100)",
      "N" },
    { "idl", 0, 0, G_OPTION_ARG_FILENAME, &options->idl_path, "dump: name the fields from this Thrift IDL file",
      "FILE.thrift" },
    { "hex", 0, 0, G_OPTION_ARG_NONE, &options->hex, "dump: add a hex dump of the whole message", NULL },
    { "force", 0, 0, G_OPTION_ARG_NONE, &options->force, "redrive: also dead letters redriven before", NULL },
    { "help", 'h', 0, G_OPTION_ARG_NONE, &options->help, "this help; 'tr-admin COMMAND --help' explains one command",
      NULL },
    { NULL },
  };
  GOptionContext *context = g_option_context_new ("COMMAND [ARGS]");
  GOptionGroup *group = g_option_group_new ("tr-admin", "tr-admin options", "tr-admin options", options, NULL);

  g_option_group_add_entries (group, entries);
  g_option_context_set_main_group (context, group);
  /* --help is an entry of ours: 'tr-admin COMMAND --help' explains the
   * command, which GOption's built-in help cannot know. */
  g_option_context_set_help_enabled (context, FALSE);
  g_option_context_set_summary (context, commands_summary);
  g_option_context_set_description (context, exit_status_description);
  return context;
}

static const Command *
find_command (const char *name)
{
  for (guint c = 0; c < G_N_ELEMENTS (commands); c++)
    if (strcmp (commands[c].name, name) == 0)
      return &commands[c];
  return NULL;
}

/* The address and token of -c / -a / --token-file into @session; an exit
 * status on failure, 0 on success. */
static int
resolve_target (Session *session, const Options *options, char **host, guint16 *port)
{
  g_autofree char *config_token_file = NULL;
  const char *token_file = options->token_file;

  *port = 9091;
  if (options->config_path != NULL && options->address != NULL)
    return usage_error (session, NULL, "-c and -a exclude each other");
  if (options->address != NULL && !parse_address (options->address, host, port))
    return usage_error (session, NULL, "'%s' is not HOST:PORT", options->address);
  if (options->config_path != NULL) {
    g_autoptr (GError) error = NULL;
    g_autoptr (TrConfig) config = tr_config_load_router (options->config_path, &error);
    if (config == NULL)
      return fail (session, EXIT_USAGE, 0, "%s", error->message);
    /* A wildcard listen address is reached on loopback. */
    if (strcmp (config->admin_host, "0.0.0.0") == 0)
      *host = g_strdup ("127.0.0.1");
    else if (strcmp (config->admin_host, "::") == 0)
      *host = g_strdup ("::1");
    else
      *host = g_strdup (config->admin_host);
    *port = config->admin_port;
    config_token_file = g_strdup (config->admin_token_file);
  }
  if (*host == NULL)
    *host = g_strdup ("127.0.0.1");
  if (token_file == NULL)
    token_file = config_token_file;
  session->token = token_file != NULL ? read_token (session, token_file) : g_strdup ("");
  return session->token == NULL ? EXIT_USAGE : 0;
}

static int
run_command (Session *session, const Command *command, char **args, const char *host, guint16 port)
{
  GError *error = NULL;
  int rc;

  session->socket = g_object_new (THRIFT_TYPE_SOCKET, "hostname", host, "port", port, NULL);
  session->framed = g_object_new (THRIFT_TYPE_FRAMED_TRANSPORT, "transport", session->socket, NULL);
  session->protocol = g_object_new (THRIFT_TYPE_BINARY_PROTOCOL, "transport", session->framed, NULL);
  session->client = g_object_new (TR_ADMIN_TYPE_ADMIN_CLIENT, "input_protocol", session->protocol,
                                  "output_protocol", session->protocol, NULL);
  if (!thrift_transport_open (session->framed, &error)) {
    rc = fail (session, EXIT_UNREACHABLE, 0, "cannot reach the router at %s:%u: %s", host, port, error->message);
    g_error_free (error);
  } else {
    rc = command->func (session, args);
    thrift_transport_close (session->framed, NULL);
  }
  g_object_unref (session->client);
  g_object_unref (session->protocol);
  g_object_unref (session->framed);
  g_object_unref (session->socket);
  return rc;
}

/* Whether --json is among the options of @argv.  Only for a command line
 * GOption refused: it reverts every value it had set, --json included, yet
 * the error must still come as JSON. */
static gboolean
json_asked (int argc, char **argv)
{
  for (int i = 1; i < argc && strcmp (argv[i], "--") != 0; i++)
    if (strcmp (argv[i], "--json") == 0)
      return TRUE;
  return FALSE;
}

/* Everything after the options are parsed; returns the exit status. */
static int
run (Session *session, const Options *options, GOptionContext *context, int argc, char **argv)
{
  g_autofree char *host = NULL;
  const Command *command;
  guint16 port = 0;
  int n_args, rc;

  if (argc < 2 && options->help) {
    g_autofree char *help = g_option_context_get_help (context, TRUE, NULL);
    printf ("%s", help);
    return 0;
  }
  if (argc < 2)
    return usage_error (session, NULL, "missing COMMAND");
  if ((command = find_command (argv[1])) == NULL)
    return usage_error (session, NULL, "unknown command '%s'", argv[1]);
  if (options->help) {
    printf ("Usage: tr-admin [OPTIONS] %s\n\n%s\n\nOptions (before or after the command): see 'tr-admin --help'.\n",
            command->usage, command->help);
    return 0;
  }
  n_args = argc - 2;
  if (n_args < command->min_args)
    return usage_error (session, command, "usage: tr-admin [OPTIONS] %s", command->usage);
  if (n_args > command->max_args)
    return usage_error (session, command, "%s: unexpected '%s'; usage: tr-admin [OPTIONS] %s", command->name,
                        argv[2 + command->max_args], command->usage);
  if ((options->from >= 0 || options->max >= 0) && command->func != cmd_dead_letters)
    return usage_error (session, command, "--from and --max are options of dead-letters, not of %s",
                        command->name);
  if ((options->idl_path != NULL || options->hex) && command->func != cmd_dump)
    return usage_error (session, command, "--idl and --hex are options of dump, not of %s", command->name);
  if (options->force && command->func != cmd_redrive)
    return usage_error (session, command, "--force is an option of redrive, not of %s", command->name);
  rc = resolve_target (session, options, &host, &port);
  if (rc != 0)
    return rc;
  return run_command (session, command, argv + 2, host, port);
}

int
main (int argc, char **argv)
{
  Options options = { .from = -1, .max = -1 };
  g_autoptr (GOptionContext) context = option_context_new (&options);
  g_autoptr (GError) error = NULL;
  Session session = { 0 };
  int rc;

  signal (SIGPIPE, SIG_IGN);
  /* Options anywhere: GOption takes them out of argv and leaves the
   * command and its arguments, in order ("--" ends the options). */
  if (!g_option_context_parse (context, &argc, &argv, &error)) {
    g_autofree char *message = option_error_message (error);
    session.json = json_asked (argc, argv);
    rc = usage_error (&session, NULL, "%s", message);
  } else {
    session.json = options.json;
    session.from = options.from;
    session.max = options.max;
    session.idl_path = options.idl_path;
    session.hex = options.hex;
    session.force = options.force;
    rc = run (&session, &options, context, argc, argv);
  }
  g_free (session.token);
  g_free (options.config_path);
  g_free (options.address);
  g_free (options.token_file);
  g_free (options.idl_path);
  return rc;
}
