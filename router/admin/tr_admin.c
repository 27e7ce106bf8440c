/* tr_admin.c - the admin server (see tr_admin.h; IDL thrift/admin.thrift).
 *
 * Per connection: bytes read go to ->in; every complete frame is one
 * message, parsed with tr_frame_parse_header(); a CALL is decoded (args by
 * field id, unknown fields skipped), served, and its answer appended to
 * ->out, written as the socket takes it.  While more than
 * ADMIN_OUT_HIGH_WATER bytes wait to be written the connection is not read
 * (a client that does not read its answers only stalls itself).
 *
 * Answers: a REPLY whose result struct has field 0 (the return value) on
 * success, or field 1 (AdminError {1: i32 code, 2: string message}); an
 * unknown method gets a TApplicationException UNKNOWN_METHOD, undecodable
 * args PROTOCOL_ERROR; a frame that is not a message closes the connection.
 *
 * Every admin argument shares one field layout (admin.thrift): 1 token,
 * 2 service_name (dump: 2 rpc_id), 3 endpoint (dead_letters: 3 from_index),
 * 4 stop / to_seqid / max, 5 by; so the args struct is decoded once into an
 * Args by field id.
 *
 * The calls themselves, the rates they report and the reload live in
 * tr_admin_calls.c; tr_admin_private.h holds what the two files share.
 */
#undef G_LOG_DOMAIN
#define G_LOG_DOMAIN "tr-admin"

#include "tr_admin_private.h"

#include "tr_frame.h"
#include "tr_invoke.h"
#include "tr_net.h"
#include "tr_thrift_value.h"

#include <gio/gio.h>
#include <glib-unix.h>
#include <string.h>
#include <unistd.h>

#define ADMIN_MAX_REQUEST_FRAME (64 * 1024)
#define ADMIN_OUT_HIGH_WATER (1024 * 1024)
#define ADMIN_READ_CHUNK (16 * 1024)
#define ADMIN_MAX_CONNECTIONS 64
#define ADMIN_LISTEN_BACKLOG 64

typedef struct {
  GSource base;
  gpointer conn;
} ConnSource;

/* Admin connections are watched by one GSource each on the admin
 * context, not by an epoll set as producers are: there are at most
 * ADMIN_MAX_CONNECTIONS, and a call is rare. */
typedef struct {
  TrAdmin *admin;
  TrNetConn net; /* socket, peer name, in/out buffers */
  GSource *source;
  gpointer fd_tag;
  GIOCondition events;
  guint64 requests; /* frames read: a protocol hint only before the first */
} AdminConn;

/* ---- token ---- */

/* Constant time in the length of @given (never in the secret's content). */
static gboolean
token_ok (const TrAdmin *admin, const guint8 *given, gsize given_len)
{
  guint8 diff;

  if (admin->token == NULL)
    return TRUE;
  diff = given_len != admin->token_len;
  for (gsize i = 0; i < given_len; i++)
    diff |= (guint8) (given[i] ^ (guint8) admin->token[i % admin->token_len]);
  return diff == 0;
}

/* ---- messages ---- */

static TrFrameStatus
decode_args (const guint8 *body, gsize len, Args *args)
{
  TrThriftReader reader;

  memset (args, 0, sizeof *args);
  tr_thrift_reader_init (&reader, body, len);
  for (;;) {
    guint8 type;
    gint16 id;
    gint32 i32;
    gboolean b;
    TrFrameStatus status = tr_thrift_read_field_begin (&reader, &type, &id);
    if (status != TR_FRAME_OK || type == TR_TTYPE_STOP)
      return status;
    if (id <= 0 || id >= ADMIN_MAX_ARG)
      status = tr_thrift_read_skip (&reader, type);
    else if (type == TR_TTYPE_STRING)
      status = tr_thrift_read_binary (&reader, &args->str[id], &args->str_len[id]);
    else if (type == TR_TTYPE_I64)
      status = tr_thrift_read_i64 (&reader, &args->num[id]);
    else if (type == TR_TTYPE_I32 && (status = tr_thrift_read_i32 (&reader, &i32)) == TR_FRAME_OK)
      args->num[id] = i32;
    else if (type == TR_TTYPE_BOOL && (status = tr_thrift_read_bool (&reader, &b)) == TR_FRAME_OK)
      args->num[id] = b;
    else if (type != TR_TTYPE_I32 && type != TR_TTYPE_BOOL)
      status = tr_thrift_read_skip (&reader, type);
    if (status != TR_FRAME_OK)
      return status;
  }
}

