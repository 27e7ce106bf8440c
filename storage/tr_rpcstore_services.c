/* tr_rpcstore_services.c - the RPC store's services: services.map (name ->
 * permanent id, a DoubleWriteFile) read at open, and services added
 * (tr_rpcstore_add_service()) or retired (tr_rpcstore_retire_service())
 * while the store runs, for a configuration reload.
 *
 * Ids are permanent because data records carry them: a removed service
 * keeps its id (and its files), a new one gets the next.  Threads: add and
 * retire run between two batches, under ->commit_lock
 * (tr_rpcstore__run_exclusive()); loading runs in tr_rpcstore_open().
 */
#include "tr_dwfile.h"
#include "tr_rpcstore_private.h"
#include "tr_storage_error.h"

#define TR_SERVICES_MAP "services.map"

/* Writes services.map with every known name, plus @extra (nullable) as the
 * next id, through DoubleWriteFile. */
static gboolean
write_service_map (TrRpcStore *store, const char *extra, GError **error)
{
  g_autofree char *path = g_build_filename (store->dir, TR_SERVICES_MAP, NULL);
  g_autoptr (GString) out = g_string_new ("# thriftrouter service ids (do not edit)\n");

  for (guint id = 0; id < store->service_names->len; id++)
    g_string_append_printf (out, "%u %s\n", id, (char *) g_ptr_array_index (store->service_names, id));
  if (extra != NULL)
    g_string_append_printf (out, "%u %s\n", store->service_names->len, extra);
  return tr_dwfile_replace (store->io, path, out->str, out->len, error);
}

/* services.map: one "ID NAME" line per service ever configured.  Ids are
 * permanent (they are written into data records), so a removed service
 * keeps its id and a new one gets the next. */
gboolean
tr_rpcstore__load_service_map (TrRpcStore *store, const char *const *services, GError **error)
{
  g_autofree char *path = g_build_filename (store->dir, TR_SERVICES_MAP, NULL);
  g_autoptr (GError) local = NULL;
  g_autoptr (GBytes) content = tr_dwfile_read (store->io, path, &local);
  g_auto (GStrv) lines = NULL;
  gboolean changed = FALSE;

  store->service_ids = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  store->service_names = g_ptr_array_new_full (TR_RPCSTORE_MAX_SERVICES, g_free);
  if (content == NULL && !g_error_matches (local, TR_STORAGE_ERROR, TR_STORAGE_ERROR_NOT_FOUND)) {
    g_propagate_error (error, g_steal_pointer (&local));
    return FALSE;
  }
  if (content != NULL) {
    g_autofree char *text = g_strndup (g_bytes_get_data (content, NULL), g_bytes_get_size (content));
    lines = g_strsplit (text, "\n", -1);
  }
  for (guint i = 0; lines && lines[i]; i++) {
    g_auto (GStrv) fields = g_strsplit (lines[i], " ", 2);
    if (lines[i][0] == '#' || lines[i][0] == '\0')
      continue;
    if (g_strv_length (fields) != 2 || g_ascii_strtoull (fields[0], NULL, 10) != store->service_names->len) {
      g_set_error (error, TR_STORAGE_ERROR, TR_STORAGE_ERROR_CORRUPT, "%s line %u is invalid: '%s'", path,
                   i + 1, lines[i]);
      return FALSE;
    }
    g_ptr_array_add (store->service_names, g_strdup (fields[1]));
    g_hash_table_insert (store->service_ids, g_strdup (fields[1]),
                         GUINT_TO_POINTER (store->service_names->len));
  }
  for (guint i = 0; services[i]; i++) {
    if (g_hash_table_contains (store->service_ids, services[i]))
      continue;
    g_ptr_array_add (store->service_names, g_strdup (services[i]));
    g_hash_table_insert (store->service_ids, g_strdup (services[i]),
                         GUINT_TO_POINTER (store->service_names->len));
    changed = TRUE;
  }
  store->n_ids = store->service_names->len;
  if (store->n_ids > TR_RPCSTORE_MAX_SERVICES) {
    g_set_error (error, TR_STORAGE_ERROR, TR_STORAGE_ERROR_CORRUPT, "%s: too many services (%u)", path,
                 store->n_ids);
    return FALSE;
  }
  return !changed || write_service_map (store, NULL, error);
}

