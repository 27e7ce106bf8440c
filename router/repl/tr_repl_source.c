/* tr_repl_source.c - the master's side of the stream (see tr_repl_source.h).
 *
 * A link's life, on the tr-repl thread:
 *
 *   peer connected -> queue hello (the master's head, services, address)
 *   hello answered -> acked = next - 1 = the replica's head; fill
 *   fill           -> while the window has room and next <= master head:
 *                     read up to a batch of records from the store, queue
 *                     one append, next = last + 1
 *   append answered-> acked = the replica's head; window grows; fill
 *   refusal / failure -> the peer closes, backs off and reconnects; the
 *                     next hello starts over from the replica's head, so
 *                     what was in flight is sent again only if it was not
 *                     applied (the replica's head says which)
 *
 * The store's notify (any committing thread) records the head and sets the
 * wake source's ready time; the wake dispatch fills every link.
 */
#undef G_LOG_DOMAIN
#define G_LOG_DOMAIN "tr-repl"

#include "tr_repl_source.h"

#include "tr_invoke.h"
#include "tr_peer.h"
#include "tr_repl_proto.h"
#include "tr_storage_error.h"

#include <string.h>

#define LINK_HELLO 1
#define LINK_APPEND 2
#define GET_LINKS_WAIT_US (5 * G_TIME_SPAN_SECOND)

typedef struct {
  TrReplSource *source;
  char *service;
  char *endpoint;
  char *address;          /* host:port, for log lines */
  TrPeer *peer;
  gboolean stopped;       /* stop_send: never connected */
  gboolean hello_done;    /* on this connection */
  gboolean pins;          /* said hello since the start: holds retention at acked + 1 */
  guint64 acked;          /* the replica's head, as last answered */
  guint64 sent;           /* records acknowledged since the start */
  guint64 next_id;        /* next rpc id to queue */
  guint32 next_seqid;
  char *replica_id;       /* (nullable) */
  char *logged_error;     /* (nullable) the failure last logged: the same one is not logged again */
} Link;

struct _TrReplSource {
  TrRpcStore *store;
  TrReplHello hello;      /* what every hello says but the head */
  GPtrArray *links;       /* Link*, configuration order */
  GMainContext *context;
  GMainLoop *loop;
  GThread *thread;
  GSource *wake;
  GMutex head_lock;
  guint64 head;           /* the last committed head the store notified; ->head_lock */
  GByteArray *out;        /* scratch for one message */
};

static const TrPeerCallbacks link_callbacks;

/* ---- helpers ---- */

static guint64
source_head (TrReplSource *source)
{
  guint64 head;

  g_mutex_lock (&source->head_lock);
  head = source->head;
  g_mutex_unlock (&source->head_lock);
  return head;
}

/* Retention keeps every rpc a replica has not acknowledged.  A link not
 * heard from since the start (its replica down, or not reached yet) holds
 * everything, as a service whose endpoints have not reported: that replica
 * may be anywhere behind.  A stop_send link holds nothing (the way to let
 * go of a replica that is gone for good). */
static void
update_low_water (TrReplSource *source)
{
  guint64 low = 0;

  for (guint i = 0; i < source->links->len; i++) {
    const Link *link = g_ptr_array_index (source->links, i);
    guint64 needed = link->pins ? link->acked + 1 : 1;
    if (!link->stopped && (low == 0 || needed < low))
      low = needed;
  }
  tr_rpcstore_set_rpc_low_water (source->store, low);
}

static void link_fill (Link *link);

/* ---- peer callbacks ---- */

static void
on_connected (TrPeer *peer, const char *where, gpointer user_data)
{
  Link *link = user_data;
  TrReplSource *source = link->source;

  g_debug ("replica link %s/%s: connected to %s, saying hello", link->service, link->endpoint, where);
  link->hello_done = FALSE;
  source->hello.head = tr_rpcstore_head (source->store);
  g_byte_array_set_size (source->out, 0);
  tr_repl_build_hello (source->out, (gint32) link->next_seqid, &source->hello);
  tr_peer_queue (peer, NULL, 0, source->out->data, source->out->len, link->next_seqid, TRUE, LINK_HELLO, 0);
  link->next_seqid++;
  tr_peer_flush (peer);
}

