/* tr_rotatefile.c - RotateFile: the newest of many full-state records, kept
 * in two bounded files written alternately.
 *
 * Format, invariants and thread rules: tr_rotatefile.h and
 * docs/format/rotatefile.md.  Records use the record frame v1 of
 * tr_record.h; this file adds only the 8-byte sequence number in front of
 * the caller's state.
 *
 * Life of the object:
 *
 *   tr_rotatefile_open()            write/sync I/O error
 *   ---------------------> OPEN ---------------------------> FAILED
 *                          |  ^                                |
 *   tr_rotatefile_write()  |  | (append, or rotate)            | every call:
 *   tr_rotatefile_sync()   +--+                                | CLOSED
 *                                                              v
 *                                        tr_rotatefile_free() + reopen
 *
 * Rotation (the record does not fit behind the newest one in the current
 * file C; O is the other file):
 *
 *   1. truncate O to 0      O held only states older than C's newest record,
 *                           and C is not touched, so the newest synced state
 *                           survives whatever happens to O.
 *   2. write the record at offset 0 of O
 *   3. fdatasync O          before any later write can go on to truncate C
 *                           (at the next rotation) the full new state must
 *                           be durable in O.  Syncing here rather than at
 *                           the next rotation keeps that rule local.
 *   4. O becomes current.
 */
#include "tr_rotatefile.h"

#include "tr_endian.h"
#include "tr_record.h"
#include "tr_storage_error.h"

#include <string.h>

struct _TrRotateFile {
  TrIo *io;             /* (transfer none) */
  char *path;           /* base path, for messages */
  char *file_paths[2];  /* PATH.0, PATH.1 */
  int fds[2];           /* -1 when not open */
  gsize max_file_size;  /* bound of each file */
  guint current;        /* 0 or 1: file holding the newest record */
  guint64 ends[2];      /* end of the valid records of each file = append offset */
  gboolean dirty[2];    /* written since its last fdatasync */
  guint64 seq;          /* sequence number of the newest record, 0 if none */
  gboolean failed;      /* a mutating call failed: sticky, see header */
};

/* What one scan of one file found. */
typedef struct {
  guint64 file_size;
  guint64 valid_end;  /* end of the last record of the valid prefix */
  guint64 best_seq;   /* highest sequence number seen, 0 if none */
  GBytes *best_state; /* (transfer full) (nullable): its state bytes */
} ScanResult;

static void
scan_result_clear (ScanResult *result)
{
  g_clear_pointer (&result->best_state, g_bytes_unref);
}

/* Decodes one RotateFile record at @buf; FALSE if it is not a valid one. */
static gboolean
decode_state_record (const guint8 *buf, gsize avail, TrRecordView *view, guint64 *seq_out)
{
  guint32 max_len = (guint32) MIN (avail, (gsize) G_MAXUINT32);

  if (tr_record_decode (buf, avail, max_len, view) != TR_RECORD_OK)
    return FALSE;
  if (view->type != TR_ROTATEFILE_RECORD_TYPE || view->len < 8)
    return FALSE;
  *seq_out = tr_get_le64 (view->payload);
  /* Writers start at 1, add 1 and stop at TR_ROTATEFILE_MAX_SEQ: anything
   * else is a damaged record (found by fuzz_recovery). */
  return *seq_out >= 1 && *seq_out <= TR_ROTATEFILE_MAX_SEQ;
}

/* Reads the whole file and walks its valid prefix (the files are small and
 * bounded, so one read beats a read per record). */
static gboolean
scan_file (TrIo *io, int fd, const char *path, ScanResult *out, GError **error)
{
  g_autofree guint8 *buf = NULL;
  guint64 offset = 0;

  memset (out, 0, sizeof *out);
  if (!tr_io_size (io, fd, &out->file_size, error))
    return FALSE;
  buf = g_malloc (out->file_size > 0 ? out->file_size : 1);
  if (!tr_io_pread_full (io, fd, buf, out->file_size, 0, path, error))
    return FALSE;
  while (offset < out->file_size) {
    TrRecordView view;
    guint64 seq;

    if (!decode_state_record (buf + offset, out->file_size - offset, &view, &seq))
      break;
    if (seq > out->best_seq || out->best_state == NULL) {
      out->best_seq = seq;
      g_clear_pointer (&out->best_state, g_bytes_unref);
      out->best_state = g_bytes_new (view.payload + 8, view.len - 8);
    }
    offset += view.total;
  }
  out->valid_end = offset;
  return TRUE;
}

static gboolean
fail (TrRotateFile *rotatefile)
{
  rotatefile->failed = TRUE;
  return FALSE;
}

static gboolean
check_open (TrRotateFile *rotatefile, GError **error)
{
  if (!rotatefile->failed)
    return TRUE;
  g_set_error (error, TR_STORAGE_ERROR, TR_STORAGE_ERROR_CLOSED,
               "rotate file %s failed earlier and must be reopened", rotatefile->path);
  return FALSE;
}

/* Opens (creating if needed) both files.  A created file is made durable in
 * its directory before anything is written to it: a record synced into a
 * file whose directory entry is lost by a power cut would vanish with it. */