/* Serves one CALL; appends the answer frame to conn->net.out. */
static void
serve_call (AdminConn *conn, const guint8 *msg, gsize len, const TrMsgHeader *header)
{
  TrAdmin *admin = conn->admin;
  const char *name = (const char *) header->name;
  g_autoptr (GByteArray) result = g_byte_array_new ();
  Refusal refusal = { 0 };
  CallFunc func = tr_admin__find_call (name, header->name_len);
  Args args;
  TrFrameStatus status;

  if (func == NULL) {
    g_autofree char *text = g_strdup_printf ("unknown admin method '%.*s' (this is thriftrouter's admin port: "
                                             "producers call its listen port)",
                                             (int) header->name_len, name);
    tr_frame_build_exception (conn->net.out, name, header->name_len, header->seqid, TR_APP_EXC_UNKNOWN_METHOD, text);
    return;
  }
  status = decode_args (msg + header->body_offset, len - header->body_offset, &args);
  if (status != TR_FRAME_OK) {
    g_autofree char *text = g_strdup_printf ("bad arguments: %s", tr_frame_status_to_string (status));
    tr_frame_build_exception (conn->net.out, name, header->name_len, header->seqid, TR_APP_EXC_PROTOCOL_ERROR, text);
    return;
  }
  if (!token_ok (admin, args.str[1], args.str[1] != NULL ? args.str_len[1] : 0)) {
    tr_admin__refuse (&refusal, TR_ADMIN_CODE_NOT_AUTHORISED, "not authorised: wrong or missing admin token");
    tr_net_log_limited (admin->log_limit, "wrong token", G_LOG_LEVEL_MESSAGE, conn->net.peer,
                        "admin: refused a call from %s: wrong or missing token", conn->net.peer);
  } else if (func (admin, &args, result, &refusal)) {
    tr_thrift_write_field_stop (result);
  }
  if (refusal.message != NULL) {
    g_byte_array_set_size (result, 0);
    tr_thrift_write_field_begin (result, TR_TTYPE_STRUCT, 1);
    tr_thrift_write_field_i32 (result, 1, (gint32) refusal.code);
    tr_thrift_write_field_string (result, 2, refusal.message);
    tr_thrift_write_field_stop (result);
    tr_thrift_write_field_stop (result);
    g_free (refusal.message);
  }
  tr_frame_build_call (conn->net.out, TR_MSG_REPLY, name, header->name_len, header->seqid, result->data, result->len);
}

/* Handles one frame payload.  Returns FALSE to close the connection. */
static gboolean
handle_message (AdminConn *conn, const guint8 *msg, gsize len)
{
  TrMsgHeader header;
  TrFrameStatus status = tr_frame_parse_header (msg, len, &header);

  if (status != TR_FRAME_OK && header.seqid_valid && header.name_len <= TR_FRAME_MAX_NAME_LEN &&
      header.type == TR_MSG_CALL) {
    tr_frame_build_exception (conn->net.out, (const char *) header.name, header.name_len, header.seqid,
                              TR_APP_EXC_PROTOCOL_ERROR, tr_frame_status_to_string (status));
    return TRUE;
  }
  if (status != TR_FRAME_OK)
    return FALSE;
  if (header.type == TR_MSG_ONEWAY)
    return TRUE; /* no admin call is oneway: nothing to answer */
  if (header.type != TR_MSG_CALL)
    return FALSE;
  serve_call (conn, msg, len, &header);
  return TRUE;
}

