/* test_tr_groupfile.c - behaviour of storage/tr_groupfile.c on the POSIX backend. */
#include "tr_groupfile.h"
#include "tr_storage_error.h"
#include "tr_test_util.h"

#include <criterion/criterion.h>
#include <signal.h>
#include <string.h>

#define PART 100

static char *dir;

static void
setup (void)
{
  dir = tr_test_mkdtemp ();
}

static void
teardown (void)
{
  tr_test_rmdir (dir);
  g_free (dir);
}

TestSuite (tr_groupfile, .init = setup, .fini = teardown);

static TrGroupFile *
open_gf (guint64 part_size)
{
  g_autoptr (GError) error = NULL;
  TrGroupFile *file = tr_groupfile_open (tr_io_posix (), dir, "log", part_size, &error);

  cr_assert_not_null (file, "open: %s", error ? error->message : "?");
  return file;
}

static guint64
append_fill (TrGroupFile *file, gsize len, guint8 byte)
{
  g_autoptr (GError) error = NULL;
  g_autofree guint8 *buf = g_malloc (len);
  guint64 offset = G_MAXUINT64;

  memset (buf, byte, len);
  cr_assert (tr_groupfile_append (file, buf, len, &offset, &error), "append: %s",
             error ? error->message : "?");
  return offset;
}

/* Reads @len bytes at @offset and checks they are all @byte. */
static void
expect_bytes (TrGroupFile *file, guint64 offset, gsize len, guint8 byte)
{
  g_autoptr (GError) error = NULL;
  g_autofree guint8 *buf = g_malloc0 (len);
  gsize got = 0;

  cr_assert (tr_groupfile_read (file, offset, buf, len, &got, &error), "read: %s",
             error ? error->message : "?");
  cr_assert_eq (got, len, "read at %" G_GUINT64_FORMAT ": got %zu of %zu", offset, got, len);
  for (gsize i = 0; i < len; i++)
    cr_assert_eq (buf[i], byte, "byte %zu at %" G_GUINT64_FORMAT, i, offset);
}

static gsize
read_got (TrGroupFile *file, guint64 offset, gsize len)
{
  g_autoptr (GError) error = NULL;
  g_autofree guint8 *buf = g_malloc0 (len);
  gsize got = 99;

  cr_assert (tr_groupfile_read (file, offset, buf, len, &got, &error), "read: %s",
             error ? error->message : "?");
  return got;
}

static char *
path_of (guint index)
{
  return g_strdup_printf ("%s/log.%u", dir, index);
}

Test (tr_groupfile, append_then_read)
{
  g_autoptr (TrGroupFile) file = open_gf (PART);

  cr_assert_eq (tr_groupfile_size (file), 0);
  cr_assert_eq (tr_groupfile_n_parts (file), 0);
  cr_assert_eq (append_fill (file, 10, 'a'), 0);
  cr_assert_eq (append_fill (file, 20, 'b'), 10);
  cr_assert_eq (tr_groupfile_size (file), 30);
  cr_assert_eq (tr_groupfile_n_parts (file), 1);
  cr_assert_eq (tr_groupfile_disk_bytes (file), 30);
  expect_bytes (file, 0, 10, 'a');
  expect_bytes (file, 10, 20, 'b');
  cr_assert_eq (read_got (file, 25, 50), 5, "a read stops at the end");
  cr_assert_eq (read_got (file, 30, 10), 0, "at the end");
  cr_assert_eq (read_got (file, 1000, 10), 0, "past the end");
}

Test (tr_groupfile, roll_leaves_hole)
{
  g_autoptr (TrGroupFile) file = open_gf (PART);
  g_autofree char *p0 = path_of (0);
  g_autofree char *p1 = path_of (1);
  g_autofree char *pp = NULL;

  cr_assert_eq (append_fill (file, 60, 'a'), 0);
  cr_assert_eq (append_fill (file, 50, 'b'), PART, "does not fit: next part");
  cr_assert_eq (tr_groupfile_n_parts (file), 2);
  cr_assert_eq (tr_groupfile_size (file), PART + 50);
  cr_assert_eq (tr_groupfile_disk_bytes (file), 110);
  cr_assert_eq (tr_test_file_size (p0), 60);
  cr_assert_eq (tr_test_file_size (p1), 50);
  cr_assert_eq (read_got (file, 60, 10), 0, "the hole reads as end of part");
  cr_assert_eq (read_got (file, 50, 40), 10, "a read stays inside one part");
  expect_bytes (file, PART, 50, 'b');
  pp = tr_groupfile_part_path (file, PART + 3);
  cr_assert_str_eq (pp, p1);
}

