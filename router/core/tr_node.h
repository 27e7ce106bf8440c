/* tr_node.h - the node's role and epoch state machine, kept in
 * DATA_DIR/node.meta (format: docs/format/node.md).
 *
 * A node has an identity fixed on its first start (server_id, server_type,
 * group_file_size: a start whose configuration names others is refused, so a
 * copied config pointed at the wrong data directory cannot mix two nodes'
 * stores), and a state that changes:
 *
 *  - role: MASTER (takes writes), BACKUP (follows a master, may be promoted)
 *    or REPLY (follows a master for its own services, never promoted);
 *  - epoch: the number of the master term this node last knew, and the
 *    epoch history: for every epoch the first global rpc id it assigned
 *    (epoch e owns the ids [first(e), first(e+1) - 1], the newest epoch is
 *    open-ended);
 *  - fenced: a MASTER that learnt of a newer epoch stops taking writes.
 *
 *                 tr_node_promote()              tr_node_fence()
 *     BACKUP ----------------------> MASTER --------------------> MASTER, fenced
 *                 (epoch = max + 1,  ^   |
 *                  first id = head+1)|   | tr_node_promote(): refused
 *     REPLY: no transition           +---+ (already the master)
 *
 * Every other call (promote of a MASTER or REPLY, fence of a BACKUP, REPLY or
 * fenced MASTER) is refused with TR_ROUTER_ERROR_INVALID and changes nothing.
 * Every change is written through DoubleWriteFile before the call returns
 * TRUE: after a crash the file holds the state before or after the change,
 * never a mix.  The daemon runs MASTER and BACKUP nodes; promote and fence
 * are not wired to it yet (docs/replication.md, "Not yet").
 *
 * Threads: none; the daemon's main thread owns the object.
 */
#pragma once

#include "tr_config.h"
#include "tr_io.h"

#include <glib.h>

G_BEGIN_DECLS

#define TR_NODE_META_FILE "node.meta"

typedef struct _TrNode TrNode;

/* What a node is, from its configuration: a plain value. */
typedef struct {
  const char *server_id;
  TrServerType server_type;
  guint64 group_file_size;
  const char *config_path; /* (nullable) named in mismatch messages */
} TrNodeIdentity;

/* tr_node_identity_from_config:
 * Returns: @config's identity; its strings borrow @config's. */
TrNodeIdentity tr_node_identity_from_config (const TrConfig *config);

/* tr_node_open:
 * @io: (transfer none): must outlive the node.
 * @data_dir: created when missing.
 *
 * On the first start writes node.meta: role = server_type, epoch 1 starting
 * at rpc id 1, not fenced.  Later, reads it (format 1 or 2) and checks it
 * against @identity.
 *
 * Returns: (transfer full) (nullable): the node, or NULL with
 *   TR_CONFIG_ERROR_INVALID (identity mismatch, naming both values and the
 *   file), TR_CONFIG_ERROR_PARSE (unreadable or inconsistent metadata),
 *   TR_STORAGE_ERROR (I/O). */
TrNode *tr_node_open (TrIo *io, const char *data_dir, const TrNodeIdentity *identity, GError **error);

/* tr_node_role_to_string: "MASTER", "BACKUP" or "REPLY". */
const char *tr_node_role_to_string (TrServerType role);

TrServerType tr_node_get_role (TrNode *node);
/* Returns: the current (newest) epoch, >= 1. */
guint64 tr_node_get_epoch (TrNode *node);
gboolean tr_node_is_fenced (TrNode *node);
/* Returns: (transfer none): the node.meta path, valid as long as @node. */
const char *tr_node_get_path (TrNode *node);

/* tr_node_promote:
 * BACKUP -> MASTER: opens epoch max + 1, whose first rpc id is @head + 1
 * (@head: the last rpc id this node holds; it may not be below the current
 * epoch's first id - 1, ids never go back).
 *
 * Returns: TRUE (durable), or FALSE with TR_ROUTER_ERROR_INVALID (not a
 *   BACKUP, or @head too low) or TR_STORAGE_ERROR (the write failed; the
 *   node keeps its old state). */
gboolean tr_node_promote (TrNode *node, guint64 head, GError **error);

/* tr_node_fence:
 * Marks a MASTER fenced: another node holds a newer epoch.
 *
 * Returns: TRUE (durable), or FALSE with TR_ROUTER_ERROR_INVALID (not an
 *   unfenced MASTER) or TR_STORAGE_ERROR. */
gboolean tr_node_fence (TrNode *node, GError **error);

/* tr_node_epoch_range:
 * The rpc ids epoch @epoch assigned or assigns: [*@first_out, *@last_out];
 * for the current epoch *@last_out is G_MAXUINT64 (still open).  An epoch
 * that assigned nothing has *@last_out = *@first_out - 1.
 *
 * Returns: TRUE, or FALSE with TR_ROUTER_ERROR_NOT_FOUND (an epoch this node
 *   never knew). */
gboolean tr_node_epoch_range (TrNode *node, guint64 epoch, guint64 *first_out, guint64 *last_out, GError **error);

void tr_node_free (TrNode *node);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (TrNode, tr_node_free)

G_END_DECLS
