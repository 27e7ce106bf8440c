/* test_tr_positions.c - endpoint send state (storage/tr_positions.h). */
#include "tr_endian.h"
#include "tr_positions.h"
#include "tr_record.h"
#include "tr_rotatefile.h"
#include "tr_storage_error.h"
#include "tr_test_util.h"

#include <criterion/criterion.h>
#include <string.h>

static char *test_dir;

static void
setup (void)
{
  test_dir = tr_test_mkdtemp ();
}

static void
teardown (void)
{
  tr_test_rmdir (test_dir);
  g_clear_pointer (&test_dir, g_free);
}

TestSuite (tr_positions, .init = setup, .fini = teardown);

static TrPositions *
open_ok (const char *name)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *data_dir = g_build_filename (test_dir, name, NULL);
  TrPositions *positions;

  g_mkdir_with_parents (data_dir, 0755);
  positions = tr_positions_open (tr_io_posix (), data_dir, &error);
  cr_assert_not_null (positions, "open: %s", error ? error->message : "?");
  return positions;
}

static TrPositionsEndpoint *
endpoint_ok (TrPositions *positions, const char *service, const char *endpoint)
{
  g_autoptr (GError) error = NULL;
  TrPositionsEndpoint *file = tr_positions_open_endpoint (positions, service, endpoint, &error);

  cr_assert_not_null (file, "open %s/%s: %s", service, endpoint, error ? error->message : "?");
  return file;
}

static void
set_ok (TrPositions *positions, const char *service, const char *endpoint, guint64 acked)
{
  g_autoptr (TrPositionsEndpoint) file = endpoint_ok (positions, service, endpoint);
  g_autoptr (GError) error = NULL;

  cr_assert (tr_positions_endpoint_write (file, acked, &error) && tr_positions_endpoint_sync (file, &error),
             "write: %s", error ? error->message : "?");
}

static guint64
get_ok (TrPositions *positions, const char *service, const char *endpoint)
{
  g_autoptr (TrPositionsEndpoint) file = endpoint_ok (positions, service, endpoint);
  g_autoptr (GError) error = NULL;
  guint64 acked = 0;

  cr_assert (tr_positions_endpoint_load (file, &acked, &error), "load %s/%s: %s", service, endpoint,
             error ? error->message : "?");
  return acked;
}

Test (tr_positions, missing_position_is_not_found)
{
  g_autoptr (TrPositions) positions = open_ok ("data");
  g_autoptr (TrPositionsEndpoint) file = endpoint_ok (positions, "books", "a");
  g_autoptr (GError) error = NULL;
  guint64 acked = 77;

  cr_assert_not (tr_positions_endpoint_load (file, &acked, &error));
  cr_assert (g_error_matches (error, TR_STORAGE_ERROR, TR_STORAGE_ERROR_NOT_FOUND), "%s", error->message);
  cr_assert_eq (acked, 77);
}

Test (tr_positions, written_positions_survive_reopen_per_endpoint)
{
  TrPositions *positions = open_ok ("data");
  g_autofree char *file0 = NULL;

  set_ok (positions, "books", "a", 5);
  set_ok (positions, "books", "b", 9);
  set_ok (positions, "mail", "a", G_MAXUINT64 - 1);
  set_ok (positions, "books", "a", 6);
  tr_positions_free (positions);

  positions = open_ok ("data");
  cr_assert_eq (get_ok (positions, "books", "a"), 6);
  cr_assert_eq (get_ok (positions, "books", "b"), 9);
  cr_assert_eq (get_ok (positions, "mail", "a"), G_MAXUINT64 - 1);
  file0 = g_build_filename (test_dir, "data", TR_POSITIONS_DIR, "books@a.0", NULL);
  cr_assert (g_file_test (file0, G_FILE_TEST_EXISTS), "%s missing", file0);
  tr_positions_free (positions);
}

/* The format did not change when it moved out of push: a file written as a
 * plain RotateFile with the version 1 payload reads back. */
