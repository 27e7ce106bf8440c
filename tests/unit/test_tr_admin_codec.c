/* test_tr_admin_codec.c - the admin service's hand-written Thrift codec
 * (router/admin/tr_admin.c decodes the args, router/admin/tr_admin_calls.c encodes the
 * results) checked against thrift/admin.thrift: every call goes through
 * the c_glib client generated from that file, so a field id or type that
 * differs from the IDL shows up as a value the generated decoder skipped
 * (left at its default) or as a decode error.  Each checked value is
 * therefore one the router cannot produce by default.
 *
 * In one process: a store with three RPCs of service books, the push side
 * (its endpoints point at a closed port and stay in backoff) and the admin
 * thread on a free loopback port, with a token. */
#include <criterion/criterion.h>
#include <string.h>

#include "tr_admin.h"
#include "tr_admin_admin.h"
#include "tr_config.h"
#include "tr_frame.h"
#include "tr_test_util.h"

#include <thrift/c_glib/protocol/thrift_binary_protocol.h>
#include <thrift/c_glib/transport/thrift_framed_transport.h>
#include <thrift/c_glib/transport/thrift_socket.h>

#define TOKEN "codec-token"

typedef struct {
  char *root;
  char *service_path;
  TrConfig *config;
  TrRpcStore *store;
  TrPush *push;
  TrAdmin *admin;
  GBytes *messages[3];
  ThriftSocket *socket;
  ThriftTransport *framed;
  ThriftProtocol *protocol;
  tr_adminAdminIf *client;
  /* Every AdminError received, kept (and so still reachable at exit):
   * unreffing one loses 32 bytes inside g_object_unref, because c_glib's
   * generated finalizers do not chain up (../shared/THRIFT.md, "Leaks"),
   * and LeakSanitizer would count that against this suite. */
  GPtrArray *refusals;
} Fixture;

static Fixture fx;

static void
write_in_root (const char *name, const char *text)
{
  g_autofree char *path = g_build_filename (fx.root, name, NULL);
  tr_test_write_file (path, text, strlen (text));
}

static void
on_commit (gpointer user_data, guint64 rpc_id, const GError *error)
{
  (void) user_data;
  (void) rpc_id;
  cr_assert_null (error, "commit: %s", error ? error->message : "");
}

/* RPC @i of books: log_event with a body that names it. */
static GBytes *
message_of (guint i)
{
  g_autoptr (GByteArray) frame = g_byte_array_new ();
  g_autofree char *body = g_strdup_printf ("%c%c%c%c%c%c%cevent%u%c", TR_TTYPE_STRING, 0, 1, 0, 0, 0, 6, i,
                                           TR_TTYPE_STOP);

  tr_frame_build_call (frame, TR_MSG_CALL, "log_event", 9, 0, (const guint8 *) body, 7 + 6 + 1);
  return g_bytes_new (frame->data + TR_FRAME_LEN_SIZE, frame->len - TR_FRAME_LEN_SIZE);
}

