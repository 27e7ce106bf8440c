/* tr_node.c - node role and epoch state in DATA_DIR/node.meta (see
 * tr_node.h; format: docs/format/node.md).
 *
 * node.meta is a GLib key file, replaced as a whole through DoubleWriteFile:
 *
 *   [node]
 *   format_version = 2
 *   server_id = ...            identity, written once
 *   server_type = MASTER       identity, written once
 *   group_file_size = ...      identity, written once
 *   role = MASTER              current role
 *   epoch = 3                  current epoch = the last one of [epochs]
 *   fenced = false
 *   [epochs]
 *   1 = 1                      epoch = its first global rpc id
 *   2 = 1500
 *   3 = 4000
 *
 * Format 1 (written before roles existed) has no role, fenced or [epochs]:
 * it reads as role = server_type, not fenced, and one epoch starting at rpc
 * id 1.  The file is rewritten in format 2 at the first change.
 *
 * A change is computed on a copy of the state, written, and only then
 * adopted: a failed write leaves the object as it was.
 */
#include "tr_node.h"

#include "tr_config_error.h"
#include "tr_dwfile.h"
#include "tr_router_error.h"
#include "tr_storage_error.h"

#include <errno.h>
#include <string.h>

#define TR_NODE_FORMAT_VERSION 2

typedef struct {
  guint64 epoch;
  guint64 first_id;
} EpochStart;

typedef struct {
  TrServerType role;
  gboolean fenced;
  GArray *epochs; /* (element-type EpochStart) ascending epoch, non-decreasing first_id, >= 1 entry */
} NodeState;

struct _TrNode {
  TrIo *io;
  char *path;
  char *server_id;
  TrServerType server_type;
  guint64 group_file_size;
  NodeState state;
};

const char *
tr_node_role_to_string (TrServerType role)
{
  switch (role) {
  case TR_SERVER_MASTER:
    return "MASTER";
  case TR_SERVER_BACKUP:
    return "BACKUP";
  case TR_SERVER_REPLY:
    return "REPLY";
  }
  return "?";
}

static gboolean
role_from_string (const char *text, TrServerType *role_out)
{
  for (TrServerType role = TR_SERVER_MASTER; role <= TR_SERVER_REPLY; role++)
    if (g_strcmp0 (text, tr_node_role_to_string (role)) == 0) {
      *role_out = role;
      return TRUE;
    }
  return FALSE;
}

TrNodeIdentity
tr_node_identity_from_config (const TrConfig *config)
{
  TrNodeIdentity identity = { 0 };

  identity.server_id = config->server_id;
  identity.server_type = config->server_type;
  identity.group_file_size = config->group_file_size;
  identity.config_path = config->path;
  return identity;
}

static const EpochStart *
current (const NodeState *state)
{
  return &g_array_index (state->epochs, EpochStart, state->epochs->len - 1);
}

static char *
meta_to_text (const TrNode *node, const NodeState *state)
{
  GString *text = g_string_new ("# thriftrouter node identity and role: written by the router, never edited\n");

  g_string_append_printf (text,
                          "[node]\nformat_version = %d\nserver_id = %s\nserver_type = %s\ngroup_file_size = %"
                          G_GUINT64_FORMAT "\nrole = %s\nepoch = %" G_GUINT64_FORMAT "\nfenced = %s\n\n[epochs]\n",
                          TR_NODE_FORMAT_VERSION, node->server_id, tr_node_role_to_string (node->server_type),
                          node->group_file_size, tr_node_role_to_string (state->role), current (state)->epoch,
                          state->fenced ? "true" : "false");
  for (guint i = 0; i < state->epochs->len; i++) {
    const EpochStart *start = &g_array_index (state->epochs, EpochStart, i);
    g_string_append_printf (text, "%" G_GUINT64_FORMAT " = %" G_GUINT64_FORMAT "\n", start->epoch, start->first_id);
  }
  return g_string_free (text, FALSE);
}

static gboolean
write_state (TrNode *node, const NodeState *state, GError **error)
{
  g_autofree char *text = meta_to_text (node, state);

  return tr_dwfile_replace (node->io, node->path, text, strlen (text), error);
}

static void
state_clear (NodeState *state)
{
  g_clear_pointer (&state->epochs, g_array_unref);
}

