/* tr_repl_sink.c - the replica's side of the stream (see tr_repl_sink.h).
 *
 * Per connection (a GSource on the sink's context, as the admin server's):
 * bytes go to ->in, every complete frame is one message parsed with
 * tr_frame_parse_header(); hello and append are decoded with
 * tr_repl_proto, checked and served in order, and their answers appended to
 * ->out.  An append is applied right there, on this thread: the answer
 * (the replica's head) is written only after tr_rpcstore_apply_batch()
 * returned, so an acknowledged batch is as durable as the replica's
 * sync_mode promises.  Several appends read at once are applied one after
 * the other (the master pipelines them), each its own group commit.
 */
#undef G_LOG_DOMAIN
#define G_LOG_DOMAIN "tr-repl"

#include "tr_repl_sink.h"

#include "tr_frame.h"
#include "tr_invoke.h"
#include "tr_net.h"
#include "tr_repl_proto.h"
#include "tr_storage_error.h"

#include <gio/gio.h>
#include <string.h>
#include <unistd.h>

#define SINK_READ_CHUNK (256 * 1024)
#define SINK_MAX_CONNECTIONS 8
#define SINK_LISTEN_BACKLOG 16

/* Kinds of rate-limited log lines (tr_net_log_limited()). */
#define LIMIT_FRAME "bad frame"
#define LIMIT_NOT_REPL "not a replication call"
#define LIMIT_ACCEPT "accept"
#define LIMIT_MAX_CONNECTIONS "max connections"

typedef struct {
  GSource base;
  gpointer conn;
} ConnSource;

typedef struct {
  TrReplSink *sink;
  TrNetConn net;
  GSource *source;
  gpointer fd_tag;
  GIOCondition events;
  guint64 frames;     /* frames read: a protocol hint only before the first */
  gboolean hello;     /* a hello was accepted on this connection */
  char *master_id;    /* (nullable) from that hello */
} SinkConn;

struct _TrReplSink {
  TrRpcStore *store;
  char *server_id;
  char *address;         /* replication_listen as bound, for log lines */
  guint64 epoch;
  guint64 retained_from; /* the store's rpc low water as last set (follow_retention()); 0 = never */
  guint32 max_frame;
  guint64 group_file_size;
  GPtrArray *services;   /* (element-type TrReplService) the replica's own COMMON services */
  GHashTable *known_ids; /* store ids of those services (GUINT_TO_POINTER (id + 1)) */
  TrReplSinkMasterFunc on_master;
  gpointer on_master_data;
  int listen_fd;
  guint16 port;
  GSource *listen_source;
  GHashTable *conns;     /* SinkConn* set */
  GMainContext *context;
  GMainLoop *loop;
  GThread *thread;
  TrNetLogLimit *log_limit;
  /* Counted on the sink's thread, logged by tr_repl_sink_free(). */
  guint64 batches;       /* batches applied */
  guint64 records;       /* records applied */
  guint64 refused;       /* messages refused, connections closed for bad input */
};

/* ---- bookkeeping ---- */

static void
count (TrReplSink *sink, guint64 batches, guint64 records, guint64 refused)
{
  sink->batches += batches;
  sink->records += records;
  sink->refused += refused;
}

/* ---- checks ---- */

static gboolean
same_rpcs (const GPtrArray *a, const GPtrArray *b)
{
  if (a->len != b->len)
    return FALSE;
  for (guint i = 0; i < a->len; i++)
    if (!g_ptr_array_find_with_equal_func ((GPtrArray *) b, g_ptr_array_index (a, i), g_str_equal, NULL))
      return FALSE;
  return TRUE;
}

static const TrReplService *
find_service (const GPtrArray *services, const char *name)
{
  for (guint i = 0; i < services->len; i++) {
    const TrReplService *service = g_ptr_array_index (services, i);
    if (strcmp (service->name, name) == 0)
      return service;
  }
  return NULL;
}

static char *
join (const GPtrArray *strings)
{
  GString *out = g_string_new (NULL);

  for (guint i = 0; i < strings->len; i++)
    g_string_append_printf (out, "%s%s", i > 0 ? ", " : "", (const char *) g_ptr_array_index (strings, i));
  return g_string_free (out, FALSE);
}