static void
setup (void)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *router_path = NULL;
  g_autofree char *services = NULL;
  const char *names[] = { "books", NULL };
  TrRpcStoreOptions options = { 0 };
  guint32 books;

  fx.root = tr_test_mkdtemp ();
  fx.refusals = g_ptr_array_new ();
  services = g_build_filename (fx.root, "services", NULL);
  cr_assert_eq (g_mkdir_with_parents (services, 0700), 0);
  write_in_root ("token", TOKEN "\n");
  write_in_root ("router.conf", "[router]\nserver_id = codec-node\nadmin_listen = 127.0.0.1:0\n"
                                "admin_token_file = token\ndata_dir = data\ngroup_file_size = 1M\n"
                                "rpc_cache_size = 3M\nservices = books\n");
  write_in_root ("services/books.conf", "[service]\nrpcs = log_event, fire\nretry_backoff_ms = 1000\n"
                                        "[endpoint a]\nport = 1\n[endpoint b]\nport = 1\n");
  router_path = g_build_filename (fx.root, "router.conf", NULL);
  fx.service_path = g_build_filename (fx.root, "services", "books.conf", NULL);
  fx.config = tr_config_load (router_path, &error);
  cr_assert_not_null (fx.config, "%s", error ? error->message : "");
  options.group_file_size = fx.config->group_file_size;
  options.rpc_cache_size = fx.config->rpc_cache_size;
  options.sync_mode = TR_SYNC_NONE;
  options.sync_interval_ms = 10;
  options.checkpoint_interval_ms = 50;
  options.max_message_size = fx.config->max_frame_size;
  fx.store = tr_rpcstore_open (tr_io_posix (), fx.config->data_dir, &options, names, &error);
  cr_assert_not_null (fx.store, "%s", error ? error->message : "");
  books = (guint32) tr_rpcstore_service_id (fx.store, "books");
  for (guint i = 0; i < 3; i++) {
    fx.messages[i] = message_of (i + 1);
    tr_rpcstore_submit (fx.store, fx.messages[i], &books, 1, on_commit, NULL);
  }
  fx.push = tr_push_new (fx.store, fx.config, &error);
  cr_assert_not_null (fx.push, "%s", error ? error->message : "");
  fx.admin = tr_admin_new (fx.config, fx.store, fx.push, NULL, NULL, &error);
  cr_assert_not_null (fx.admin, "%s", error ? error->message : "");
  tr_admin_set_node_state (fx.admin, 7, TRUE);
  fx.socket = g_object_new (THRIFT_TYPE_SOCKET, "hostname", "127.0.0.1", "port", tr_admin_get_port (fx.admin), NULL);
  fx.framed = g_object_new (THRIFT_TYPE_FRAMED_TRANSPORT, "transport", fx.socket, NULL);
  fx.protocol = g_object_new (THRIFT_TYPE_BINARY_PROTOCOL, "transport", fx.framed, NULL);
  fx.client = g_object_new (TR_ADMIN_TYPE_ADMIN_CLIENT, "input_protocol", fx.protocol, "output_protocol",
                            fx.protocol, NULL);
  cr_assert (thrift_transport_open (fx.framed, &error), "%s", error ? error->message : "");
}

static void
teardown (void)
{
  thrift_transport_close (fx.framed, NULL);
  g_object_unref (fx.client);
  g_object_unref (fx.protocol);
  g_object_unref (fx.framed);
  g_object_unref (fx.socket);
  tr_admin_free (fx.admin);
  tr_push_free (fx.push);
  tr_rpcstore_close (fx.store);
  tr_config_free (fx.config);
  for (guint i = 0; i < 3; i++)
    g_bytes_unref (fx.messages[i]);
  tr_test_rmdir (fx.root);
  g_free (fx.root);
  g_free (fx.service_path);
}

/* The endpoints of books, as the generated decoder read them. */
static GPtrArray *
endpoints (void)
{
  g_autoptr (GError) error = NULL;
  tr_adminAdminError *refusal = NULL;
  GPtrArray *list = g_ptr_array_new_with_free_func (g_object_unref);

  cr_assert (tr_admin_admin_if_endpoints (fx.client, &list, TOKEN, "books", &refusal, &error), "%s",
             error ? error->message : refusal ? refusal->message : "?");
  cr_assert_eq (list->len, 2);
  return list;
}

static tr_adminEndpointInfo *
endpoint_b (GPtrArray *list)
{
  tr_adminEndpointInfo *b = g_ptr_array_index (list, 1);

  cr_assert_str_eq (b->endpoint, "b");
  return b;
}

/* A call refused with AdminError: its code (field 1) and message (2). */
static void
assert_refused (gboolean ok, tr_adminAdminError *refusal, GError **error, gint32 code, const char *needle)
{
  cr_assert_not (ok, "call accepted");
  /* c_glib also sets @error for a declared exception; the AdminError decides. */
  cr_assert_not_null (refusal, "not an AdminError: %s", *error != NULL ? (*error)->message : "");
  g_clear_error (error);
  cr_assert_eq (refusal->code, code, "code %d: %s", refusal->code, refusal->message);
  cr_assert (strstr (refusal->message, needle) != NULL, "'%s' not in: %s", needle, refusal->message);
  g_ptr_array_add (fx.refusals, refusal);
}

Test (tr_admin_codec, status_fields, .init = setup, .fini = teardown, .timeout = 30)
{
  g_autoptr (GError) error = NULL;
  tr_adminAdminError *refusal = NULL;
  tr_adminNodeStatus *status = g_object_new (TR_ADMIN_TYPE_NODE_STATUS, NULL);

  cr_assert (tr_admin_admin_if_status (fx.client, &status, TOKEN, &refusal, &error), "%s",
             error ? error->message : "?");
  cr_assert_str_eq (status->server_id, "codec-node");
  cr_assert_str_eq (status->server_type, "MASTER");
  cr_assert_eq (status->epoch, 7);
  cr_assert (status->fenced);
  cr_assert_eq (status->head_rpc_id, 3);
  cr_assert_gt (status->store_bytes, 0);
  cr_assert_geq (status->store_parts, 1);
  cr_assert_eq (status->cache_rpcs, 3);
  /* Three small messages, in a cache of most of rpc_cache_size (the block
   * cache takes the rest): far apart, so two swapped ids would show. */
  cr_assert (status->cache_bytes > 0 && status->cache_bytes < 4096, "%" G_GINT64_FORMAT, status->cache_bytes);
  cr_assert (status->cache_limit_bytes > (1 << 20) && status->cache_limit_bytes <= (3 << 20), "%" G_GINT64_FORMAT,
             status->cache_limit_bytes);
  g_object_unref (status);
}

