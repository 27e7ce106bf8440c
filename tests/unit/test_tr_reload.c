/* test_tr_reload.c - the reload's comparison of two configurations
 * (tr_reload_check_router_keys, tr_reload_describe; router/admin/tr_reload.h)
 * and the typed [router] diff beneath it (tr_config_diff_router).  The
 * applying half (store, push, ingress) runs in tests/integration/test_reload.py. */
#include <criterion/criterion.h>
#include <string.h>

#include "tr_config.h"
#include "tr_reload.h"
#include "tr_test_util.h"

/* router.conf in a temp dir, loaded twice: "running" then "loaded". */
typedef struct {
  char *root;
  char *router_path;
} Fixture;

static Fixture fx;

static void
setup (void)
{
  g_autofree char *services = NULL;

  fx.root = tr_test_mkdtemp ();
  services = g_build_filename (fx.root, "services", NULL);
  cr_assert_eq (g_mkdir_with_parents (services, 0700), 0);
  fx.router_path = g_build_filename (fx.root, "router.conf", NULL);
}

static void
teardown (void)
{
  tr_test_rmdir (fx.root);
  g_free (fx.root);
  g_free (fx.router_path);
}

static void
write_in_root (const char *name, const char *text)
{
  g_autofree char *path = g_build_filename (fx.root, name, NULL);
  tr_test_write_file (path, text, strlen (text));
}

/* Writes router.conf ([router] + @router_keys) and loads it. */
static TrConfig *
load_router (const char *router_keys)
{
  g_autofree char *text = g_strconcat ("[router]\n", router_keys, NULL);
  g_autoptr (GError) error = NULL;
  TrConfig *config;

  write_in_root ("router.conf", text);
  config = tr_config_load (fx.router_path, &error);
  cr_assert_not_null (config, "load failed: %s\n%s", error ? error->message : "?", text);
  return config;
}

/* The restart refusal of @running -> @loaded: NULL when accepted. */
static char *
refusal (const TrConfig *running, const TrConfig *loaded)
{
  g_autoptr (GError) error = NULL;

  if (tr_reload_check_router_keys (running, loaded, &error))
    return NULL;
  cr_assert (g_error_matches (error, TR_CONFIG_ERROR, TR_CONFIG_ERROR_RESTART), "%s", error->message);
  return g_strdup (error->message);
}

/* The issue-12 defect: an unset admin_token_file was a comment in the
 * serialized text the reload compared, so adding one was accepted
 * silently while the admin port went on without a token. */
Test (tr_reload, adding_admin_token_file_is_refused_by_name, .init = setup, .fini = teardown)
{
  g_autoptr (TrConfig) running = load_router ("");
  g_autoptr (TrConfig) loaded = NULL;
  g_autofree char *message = NULL;

  write_in_root ("token", "s3cret\n");
  loaded = load_router ("admin_token_file = token\n");
  message = refusal (running, loaded);
  cr_assert_not_null (message, "adding admin_token_file was accepted");
  cr_assert (strstr (message, "admin_token_file = ") != NULL && strstr (message, "(running: not set)") != NULL,
             "%s", message);
  cr_assert (strstr (message, "restart") != NULL, "%s", message);
  /* ... and removing it again, the other direction. */
  g_free (message);
  message = refusal (loaded, running);
  cr_assert (message != NULL && strstr (message, "admin_token_file = not set (running: ") != NULL, "%s",
             message ? message : "accepted");
}

/* Every [router] key but services, changed alone, is refused naming it. */
Test (tr_reload, every_router_key_needs_a_restart, .init = setup, .fini = teardown)
{
  static const char *const changed[][2] = {
    { "server_id", "server_id = other\n" },
    { "listen", "listen = 127.0.0.1:9190\n" },
    { "admin_listen", "admin_listen = 127.0.0.1:9191\n" },
    { "admin_token_file", "admin_token_file = token\n" },
    { "admin_allow_insecure", "admin_allow_insecure = true\n" },
    { "data_dir", "data_dir = ./elsewhere\n" },
    { "sync_mode", "sync_mode = none\n" },
    { "sync_interval_ms", "sync_interval_ms = 11\n" },
    { "rpc_cache_size", "rpc_cache_size = 1M\n" },
    { "group_file_size", "group_file_size = 1G\n" },
    { "max_frame_size", "max_frame_size = 1M\n" },
    { "state_flush_ms", "state_flush_ms = 7\n" },
    { "max_connections", "max_connections = 9\n" },
  };
  g_autoptr (TrConfig) running = NULL;

  write_in_root ("token", "s3cret\n");
  running = load_router ("");
  for (guint i = 0; i < G_N_ELEMENTS (changed); i++) {
    g_autoptr (TrConfig) loaded = load_router (changed[i][1]);
    g_autofree char *message = refusal (running, loaded);
    g_autofree char *needle = g_strconcat ("] ", changed[i][0], " = ", NULL);
    cr_assert_not_null (message, "%s changed and accepted", changed[i][0]);
    cr_assert (strstr (message, needle) != NULL, "'%s' not in: %s", needle, message);
  }
}