static gboolean
on_hello_answered (Link *link, guint64 replica_head, guint64 replica_epoch, char *replica_id, gboolean has_digest,
                   guint64 replica_digest)
{
  TrReplSource *source = link->source;
  guint64 head = source_head (link->source);
  guint64 count = 0, digest = 0;
  g_autoptr (GError) error = NULL;

  g_free (link->replica_id);
  /* Named in every line below; a replica always sends it, but a peer that
   * leaves it out must not print a null. */
  link->replica_id = replica_id != NULL ? replica_id : g_strdup ("?");
  replica_id = link->replica_id;
  if (replica_head > head) {
    /* The replica holds ids this master never stored (REPLICATION.md rule
     * 7): streaming on would give those ids to other RPCs there. */
    tr_peer_fail (link->peer,
                  "replica '%s' has head %" G_GUINT64_FORMAT ", beyond this master's %" G_GUINT64_FORMAT
                  ": it holds rpcs this master does not; re-seed it from a copy of this node's data dir "
                  "(docs/replication.md)", replica_id, replica_head, head);
    return FALSE;
  }
  /* Continuing a replica whose last record is not this master's would
   * hide a divergence under equal heads.  A record retention dropped here
   * cannot be compared: the stream then needs ids this master no longer
   * has anyway, and says so. */
  if (has_digest && tr_rpcstore_digest (source->store, replica_head, replica_head, &count, &digest, &error)
      && digest != replica_digest) {
    tr_peer_fail (link->peer,
                  "replica '%s' holds a different rpc %" G_GUINT64_FORMAT " than this master (digest %016"
                  G_GINT64_MODIFIER "x, here %016" G_GINT64_MODIFIER "x): the stores have diverged; re-seed the "
                  "replica from a copy of this node's data dir (docs/replication.md)", replica_id, replica_head,
                  replica_digest, digest);
    return FALSE;
  }
  link->acked = replica_head;
  link->next_id = replica_head + 1;
  link->hello_done = TRUE;
  link->pins = TRUE;
  g_clear_pointer (&link->logged_error, g_free);
  tr_peer_reset_backoff (link->peer);
  update_low_water (source);
  g_message ("replica link %s/%s: replica '%s' (%s, epoch %" G_GUINT64_FORMAT ") is at rpc %" G_GUINT64_FORMAT
             ", this master at %" G_GUINT64_FORMAT ": streaming from %" G_GUINT64_FORMAT " (%" G_GUINT64_FORMAT
             " behind)", link->service, link->endpoint, replica_id, link->address, replica_epoch, replica_head, head,
             replica_head + 1, head - replica_head);
  return TRUE;
}

static gboolean
on_reply (TrPeer *peer, const TrReply *reply, TrPeerInflight *expected, gpointer user_data)
{
  Link *link = user_data;
  gboolean hello = expected->kind == LINK_HELLO;
  guint64 head = 0, epoch = 0;
  char *replica_id = NULL;
  gboolean refused_flag = FALSE, has_digest = FALSE;
  guint64 digest = 0;
  TrReplRefused refused = { 0 };
  TrFrameStatus status;

  if (reply->header.type == TR_MSG_EXCEPTION) {
    /* An exception is not a replication answer: the peer is no replica. */
    tr_peer_fail (peer, "the replica answered %s with an exception: %.*s (is %s a BACKUP's replication_listen?)",
                  hello ? "hello" : "append", (int) reply->exception_message_len,
                  reply->exception_message != NULL ? (const char *) reply->exception_message : "", link->address);
    return FALSE;
  }
  status = tr_repl_parse_result (reply->body, reply->body_len, hello, &head, &epoch, hello ? &replica_id : NULL,
                                 &digest, &has_digest, &refused_flag, &refused);
  if (status != TR_FRAME_OK || refused_flag)
    g_clear_pointer (&replica_id, g_free);
  if (status != TR_FRAME_OK) {
    tr_peer_fail (peer, "unreadable answer to %s: %s", hello ? "hello" : "append", tr_frame_status_to_string (status));
    tr_repl_refused_clear (&refused);
    return FALSE;
  }
  if (refused_flag) {
    tr_peer_fail (peer, "the replica refused %s (%s): %s [its head %" G_GUINT64_FORMAT ", epoch %" G_GUINT64_FORMAT "]",
                  hello ? "hello" : "append", tr_repl_refused_code_to_string (refused.code),
                  refused.reason != NULL ? refused.reason : "", refused.head, refused.epoch);
    tr_repl_refused_clear (&refused);
    return FALSE;
  }
  if (hello) {
    g_free (tr_peer_inflight_pop (peer));
    return on_hello_answered (link, head, epoch, replica_id, has_digest, digest);
  }
  if (head < expected->tag) {
    tr_peer_fail (peer, "the replica acknowledged a batch up to rpc %" G_GUINT64_FORMAT " with head %" G_GUINT64_FORMAT,
                  expected->tag, head);
    return FALSE;
  }
  g_free (tr_peer_inflight_pop (peer));
  link->sent += head - link->acked;
  link->acked = head;
  tr_peer_reset_backoff (peer);
  tr_peer_window_grow (peer);
  update_low_water (link->source);
  return TRUE;
}

