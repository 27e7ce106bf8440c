/* tr_rpcstore_dead.c - the dead-letter lists of the RPC store: one
 * GroupFile of TR_RPCSTORE_REC_DEAD records per service (dead-<id>.N),
 * opened on first use, appended and synced by the push side
 * (on_failure = skip) and listed for tr-admin.  Format:
 * docs/format/rpcstore.md.
 */
#include "tr_endian.h"
#include "tr_record.h"
#include "tr_rpcstore_private.h"
#include "tr_storage_error.h"

#include <string.h>

static void
dead_letter_clear (gpointer data)
{
  g_free (((TrDeadLetter *) data)->reason);
}

/* Reads the dead-letter record at @offset into @rec; FALSE (and @error only
 * on an I/O error) when there is no valid one. */
static gboolean
read_dead_record (TrGroupFile *file, guint64 offset, GByteArray *rec, TrRecordView *view, gboolean *io_failed,
                  GError **error)
{
  guint32 limit = (guint32) MIN (tr_groupfile_part_size (file) - TR_RECORD_HEADER_SIZE, G_MAXUINT32);
  guint8 header[TR_RECORD_HEADER_SIZE];
  gsize got = 0;
  guint32 len;

  if (!tr_groupfile_read (file, offset, header, sizeof header, &got, error)) {
    *io_failed = TRUE;
    return FALSE;
  }
  if (got < sizeof header || !tr_record_peek_len (header, limit, &len))
    return FALSE;
  g_byte_array_set_size (rec, (guint) TR_RECORD_SIZE (len));
  if (!tr_groupfile_read (file, offset, rec->data, rec->len, &got, error)) {
    *io_failed = TRUE;
    return FALSE;
  }
  return got == rec->len && tr_record_decode (rec->data, rec->len, limit, view) == TR_RECORD_OK
         && view->type == TR_RPCSTORE_REC_DEAD && view->len >= 16;
}

/* Walks the dead-letter records of @file from its first offset (skipping
 * the unused ends of sealed parts), appending those with index >=
 * @from_index to @letters (nullable) until it holds @max.  Stores the offset
 * where the walk stopped in @stop_out: the end of the file, or the first
 * torn or corrupt record.  FALSE only on an I/O error.  Caller holds
 * ->dead_lock. */
static gboolean
scan_dead_locked (TrGroupFile *file, guint64 from_index, guint max, GArray *letters, guint64 *count_out,
                  guint64 *stop_out, GError **error)
{
  g_autoptr (GByteArray) rec = g_byte_array_new ();
  guint64 ps = tr_groupfile_part_size (file);
  guint64 end = tr_groupfile_size (file);
  guint64 offset = tr_groupfile_first_offset (file);
  guint64 index = 0;
  gboolean io_failed = FALSE;

  while (offset < end && (letters == NULL || letters->len < max)) {
    TrRecordView view;
    guint8 probe;
    gsize got = 0;
    if (!tr_groupfile_read (file, offset, &probe, 1, &got, error))
      return FALSE;
    if (got == 0) { /* the unused end of a sealed part: go on at the next part */
      offset = MIN ((offset / ps + 1) * ps, end);
      continue;
    }
    if (!read_dead_record (file, offset, rec, &view, &io_failed, error)) {
      if (io_failed)
        return FALSE;
      break; /* torn or corrupt: the walk ends here */
    }
    if (letters != NULL && index >= from_index) {
      TrDeadLetter letter = { index, tr_get_le64 (view.payload), tr_get_le64 (view.payload + 8),
                              g_strndup ((const char *) view.payload + 16, view.len - 16) };
      g_array_append_val (letters, letter);
    }
    index++;
    offset += view.total;
  }
  *count_out = index;
  *stop_out = letters != NULL && letters->len >= max ? end : offset;
  return TRUE;
}

/* The dead-letter GroupFile of @service_id, opened on first use.  A torn
 * record at the end of the last part (a crash during an append) is cut
 * off then, so later dead letters are not appended behind it.  Caller holds
 * ->dead_lock. */
