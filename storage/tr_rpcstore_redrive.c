/* tr_rpcstore_redrive.c - the redrive marks of the RPC store: which dead
 * letters of a service an operator sent again (tr-admin redrive), so that
 * the same dead letter is not sent twice by accident.  One small file per
 * service, DATA_DIR/redriven-<id>, replaced whole through DoubleWriteFile
 * (a redrive is a rare operator action; the file holds one entry per
 * dead letter redriven, so rewriting it is cheap next to the commit).
 * Format (docs/format/rpcstore.md "Redrive marks"), all little-endian:
 *
 *   offset  size  field
 *   0       4     magic "TRRD"
 *   4       4     version, u32 = 1
 *   8       24*n  n entries: dead-letter index u64, rpc id of the copy
 *                 committed by the redrive u64, wall-clock time of the
 *                 redrive in microseconds since the epoch i64
 *
 * Entries are in the order they were added; a dead letter redriven again
 * (--force) has several, the last is the current one.  The file is valid
 * when it has the magic, version 1 and a length of 8 + 24n; anything else
 * is TR_STORAGE_ERROR_CORRUPT naming the file (never silently emptied: an
 * empty list would let every dead letter be sent again).
 *
 * Threads: both calls take ->dead_lock (the dead-letter lock), so an
 * addition is a read-modify-write no other addition interleaves with.
 */
#include "tr_dwfile.h"
#include "tr_endian.h"
#include "tr_rpcstore_private.h"
#include "tr_storage_error.h"

#include <string.h>

#define REDRIVE_MAGIC "TRRD"
#define REDRIVE_VERSION 1
#define REDRIVE_HEADER 8
#define REDRIVE_ENTRY 24

static char *
redrive_path (TrRpcStore *store, guint32 service_id)
{
  g_autofree char *name = g_strdup_printf ("redriven-%u", service_id);

  return g_build_filename (store->dir, name, NULL);
}

/* The marks in @path (none when it does not exist).  Caller holds
 * ->dead_lock. */
static GArray *
read_marks_locked (TrRpcStore *store, const char *path, GError **error)
{
  g_autoptr (GArray) marks = g_array_new (FALSE, TRUE, sizeof (TrRedriveMark));
  g_autoptr (GError) read_error = NULL;
  g_autoptr (GBytes) content = tr_dwfile_read (store->io, path, &read_error);
  const guint8 *data;
  gsize len;

  if (content == NULL && g_error_matches (read_error, TR_STORAGE_ERROR, TR_STORAGE_ERROR_NOT_FOUND))
    return g_steal_pointer (&marks);
  if (content == NULL) {
    g_propagate_error (error, g_steal_pointer (&read_error));
    return NULL;
  }
  data = g_bytes_get_data (content, &len);
  if (len < REDRIVE_HEADER || memcmp (data, REDRIVE_MAGIC, 4) != 0 || tr_get_le32 (data + 4) != REDRIVE_VERSION
      || (len - REDRIVE_HEADER) % REDRIVE_ENTRY != 0) {
    g_set_error (error, TR_STORAGE_ERROR, TR_STORAGE_ERROR_CORRUPT,
                 "%s: not a redrive-marks file v%d (%zu bytes); move it away to forget every redrive", path,
                 REDRIVE_VERSION, len);
    return NULL;
  }
  for (gsize off = REDRIVE_HEADER; off < len; off += REDRIVE_ENTRY) {
    TrRedriveMark mark = { tr_get_le64 (data + off), tr_get_le64 (data + off + 8),
                           (gint64) tr_get_le64 (data + off + 16) };
    g_array_append_val (marks, mark);
  }
  return g_steal_pointer (&marks);
}

GArray *
tr_rpcstore_list_redrives (TrRpcStore *store, guint32 service_id, GError **error)
{
  g_autofree char *path = NULL;
  GArray *marks;

  g_return_val_if_fail (store != NULL && service_id < tr_rpcstore__n_ids (store), NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  path = redrive_path (store, service_id);
  g_mutex_lock (&store->dead_lock);
  marks = read_marks_locked (store, path, error);
  g_mutex_unlock (&store->dead_lock);
  return marks;
}

gboolean
tr_rpcstore_add_redrives (TrRpcStore *store, guint32 service_id, const TrRedriveMark *marks, guint n_marks,
                          GError **error)
{
  g_autofree char *path = NULL;
  g_autoptr (GArray) old = NULL;
  g_autoptr (GByteArray) content = g_byte_array_new ();
  guint8 entry[REDRIVE_ENTRY];
  gboolean ok = FALSE;

  g_return_val_if_fail (store != NULL && service_id < tr_rpcstore__n_ids (store), FALSE);
  g_return_val_if_fail (marks != NULL || n_marks == 0, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  path = redrive_path (store, service_id);
  g_mutex_lock (&store->dead_lock);
  old = read_marks_locked (store, path, error);
  if (old != NULL) {
    g_byte_array_append (content, (const guint8 *) REDRIVE_MAGIC, 4);
    tr_put_le32 (entry, REDRIVE_VERSION);
    g_byte_array_append (content, entry, 4);
    for (guint i = 0; i < old->len + n_marks; i++) {
      const TrRedriveMark *mark = i < old->len ? &g_array_index (old, TrRedriveMark, i) : &marks[i - old->len];
      tr_put_le64 (entry, mark->index);
      tr_put_le64 (entry + 8, mark->new_rpc_id);
      tr_put_le64 (entry + 16, (guint64) mark->time_us);
      g_byte_array_append (content, entry, sizeof entry);
    }
    ok = tr_dwfile_replace (store->io, path, content->data, content->len, error);
  }
  g_mutex_unlock (&store->dead_lock);
  if (!ok)
    g_prefix_error (error, "redrive marks of service %s: ",
                    (const char *) g_ptr_array_index (store->service_names, service_id));
  return ok;
}
