/* test_tr_node.c - node role and epoch state machine (router/core/tr_node.h). */
#include "tr_config_error.h"
#include "tr_fault_io.h"
#include "tr_node.h"
#include "tr_router_error.h"
#include "tr_storage_error.h"
#include "tr_test_util.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <glib/gstdio.h>
#include <string.h>

static char *test_dir;
static char *meta_path;

static void
setup (void)
{
  test_dir = tr_test_mkdtemp ();
  meta_path = g_build_filename (test_dir, TR_NODE_META_FILE, NULL);
}

static void
teardown (void)
{
  tr_test_rmdir (test_dir);
  g_clear_pointer (&test_dir, g_free);
  g_clear_pointer (&meta_path, g_free);
}

TestSuite (tr_node, .init = setup, .fini = teardown);

static TrNodeIdentity
identity (TrServerType type)
{
  TrNodeIdentity id = { "node1", type, 1024 * 1024, "router.conf" };
  return id;
}

static TrNode *
open_with (TrIo *io, TrServerType type)
{
  g_autoptr (GError) error = NULL;
  TrNodeIdentity id = identity (type);
  TrNode *node = tr_node_open (io, test_dir, &id, &error);

  cr_assert_not_null (node, "open: %s", error ? error->message : "?");
  return node;
}

static TrNode *
open_ok (TrServerType type)
{
  return open_with (tr_io_posix (), type);
}

static void
assert_range (TrNode *node, guint64 epoch, guint64 first, guint64 last)
{
  g_autoptr (GError) error = NULL;
  guint64 got_first = 0, got_last = 0;

  cr_assert (tr_node_epoch_range (node, epoch, &got_first, &got_last, &error), "range of %" G_GUINT64_FORMAT ": %s",
             epoch, error ? error->message : "?");
  cr_assert_eq (got_first, first, "epoch %" G_GUINT64_FORMAT " first %" G_GUINT64_FORMAT, epoch, got_first);
  cr_assert_eq (got_last, last, "epoch %" G_GUINT64_FORMAT " last %" G_GUINT64_FORMAT, epoch, got_last);
}

/* @error_ptr, not the error: the arguments of a call are evaluated in no
 * set order, so the transition may not have run yet when they are read. */
static void
assert_refused (gboolean ok, GError **error_ptr, const char *expected)
{
  GError *error = *error_ptr;

  cr_assert_not (ok, "transition accepted; expected refusal '%s'", expected);
  cr_assert (g_error_matches (error, TR_ROUTER_ERROR, TR_ROUTER_ERROR_INVALID), "%s", error ? error->message : "-");
  cr_assert (strstr (error->message, expected) != NULL, "'%s' not in: %s", expected, error->message);
}

Test (tr_node, first_start_is_its_configured_role_in_epoch_1)
{
  g_autoptr (TrNode) node = open_ok (TR_SERVER_MASTER);
  g_autoptr (GError) error = NULL;
  guint64 first = 0, last = 0;

  cr_assert_eq (tr_node_get_role (node), TR_SERVER_MASTER);
  cr_assert_str_eq (tr_node_role_to_string (tr_node_get_role (node)), "MASTER");
  cr_assert_eq (tr_node_get_epoch (node), 1);
  cr_assert_not (tr_node_is_fenced (node));
  assert_range (node, 1, 1, G_MAXUINT64);
  cr_assert_not (tr_node_epoch_range (node, 2, &first, &last, &error));
  cr_assert (g_error_matches (error, TR_ROUTER_ERROR, TR_ROUTER_ERROR_NOT_FOUND), "%s", error->message);
  cr_assert (strstr (error->message, "no epoch 2") != NULL, "%s", error->message);
}

Test (tr_node, another_identity_is_refused)
{
  g_autoptr (TrNode) node = open_ok (TR_SERVER_MASTER);
  g_autoptr (GError) error = NULL;
  TrNodeIdentity other = identity (TR_SERVER_MASTER);

  other.server_id = "node2";
  cr_assert_null (tr_node_open (tr_io_posix (), test_dir, &other, &error));
  cr_assert (g_error_matches (error, TR_CONFIG_ERROR, TR_CONFIG_ERROR_INVALID), "%s", error->message);
  cr_assert (strstr (error->message, "belongs to node 'node1'") && strstr (error->message, "server_id = node2"), "%s",
             error->message);
  g_clear_error (&error);
  other = identity (TR_SERVER_MASTER);
  other.group_file_size = 2048 * 1024;
  cr_assert_null (tr_node_open (tr_io_posix (), test_dir, &other, &error));
  cr_assert (strstr (error->message, "group_file_size = 1048576") != NULL, "%s", error->message);
}

