/* test_tr_rpcstore_redrive.c - the redrive marks of the RPC store
 * (storage/tr_rpcstore_redrive.c): none at first, added durably (kept
 * across a reopen, per service), a damaged file refused rather than read
 * as "nothing redriven". */
#include <criterion/criterion.h>
#include <string.h>

#include "tr_rpcstore.h"
#include "tr_storage_error.h"
#include "tr_test_util.h"

static const char *const services[] = { "books", "mail", NULL };

static TrRpcStore *
open_store (const char *dir)
{
  TrRpcStoreOptions o = { 0 };
  g_autoptr (GError) error = NULL;
  TrRpcStore *store;

  o.group_file_size = 16 * 1024;
  o.rpc_cache_size = 4 * 1024;
  o.sync_mode = TR_SYNC_ALWAYS;
  o.sync_interval_ms = 10;
  o.checkpoint_interval_ms = 50;
  o.max_message_size = 4 * 1024;
  store = tr_rpcstore_open (tr_io_posix (), dir, &o, services, &error);
  cr_assert_not_null (store, "%s", error != NULL ? error->message : "?");
  return store;
}

static GArray *
list (TrRpcStore *store, guint32 service_id)
{
  g_autoptr (GError) error = NULL;
  GArray *marks = tr_rpcstore_list_redrives (store, service_id, &error);

  cr_assert_not_null (marks, "%s", error != NULL ? error->message : "?");
  return marks;
}

Test (tr_rpcstore_redrive, marks_are_durable_per_service_in_order)
{
  g_autofree char *dir = tr_test_mkdtemp ();
  TrRpcStore *store = open_store (dir);
  TrRedriveMark first[] = { { 0, 7, 1000 }, { 2, 8, 1001 } };
  TrRedriveMark again[] = { { 0, 9, 2000 } };
  g_autoptr (GError) error = NULL;
  g_autoptr (GArray) none = list (store, 0);
  g_autoptr (GArray) marks = NULL;
  g_autoptr (GArray) other = NULL;

  cr_assert_eq (none->len, 0);
  cr_assert (tr_rpcstore_add_redrives (store, 0, first, 2, &error));
  cr_assert (tr_rpcstore_add_redrives (store, 0, again, 1, &error));
  tr_rpcstore_close (store);

  store = open_store (dir);
  marks = list (store, 0);
  cr_assert_eq (marks->len, 3);
  cr_assert_eq (g_array_index (marks, TrRedriveMark, 1).index, 2);
  cr_assert_eq (g_array_index (marks, TrRedriveMark, 1).new_rpc_id, 8);
  cr_assert_eq (g_array_index (marks, TrRedriveMark, 2).index, 0);
  cr_assert_eq (g_array_index (marks, TrRedriveMark, 2).new_rpc_id, 9);
  cr_assert_eq (g_array_index (marks, TrRedriveMark, 2).time_us, 2000);
  other = list (store, 1);
  cr_assert_eq (other->len, 0);
  tr_rpcstore_close (store);
  tr_test_rmdir (dir);
}

Test (tr_rpcstore_redrive, damaged_file_is_refused_not_emptied)
{
  g_autofree char *dir = tr_test_mkdtemp ();
  g_autofree char *path = g_build_filename (dir, "redriven-0", NULL);
  TrRpcStore *store = open_store (dir);
  TrRedriveMark mark = { 3, 4, 5 };
  g_autoptr (GError) error = NULL;

  tr_test_write_file (path, "TRRD\x01\0\0\0" "short", 13);
  cr_assert_null (tr_rpcstore_list_redrives (store, 0, &error));
  cr_assert (g_error_matches (error, TR_STORAGE_ERROR, TR_STORAGE_ERROR_CORRUPT), "%s", error->message);
  cr_assert (strstr (error->message, "redriven-0") != NULL, "%s", error->message);
  g_clear_error (&error);
  cr_assert_not (tr_rpcstore_add_redrives (store, 0, &mark, 1, &error));
  cr_assert (g_error_matches (error, TR_STORAGE_ERROR, TR_STORAGE_ERROR_CORRUPT), "%s", error->message);
  cr_assert_eq (tr_test_file_size (path), 13); /* left as it was for the operator to look at */
  tr_rpcstore_close (store);
  tr_test_rmdir (dir);
}