Test (tr_admin_codec, services_fields, .init = setup, .fini = teardown, .timeout = 30)
{
  g_autoptr (GError) error = NULL;
  tr_adminAdminError *refusal = NULL;
  g_autoptr (GPtrArray) list = g_ptr_array_new_with_free_func (g_object_unref);
  tr_adminServiceInfo *books;

  cr_assert (tr_admin_admin_if_services (fx.client, &list, TOKEN, &refusal, &error), "%s",
             error ? error->message : "?");
  cr_assert_eq (list->len, 1);
  books = g_ptr_array_index (list, 0);
  cr_assert_str_eq (books->name, "books");
  cr_assert_eq (books->rpcs->len, 2);
  cr_assert_str_eq (g_ptr_array_index (books->rpcs, 0), "log_event");
  cr_assert_str_eq (g_ptr_array_index (books->rpcs, 1), "fire");
  cr_assert_eq (books->head_seqid, 3);
  cr_assert_eq (books->first_seqid, 1);
  cr_assert_eq (books->endpoints, 2);
}

/* set_stop_send (args 2, 3, 4), skip (4, 5; result i64), rewind (4) and the
 * EndpointInfo fields that show their effect. */
Test (tr_admin_codec, endpoint_calls_and_fields, .init = setup, .fini = teardown, .timeout = 30)
{
  g_autoptr (GError) error = NULL;
  tr_adminAdminError *refusal = NULL;
  g_autoptr (GPtrArray) before = NULL;
  g_autoptr (GPtrArray) stopped = NULL;
  g_autoptr (GPtrArray) skipped = NULL;
  g_autoptr (GPtrArray) rewound = NULL;
  g_autofree char *file = NULL;
  tr_adminEndpointInfo *b;
  gint64 next = 0;

  before = endpoints ();
  b = endpoint_b (before);
  cr_assert_str_eq (b->service_name, "books");
  cr_assert_str_eq (((tr_adminEndpointInfo *) g_ptr_array_index (before, 0))->endpoint, "a");
  cr_assert_eq (b->head_seqid, 3);
  cr_assert_eq (b->lag, 3);
  cr_assert_not (b->stop_send);
  cr_assert_gt (b->lag_bytes, 0);

  cr_assert (tr_admin_admin_if_set_stop_send (fx.client, TOKEN, "books", "b", TRUE, &refusal, &error), "%s",
             error ? error->message : refusal ? refusal->message : "?");
  stopped = endpoints ();
  b = endpoint_b (stopped);
  cr_assert (b->stop_send);
  cr_assert_str_eq (b->state, "STOPPED");
  cr_assert_not (((tr_adminEndpointInfo *) g_ptr_array_index (stopped, 0))->stop_send, "a stopped instead of b");
  cr_assert (g_file_get_contents (fx.service_path, &file, NULL, NULL));
  cr_assert (strstr (file, "[endpoint b]\nport = 1\nstop_send = true\n") != NULL, "%s", file);

  cr_assert (tr_admin_admin_if_skip (fx.client, &next, TOKEN, "books", "b", 0, 2, &refusal, &error), "%s",
             error ? error->message : refusal ? refusal->message : "?");
  cr_assert_eq (next, 3);
  skipped = endpoints ();
  cr_assert_eq (endpoint_b (skipped)->acked_seqid, 2);
  cr_assert_eq (endpoint_b (skipped)->lag, 1);

  cr_assert (tr_admin_admin_if_rewind (fx.client, TOKEN, "books", "b", 2, &refusal, &error), "%s",
             error ? error->message : refusal ? refusal->message : "?");
  rewound = endpoints ();
  cr_assert_eq (endpoint_b (rewound)->acked_seqid, 1);
}