/* NULL if the master's services are the replica's, else why not (naming
 * the first service that differs). */
static char *
services_differ (const TrReplSink *sink, const GPtrArray *master)
{
  for (guint i = 0; i < sink->services->len; i++) {
    const TrReplService *mine = g_ptr_array_index (sink->services, i);
    const TrReplService *theirs = find_service (master, mine->name);
    if (theirs == NULL)
      return g_strdup_printf ("service '%s' of this replica is not a service of the master", mine->name);
    if (theirs->store_id != mine->store_id)
      return g_strdup_printf ("service '%s' has store id %d on the master and %d on this replica (services.map "
                              "differs: the data dirs were not started with the same services in the same order)",
                              mine->name, theirs->store_id, mine->store_id);
    if (!same_rpcs (mine->rpcs, theirs->rpcs)) {
      g_autofree char *a = join (theirs->rpcs);
      g_autofree char *b = join (mine->rpcs);
      return g_strdup_printf ("service '%s' has rpcs [%s] on the master and [%s] on this replica", mine->name, a,
                              b);
    }
  }
  for (guint i = 0; i < master->len; i++) {
    const TrReplService *theirs = g_ptr_array_index (master, i);
    if (find_service (sink->services, theirs->name) == NULL)
      return g_strdup_printf ("service '%s' of the master is not a service of this replica", theirs->name);
  }
  return NULL;
}

/* ---- answers ---- */

/* Answers @method/@seqid with Refused and logs why (rate-limited by
 * code). */
static void
refuse (SinkConn *conn, const char *method, gint32 seqid, TrReplRefusedCode code, const char *reason)
{
  TrReplSink *sink = conn->sink;
  TrReplRefused refused = { code, (char *) reason, tr_rpcstore_head (sink->store), sink->epoch };

  tr_repl_build_refused (conn->net.out, method, seqid, &refused);
  tr_net_log_limited (sink->log_limit, tr_repl_refused_code_to_string (code), G_LOG_LEVEL_WARNING, conn->net.peer,
                      "replication: refused %s from %s (%s): %s; nothing stored, head stays %" G_GUINT64_FORMAT,
                      method, conn->net.peer, conn->master_id != NULL ? conn->master_id : "no hello yet", reason,
                      refused.head);
  count (sink, 0, 0, 1);
}

/* Something that is not a replication call: answered (when it can be) with
 * a TApplicationException, logged, and the connection closed. */
static gboolean
reject (SinkConn *conn, const TrMsgHeader *header, TrAppExceptionType type, const char *what)
{
  TrReplSink *sink = conn->sink;
  g_autofree char *text = g_strdup_printf ("%s: this is the replication port of thriftrouter BACKUP node '%s' (%s), "
                                           "which takes only a master's hello and append; producers write to "
                                           "the master", what, sink->server_id, sink->address);

  if (header != NULL && header->seqid_valid && header->name_len <= TR_FRAME_MAX_NAME_LEN
      && header->type == TR_MSG_CALL)
    tr_frame_build_exception (conn->net.out, (const char *) header->name, header->name_len, header->seqid, type,
                              text);
  tr_net_log_limited (sink->log_limit, LIMIT_NOT_REPL, G_LOG_LEVEL_WARNING, conn->net.peer,
                      "replication: closing %s: %s; nothing stored", conn->net.peer, what);
  count (sink, 0, 0, 1);
  return FALSE;
}

/* ---- calls ---- */

