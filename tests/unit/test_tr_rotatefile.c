/* test_tr_rotatefile.c - behaviour of RotateFile (storage/tr_rotatefile.h). */
#include "tr_endian.h"
#include "tr_record.h"
#include "tr_rotatefile.h"
#include "tr_storage_error.h"
#include "tr_test_util.h"

#include <criterion/criterion.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#define MAX_FILE 256

static char *test_dir;
static char *base;

static void
setup (void)
{
  test_dir = tr_test_mkdtemp ();
  base = g_build_filename (test_dir, "state", NULL);
}

static void
teardown (void)
{
  tr_test_rmdir (test_dir);
  g_clear_pointer (&test_dir, g_free);
  g_clear_pointer (&base, g_free);
}

TestSuite (tr_rotatefile, .init = setup, .fini = teardown);

static char *
file_path (guint i)
{
  return g_strdup_printf ("%s.%u", base, i);
}

static TrRotateFile *
open_ok (gsize max)
{
  g_autoptr (GError) error = NULL;
  TrRotateFile *rotatefile = tr_rotatefile_open (tr_io_posix (), base, max, &error);

  cr_assert_not_null (rotatefile, "open: %s", error ? error->message : "?");
  return rotatefile;
}

static void
write_ok (TrRotateFile *rotatefile, const char *text)
{
  g_autoptr (GError) error = NULL;

  cr_assert (tr_rotatefile_write (rotatefile, text, strlen (text), &error), "write: %s",
             error ? error->message : "?");
}

static void
sync_ok (TrRotateFile *rotatefile)
{
  g_autoptr (GError) error = NULL;

  cr_assert (tr_rotatefile_sync (rotatefile, &error), "sync: %s", error ? error->message : "?");
}

/* Asserts the loaded state is @text with sequence number @seq. */
static void
assert_state (TrRotateFile *rotatefile, const char *text, guint64 seq)
{
  g_autoptr (GError) error = NULL;
  guint64 got_seq = 0;
  g_autoptr (GBytes) state = tr_rotatefile_load (rotatefile, &got_seq, &error);
  gsize len;
  const char *data;

  cr_assert_not_null (state, "load: %s", error ? error->message : "?");
  data = g_bytes_get_data (state, &len);
  cr_assert_eq (len, strlen (text), "state length %zu, want %zu", len, strlen (text));
  cr_assert (len == 0 || memcmp (data, text, len) == 0, "state differs from \"%s\"", text);
  cr_assert_eq (got_seq, seq, "seq %" G_GUINT64_FORMAT ", want %" G_GUINT64_FORMAT, got_seq, seq);
}

static void
assert_not_found (TrRotateFile *rotatefile)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GBytes) state = tr_rotatefile_load (rotatefile, NULL, &error);

  cr_assert_null (state);
  cr_assert (g_error_matches (error, TR_STORAGE_ERROR, TR_STORAGE_ERROR_NOT_FOUND), "error: %s",
             error ? error->message : "none");
}

/* Record size on disk of a state of @len bytes. */
static gsize
record_size (gsize len)
{
  return TR_ROTATEFILE_OVERHEAD + len;
}

Test (tr_rotatefile, empty_is_not_found)
{
  g_autoptr (TrRotateFile) rotatefile = open_ok (MAX_FILE);
  g_autofree char *p0 = file_path (0);
  g_autofree char *p1 = file_path (1);

  assert_not_found (rotatefile);
  cr_assert_eq (tr_rotatefile_get_seq (rotatefile), 0);
  cr_assert_eq (tr_test_file_size (p0), 0);
  cr_assert_eq (tr_test_file_size (p1), 0);
}

Test (tr_rotatefile, write_then_load)
{
  g_autoptr (TrRotateFile) rotatefile = open_ok (MAX_FILE);

  write_ok (rotatefile, "ack=1");
  assert_state (rotatefile, "ack=1", 1);
  write_ok (rotatefile, "ack=22");
  assert_state (rotatefile, "ack=22", 2);
  cr_assert_eq (tr_rotatefile_get_seq (rotatefile), 2);
}