Test (tr_admin_codec, dump_returns_the_stored_bytes, .init = setup, .fini = teardown, .timeout = 30)
{
  g_autoptr (GError) error = NULL;
  tr_adminAdminError *refusal = NULL;
  GByteArray *message = NULL;
  gsize len;
  const guint8 *expected = g_bytes_get_data (fx.messages[1], &len);

  cr_assert (tr_admin_admin_if_dump (fx.client, &message, TOKEN, 2, &refusal, &error), "%s",
             error ? error->message : "?");
  cr_assert_eq (message->len, len);
  cr_assert_eq (memcmp (message->data, expected, len), 0);
  g_byte_array_unref (message);
}

Test (tr_admin_codec, digest_is_the_stores_and_refuses_ids_not_stored, .init = setup, .fini = teardown, .timeout = 30)
{
  g_autoptr (GError) error = NULL;
  tr_adminAdminError *refusal = NULL;
  tr_adminRangeDigest *digest = g_object_new (TR_ADMIN_TYPE_RANGE_DIGEST, NULL);
  guint64 count = 0, expected = 0;

  cr_assert (tr_rpcstore_digest (fx.store, 2, 3, &count, &expected, &error), "%s", error ? error->message : "?");
  cr_assert (tr_admin_admin_if_digest (fx.client, &digest, TOKEN, 2, 3, &refusal, &error), "%s",
             error ? error->message : "?");
  cr_assert_eq (digest->from_id, 2);
  cr_assert_eq (digest->to_id, 3);
  cr_assert_eq (digest->count, 2);
  cr_assert_eq ((guint64) digest->digest, expected);
  cr_assert_not (tr_admin_admin_if_digest (fx.client, &digest, TOKEN, 2, 9, &refusal, &error));
  cr_assert_not_null (refusal);
  cr_assert_eq (refusal->code, TR_ADMIN_CODE_OUT_OF_RANGE);
  cr_assert (strstr (refusal->message, "not stored") != NULL, "%s", refusal->message);
  g_object_unref (refusal);
  g_object_unref (digest);
}

/* AdminError {1: code, 2: message} in result field 1, and the argument
 * fields each refusal depends on. */
Test (tr_admin_codec, refusals, .init = setup, .fini = teardown, .timeout = 30)
{
  GError *error = NULL;
  tr_adminAdminError *refusal = NULL;
  GByteArray *message = NULL;
  GPtrArray *list = g_ptr_array_new_with_free_func (g_object_unref);
  gboolean ok;

  ok = tr_admin_admin_if_dump (fx.client, &message, TOKEN, 99, &refusal, &error);
  assert_refused (ok, refusal, &error, 3, "rpc 99 does not exist (head is 3)");
  refusal = NULL;
  ok = tr_admin_admin_if_dead_letters (fx.client, &list, TOKEN, "nope", 0, 10, &refusal, &error);
  assert_refused (ok, refusal, &error, 1, "no service 'nope'");
  refusal = NULL;
  ok = tr_admin_admin_if_dead_letters (fx.client, &list, TOKEN, "books", -1, 10, &refusal, &error);
  assert_refused (ok, refusal, &error, 3, "from -1 max 10");
  refusal = NULL;
  ok = tr_admin_admin_if_dead_letters (fx.client, &list, TOKEN, "books", 0, 20000, &refusal, &error);
  assert_refused (ok, refusal, &error, 3, "max 20000");
  refusal = NULL;
  ok = tr_admin_admin_if_set_stop_send (fx.client, TOKEN, "books", "zz", TRUE, &refusal, &error);
  assert_refused (ok, refusal, &error, 2, "no endpoint 'zz'");
  refusal = NULL;
  ok = tr_admin_admin_if_skip (fx.client, NULL, TOKEN, "books", "a", 5, 1, &refusal, &error);
  assert_refused (ok, refusal, &error, 3, "skip by 1 (with to_seqid 5)");
  refusal = NULL;
  ok = tr_admin_admin_if_endpoints (fx.client, &list, "wrong", "books", &refusal, &error);
  assert_refused (ok, refusal, &error, 4, "not authorised");
  g_ptr_array_unref (list);
}

