/* fuzz_gen_corpus.c - writes the seed corpus of the fuzz harnesses (except
 * fuzz_config's, which are copies of conf/).  Not run by the build: run it
 * by hand when a format changes, then commit the files it writes:
 *
 *   build-fuzz/tests/fuzz/fuzz_gen_corpus tests/fuzz/corpus
 */
#include <stdio.h>
#include <string.h>

#include "fuzz_recovery.h"
#include "fuzz_util.h"
#include "tr_dwfile.h"
#include "tr_endian.h"
#include "tr_frame.h"
#include "tr_record.h"
#include "tr_rotatefile.h"
#include "tr_rpcstore.h"

static const char *out_dir;

static void
emit (const char *target, const char *name, const void *data, gsize len)
{
  g_autofree char *dir = g_build_filename (out_dir, target, NULL);
  g_autofree char *path = g_build_filename (dir, name, NULL);

  g_mkdir_with_parents (dir, 0755);
  fuzz_write_file (path, data, len);
  printf ("%s (%zu bytes)\n", path, (size_t) len);
}

/* A recovery input: mode byte, then the files of @names under @dir. */
static void
emit_recovery (const char *name, guint8 mode, const char *dir, const char *const *names)
{
  g_autoptr (GByteArray) out = g_byte_array_new ();

  g_byte_array_append (out, &mode, 1);
  for (guint i = 0; names[i]; i++) {
    g_autofree char *path = g_build_filename (dir, names[i], NULL);
    g_autofree char *content = NULL;
    gsize len = 0;

    if (i > 0)
      g_byte_array_append (out, (const guint8 *) FUZZ_REC_SEP, FUZZ_REC_SEP_LEN);
    if (g_file_get_contents (path, &content, &len, NULL)) {
      /* Keep seeds small: store files are cut at 2 KiB. */
      g_byte_array_append (out, (const guint8 *) content, (guint) MIN (len, 2048));
    }
  }
  emit ("recovery", name, out->data, out->len);
}

static void
gen_frame (void)
{
  static const guint8 call[] = { 0x00, 0x00, 0x00, 0x20, 0x80, 0x01, 0x00, 0x01, 0x00, 0x00, 0x00, 0x09,
                                 'l',  'o',  'g',  '_',  'e',  'v',  'e',  'n',  't',  0x00, 0x00, 0x00,
                                 0x00, 0x0b, 0x00, 0x01, 0x00, 0x00, 0x00, 0x03, 'a',  'b',  'c',  0x00 };
  static const guint8 reply[] = { 0x00, 0x00, 0x00, 0x16, 0x80, 0x01, 0x00, 0x02, 0x00, 0x00, 0x00, 0x09, 'l',
                                  'o',  'g',  '_',  'e',  'v',  'e',  'n',  't',  0x00, 0x00, 0x00, 0x00, 0x00 };
  /* log_event(b"abc") with the old (non-strict) header. */
  static const guint8 old[] = { 0x00, 0x00, 0x00, 0x1d, 0x00, 0x00, 0x00, 0x09, 'l',  'o',  'g',  '_',
                                'e',  'v',  'e',  'n',  't',  0x01, 0x00, 0x00, 0x00, 0x07, 0x0b, 0x00,
                                0x01, 0x00, 0x00, 0x00, 0x03, 'a',  'b',  'c',  0x00 };
  /* A body with every container kind: struct{1: list<i32>[1,2], 2: map<string,i64>{"k":1},
   * 3: set<byte>{7}, 4: struct{1: double, 2: bool, 3: i16}}. */
  static const guint8 body[] = {
    0x0f, 0x00, 0x01, 0x08, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x02,
    0x0d, 0x00, 0x02, 0x0b, 0x0a, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 'k',  0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x0e, 0x00, 0x03, 0x03, 0x00, 0x00, 0x00, 0x01, 0x07, 0x0c,
    0x00, 0x04, 0x04, 0x00, 0x01, 0x3f, 0xf0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x00, 0x02,
    0x01, 0x06, 0x00, 0x03, 0x00, 0x05, 0x00, 0x00,
  };
  g_autoptr (GByteArray) a = g_byte_array_new ();

  emit ("frame", "log_event_call", call, sizeof call);
  emit ("frame", "log_event_void_reply", reply, sizeof reply);
  emit ("frame", "log_event_old_header", old, sizeof old);
  tr_frame_build_exception (a, "other", 5, 7, TR_APP_EXC_UNKNOWN_METHOD, "Unknown function other");
  emit ("frame", "exception_reply", a->data, a->len);
  g_byte_array_set_size (a, 0);
  tr_frame_build_call (a, TR_MSG_CALL, "deep.call", 9, 3, body, sizeof body);
  tr_frame_build_call (a, TR_MSG_ONEWAY, "fire", 4, 4, NULL, 0);
  emit ("frame", "two_frames_containers", a->data, a->len);
}