Test (tr_rotatefile, empty_state_is_a_state)
{
  g_autoptr (TrRotateFile) rotatefile = open_ok (MAX_FILE);

  write_ok (rotatefile, "");
  assert_state (rotatefile, "", 1);
}

Test (tr_rotatefile, load_after_reopen)
{
  g_autoptr (TrRotateFile) first = open_ok (MAX_FILE);
  g_autoptr (TrRotateFile) second = NULL;

  write_ok (first, "a");
  write_ok (first, "bb");
  write_ok (first, "ccc");
  sync_ok (first);
  g_clear_pointer (&first, tr_rotatefile_free);
  second = open_ok (MAX_FILE);
  assert_state (second, "ccc", 3);
  cr_assert_eq (tr_rotatefile_get_seq (second), 3);
  /* Sequence numbers go on after reopen. */
  write_ok (second, "dddd");
  assert_state (second, "dddd", 4);
}

Test (tr_rotatefile, rotates_many_times_within_bounds)
{
  g_autoptr (TrRotateFile) rotatefile = open_ok (MAX_FILE);
  g_autofree char *p0 = file_path (0);
  g_autofree char *p1 = file_path (1);

  for (guint i = 1; i <= 500; i++) {
    g_autofree char *text = g_strdup_printf ("endpoint=e%u ack=%u", i % 7, i * 31);
    write_ok (rotatefile, text);
    if (i % 10 == 0)
      sync_ok (rotatefile);
    assert_state (rotatefile, text, i);
    cr_assert_leq (tr_test_file_size (p0), MAX_FILE);
    cr_assert_leq (tr_test_file_size (p1), MAX_FILE);
    if (i % 97 == 0) {
      /* Reopen now and then: the newest state survives every rotation. */
      sync_ok (rotatefile);
      g_clear_pointer (&rotatefile, tr_rotatefile_free);
      rotatefile = open_ok (MAX_FILE);
      assert_state (rotatefile, text, i);
    }
  }
  cr_assert_gt (tr_test_file_size (p0), 0);
  cr_assert_gt (tr_test_file_size (p1), 0);
}

Test (tr_rotatefile, max_size_record_fills_a_file)
{
  g_autoptr (TrRotateFile) rotatefile = open_ok (MAX_FILE);
  gsize max = tr_rotatefile_get_max_data_size (rotatefile);
  g_autofree char *big = g_malloc (max + 1);
  g_autofree char *p0 = file_path (0);
  g_autofree char *p1 = file_path (1);

  cr_assert_eq (max, MAX_FILE - TR_ROTATEFILE_OVERHEAD);
  for (guint round = 0; round < 4; round++) {
    memset (big, 'a' + round, max);
    big[max] = '\0';
    write_ok (rotatefile, big);
    assert_state (rotatefile, big, round + 1);
  }
  /* Each record fills a whole file, so every write rotated. */
  cr_assert_eq (tr_test_file_size (p0), MAX_FILE);
  cr_assert_eq (tr_test_file_size (p1), MAX_FILE);
  g_clear_pointer (&rotatefile, tr_rotatefile_free);
  rotatefile = open_ok (MAX_FILE);
  assert_state (rotatefile, big, 4);
}

Test (tr_rotatefile, too_big_is_a_programming_error, .signal = SIGTRAP)
{
  g_autoptr (TrRotateFile) rotatefile = open_ok (MAX_FILE);
  gsize max = tr_rotatefile_get_max_data_size (rotatefile);
  g_autofree char *big = g_malloc0 (max + 1);

  g_log_set_always_fatal (G_LOG_LEVEL_CRITICAL);
  tr_rotatefile_write (rotatefile, big, max + 1, NULL);
}