static void
serve_hello (SinkConn *conn, const guint8 *body, gsize len, gint32 seqid)
{
  TrReplSink *sink = conn->sink;
  TrReplHello hello;
  TrFrameStatus status = tr_repl_parse_hello (body, len, &hello);
  g_autofree char *differ = NULL;

  if (status != TR_FRAME_OK) {
    g_autofree char *reason = g_strdup_printf ("undecodable hello: %s", tr_frame_status_to_string (status));
    tr_repl_hello_clear (&hello);
    refuse (conn, TR_REPL_METHOD_HELLO, seqid, TR_REPL_REFUSED_BAD_BATCH, reason);
    return;
  }
  g_free (conn->master_id);
  conn->master_id = g_strdup (hello.server_id);
  conn->hello = FALSE;
  if (hello.epoch < sink->epoch) {
    g_autofree char *reason = g_strdup_printf ("master '%s' is at epoch %" G_GUINT64_FORMAT ", below this replica's "
                                               "%" G_GUINT64_FORMAT " (a stale master)", hello.server_id,
                                               hello.epoch, sink->epoch);
    refuse (conn, TR_REPL_METHOD_HELLO, seqid, TR_REPL_REFUSED_STALE_EPOCH, reason);
  } else if (hello.group_file_size != 0 && hello.group_file_size != sink->group_file_size) {
    g_autofree char *reason = g_strdup_printf ("group_file_size is %" G_GUINT64_FORMAT " on the master and %"
                                               G_GUINT64_FORMAT " on this replica: parts and index entries would "
                                               "differ; give the replica the master's group_file_size (a new data "
                                               "dir: it is part of the node's identity)", hello.group_file_size,
                                               sink->group_file_size);
    refuse (conn, TR_REPL_METHOD_HELLO, seqid, TR_REPL_REFUSED_LAYOUT_DIFFERS, reason);
  } else if ((differ = services_differ (sink, hello.services)) != NULL) {
    refuse (conn, TR_REPL_METHOD_HELLO, seqid, TR_REPL_REFUSED_SERVICES_DIFFER, differ);
  } else {
    guint64 head = tr_rpcstore_head (sink->store);
    guint64 count = 0, digest = 0;
    /* The master checks that this replica's last record is its own. */
    gboolean has_digest = head > 0 && tr_rpcstore_digest (sink->store, head, head, &count, &digest, NULL);
    conn->hello = TRUE;
    tr_repl_build_hello_reply (conn->net.out, seqid, sink->server_id, head, sink->epoch, has_digest, digest);
    g_message ("replication: master '%s' (%s, producers at %s, epoch %" G_GUINT64_FORMAT ", head %" G_GUINT64_FORMAT
               ") connected; this replica's head is %" G_GUINT64_FORMAT ", the stream resumes at %" G_GUINT64_FORMAT,
               hello.server_id, conn->net.peer, hello.producer_address ? hello.producer_address : "?", hello.epoch,
               hello.head, head, head + 1);
    if (sink->on_master != NULL)
      sink->on_master (hello.server_id, hello.producer_address ? hello.producer_address : "", sink->on_master_data);
  }
  tr_repl_hello_clear (&hello);
}

/* NULL if @records are first_id, first_id + 1, ... with service ids this
 * replica knows; else what is wrong. */
static char *
batch_problem (const TrReplSink *sink, GPtrArray *records, guint64 first_id)
{
  for (guint i = 0; i < records->len; i++) {
    const TrRpcStoreRecord *record = g_ptr_array_index (records, i);
    if (record->rpc_id != first_id + i)
      return g_strdup_printf ("record %u of the batch has id %" G_GUINT64_FORMAT ", expected %" G_GUINT64_FORMAT, i,
                              record->rpc_id, first_id + i);
    if (record->n_services > G_MAXUINT16)
      return g_strdup_printf ("rpc %" G_GUINT64_FORMAT " lists %u services", record->rpc_id, record->n_services);
    for (guint s = 0; s < record->n_services; s++)
      if (!g_hash_table_contains (sink->known_ids, GUINT_TO_POINTER (record->service_ids[s] + 1)))
        return g_strdup_printf ("rpc %" G_GUINT64_FORMAT " names service id %u, which is none of this replica's "
                                "services", record->rpc_id, record->service_ids[s]);
  }
  return NULL;
}

/* A BACKUP pushes nothing, so no endpoint tells its store what it still
 * needs: it keeps what its master keeps.  The master's retention needs
 * nothing below @source_keeps_from (its endpoints and replicas acknowledged
 * it); never past what this replica has applied.  The same parts go, as
 * the files are byte-identical. */
static void
follow_retention (TrReplSink *sink, guint64 source_keeps_from)
{
  guint64 keep_from = MIN (source_keeps_from, tr_rpcstore_head (sink->store) + 1);

  if (source_keeps_from == 0 || keep_from == sink->retained_from)
    return;
  if (sink->retained_from == 0)
    for (guint i = 0; i < sink->services->len; i++)
      tr_rpcstore_set_low_water (sink->store, (guint32) ((TrReplService *) g_ptr_array_index (sink->services, i))->store_id,
                                 G_MAXUINT64);
  sink->retained_from = keep_from;
  tr_rpcstore_set_rpc_low_water (sink->store, keep_from);
}

