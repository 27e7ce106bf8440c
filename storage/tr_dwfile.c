/* tr_dwfile.c - DoubleWriteFile: side copy, then in-place write.
 *
 * Format, the safety argument and thread rules: tr_dwfile.h and
 * docs/format/dwfile.md.  The side copy is one record frame v1
 * (tr_record.h); this file adds only the 8-byte content length.
 *
 * Commit states of one tr_dwfile_replace() (what a crash in each state
 * leaves, and what tr_dwfile_recover() does about it):
 *
 *   CLEAN ------------> SIDE_WRITING ----------> SIDE_DURABLE
 *         write_side_copy()          fsync PATH.dw +
 *                                    fsync_dir
 *   crash: PATH old     crash: PATH old,         crash: PATH old/torn/new,
 *   no PATH.dw          PATH.dw absent or        PATH.dw valid
 *                       invalid -> discarded     -> replayed
 *
 *   SIDE_DURABLE -----------> TARGET_DURABLE -----------> CLEAN
 *        write_target(): pwrite,        unlink PATH.dw +
 *        truncate, fsync PATH           fsync_dir
 *                      crash: PATH new, PATH.dw valid or gone
 *                      -> replayed (idempotent) or nothing to do
 */
#include "tr_dwfile.h"

#include "tr_endian.h"
#include "tr_record.h"
#include "tr_storage_error.h"

#include <string.h>

static char *
side_copy_path (const char *path)
{
  return g_strconcat (path, TR_DWFILE_SUFFIX, NULL);
}

/* Overwrites @path in place with exactly @data[0..@len) and syncs it. */
static gboolean
write_target (TrIo *io, const char *path, const void *data, gsize len, GError **error)
{
  gboolean created = !tr_io_exists (path);
  gboolean ok;
  int fd = -1;

  if (!tr_io_open (io, path, TR_IO_WRITE | TR_IO_CREATE, &fd, error))
    return FALSE;
  /* Content first, then cut to the new length: a crash in between leaves a
   * torn PATH, which the durable side copy repairs either way. */
  ok = (len == 0 || tr_io_pwrite (io, fd, data, len, 0, error)) && tr_io_truncate (io, fd, len, error)
       /* Before the side copy may be removed, PATH must durably hold the
        * new content: after the unlink it is the only copy. */
       && tr_io_fsync (io, fd, error);
  tr_io_close_quietly (io, fd);
  if (ok && created) {
    /* A new PATH's directory entry must be durable before the side copy's
     * removal can be: otherwise a power cut could keep the removal and lose
     * the file. */
    g_autofree char *dir = g_path_get_dirname (path);
    ok = tr_io_fsync_dir (io, dir, error);
  }
  return ok;
}

/* Writes the side copy as one record and syncs the file (not the dir). */
static gboolean
write_side_copy (TrIo *io, const char *side_path, const void *data, gsize len, GError **error)
{
  gsize payload_len = 8 + len;
  g_autofree guint8 *buf = g_malloc (TR_RECORD_SIZE (payload_len));
  guint8 *payload = buf + TR_RECORD_HEADER_SIZE;
  gboolean ok;
  int fd = -1;

  tr_put_le64 (payload, len);
  if (len > 0)
    memcpy (payload + 8, data, len);
  tr_record_encode_header (buf, TR_DWFILE_RECORD_TYPE, payload, (guint32) payload_len);
  if (!tr_io_open (io, side_path, TR_IO_WRITE | TR_IO_CREATE, &fd, error))
    return FALSE;
  /* Recovery removed any earlier side copy; the truncate only guards
   * against one that appeared since (it would otherwise leave stale bytes
   * behind a shorter record, which recovery ignores anyway). */
  ok = tr_io_truncate (io, fd, 0, error) && tr_io_pwrite (io, fd, buf, TR_RECORD_SIZE (payload_len), 0, error)
       /* The side copy must be complete on disk before PATH is touched:
        * it is what repairs a torn PATH. */
       && tr_io_fsync (io, fd, error);
  tr_io_close_quietly (io, fd);
  return ok;
}

/* Removes the side copy and makes the removal durable.  Only called once
 * PATH is durable (replay or replace) or the side copy is known useless
 * (discard).  The dir fsync is not needed for PATH's content (a side copy
 * that comes back holds the same new content, or is invalid again, and
 * recovery handles both), but it lets TRUE mean "settled on disk". */
static gboolean
remove_side_copy (TrIo *io, const char *path, const char *side_path, GError **error)
{
  g_autofree char *dir = g_path_get_dirname (path);

  return tr_io_unlink (io, side_path, error) && tr_io_fsync_dir (io, dir, error);
}