Test (tr_rotatefile, torn_tail_falls_back_to_previous_record)
{
  g_autoptr (TrRotateFile) rotatefile = open_ok (MAX_FILE);
  g_autofree char *p0 = file_path (0);
  gint64 size;

  write_ok (rotatefile, "one");
  write_ok (rotatefile, "two");
  sync_ok (rotatefile);
  g_clear_pointer (&rotatefile, tr_rotatefile_free);
  size = tr_test_file_size (p0);
  cr_assert_eq (size, (gint64) (record_size (3) * 2));
  /* Cut the last record in half: a torn append. */
  cr_assert_eq (truncate (p0, size - 5), 0);
  rotatefile = open_ok (MAX_FILE);
  assert_state (rotatefile, "one", 1);
  /* Open cut the torn tail off, and the next write reuses the space. */
  cr_assert_eq (tr_test_file_size (p0), (gint64) record_size (3));
  write_ok (rotatefile, "three");
  assert_state (rotatefile, "three", 2);
}

Test (tr_rotatefile, flipped_checksum_byte_is_skipped)
{
  g_autoptr (TrRotateFile) rotatefile = open_ok (MAX_FILE);
  g_autofree char *p0 = file_path (0);
  g_autoptr (GBytes) before = NULL;
  guint8 byte;

  write_ok (rotatefile, "one");
  write_ok (rotatefile, "two");
  sync_ok (rotatefile);
  g_clear_pointer (&rotatefile, tr_rotatefile_free);
  before = tr_test_read_file (p0);
  byte = ((const guint8 *) g_bytes_get_data (before, NULL))[record_size (3) + 8] ^ 0x01;
  tr_test_patch_file (p0, record_size (3) + 8, &byte, 1);
  rotatefile = open_ok (MAX_FILE);
  assert_state (rotatefile, "one", 1);
}

Test (tr_rotatefile, flipped_payload_byte_is_skipped)
{
  g_autoptr (TrRotateFile) rotatefile = open_ok (MAX_FILE);
  g_autofree char *p0 = file_path (0);

  write_ok (rotatefile, "one");
  write_ok (rotatefile, "two");
  sync_ok (rotatefile);
  g_clear_pointer (&rotatefile, tr_rotatefile_free);
  tr_test_patch_file (p0, record_size (3) + TR_ROTATEFILE_OVERHEAD, "X", 1);
  rotatefile = open_ok (MAX_FILE);
  assert_state (rotatefile, "one", 1);
}

Test (tr_rotatefile, corrupt_current_file_falls_back_to_other_file)
{
  g_autoptr (TrRotateFile) rotatefile = open_ok (64);
  g_autofree char *p0 = file_path (0);
  g_autofree char *p1 = file_path (1);
  guint8 zeros[64] = { 0 };

  /* 64-byte files hold two 30-byte records: seq 1,2 in .0, then 3 in .1. */
  write_ok (rotatefile, "0123456789");
  write_ok (rotatefile, "abcdefghij");
  write_ok (rotatefile, "ABCDEFGHIJ");
  sync_ok (rotatefile);
  g_clear_pointer (&rotatefile, tr_rotatefile_free);
  cr_assert_eq (tr_test_file_size (p0), 60);
  cr_assert_eq (tr_test_file_size (p1), 30);
  tr_test_patch_file (p1, 0, zeros, 30);
  rotatefile = open_ok (64);
  assert_state (rotatefile, "abcdefghij", 2);
  /* The next write goes on from seq 2 and must win over the zeroed file. */
  write_ok (rotatefile, "next");
  assert_state (rotatefile, "next", 3);
  g_clear_pointer (&rotatefile, tr_rotatefile_free);
  rotatefile = open_ok (64);
  assert_state (rotatefile, "next", 3);
}

Test (tr_rotatefile, zero_filled_files_are_not_found)
{
  g_autoptr (TrRotateFile) rotatefile = NULL;
  g_autofree char *p0 = file_path (0);
  g_autofree char *p1 = file_path (1);
  guint8 zeros[MAX_FILE] = { 0 };

  /* Preallocated but never written: zero fill is never a record. */
  tr_test_write_file (p0, zeros, sizeof zeros);
  tr_test_write_file (p1, zeros, sizeof zeros);
  rotatefile = open_ok (MAX_FILE);
  assert_not_found (rotatefile);
  write_ok (rotatefile, "fresh");
  assert_state (rotatefile, "fresh", 1);
}