static void
serve_append (SinkConn *conn, const guint8 *body, gsize len, gint32 seqid)
{
  TrReplSink *sink = conn->sink;
  g_autoptr (GPtrArray) records = NULL;
  g_autoptr (GError) error = NULL;
  g_autofree char *problem = NULL;
  guint64 epoch = 0, first_id = 0, source_head = 0, source_keeps_from = 0;
  guint64 head = tr_rpcstore_head (sink->store);
  TrFrameStatus status;

  if (!conn->hello) {
    refuse (conn, TR_REPL_METHOD_APPEND, seqid, TR_REPL_REFUSED_NO_HELLO,
            "append before an accepted hello on this connection");
    return;
  }
  status = tr_repl_parse_append (sink->store, body, len, &epoch, &first_id, &records, &source_head, &source_keeps_from);
  if (status != TR_FRAME_OK) {
    g_autofree char *reason = g_strdup_printf ("undecodable batch: %s", tr_frame_status_to_string (status));
    refuse (conn, TR_REPL_METHOD_APPEND, seqid, TR_REPL_REFUSED_BAD_BATCH, reason);
    return;
  }
  if (epoch < sink->epoch) {
    g_autofree char *reason = g_strdup_printf ("batch of epoch %" G_GUINT64_FORMAT ", below this replica's %"
                                               G_GUINT64_FORMAT " (a stale master)", epoch, sink->epoch);
    refuse (conn, TR_REPL_METHOD_APPEND, seqid, TR_REPL_REFUSED_STALE_EPOCH, reason);
    return;
  }
  if (first_id != head + 1) {
    g_autofree char *reason = g_strdup_printf ("batch starts at rpc %" G_GUINT64_FORMAT " but this replica's head is %"
                                               G_GUINT64_FORMAT " (it takes %" G_GUINT64_FORMAT " next)",
                                               first_id, head, head + 1);
    refuse (conn, TR_REPL_METHOD_APPEND, seqid, TR_REPL_REFUSED_NOT_CONTINUOUS, reason);
    return;
  }
  if ((problem = batch_problem (sink, records, first_id)) != NULL) {
    refuse (conn, TR_REPL_METHOD_APPEND, seqid, TR_REPL_REFUSED_BAD_BATCH, problem);
    return;
  }
  if (records->len > 0
      && !tr_rpcstore_apply_batch (sink->store, (TrRpcStoreRecord *const *) records->pdata, records->len, &error)) {
    g_autofree char *reason = g_strdup_printf ("cannot store rpcs %" G_GUINT64_FORMAT "..%" G_GUINT64_FORMAT ": %s",
                                               first_id, first_id + records->len - 1, error->message);
    refuse (conn, TR_REPL_METHOD_APPEND, seqid,
            g_error_matches (error, TR_STORAGE_ERROR, TR_STORAGE_ERROR_SEQUENCE) ? TR_REPL_REFUSED_NOT_CONTINUOUS
                                                                                  : TR_REPL_REFUSED_STORE_FAILED,
            reason);
    return;
  }
  count (sink, 1, records->len, 0);
  follow_retention (sink, source_keeps_from);
  tr_repl_build_append_reply (conn->net.out, seqid, tr_rpcstore_head (sink->store));
}