/* ---- connections ---- */

static void conn_watch (AdminConn *conn, GIOCondition events);

static void
conn_free (gpointer data)
{
  AdminConn *conn = data;

  if (conn->source != NULL) {
    g_source_destroy (conn->source);
    g_source_unref (conn->source);
  }
  tr_net_conn_clear (&conn->net);
  g_free (conn);
}

static gboolean
on_conn_free (gpointer user_data)
{
  conn_free (user_data);
  return G_SOURCE_REMOVE;
}

/* Called inside the connection's own dispatch: stop its source now, free
 * it from an idle (never inside its own callback). */
static void
conn_close (AdminConn *conn)
{
  GSource *idle;

  g_hash_table_steal (conn->admin->conns, conn);
  g_source_destroy (conn->source);
  idle = g_idle_source_new ();
  g_source_set_callback (idle, on_conn_free, conn, NULL);
  g_source_attach (idle, conn->admin->context);
  g_source_unref (idle);
}

/* Returns FALSE if the connection failed (the client is gone: nothing to
 * log, as before an answer could be sent). */
static gboolean
conn_flush (AdminConn *conn)
{
  return tr_net_conn_flush (&conn->net, NULL) != TR_NET_IO_CLOSED;
}

/* Returns FALSE if the connection is to be closed. */
static gboolean
conn_read (AdminConn *conn)
{
  GByteArray *in = conn->net.in;
  gsize pos = 0;
  gsize n = 0;
  TrNetIoStatus io = tr_net_conn_read (&conn->net, ADMIN_READ_CHUNK, &n, NULL);

  if (io != TR_NET_IO_OK)
    return io == TR_NET_IO_AGAIN;
  for (;;) {
    guint32 frame_len = 0;
    TrFrameStatus status = tr_frame_next (in->data + pos, in->len - pos, ADMIN_MAX_REQUEST_FRAME, &frame_len);
    if (status == TR_FRAME_NEED_MORE)
      break;
    if (status != TR_FRAME_OK) {
      const char *hint = conn->requests == 0 ? tr_frame_protocol_hint (in->data, in->len) : NULL;
      /* One line per second per diagnosis: status and hint are constants. */
      g_autofree char *kind = g_strconcat (tr_frame_status_to_string (status), hint ? hint : "", NULL);
      tr_net_log_limited (conn->admin->log_limit, kind, G_LOG_LEVEL_WARNING, conn->net.peer,
                          "admin: closing %s: %s%s%s", conn->net.peer, tr_frame_status_to_string (status),
                          hint ? "; " : "", hint ? hint : "");
      return FALSE;
    }
    conn->requests++;
    if (!handle_message (conn, in->data + pos + TR_FRAME_LEN_SIZE, frame_len))
      return FALSE;
    pos += TR_FRAME_LEN_SIZE + frame_len;
    if (tr_net_conn_out_pending (&conn->net) > ADMIN_OUT_HIGH_WATER)
      break;
  }
  tr_net_conn_consume (&conn->net, pos);
  return TRUE;
}

static void
conn_io (AdminConn *conn, GIOCondition condition)
{
  if ((condition & (G_IO_IN | G_IO_HUP | G_IO_ERR)) && !conn_read (conn)) {
    conn_close (conn);
    return;
  }
  if (!conn_flush (conn)) {
    conn_close (conn);
    return;
  }
  if (tr_net_conn_out_pending (&conn->net) > ADMIN_OUT_HIGH_WATER)
    conn_watch (conn, G_IO_OUT);
  else if (tr_net_conn_out_pending (&conn->net) > 0)
    conn_watch (conn, G_IO_IN | G_IO_OUT);
  else
    conn_watch (conn, G_IO_IN);
}

