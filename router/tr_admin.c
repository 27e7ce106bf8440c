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
#include "tr_thrift_value.h"

#include <errno.h>
#include <gio/gio.h>
#include <glib-unix.h>
#include <netdb.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define ADMIN_MAX_REQUEST_FRAME (64 * 1024)
#define ADMIN_OUT_HIGH_WATER (1024 * 1024)
#define ADMIN_READ_CHUNK (16 * 1024)
#define ADMIN_MAX_CONNECTIONS 64

typedef struct {
  GSource base;
  gpointer conn;
} ConnSource;

typedef struct {
  TrAdmin *admin;
  int fd;
  char *peer;
  GSource *source;
  gpointer fd_tag;
  GIOCondition events;
  GByteArray *in;
  GByteArray *out;
  gsize out_pos;
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

/* Serves one CALL; appends the answer frame to conn->out. */
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
    tr_frame_build_exception (conn->out, name, header->name_len, header->seqid, TR_APP_EXC_UNKNOWN_METHOD, text);
    return;
  }
  status = decode_args (msg + header->body_offset, len - header->body_offset, &args);
  if (status != TR_FRAME_OK) {
    g_autofree char *text = g_strdup_printf ("bad arguments: %s", tr_frame_status_to_string (status));
    tr_frame_build_exception (conn->out, name, header->name_len, header->seqid, TR_APP_EXC_PROTOCOL_ERROR, text);
    return;
  }
  if (!token_ok (admin, args.str[1], args.str[1] != NULL ? args.str_len[1] : 0)) {
    tr_admin__refuse (&refusal, TR_ADMIN_CODE_NOT_AUTHORISED, "not authorised: wrong or missing admin token");
    g_log_structured (G_LOG_DOMAIN, G_LOG_LEVEL_MESSAGE, "TR_PEER", conn->peer, "MESSAGE",
                      "admin: refused a call from %s: wrong or missing token", conn->peer);
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
  tr_frame_build_call (conn->out, TR_MSG_REPLY, name, header->name_len, header->seqid, result->data, result->len);
}