/* Handles one frame payload.  Returns FALSE to close the connection. */
static gboolean
handle_message (SinkConn *conn, const guint8 *msg, gsize len, gboolean first_frame)
{
  TrMsgHeader header;
  TrFrameStatus status = tr_frame_parse_header (msg, len, &header);

  if (status != TR_FRAME_OK) {
    const char *hint = first_frame ? tr_frame_protocol_hint (msg - TR_FRAME_LEN_SIZE, len + TR_FRAME_LEN_SIZE) : NULL;
    g_autofree char *what = g_strdup_printf ("malformed message: %s%s%s", tr_frame_status_to_string (status),
                                             hint ? "; " : "", hint ? hint : "");
    return reject (conn, &header, TR_APP_EXC_PROTOCOL_ERROR, what);
  }
  if (header.type != TR_MSG_CALL) {
    g_autofree char *what = g_strdup_printf ("a %s message '%.*s'", header.type == TR_MSG_ONEWAY ? "oneway" : "reply",
                                             (int) header.name_len, header.name);
    return reject (conn, &header, TR_APP_EXC_INVALID_MESSAGE_TYPE, what);
  }
  if (header.name_len == strlen (TR_REPL_METHOD_HELLO)
      && memcmp (header.name, TR_REPL_METHOD_HELLO, header.name_len) == 0)
    serve_hello (conn, msg + header.body_offset, len - header.body_offset, header.seqid);
  else if (header.name_len == strlen (TR_REPL_METHOD_APPEND)
           && memcmp (header.name, TR_REPL_METHOD_APPEND, header.name_len) == 0)
    serve_append (conn, msg + header.body_offset, len - header.body_offset, header.seqid);
  else {
    g_autofree char *what = g_strdup_printf ("'%.*s' is not a replication call", (int) header.name_len, header.name);
    return reject (conn, &header, TR_APP_EXC_UNKNOWN_METHOD, what);
  }
  return TRUE;
}

/* ---- connections ---- */

static void conn_watch (SinkConn *conn, GIOCondition events);

static void
conn_free (gpointer data)
{
  SinkConn *conn = data;

  if (conn->source != NULL) {
    g_source_destroy (conn->source);
    g_source_unref (conn->source);
  }
  tr_net_conn_clear (&conn->net);
  g_free (conn->master_id);
  g_free (conn);
}

static gboolean
on_conn_free (gpointer user_data)
{
  conn_free (user_data);
  return G_SOURCE_REMOVE;
}

/* Inside the connection's own dispatch: stop its source now, free it from
 * an idle.  What is still queued (an exception naming the problem) gets
 * one last try. */
static void
conn_close (SinkConn *conn)
{
  TrReplSink *sink = conn->sink;
  GSource *idle;

  tr_net_conn_flush (&conn->net, NULL);
  if (conn->hello)
    g_message ("replication: master '%s' (%s) disconnected", conn->master_id, conn->net.peer);
  g_hash_table_steal (sink->conns, conn);
  g_source_destroy (conn->source);
  idle = g_idle_source_new ();
  g_source_set_callback (idle, on_conn_free, conn, NULL);
  g_source_attach (idle, sink->context);
  g_source_unref (idle);
}

/* Returns FALSE if the connection is to be closed. */
static gboolean
conn_read (SinkConn *conn)
{
  TrReplSink *sink = conn->sink;
  GByteArray *in = conn->net.in;
  g_autoptr (GError) error = NULL;
  gsize pos = 0;
  gsize n = 0;
  TrNetIoStatus io = tr_net_conn_read (&conn->net, SINK_READ_CHUNK, &n, &error);

  if (io == TR_NET_IO_AGAIN)
    return TRUE;
  if (io == TR_NET_IO_CLOSED) {
    if (in->len > 0)
      tr_net_log_limited (sink->log_limit, LIMIT_FRAME, G_LOG_LEVEL_WARNING, conn->net.peer,
                          "replication: %s hung up in the middle of a frame (%u bytes unread; nothing of it stored)",
                          conn->net.peer, in->len);
    return FALSE;
  }
  for (;;) {
    guint32 frame_len = 0;
    TrFrameStatus status = tr_frame_next (in->data + pos, in->len - pos, sink->max_frame, &frame_len);
    if (status == TR_FRAME_NEED_MORE)
      break;
    if (status != TR_FRAME_OK) {
      const char *hint = conn->frames == 0 ? tr_frame_protocol_hint (in->data, in->len) : NULL;
      g_autofree char *kind = g_strconcat (tr_frame_status_to_string (status), hint ? hint : "", NULL);
      tr_net_log_limited (sink->log_limit, kind, G_LOG_LEVEL_WARNING, conn->net.peer,
                          "replication: closing %s: %s (frame limit %u bytes)%s%s; nothing stored", conn->net.peer,
                          tr_frame_status_to_string (status), sink->max_frame, hint ? "; " : "", hint ? hint : "");
      count (sink, 0, 0, 1);
      return FALSE;
    }
    if (!handle_message (conn, in->data + pos + TR_FRAME_LEN_SIZE, frame_len, conn->frames++ == 0))
      return FALSE;
    pos += TR_FRAME_LEN_SIZE + frame_len;
  }
  tr_net_conn_consume (&conn->net, pos);
  return TRUE;
}