static void
on_io_done (TrPeer *peer, gpointer user_data)
{
  (void) peer;
  link_fill (user_data);
}

static void
on_failed (TrPeer *peer, const char *reason, guint64 delay_ms, gpointer user_data)
{
  Link *link = user_data;

  (void) peer;
  link->hello_done = FALSE;
  link->next_id = link->acked + 1;
  /* A replica that stays away or keeps refusing fails at every retry: say
   * it once, and again when the reason changes. */
  if (g_strcmp0 (link->logged_error, reason) != 0) {
    g_warning ("replica link %s/%s (%s): %s; retrying in %" G_GUINT64_FORMAT " ms (replica at rpc %" G_GUINT64_FORMAT
               ", this master at %" G_GUINT64_FORMAT ")", link->service, link->endpoint, link->address, reason,
               delay_ms, link->acked, source_head (link->source));
    g_free (link->logged_error);
    link->logged_error = g_strdup (reason);
  }
}

static void
on_note (TrPeer *peer, GLogLevelFlags level, const char *message, gpointer user_data)
{
  Link *link = user_data;

  (void) peer;
  g_log (G_LOG_DOMAIN, level, "replica link %s/%s: %s", link->service, link->endpoint, message);
}

static const TrPeerCallbacks link_callbacks = {
  .connected = on_connected,
  .reply = on_reply,
  .io_done = on_io_done,
  .failed = on_failed,
  .note = on_note,
};

/* ---- streaming ---- */

/* Queues one append of the records from link->next_id on (at most a batch,
 * at most @head).  Returns FALSE if nothing could be queued (the peer
 * failed). */
static gboolean
queue_batch (Link *link, guint64 head)
{
  TrReplSource *source = link->source;
  g_autoptr (GPtrArray) records = g_ptr_array_new_with_free_func ((GDestroyNotify) tr_rpcstore_record_free);
  TrRpcStoreStats stats;
  gsize bytes = 0;

  while (link->next_id + records->len <= head && records->len < TR_REPL_BATCH_RECORDS) {
    g_autoptr (GError) error = NULL;
    guint64 id = link->next_id + records->len;
    TrRpcStoreRecord *record = tr_rpcstore_read_record (source->store, id, &error);
    gsize len;
    if (record == NULL) {
      if (g_error_matches (error, TR_STORAGE_ERROR, TR_STORAGE_ERROR_NOT_FOUND))
        tr_peer_fail (link->peer,
                      "the replica needs rpc %" G_GUINT64_FORMAT ", which this master no longer holds (%s): "
                      "re-seed the replica from a copy of this node's data dir (docs/replication.md)",
                      id, error->message);
      else
        tr_peer_fail (link->peer, "cannot read rpc %" G_GUINT64_FORMAT " to send it: %s", id, error->message);
      return FALSE;
    }
    len = g_bytes_get_size (record->message);
    if (records->len > 0 && bytes + len > TR_REPL_BATCH_BYTES) {
      tr_rpcstore_record_free (record);
      break;
    }
    bytes += len;
    g_ptr_array_add (records, record);
  }
  tr_rpcstore_get_stats (source->store, &stats);
  g_byte_array_set_size (source->out, 0);
  tr_repl_build_append (source->out, (gint32) link->next_seqid, source->hello.epoch,
                        (TrRpcStoreRecord *const *) records->pdata, records->len, head, stats.retained_from_rpc_id);
  link->next_id += records->len;
  tr_peer_queue (link->peer, NULL, 0, source->out->data, source->out->len, link->next_seqid, TRUE, LINK_APPEND,
                 link->next_id - 1);
  link->next_seqid++;
  return TRUE;
}

static void
link_fill (Link *link)
{
  guint64 head;
  gboolean queued = FALSE;

  if (link->stopped || !link->hello_done || tr_peer_get_state (link->peer) != TR_PEER_CONNECTED)
    return;
  head = source_head (link->source);
  while (link->next_id <= head && tr_peer_inflight_length (link->peer) < tr_peer_window (link->peer)) {
    if (!queue_batch (link, head))
      return;
    queued = TRUE;
  }
  if (queued)
    tr_peer_flush (link->peer);
}

