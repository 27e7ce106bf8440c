/* fuzz_recovery.c - libFuzzer harness for store recovery on arbitrary file
 * contents: tr_rpcstore_open (storage/tr_rpcstore.h), RotateFile load
 * (storage/tr_rotatefile.h) and tr_dwfile_read (storage/tr_dwfile.h).
 * Input format: fuzz_recovery.h.
 *
 * Store: the files are written into a fresh directory and the store opened
 * with small options.  On success every rpc id 1..head (capped) is read with
 * tr_rpcstore_get and every seqid of service "s" looked up; one new RPC is
 * committed and must read back byte-exact; the store closes.  On failure the
 * error must be set.
 * RotateFile: open + load, then a write must load back exactly (also after a
 * rotation and after reopening).
 * DoubleWriteFile: tr_dwfile_read must return the side copy's content when
 * the side copy is valid and the original file otherwise, and remove the
 * side copy.
 * The directory is emptied after each input. */
#include <string.h>

#include "fuzz_recovery.h"
#include "fuzz_util.h"
#include "tr_dwfile.h"
#include "tr_endian.h"
#include "tr_record.h"
#include "tr_rpcrecord.h"
#include "tr_rotatefile.h"
#include "tr_rpcstore.h"
#include "tr_storage_error.h"

int LLVMFuzzerInitialize (int *argc, char ***argv);
int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

#define READ_CAP 2048 /* at most this many ids / seqids read per input */

typedef struct {
  guint8 *data; /* (nullable) a private copy, fixed up in place */
  gsize len;
} Chunk;

static char *store_dir;

int
LLVMFuzzerInitialize (int *argc, char ***argv)
{
  (void) argc;
  (void) argv;
  fuzz_init_logging ();
  store_dir = g_build_filename (fuzz_tmpdir (), "store", NULL);
  return 0;
}

/* Splits @data into at most @n chunks at FUZZ_REC_SEP. */
static void
split (const guint8 *data, gsize size, Chunk *chunks, guint n)
{
  gsize start = 0;
  guint i = 0;

  memset (chunks, 0, n * sizeof *chunks);
  while (i < n && start <= size) {
    const guint8 *sep = size - start >= FUZZ_REC_SEP_LEN
                          ? memmem (data + start, size - start, FUZZ_REC_SEP, FUZZ_REC_SEP_LEN)
                          : NULL;
    gsize end = sep ? (gsize) (sep - data) : size;

    chunks[i].len = end - start;
    chunks[i].data = g_memdup2 (data + start, end - start);
    i++;
    if (sep == NULL)
      break;
    start = end + FUZZ_REC_SEP_LEN;
  }
}

/* Recomputes the checksum of each record in a record-framed file, front to
 * back, as long as the record's length fits. */
static void
fixup_records (Chunk *c)
{
  gsize off = 0;

  while (c->data && c->len - off >= TR_RECORD_HEADER_SIZE) {
    guint8 *h = c->data + off;
    guint32 len = tr_get_le32 (h);

    if (len > c->len - off - TR_RECORD_HEADER_SIZE)
      break;
    tr_record_encode_header (h, h[4] ? h[4] : 1, h + TR_RECORD_HEADER_SIZE, len);
    off += TR_RECORD_SIZE (len);
  }
}

/* List entries: re-encoded with the store's codec over the mutated rpc id
 * and record checksum, so that their own checksum matches. */
static void
fixup_list (Chunk *c)
{
  for (gsize off = 0; c->data && off + TR_RPCRECORD_ENTRY_SIZE <= c->len; off += TR_RPCRECORD_ENTRY_SIZE)
    tr_rpcrecord_list_encode (c->data + off, tr_get_le64 (c->data + off), tr_get_le32 (c->data + off + 8));
}

/* Index entries: data offset u64, record length u32, the record's checksum. */
static void
fixup_index (Chunk *c, const Chunk *data0)
{
  for (gsize off = 0; c->data && off + 16 <= c->len; off += 16) {
    guint64 at = tr_get_le64 (c->data + off);
    if (data0->data && at < data0->len && data0->len - at >= TR_RECORD_HEADER_SIZE)
      memcpy (c->data + off + 12, data0->data + at + 8, 4);
  }
}

