/* Tests for the RPC store's record codec (storage/tr_rpcrecord.h): round
 * trips of data records, index and list entries and checkpoints, and every
 * single corrupted byte rejected where the format has a checksum. */
#include "tr_endian.h"
#include "tr_rpcrecord.h"
#include "tr_storage_error.h"

#include <criterion/criterion.h>
#include <string.h>

static const guint8 message[] = "\x80\x01\x00\x01\x00\x00\x00\x04ping\x00\x00\x00\x07\x00";

Test (tr_rpcrecord, data_record_round_trip)
{
  g_autoptr (GByteArray) buf = g_byte_array_new ();
  const guint32 ids[] = { 3, 0, 4095 };
  TrRpcRecordView view;
  const char *why = "unset";
  guint32 checksum;

  g_byte_array_append (buf, (const guint8 *) "junk", 4); /* appends after what is there */
  checksum = tr_rpcrecord_encode (buf, 42, -7, ids, 3, message, sizeof message);
  cr_assert_eq (buf->len, 4 + tr_rpcrecord_size (3, sizeof message));
  cr_assert (tr_rpcrecord_decode (buf->data + 4, buf->len - 4, 1 << 20, &view, &why), "%s", why);
  cr_assert_null (why);
  cr_assert_eq (view.rpc_id, 42);
  cr_assert_eq (view.commit_time_us, -7);
  cr_assert_eq (view.n_services, 3);
  for (guint i = 0; i < 3; i++)
    cr_assert_eq (tr_rpcrecord_service_id (&view, i), ids[i]);
  cr_assert_eq (view.message_len, sizeof message);
  cr_assert_arr_eq (view.message, message, sizeof message);
  cr_assert_eq (view.message, buf->data + 4 + view.message_offset);
  cr_assert_eq (view.checksum, checksum);
  cr_assert_eq (view.total, buf->len - 4);
}

Test (tr_rpcrecord, data_record_without_services_or_message)
{
  g_autoptr (GByteArray) buf = g_byte_array_new ();
  TrRpcRecordView view;
  const char *why = NULL;

  tr_rpcrecord_encode (buf, 1, 0, NULL, 0, NULL, 0);
  cr_assert_eq (buf->len, TR_RPCRECORD_MIN_SIZE);
  cr_assert (tr_rpcrecord_decode (buf->data, buf->len, 1 << 20, &view, &why));
  cr_assert_eq (view.n_services, 0);
  cr_assert_eq (view.message_len, 0);
}

Test (tr_rpcrecord, every_corrupted_byte_of_a_data_record_is_rejected)
{
  g_autoptr (GByteArray) buf = g_byte_array_new ();
  const guint32 ids[] = { 1, 2 };

  tr_rpcrecord_encode (buf, 9, 1234567, ids, 2, message, sizeof message);
  for (guint i = 0; i < buf->len; i++) {
    g_autofree guint8 *copy = g_memdup2 (buf->data, buf->len);
    TrRpcRecordView view;
    const char *why = NULL;
    copy[i] ^= 0x5a;
    cr_assert_not (tr_rpcrecord_decode (copy, buf->len, 1 << 20, &view, &why), "byte %u flipped, still valid", i);
    cr_assert_not_null (why);
  }
}

Test (tr_rpcrecord, cut_short_and_wrong_shapes_are_rejected)
{
  g_autoptr (GByteArray) buf = g_byte_array_new ();
  const guint32 ids[] = { 1, 2 };
  TrRpcRecordView view;
  const char *why = NULL;

  tr_rpcrecord_encode (buf, 9, 1, ids, 2, message, sizeof message);
  cr_assert_not (tr_rpcrecord_decode (buf->data, buf->len - 1, 1 << 20, &view, &why));
  cr_assert_str_eq (why, "record cut short");
  /* A payload longer than the caller's bound. */
  cr_assert_not (tr_rpcrecord_decode (buf->data, buf->len, 8, &view, &why));
  /* Zero fill (what a preallocated part holds) is never a record. */
  memset (buf->data, 0, buf->len);
  cr_assert_not (tr_rpcrecord_decode (buf->data, buf->len, 1 << 20, &view, &why));
}

Test (tr_rpcrecord, index_entry_round_trip_and_bounds)
{
  guint8 entry[TR_RPCRECORD_ENTRY_SIZE];
  TrRpcIndexEntry in = { G_GUINT64_CONSTANT (0x123456789a), 300, 0xdeadbeef }, out;

  tr_rpcrecord_index_encode (entry, &in);
  cr_assert (tr_rpcrecord_index_decode (entry, 4096, &out));
  cr_assert_eq (out.offset, in.offset);
  cr_assert_eq (out.length, in.length);
  cr_assert_eq (out.checksum, in.checksum);
  cr_assert_not (tr_rpcrecord_index_decode (entry, 299, &out), "longer than a part");
  memset (entry, 0, sizeof entry);
  cr_assert_not (tr_rpcrecord_index_decode (entry, 4096, &out), "an unwritten entry");
}

Test (tr_rpcrecord, list_entry_round_trip_and_every_corrupted_byte_rejected)
{
  guint8 entry[TR_RPCRECORD_ENTRY_SIZE];
  guint64 rpc_id = 0;
  guint32 checksum = 0;

  tr_rpcrecord_list_encode (entry, 77, 0xcafef00d);
  cr_assert (tr_rpcrecord_list_decode (entry, &rpc_id, &checksum));
  cr_assert_eq (rpc_id, 77);
  cr_assert_eq (checksum, 0xcafef00d);
  for (guint i = 0; i < sizeof entry; i++) {
    guint8 copy[TR_RPCRECORD_ENTRY_SIZE];
    memcpy (copy, entry, sizeof copy);
    copy[i] ^= 0x01;
    cr_assert_not (tr_rpcrecord_list_decode (copy, NULL, NULL), "byte %u flipped, still valid", i);
  }
  memset (entry, 0, sizeof entry);
  cr_assert_not (tr_rpcrecord_list_decode (entry, NULL, NULL), "an unwritten entry");
}

