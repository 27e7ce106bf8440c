/* test_tr_dwfile.c - behaviour of DoubleWriteFile (storage/tr_dwfile.h). */
#include "tr_dwfile.h"
#include "tr_endian.h"
#include "tr_record.h"
#include "tr_storage_error.h"
#include "tr_test_util.h"

#include <criterion/criterion.h>
#include <string.h>

static char *test_dir;
static char *target;
static char *side;

static void
setup (void)
{
  test_dir = tr_test_mkdtemp ();
  target = g_build_filename (test_dir, "router.conf", NULL);
  side = g_strconcat (target, TR_DWFILE_SUFFIX, NULL);
}

static void
teardown (void)
{
  tr_test_rmdir (test_dir);
  g_clear_pointer (&test_dir, g_free);
  g_clear_pointer (&target, g_free);
  g_clear_pointer (&side, g_free);
}

TestSuite (tr_dwfile, .init = setup, .fini = teardown);

static void
replace_ok (const void *data, gsize len)
{
  g_autoptr (GError) error = NULL;

  cr_assert (tr_dwfile_replace (tr_io_posix (), target, data, len, &error), "replace: %s",
             error ? error->message : "?");
}

static void
recover_ok (void)
{
  g_autoptr (GError) error = NULL;

  cr_assert (tr_dwfile_recover (tr_io_posix (), target, &error), "recover: %s",
             error ? error->message : "?");
}

/* Asserts that tr_dwfile_read() returns exactly @data[0..@len). */
static void
assert_content (const void *data, gsize len)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GBytes) got = tr_dwfile_read (tr_io_posix (), target, &error);
  g_autoptr (GBytes) want = g_bytes_new (data, len);

  cr_assert_not_null (got, "read: %s", error ? error->message : "?");
  cr_assert (g_bytes_equal (got, want), "content differs (%zu bytes, want %zu)", g_bytes_get_size (got),
             len);
  cr_assert_not (tr_io_exists (side), "side copy left behind");
}

/* Writes a side copy by hand, as a crash after its fsync would leave it. */
static void
write_side_copy (const void *data, gsize len)
{
  g_autofree guint8 *payload = g_malloc (8 + len);
  g_autoptr (GBytes) record = NULL;

  tr_put_le64 (payload, len);
  if (len > 0)
    memcpy (payload + 8, data, len);
  record = tr_record_encode (TR_DWFILE_RECORD_TYPE, payload, (guint32) (8 + len));
  tr_test_write_file (side, g_bytes_get_data (record, NULL), g_bytes_get_size (record));
}

static const char config_old[] = "# thriftrouter config\n[node]\nname = a\n";
static const char config_new[] = "# thriftrouter config\n# edited\n[node]\nname = b\n; trailing";

Test (tr_dwfile, replace_creates_then_reads_back)
{
  replace_ok (config_old, strlen (config_old));
  assert_content (config_old, strlen (config_old));
  /* PATH is the plain content: other tools can read it. */
  {
    g_autoptr (GBytes) raw = tr_test_read_file (target);
    cr_assert_eq (g_bytes_get_size (raw), strlen (config_old));
  }
}

Test (tr_dwfile, replace_shorter_and_longer_is_byte_exact)
{
  guint8 binary[300];

  for (guint i = 0; i < sizeof binary; i++)
    binary[i] = (guint8) (i * 7); /* NULs and high bytes included */
  replace_ok (binary, sizeof binary);
  assert_content (binary, sizeof binary);
  replace_ok (config_old, strlen (config_old));
  assert_content (config_old, strlen (config_old));
  replace_ok (config_new, strlen (config_new));
  assert_content (config_new, strlen (config_new));
  replace_ok ("", 0);
  assert_content ("", 0);
  replace_ok (binary, 1);
  assert_content (binary, 1);
}

Test (tr_dwfile, read_missing_is_not_found)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GBytes) got = tr_dwfile_read (tr_io_posix (), target, &error);

  cr_assert_null (got);
  cr_assert (g_error_matches (error, TR_STORAGE_ERROR, TR_STORAGE_ERROR_NOT_FOUND), "error: %s",
             error ? error->message : "none");
}

