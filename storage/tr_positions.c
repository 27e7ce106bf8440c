/* tr_positions.c - endpoint send state in RotateFiles, and its export form.
 *
 * Formats: tr_positions.h and docs/format/positions.md.
 *
 * Export record payload, version 1 (little-endian), inside one record frame
 * v1 of type TR_POSITIONS_EXPORT_TYPE (the frame's checksum covers it):
 *
 *   offset size field
 *   0      4    version = 1
 *   4      4    entry count N
 *   8      ...  N entries, each:
 *                 2  service name length S (1..TR_POSITIONS_MAX_NAME)
 *                 S  service name bytes
 *                 2  endpoint id length E (1..TR_POSITIONS_MAX_NAME)
 *                 E  endpoint id bytes
 *                 8  last acknowledged seqid
 *
 * The payload ends exactly after the Nth entry.  Names never contain '/',
 * '@' or NUL: "service@endpoint" becomes a file name on import.  A
 * (service, endpoint) pair appears at most once.
 *
 * Threads: see tr_positions.h.  ->lock protects ->known and ->open_files;
 * it is never held across I/O.
 */
#include "tr_positions.h"

#include "tr_endian.h"
#include "tr_record.h"
#include "tr_rotatefile.h"
#include "tr_storage_error.h"

#include <errno.h>
#include <string.h>

#define TR_POSITIONS_STATE_VERSION 1
#define TR_POSITIONS_STATE_SIZE 12
#define TR_POSITIONS_EXPORT_VERSION 1
#define TR_POSITIONS_MAX_NAME 1024
/* An export of one million endpoints stays below this; more is garbage. */
#define TR_POSITIONS_MAX_EXPORT (256u * 1024 * 1024)

struct _TrPositions {
  TrIo *io;
  char *dir;
  GMutex lock;
  GHashTable *known; /* "service@endpoint" -> TrPositionsEntry *; protected by ->lock */
  guint open_files;  /* endpoint files not yet freed; protected by ->lock */
};

struct _TrPositionsEndpoint {
  TrPositions *positions; /* (transfer none) */
  TrRotateFile *file;
  char *path;
  char *key; /* "service@endpoint" */
  char *service;
  char *endpoint;
};

static void
entry_free (gpointer data)
{
  TrPositionsEntry *entry = data;

  g_free (entry->service);
  g_free (entry->endpoint);
  g_free (entry);
}

static void
entry_clear (gpointer data)
{
  TrPositionsEntry *entry = data;

  g_clear_pointer (&entry->service, g_free);
  g_clear_pointer (&entry->endpoint, g_free);
}

static gboolean
name_ok (const char *name, gsize len)
{
  /* The file name is "service@endpoint" inside state/: without '/' it
   * cannot leave the directory, without '@' no two pairs share it. */
  return len > 0 && len <= TR_POSITIONS_MAX_NAME && memchr (name, '/', len) == NULL && memchr (name, '@', len) == NULL
         && memchr (name, '\0', len) == NULL;
}

/* Remembers @acked as the last known position (for export). */
static void
note (TrPositions *positions, const char *service, const char *endpoint, guint64 acked)
{
  g_autofree char *key = g_strdup_printf ("%s@%s", service, endpoint);
  TrPositionsEntry *entry;

  g_mutex_lock (&positions->lock);
  entry = g_hash_table_lookup (positions->known, key);
  if (entry == NULL) {
    entry = g_new0 (TrPositionsEntry, 1);
    entry->service = g_strdup (service);
    entry->endpoint = g_strdup (endpoint);
    g_hash_table_insert (positions->known, g_steal_pointer (&key), entry);
  }
  entry->acked = acked;
  g_mutex_unlock (&positions->lock);
}