static gboolean
on_wake (gpointer user_data)
{
  TrReplSource *source = user_data;

  for (guint i = 0; i < source->links->len; i++)
    link_fill (g_ptr_array_index (source->links, i));
  return G_SOURCE_CONTINUE;
}

/* Dispatched once per g_source_set_ready_time (wake, 0): several commits
 * before the thread runs make one wake-up. */
static gboolean
wake_dispatch (GSource *wake, GSourceFunc callback, gpointer user_data)
{
  g_source_set_ready_time (wake, -1);
  return callback (user_data);
}

static GSourceFuncs wake_funcs = {
  .dispatch = wake_dispatch,
};

void
tr_repl_source_on_store_event (gpointer user_data, TrRpcNotify what, guint64 value)
{
  TrReplSource *source = user_data;

  if (what != TR_RPC_NOTIFY_COMMITTED)
    return;
  g_mutex_lock (&source->head_lock);
  source->head = MAX (source->head, value);
  g_mutex_unlock (&source->head_lock);
  /* Thread-safe: wakes the tr-repl thread's context. */
  g_source_set_ready_time (source->wake, 0);
}

/* ---- life cycle ---- */

static gboolean
start_links (gpointer user_data)
{
  TrReplSource *source = user_data;

  for (guint i = 0; i < source->links->len; i++) {
    Link *link = g_ptr_array_index (source->links, i);
    if (link->stopped)
      g_message ("replica link %s/%s (%s): stop_send = true, not connecting", link->service, link->endpoint,
                 link->address);
    else
      tr_peer_start (link->peer);
  }
  return G_SOURCE_REMOVE;
}

static gpointer
source_thread (gpointer user_data)
{
  TrReplSource *source = user_data;

  g_main_context_push_thread_default (source->context);
  g_main_loop_run (source->loop);
  g_main_context_pop_thread_default (source->context);
  return NULL;
}

static void
link_free (gpointer data)
{
  Link *link = data;

  tr_peer_free (link->peer);
  g_free (link->service);
  g_free (link->endpoint);
  g_free (link->address);
  g_free (link->replica_id);
  g_free (link->logged_error);
  g_free (link);
}

TrReplSource *
tr_repl_source_new (const TrConfig *config, TrRpcStore *store, guint64 epoch, const char *producer_address)
{
  TrReplSource *source;
  GSource *idle;

  g_return_val_if_fail (config != NULL && store != NULL && producer_address != NULL, NULL);

  source = g_new0 (TrReplSource, 1);
  source->store = store;
  source->out = g_byte_array_new ();
  g_mutex_init (&source->head_lock);
  source->head = tr_rpcstore_head (store);
  source->hello.server_id = g_strdup (config->server_id);
  source->hello.epoch = epoch;
  source->hello.producer_address = g_strdup (producer_address);
  source->hello.group_file_size = config->group_file_size;
  source->hello.services = g_ptr_array_new_with_free_func (tr_repl_service_free);
  for (guint i = 0; i < config->services->len; i++) {
    const TrServiceConfig *service = g_ptr_array_index (config->services, i);
    TrReplService *mine = g_new0 (TrReplService, 1);
    mine->name = g_strdup (service->name);
    mine->store_id = tr_rpcstore_service_id (store, service->name);
    mine->rpcs = g_ptr_array_new_with_free_func (g_free);
    for (guint r = 0; r < service->rpcs->len; r++)
      g_ptr_array_add (mine->rpcs, g_strdup (g_ptr_array_index (service->rpcs, r)));
    g_ptr_array_add (source->hello.services, mine);
  }
  source->context = g_main_context_new ();
  source->loop = g_main_loop_new (source->context, FALSE);
  source->links = g_ptr_array_new_with_free_func (link_free);
  for (guint s = 0; s < config->replicas->len; s++) {
    const TrServiceConfig *service = g_ptr_array_index (config->replicas, s);
    TrPeerSettings settings = {
      .max_inflight = service->max_inflight,
      .connect_timeout_ms = service->connect_timeout_ms,
      .socket_timeout_ms = service->socket_timeout_ms,
      .retry_backoff_ms = service->retry_backoff_ms,
      .retry_backoff_max_ms = service->retry_backoff_max_ms,
    };
    for (guint e = 0; e < service->endpoints->len; e++) {
      const TrEndpointConfig *endpoint = g_ptr_array_index (service->endpoints, e);
      Link *link = g_new0 (Link, 1);
      link->source = source;
      link->service = g_strdup (service->name);
      link->endpoint = g_strdup (endpoint->id);
      link->address = strchr (endpoint->host, ':') != NULL ? g_strdup_printf ("[%s]:%u", endpoint->host, endpoint->port)
                                                           : g_strdup_printf ("%s:%u", endpoint->host, endpoint->port);
      link->stopped = endpoint->stop_send;
      link->next_seqid = 1;
      link->peer = tr_peer_new (endpoint->host, endpoint->port, &settings, &link_callbacks, link);
      tr_peer_attach (link->peer, source->context);
      g_ptr_array_add (source->links, link);
    }
  }
  update_low_water (source);
  source->wake = g_source_new (&wake_funcs, sizeof (GSource));
  g_source_set_callback (source->wake, on_wake, source, NULL);
  g_source_set_name (source->wake, "tr-repl wake");
  g_source_attach (source->wake, source->context);
  idle = g_idle_source_new ();
  g_source_set_callback (idle, start_links, source, NULL);
  g_source_attach (idle, source->context);
  g_source_unref (idle);
  source->thread = g_thread_new ("tr-repl", source_thread, source);
  g_message ("replication: streaming every committed rpc to %u replica link%s (epoch %" G_GUINT64_FORMAT
             ", head %" G_GUINT64_FORMAT ")", source->links->len, source->links->len == 1 ? "" : "s", epoch,
             source->head);
  return source;
}