Test (tr_dwfile, recover_without_side_copy_changes_nothing)
{
  tr_test_write_file (target, config_old, strlen (config_old));
  recover_ok ();
  assert_content (config_old, strlen (config_old));
}

Test (tr_dwfile, complete_side_copy_is_replayed)
{
  tr_test_write_file (target, config_old, strlen (config_old));
  write_side_copy (config_new, strlen (config_new));
  recover_ok ();
  assert_content (config_new, strlen (config_new));
}

Test (tr_dwfile, complete_side_copy_replays_into_missing_file)
{
  write_side_copy (config_new, strlen (config_new));
  assert_content (config_new, strlen (config_new));
}

Test (tr_dwfile, torn_side_copy_is_discarded)
{
  g_autoptr (GBytes) whole = NULL;

  tr_test_write_file (target, config_old, strlen (config_old));
  write_side_copy (config_new, strlen (config_new));
  whole = tr_test_read_file (side);
  for (gsize cut = 0; cut < g_bytes_get_size (whole); cut++) {
    tr_test_write_file (side, g_bytes_get_data (whole, NULL), cut);
    assert_content (config_old, strlen (config_old));
  }
}

Test (tr_dwfile, flipped_byte_side_copy_is_discarded)
{
  g_autoptr (GBytes) whole = NULL;

  tr_test_write_file (target, config_old, strlen (config_old));
  write_side_copy (config_new, strlen (config_new));
  whole = tr_test_read_file (side);
  for (gsize at = 0; at < g_bytes_get_size (whole); at++) {
    guint8 byte = ((const guint8 *) g_bytes_get_data (whole, NULL))[at] ^ 0x20;
    tr_test_write_file (side, g_bytes_get_data (whole, NULL), g_bytes_get_size (whole));
    tr_test_patch_file (side, at, &byte, 1);
    assert_content (config_old, strlen (config_old));
  }
}

Test (tr_dwfile, zero_filled_side_copy_is_discarded)
{
  guint8 zeros[100] = { 0 };

  tr_test_write_file (target, config_old, strlen (config_old));
  tr_test_write_file (side, zeros, sizeof zeros);
  assert_content (config_old, strlen (config_old));
}

Test (tr_dwfile, wrong_length_or_type_is_discarded)
{
  guint8 payload[8 + 5];
  g_autoptr (GBytes) bad_len = NULL;
  g_autoptr (GBytes) bad_type = NULL;

  tr_test_write_file (target, config_old, strlen (config_old));
  tr_put_le64 (payload, 4); /* claims 4 bytes, carries 5 */
  memcpy (payload + 8, "hello", 5);
  bad_len = tr_record_encode (TR_DWFILE_RECORD_TYPE, payload, sizeof payload);
  tr_test_write_file (side, g_bytes_get_data (bad_len, NULL), g_bytes_get_size (bad_len));
  assert_content (config_old, strlen (config_old));

  tr_put_le64 (payload, 5);
  bad_type = tr_record_encode (TR_DWFILE_RECORD_TYPE + 1, payload, sizeof payload);
  tr_test_write_file (side, g_bytes_get_data (bad_type, NULL), g_bytes_get_size (bad_type));
  assert_content (config_old, strlen (config_old));
}

Test (tr_dwfile, replace_settles_a_pending_side_copy_first)
{
  /* A crash left PATH torn and a complete side copy: replace must not
   * throw away the only good copy before its own side copy is durable. */
  tr_test_write_file (target, "garb", 4);
  write_side_copy (config_old, strlen (config_old));
  replace_ok (config_new, strlen (config_new));
  assert_content (config_new, strlen (config_new));
}

Test (tr_dwfile, large_content)
{
  gsize len = 1 << 20;
  g_autofree guint8 *data = g_malloc (len);
  GRand *rand = g_rand_new_with_seed (tr_test_seed ());

  for (gsize i = 0; i < len; i++)
    data[i] = (guint8) g_rand_int (rand);
  g_rand_free (rand);
  replace_ok (data, len);
  assert_content (data, len);
}