Test (tr_node, promote_a_backup_then_fence_persists_across_reopen)
{
  TrNode *node = open_ok (TR_SERVER_BACKUP);
  g_autoptr (GError) error = NULL;

  cr_assert_eq (tr_node_get_role (node), TR_SERVER_BACKUP);
  cr_assert (tr_node_promote (node, 100, &error), "promote: %s", error ? error->message : "?");
  cr_assert_eq (tr_node_get_role (node), TR_SERVER_MASTER);
  cr_assert_eq (tr_node_get_epoch (node), 2);
  assert_range (node, 1, 1, 100);
  assert_range (node, 2, 101, G_MAXUINT64);
  tr_node_free (node);

  /* The identity stays BACKUP (what the configuration says); the role is state. */
  node = open_ok (TR_SERVER_BACKUP);
  cr_assert_eq (tr_node_get_role (node), TR_SERVER_MASTER);
  cr_assert_eq (tr_node_get_epoch (node), 2);
  assert_range (node, 1, 1, 100);
  assert_range (node, 2, 101, G_MAXUINT64);
  cr_assert (tr_node_fence (node, &error), "fence: %s", error ? error->message : "?");
  cr_assert (tr_node_is_fenced (node));
  tr_node_free (node);

  node = open_ok (TR_SERVER_BACKUP);
  cr_assert (tr_node_is_fenced (node));
  cr_assert_eq (tr_node_get_epoch (node), 2);
  tr_node_free (node);
}

Test (tr_node, an_epoch_that_assigned_nothing_has_an_empty_range)
{
  g_autoptr (TrNode) node = open_ok (TR_SERVER_BACKUP);
  g_autoptr (GError) error = NULL;

  /* Promoted with an empty store: epoch 1 assigned no id. */
  cr_assert (tr_node_promote (node, 0, &error), "%s", error ? error->message : "?");
  assert_range (node, 1, 1, 0);
  assert_range (node, 2, 1, G_MAXUINT64);
}

Test (tr_node, invalid_transitions_are_refused_and_change_nothing)
{
  g_autoptr (TrNode) master = open_ok (TR_SERVER_MASTER);
  g_autoptr (GBytes) before = tr_test_read_file (meta_path);
  g_autoptr (GBytes) after = NULL;
  g_autoptr (GError) error = NULL;

  assert_refused (tr_node_promote (master, 5, &error), &error, "it is a MASTER (epoch 1); only a BACKUP can");
  g_clear_error (&error);
  after = tr_test_read_file (meta_path);
  cr_assert (g_bytes_equal (before, after), "a refused promote wrote node.meta");
  cr_assert (tr_node_fence (master, &error), "%s", error ? error->message : "?");
  assert_refused (tr_node_fence (master, &error), &error, "it is a fenced MASTER");
  g_clear_error (&error);
  assert_refused (tr_node_promote (master, 5, &error), &error, "fenced MASTER");
  g_clear_error (&error);
  cr_assert_eq (tr_node_get_epoch (master), 1);
  cr_assert (tr_node_is_fenced (master));
}

Test (tr_node, backup_and_reply_refusals)
{
  g_autoptr (GError) error = NULL;
  TrNode *node = open_ok (TR_SERVER_REPLY);

  assert_refused (tr_node_promote (node, 5, &error), &error, "it is a REPLY");
  g_clear_error (&error);
  assert_refused (tr_node_fence (node, &error), &error, "it is a REPLY");
  g_clear_error (&error);
  tr_node_free (node);
  tr_test_rmdir (test_dir);

  node = open_ok (TR_SERVER_BACKUP);
  assert_refused (tr_node_fence (node, &error), &error, "it is a BACKUP");
  g_clear_error (&error);
  cr_assert (tr_node_promote (node, 50, &error));
  tr_node_free (node);
}

Test (tr_node, promotion_below_the_current_epoch_start_is_refused)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *text = g_strdup_printf ("[node]\nformat_version = 2\nserver_id = node1\nserver_type = BACKUP\n"
                                           "group_file_size = 1048576\nrole = BACKUP\nepoch = 3\nfenced = false\n"
                                           "[epochs]\n1 = 1\n3 = 500\n");
  g_autoptr (TrNode) node = NULL;

  tr_test_write_file (meta_path, text, strlen (text));
  node = open_ok (TR_SERVER_BACKUP);
  assert_range (node, 1, 1, 499);
  assert_range (node, 3, 500, G_MAXUINT64);
  assert_refused (tr_node_promote (node, 400, &error), &error, "epoch 3 already starts at rpc id 500");
  g_clear_error (&error);
  cr_assert (tr_node_promote (node, 499, &error), "%s", error ? error->message : "?");
  assert_range (node, 3, 500, 499);
  assert_range (node, 4, 500, G_MAXUINT64);
}