static void
write_files (const char *const *names, Chunk *chunks)
{
  if (g_mkdir (store_dir, 0700) != 0)
    abort ();
  for (guint i = 0; names[i]; i++) {
    g_autofree char *path = NULL;
    if (chunks[i].data == NULL || chunks[i].len == 0)
      continue;
    path = g_build_filename (store_dir, names[i], NULL);
    fuzz_write_file (path, chunks[i].data, chunks[i].len);
  }
}

typedef struct {
  GMutex lock;
  GCond cond;
  gboolean done;
  guint64 rpc_id;
  gboolean ok;
} Commit;

static void
commit_done (gpointer user_data, guint64 rpc_id, const GError *error)
{
  Commit *c = user_data;

  g_mutex_lock (&c->lock);
  c->done = TRUE;
  c->rpc_id = rpc_id;
  c->ok = error == NULL;
  g_cond_signal (&c->cond);
  g_mutex_unlock (&c->lock);
}

/* FIXED (regression input corpus/recovery/known_checkpoint_huge_list_head):
 * recovery used to trust the rpc id and the service heads of the
 * checkpoint, so a checkpoint claiming e.g. seqid 2^40 made the next index /
 * list write create every GroupFile part up to that offset.  Recovery now
 * refuses such a checkpoint as CORRUPT, and this skip is off by default;
 * it is kept as a switch for bisecting.  The check reads the checkpoint exactly as recovery does
 * (a RotateFile "checkpoint", 64 KiB parts).  Set FUZZ_SKIP_CHECKPOINT_HEADS
 * to 0 to reproduce. */
#ifndef FUZZ_SKIP_CHECKPOINT_HEADS
#define FUZZ_SKIP_CHECKPOINT_HEADS 0 /* fixed: recovery validates the checkpoint */
#endif
#define FUZZ_MAX_HEAD (1u << 16)

static gboolean
checkpoint_heads_implausible (void)
{
  g_autofree char *path = g_build_filename (store_dir, "checkpoint", NULL);
  g_autoptr (TrRotateFile) rf = NULL;
  g_autoptr (GBytes) state = NULL;
  const guint8 *p;
  gsize len = 0;

  if (!FUZZ_SKIP_CHECKPOINT_HEADS)
    return FALSE;
  rf = tr_rotatefile_open (tr_io_posix (), path, 64 * 1024, NULL);
  if (rf == NULL || (state = tr_rotatefile_load (rf, NULL, NULL)) == NULL)
    return FALSE;
  p = g_bytes_get_data (state, &len);
  if (len < 24)
    return FALSE;
  if (tr_get_le64 (p + 4) > FUZZ_MAX_HEAD)
    return TRUE;
  for (gsize off = 24; off + 12 <= len; off += 12)
    if (tr_get_le64 (p + off + 4) > FUZZ_MAX_HEAD)
      return TRUE;
  return FALSE;
}

