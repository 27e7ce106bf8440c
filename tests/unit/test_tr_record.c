/* Tests for the record codec (storage/tr_record.h). */
#include "tr_record.h"
#include "tr_test_util.h"

#include <criterion/criterion.h>
#include <string.h>

Test (tr_record, round_trip)
{
  const char payload[] = "hello record";
  g_autoptr (GBytes) rec = tr_record_encode (7, payload, sizeof payload);
  gsize len = 0;
  const guint8 *buf = g_bytes_get_data (rec, &len);
  TrRecordView view;

  cr_assert_eq (len, TR_RECORD_SIZE (sizeof payload));
  cr_assert_eq (tr_record_decode (buf, len, 1024, &view), TR_RECORD_OK);
  cr_assert_eq (view.type, 7);
  cr_assert_eq (view.len, sizeof payload);
  cr_assert_eq (view.total, len);
  cr_assert_arr_eq (view.payload, payload, sizeof payload);
}

Test (tr_record, zero_length_payload)
{
  g_autoptr (GBytes) rec = tr_record_encode (1, NULL, 0);
  gsize len = 0;
  const guint8 *buf = g_bytes_get_data (rec, &len);
  TrRecordView view;

  cr_assert_eq (len, TR_RECORD_HEADER_SIZE);
  cr_assert_eq (tr_record_decode (buf, len, 0, &view), TR_RECORD_OK);
  cr_assert_eq (view.len, 0);
}

Test (tr_record, every_prefix_needs_more)
{
  const char payload[] = "0123456789abcdef";
  g_autoptr (GBytes) rec = tr_record_encode (3, payload, sizeof payload);
  gsize len = 0;
  const guint8 *buf = g_bytes_get_data (rec, &len);
  TrRecordView view;

  for (gsize cut = 0; cut < len; cut++)
    cr_assert_eq (tr_record_decode (buf, cut, 1024, &view), TR_RECORD_NEED_MORE, "cut at %zu", cut);
}

Test (tr_record, every_flipped_bit_is_corrupt_or_needs_more)
{
  const char payload[] = "flip me";
  g_autoptr (GBytes) rec = tr_record_encode (9, payload, sizeof payload);
  gsize len = 0;
  const guint8 *orig = g_bytes_get_data (rec, &len);
  g_autofree guint8 *buf = g_memdup2 (orig, len);
  TrRecordView view;

  for (gsize i = 0; i < len * 8; i++) {
    TrRecordStatus status;
    buf[i / 8] ^= (guint8) (1u << (i % 8));
    status = tr_record_decode (buf, len, 1024, &view);
    /* A flipped length bit can make the record look longer than the buffer;
     * it must never decode as a valid record. */
    cr_assert_neq (status, TR_RECORD_OK, "bit %zu accepted", i);
    buf[i / 8] ^= (guint8) (1u << (i % 8));
  }
}

Test (tr_record, zero_fill_is_corrupt)
{
  guint8 zeros[64] = { 0 };
  TrRecordView view;

  cr_assert_eq (tr_record_decode (zeros, sizeof zeros, 1024, &view), TR_RECORD_CORRUPT);
}

/* Found by fuzz_record (tests/fuzz/corpus/record/regress_short_zero_fill):
 * a zero-filled tail shorter than a header was NEED_MORE although type 0 is
 * never valid; it must be CORRUPT, like a longer zero fill. */
Test (tr_record, short_zero_fill_is_corrupt)
{
  guint8 zeros[TR_RECORD_HEADER_SIZE] = { 0 };
  TrRecordView view;

  for (gsize n = 5; n < TR_RECORD_HEADER_SIZE; n++)
    cr_assert_eq (tr_record_decode (zeros, n, 1024, &view), TR_RECORD_CORRUPT, "%zu zero bytes", n);
  for (gsize n = 0; n <= 4; n++)
    cr_assert_eq (tr_record_decode (zeros, n, 1024, &view), TR_RECORD_NEED_MORE, "%zu zero bytes", n);
}

Test (tr_record, length_over_limit_is_corrupt)
{
  guint8 payload[100] = { 0 };
  g_autoptr (GBytes) rec = tr_record_encode (2, payload, sizeof payload);
  gsize len = 0;
  const guint8 *buf = g_bytes_get_data (rec, &len);
  TrRecordView view;

  cr_assert_eq (tr_record_decode (buf, len, 99, &view), TR_RECORD_CORRUPT);
  cr_assert_eq (tr_record_decode (buf, len, 100, &view), TR_RECORD_OK);
}

Test (tr_record, random_garbage_never_decodes)
{
  g_autoptr (GRand) rand = g_rand_new_with_seed (tr_test_seed ());
  guint8 buf[256];
  TrRecordView view;
  guint ok = 0;

  for (int round = 0; round < 20000; round++) {
    for (gsize i = 0; i < sizeof buf; i++)
      buf[i] = (guint8) g_rand_int (rand);
    /* Give garbage a fair chance: plausible version and reserved bytes. */
    buf[5] = TR_RECORD_VERSION;
    buf[6] = buf[7] = 0;
    buf[0] &= 0x7f;
    buf[1] = buf[2] = buf[3] = 0;
    if (tr_record_decode (buf, sizeof buf, 1024, &view) == TR_RECORD_OK)
      ok++;
  }
  cr_assert_eq (ok, 0, "%u garbage records passed the checksum", ok);
}