static gboolean
conn_source_dispatch (GSource *source, GSourceFunc callback, gpointer user_data)
{
  AdminConn *conn = ((ConnSource *) source)->conn;
  GIOCondition condition = g_source_query_unix_fd (source, conn->fd_tag);

  (void) callback;
  (void) user_data;
  if (condition != 0)
    conn_io (conn, condition);
  return G_SOURCE_CONTINUE;
}

static GSourceFuncs conn_source_funcs = {
  .dispatch = conn_source_dispatch,
};

static void
conn_watch (AdminConn *conn, GIOCondition events)
{
  if (conn->events != events) {
    g_source_modify_unix_fd (conn->source, conn->fd_tag, events);
    conn->events = events;
  }
}

static gboolean
on_accept (gpointer user_data)
{
  TrAdmin *admin = user_data;

  for (;;) {
    g_autoptr (GError) error = NULL;
    int client = tr_net_accept (admin->listen_fd, &error);
    AdminConn *conn;
    if (client < 0) {
      /* Out of descriptors or memory: the connection stays queued, so
       * pause instead of spinning on a readable socket. */
      if (tr_net_accept_must_pause (error)) {
        tr_net_log_limited (admin->log_limit, "accept", G_LOG_LEVEL_WARNING, NULL,
                            "admin: port %u: %s; not accepting for %d ms", admin->port, error->message,
                            TR_NET_ACCEPT_PAUSE_MS);
        tr_net_listen_source_pause (admin->listen_source, TR_NET_ACCEPT_PAUSE_MS);
      } else if (!g_error_matches (error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK))
        tr_net_log_limited (admin->log_limit, "accept", G_LOG_LEVEL_WARNING, NULL, "admin: port %u: %s",
                            admin->port, error->message);
      break;
    }
    if (g_hash_table_size (admin->conns) >= ADMIN_MAX_CONNECTIONS) {
      g_autofree char *peer = tr_net_peer_name (client);
      tr_net_log_limited (admin->log_limit, "max connections", G_LOG_LEVEL_WARNING, peer,
                          "admin: refusing %s: %d admin connections open", peer, ADMIN_MAX_CONNECTIONS);
      close (client);
      continue;
    }
    conn = g_new0 (AdminConn, 1);
    conn->admin = admin;
    tr_net_conn_init (&conn->net, client);
    conn->source = g_source_new (&conn_source_funcs, sizeof (ConnSource));
    ((ConnSource *) conn->source)->conn = conn;
    g_source_set_name (conn->source, "tr-admin connection");
    conn->fd_tag = g_source_add_unix_fd (conn->source, client, G_IO_IN);
    conn->events = G_IO_IN;
    g_source_attach (conn->source, admin->context);
    g_hash_table_add (admin->conns, conn);
    g_debug ("admin: connection from %s", conn->net.peer);
  }
  return G_SOURCE_CONTINUE;
}

/* ---- life cycle ---- */

static gboolean
read_token (TrAdmin *admin, const char *path, GError **error)
{
  g_autofree char *text = NULL;

  if (!g_file_get_contents (path, &text, NULL, error)) {
    g_prefix_error (error, "admin_token_file: ");
    return FALSE;
  }
  g_strstrip (text);
  if (text[0] == '\0') {
    g_set_error (error, TR_CONFIG_ERROR, TR_CONFIG_ERROR_INVALID, "admin_token_file %s holds no token", path);
    return FALSE;
  }
  admin->token_len = strlen (text);
  admin->token = g_steal_pointer (&text);
  return TRUE;
}

static gpointer
admin_thread (gpointer user_data)
{
  TrAdmin *admin = user_data;

  g_main_context_push_thread_default (admin->context);
  g_main_loop_run (admin->loop);
  g_main_context_pop_thread_default (admin->context);
  return NULL;
}