Test (tr_groupfile, record_exactly_filling_part)
{
  g_autoptr (TrGroupFile) file = open_gf (PART);

  cr_assert_eq (append_fill (file, 40, 'a'), 0);
  cr_assert_eq (append_fill (file, 60, 'b'), 40, "exactly fills part 0");
  cr_assert_eq (tr_groupfile_n_parts (file), 1);
  cr_assert_eq (tr_groupfile_size (file), PART);
  cr_assert_eq (append_fill (file, 1, 'c'), PART);
  cr_assert_eq (tr_groupfile_n_parts (file), 2);
  expect_bytes (file, 40, 60, 'b');
  expect_bytes (file, PART, 1, 'c');
}

Test (tr_groupfile, len_equal_to_part_size)
{
  g_autoptr (TrGroupFile) file = open_gf (PART);

  cr_assert_eq (append_fill (file, PART, 'a'), 0);
  cr_assert_eq (append_fill (file, PART, 'b'), PART);
  cr_assert_eq (append_fill (file, 1, 'c'), 2 * PART);
  cr_assert_eq (append_fill (file, PART, 'd'), 3 * PART);
  cr_assert_eq (tr_groupfile_n_parts (file), 4);
  expect_bytes (file, PART, PART, 'b');
  expect_bytes (file, 3 * PART, PART, 'd');
}

/* Contract violations are g_return_val_if_fail criticals; made fatal here
 * so the test does not depend on G_DEBUG. */
Test (tr_groupfile, len_larger_than_part_is_rejected, .signal = SIGTRAP)
{
  g_autoptr (TrGroupFile) file = open_gf (PART);
  guint8 buf[PART + 1] = { 0 };

  g_log_set_always_fatal (G_LOG_FATAL_MASK | G_LOG_LEVEL_CRITICAL);
  tr_groupfile_append (file, buf, sizeof buf, NULL, NULL);
}

Test (tr_groupfile, zero_length_is_rejected, .signal = SIGTRAP)
{
  g_autoptr (TrGroupFile) file = open_gf (PART);
  guint8 buf[1] = { 0 };

  g_log_set_always_fatal (G_LOG_FATAL_MASK | G_LOG_LEVEL_CRITICAL);
  tr_groupfile_append (file, buf, 0, NULL, NULL);
}

Test (tr_groupfile, reopen_finds_parts_and_size)
{
  g_autoptr (TrGroupFile) again = NULL;
  g_autofree char *tmp = g_strdup_printf ("%s/log.0.tmp", dir);
  g_autofree char *other = g_strdup_printf ("%s/other.7", dir);
  g_autofree char *padded = g_strdup_printf ("%s/log.07", dir);
  TrGroupFile *file = open_gf (PART);

  append_fill (file, 70, 'a');
  append_fill (file, 70, 'b');
  append_fill (file, 30, 'c');
  cr_assert (tr_groupfile_sync (file, NULL));
  tr_groupfile_free (file);
  tr_test_write_file (tmp, "x", 1);
  tr_test_write_file (other, "x", 1);
  tr_test_write_file (padded, "x", 1);

  again = open_gf (PART);
  cr_assert_eq (tr_groupfile_n_parts (again), 2);
  cr_assert_eq (tr_groupfile_size (again), PART + 100);
  cr_assert_eq (tr_groupfile_first_offset (again), 0);
  expect_bytes (again, 0, 70, 'a');
  expect_bytes (again, PART, 70, 'b');
  expect_bytes (again, PART + 70, 30, 'c');
  cr_assert_eq (append_fill (again, 5, 'd'), 2 * PART, "the full last part rolls");
}

