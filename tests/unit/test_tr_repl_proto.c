/* test_tr_repl_proto.c - the replication messages (router/repl/tr_repl_proto.h):
 * what the master builds the replica reads back field for field, the
 * answers likewise, and a batch whose list claims more records than it
 * holds is refused before anything is allocated for them. */
#include <criterion/criterion.h>
#include <string.h>

#include "tr_io.h"
#include "tr_repl_proto.h"
#include "tr_test_util.h"

static const char *const services[] = { "books", "mail", NULL };

static TrRpcStore *
open_store (char **dir_out)
{
  TrRpcStoreOptions o = { .group_file_size = 1 << 20, .rpc_cache_size = 1 << 16, .sync_mode = TR_SYNC_NONE,
                          .sync_interval_ms = 10, .checkpoint_interval_ms = 1000, .max_message_size = 1 << 16 };
  g_autoptr (GError) error = NULL;
  TrRpcStore *store;

  *dir_out = tr_test_mkdtemp ();
  store = tr_rpcstore_open (tr_io_posix (), *dir_out, &o, services, &error);
  cr_assert_not_null (store, "%s", error ? error->message : "");
  return store;
}

/* The args struct of a framed message in @out: its header parsed. */
static const guint8 *
body_of (const GByteArray *out, gsize *len_out, const char *name)
{
  TrMsgHeader header;
  guint32 frame_len = 0;

  cr_assert_eq (tr_frame_next (out->data, out->len, 1 << 24, &frame_len), TR_FRAME_OK);
  cr_assert_eq (frame_len + TR_FRAME_LEN_SIZE, out->len);
  cr_assert_eq (tr_frame_parse_header (out->data + 4, frame_len, &header), TR_FRAME_OK);
  cr_assert_eq (header.name_len, strlen (name));
  cr_assert_eq (memcmp (header.name, name, header.name_len), 0);
  *len_out = frame_len - header.body_offset;
  return out->data + 4 + header.body_offset;
}

Test (tr_repl_proto, hello_round_trip)
{
  g_autoptr (GByteArray) out = g_byte_array_new ();
  TrReplHello hello = { 0 }, back = { 0 };
  TrReplService *service = g_new0 (TrReplService, 1);
  const guint8 *body;
  gsize len;

  hello.server_id = g_strdup ("m1");
  hello.epoch = 3;
  hello.head = 1234567890123ull;
  hello.producer_address = g_strdup ("127.0.0.1:9090");
  hello.group_file_size = 1 << 20;
  hello.services = g_ptr_array_new_with_free_func (tr_repl_service_free);
  service->name = g_strdup ("books");
  service->store_id = 7;
  service->rpcs = g_ptr_array_new_with_free_func (g_free);
  g_ptr_array_add (service->rpcs, g_strdup ("log_event"));
  g_ptr_array_add (service->rpcs, g_strdup ("fire"));
  g_ptr_array_add (hello.services, service);
  tr_repl_build_hello (out, 42, &hello);
  body = body_of (out, &len, TR_REPL_METHOD_HELLO);
  cr_assert_eq (tr_repl_parse_hello (body, len, &back), TR_FRAME_OK);
  cr_assert_str_eq (back.server_id, "m1");
  cr_assert_eq (back.epoch, 3);
  cr_assert_eq (back.head, 1234567890123ull);
  cr_assert_str_eq (back.producer_address, "127.0.0.1:9090");
  cr_assert_eq (back.group_file_size, 1 << 20);
  cr_assert_eq (back.services->len, 1);
  service = g_ptr_array_index (back.services, 0);
  cr_assert_str_eq (service->name, "books");
  cr_assert_eq (service->store_id, 7);
  cr_assert_eq (service->rpcs->len, 2);
  cr_assert_str_eq (g_ptr_array_index (service->rpcs, 1), "fire");
  /* A hello without its epoch is not one. */
  tr_repl_hello_clear (&back);
  cr_assert_eq (tr_repl_parse_hello ((const guint8 *) "\x00", 1, &back), TR_FRAME_BAD_DATA);
  tr_repl_hello_clear (&hello);
  tr_repl_hello_clear (&back);
}