Test (tr_admin_codec, dead_letters_and_reload_lists, .init = setup, .fini = teardown, .timeout = 30)
{
  g_autoptr (GError) error = NULL;
  tr_adminAdminError *refusal = NULL;
  g_autoptr (GPtrArray) letters = g_ptr_array_new_with_free_func (g_object_unref);
  g_autoptr (GPtrArray) changes = g_ptr_array_new_with_free_func (g_free);

  cr_assert (tr_admin_admin_if_dead_letters (fx.client, &letters, TOKEN, "books", 0, 10, &refusal, &error), "%s",
             error ? error->message : refusal ? refusal->message : "?");
  cr_assert_eq (letters->len, 0);
  write_in_root ("services/books.conf", "[service]\nrpcs = log_event, fire\nretry_backoff_ms = 1000\n"
                                        "[endpoint a]\nport = 1\n[endpoint b]\nport = 1\n[endpoint c]\nport = 1\n");
  cr_assert (tr_admin_admin_if_reload (fx.client, &changes, TOKEN, &refusal, &error), "%s",
             error ? error->message : refusal ? refusal->message : "?");
  cr_assert_eq (changes->len, 1);
  cr_assert (g_str_has_prefix (g_ptr_array_index (changes, 0), "endpoint books/c added at 127.0.0.1:1"), "%s",
             (char *) g_ptr_array_index (changes, 0));
}

/* rpc_id_of, redrive (Redriven fields) and DeadLetter.redriven_rpc_id, as
 * the generated client reads them; dead letters written into the store
 * directly. */
Test (tr_admin_codec, redrive_and_rpc_id_of, .init = setup, .fini = teardown, .timeout = 30)
{
  g_autoptr (GError) error = NULL;
  tr_adminAdminError *refusal = NULL;
  g_autoptr (GPtrArray) done = g_ptr_array_new_with_free_func (g_object_unref);
  g_autoptr (GPtrArray) letters = g_ptr_array_new_with_free_func (g_object_unref);
  guint32 books = (guint32) tr_rpcstore_service_id (fx.store, "books");
  tr_adminRedriven *r;
  gint64 rpc_id = 0;
  gboolean ok;

  cr_assert (tr_admin_admin_if_rpc_id_of (fx.client, &rpc_id, TOKEN, "books", 2, &refusal, &error), "%s",
             error ? error->message : refusal ? refusal->message : "?");
  cr_assert_eq (rpc_id, 2);
  ok = tr_admin_admin_if_rpc_id_of (fx.client, &rpc_id, TOKEN, "books", 9, &refusal, &error);
  assert_refused (ok, refusal, &error, 3, "books has no seqid 9 stored (stored: 1..3)");
  refusal = NULL;
  ok = tr_admin_admin_if_redrive (fx.client, &done, TOKEN, "books", 0, -1, FALSE, &refusal, &error);
  assert_refused (ok, refusal, &error, 3, "books has no dead letter 0");
  refusal = NULL;

  cr_assert (tr_rpcstore_add_dead_letter (fx.store, books, 2, 2, "refused", &error), "%s", error->message);
  cr_assert (tr_rpcstore_add_dead_letter (fx.store, books, 2, 2, "refused by another endpoint", &error));
  cr_assert (tr_admin_admin_if_redrive (fx.client, &done, TOKEN, "books", 0, 1, FALSE, &refusal, &error), "%s",
             error ? error->message : refusal ? refusal->message : "?");
  cr_assert_eq (done->len, 2);
  r = g_ptr_array_index (done, 1);
  /* One copy for both dead letters of rpc 2: rpc 4, books seqid 4. */
  cr_assert (r->index == 1 && r->seqid == 2 && r->rpc_id == 2 && r->new_rpc_id == 4 && r->new_seqid == 4
                 && r->before_rpc_id == 0,
             "%" G_GINT64_FORMAT " %" G_GINT64_FORMAT " %" G_GINT64_FORMAT, r->index, r->new_rpc_id, r->new_seqid);
  cr_assert_eq (((tr_adminRedriven *) g_ptr_array_index (done, 0))->new_rpc_id, 4);
  cr_assert (tr_admin_admin_if_dead_letters (fx.client, &letters, TOKEN, "books", 0, 10, &refusal, &error), "%s",
             error ? error->message : refusal ? refusal->message : "?");
  cr_assert_eq (((tr_adminDeadLetter *) g_ptr_array_index (letters, 0))->redriven_rpc_id, 4);
  g_ptr_array_set_size (done, 0);
  cr_assert (tr_admin_admin_if_redrive (fx.client, &done, TOKEN, "books", 1, -1, FALSE, &refusal, &error), "%s",
             error ? error->message : refusal ? refusal->message : "?");
  r = g_ptr_array_index (done, 0);
  cr_assert (r->new_rpc_id == 0 && r->new_seqid == 0 && r->before_rpc_id == 4);
  cr_assert_eq (tr_rpcstore_head (fx.store), 4);
}