static void
fuzz_store (void)
{
  static const char *const services[] = { "s", NULL };
  TrRpcStoreOptions options = {
    .group_file_size = 64 * 1024,
    .rpc_cache_size = 64 * 1024,
    .sync_mode = TR_SYNC_NONE,
    .max_message_size = 16 * 1024,
  };
  g_autoptr (GError) error = NULL;
  TrRpcStore *store;
  guint64 head;
  gint sid;

  if (checkpoint_heads_implausible ())
    return;
  store = tr_rpcstore_open (tr_io_posix (), store_dir, &options, services, &error);
  if (store == NULL) {
    FUZZ_CHECK (error != NULL && error->message != NULL);
    return;
  }
  FUZZ_CHECK (error == NULL);
  head = tr_rpcstore_head (store);
  for (guint64 id = head > READ_CAP ? head - READ_CAP + 1 : 1; id <= head; id++) {
    g_autoptr (GError) e = NULL;
    g_autoptr (GBytes) msg = tr_rpcstore_get (store, id, NULL, &e);
    FUZZ_CHECK (msg != NULL || e != NULL);
  }
  {
    g_autoptr (GError) e = NULL;
    g_autoptr (GBytes) msg = tr_rpcstore_get (store, head + 1, NULL, &e);
    FUZZ_CHECK (msg == NULL && e != NULL);
  }

  sid = tr_rpcstore_service_id (store, "s");
  FUZZ_CHECK (sid >= 0);
  {
    guint64 shead = tr_rpcstore_service_head (store, (guint32) sid);
    guint64 first = tr_rpcstore_service_first (store, (guint32) sid);
    guint64 from = MAX (first, shead > READ_CAP ? shead - READ_CAP + 1 : 1);
    guint64 rpc_id = 0;
    g_autoptr (GError) e = NULL;

    for (guint64 seq = from; seq <= shead; seq++) {
      g_autoptr (GError) le = NULL;
      if (!tr_rpcstore_service_lookup (store, (guint32) sid, seq, &rpc_id, &le))
        FUZZ_CHECK (le != NULL);
    }
    FUZZ_CHECK (!tr_rpcstore_service_lookup (store, (guint32) sid, shead + 1, &rpc_id, &e) && e != NULL);
  }

  /* The recovered store must accept and return a new RPC. */
  {
    static const guint8 msg[] = "\x80\x01\x00\x01\x00\x00\x00\x04ping\x00\x00\x00\x00\x00";
    g_autoptr (GBytes) bytes = g_bytes_new_static (msg, sizeof msg - 1);
    guint32 ids[1] = { (guint32) sid };
    Commit c = { 0 };
    TrRpcStoreStats stats;

    g_mutex_init (&c.lock);
    g_cond_init (&c.cond);
    tr_rpcstore_submit (store, bytes, ids, 1, commit_done, &c);
    g_mutex_lock (&c.lock);
    while (!c.done)
      g_cond_wait (&c.cond, &c.lock);
    g_mutex_unlock (&c.lock);
    if (c.ok) {
      g_autoptr (GError) e = NULL;
      g_autoptr (GBytes) back = tr_rpcstore_get (store, c.rpc_id, NULL, &e);

      FUZZ_CHECK (c.rpc_id == head + 1);
      FUZZ_CHECK (back != NULL && g_bytes_equal (back, bytes));
    }
    g_mutex_clear (&c.lock);
    g_cond_clear (&c.cond);
    tr_rpcstore_get_stats (store, &stats);
  }
  tr_rpcstore_close (store);
}

#define RF_SIZE 4096

static void
fuzz_rotatefile (void)
{
  g_autofree char *path = g_build_filename (store_dir, "rf", NULL);
  g_autoptr (GError) error = NULL;
  TrRotateFile *rf = tr_rotatefile_open (tr_io_posix (), path, RF_SIZE, &error);
  g_autoptr (GBytes) state = NULL;
  g_autofree guint8 *big = NULL;
  guint64 seq = 0, seq2 = 0;
  gsize max;

  if (rf == NULL) {
    FUZZ_CHECK (error != NULL);
    return;
  }
  state = tr_rotatefile_load (rf, &seq, &error);
  if (state == NULL)
    FUZZ_CHECK (error != NULL);
  else
    FUZZ_CHECK (seq >= 1 && seq == tr_rotatefile_get_seq (rf));
  g_clear_error (&error);
  g_clear_pointer (&state, g_bytes_unref);

  /* A write must come back, with a higher sequence number. */
  max = tr_rotatefile_get_max_data_size (rf);
  big = g_malloc0 (max);
  memset (big, 0xab, max);
  for (guint round = 0; round < 3; round++) {
    gsize n = round == 1 ? max : 3; /* round 1 forces a rotation */

    if (!tr_rotatefile_write (rf, big, n, &error)) {
      FUZZ_CHECK (error != NULL);
      break;
    }
    state = tr_rotatefile_load (rf, &seq2, &error);
    FUZZ_CHECK (state != NULL && g_bytes_get_size (state) == n);
    FUZZ_CHECK (memcmp (g_bytes_get_data (state, NULL), big, n) == 0);
    FUZZ_CHECK (seq2 > seq);
    seq = seq2;
    g_clear_pointer (&state, g_bytes_unref);
  }
  tr_rotatefile_free (rf);
  if (error != NULL)
    return;

  /* Reopen (nothing crashed: every write is in the page cache). */
  rf = tr_rotatefile_open (tr_io_posix (), path, RF_SIZE, &error);
  FUZZ_CHECK (rf != NULL);
  state = tr_rotatefile_load (rf, &seq2, &error);
  FUZZ_CHECK (state != NULL && g_bytes_get_size (state) == 3 && seq2 == seq);
  tr_rotatefile_free (rf);
}