Test (tr_positions, reads_the_version_1_payload_byte_for_byte)
{
  g_autoptr (TrPositions) positions = open_ok ("data");
  g_autofree char *base = g_build_filename (tr_positions_get_dir (positions), "books@a", NULL);
  g_autoptr (GError) error = NULL;
  TrRotateFile *raw = tr_rotatefile_open (tr_io_posix (), base, TR_POSITIONS_FILE_SIZE, &error);
  g_autoptr (GBytes) state = NULL;
  g_autoptr (TrPositionsEndpoint) file = NULL;
  guint8 buf[12];

  cr_assert_not_null (raw);
  tr_put_le32 (buf, 1);
  tr_put_le64 (buf + 4, 123456789);
  cr_assert (tr_rotatefile_write (raw, buf, sizeof buf, &error) && tr_rotatefile_sync (raw, &error));
  tr_rotatefile_free (raw);
  cr_assert_eq (get_ok (positions, "books", "a"), 123456789);

  /* And what it writes is exactly that payload. */
  file = endpoint_ok (positions, "books", "a");
  cr_assert (tr_positions_endpoint_write (file, 42, &error) && tr_positions_endpoint_sync (file, &error));
  g_clear_pointer (&file, tr_positions_endpoint_free);
  raw = tr_rotatefile_open (tr_io_posix (), base, TR_POSITIONS_FILE_SIZE, &error);
  state = tr_rotatefile_load (raw, NULL, &error);
  cr_assert_not_null (state);
  cr_assert_eq (g_bytes_get_size (state), 12);
  cr_assert_eq (tr_get_le32 (g_bytes_get_data (state, NULL)), 1);
  cr_assert_eq (tr_get_le64 ((const guint8 *) g_bytes_get_data (state, NULL) + 4), 42);
  tr_rotatefile_free (raw);
}

Test (tr_positions, other_version_or_size_is_corrupt_and_names_the_file)
{
  g_autoptr (TrPositions) positions = open_ok ("data");
  g_autofree char *base = g_build_filename (tr_positions_get_dir (positions), "books@a", NULL);
  g_autoptr (GError) error = NULL;
  TrRotateFile *raw = tr_rotatefile_open (tr_io_posix (), base, TR_POSITIONS_FILE_SIZE, &error);
  g_autoptr (TrPositionsEndpoint) file = NULL;
  guint8 buf[12];
  guint64 acked = 0;

  tr_put_le32 (buf, 2);
  tr_put_le64 (buf + 4, 1);
  cr_assert (tr_rotatefile_write (raw, buf, sizeof buf, &error) && tr_rotatefile_sync (raw, &error));
  tr_rotatefile_free (raw);
  file = endpoint_ok (positions, "books", "a");
  cr_assert_not (tr_positions_endpoint_load (file, &acked, &error));
  cr_assert (g_error_matches (error, TR_STORAGE_ERROR, TR_STORAGE_ERROR_CORRUPT), "%s", error->message);
  cr_assert (strstr (error->message, base) != NULL, "%s", error->message);
  cr_assert (strstr (error->message, "version 2") != NULL, "%s", error->message);
}

Test (tr_positions, export_import_round_trip)
{
  g_autoptr (TrPositions) master = open_ok ("master");
  g_autoptr (TrPositions) replica = open_ok ("replica");
  g_autoptr (GBytes) exported = NULL;
  g_autoptr (GBytes) again = NULL;
  g_autoptr (GArray) entries = NULL;
  g_autoptr (GError) error = NULL;
  g_autoptr (TrPositions) reopened = NULL;

  set_ok (master, "mail", "z", 3);
  set_ok (master, "books", "b", 0);
  set_ok (master, "books", "a", G_MAXUINT64);
  set_ok (master, "books", "a", 17);
  exported = tr_positions_export (master);
  entries = tr_positions_decode (exported, &error);
  cr_assert_not_null (entries, "%s", error ? error->message : "?");
  cr_assert_eq (entries->len, 3);
  /* Sorted by service, then endpoint; the last write wins. */
  cr_assert_str_eq (g_array_index (entries, TrPositionsEntry, 0).service, "books");
  cr_assert_str_eq (g_array_index (entries, TrPositionsEntry, 0).endpoint, "a");
  cr_assert_eq (g_array_index (entries, TrPositionsEntry, 0).acked, 17);
  cr_assert_str_eq (g_array_index (entries, TrPositionsEntry, 1).endpoint, "b");
  cr_assert_eq (g_array_index (entries, TrPositionsEntry, 1).acked, 0);
  cr_assert_str_eq (g_array_index (entries, TrPositionsEntry, 2).service, "mail");
  cr_assert_eq (g_array_index (entries, TrPositionsEntry, 2).acked, 3);

  set_ok (replica, "books", "a", 99); /* overwritten by the import */
  cr_assert (tr_positions_import (replica, exported, &error), "import: %s", error ? error->message : "?");
  again = tr_positions_export (replica);
  cr_assert (g_bytes_equal (again, exported), "export after import differs");

  /* On disk, synced: a fresh object reads them. */
  reopened = open_ok ("replica");
  cr_assert_eq (get_ok (reopened, "books", "a"), 17);
  cr_assert_eq (get_ok (reopened, "books", "b"), 0);
  cr_assert_eq (get_ok (reopened, "mail", "z"), 3);
}

