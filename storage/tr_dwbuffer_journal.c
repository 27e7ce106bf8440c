/* tr_dwbuffer_journal.c - the DoubleWriteBuffer's journal: how a batch of
 * dirty blocks is written to DIR/double_write_prepare before any of them is
 * written in place, and how recovery replays a complete journal or
 * discards an incomplete one (the commit states: tr_dwbuffer.c).
 *
 * Journal DIR/double_write_prepare, version 1 (docs/format/dwbuffer.md).
 * Every record is framed by tr_record (12-byte header, XXH3 checksum over
 * header bytes 0..7 + payload); all integers little-endian:
 *
 *   header (type 0x41):  0 magic "TRDWJ1" (6) | 6 version u16 = 1 |
 *                        8 block_size u32 | 12 n_blocks u32 | 16 batch_seq u64
 *                        (24 bytes)
 *   block  (type 0x42):  0 file_id u32 | 4 block_id u64 | 12 block bytes
 *                        (12 + block_size bytes), n_blocks of them
 *   commit (type 0x43):  0 n_blocks u32 | 4 batch_seq u64 (12 bytes)
 *
 * The journal is complete when the header, n_blocks block records and the
 * commit record are all valid, back to back from offset 0, and the commit
 * repeats the header's n_blocks and batch_seq.  Anything else is incomplete.
 */
#include "tr_dwbuffer.h"

#include "tr_dwbuffer_private.h"
#include "tr_endian.h"
#include "tr_record.h"
#include "tr_storage_error.h"

#include <string.h>

#define JOURNAL_TYPE_HEADER 0x41
#define JOURNAL_TYPE_BLOCK 0x42
#define JOURNAL_TYPE_COMMIT 0x43
#define JOURNAL_VERSION 1
#define JOURNAL_MAGIC "TRDWJ1"
#define JOURNAL_MAGIC_LEN 6
#define HEADER_PAYLOAD 24
#define BLOCK_PREFIX 12
#define COMMIT_PAYLOAD 12

static guint8 *
journal_encode (TrDwBuffer *dwb, Block **blocks, guint n, guint64 seq, gsize *len_out)
{
  gsize block_rec = TR_RECORD_SIZE (BLOCK_PREFIX + dwb->block_size);
  gsize len = TR_RECORD_SIZE (HEADER_PAYLOAD) + n * block_rec + TR_RECORD_SIZE (COMMIT_PAYLOAD);
  guint8 *buf = g_malloc (len);
  guint8 *p = buf, *payload;

  payload = p + TR_RECORD_HEADER_SIZE;
  memcpy (payload, JOURNAL_MAGIC, JOURNAL_MAGIC_LEN);
  tr_put_le16 (payload + 6, JOURNAL_VERSION);
  tr_put_le32 (payload + 8, dwb->block_size);
  tr_put_le32 (payload + 12, n);
  tr_put_le64 (payload + 16, seq);
  tr_record_encode_header (p, JOURNAL_TYPE_HEADER, payload, HEADER_PAYLOAD);
  p += TR_RECORD_SIZE (HEADER_PAYLOAD);
  for (guint i = 0; i < n; i++, p += block_rec) {
    payload = p + TR_RECORD_HEADER_SIZE;
    tr_put_le32 (payload, blocks[i]->key.file_id);
    tr_put_le64 (payload + 4, blocks[i]->key.block_id);
    memcpy (payload + BLOCK_PREFIX, blocks[i]->data, dwb->block_size);
    tr_record_encode_header (p, JOURNAL_TYPE_BLOCK, payload, BLOCK_PREFIX + dwb->block_size);
  }
  payload = p + TR_RECORD_HEADER_SIZE;
  tr_put_le32 (payload, n);
  tr_put_le64 (payload + 4, seq);
  tr_record_encode_header (p, JOURNAL_TYPE_COMMIT, payload, COMMIT_PAYLOAD);
  *len_out = len;
  return buf;
}

/* Creates the journal, writes it whole and makes it durable (CLEAN ->
 * JOURNALED).  A stale file of that name cannot exist after recover(), but
 * it is truncated anyway so a short new journal never ends in old records. */