static void
gen_record (void)
{
  g_autoptr (GBytes) r1 = tr_record_encode (0x44, "hello", 5);
  g_autoptr (GBytes) r2 = tr_record_encode (0x52, NULL, 0);
  g_autoptr (GByteArray) both = g_byte_array_new ();

  emit ("record", "record_hello", g_bytes_get_data (r1, NULL), g_bytes_get_size (r1));
  emit ("record", "record_empty", g_bytes_get_data (r2, NULL), g_bytes_get_size (r2));
  g_byte_array_append (both, g_bytes_get_data (r1, NULL), (guint) g_bytes_get_size (r1));
  g_byte_array_append (both, g_bytes_get_data (r2, NULL), (guint) g_bytes_get_size (r2));
  g_byte_array_append (both, (const guint8 *) "\0\0\0\0\0\0", 6); /* torn zero-filled tail */
  emit ("record", "two_records_torn_tail", both->data, both->len);
}

static void
wait_commit (gpointer user_data, guint64 rpc_id, const GError *error)
{
  (void) rpc_id;
  (void) error;
  g_atomic_int_inc ((gint *) user_data);
}

static void
gen_recovery (void)
{
  static const char *const services[] = { "s", NULL };
  TrRpcStoreOptions options = {
    .group_file_size = 64 * 1024,
    .rpc_cache_size = 64 * 1024,
    .sync_mode = TR_SYNC_NONE,
    .max_message_size = 16 * 1024,
  };
  g_autofree char *dir = g_dir_make_tmp ("tr-fuzz-gen-XXXXXX", NULL);
  g_autofree char *rf_path = g_build_filename (dir, "rf", NULL);
  g_autofree char *dw_path = g_build_filename (dir, "dw", NULL);
  g_autofree char *side_path = g_build_filename (dir, "dw.dw", NULL);
  GError *error = NULL;
  TrRpcStore *store;
  TrRotateFile *rf;
  gint done = 0;
  guint32 sid;

  /* An open store with three commits after the first checkpoint: recovery
   * must re-derive them (a crash image). */
  store = tr_rpcstore_open (tr_io_posix (), dir, &options, services, &error);
  g_assert_no_error (error);
  sid = (guint32) tr_rpcstore_service_id (store, "s");
  for (guint i = 0; i < 3; i++) {
    g_autoptr (GByteArray) msg = g_byte_array_new ();
    g_autoptr (GBytes) bytes = NULL;

    tr_frame_build_call (msg, TR_MSG_CALL, "log_event", 9, 0, NULL, 0);
    bytes = g_bytes_new (msg->data + 4, msg->len - 4);
    tr_rpcstore_submit (store, bytes, &sid, 1, wait_commit, &done);
  }
  while (g_atomic_int_get (&done) < 3)
    g_usleep (1000);
  emit_recovery ("store_crash_image", FUZZ_REC_MODE_STORE | FUZZ_REC_FIXUP, dir, fuzz_rec_store_files);
  tr_rpcstore_close (store);
  emit_recovery ("store_clean", FUZZ_REC_MODE_STORE | FUZZ_REC_FIXUP, dir, fuzz_rec_store_files);
  emit_recovery ("store_clean_nofixup", FUZZ_REC_MODE_STORE, dir, fuzz_rec_store_files);

  rf = tr_rotatefile_open (tr_io_posix (), rf_path, 4096, &error);
  g_assert_no_error (error);
  tr_rotatefile_write (rf, "state-1", 7, &error);
  tr_rotatefile_write (rf, "state-2", 7, &error);
  g_assert_no_error (error);
  tr_rotatefile_free (rf);
  emit_recovery ("rotatefile_two_states", FUZZ_REC_MODE_ROTATEFILE | FUZZ_REC_FIXUP, dir,
                 fuzz_rec_rotatefile_files);

  /* DoubleWriteFile: an old file and a valid side copy holding "new". */
  tr_dwfile_replace (tr_io_posix (), dw_path, "old content\n", 12, &error);
  g_assert_no_error (error);
  {
    guint8 payload[8 + 3];
    g_autoptr (GBytes) rec = NULL;

    tr_put_le64 (payload, 3);
    memcpy (payload + 8, "new", 3);
    rec = tr_record_encode (TR_DWFILE_RECORD_TYPE, payload, sizeof payload);
    fuzz_write_file (side_path, g_bytes_get_data (rec, NULL), g_bytes_get_size (rec));
  }
  emit_recovery ("dwfile_side_copy", FUZZ_REC_MODE_DWFILE | FUZZ_REC_FIXUP, dir, fuzz_rec_dwfile_files);

  fuzz_clear_dir (dir);
  g_rmdir (dir);
}

int
main (int argc, char **argv)
{
  if (argc != 2) {
    g_printerr ("usage: %s CORPUS_DIR\n", argv[0]);
    return 2;
  }
  out_dir = argv[1];
  gen_frame ();
  gen_record ();
  gen_recovery ();
  return 0;
}