static void
admin_free_unstarted (TrAdmin *admin)
{
  if (admin->listen_source != NULL) {
    g_source_destroy (admin->listen_source);
    g_source_unref (admin->listen_source);
  }
  if (admin->rate_source != NULL) {
    g_source_destroy (admin->rate_source);
    g_source_unref (admin->rate_source);
  }
  g_hash_table_unref (admin->conns);
  if (admin->listen_fd >= 0)
    close (admin->listen_fd);
  g_main_loop_unref (admin->loop);
  g_main_context_unref (admin->context);
  tr_net_log_limit_free (admin->log_limit);
  tr_config_free (admin->config);
  g_free (admin->links);
  if (admin->token != NULL)
    memset (admin->token, 0, admin->token_len);
  g_free (admin->token);
  g_free (admin);
}

TrAdmin *
tr_admin_new (const TrConfig *config, TrRpcStore *store, TrPush *push, TrIngress *ingress,
              GMainContext *ingress_context, GError **error)
{
  TrAdmin *admin;

  g_return_val_if_fail (config != NULL && store != NULL, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  admin = g_new0 (TrAdmin, 1);
  /* The admin thread's own copy: stop-send and reload change it there
   * while main goes on reading the one it loaded (tr_config.h). */
  admin->config = tr_config_copy (config);
  admin->store = store;
  admin->push = push;
  admin->ingress = ingress;
  admin->ingress_context = ingress_context;
  admin->listen_fd = -1;
  admin->context = g_main_context_new ();
  admin->loop = g_main_loop_new (admin->context, FALSE);
  admin->conns = g_hash_table_new_full (NULL, NULL, conn_free, NULL);
  admin->log_limit = tr_net_log_limit_new (G_LOG_DOMAIN, G_TIME_SPAN_SECOND);
  if (config->admin_token_file != NULL && !read_token (admin, config->admin_token_file, error)) {
    admin_free_unstarted (admin);
    return NULL;
  }
  admin->listen_fd = tr_net_listen (config->admin_host, config->admin_port, ADMIN_LISTEN_BACKLOG, &admin->port, error);
  if (admin->listen_fd < 0) {
    g_prefix_error (error, "admin_listen: ");
    admin_free_unstarted (admin);
    return NULL;
  }
  admin->listen_source = tr_net_listen_source_new (admin->listen_fd, on_accept, admin);
  g_source_attach (admin->listen_source, admin->context);
  tr_admin__on_rate_tick (admin);
  admin->rate_source = g_timeout_source_new_seconds (1);
  g_source_set_callback (admin->rate_source, tr_admin__on_rate_tick, admin, NULL);
  g_source_attach (admin->rate_source, admin->context);
  admin->thread = g_thread_new ("tr-admin", admin_thread, admin);
  g_message ("admin service on %s:%u (%s)", config->admin_host, admin->port,
             admin->token != NULL ? "token required" : "no token");
  return admin;
}

guint16
tr_admin_get_port (TrAdmin *admin)
{
  g_return_val_if_fail (admin != NULL, 0);
  return admin->port;
}

void
tr_admin_free (TrAdmin *admin)
{
  if (admin == NULL)
    return;
  tr_invoke_stop_loop (admin->context, admin->loop, admin->thread);
  /* Connections closed but not yet freed by their idle are freed with the
   * context's sources: run what is pending. */
  while (g_main_context_iteration (admin->context, FALSE))
    ;
  g_hash_table_remove_all (admin->conns);
  admin_free_unstarted (admin);
}

void
tr_admin_set_replica_links (TrAdmin *admin, TrAdminLinksFunc func, gpointer user_data)
{
  struct TrAdminLinks *links = g_new0 (struct TrAdminLinks, 1);

  g_return_if_fail (admin != NULL && func != NULL);
  links->func = func;
  links->user_data = user_data;
  /* The admin thread already serves calls: publish the pair in one step. */
  if (!g_atomic_pointer_compare_and_exchange (&admin->links, NULL, links))
    g_free (links);
}

void
tr_admin_set_node_state (TrAdmin *admin, guint64 epoch, gboolean fenced)
{
  admin->epoch = epoch;
  admin->fenced = fenced;
}