Test (tr_rotatefile, both_files_corrupt_is_not_found)
{
  g_autoptr (TrRotateFile) rotatefile = open_ok (64);
  g_autofree char *p0 = file_path (0);
  g_autofree char *p1 = file_path (1);

  write_ok (rotatefile, "0123456789");
  write_ok (rotatefile, "abcdefghij");
  write_ok (rotatefile, "ABCDEFGHIJ");
  sync_ok (rotatefile);
  g_clear_pointer (&rotatefile, tr_rotatefile_free);
  /* Damage the first record of each file: nothing valid is left. */
  tr_test_patch_file (p0, 13, "\xff", 1);
  tr_test_patch_file (p1, 9, "\xff", 1);
  rotatefile = open_ok (64);
  assert_not_found (rotatefile);
}

Test (tr_rotatefile, garbage_files_are_not_found)
{
  g_autoptr (TrRotateFile) rotatefile = NULL;
  g_autofree char *p0 = file_path (0);
  g_autofree char *p1 = file_path (1);
  guint8 junk[200];
  GRand *rand = g_rand_new_with_seed (tr_test_seed ());

  for (guint i = 0; i < sizeof junk; i++)
    junk[i] = (guint8) g_rand_int (rand);
  g_rand_free (rand);
  tr_test_write_file (p0, junk, sizeof junk);
  tr_test_write_file (p1, junk + 7, sizeof junk - 7);
  rotatefile = open_ok (MAX_FILE);
  assert_not_found (rotatefile);
}

Test (tr_rotatefile, other_record_type_ends_the_scan)
{
  g_autoptr (TrRotateFile) rotatefile = NULL;
  g_autofree char *p0 = file_path (0);
  guint8 payload[12] = { 0 };
  g_autoptr (GBytes) foreign = NULL;

  /* A valid frame of another type with a plausible seq is not a state. */
  tr_put_le64 (payload, 99);
  memcpy (payload + 8, "evil", 4);
  foreign = tr_record_encode (0x01, payload, sizeof payload);
  tr_test_write_file (p0, g_bytes_get_data (foreign, NULL), g_bytes_get_size (foreign));
  rotatefile = open_ok (MAX_FILE);
  assert_not_found (rotatefile);
}

/* Found by fuzz_recovery (tests/fuzz/corpus/recovery/regress_rotatefile_seq0):
 * a valid frame whose sequence number is 0 (writers start at 1) was loaded
 * as the state; one with 2^64-1 would wrap the next write to 0.  Numbers
 * outside 1..TR_ROTATEFILE_MAX_SEQ end the scan like any damaged record,
 * and writes continue after the valid prefix with increasing numbers. */
Test (tr_rotatefile, impossible_sequence_numbers_end_the_scan)
{
  static const guint64 bad[] = { 0, TR_ROTATEFILE_MAX_SEQ + 1, G_MAXUINT64 };

  for (guint k = 0; k < G_N_ELEMENTS (bad); k++) {
    g_autoptr (TrRotateFile) rotatefile = NULL;
    g_autofree char *p0 = file_path (0);
    g_autofree char *p1 = file_path (1);
    guint8 payload[8 + 4];
    g_autoptr (GBytes) rec = NULL;

    tr_put_le64 (payload, bad[k]);
    memcpy (payload + 8, "evil", 4);
    rec = tr_record_encode (TR_ROTATEFILE_RECORD_TYPE, payload, sizeof payload);
    tr_test_write_file (p0, g_bytes_get_data (rec, NULL), g_bytes_get_size (rec));
    tr_test_write_file (p1, "", 0);
    rotatefile = open_ok (MAX_FILE);
    assert_not_found (rotatefile);
    cr_assert_eq (tr_rotatefile_get_seq (rotatefile), 0);
    write_ok (rotatefile, "good");
    assert_state (rotatefile, "good", 1);
  }
}