Test (tr_groupfile, reopen_empty_dir)
{
  TrGroupFile *file = open_gf (PART);

  cr_assert (tr_groupfile_sync (file, NULL));
  tr_groupfile_free (file);
  file = open_gf (PART);
  cr_assert_eq (tr_groupfile_size (file), 0);
  cr_assert_eq (tr_groupfile_first_offset (file), 0);
  cr_assert_eq (tr_groupfile_n_parts (file), 0);
  cr_assert_eq (read_got (file, 0, 10), 0);
  cr_assert_eq (append_fill (file, 3, 'a'), 0);
  tr_groupfile_free (file);
}

Test (tr_groupfile, open_missing_dir_fails)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *missing = g_strdup_printf ("%s/nope", dir);
  TrGroupFile *file = tr_groupfile_open (tr_io_posix (), missing, "log", PART, &error);

  cr_assert_null (file);
  cr_assert (g_error_matches (error, TR_STORAGE_ERROR, TR_STORAGE_ERROR_NOT_FOUND), "%s",
             error->message);
}

Test (tr_groupfile, write_at_in_place_and_extending)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (TrGroupFile) file = open_gf (PART);
  guint8 zeros[10];

  append_fill (file, 50, 'a');
  cr_assert (tr_groupfile_write_at (file, 10, "XYZ", 3, &error));
  expect_bytes (file, 9, 1, 'a');
  expect_bytes (file, 10, 1, 'X');
  expect_bytes (file, 13, 1, 'a');
  cr_assert_eq (tr_groupfile_size (file), 50, "in place does not grow");

  /* Extends part 0 with a zero-filled hole. */
  cr_assert (tr_groupfile_write_at (file, 90, "0123456789", 10, &error));
  cr_assert_eq (tr_groupfile_size (file), 100);
  memset (zeros, 0, sizeof zeros);
  expect_bytes (file, 60, 10, 0);

  /* Creates parts 1 and 2 (part 1 stays empty). */
  cr_assert (tr_groupfile_write_at (file, 2 * PART + 20, "hello", 5, &error), "%s",
             error ? error->message : "");
  cr_assert_eq (tr_groupfile_n_parts (file), 3);
  cr_assert_eq (tr_groupfile_size (file), 2 * PART + 25);
  expect_bytes (file, 2 * PART, 20, 0);
  expect_bytes (file, 2 * PART + 20, 1, 'h');
  cr_assert_eq (read_got (file, PART + 5, 10), 0, "skipped part is all hole");
  cr_assert_eq (append_fill (file, 10, 'b'), 2 * PART + 25);
  cr_assert (tr_groupfile_sync (file, &error));
}

Test (tr_groupfile, write_at_on_empty_file)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (TrGroupFile) file = open_gf (PART);

  cr_assert (tr_groupfile_write_at (file, 0, "abc", 3, &error));
  cr_assert_eq (tr_groupfile_size (file), 3);
  expect_bytes (file, 2, 1, 'c');
}

Test (tr_groupfile, truncate_across_parts)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *p1 = path_of (1);
  g_autofree char *p2 = path_of (2);
  TrGroupFile *file = open_gf (PART);

  append_fill (file, 80, 'a');
  append_fill (file, 80, 'b');
  append_fill (file, 80, 'c');
  cr_assert_eq (tr_groupfile_n_parts (file), 3);
  cr_assert (tr_groupfile_truncate (file, PART + 30, &error), "%s", error ? error->message : "");
  cr_assert_eq (tr_groupfile_n_parts (file), 2);
  cr_assert_eq (tr_groupfile_size (file), PART + 30);
  cr_assert_eq (tr_test_file_size (p2), -1, "part 2 deleted");
  cr_assert_eq (tr_test_file_size (p1), 30);
  cr_assert_eq (append_fill (file, 10, 'd'), PART + 30);
  expect_bytes (file, PART + 30, 10, 'd');

  /* Truncate to the start of a part keeps it, empty. */
  cr_assert (tr_groupfile_truncate (file, PART, &error));
  cr_assert_eq (tr_groupfile_size (file), PART);
  cr_assert_eq (tr_groupfile_n_parts (file), 2);
  /* No-op at the end. */
  cr_assert (tr_groupfile_truncate (file, PART, &error));
  /* An offset inside part 0's hole cuts part 1 and nothing of part 0. */
  cr_assert (tr_groupfile_truncate (file, 90, &error));
  cr_assert_eq (tr_groupfile_size (file), 80);
  cr_assert (tr_groupfile_sync (file, &error));
  tr_groupfile_free (file);

  file = open_gf (PART);
  cr_assert_eq (tr_groupfile_size (file), 80);
  cr_assert_eq (tr_groupfile_n_parts (file), 1);
  tr_groupfile_free (file);
}