/* ---- services added at run time (configuration reload) ---- */

typedef struct {
  const char *name;
  guint32 id;
} AddService;

/* Writer thread: gives @add->name an id (services.map first, so an id is
 * never used before it is durable), opens its list and registers it with
 * the DoubleWriteBuffer.  Readers are kept out by ->files_lock. */
static gboolean
add_service_locked (TrRpcStore *store, gpointer data, GError **error)
{
  AddService *add = data;
  gint known = tr_rpcstore_service_id (store, add->name);
  guint id = known >= 0 ? (guint) known : store->n_ids;
  g_autofree char *file = g_strdup_printf ("list-%u", id);
  TrGroupFile *list;

  add->id = id;
  if (known >= 0 && g_ptr_array_index (store->lists, id) != NULL)
    return TRUE; /* known already: recovery or an earlier add opened its list */
  if (known < 0 && id >= TR_RPCSTORE_MAX_SERVICES) {
    g_set_error (error, TR_STORAGE_ERROR, TR_STORAGE_ERROR_FULL, "too many services (at most %d ids)",
                 TR_RPCSTORE_MAX_SERVICES);
    return FALSE;
  }
  if (known < 0 && !write_service_map (store, add->name, error))
    return FALSE;
  list = tr_rpcstore__open_file (store, file, error);
  if (list == NULL && known < 0)
    g_prefix_error (error, "service '%s' has id %u in services.map, but: ", add->name, id);
  g_mutex_lock (&store->head_lock);
  if (known < 0) {
    g_ptr_array_add (store->service_names, g_strdup (add->name));
    g_hash_table_insert (store->service_ids, g_strdup (add->name), GUINT_TO_POINTER (id + 1));
    g_atomic_int_set (&store->n_ids, id + 1);
  }
  g_mutex_unlock (&store->head_lock);
  if (list == NULL)
    return FALSE;
  g_rw_lock_writer_lock (&store->files_lock);
  tr_dwbuffer_add_file_live (store->dwb, TR_RPCSTORE_LIST_FILE_ID (id), list);
  g_ptr_array_index (store->lists, id) = list;
  g_rw_lock_writer_unlock (&store->files_lock);
  {
    guint n = g_strv_length (store->configured);
    store->configured = g_renew (char *, store->configured, n + 2);
    store->configured[n] = g_strdup (add->name);
    store->configured[n + 1] = NULL;
  }
  g_mutex_lock (&store->head_lock);
  store->pub_list_heads[id] = store->list_heads[id];
  store->list_first[id] = tr_groupfile_first_offset (list) / TR_RPCRECORD_ENTRY_SIZE + 1;
  g_mutex_unlock (&store->head_lock);
  return TRUE;
}

gint
tr_rpcstore_add_service (TrRpcStore *store, const char *name, GError **error)
{
  AddService add = { name, 0 };

  g_return_val_if_fail (store != NULL && name != NULL, -1);
  g_return_val_if_fail (error == NULL || *error == NULL, -1);

  if (!tr_rpcstore__run_exclusive (store, add_service_locked, &add, error)) {
    g_prefix_error (error, "adding service '%s' to store %s: ", name, store->dir);
    return -1;
  }
  return (gint) add.id;
}

/* Under the commit lock, so every RPC committed before the call is in the
 * list already: past the head now means past everything it will ever get. */
static gboolean
retire_service_locked (TrRpcStore *store, gpointer data, GError **error)
{
  guint32 id = GPOINTER_TO_UINT (data);

  (void) error;
  g_mutex_lock (&store->head_lock);
  store->low_water[id] = store->list_heads[id] + 1;
  store->low_water_moved = TRUE;
  g_mutex_unlock (&store->head_lock);
  return TRUE;
}

void
tr_rpcstore_retire_service (TrRpcStore *store, guint32 service_id)
{
  g_return_if_fail (store != NULL && service_id < tr_rpcstore__n_ids (store));

  tr_rpcstore__run_exclusive (store, retire_service_locked, GUINT_TO_POINTER (service_id), NULL);
}