static void
state_copy (NodeState *to, const NodeState *from)
{
  to->role = from->role;
  to->fenced = from->fenced;
  to->epochs = g_array_copy (from->epochs);
}

/* ---- reading ---- */

static gboolean
parse_fail (const char *path, const char *what, GError **error)
{
  g_set_error (error, TR_CONFIG_ERROR, TR_CONFIG_ERROR_PARSE, "%s: unreadable node metadata: %s", path, what);
  return FALSE;
}

/* [epochs] of format 2: ascending epochs, non-decreasing first ids. */
static gboolean
parse_epochs (GKeyFile *meta, const char *path, NodeState *state, GError **error)
{
  g_auto (GStrv) keys = g_key_file_get_keys (meta, "epochs", NULL, NULL);

  for (guint i = 0; keys != NULL && keys[i] != NULL; i++) {
    EpochStart start = { 0 };
    g_autoptr (GError) local = NULL;
    const EpochStart *last = state->epochs->len > 0 ? current (state) : NULL;
    if (!g_ascii_string_to_unsigned (keys[i], 10, 1, G_MAXUINT64, &start.epoch, NULL))
      return parse_fail (path, "[epochs] key is not an epoch number", error);
    start.first_id = g_key_file_get_uint64 (meta, "epochs", keys[i], &local);
    if (local != NULL || start.first_id == 0)
      return parse_fail (path, "[epochs] value is not an rpc id", error);
    if (last != NULL && (start.epoch <= last->epoch || start.first_id < last->first_id))
      return parse_fail (path, "[epochs] out of order", error);
    g_array_append_val (state->epochs, start);
  }
  if (state->epochs->len == 0)
    return parse_fail (path, "no [epochs]", error);
  return TRUE;
}

static gboolean
parse_state (GKeyFile *meta, const char *path, TrServerType server_type, NodeState *state, GError **error)
{
  guint64 version = g_key_file_get_uint64 (meta, "node", "format_version", NULL);
  guint64 epoch = g_key_file_get_uint64 (meta, "node", "epoch", NULL);
  g_autofree char *role = NULL;

  state->epochs = g_array_new (FALSE, FALSE, sizeof (EpochStart));
  if (version == 1) {
    EpochStart start = { epoch > 0 ? epoch : 1, 1 };
    state->role = server_type;
    state->fenced = FALSE;
    g_array_append_val (state->epochs, start);
    return TRUE;
  }
  if (version != TR_NODE_FORMAT_VERSION) {
    g_autofree char *what = g_strdup_printf ("format_version %" G_GUINT64_FORMAT " (this build reads 1 and 2)",
                                             version);
    return parse_fail (path, what, error);
  }
  role = g_key_file_get_string (meta, "node", "role", NULL);
  if (!role_from_string (role, &state->role))
    return parse_fail (path, "role is not MASTER, BACKUP or REPLY", error);
  state->fenced = g_key_file_get_boolean (meta, "node", "fenced", NULL);
  if (!parse_epochs (meta, path, state, error))
    return FALSE;
  if (current (state)->epoch != epoch)
    return parse_fail (path, "epoch is not the last of [epochs]", error);
  return TRUE;
}

static gboolean
check_identity (const TrNode *node, const TrNodeIdentity *identity, guint64 group_file_size, GError **error)
{
  if (g_strcmp0 (node->server_id, identity->server_id) != 0 || node->server_type != identity->server_type) {
    g_set_error (error, TR_CONFIG_ERROR, TR_CONFIG_ERROR_INVALID,
                 "%s: this data directory belongs to node '%s' (%s), but %s says server_id = %s, "
                 "server_type = %s; point data_dir at that node's own directory, or fix server_id/server_type",
                 node->path, node->server_id, tr_node_role_to_string (node->server_type),
                 identity->config_path ? identity->config_path : "the configuration", identity->server_id,
                 tr_node_role_to_string (identity->server_type));
    return FALSE;
  }
  /* The store's logical offsets are computed with the part size: a changed
   * group_file_size would make every stored offset point elsewhere. */
  if (group_file_size != 0 && group_file_size != identity->group_file_size) {
    g_set_error (error, TR_CONFIG_ERROR, TR_CONFIG_ERROR_INVALID,
                 "%s: the store in this data directory was created with group_file_size = %" G_GUINT64_FORMAT
                 ", but %s says %" G_GUINT64_FORMAT "; it cannot change on an existing store: set it back",
                 node->path, group_file_size, identity->config_path ? identity->config_path : "the configuration",
                 identity->group_file_size);
    return FALSE;
  }
  return TRUE;
}