/* server_type has one accepted value today, so it is checked on the diff. */
Test (tr_reload, diff_router_compares_typed_values, .init = setup, .fini = teardown)
{
  g_autoptr (TrConfig) running = load_router ("max_frame_size = 16000K\nlisten = 127.0.0.1:9090\n");
  g_autoptr (TrConfig) same = load_router ("max_frame_size = 16384000\nlisten = 127.0.0.1:09090\n");
  g_autoptr (TrConfig) other = load_router ("sync_mode = none\n");
  g_autoptr (GPtrArray) none = tr_config_diff_router (running, same);
  g_autoptr (GPtrArray) one = NULL;
  const TrConfigKeyChange *change;

  /* The same values written differently are no change. */
  cr_assert_eq (none->len, 0, "first: %s", none->len > 0 ? ((TrConfigKeyChange *) none->pdata[0])->key : "");
  other->server_type = TR_SERVER_BACKUP;
  one = tr_config_diff_router (running, other);
  cr_assert_eq (one->len, 2);
  change = g_ptr_array_index (one, 0);
  cr_assert_str_eq (change->key, "server_type");
  cr_assert_str_eq (change->running, "MASTER");
  cr_assert_str_eq (change->loaded, "BACKUP");
  change = g_ptr_array_index (one, 1);
  cr_assert_str_eq (change->key, "sync_mode");
  cr_assert_str_eq (change->running, "always");
  cr_assert_str_eq (change->loaded, "none");
}

/* metrics_listen opens or moves a listening socket: a restart, named in
 * the refusal, both when it is added and when it changes. */
Test (tr_reload, metrics_listen_needs_restart, .init = setup, .fini = teardown)
{
  g_autoptr (TrConfig) running = load_router ("");
  g_autoptr (TrConfig) added = load_router ("metrics_listen = 127.0.0.1:9100\n");
  g_autoptr (TrConfig) moved = load_router ("metrics_listen = 127.0.0.1:9101\n");
  g_autoptr (TrConfig) same = load_router ("metrics_listen = 127.0.0.1:09100\n");
  g_autofree char *why_added = refusal (running, added);
  g_autofree char *why_moved = refusal (added, moved);

  cr_assert_not_null (why_added);
  cr_assert (strstr (why_added, "metrics_listen = 127.0.0.1:9100 (running: not set)") != NULL, "%s", why_added);
  cr_assert_not_null (why_moved);
  cr_assert (strstr (why_moved, "metrics_listen = 127.0.0.1:9101 (running: 127.0.0.1:9100)") != NULL, "%s",
             why_moved);
  cr_assert_null (refusal (added, same));
}

Test (tr_reload, services_alone_may_change, .init = setup, .fini = teardown)
{
  g_autoptr (TrConfig) running = load_router ("");
  g_autoptr (TrConfig) loaded = NULL;
  g_autoptr (GPtrArray) keys = NULL;
  g_autoptr (GPtrArray) changes = NULL;

  write_in_root ("services/s.conf", "[service]\nrpcs = log_event\n[endpoint a]\nport = 9190\n");
  loaded = load_router ("services = s\n");
  cr_assert_null (refusal (running, loaded));
  keys = tr_config_diff_router (running, loaded);
  cr_assert_eq (keys->len, 1);
  cr_assert_str_eq (((TrConfigKeyChange *) keys->pdata[0])->key, "services");
  changes = tr_reload_describe (running, loaded);
  cr_assert_eq (changes->len, 1);
  cr_assert_str_eq (changes->pdata[0], "service s added (rpcs log_event; 1 endpoints)");
}