static gboolean
open_files (TrRotateFile *rotatefile, GError **error)
{
  gboolean created = FALSE;

  for (guint i = 0; i < 2; i++) {
    if (!tr_io_exists (rotatefile->file_paths[i]))
      created = TRUE;
    if (!tr_io_open (rotatefile->io, rotatefile->file_paths[i], TR_IO_WRITE | TR_IO_CREATE,
                     &rotatefile->fds[i], error))
      return FALSE;
  }
  if (created) {
    g_autofree char *dir = g_path_get_dirname (rotatefile->path);
    if (!tr_io_fsync_dir (rotatefile->io, dir, error))
      return FALSE;
  }
  return TRUE;
}

/* Cuts the invalid tail off file @i.  Without this, appending after the
 * valid prefix could re-expose an old valid record that sat behind a torn
 * one (its sequence number may be higher than the new records', making an
 * older state win).  Synced at once so the cut cannot be undone by a crash
 * after newer records were appended. */
static gboolean
cut_tail (TrRotateFile *rotatefile, guint i, const ScanResult *scan, GError **error)
{
  const char *file_path = rotatefile->file_paths[i];
  g_autofree char *dropped = NULL;

  if (scan->file_size == scan->valid_end)
    return TRUE;
  if (!tr_io_truncate (rotatefile->io, rotatefile->fds[i], scan->valid_end, error)
      || !tr_io_fsync (rotatefile->io, rotatefile->fds[i], error))
    return FALSE;
  dropped = g_strdup_printf ("%" G_GUINT64_FORMAT, scan->file_size - scan->valid_end);
  g_log_structured (G_LOG_DOMAIN, G_LOG_LEVEL_MESSAGE, "TR_FILE", file_path, "MESSAGE",
                    "rotate file %s: dropped %s bytes of torn or invalid records at offset %"
                    G_GUINT64_FORMAT,
                    file_path, dropped, scan->valid_end);
  return TRUE;
}

static gboolean
recover (TrRotateFile *rotatefile, GError **error)
{
  ScanResult scans[2] = { 0 };
  gboolean ok = TRUE;

  for (guint i = 0; i < 2 && ok; i++)
    ok = scan_file (rotatefile->io, rotatefile->fds[i], rotatefile->file_paths[i], &scans[i], error);
  for (guint i = 0; i < 2 && ok; i++)
    ok = cut_tail (rotatefile, i, &scans[i], error);
  if (ok) {
    /* Sequence numbers never repeat across the files (see header), so the
     * tie only happens when both are empty; file 0 is then current. */
    rotatefile->current = scans[1].best_seq > scans[0].best_seq ? 1 : 0;
    rotatefile->seq = scans[rotatefile->current].best_seq;
    rotatefile->ends[0] = scans[0].valid_end;
    rotatefile->ends[1] = scans[1].valid_end;
  }
  scan_result_clear (&scans[0]);
  scan_result_clear (&scans[1]);
  return ok;
}