static gboolean
load_meta (TrNode *node, GBytes *content, const TrNodeIdentity *identity, GError **error)
{
  g_autoptr (GKeyFile) meta = g_key_file_new ();
  g_autoptr (GError) local = NULL;
  g_autofree char *type = NULL;
  gsize len = 0;
  const char *data = g_bytes_get_data (content, &len);

  if (!g_key_file_load_from_data (meta, data, len, G_KEY_FILE_NONE, &local)
      || (node->server_id = g_key_file_get_string (meta, "node", "server_id", &local)) == NULL
      || (type = g_key_file_get_string (meta, "node", "server_type", &local)) == NULL)
    return parse_fail (node->path, local ? local->message : "?", error);
  if (!role_from_string (type, &node->server_type))
    return parse_fail (node->path, "server_type is not MASTER, BACKUP or REPLY", error);
  node->group_file_size = g_key_file_get_uint64 (meta, "node", "group_file_size", NULL);
  if (!check_identity (node, identity, node->group_file_size, error))
    return FALSE;
  node->group_file_size = identity->group_file_size;
  return parse_state (meta, node->path, node->server_type, &node->state, error);
}

static gboolean
create_meta (TrNode *node, const TrNodeIdentity *identity, GError **error)
{
  EpochStart first = { 1, 1 };

  node->server_id = g_strdup (identity->server_id);
  node->server_type = identity->server_type;
  node->group_file_size = identity->group_file_size;
  node->state.role = identity->server_type;
  node->state.fenced = FALSE;
  node->state.epochs = g_array_new (FALSE, FALSE, sizeof (EpochStart));
  g_array_append_val (node->state.epochs, first);
  if (!write_state (node, &node->state, error))
    return FALSE;
  g_message ("first start: node identity '%s' (%s, epoch 1) recorded in %s", node->server_id,
             tr_node_role_to_string (node->server_type), node->path);
  return TRUE;
}