static void
fuzz_dwfile (const Chunk *chunks)
{
  g_autofree char *path = g_build_filename (store_dir, "dw", NULL);
  g_autofree char *side = g_strconcat (path, TR_DWFILE_SUFFIX, NULL);
  g_autoptr (GError) error = NULL;
  g_autoptr (GBytes) content = tr_dwfile_read (tr_io_posix (), path, &error);
  const Chunk *orig = &chunks[0], *copy = &chunks[1];
  const guint8 *expect = orig->data;
  gsize expect_len = orig->len;
  gboolean exists = orig->len > 0;
  TrRecordView v;

  if (copy->len > 0 && tr_record_decode (copy->data, copy->len, G_MAXUINT32, &v) == TR_RECORD_OK
      && v.type == TR_DWFILE_RECORD_TYPE && v.len >= 8 && tr_get_le64 (v.payload) == (guint64) v.len - 8) {
    expect = v.payload + 8;
    expect_len = v.len - 8;
    exists = TRUE;
  }
  if (content == NULL) {
    FUZZ_CHECK (error != NULL);
    FUZZ_CHECK (exists == FALSE && g_error_matches (error, TR_STORAGE_ERROR, TR_STORAGE_ERROR_NOT_FOUND));
    return;
  }
  FUZZ_CHECK (exists);
  FUZZ_CHECK (g_bytes_get_size (content) == expect_len);
  FUZZ_CHECK (expect_len == 0 || memcmp (g_bytes_get_data (content, NULL), expect, expect_len) == 0);
  FUZZ_CHECK (!g_file_test (side, G_FILE_TEST_EXISTS));
  FUZZ_CHECK (tr_dwfile_replace (tr_io_posix (), path, "new", 3, &error));
  g_clear_pointer (&content, g_bytes_unref);
  content = tr_dwfile_read (tr_io_posix (), path, &error);
  FUZZ_CHECK (content != NULL && g_bytes_get_size (content) == 3);
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  Chunk chunks[G_N_ELEMENTS (fuzz_rec_store_files)];
  const char *const *names;
  guint mode, n;

  if (size < 1)
    return 0;
  mode = data[0] & 3;
  names = mode == FUZZ_REC_MODE_ROTATEFILE ? fuzz_rec_rotatefile_files
          : mode == FUZZ_REC_MODE_DWFILE   ? fuzz_rec_dwfile_files
                                           : fuzz_rec_store_files;
  n = g_strv_length ((char **) names);
  split (data + 1, size - 1, chunks, n);
  if (data[0] & FUZZ_REC_FIXUP) {
    for (guint i = 0; i < n; i++) {
      if (g_str_has_prefix (names[i], "list-"))
        fixup_list (&chunks[i]);
      else if (!g_str_has_prefix (names[i], "index.") && strcmp (names[i], "services.map") != 0
               && strcmp (names[i], "dw") != 0)
        fixup_records (&chunks[i]);
    }
    if (names == fuzz_rec_store_files)
      fixup_index (&chunks[6], &chunks[0]);
  }
  write_files (names, chunks);

  if (names == fuzz_rec_store_files)
    fuzz_store ();
  else if (names == fuzz_rec_rotatefile_files)
    fuzz_rotatefile ();
  else
    fuzz_dwfile (chunks);

  fuzz_clear_dir (store_dir);
  g_rmdir (store_dir);
  for (guint i = 0; i < n; i++)
    g_free (chunks[i].data);
  return 0;
}