static TrGroupFile *
dead_file_locked (TrRpcStore *store, guint32 service_id, GError **error)
{
  TrGroupFile *file = g_ptr_array_index (store->dead, service_id);
  g_autofree char *name = NULL;
  guint64 count, stop, end, ps;

  if (file != NULL)
    return file;
  name = g_strdup_printf ("dead-%u", service_id);
  file = tr_rpcstore__open_file (store, name, error);
  if (file == NULL || !scan_dead_locked (file, 0, 0, NULL, &count, &stop, error)) {
    g_clear_pointer (&file, tr_groupfile_free);
    return NULL;
  }
  end = tr_groupfile_size (file);
  ps = tr_groupfile_part_size (file);
  if (stop < end) {
    g_autofree char *path = tr_groupfile_part_path (file, stop);
    if (stop / ps != (end - 1) / ps) {
      g_warning ("%s: dead-letter record %" G_GUINT64_FORMAT " at offset %" G_GUINT64_FORMAT
                 " is corrupt and not in the last part; listings end there", path, count, stop % ps);
    } else if (tr_groupfile_truncate (file, stop, error) && tr_groupfile_sync (file, error)) {
      g_log_structured (G_LOG_DOMAIN, G_LOG_LEVEL_MESSAGE, "TR_FILE", path, "MESSAGE",
                        "truncating torn tail of %s at offset %" G_GUINT64_FORMAT ": %" G_GUINT64_FORMAT
                        " bytes after %" G_GUINT64_FORMAT " dead letters dropped",
                        path, stop % ps, end - stop, count);
    } else {
      g_clear_pointer (&file, tr_groupfile_free);
      return NULL;
    }
  }
  g_ptr_array_index (store->dead, service_id) = file;
  return file;
}

gboolean
tr_rpcstore_add_dead_letter (TrRpcStore *store, guint32 service_id, guint64 seqid, guint64 rpc_id,
                             const char *reason, GError **error)
{
  g_autoptr (GByteArray) payload = g_byte_array_new ();
  g_autoptr (GBytes) record = NULL;
  TrGroupFile *file;
  guint8 head[16];
  guint64 offset;
  gboolean ok;

  g_return_val_if_fail (service_id < tr_rpcstore__n_ids (store), FALSE);
  tr_put_le64 (head, seqid);
  tr_put_le64 (head + 8, rpc_id);
  g_byte_array_append (payload, head, sizeof head);
  g_byte_array_append (payload, (const guint8 *) reason, (guint) strlen (reason));
  record = tr_record_encode (TR_RPCSTORE_REC_DEAD, payload->data, payload->len);
  g_mutex_lock (&store->dead_lock);
  file = dead_file_locked (store, service_id, error);
  ok = file != NULL
       && tr_groupfile_append (file, g_bytes_get_data (record, NULL), g_bytes_get_size (record), &offset, error)
       && tr_groupfile_sync (file, error);
  /* A failed append or sync leaves the GroupFile failed for good: closing
   * it makes the next use reopen it, cutting off whatever torn record the
   * failure left, instead of every later dead letter failing until the
   * node restarts. */
  if (file != NULL && !ok) {
    tr_groupfile_free (file);
    g_ptr_array_index (store->dead, service_id) = NULL;
  }
  g_mutex_unlock (&store->dead_lock);
  return ok;
}

GArray *
tr_rpcstore_list_dead_letters (TrRpcStore *store, guint32 service_id, guint64 from_index, guint max,
                               guint64 *unreadable_bytes_out, GError **error)
{
  g_autoptr (GArray) letters = g_array_new (FALSE, TRUE, sizeof (TrDeadLetter));
  guint64 count = 0, stop = 0, end = 0;
  TrGroupFile *file;
  gboolean ok;

  g_return_val_if_fail (store != NULL && service_id < tr_rpcstore__n_ids (store), NULL);
  g_array_set_clear_func (letters, dead_letter_clear);
  g_mutex_lock (&store->dead_lock);
  file = dead_file_locked (store, service_id, error);
  ok = file != NULL && scan_dead_locked (file, from_index, max, letters, &count, &stop, error);
  if (ok)
    end = tr_groupfile_size (file);
  g_mutex_unlock (&store->dead_lock);
  if (!ok)
    return NULL;
  if (stop < end)
    g_warning ("dead letters of service %s: a corrupt record ends the listing after %" G_GUINT64_FORMAT
               " records; %" G_GUINT64_FORMAT " bytes unreadable",
               (const char *) g_ptr_array_index (store->service_names, service_id), count, end - stop);
  if (unreadable_bytes_out != NULL)
    *unreadable_bytes_out = end - stop;
  return g_steal_pointer (&letters);
}
