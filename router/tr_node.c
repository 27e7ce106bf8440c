/* tr_node.c - node identity in DATA_DIR/node.meta (see tr_node.h). */
#include "tr_node.h"

#include "tr_config_error.h"
#include "tr_dwfile.h"
#include "tr_storage_error.h"

#include <errno.h>
#include <string.h>

#define TR_NODE_FORMAT_VERSION 1

static const char *
server_type_name (TrServerType type)
{
  switch (type) {
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
write_identity (TrIo *io, const char *path, const TrConfig *config, GError **error)
{
  g_autofree char *text = g_strdup_printf ("# thriftrouter node identity: written on the first start, never edited\n"
                                           "[node]\nformat_version = %d\nserver_id = %s\nserver_type = %s\n"
                                           "epoch = 1\ngroup_file_size = %" G_GUINT64_FORMAT "\n",
                                           TR_NODE_FORMAT_VERSION, config->server_id,
                                           server_type_name (config->server_type), config->group_file_size);

  if (!tr_dwfile_replace (io, path, text, strlen (text), error))
    return FALSE;
  g_message ("first start: node identity '%s' (%s, epoch 1) recorded in %s", config->server_id,
             server_type_name (config->server_type), path);
  return TRUE;
}

static gboolean
check_identity (const char *path, GBytes *content, const TrConfig *config, guint64 *epoch_out, GError **error)
{
  g_autoptr (GKeyFile) meta = g_key_file_new ();
  g_autoptr (GError) local = NULL;
  g_autofree char *id = NULL;
  g_autofree char *type = NULL;
  gsize len = 0;
  const char *data = g_bytes_get_data (content, &len);

  if (!g_key_file_load_from_data (meta, data, len, G_KEY_FILE_NONE, &local)
      || (id = g_key_file_get_string (meta, "node", "server_id", &local)) == NULL
      || (type = g_key_file_get_string (meta, "node", "server_type", &local)) == NULL) {
    g_set_error (error, TR_CONFIG_ERROR, TR_CONFIG_ERROR_PARSE, "%s: unreadable node metadata: %s", path,
                 local ? local->message : "?");
    return FALSE;
  }
  *epoch_out = g_key_file_get_uint64 (meta, "node", "epoch", NULL);
  if (g_strcmp0 (id, config->server_id) != 0 || g_strcmp0 (type, server_type_name (config->server_type)) != 0) {
    g_set_error (error, TR_CONFIG_ERROR, TR_CONFIG_ERROR_INVALID,
                 "%s: this data directory belongs to node '%s' (%s), but %s says server_id = %s, "
                 "server_type = %s; point data_dir at that node's own directory, or fix server_id/server_type",
                 path, id, type, config->path, config->server_id, server_type_name (config->server_type));
    return FALSE;
  }
  /* The store's logical offsets are computed with the part size: a changed
   * group_file_size would make every stored offset point elsewhere. */
  if (g_key_file_has_key (meta, "node", "group_file_size", NULL)
      && g_key_file_get_uint64 (meta, "node", "group_file_size", NULL) != config->group_file_size) {
    g_set_error (error, TR_CONFIG_ERROR, TR_CONFIG_ERROR_INVALID,
                 "%s: the store in this data directory was created with group_file_size = %" G_GUINT64_FORMAT
                 ", but %s says %" G_GUINT64_FORMAT "; it cannot change on an existing store: set it back",
                 path, g_key_file_get_uint64 (meta, "node", "group_file_size", NULL), config->path,
                 config->group_file_size);
    return FALSE;
  }
  return TRUE;
}

gboolean
tr_node_check_identity (TrIo *io, const TrConfig *config, guint64 *epoch_out, GError **error)
{
  g_autofree char *path = g_build_filename (config->data_dir, TR_NODE_META_FILE, NULL);
  g_autoptr (GError) local = NULL;
  g_autoptr (GBytes) content = NULL;

  g_return_val_if_fail (io != NULL && config != NULL && epoch_out != NULL, FALSE);
  if (g_mkdir_with_parents (config->data_dir, 0755) < 0) {
    tr_io_set_errno_error (error, errno, "cannot create data directory", config->data_dir);
    return FALSE;
  }
  content = tr_dwfile_read (io, path, &local);
  if (content == NULL && g_error_matches (local, TR_STORAGE_ERROR, TR_STORAGE_ERROR_NOT_FOUND)) {
    *epoch_out = 1;
    return write_identity (io, path, config, error);
  }
  if (content == NULL) {
    g_propagate_error (error, g_steal_pointer (&local));
    return FALSE;
  }
  return check_identity (path, content, config, epoch_out, error);
}
