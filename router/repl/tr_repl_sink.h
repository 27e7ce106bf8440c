/* tr_repl_sink.h - the replica's side of the replication stream
 * (thrift/repl.thrift, docs/replication.md): a BACKUP node listens on
 * replication_listen, takes a master's hello and its batches, checks them
 * and applies them to its store as a follower (tr_rpcstore_apply_batch():
 * same ids, same records, its own group commit), and answers each batch
 * with its head once the batch is as durable as its sync_mode promises.
 *
 * Checks, each a defined refusal (Refused in repl.thrift) that stores
 * nothing and is logged rate-limited:
 *  - hello: the master's COMMON services must be the replica's own (same
 *    names, store ids and rpcs), else SERVICES_DIFFER naming the service;
 *    its epoch may not be below the replica's (STALE_EPOCH);
 *  - append: only after a hello on that connection (NO_HELLO), epoch not
 *    below the replica's, first id = head + 1 (NOT_CONTINUOUS, with the
 *    replica's head), ids consecutive and service ids the replica knows
 *    (BAD_BATCH);
 *  - anything that is not a replication call (garbage, a producer's
 *    log_event, a oneway) gets a TApplicationException naming the problem
 *    when it can be answered, and the connection is closed.
 *
 * Threads: its own thread "tr-repl-sink" with its own GMainContext runs the
 * listener, the connections and the applies (the store's commits are
 * thread-safe).  tr_repl_sink_new() / _free() on the main thread.
 */
#pragma once

#include "tr_config.h"
#include "tr_rpcstore.h"

#include <glib.h>

G_BEGIN_DECLS

typedef struct _TrReplSink TrReplSink;

/* Called on the sink's thread when a master's hello is accepted:
 * @server_id is the master's, @producer_address where its producers
 * write (host:port, as it said). */
typedef void (*TrReplSinkMasterFunc) (const char *server_id, const char *producer_address, gpointer user_data);

/* tr_repl_sink_new:
 * @config: (transfer none): read during the call: replication_listen, the
 *   COMMON services (their rpcs), max_frame_size, server_id.
 * @store: (transfer none): the replica's store; outlives the sink.
 * @epoch: the replica's epoch (tr_node).
 * @on_master: (nullable): told of each accepted hello.
 * Binds replication_listen and starts the thread.
 * Returns: (transfer full) (nullable): NULL with a G_IO_ERROR naming the
 * address when it cannot listen. */
TrReplSink *tr_repl_sink_new (const TrConfig *config, TrRpcStore *store, guint64 epoch,
                              TrReplSinkMasterFunc on_master, gpointer user_data, GError **error);

/* The port actually bound (replication_listen port 0 picks one). */
guint16 tr_repl_sink_get_port (TrReplSink *sink);

/* Stops the thread (a batch being applied finishes first), closes every
 * connection and the listener, and logs what was applied and refused
 * since the start.  NULL is ignored. */
void tr_repl_sink_free (TrReplSink *sink);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (TrReplSink, tr_repl_sink_free)

G_END_DECLS