TrPositions *
tr_positions_open (TrIo *io, const char *data_dir, GError **error)
{
  g_autofree char *dir = NULL;
  gboolean existed;
  TrPositions *positions;

  g_return_val_if_fail (io != NULL && data_dir != NULL, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  dir = g_build_filename (data_dir, TR_POSITIONS_DIR, NULL);
  existed = g_file_test (dir, G_FILE_TEST_IS_DIR);
  if (!existed && g_mkdir_with_parents (dir, 0755) < 0) {
    tr_io_set_errno_error (error, errno, "cannot create", dir);
    return NULL;
  }
  /* A new directory entry is durable only once its parent is synced;
   * without it a power loss could take state/ and every position in it. */
  if (!existed && !tr_io_fsync_dir (io, data_dir, error))
    return NULL;
  positions = g_new0 (TrPositions, 1);
  positions->io = io;
  positions->dir = g_steal_pointer (&dir);
  g_mutex_init (&positions->lock);
  positions->known = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, entry_free);
  return positions;
}

const char *
tr_positions_get_dir (TrPositions *positions)
{
  g_return_val_if_fail (positions != NULL, NULL);
  return positions->dir;
}

void
tr_positions_free (TrPositions *positions)
{
  if (positions == NULL)
    return;
  g_warn_if_fail (positions->open_files == 0);
  g_hash_table_destroy (positions->known);
  g_mutex_clear (&positions->lock);
  g_free (positions->dir);
  g_free (positions);
}

/* ---- one endpoint ---- */