TrRotateFile *
tr_rotatefile_open (TrIo *io, const char *path, gsize max_file_size, GError **error)
{
  g_autoptr (TrRotateFile) rotatefile = NULL;

  g_return_val_if_fail (io != NULL && path != NULL, NULL);
  g_return_val_if_fail (max_file_size >= TR_ROTATEFILE_MIN_FILE_SIZE, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  rotatefile = g_new0 (TrRotateFile, 1);
  rotatefile->io = io;
  rotatefile->path = g_strdup (path);
  rotatefile->max_file_size = max_file_size;
  for (guint i = 0; i < 2; i++) {
    rotatefile->file_paths[i] = g_strdup_printf ("%s.%u", path, i);
    rotatefile->fds[i] = -1;
  }
  if (!open_files (rotatefile, error) || !recover (rotatefile, error)) {
    g_prefix_error (error, "cannot open rotate file %s: ", path);
    return NULL;
  }
  return g_steal_pointer (&rotatefile);
}

GBytes *
tr_rotatefile_load (TrRotateFile *rotatefile, guint64 *seq_out, GError **error)
{
  ScanResult scans[2] = { 0 };
  GBytes *state = NULL;
  guint best;

  g_return_val_if_fail (rotatefile != NULL, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  if (!check_open (rotatefile, error))
    return NULL;
  for (guint i = 0; i < 2; i++) {
    if (!scan_file (rotatefile->io, rotatefile->fds[i], rotatefile->file_paths[i], &scans[i], error))
      goto out;
  }
  best = scans[1].best_seq > scans[0].best_seq ? 1 : 0;
  if (scans[best].best_state == NULL) {
    g_set_error (error, TR_STORAGE_ERROR, TR_STORAGE_ERROR_NOT_FOUND,
                 "rotate file %s holds no valid state", rotatefile->path);
    goto out;
  }
  if (seq_out != NULL)
    *seq_out = scans[best].best_seq;
  state = g_steal_pointer (&scans[best].best_state);
out:
  scan_result_clear (&scans[0]);
  scan_result_clear (&scans[1]);
  return state;
}

/* Writes one framed record at @offset of file @i. */
static gboolean
write_record (TrRotateFile *rotatefile, guint i, guint64 offset, guint64 seq, const void *data,
              gsize len, GError **error)
{
  gsize payload_len = 8 + len;
  g_autofree guint8 *buf = g_malloc (TR_RECORD_SIZE (payload_len));
  guint8 *payload = buf + TR_RECORD_HEADER_SIZE;

  tr_put_le64 (payload, seq);
  if (len > 0)
    memcpy (payload + 8, data, len);
  tr_record_encode_header (buf, TR_ROTATEFILE_RECORD_TYPE, payload, (guint32) payload_len);
  rotatefile->dirty[i] = TRUE;
  return tr_io_pwrite (rotatefile->io, rotatefile->fds[i], buf, TR_RECORD_SIZE (payload_len), offset,
                       error);
}

/* Steps 1-3 of the rotation drawn at the top of this file. */
static gboolean
rotate (TrRotateFile *rotatefile, guint64 seq, const void *data, gsize len, GError **error)
{
  guint other = 1 - rotatefile->current;
  int fd = rotatefile->fds[other];

  if (!tr_io_truncate (rotatefile->io, fd, 0, error)
      || !write_record (rotatefile, other, 0, seq, data, len, error))
    return FALSE;
  /* Durable before the next rotation may truncate the file we are leaving,
   * which still holds the previous synced state. */
  if (!tr_io_fsync (rotatefile->io, fd, error))
    return FALSE;
  rotatefile->dirty[other] = FALSE;
  g_debug ("rotate file %s: rotated to %s at seq %" G_GUINT64_FORMAT, rotatefile->path,
           rotatefile->file_paths[other], seq);
  rotatefile->current = other;
  rotatefile->ends[other] = TR_RECORD_SIZE (8 + len);
  return TRUE;
}

gboolean
tr_rotatefile_write (TrRotateFile *rotatefile, const void *data, gsize len, GError **error)
{
  guint64 seq;
  guint64 end;

  g_return_val_if_fail (rotatefile != NULL, FALSE);
  g_return_val_if_fail (data != NULL || len == 0, FALSE);
  g_return_val_if_fail (len <= tr_rotatefile_get_max_data_size (rotatefile), FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  if (!check_open (rotatefile, error))
    return FALSE;
  if (rotatefile->seq >= TR_ROTATEFILE_MAX_SEQ) {
    /* Only a damaged (yet checksum-valid) record gets here: 2^63 writes do
     * not happen.  A record past the limit would be ignored by load, so
     * writing it would lose the state silently: refuse. */
    g_set_error (error, TR_STORAGE_ERROR, TR_STORAGE_ERROR_CORRUPT,
                 "rotate file %s: sequence number %" G_GUINT64_FORMAT " is at the limit (damaged record?)",
                 rotatefile->path, rotatefile->seq);
    return FALSE;
  }
  seq = rotatefile->seq + 1;
  end = rotatefile->ends[rotatefile->current];
  if (end + TR_RECORD_SIZE (8 + len) <= rotatefile->max_file_size) {
    if (!write_record (rotatefile, rotatefile->current, end, seq, data, len, error))
      goto failed;
    rotatefile->ends[rotatefile->current] = end + TR_RECORD_SIZE (8 + len);
  } else if (!rotate (rotatefile, seq, data, len, error)) {
    goto failed;
  }
  rotatefile->seq = seq;
  return TRUE;

failed:
  g_prefix_error (error, "rotate file %s: ", rotatefile->path);
  return fail (rotatefile);
}

gboolean
tr_rotatefile_sync (TrRotateFile *rotatefile, GError **error)
{
  g_return_val_if_fail (rotatefile != NULL, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  if (!check_open (rotatefile, error))
    return FALSE;
  for (guint i = 0; i < 2; i++) {
    if (!rotatefile->dirty[i])
      continue;
    /* Never retried on failure: the kernel may have dropped the dirty
     * pages already, so the object fails (STYLE.md §2). */
    if (!tr_io_fsync (rotatefile->io, rotatefile->fds[i], error)) {
      g_prefix_error (error, "rotate file %s: ", rotatefile->path);
      return fail (rotatefile);
    }
    rotatefile->dirty[i] = FALSE;
  }
  return TRUE;
}

gsize
tr_rotatefile_get_max_data_size (TrRotateFile *rotatefile)
{
  gsize max = rotatefile->max_file_size - TR_ROTATEFILE_OVERHEAD;

  /* The frame length field is a u32. */
  return MIN (max, (gsize) G_MAXUINT32 - 8);
}

guint64
tr_rotatefile_get_seq (TrRotateFile *rotatefile)
{
  g_return_val_if_fail (rotatefile != NULL, 0);
  return rotatefile->seq;
}

void
tr_rotatefile_free (TrRotateFile *rotatefile)
{
  if (rotatefile == NULL)
    return;
  for (guint i = 0; i < 2; i++) {
    tr_io_close_quietly (rotatefile->io, rotatefile->fds[i]);
    g_free (rotatefile->file_paths[i]);
  }
  g_free (rotatefile->path);
  g_free (rotatefile);
}