Test (tr_repl_proto, append_round_trip_and_answers)
{
  g_autofree char *dir = NULL;
  TrRpcStore *store = open_store (&dir);
  g_autoptr (GByteArray) out = g_byte_array_new ();
  g_autoptr (GPtrArray) back = NULL;
  TrRpcStoreRecord one = { 0 }, two = { 0 };
  TrRpcStoreRecord *records[] = { &one, &two };
  guint32 ids_one[] = { 0, 1 };
  guint64 epoch = 0, first = 0, source_head = 0, source_keeps_from = 0, head = 0, answer_epoch = 0;
  gboolean refused_flag = TRUE, has_digest = FALSE;
  guint64 digest = 0;
  TrReplRefused refused = { TR_REPL_REFUSED_NOT_CONTINUOUS, (char *) "batch starts at 9", 7, 2 };
  TrReplRefused got = { 0 };
  const guint8 *body;
  gsize len;
  TrReply reply;
  char *server_id = NULL;

  one = (TrRpcStoreRecord) { 10, 1700000000000001, g_bytes_new_static ("hello", 5), ids_one, 2 };
  two = (TrRpcStoreRecord) { 11, 1700000000000002, g_bytes_new_static ("", 0), NULL, 0 };
  tr_repl_build_append (out, 5, 2, records, 2, 99, 4);
  body = body_of (out, &len, TR_REPL_METHOD_APPEND);
  cr_assert_eq (tr_repl_parse_append (store, body, len, &epoch, &first, &back, &source_head, &source_keeps_from),
                TR_FRAME_OK);
  cr_assert_eq (source_keeps_from, 4);
  cr_assert_eq (epoch, 2);
  cr_assert_eq (first, 10);
  cr_assert_eq (source_head, 99);
  cr_assert_eq (back->len, 2);
  {
    TrRpcStoreRecord *r = g_ptr_array_index (back, 0);
    cr_assert_eq (r->rpc_id, 10);
    cr_assert_eq (r->commit_time_us, 1700000000000001);
    cr_assert_eq (g_bytes_get_size (r->message), 5);
    cr_assert_eq (memcmp (g_bytes_get_data (r->message, NULL), "hello", 5), 0);
    cr_assert_eq (r->n_services, 2);
    cr_assert_eq (r->service_ids[1], 1);
    r = g_ptr_array_index (back, 1);
    cr_assert_eq (r->rpc_id, 11);
    cr_assert_eq (r->n_services, 0);
  }
  /* A list claiming a thousand records in a few bytes: refused. */
  {
    g_autoptr (GPtrArray) none = NULL;
    static const guint8 lie[] = { 0x0a, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0x0a, 0, 2, 0, 0, 0, 0, 0, 0, 0, 1,
                                  0x0f, 0, 3, 0x0c, 0, 0, 0x03, 0xe8, 0 };
    cr_assert_neq (tr_repl_parse_append (store, lie, sizeof lie, &epoch, &first, &none, &source_head, &source_keeps_from),
                   TR_FRAME_OK);
  }
  g_byte_array_set_size (out, 0);
  tr_repl_build_append_reply (out, 5, 11);
  cr_assert_eq (tr_frame_parse_reply (out->data + 4, out->len - 4, &reply), TR_FRAME_OK);
  cr_assert_eq (tr_repl_parse_result (reply.body, reply.body_len, FALSE, &head, &answer_epoch, NULL, NULL, NULL,
                                      &refused_flag, &got), TR_FRAME_OK);
  cr_assert_not (refused_flag);
  cr_assert_eq (head, 11);
  g_byte_array_set_size (out, 0);
  tr_repl_build_hello_reply (out, 1, "b1", 8, 2, TRUE, G_GUINT64_CONSTANT (0xfedcba9876543210));
  cr_assert_eq (tr_frame_parse_reply (out->data + 4, out->len - 4, &reply), TR_FRAME_OK);
  cr_assert_eq (tr_repl_parse_result (reply.body, reply.body_len, TRUE, &head, &answer_epoch, &server_id, &digest,
                                      &has_digest, &refused_flag, &got), TR_FRAME_OK);
  cr_assert_str_eq (server_id, "b1");
  cr_assert_eq (head, 8);
  cr_assert_eq (answer_epoch, 2);
  cr_assert (has_digest);
  cr_assert_eq (digest, G_GUINT64_CONSTANT (0xfedcba9876543210));
  g_clear_pointer (&server_id, g_free);
  g_byte_array_set_size (out, 0);
  tr_repl_build_hello_reply (out, 1, "b1", 0, 2, FALSE, 0);
  cr_assert_eq (tr_frame_parse_reply (out->data + 4, out->len - 4, &reply), TR_FRAME_OK);
  cr_assert_eq (tr_repl_parse_result (reply.body, reply.body_len, TRUE, &head, &answer_epoch, &server_id, &digest,
                                      &has_digest, &refused_flag, &got), TR_FRAME_OK);
  cr_assert_not (has_digest);
  g_byte_array_set_size (out, 0);
  tr_repl_build_refused (out, TR_REPL_METHOD_APPEND, 6, &refused);
  cr_assert_eq (tr_frame_parse_reply (out->data + 4, out->len - 4, &reply), TR_FRAME_OK);
  cr_assert_eq (tr_repl_parse_result (reply.body, reply.body_len, FALSE, &head, &answer_epoch, NULL, NULL, NULL,
                                      &refused_flag, &got), TR_FRAME_OK);
  cr_assert (refused_flag);
  cr_assert_eq (got.code, TR_REPL_REFUSED_NOT_CONTINUOUS);
  cr_assert_str_eq (got.reason, "batch starts at 9");
  cr_assert_eq (got.head, 7);
  cr_assert_eq (got.epoch, 2);
  tr_repl_refused_clear (&got);
  g_free (server_id);
  g_bytes_unref (one.message);
  g_bytes_unref (two.message);
  tr_rpcstore_close (store);
  tr_test_rmdir (dir);
}