/* Handles one frame payload.  Returns FALSE to close the connection. */
static gboolean
handle_message (AdminConn *conn, const guint8 *msg, gsize len)
{
  TrMsgHeader header;
  TrFrameStatus status = tr_frame_parse_header (msg, len, &header);

  if (status != TR_FRAME_OK && header.seqid_valid && header.name_len <= TR_FRAME_MAX_NAME_LEN &&
      header.type == TR_MSG_CALL) {
    tr_frame_build_exception (conn->out, (const char *) header.name, header.name_len, header.seqid,
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
  if (conn->fd >= 0)
    close (conn->fd);
  g_byte_array_unref (conn->in);
  g_byte_array_unref (conn->out);
  g_free (conn->peer);
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

/* Returns FALSE if the connection failed. */
static gboolean
conn_flush (AdminConn *conn)
{
  while (conn->out_pos < conn->out->len) {
    ssize_t n = send (conn->fd, conn->out->data + conn->out_pos, conn->out->len - conn->out_pos, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
      break;
    if (n < 0)
      return FALSE;
    conn->out_pos += (gsize) n;
  }
  if (conn->out_pos == conn->out->len) {
    g_byte_array_set_size (conn->out, 0);
    conn->out_pos = 0;
  }
  return TRUE;
}

/* Returns FALSE if the connection is to be closed. */
static gboolean
conn_read (AdminConn *conn)
{
  GByteArray *in = conn->in;
  guint old = in->len;
  gsize pos = 0;
  ssize_t n;

  g_byte_array_set_size (in, old + ADMIN_READ_CHUNK);
  do
    n = recv (conn->fd, in->data + old, ADMIN_READ_CHUNK, 0);
  while (n < 0 && errno == EINTR);
  g_byte_array_set_size (in, old + (guint) MAX (n, 0));
  if (n == 0)
    return FALSE;
  if (n < 0)
    return errno == EAGAIN || errno == EWOULDBLOCK;
  for (;;) {
    guint32 frame_len = 0;
    TrFrameStatus status = tr_frame_next (in->data + pos, in->len - pos, ADMIN_MAX_REQUEST_FRAME, &frame_len);
    if (status == TR_FRAME_NEED_MORE)
      break;
    if (status != TR_FRAME_OK) {
      const char *hint = conn->requests == 0 ? tr_frame_protocol_hint (in->data, in->len) : NULL;
      g_log_structured (G_LOG_DOMAIN, G_LOG_LEVEL_WARNING, "TR_PEER", conn->peer, "MESSAGE",
                        "admin: closing %s: %s%s%s", conn->peer, tr_frame_status_to_string (status),
                        hint ? "; " : "", hint ? hint : "");
      return FALSE;
    }
    conn->requests++;
    if (!handle_message (conn, in->data + pos + TR_FRAME_LEN_SIZE, frame_len))
      return FALSE;
    pos += TR_FRAME_LEN_SIZE + frame_len;
    if (conn->out->len - conn->out_pos > ADMIN_OUT_HIGH_WATER)
      break;
  }
  g_byte_array_remove_range (in, 0, (guint) pos);
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
  if (conn->out->len - conn->out_pos > ADMIN_OUT_HIGH_WATER)
    conn_watch (conn, G_IO_OUT);
  else if (conn->out->len > conn->out_pos)
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

static char *
peer_name (int fd)
{
  struct sockaddr_storage address;
  socklen_t address_len = sizeof address;
  char host[NI_MAXHOST], port[NI_MAXSERV];

  if (getpeername (fd, (struct sockaddr *) &address, &address_len) < 0 ||
      getnameinfo ((struct sockaddr *) &address, address_len, host, sizeof host, port, sizeof port,
                   NI_NUMERICHOST | NI_NUMERICSERV) != 0)
    return g_strdup ("?");
  return g_strdup_printf ("%s:%s", host, port);
}

static gboolean
on_accept (gint fd, GIOCondition condition, gpointer user_data)
{
  TrAdmin *admin = user_data;

  (void) fd;
  (void) condition;
  for (;;) {
    int client = accept4 (admin->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    AdminConn *conn;
    if (client < 0)
      break; /* EAGAIN, or a transient error: the next readiness retries */
    if (g_hash_table_size (admin->conns) >= ADMIN_MAX_CONNECTIONS) {
      g_autofree char *peer = peer_name (client);
      g_log_structured (G_LOG_DOMAIN, G_LOG_LEVEL_WARNING, "TR_PEER", peer, "MESSAGE",
                        "admin: refusing %s: %d admin connections open", peer, ADMIN_MAX_CONNECTIONS);
      close (client);
      continue;
    }
    conn = g_new0 (AdminConn, 1);
    conn->admin = admin;
    conn->fd = client;
    conn->peer = peer_name (client);
    conn->in = g_byte_array_new ();
    conn->out = g_byte_array_new ();
    conn->source = g_source_new (&conn_source_funcs, sizeof (ConnSource));
    ((ConnSource *) conn->source)->conn = conn;
    g_source_set_name (conn->source, "tr-admin connection");
    conn->fd_tag = g_source_add_unix_fd (conn->source, client, G_IO_IN);
    conn->events = G_IO_IN;
    g_source_attach (conn->source, admin->context);
    g_hash_table_add (admin->conns, conn);
    g_debug ("admin: connection from %s", conn->peer);
  }
  return G_SOURCE_CONTINUE;
}

/* ---- life cycle ---- */

static int
listen_on (const char *host, guint16 port, guint16 *port_out, GError **error)
{
  struct addrinfo hints = { 0 };
  struct addrinfo *res = NULL;
  struct sockaddr_storage bound;
  socklen_t bound_len = sizeof bound;
  char service[8];
  int one = 1;
  int fd, rc;

  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  g_snprintf (service, sizeof service, "%u", port);
  rc = getaddrinfo (host, service, &hints, &res);
  if (rc != 0) {
    g_set_error (error, G_IO_ERROR, G_IO_ERROR_FAILED, "admin_listen %s:%u: %s", host, port, gai_strerror (rc));
    return -1;
  }
  fd = socket (res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd >= 0)
    setsockopt (fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (fd < 0 || bind (fd, res->ai_addr, res->ai_addrlen) < 0 || listen (fd, 64) < 0 ||
      getsockname (fd, (struct sockaddr *) &bound, &bound_len) < 0) {
    int saved_errno = errno;
    g_set_error (error, G_IO_ERROR, g_io_error_from_errno (saved_errno), "admin_listen %s:%u: %s", host, port,
                 g_strerror (saved_errno));
    if (fd >= 0)
      close (fd);
    freeaddrinfo (res);
    return -1;
  }
  freeaddrinfo (res);
  *port_out = g_ntohs (bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *) &bound)->sin6_port
                                                   : ((struct sockaddr_in *) &bound)->sin_port);
  return fd;
}

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
  tr_config_free (admin->config);
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

  g_return_val_if_fail (config != NULL && store != NULL && push != NULL, NULL);
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
  if ((config->admin_token_file != NULL && !read_token (admin, config->admin_token_file, error)) ||
      (admin->listen_fd = listen_on (config->admin_host, config->admin_port, &admin->port, error)) < 0) {
    admin_free_unstarted (admin);
    return NULL;
  }
  admin->listen_source = g_unix_fd_source_new (admin->listen_fd, G_IO_IN);
  g_source_set_callback (admin->listen_source, G_SOURCE_FUNC (on_accept), admin, NULL);
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

static gboolean
on_quit (gpointer user_data)
{
  g_main_loop_quit (((TrAdmin *) user_data)->loop);
  return G_SOURCE_REMOVE;
}

void
tr_admin_free (TrAdmin *admin)
{
  GSource *quit_source;

  if (admin == NULL)
    return;
  quit_source = g_idle_source_new ();
  g_source_set_priority (quit_source, G_PRIORITY_HIGH);
  g_source_set_callback (quit_source, on_quit, admin, NULL);
  g_source_attach (quit_source, admin->context);
  g_source_unref (quit_source);
  g_thread_join (admin->thread);
  /* Connections closed but not yet freed by their idle are freed with the
   * context's sources: run what is pending. */
  while (g_main_context_iteration (admin->context, FALSE))
    ;
  g_hash_table_remove_all (admin->conns);
  admin_free_unstarted (admin);
}

void
tr_admin_set_epoch (TrAdmin *admin, guint64 epoch)
{
  admin->epoch = epoch;
}