Test (tr_groupfile, drop_before_retention)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *p0 = path_of (0);
  g_autofree char *p1 = path_of (1);
  g_autoptr (TrGroupFile) file = open_gf (PART);
  gsize got = 0;
  guint8 buf[4];

  for (int i = 0; i < 4; i++)
    append_fill (file, 90, (guint8) ('a' + i));
  cr_assert_eq (tr_groupfile_n_parts (file), 4);

  cr_assert (tr_groupfile_drop_before (file, PART - 1, &error));
  cr_assert_eq (tr_groupfile_n_parts (file), 4, "part 0 does not end at or before 99");
  cr_assert (tr_groupfile_drop_before (file, PART + 50, &error));
  cr_assert_eq (tr_groupfile_n_parts (file), 3);
  cr_assert_eq (tr_groupfile_first_offset (file), PART);
  cr_assert_eq (tr_test_file_size (p0), -1);
  cr_assert_eq (tr_test_file_size (p1), 90);

  cr_assert_not (tr_groupfile_read (file, 10, buf, sizeof buf, &got, &error));
  cr_assert (g_error_matches (error, TR_STORAGE_ERROR, TR_STORAGE_ERROR_NOT_FOUND));
  g_clear_error (&error);
  cr_assert_not (tr_groupfile_write_at (file, 10, "x", 1, &error));
  cr_assert (g_error_matches (error, TR_STORAGE_ERROR, TR_STORAGE_ERROR_NOT_FOUND));
  g_clear_error (&error);

  /* Far past the end: everything but the last part goes. */
  cr_assert (tr_groupfile_drop_before (file, 100 * PART, &error));
  cr_assert_eq (tr_groupfile_n_parts (file), 1);
  cr_assert_eq (tr_groupfile_first_offset (file), 3 * PART);
  cr_assert_eq (tr_groupfile_size (file), 3 * PART + 90);
  expect_bytes (file, 3 * PART, 90, 'd');
  cr_assert (tr_groupfile_sync (file, &error));
}

Test (tr_groupfile, reopen_after_drop_keeps_first_offset)
{
  TrGroupFile *file = open_gf (PART);

  for (int i = 0; i < 3; i++)
    append_fill (file, PART, (guint8) ('a' + i));
  cr_assert (tr_groupfile_drop_before (file, 2 * PART, NULL));
  cr_assert (tr_groupfile_sync (file, NULL));
  tr_groupfile_free (file);
  file = open_gf (PART);
  cr_assert_eq (tr_groupfile_first_offset (file), 2 * PART);
  cr_assert_eq (tr_groupfile_size (file), 3 * PART);
  expect_bytes (file, 2 * PART, PART, 'c');
  tr_groupfile_free (file);
}