static char *
joined (GPtrArray *lines)
{
  g_ptr_array_add (lines, NULL);
  return g_strjoinv ("\n", (char **) lines->pdata);
}

Test (tr_reload, describe_services_and_endpoints, .init = setup, .fini = teardown)
{
  g_autoptr (TrConfig) running = NULL;
  g_autoptr (TrConfig) loaded = NULL;
  g_autoptr (TrConfig) again = NULL;
  g_autoptr (GPtrArray) changes = NULL;
  g_autoptr (GPtrArray) nothing = NULL;
  g_autofree char *text = NULL;

  write_in_root ("services/s.conf", "[service]\nrpcs = log_event\n[endpoint a]\nport = 9190\n"
                                    "[endpoint b]\nport = 9191\n[endpoint c]\nport = 9192\n");
  write_in_root ("services/gone.conf", "[service]\nrpcs = log_event\n");
  running = load_router ("services = s, gone\n");
  write_in_root ("services/s.conf", "[service]\nrpcs = log_event, fire\nmax_retries = 3\non_failure = skip\n"
                                    "[endpoint a]\nport = 9190\nstop_send = true\nmax_connection = 2\n"
                                    "start = earliest\n[endpoint b]\nport = 9291\n[endpoint d]\nport = 9193\n");
  loaded = load_router ("services = s\n");
  changes = tr_reload_describe (running, loaded);
  text = joined (changes);
  cr_assert_str_eq (text,
                    "service s: rpcs changed from [log_event] to [log_event, fire]\n"
                    "service s: on_failure block -> skip, max_retries 10 -> 3\n"
                    "endpoint s/a: stop_send false -> true\n"
                    "endpoint s/a: max_connection 1 -> 2 (one connection is opened either way)\n"
                    "endpoint s/a: start head -> earliest (applies only to an endpoint added by a reload)\n"
                    "endpoint s/b changed: 127.0.0.1:9191 -> 127.0.0.1:9291 (reconnects, resumes after its "
                    "acknowledged seqid)\n"
                    "endpoint s/c removed (nothing more is sent to it; its send state file is kept)\n"
                    "endpoint s/d added at 127.0.0.1:9193 (start = head: with no send state it begins at the "
                    "service head)\n"
                    "service gone removed (no longer routed or pushed; its list, dead letters and send states "
                    "stay in the data dir)");
  again = load_router ("services = s\n");
  nothing = tr_reload_describe (loaded, again);
  cr_assert_eq (nothing->len, 0, "same files, changes: %s", joined (nothing));
}

/* min_free_space is taken by the running store: no restart; the backlog
 * limits are service settings, described like the others. */
Test (tr_reload, min_free_space_and_backlog_limits_apply_on_reload, .init = setup, .fini = teardown)
{
  g_autoptr (TrConfig) running = NULL;
  g_autoptr (TrConfig) loaded = NULL;
  g_autoptr (GPtrArray) keys = NULL;
  g_autoptr (GPtrArray) changes = NULL;
  g_autofree char *all = NULL;

  write_in_root ("services/s.conf", "[service]\nrpcs = log_event\n[endpoint a]\nport = 9190\n");
  running = load_router ("services = s\n");
  write_in_root ("services/s.conf",
                 "[service]\nrpcs = log_event\nmax_backlog_bytes = 1024\nmax_backlog_age = 2h\n"
                 "[endpoint a]\nport = 9190\n");
  loaded = load_router ("services = s\nmin_free_space = 3%\n");
  cr_assert_null (refusal (running, loaded));
  keys = tr_config_diff_router (running, loaded);
  cr_assert_eq (keys->len, 1);
  cr_assert_str_eq (((TrConfigKeyChange *) keys->pdata[0])->key, "min_free_space");
  cr_assert_str_eq (((TrConfigKeyChange *) keys->pdata[0])->running, "256M");
  cr_assert_str_eq (((TrConfigKeyChange *) keys->pdata[0])->loaded, "3%");
  changes = tr_reload_describe (running, loaded);
  all = joined (changes);
  cr_assert (strstr (all, "max_backlog_bytes 0 -> 1024") != NULL && strstr (all, "max_backlog_age 0 -> 2h") != NULL,
             "%s", all);
}