gboolean
tr_dwbuffer__journal_write (TrDwBuffer *dwb, Block **blocks, guint n, guint64 seq, GError **error)
{
  gsize len;
  g_autofree guint8 *buf = journal_encode (dwb, blocks, n, seq, &len);
  int fd = -1;
  gboolean ok;

  if (!tr_io_open (dwb->io, dwb->journal_path, TR_IO_WRITE | TR_IO_CREATE, &fd, error))
    return FALSE;
  ok = tr_io_truncate (dwb->io, fd, 0, error) && tr_io_pwrite (dwb->io, fd, buf, len, 0, error)
       && tr_io_fsync (dwb->io, fd, error);
  if (ok)
    ok = tr_io_close (dwb->io, fd, error);
  else
    tr_io_close_quietly (dwb->io, fd);
  /* The journal is a new directory entry: without the dir fsync a power loss
   * could lose the whole file while blocks written in place are torn. */
  return ok && tr_io_fsync_dir (dwb->io, dwb->dir, error);
}

/* APPLIED -> CLEAN.  The dir fsync makes sure a later power loss cannot
 * resurrect this journal over newer in-place data written without one. */
gboolean
tr_dwbuffer__journal_remove (TrDwBuffer *dwb, GError **error)
{
  return tr_io_unlink (dwb->io, dwb->journal_path, error)
         && tr_io_fsync_dir (dwb->io, dwb->dir, error);
}

typedef struct {
  guint32 n_blocks;
  guint64 seq;
  GPtrArray *blocks; /* Block *, owned */
} JournalContent;

typedef enum {
  JOURNAL_COMPLETE,
  JOURNAL_INCOMPLETE, /* torn by a crash before it was durable: discard */
  JOURNAL_FOREIGN,    /* valid header for another block size: cannot replay */
} JournalState;

/* Parses @buf, filling @out; sets @why unless the journal is complete. */
static JournalState
journal_parse (TrDwBuffer *dwb, const guint8 *buf, gsize len, JournalContent *out,
               const char **why)
{
  guint32 max_len = BLOCK_PREFIX + dwb->block_size;
  TrRecordView rec;
  gsize pos = 0;

  if (tr_record_decode (buf, len, max_len, &rec) != TR_RECORD_OK || rec.type != JOURNAL_TYPE_HEADER
      || rec.len != HEADER_PAYLOAD || memcmp (rec.payload, JOURNAL_MAGIC, JOURNAL_MAGIC_LEN) != 0
      || tr_get_le16 (rec.payload + 6) != JOURNAL_VERSION) {
    *why = "no valid header record";
    return JOURNAL_INCOMPLETE;
  }
  if (tr_get_le32 (rec.payload + 8) != dwb->block_size) {
    *why = "journal block size differs from the configured one";
    return JOURNAL_FOREIGN;
  }
  out->n_blocks = tr_get_le32 (rec.payload + 12);
  out->seq = tr_get_le64 (rec.payload + 16);
  pos = rec.total;
  for (guint32 i = 0; i < out->n_blocks; i++) {
    Block *block;
    BlockKey key;

    if (tr_record_decode (buf + pos, len - pos, max_len, &rec) != TR_RECORD_OK
        || rec.type != JOURNAL_TYPE_BLOCK || rec.len != max_len) {
      *why = "torn or missing block record";
      return JOURNAL_INCOMPLETE;
    }
    key.file_id = tr_get_le32 (rec.payload);
    key.block_id = tr_get_le64 (rec.payload + 4);
    block = tr_dwbuffer__block_new (dwb, &key);
    memcpy (block->data, rec.payload + BLOCK_PREFIX, dwb->block_size);
    g_ptr_array_add (out->blocks, block);
    pos += rec.total;
  }
  if (tr_record_decode (buf + pos, len - pos, max_len, &rec) != TR_RECORD_OK
      || rec.type != JOURNAL_TYPE_COMMIT || rec.len != COMMIT_PAYLOAD
      || tr_get_le32 (rec.payload) != out->n_blocks || tr_get_le64 (rec.payload + 4) != out->seq) {
    *why = "no valid commit record";
    return JOURNAL_INCOMPLETE;
  }
  if (pos + rec.total != len)
    g_warning ("%s: %" G_GSIZE_FORMAT " bytes after the commit record ignored", dwb->journal_path,
               len - pos - rec.total);
  return JOURNAL_COMPLETE;
}

