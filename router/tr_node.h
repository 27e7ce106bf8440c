/* tr_node.h - node identity kept in the data directory (DESIGN.md §4).
 *
 * DATA_DIR/node.meta (a GLib key file, group [node]: server_id, server_type,
 * epoch, format_version) is written once, on the first start, through
 * DoubleWriteFile.  Every later start reads it and refuses to run when the
 * configuration names another server_id or server_type: a node is never
 * re-identified silently (a copied config pointed at the wrong data dir
 * would otherwise mix two nodes' stores).  Startup only; not thread-safe.
 */
#pragma once

#include "tr_config.h"
#include "tr_io.h"

#include <glib.h>

G_BEGIN_DECLS

#define TR_NODE_META_FILE "node.meta"

/* tr_node_check_identity:
 * Creates node.meta on the first start, otherwise checks it against
 * @config.  Stores the node's epoch in @epoch_out.
 * Errors: TR_CONFIG_ERROR_INVALID (mismatch, naming both values and the
 * file), TR_CONFIG_ERROR_PARSE (unreadable metadata), TR_STORAGE_ERROR (I/O). */
gboolean tr_node_check_identity (TrIo *io, const TrConfig *config, guint64 *epoch_out, GError **error);

G_END_DECLS