TrPositionsEndpoint *
tr_positions_open_endpoint (TrPositions *positions, const char *service, const char *endpoint, GError **error)
{
  g_autoptr (TrPositionsEndpoint) file = NULL;

  g_return_val_if_fail (positions != NULL && service != NULL && endpoint != NULL, NULL);
  g_return_val_if_fail (name_ok (service, strlen (service)) && name_ok (endpoint, strlen (endpoint)), NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  file = g_new0 (TrPositionsEndpoint, 1);
  file->positions = positions;
  file->service = g_strdup (service);
  file->endpoint = g_strdup (endpoint);
  file->key = g_strdup_printf ("%s@%s", service, endpoint);
  file->path = g_build_filename (positions->dir, file->key, NULL);
  g_mutex_lock (&positions->lock);
  positions->open_files++;
  g_mutex_unlock (&positions->lock);
  file->file = tr_rotatefile_open (positions->io, file->path, TR_POSITIONS_FILE_SIZE, error);
  if (file->file == NULL) {
    g_prefix_error (error, "%s: ", file->path);
    return NULL;
  }
  return g_steal_pointer (&file);
}

gboolean
tr_positions_endpoint_load (TrPositionsEndpoint *file, guint64 *acked_out, GError **error)
{
  g_autoptr (GBytes) state = NULL;
  const guint8 *data;
  gsize len = 0;

  g_return_val_if_fail (file != NULL && acked_out != NULL, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  state = tr_rotatefile_load (file->file, NULL, error);
  if (state == NULL) {
    g_prefix_error (error, "%s: ", file->path);
    return FALSE;
  }
  data = g_bytes_get_data (state, &len);
  if (len != TR_POSITIONS_STATE_SIZE || tr_get_le32 (data) != TR_POSITIONS_STATE_VERSION) {
    g_set_error (error, TR_STORAGE_ERROR, TR_STORAGE_ERROR_CORRUPT,
                 "%s: send state of %zu bytes, version %u: expected %d bytes, version %d", file->path, len,
                 len >= 4 ? tr_get_le32 (data) : 0, TR_POSITIONS_STATE_SIZE, TR_POSITIONS_STATE_VERSION);
    return FALSE;
  }
  *acked_out = tr_get_le64 (data + 4);
  note (file->positions, file->service, file->endpoint, *acked_out);
  return TRUE;
}

gboolean
tr_positions_endpoint_write (TrPositionsEndpoint *file, guint64 acked, GError **error)
{
  guint8 buf[TR_POSITIONS_STATE_SIZE];

  g_return_val_if_fail (file != NULL, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  tr_put_le32 (buf, TR_POSITIONS_STATE_VERSION);
  tr_put_le64 (buf + 4, acked);
  if (!tr_rotatefile_write (file->file, buf, sizeof buf, error)) {
    g_prefix_error (error, "%s: ", file->path);
    return FALSE;
  }
  note (file->positions, file->service, file->endpoint, acked);
  return TRUE;
}

gboolean
tr_positions_endpoint_sync (TrPositionsEndpoint *file, GError **error)
{
  g_return_val_if_fail (file != NULL, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  if (!tr_rotatefile_sync (file->file, error)) {
    g_prefix_error (error, "%s: ", file->path);
    return FALSE;
  }
  return TRUE;
}

const char *
tr_positions_endpoint_get_path (TrPositionsEndpoint *file)
{
  g_return_val_if_fail (file != NULL, NULL);
  return file->path;
}

void
tr_positions_endpoint_free (TrPositionsEndpoint *file)
{
  if (file == NULL)
    return;
  g_mutex_lock (&file->positions->lock);
  file->positions->open_files--;
  g_mutex_unlock (&file->positions->lock);
  tr_rotatefile_free (file->file);
  g_free (file->path);
  g_free (file->key);
  g_free (file->service);
  g_free (file->endpoint);
  g_free (file);
}

/* ---- export / import ---- */

static gint
compare_entries (gconstpointer a, gconstpointer b)
{
  const TrPositionsEntry *x = *(const TrPositionsEntry *const *) a;
  const TrPositionsEntry *y = *(const TrPositionsEntry *const *) b;
  int c = strcmp (x->service, y->service);

  return c != 0 ? c : strcmp (x->endpoint, y->endpoint);
}

static void
put_name (GByteArray *out, const char *name)
{
  guint8 len[2];

  tr_put_le16 (len, (guint16) strlen (name));
  g_byte_array_append (out, len, 2);
  g_byte_array_append (out, (const guint8 *) name, (guint) strlen (name));
}

GBytes *
tr_positions_export (TrPositions *positions)
{
  g_autoptr (GPtrArray) sorted = g_ptr_array_new ();
  g_autoptr (GByteArray) payload = g_byte_array_new ();
  GHashTableIter iter;
  gpointer value;
  guint8 head[8];

  g_return_val_if_fail (positions != NULL, NULL);

  g_mutex_lock (&positions->lock);
  g_hash_table_iter_init (&iter, positions->known);
  while (g_hash_table_iter_next (&iter, NULL, &value))
    g_ptr_array_add (sorted, value);
  g_ptr_array_sort (sorted, compare_entries);
  tr_put_le32 (head, TR_POSITIONS_EXPORT_VERSION);
  tr_put_le32 (head + 4, sorted->len);
  g_byte_array_append (payload, head, sizeof head);
  for (guint i = 0; i < sorted->len; i++) {
    const TrPositionsEntry *entry = g_ptr_array_index (sorted, i);
    guint8 acked[8];
    put_name (payload, entry->service);
    put_name (payload, entry->endpoint);
    tr_put_le64 (acked, entry->acked);
    g_byte_array_append (payload, acked, sizeof acked);
  }
  g_mutex_unlock (&positions->lock);
  return tr_record_encode (TR_POSITIONS_EXPORT_TYPE, payload->data, payload->len);
}

/* Reads one length-prefixed name at *@pos of @payload[0..@len). */
static char *
get_name (const guint8 *payload, gsize len, gsize *pos)
{
  gsize name_len;

  if (len - *pos < 2)
    return NULL;
  name_len = tr_get_le16 (payload + *pos);
  if (len - *pos - 2 < name_len || !name_ok ((const char *) payload + *pos + 2, name_len))
    return NULL;
  *pos += 2 + name_len;
  return g_strndup ((const char *) payload + *pos - name_len, name_len);
}

static gboolean
decode_entries (const guint8 *payload, gsize len, GArray *entries, GError **error)
{
  g_autoptr (GHashTable) seen = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  guint32 count = tr_get_le32 (payload + 4);
  gsize pos = 8;

  for (guint32 i = 0; i < count; i++) {
    TrPositionsEntry entry = { 0 };
    entry.service = get_name (payload, len, &pos);
    entry.endpoint = entry.service != NULL ? get_name (payload, len, &pos) : NULL;
    if (entry.endpoint == NULL || len - pos < 8) {
      entry_clear (&entry);
      g_set_error (error, TR_STORAGE_ERROR, TR_STORAGE_ERROR_CORRUPT,
                   "exported positions: entry %u of %u is cut short or has an invalid name", i + 1, count);
      return FALSE;
    }
    entry.acked = tr_get_le64 (payload + pos);
    pos += 8;
    g_array_append_val (entries, entry);
    if (!g_hash_table_add (seen, g_strdup_printf ("%s@%s", entry.service, entry.endpoint))) {
      g_set_error (error, TR_STORAGE_ERROR, TR_STORAGE_ERROR_CORRUPT,
                   "exported positions: %s/%s appears twice", entry.service, entry.endpoint);
      return FALSE;
    }
  }
  if (pos != len) {
    g_set_error (error, TR_STORAGE_ERROR, TR_STORAGE_ERROR_CORRUPT,
                 "exported positions: %zu bytes after the last of %u entries", len - pos, count);
    return FALSE;
  }
  return TRUE;
}

GArray *
tr_positions_decode (GBytes *exported, GError **error)
{
  g_autoptr (GArray) entries = g_array_new (FALSE, TRUE, sizeof (TrPositionsEntry));
  TrRecordView view;
  gsize len = 0;
  const guint8 *data;

  g_return_val_if_fail (exported != NULL, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  g_array_set_clear_func (entries, entry_clear);
  data = g_bytes_get_data (exported, &len);
  if (tr_record_decode (data, len, TR_POSITIONS_MAX_EXPORT, &view) != TR_RECORD_OK || view.total != len
      || view.type != TR_POSITIONS_EXPORT_TYPE) {
    g_set_error (error, TR_STORAGE_ERROR, TR_STORAGE_ERROR_CORRUPT,
                 "exported positions: not one valid record of type 0x%02x (%zu bytes)", TR_POSITIONS_EXPORT_TYPE,
                 len);
    return NULL;
  }
  if (view.len < 8 || tr_get_le32 (view.payload) != TR_POSITIONS_EXPORT_VERSION) {
    g_set_error (error, TR_STORAGE_ERROR, TR_STORAGE_ERROR_CORRUPT,
                 "exported positions: version %u, expected %d", view.len >= 4 ? tr_get_le32 (view.payload) : 0,
                 TR_POSITIONS_EXPORT_VERSION);
    return NULL;
  }
  if (!decode_entries (view.payload, view.len, entries, error))
    return NULL;
  return g_steal_pointer (&entries);
}

static gboolean
import_one (TrPositions *positions, const TrPositionsEntry *entry, GError **error)
{
  g_autoptr (TrPositionsEndpoint) file = tr_positions_open_endpoint (positions, entry->service, entry->endpoint,
                                                                     error);

  return file != NULL && tr_positions_endpoint_write (file, entry->acked, error)
         && tr_positions_endpoint_sync (file, error);
}

gboolean
tr_positions_import (TrPositions *positions, GBytes *exported, GError **error)
{
  g_autoptr (GArray) entries = NULL;
  guint open_files;

  g_return_val_if_fail (positions != NULL && exported != NULL, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  entries = tr_positions_decode (exported, error);
  if (entries == NULL)
    return FALSE;
  g_mutex_lock (&positions->lock);
  open_files = positions->open_files;
  g_mutex_unlock (&positions->lock);
  if (open_files > 0) {
    g_set_error (error, TR_STORAGE_ERROR, TR_STORAGE_ERROR_BUSY,
                 "%s: cannot import positions while %u endpoint files are open (push is running)", positions->dir,
                 open_files);
    return FALSE;
  }
  for (guint i = 0; i < entries->len; i++)
    if (!import_one (positions, &g_array_index (entries, TrPositionsEntry, i), error))
      return FALSE;
  return TRUE;
}