Test (tr_groupfile, read_before_first_offset_is_not_found)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (TrGroupFile) file = NULL;
  g_autofree char *p3 = path_of (3);
  g_autofree char *p4 = path_of (4);
  guint8 buf[8];
  gsize got = 7;

  tr_test_write_file (p3, "abc", 3);
  tr_test_write_file (p4, "de", 2);
  file = open_gf (PART);
  cr_assert_eq (tr_groupfile_first_offset (file), 3 * PART);
  cr_assert_eq (tr_groupfile_size (file), 4 * PART + 2);
  cr_assert_not (tr_groupfile_read (file, 3 * PART - 1, buf, sizeof buf, &got, &error));
  cr_assert (g_error_matches (error, TR_STORAGE_ERROR, TR_STORAGE_ERROR_NOT_FOUND), "%s",
             error->message);
  cr_assert_eq (got, 0);
  g_clear_error (&error);
  cr_assert (tr_groupfile_read (file, 3 * PART, buf, sizeof buf, &got, &error));
  cr_assert_eq (got, 3);
  cr_assert_eq (memcmp (buf, "abc", 3), 0);
}

Test (tr_groupfile, missing_middle_part_is_corrupt)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *p0 = path_of (0);
  g_autofree char *p1 = path_of (1);
  g_autofree char *p2 = path_of (2);
  TrGroupFile *file;

  tr_test_write_file (p0, "a", 1);
  tr_test_write_file (p2, "c", 1);
  file = tr_groupfile_open (tr_io_posix (), dir, "log", PART, &error);
  cr_assert_null (file);
  cr_assert (g_error_matches (error, TR_STORAGE_ERROR, TR_STORAGE_ERROR_CORRUPT), "%s",
             error->message);
  cr_assert (strstr (error->message, p1) != NULL, "names %s: %s", p1, error->message);
}

Test (tr_groupfile, part_bigger_than_part_size_is_corrupt)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *p0 = path_of (0);
  g_autofree char *p1 = path_of (1);
  guint8 big[PART + 1] = { 0 };
  TrGroupFile *file;

  tr_test_write_file (p0, big, sizeof big);
  tr_test_write_file (p1, "b", 1);
  file = tr_groupfile_open (tr_io_posix (), dir, "log", PART, &error);
  cr_assert_null (file);
  cr_assert (g_error_matches (error, TR_STORAGE_ERROR, TR_STORAGE_ERROR_CORRUPT), "%s",
             error->message);
  cr_assert (strstr (error->message, p0) != NULL, "names %s: %s", p0, error->message);
}

Test (tr_groupfile, reads_walk_many_old_parts)
{
  g_autoptr (TrGroupFile) file = open_gf (PART);

  for (int i = 0; i < 20; i++)
    append_fill (file, PART, (guint8) i);
  cr_assert (tr_groupfile_sync (file, NULL));
  /* Alternate between old parts to exercise the cached read descriptor. */
  for (int round = 0; round < 3; round++) {
    for (int i = 0; i < 20; i++) {
      expect_bytes (file, (guint64) i * PART, PART, (guint8) i);
      expect_bytes (file, 19 * PART + 5, 10, 19);
    }
  }
}

Test (tr_groupfile, random_appends_match_model)
{
  g_autoptr (GRand) rand = g_rand_new_with_seed (tr_test_seed ());
  g_autoptr (GByteArray) model = g_byte_array_new ();
  g_autoptr (GArray) offsets = g_array_new (FALSE, FALSE, sizeof (guint64));
  g_autoptr (GArray) lens = g_array_new (FALSE, FALSE, sizeof (guint));
  TrGroupFile *file = open_gf (PART);

  for (int i = 0; i < 300; i++) {
    guint len = (guint) g_rand_int_range (rand, 1, PART + 1);
    guint8 byte = (guint8) g_rand_int (rand);
    guint64 off = append_fill (file, len, byte);
    cr_assert (off >= tr_groupfile_size (file) - len);
    cr_assert_eq (off / PART, (off + len - 1) / PART, "never spans a part");
    g_array_append_val (offsets, off);
    g_array_append_val (lens, len);
    g_byte_array_append (model, &byte, 1);
    if (g_rand_int_range (rand, 0, 10) == 0)
      cr_assert (tr_groupfile_sync (file, NULL));
  }
  cr_assert (tr_groupfile_sync (file, NULL));
  tr_groupfile_free (file);
  file = open_gf (PART);
  for (guint i = 0; i < offsets->len; i++)
    expect_bytes (file, g_array_index (offsets, guint64, i), g_array_index (lens, guint, i),
                  model->data[i]);
  tr_groupfile_free (file);
}