/* Found by fuzz_recovery (regress_rotatefile_seq_limit): after a record
 * with the highest valid number the next write must not produce a record
 * load ignores (the state would silently go back): it fails with CORRUPT
 * and the last state still loads. */
Test (tr_rotatefile, write_at_sequence_limit_fails)
{
  g_autoptr (TrRotateFile) rotatefile = NULL;
  g_autoptr (GError) error = NULL;
  g_autofree char *p0 = file_path (0);
  guint8 payload[8 + 4];
  g_autoptr (GBytes) rec = NULL;

  tr_put_le64 (payload, TR_ROTATEFILE_MAX_SEQ);
  memcpy (payload + 8, "last", 4);
  rec = tr_record_encode (TR_ROTATEFILE_RECORD_TYPE, payload, sizeof payload);
  tr_test_write_file (p0, g_bytes_get_data (rec, NULL), g_bytes_get_size (rec));
  rotatefile = open_ok (MAX_FILE);
  assert_state (rotatefile, "last", TR_ROTATEFILE_MAX_SEQ);
  cr_assert_not (tr_rotatefile_write (rotatefile, "next", 4, &error));
  cr_assert (g_error_matches (error, TR_STORAGE_ERROR, TR_STORAGE_ERROR_CORRUPT));
  assert_state (rotatefile, "last", TR_ROTATEFILE_MAX_SEQ);
}

Test (tr_rotatefile, newest_sequence_wins_not_the_file_order)
{
  g_autoptr (TrRotateFile) rotatefile = open_ok (64);
  g_autofree char *p0 = file_path (0);

  /* seq 1,2 in .0; 3,4 in .1; 5 in .0 again (truncated first). */
  for (guint i = 1; i <= 5; i++) {
    g_autofree char *text = g_strdup_printf ("state-%04u", i);
    write_ok (rotatefile, text);
  }
  sync_ok (rotatefile);
  cr_assert_eq (tr_test_file_size (p0), 30);
  g_clear_pointer (&rotatefile, tr_rotatefile_free);
  rotatefile = open_ok (64);
  assert_state (rotatefile, "state-0005", 5);
}

Test (tr_rotatefile, larger_file_from_bigger_limit_is_read_then_rotated)
{
  g_autoptr (TrRotateFile) rotatefile = open_ok (1024);
  g_autofree char *p0 = file_path (0);

  for (guint i = 1; i <= 20; i++)
    write_ok (rotatefile, "0123456789");
  sync_ok (rotatefile);
  g_clear_pointer (&rotatefile, tr_rotatefile_free);
  rotatefile = open_ok (64);
  assert_state (rotatefile, "0123456789", 20);
  write_ok (rotatefile, "small");
  assert_state (rotatefile, "small", 21);
  cr_assert_eq (tr_test_file_size (p0), 600);
}

Test (tr_rotatefile, free_null_is_ignored)
{
  tr_rotatefile_free (NULL);
}

Test (tr_rotatefile, record_hidden_behind_a_torn_one_never_comes_back)
{
  g_autoptr (TrRotateFile) rotatefile = open_ok (MAX_FILE);
  g_autofree char *p0 = file_path (0);

  write_ok (rotatefile, "aaa");
  write_ok (rotatefile, "bbb");
  write_ok (rotatefile, "ccc");
  sync_ok (rotatefile);
  g_clear_pointer (&rotatefile, tr_rotatefile_free);
  /* Tear the middle record: "ccc" (seq 3) is now hidden behind it. */
  tr_test_patch_file (p0, record_size (3) + TR_ROTATEFILE_OVERHEAD, "X", 1);
  rotatefile = open_ok (MAX_FILE);
  assert_state (rotatefile, "aaa", 1);
  /* A same-sized write lands where the torn record was; the stale seq 3
   * behind it must not win over it. */
  write_ok (rotatefile, "ddd");
  assert_state (rotatefile, "ddd", 2);
  g_clear_pointer (&rotatefile, tr_rotatefile_free);
  rotatefile = open_ok (MAX_FILE);
  assert_state (rotatefile, "ddd", 2);
}