TrNode *
tr_node_open (TrIo *io, const char *data_dir, const TrNodeIdentity *identity, GError **error)
{
  g_autoptr (TrNode) node = NULL;
  g_autoptr (GError) local = NULL;
  g_autoptr (GBytes) content = NULL;

  g_return_val_if_fail (io != NULL && data_dir != NULL && identity != NULL && identity->server_id != NULL, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  if (g_mkdir_with_parents (data_dir, 0755) < 0) {
    tr_io_set_errno_error (error, errno, "cannot create data directory", data_dir);
    return NULL;
  }
  node = g_new0 (TrNode, 1);
  node->io = io;
  node->path = g_build_filename (data_dir, TR_NODE_META_FILE, NULL);
  content = tr_dwfile_read (io, node->path, &local);
  if (content == NULL && g_error_matches (local, TR_STORAGE_ERROR, TR_STORAGE_ERROR_NOT_FOUND)) {
    if (!create_meta (node, identity, error))
      return NULL;
    return g_steal_pointer (&node);
  }
  if (content == NULL) {
    g_propagate_error (error, g_steal_pointer (&local));
    return NULL;
  }
  if (!load_meta (node, content, identity, error))
    return NULL;
  return g_steal_pointer (&node);
}

TrServerType
tr_node_get_role (TrNode *node)
{
  g_return_val_if_fail (node != NULL, TR_SERVER_MASTER);
  return node->state.role;
}

guint64
tr_node_get_epoch (TrNode *node)
{
  g_return_val_if_fail (node != NULL, 0);
  return current (&node->state)->epoch;
}

gboolean
tr_node_is_fenced (TrNode *node)
{
  g_return_val_if_fail (node != NULL, FALSE);
  return node->state.fenced;
}

const char *
tr_node_get_path (TrNode *node)
{
  g_return_val_if_fail (node != NULL, NULL);
  return node->path;
}

/* ---- transitions ---- */

/* Writes @next and adopts it (frees the old state), or leaves the node as
 * it was and frees @next. */
static gboolean
commit_state (TrNode *node, NodeState *next, GError **error)
{
  if (!write_state (node, next, error)) {
    g_prefix_error (error, "cannot record the node's new role and epoch: ");
    state_clear (next);
    return FALSE;
  }
  state_clear (&node->state);
  node->state = *next;
  return TRUE;
}

gboolean
tr_node_promote (TrNode *node, guint64 head, GError **error)
{
  const EpochStart *now;
  NodeState next;
  EpochStart start;

  g_return_val_if_fail (node != NULL, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  now = current (&node->state);
  if (node->state.role != TR_SERVER_BACKUP) {
    g_set_error (error, TR_ROUTER_ERROR, TR_ROUTER_ERROR_INVALID,
                 "node '%s' cannot be promoted: it is a %s%s (epoch %" G_GUINT64_FORMAT "); only a BACKUP can",
                 node->server_id, node->state.fenced ? "fenced " : "", tr_node_role_to_string (node->state.role),
                 now->epoch);
    return FALSE;
  }
  if (head + 1 < now->first_id || head == G_MAXUINT64) {
    g_set_error (error, TR_ROUTER_ERROR, TR_ROUTER_ERROR_INVALID,
                 "node '%s' cannot be promoted at head %" G_GUINT64_FORMAT ": epoch %" G_GUINT64_FORMAT
                 " already starts at rpc id %" G_GUINT64_FORMAT " (rpc ids never go back)",
                 node->server_id, head, now->epoch, now->first_id);
    return FALSE;
  }
  state_copy (&next, &node->state);
  start.epoch = now->epoch + 1;
  start.first_id = head + 1;
  g_array_append_val (next.epochs, start);
  next.role = TR_SERVER_MASTER;
  next.fenced = FALSE;
  if (!commit_state (node, &next, error))
    return FALSE;
  g_message ("node '%s' promoted to MASTER: epoch %" G_GUINT64_FORMAT " starts at rpc id %" G_GUINT64_FORMAT,
             node->server_id, start.epoch, start.first_id);
  return TRUE;
}

gboolean
tr_node_fence (TrNode *node, GError **error)
{
  NodeState next;

  g_return_val_if_fail (node != NULL, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  if (node->state.role != TR_SERVER_MASTER || node->state.fenced) {
    g_set_error (error, TR_ROUTER_ERROR, TR_ROUTER_ERROR_INVALID,
                 "node '%s' cannot be fenced: it is a %s%s; only a MASTER taking writes can", node->server_id,
                 node->state.fenced ? "fenced " : "", tr_node_role_to_string (node->state.role));
    return FALSE;
  }
  state_copy (&next, &node->state);
  next.fenced = TRUE;
  if (!commit_state (node, &next, error))
    return FALSE;
  g_message ("node '%s' fenced in epoch %" G_GUINT64_FORMAT ": it takes no more writes", node->server_id,
             current (&node->state)->epoch);
  return TRUE;
}

gboolean
tr_node_epoch_range (TrNode *node, guint64 epoch, guint64 *first_out, guint64 *last_out, GError **error)
{
  GArray *epochs;

  g_return_val_if_fail (node != NULL && first_out != NULL && last_out != NULL, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  epochs = node->state.epochs;
  for (guint i = 0; i < epochs->len; i++) {
    const EpochStart *start = &g_array_index (epochs, EpochStart, i);
    if (start->epoch != epoch)
      continue;
    *first_out = start->first_id;
    *last_out = i + 1 < epochs->len ? g_array_index (epochs, EpochStart, i + 1).first_id - 1 : G_MAXUINT64;
    return TRUE;
  }
  g_set_error (error, TR_ROUTER_ERROR, TR_ROUTER_ERROR_NOT_FOUND,
               "node '%s' knows no epoch %" G_GUINT64_FORMAT " (its epochs are %" G_GUINT64_FORMAT "..%"
               G_GUINT64_FORMAT ")", node->server_id, epoch, g_array_index (epochs, EpochStart, 0).epoch,
               current (&node->state)->epoch);
  return FALSE;
}

void
tr_node_free (TrNode *node)
{
  if (node == NULL)
    return;
  state_clear (&node->state);
  g_free (node->path);
  g_free (node->server_id);
  g_free (node);
}