/* Calls tr_groupfile_zero_ahead once; returns what it wrote (0 or more)
 * and, in *@end_out, where the zeros end now. */
static guint64
zero_ahead (TrGroupFile *file, guint64 ahead, gsize piece, guint64 *end_out)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *path = NULL;
  guint64 before = tr_groupfile_disk_bytes (file);

  cr_assert (tr_groupfile_zero_ahead (file, ahead, piece, &path, &error), "zero_ahead: %s",
             error ? error->message : "?");
  *end_out = tr_groupfile_zeroed_end (file);
  cr_assert_eq (path != NULL, tr_groupfile_disk_bytes (file) > before, "path only when something was written");
  return tr_groupfile_disk_bytes (file) - before;
}

Test (tr_groupfile, zero_ahead_stays_outside_the_logical_file)
{
  g_autoptr (TrGroupFile) file = open_gf (PART);
  g_autofree char *p0 = path_of (0);
  g_autofree char *p1 = path_of (1);
  guint64 end = 0;

  cr_assert_eq (zero_ahead (file, 40, 16, &end), 0, "no part yet: nothing to extend");
  cr_assert_eq (end, 0);
  append_fill (file, 10, 'a');
  cr_assert_eq (zero_ahead (file, 40, 16, &end), 16, "one whole piece");
  cr_assert_eq (end, 26);
  cr_assert_eq (zero_ahead (file, 40, 16, &end), 16);
  cr_assert_eq (zero_ahead (file, 40, 16, &end), 16);
  cr_assert_eq (end, 58);
  cr_assert_eq (zero_ahead (file, 40, 16, &end), 0, "40 bytes ahead already");
  cr_assert_eq (tr_test_file_size (p0), 58);
  cr_assert_eq (tr_groupfile_size (file), 10, "zeros are not data");
  cr_assert_eq (tr_groupfile_disk_bytes (file), 58);
  cr_assert_eq (read_got (file, 10, 20), 0, "nothing to read past the logical end");
  cr_assert_eq (append_fill (file, 20, 'b'), 10, "appends overwrite the zeros");
  cr_assert_eq (tr_test_file_size (p0), 58, "without growing the file");
  expect_bytes (file, 10, 20, 'b');
  cr_assert_eq (zero_ahead (file, 90, 50, &end), 42, "never past the part size");
  cr_assert_eq (end, PART);
  cr_assert_eq (zero_ahead (file, 90, 50, &end), 0);
  cr_assert_eq (append_fill (file, 80, 'c'), PART, "a roll works as without zeros");
  cr_assert_eq (tr_test_file_size (p0), PART, "the sealed part keeps its zeros");
  cr_assert_eq (tr_test_file_size (p1), 80);
  cr_assert_eq (read_got (file, 30, 10), 0, "the tail of the sealed part is a hole");
}

Test (tr_groupfile, zero_ahead_then_reopen_and_truncate)
{
  TrGroupFile *file = open_gf (PART);
  g_autoptr (GError) error = NULL;
  g_autofree char *p0 = path_of (0);
  guint64 end = 0;

  append_fill (file, 30, 'a');
  cr_assert_eq (zero_ahead (file, 50, 25, &end), 25);
  cr_assert (tr_groupfile_sync (file, &error));
  tr_groupfile_free (file);
  /* Reopened, the GroupFile cannot tell zeros from data: the owner cuts. */
  file = open_gf (PART);
  cr_assert_eq (tr_groupfile_size (file), 55);
  expect_bytes (file, 30, 25, 0);
  cr_assert (tr_groupfile_truncate (file, 30, &error), "%s", error ? error->message : "");
  cr_assert_eq (tr_groupfile_size (file), 30);
  cr_assert_eq (tr_test_file_size (p0), 30, "the truncate removes the zeros");
  cr_assert_eq (zero_ahead (file, 50, 25, &end), 25, "and they can be written again");
  cr_assert_eq (append_fill (file, 5, 'b'), 30);
  tr_groupfile_free (file);
}