Test (tr_node, format_1_reads_and_is_rewritten_as_format_2_at_the_first_change)
{
  static const char v1[] = "[node]\nformat_version = 1\nserver_id = node1\nserver_type = MASTER\nepoch = 1\n"
                           "group_file_size = 1048576\n";
  g_autoptr (TrNode) node = NULL;
  g_autoptr (GBytes) now = NULL;
  g_autoptr (GError) error = NULL;

  tr_test_write_file (meta_path, v1, strlen (v1));
  node = open_ok (TR_SERVER_MASTER);
  cr_assert_eq (tr_node_get_role (node), TR_SERVER_MASTER);
  cr_assert_eq (tr_node_get_epoch (node), 1);
  assert_range (node, 1, 1, G_MAXUINT64);
  cr_assert (tr_node_fence (node, &error), "%s", error ? error->message : "?");
  now = tr_test_read_file (meta_path);
  cr_assert (g_strstr_len (g_bytes_get_data (now, NULL), (gssize) g_bytes_get_size (now), "format_version = 2"));
}

Test (tr_node, inconsistent_metadata_is_a_parse_error_naming_the_file)
{
  static const char *const bad[] = {
    "[node]\nformat_version = 2\nserver_id = node1\nserver_type = MASTER\nrole = MASTER\nepoch = 2\n"
    "[epochs]\n2 = 10\n1 = 1\n",
    "[node]\nformat_version = 2\nserver_id = node1\nserver_type = MASTER\nrole = MASTER\nepoch = 5\n"
    "[epochs]\n1 = 1\n",
    "[node]\nformat_version = 2\nserver_id = node1\nserver_type = MASTER\nrole = BOSS\nepoch = 1\n[epochs]\n1 = 1\n",
    "[node]\nformat_version = 3\nserver_id = node1\nserver_type = MASTER\n",
  };

  for (guint i = 0; i < G_N_ELEMENTS (bad); i++) {
    g_autoptr (GError) error = NULL;
    TrNodeIdentity id = identity (TR_SERVER_MASTER);
    tr_test_write_file (meta_path, bad[i], strlen (bad[i]));
    cr_assert_null (tr_node_open (tr_io_posix (), test_dir, &id, &error), "case %u opened", i);
    cr_assert (g_error_matches (error, TR_CONFIG_ERROR, TR_CONFIG_ERROR_PARSE), "case %u: %s", i, error->message);
    cr_assert (strstr (error->message, meta_path) != NULL, "case %u: %s", i, error->message);
  }
}

/* Crash at every write/sync/rename of a promotion (then a power loss that
 * drops or garbles what was not synced): reopening gives the state before
 * or after it, never a mix; a promotion that returned TRUE survives. */
static void
promote_countdown (TrFaultLoss loss)
{
  guint32 seed = tr_test_seed ();
  guint n;

  for (n = 1;; n++) {
    g_autoptr (TrFaultIo) fault = tr_fault_io_new ();
    TrIo *io = tr_fault_io_get_io (fault);
    g_autoptr (TrNode) node = NULL;
    g_autoptr (GError) error = NULL;
    gboolean promoted, fired;

    tr_test_rmdir (test_dir);
    cr_assert_eq (g_mkdir (test_dir, 0700), 0);
    node = open_with (io, TR_SERVER_BACKUP);
    tr_fault_io_arm (fault, TR_FAULT_ALL_MUTATING, n, EIO, FALSE, FALSE);
    promoted = tr_node_promote (node, 100, &error);
    fired = tr_fault_io_fired (fault);
    tr_fault_io_disarm (fault);
    if (!promoted) {
      /* A failed promotion leaves the object as it was. */
      cr_assert_eq (tr_node_get_role (node), TR_SERVER_BACKUP, "n=%u", n);
      cr_assert_eq (tr_node_get_epoch (node), 1, "n=%u", n);
    }
    g_clear_pointer (&node, tr_node_free);
    tr_fault_io_power_loss (fault, loss, seed + n);
    node = open_with (io, TR_SERVER_BACKUP);
    if (tr_node_get_epoch (node) == 1) {
      cr_assert_not (promoted, "n=%u: a promotion that returned TRUE was lost", n);
      cr_assert_eq (tr_node_get_role (node), TR_SERVER_BACKUP, "n=%u", n);
      assert_range (node, 1, 1, G_MAXUINT64);
    } else {
      cr_assert_eq (tr_node_get_epoch (node), 2, "n=%u", n);
      cr_assert_eq (tr_node_get_role (node), TR_SERVER_MASTER, "n=%u", n);
      assert_range (node, 1, 1, 100);
      assert_range (node, 2, 101, G_MAXUINT64);
    }
    if (!fired)
      break;
  }
  cr_assert_gt (n, 3, "the promotion made only %u mutating calls", n);
}

Test (tr_node, crash_at_every_step_of_a_promotion_drop)
{
  promote_countdown (TR_FAULT_LOSS_DROP);
}

Test (tr_node, crash_at_every_step_of_a_promotion_garble)
{
  promote_countdown (TR_FAULT_LOSS_GARBLE);
}