void
tr_repl_link_info_free (gpointer data)
{
  TrReplLinkInfo *info = data;

  g_free (info->service);
  g_free (info->endpoint);
  g_free (info->address);
  g_free (info->replica_id);
  g_free (info->last_error);
  g_free (info);
}

typedef struct {
  TrReplSource *source;
  GPtrArray *links; /* (element-type TrReplLinkInfo) */
} GetLinks;

static void
get_links_free (gpointer data)
{
  GetLinks *request = data;

  g_ptr_array_unref (request->links);
  g_free (request);
}

static void
get_links_on_thread (gpointer data)
{
  GetLinks *request = data;
  TrReplSource *source = request->source;
  guint64 head = source_head (source);

  for (guint i = 0; i < source->links->len; i++) {
    const Link *link = g_ptr_array_index (source->links, i);
    TrReplLinkInfo *info = g_new0 (TrReplLinkInfo, 1);
    TrPeerState state = tr_peer_get_state (link->peer);
    info->service = g_strdup (link->service);
    info->endpoint = g_strdup (link->endpoint);
    info->address = g_strdup (link->address);
    info->state = link->stopped                 ? TR_REPL_LINK_STOPPED
                  : state == TR_PEER_CONNECTED  ? (link->hello_done ? TR_REPL_LINK_STREAMING : TR_REPL_LINK_HELLO)
                  : state == TR_PEER_BACKOFF    ? TR_REPL_LINK_BACKOFF
                                                : TR_REPL_LINK_CONNECTING;
    info->replica_id = g_strdup (link->replica_id);
    info->acked = link->acked;
    info->head = head;
    info->sent = link->sent;
    info->retries = tr_peer_get_retries (link->peer);
    info->last_error = g_strdup (tr_peer_get_last_error (link->peer));
    g_ptr_array_add (request->links, info);
  }
}

GPtrArray *
tr_repl_source_get_links (TrReplSource *source)
{
  GetLinks *request;
  GPtrArray *links;

  g_return_val_if_fail (source != NULL, NULL);

  request = g_new0 (GetLinks, 1);
  request->source = source;
  request->links = g_ptr_array_new_with_free_func (tr_repl_link_info_free);
  if (!tr_invoke_wait (source->context, G_PRIORITY_DEFAULT, get_links_on_thread, request, get_links_free,
                       g_get_monotonic_time () + GET_LINKS_WAIT_US))
    return g_ptr_array_new_with_free_func (tr_repl_link_info_free);
  links = g_ptr_array_ref (request->links);
  get_links_free (request);
  return links;
}

void
tr_repl_source_free (TrReplSource *source)
{
  if (source == NULL)
    return;
  tr_invoke_stop_loop (source->context, source->loop, source->thread);
  /* The thread has stopped for good: the peers are this thread's now. */
  for (guint i = 0; i < source->links->len; i++)
    tr_peer_stop (((Link *) g_ptr_array_index (source->links, i))->peer);
  g_ptr_array_unref (source->links);
  g_source_destroy (source->wake);
  g_source_unref (source->wake);
  while (g_main_context_iteration (source->context, FALSE))
    ;
  g_main_loop_unref (source->loop);
  g_main_context_unref (source->context);
  tr_repl_hello_clear (&source->hello);
  g_byte_array_unref (source->out);
  g_mutex_clear (&source->head_lock);
  g_free (source);
}