Test (tr_rpcrecord, checkpoint_round_trip)
{
  g_autoptr (GByteArray) state = g_byte_array_new ();
  const guint64 heads[] = { 5, 0, 10 };
  g_autoptr (GError) error = NULL;
  TrRpcCheckpoint checkpoint;

  tr_rpcrecord_checkpoint_encode (state, 10, 10 * TR_RPCRECORD_MIN_SIZE + 100, heads, 3);
  cr_assert (tr_rpcrecord_checkpoint_decode (state->data, state->len, &checkpoint, &error), "%s",
             error ? error->message : "");
  cr_assert_eq (checkpoint.rpc_id, 10);
  cr_assert_eq (checkpoint.data_end, 10 * TR_RPCRECORD_MIN_SIZE + 100);
  cr_assert_eq (checkpoint.heads->len, 3);
  for (guint i = 0; i < 3; i++) {
    TrRpcCheckpointHead *head = &g_array_index (checkpoint.heads, TrRpcCheckpointHead, i);
    cr_assert_eq (head->service_id, i);
    cr_assert_eq (head->head, heads[i]);
  }
  tr_rpcrecord_checkpoint_clear (&checkpoint);
  cr_assert_null (checkpoint.heads);
}

/* The checkpoint has no checksum of its own (the RotateFile record around
 * it has): what the decoder checks is its shape and its plausibility. */
Test (tr_rpcrecord, damaged_checkpoints_are_rejected)
{
  g_autoptr (GByteArray) state = g_byte_array_new ();
  const guint64 heads[] = { 5, 2 };
  TrRpcCheckpoint checkpoint;

  tr_rpcrecord_checkpoint_encode (state, 5, 5 * TR_RPCRECORD_MIN_SIZE, heads, 2);
  {
    g_autoptr (GError) error = NULL;
    cr_assert_not (tr_rpcrecord_checkpoint_decode (state->data, state->len - 1, &checkpoint, &error));
    cr_assert (g_error_matches (error, TR_STORAGE_ERROR, TR_STORAGE_ERROR_CORRUPT));
  }
  {
    g_autoptr (GError) error = NULL;
    g_autofree guint8 *copy = g_memdup2 (state->data, state->len);
    copy[0] = 2; /* version */
    cr_assert_not (tr_rpcrecord_checkpoint_decode (copy, state->len, &checkpoint, &error));
    cr_assert (g_error_matches (error, TR_STORAGE_ERROR, TR_STORAGE_ERROR_CORRUPT));
  }
  {
    g_autoptr (GError) error = NULL;
    g_autofree guint8 *copy = g_memdup2 (state->data, state->len);
    tr_put_le64 (copy + 12, 5 * TR_RPCRECORD_MIN_SIZE - 1); /* 5 rpcs cannot fit */
    cr_assert_not (tr_rpcrecord_checkpoint_decode (copy, state->len, &checkpoint, &error));
    cr_assert (g_error_matches (error, TR_STORAGE_ERROR, TR_STORAGE_ERROR_CORRUPT));
  }
  {
    g_autoptr (GError) error = NULL;
    g_autofree guint8 *copy = g_memdup2 (state->data, state->len);
    tr_put_le64 (copy + 24 + 4, 6); /* a list longer than the rpcs */
    cr_assert_not (tr_rpcrecord_checkpoint_decode (copy, state->len, &checkpoint, &error));
    cr_assert (g_error_matches (error, TR_STORAGE_ERROR, TR_STORAGE_ERROR_CORRUPT));
    cr_assert_null (checkpoint.heads);
  }
}

Test (tr_rpcrecord, peek_time_reads_id_and_time_from_the_first_bytes_only)
{
  g_autoptr (GByteArray) buf = g_byte_array_new ();
  const guint32 ids[] = { 3, 9 };
  const guint8 text[] = "hello";
  guint64 rpc_id = 0;
  gint64 time_us = 0;

  tr_rpcrecord_encode (buf, 42, 1234567890123, ids, 2, text, sizeof text);
  cr_assert (tr_rpcrecord_peek_time (buf->data, (guint32) buf->len, &rpc_id, &time_us));
  cr_assert_eq (rpc_id, 42);
  cr_assert_eq (time_us, 1234567890123);
  /* Only the first TR_RPCRECORD_PEEK_SIZE bytes are looked at: a garbled
   * message does not matter (the checksum is not checked). */
  buf->data[buf->len - 1] ^= 0xff;
  cr_assert (tr_rpcrecord_peek_time (buf->data, (guint32) buf->len, &rpc_id, &time_us));
  /* Another record type, a payload shorter than the prefix, zero fill: no. */
  buf->data[4] = 0x4c;
  cr_assert_not (tr_rpcrecord_peek_time (buf->data, (guint32) buf->len, &rpc_id, &time_us));
  buf->data[4] = 0x44;
  tr_put_le32 (buf->data, 8);
  cr_assert_not (tr_rpcrecord_peek_time (buf->data, (guint32) buf->len, &rpc_id, &time_us));
  memset (buf->data, 0, TR_RPCRECORD_PEEK_SIZE);
  cr_assert_not (tr_rpcrecord_peek_time (buf->data, (guint32) buf->len, &rpc_id, &time_us));
}