static void
log_discarded (TrDwBuffer *dwb, const char *why, gsize len)
{
  g_autofree char *message
      = g_strdup_printf ("incomplete double-write journal discarded (%s, %" G_GSIZE_FORMAT " bytes)",
                         why, len);

  g_log_structured (G_LOG_DOMAIN, G_LOG_LEVEL_MESSAGE, "MESSAGE", "%s", message, "TR_FILE", "%s",
                    dwb->journal_path);
}

static gboolean
journal_read (TrDwBuffer *dwb, guint8 **buf_out, gsize *len_out, GError **error)
{
  guint64 size = 0;
  int fd = -1;
  gboolean ok;

  if (!tr_io_open (dwb->io, dwb->journal_path, TR_IO_READ, &fd, error))
    return FALSE;
  ok = tr_io_size (dwb->io, fd, &size, error);
  if (ok) {
    *buf_out = g_malloc (size > 0 ? size : 1);
    *len_out = size;
    ok = tr_io_pread_full (dwb->io, fd, *buf_out, size, 0, dwb->journal_path, error);
    if (!ok)
      g_clear_pointer (buf_out, g_free);
  }
  tr_io_close_quietly (dwb->io, fd);
  return ok;
}

static gboolean
replay (TrDwBuffer *dwb, JournalContent *content, GError **error)
{
  Block **blocks = (Block **) content->blocks->pdata;

  for (guint i = 0; i < content->blocks->len; i++) {
    if (!g_hash_table_contains (dwb->files, GUINT_TO_POINTER (blocks[i]->key.file_id))) {
      g_set_error (error, TR_STORAGE_ERROR, TR_STORAGE_ERROR_CORRUPT,
                   "%s: complete journal names unregistered file id %u", dwb->journal_path,
                   blocks[i]->key.file_id);
      return FALSE;
    }
  }
  g_ptr_array_sort (content->blocks, tr_dwbuffer__compare_blocks);
  if (!tr_dwbuffer__apply_blocks (dwb, blocks, content->blocks->len, error))
    return FALSE;
  g_log_structured (G_LOG_DOMAIN, G_LOG_LEVEL_MESSAGE, "MESSAGE",
                    "double-write journal batch %" G_GUINT64_FORMAT " replayed: %u blocks",
                    content->seq, content->n_blocks, "TR_FILE", "%s", dwb->journal_path);
  return TRUE;
}

/* Any recovery failure leaves the buffer FAILED: the files may be half
 * repaired, so nothing may read or write them before a new recovery. */
static gboolean
recover_failed (TrDwBuffer *dwb, GError **error)
{
  dwb->failed = TRUE;
  g_prefix_error (error, "double-write recovery: ");
  return FALSE;
}

gboolean
tr_dwbuffer_recover (TrDwBuffer *dwb, GError **error)
{
  g_autofree guint8 *buf = NULL;
  g_autoptr (GPtrArray) blocks = g_ptr_array_new_with_free_func (g_free);
  JournalContent content = { 0, 0, blocks };
  JournalState state;
  const char *why = NULL;
  gsize len = 0;

  g_return_val_if_fail (dwb != NULL && !dwb->recovered, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  dwb->recovered = TRUE;
  if (!tr_io_exists (dwb->journal_path))
    return TRUE;
  if (!journal_read (dwb, &buf, &len, error))
    return recover_failed (dwb, error);
  state = journal_parse (dwb, buf, len, &content, &why);
  if (state == JOURNAL_FOREIGN) {
    g_set_error (error, TR_STORAGE_ERROR, TR_STORAGE_ERROR_CORRUPT, "%s: %s", dwb->journal_path, why);
    return recover_failed (dwb, error);
  }
  if (state == JOURNAL_COMPLETE) {
    if (!replay (dwb, &content, error))
      return recover_failed (dwb, error);
    dwb->batch_seq = content.seq;
  } else {
    /* Incomplete: the sync died before the journal was durable, so no block
     * of this batch was written in place; the files hold the last sync. */
    log_discarded (dwb, why, len);
  }
  if (!tr_dwbuffer__journal_remove (dwb, error))
    return recover_failed (dwb, error);
  return TRUE;
}
