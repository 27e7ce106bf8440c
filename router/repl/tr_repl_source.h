/* tr_repl_source.h - the master's side of the replication stream
 * (thrift/repl.thrift, docs/replication.md).
 *
 * Every endpoint of a service with service_type = BACKUP (config->replicas)
 * is a replica's replication_listen address, served by one link: a TrPeer
 * (connect, backoff, pipelined window, reply matching) that says hello
 * (server id, epoch, head, the COMMON services with their store ids and
 * rpcs, the producers' address), learns the replica's head, and streams
 * every committed RPC from head + 1 in id order, read back from the store
 * (tr_rpcstore_read_record()), in batches of at most TR_REPL_BATCH_RECORDS
 * records / TR_REPL_BATCH_BYTES bytes, up to the service's max_inflight
 * batches in flight.  A replica answers a batch with its head once the
 * batch is durable there; that is the link's acknowledged id.
 *
 * A refusal (services differ, stale epoch, ids that do not continue the
 * replica's head, a failed store) fails the link: it reconnects with the
 * service's backoff and says hello again, so a replica that was restarted
 * or fell behind is caught up from its own head.  An endpoint with
 * stop_send = true is not connected.  Links are built at start-up; a reload
 * does not change them (tr_config_diff_router() names such a change, and a
 * reload refuses it).
 *
 * Retention (tr_rpcstore_set_rpc_low_water()): the store keeps every rpc
 * from the lowest acknowledged id + 1 over the links that said hello since
 * the start, and everything while a link (not stop_send) has not.
 *
 * Threads: one thread "tr-repl" with its own GMainContext runs every link.
 * The store's commit notify (tr_repl_source_on_store_event(), on the
 * committing thread) only records the new head and wakes that thread.
 * tr_repl_source_new() / _free() on the main thread; _get_links() on any.
 */
#pragma once

#include "tr_config.h"
#include "tr_rpcstore.h"

#include <glib.h>

G_BEGIN_DECLS

typedef struct _TrReplSource TrReplSource;

/* tr_repl_source_new:
 * @config: (transfer none): read during the call (server_id, replicas,
 *   the COMMON services).
 * @store: (transfer none): outlives the source.
 * @epoch: the master's epoch (tr_node).
 * @producer_address: (transfer none): where producers write ("host:port"),
 *   told to replicas so that they can name it.
 * Starts the thread and every link that is not stop_send.  The caller
 * subscribes tr_repl_source_on_store_event() to the store.
 * Returns: (transfer full). */
TrReplSource *tr_repl_source_new (const TrConfig *config, TrRpcStore *store, guint64 epoch,
                                  const char *producer_address);

/* A TrRpcNotifyFunc for tr_rpcstore_add_subscriber(): records the head of
 * a committed batch and wakes the links. */
void tr_repl_source_on_store_event (gpointer user_data, TrRpcNotify what, guint64 value);

typedef enum {
  TR_REPL_LINK_STOPPED,    /* stop_send */
  TR_REPL_LINK_CONNECTING, /* connecting, or not started yet */
  TR_REPL_LINK_HELLO,      /* connected, hello not answered yet */
  TR_REPL_LINK_STREAMING,
  TR_REPL_LINK_BACKOFF,    /* failed, waiting to reconnect */
} TrReplLinkState;

/* One link as tr_repl_source_get_links() reports it. */
typedef struct {
  char *service;       /* (transfer full) */
  char *endpoint;      /* (transfer full) */
  char *address;       /* (transfer full) host:port */
  TrReplLinkState state;
  char *replica_id;    /* (transfer full) (nullable) the replica's server_id, once it answered */
  guint64 acked;       /* the replica's head as last acknowledged (0 before its first answer) */
  guint64 head;        /* the master's head */
  guint64 sent;        /* records the replica acknowledged since the start */
  guint retries;       /* consecutive failures */
  char *last_error;    /* (transfer full) (nullable) */
} TrReplLinkInfo;

void tr_repl_link_info_free (gpointer info);

/* Returns: (transfer full) (element-type TrReplLinkInfo): every link, in
 * configuration order.  Any thread (asks the tr-repl thread and waits). */
GPtrArray *tr_repl_source_get_links (TrReplSource *source);

/* Stops every link and the thread.  Unsubscribe it from the store first.
 * NULL is ignored. */
void tr_repl_source_free (TrReplSource *source);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (TrReplSource, tr_repl_source_free)

G_END_DECLS