Test (tr_positions, empty_export_round_trips)
{
  g_autoptr (TrPositions) positions = open_ok ("data");
  g_autoptr (GBytes) exported = tr_positions_export (positions);
  g_autoptr (GError) error = NULL;
  g_autoptr (GArray) entries = tr_positions_decode (exported, &error);

  cr_assert_not_null (entries, "%s", error ? error->message : "?");
  cr_assert_eq (entries->len, 0);
  cr_assert_eq (g_bytes_get_size (exported), TR_RECORD_SIZE (8));
}

static void
decode_fails (GBytes *bytes, const char *expected)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GArray) entries = tr_positions_decode (bytes, &error);

  cr_assert_null (entries, "decoded bad input (%s)", expected);
  cr_assert (g_error_matches (error, TR_STORAGE_ERROR, TR_STORAGE_ERROR_CORRUPT), "%s", error->message);
  cr_assert (strstr (error->message, expected) != NULL, "'%s' not in: %s", expected, error->message);
}

/* A payload by hand: version, count, then raw entry bytes. */
static GBytes *
hand_made (guint32 version, guint32 count, const void *entries, gsize len)
{
  g_autoptr (GByteArray) payload = g_byte_array_new ();
  guint8 head[8];

  tr_put_le32 (head, version);
  tr_put_le32 (head + 4, count);
  g_byte_array_append (payload, head, sizeof head);
  g_byte_array_append (payload, entries, (guint) len);
  return tr_record_encode (TR_POSITIONS_EXPORT_TYPE, payload->data, payload->len);
}

Test (tr_positions, decode_rejects_damaged_or_invalid_exports)
{
  g_autoptr (TrPositions) positions = open_ok ("data");
  g_autoptr (GBytes) good = NULL;
  g_autoptr (GBytes) other_type = tr_record_encode (0x52, "xxxxxxxx", 8);
  /* "a/b"@"c" would leave the state directory; "x"@"y" twice. */
  static const guint8 slash[] = { 3, 0, 'a', '/', 'b', 1, 0, 'c', 1, 0, 0, 0, 0, 0, 0, 0 };
  static const guint8 twice[] = { 1, 0, 'x', 1, 0, 'y', 1, 0, 0, 0, 0, 0, 0, 0,
                                  1, 0, 'x', 1, 0, 'y', 2, 0, 0, 0, 0, 0, 0, 0 };
  g_autoptr (GBytes) slash_bytes = hand_made (1, 1, slash, sizeof slash);
  g_autoptr (GBytes) twice_bytes = hand_made (1, 2, twice, sizeof twice);
  g_autoptr (GBytes) short_bytes = hand_made (1, 2, slash, 8);
  g_autoptr (GBytes) extra_bytes = hand_made (1, 0, "z", 1);
  g_autoptr (GBytes) version_bytes = hand_made (2, 0, NULL, 0);
  g_autofree guint8 *flipped = NULL;
  gsize len;

  set_ok (positions, "books", "a", 1);
  good = tr_positions_export (positions);
  len = g_bytes_get_size (good);
  flipped = g_memdup2 (g_bytes_get_data (good, NULL), len);
  flipped[len - 1] ^= 0x01;
  {
    g_autoptr (GBytes) flipped_bytes = g_bytes_new (flipped, len);
    g_autoptr (GBytes) cut_bytes = g_bytes_new (flipped, len - 1);
    decode_fails (flipped_bytes, "not one valid record");
    decode_fails (cut_bytes, "not one valid record");
  }
  decode_fails (other_type, "not one valid record");
  decode_fails (version_bytes, "version 2");
  decode_fails (slash_bytes, "entry 1 of 1");
  decode_fails (twice_bytes, "x/y appears twice");
  decode_fails (short_bytes, "entry 1 of 2");
  decode_fails (extra_bytes, "1 bytes after");
}

Test (tr_positions, import_refuses_while_an_endpoint_file_is_open)
{
  g_autoptr (TrPositions) master = open_ok ("master");
  g_autoptr (TrPositions) replica = open_ok ("replica");
  g_autoptr (GBytes) exported = NULL;
  g_autoptr (TrPositionsEndpoint) open_file = NULL;
  g_autoptr (GError) error = NULL;
  guint64 acked = 0;

  set_ok (master, "books", "a", 10);
  exported = tr_positions_export (master);
  set_ok (replica, "books", "a", 4);
  open_file = endpoint_ok (replica, "books", "a");
  cr_assert_not (tr_positions_import (replica, exported, &error));
  cr_assert (g_error_matches (error, TR_STORAGE_ERROR, TR_STORAGE_ERROR_BUSY), "%s", error->message);
  cr_assert (tr_positions_endpoint_load (open_file, &acked, NULL));
  cr_assert_eq (acked, 4, "the refused import wrote");
}