static void
conn_io (SinkConn *conn, GIOCondition condition)
{
  if ((condition & (G_IO_IN | G_IO_HUP | G_IO_ERR)) && !conn_read (conn)) {
    conn_close (conn);
    return;
  }
  if (tr_net_conn_flush (&conn->net, NULL) == TR_NET_IO_CLOSED) {
    conn_close (conn);
    return;
  }
  /* A master that does not read its answers stalls only itself: stop
   * reading it until they are out. */
  if (tr_net_conn_out_pending (&conn->net) > SINK_READ_CHUNK)
    conn_watch (conn, G_IO_OUT);
  else if (tr_net_conn_out_pending (&conn->net) > 0)
    conn_watch (conn, G_IO_IN | G_IO_OUT);
  else
    conn_watch (conn, G_IO_IN);
}

static gboolean
conn_source_dispatch (GSource *source, GSourceFunc callback, gpointer user_data)
{
  SinkConn *conn = ((ConnSource *) source)->conn;
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
conn_watch (SinkConn *conn, GIOCondition events)
{
  if (conn->events != events) {
    g_source_modify_unix_fd (conn->source, conn->fd_tag, events);
    conn->events = events;
  }
}

static gboolean
on_accept (gpointer user_data)
{
  TrReplSink *sink = user_data;

  for (;;) {
    g_autoptr (GError) error = NULL;
    int client = tr_net_accept (sink->listen_fd, &error);
    SinkConn *conn;
    if (client < 0) {
      if (tr_net_accept_must_pause (error)) {
        tr_net_log_limited (sink->log_limit, LIMIT_ACCEPT, G_LOG_LEVEL_WARNING, NULL,
                            "replication: %s: %s; not accepting for %d ms", sink->address, error->message,
                            TR_NET_ACCEPT_PAUSE_MS);
        tr_net_listen_source_pause (sink->listen_source, TR_NET_ACCEPT_PAUSE_MS);
      } else if (!g_error_matches (error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK))
        tr_net_log_limited (sink->log_limit, LIMIT_ACCEPT, G_LOG_LEVEL_WARNING, NULL, "replication: %s: %s",
                            sink->address, error->message);
      break;
    }
    if (g_hash_table_size (sink->conns) >= SINK_MAX_CONNECTIONS) {
      g_autofree char *peer = tr_net_peer_name (client);
      tr_net_log_limited (sink->log_limit, LIMIT_MAX_CONNECTIONS, G_LOG_LEVEL_WARNING, peer,
                          "replication: refusing %s: %d connections open on %s", peer, SINK_MAX_CONNECTIONS,
                          sink->address);
      close (client);
      continue;
    }
    conn = g_new0 (SinkConn, 1);
    conn->sink = sink;
    tr_net_conn_init (&conn->net, client);
    conn->source = g_source_new (&conn_source_funcs, sizeof (ConnSource));
    ((ConnSource *) conn->source)->conn = conn;
    g_source_set_name (conn->source, "tr-repl-sink connection");
    conn->fd_tag = g_source_add_unix_fd (conn->source, client, G_IO_IN);
    conn->events = G_IO_IN;
    g_source_attach (conn->source, sink->context);
    g_hash_table_add (sink->conns, conn);
    g_debug ("replication: connection from %s", conn->net.peer);
  }
  return G_SOURCE_CONTINUE;
}

/* ---- life cycle ---- */

static gpointer
sink_thread (gpointer user_data)
{
  TrReplSink *sink = user_data;

  g_main_context_push_thread_default (sink->context);
  g_main_loop_run (sink->loop);
  g_main_context_pop_thread_default (sink->context);
  return NULL;
}

static void
sink_free_unstarted (TrReplSink *sink)
{
  if (sink->listen_source != NULL) {
    g_source_destroy (sink->listen_source);
    g_source_unref (sink->listen_source);
  }
  g_hash_table_unref (sink->conns);
  if (sink->listen_fd >= 0)
    close (sink->listen_fd);
  g_main_loop_unref (sink->loop);
  g_main_context_unref (sink->context);
  tr_net_log_limit_free (sink->log_limit);
  g_ptr_array_unref (sink->services);
  g_hash_table_unref (sink->known_ids);
  g_free (sink->server_id);
  g_free (sink->address);
  g_free (sink);
}

TrReplSink *
tr_repl_sink_new (const TrConfig *config, TrRpcStore *store, guint64 epoch, TrReplSinkMasterFunc on_master,
                  gpointer user_data, GError **error)
{
  TrReplSink *sink;

  g_return_val_if_fail (config != NULL && store != NULL && config->replication_host != NULL, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  sink = g_new0 (TrReplSink, 1);
  sink->store = store;
  sink->server_id = g_strdup (config->server_id);
  sink->epoch = epoch;
  sink->group_file_size = config->group_file_size;
  /* The largest batch the source builds: its byte limit, or one record as
   * large as the biggest message, plus the fields around them. */
  sink->max_frame = MAX (config->max_frame_size, TR_REPL_BATCH_BYTES) + TR_REPL_BATCH_OVERHEAD;
  sink->on_master = on_master;
  sink->on_master_data = user_data;
  sink->services = g_ptr_array_new_with_free_func (tr_repl_service_free);
  sink->known_ids = g_hash_table_new (NULL, NULL);
  for (guint i = 0; i < config->services->len; i++) {
    const TrServiceConfig *service = g_ptr_array_index (config->services, i);
    TrReplService *mine = g_new0 (TrReplService, 1);
    mine->name = g_strdup (service->name);
    mine->store_id = tr_rpcstore_service_id (store, service->name);
    mine->rpcs = g_ptr_array_new_with_free_func (g_free);
    for (guint r = 0; r < service->rpcs->len; r++)
      g_ptr_array_add (mine->rpcs, g_strdup (g_ptr_array_index (service->rpcs, r)));
    g_ptr_array_add (sink->services, mine);
    g_hash_table_add (sink->known_ids, GUINT_TO_POINTER ((guint) mine->store_id + 1));
  }
  sink->listen_fd = -1;
  sink->context = g_main_context_new ();
  sink->loop = g_main_loop_new (sink->context, FALSE);
  sink->conns = g_hash_table_new_full (NULL, NULL, conn_free, NULL);
  sink->log_limit = tr_net_log_limit_new (G_LOG_DOMAIN, G_TIME_SPAN_SECOND);
  sink->listen_fd = tr_net_listen (config->replication_host, config->replication_port, SINK_LISTEN_BACKLOG,
                                   &sink->port, error);
  if (sink->listen_fd < 0) {
    g_prefix_error (error, "replication_listen: ");
    sink_free_unstarted (sink);
    return NULL;
  }
  sink->address = strchr (config->replication_host, ':') != NULL
                      ? g_strdup_printf ("[%s]:%u", config->replication_host, sink->port)
                      : g_strdup_printf ("%s:%u", config->replication_host, sink->port);
  sink->listen_source = tr_net_listen_source_new (sink->listen_fd, on_accept, sink);
  g_source_attach (sink->listen_source, sink->context);
  sink->thread = g_thread_new ("tr-repl-sink", sink_thread, sink);
  g_message ("replication: BACKUP '%s' receives its master's stream on %s (epoch %" G_GUINT64_FORMAT ", head %"
             G_GUINT64_FORMAT ")", sink->server_id, sink->address, epoch, tr_rpcstore_head (store));
  return sink;
}

guint16
tr_repl_sink_get_port (TrReplSink *sink)
{
  g_return_val_if_fail (sink != NULL, 0);
  return sink->port;
}

void
tr_repl_sink_free (TrReplSink *sink)
{
  if (sink == NULL)
    return;
  tr_invoke_stop_loop (sink->context, sink->loop, sink->thread);
  while (g_main_context_iteration (sink->context, FALSE))
    ;
  g_hash_table_remove_all (sink->conns);
  g_message ("replication: %" G_GUINT64_FORMAT " rpcs applied in %" G_GUINT64_FORMAT " batches since the start, %"
             G_GUINT64_FORMAT " messages refused; head %" G_GUINT64_FORMAT, sink->records, sink->batches,
             sink->refused, tr_rpcstore_head (sink->store));
  sink_free_unstarted (sink);
}