/* Reads a whole file into memory. */
static GBytes *
read_whole (TrIo *io, const char *path, GError **error)
{
  g_autofree guint8 *buf = NULL;
  guint64 size = 0;
  gboolean ok;
  int fd = -1;

  if (!tr_io_open (io, path, TR_IO_READ, &fd, error))
    return NULL;
  ok = tr_io_size (io, fd, &size, error);
  if (ok) {
    buf = g_malloc (size > 0 ? size : 1);
    ok = tr_io_pread_full (io, fd, buf, size, 0, path, error);
  }
  tr_io_close_quietly (io, fd);
  if (!ok)
    return NULL;
  return g_bytes_new_take (g_steal_pointer (&buf), size);
}

/* Validates a side copy.  Returns the reason it is invalid, or NULL and
 * fills @content_out / @len_out (pointing into @buf). */
static const char *
check_side_copy (const guint8 *buf, gsize size, const guint8 **content_out, gsize *len_out)
{
  TrRecordView view;

  switch (tr_record_decode (buf, size, (guint32) MIN (size, (gsize) G_MAXUINT32), &view)) {
  case TR_RECORD_OK:
    break;
  case TR_RECORD_NEED_MORE:
    return "incomplete record";
  case TR_RECORD_CORRUPT:
  default:
    return "corrupt record";
  }
  if (view.type != TR_DWFILE_RECORD_TYPE)
    return "not a side copy record";
  if (view.len < 8 || tr_get_le64 (view.payload) != (guint64) view.len - 8)
    return "content length does not match the record";
  *content_out = view.payload + 8;
  *len_out = view.len - 8;
  return NULL;
}

static void
log_recovery (const char *side_path, const char *what, const char *reason)
{
  g_log_structured (G_LOG_DOMAIN, G_LOG_LEVEL_MESSAGE, "TR_FILE", side_path, "MESSAGE",
                    "double-write side copy %s %s%s%s", side_path, what, reason ? ": " : "",
                    reason ? reason : "");
}

gboolean
tr_dwfile_recover (TrIo *io, const char *path, GError **error)
{
  g_autofree char *side_path = NULL;
  g_autoptr (GBytes) side = NULL;
  const guint8 *content = NULL;
  const guint8 *buf;
  const char *invalid;
  gsize size;
  gsize len = 0;

  g_return_val_if_fail (io != NULL && path != NULL, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  side_path = side_copy_path (path);
  if (!tr_io_exists (side_path))
    return TRUE;
  side = read_whole (io, side_path, error);
  if (side == NULL)
    goto failed;
  buf = g_bytes_get_data (side, &size);
  invalid = check_side_copy (buf, size, &content, &len);
  if (invalid != NULL) {
    /* An invalid side copy was never synced (replace syncs it before
     * touching PATH), so PATH still holds the old content: drop it. */
    log_recovery (side_path, "discarded", invalid);
  } else {
    if (!write_target (io, path, content, len, error))
      goto failed;
    log_recovery (side_path, "replayed", NULL);
  }
  if (!remove_side_copy (io, path, side_path, error))
    goto failed;
  return TRUE;

failed:
  g_prefix_error (error, "cannot recover %s: ", path);
  return FALSE;
}

gboolean
tr_dwfile_replace (TrIo *io, const char *path, const void *data, gsize len, GError **error)
{
  g_autofree char *side_path = NULL;
  g_autofree char *dir = NULL;

  g_return_val_if_fail (io != NULL && path != NULL, FALSE);
  g_return_val_if_fail (data != NULL || len == 0, FALSE);
  g_return_val_if_fail (len <= TR_DWFILE_MAX_SIZE, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  /* A pending side copy from a crash must be settled first: overwriting
   * it while PATH may be torn would lose the only good copy. */
  if (!tr_dwfile_recover (io, path, error))
    return FALSE;
  side_path = side_copy_path (path);
  dir = g_path_get_dirname (path);
  if (!write_side_copy (io, side_path, data, len, error)
      /* The side copy's directory entry must be durable too before PATH
       * is touched: a synced file whose entry is lost is no copy at all. */
      || !tr_io_fsync_dir (io, dir, error) || !write_target (io, path, data, len, error)
      || !remove_side_copy (io, path, side_path, error)) {
    g_prefix_error (error, "cannot replace %s: ", path);
    return FALSE;
  }
  return TRUE;
}

GBytes *
tr_dwfile_read (TrIo *io, const char *path, GError **error)
{
  GBytes *content;

  g_return_val_if_fail (io != NULL && path != NULL, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  if (!tr_dwfile_recover (io, path, error))
    return NULL;
  content = read_whole (io, path, error);
  if (content == NULL)
    g_prefix_error (error, "cannot read %s: ", path);
  return content;
}
