/* test_tr_config.c - the configuration loader (router/core/tr_config.h). */
#include <criterion/criterion.h>
#include <string.h>

#include "tr_config.h"
#include "tr_dwfile.h"
#include "tr_frame.h"
#include "tr_endian.h"
#include "tr_record.h"
#include "tr_test_util.h"

#define MIN_SERVICE "[service]\nrpcs = log_event\n[endpoint a]\nport = 9190\n"

/* A temp dir with conf/router.conf and conf/services/. */
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
  services = g_build_filename (fx.root, "conf", "services", NULL);
  cr_assert_eq (g_mkdir_with_parents (services, 0700), 0);
  fx.router_path = g_build_filename (fx.root, "conf", "router.conf", NULL);
}

static void
teardown (void)
{
  tr_test_rmdir (fx.root);
  g_free (fx.root);
  g_free (fx.router_path);
}

static void
write_router (const char *text)
{
  tr_test_write_file (fx.router_path, text, strlen (text));
}

static char *
service_path (const char *name)
{
  g_autofree char *file = g_strconcat (name, ".conf", NULL);
  return g_build_filename (fx.root, "conf", "services", file, NULL);
}

static void
write_service (const char *name, const char *text)
{
  g_autofree char *path = service_path (name);
  tr_test_write_file (path, text, strlen (text));
}

/* Loads fx.router_path expecting failure with @code and every one of the
 * NULL-terminated substrings in the message. */
static void
expect_error (TrConfigError code, ...)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (TrConfig) config = tr_config_load (fx.router_path, &error);
  const char *needle;
  va_list ap;

  cr_assert_null (config, "loaded, expected an error");
  cr_assert_not_null (error);
  cr_assert (g_error_matches (error, TR_CONFIG_ERROR, (gint) code), "code %d, message: %s",
             error->code, error->message);
  va_start (ap, code);
  while ((needle = va_arg (ap, const char *)) != NULL)
    cr_assert (strstr (error->message, needle) != NULL, "'%s' not in: %s", needle, error->message);
  va_end (ap);
}

static TrConfig *
load_ok (void)
{
  g_autoptr (GError) error = NULL;
  TrConfig *config = tr_config_load (fx.router_path, &error);

  cr_assert_not_null (config, "load failed: %s", error ? error->message : "?");
  return config;
}

/* router.conf with one service "s" whose file is @service_text. */
static void
with_service (const char *service_text)
{
  write_router ("[router]\nservices = s\n");
  write_service ("s", service_text);
}

Test (tr_config, shipped_example_loads)
{
  g_autofree char *here = g_path_get_dirname (__FILE__);
  g_autofree char *path = g_build_filename (here, "..", "..", "conf", "router.conf", NULL);
  g_autoptr (GError) error = NULL;
  g_autoptr (TrConfig) config = tr_config_load (path, &error);
  g_autofree char *text = NULL;
  g_autofree char *conf_dir = NULL;
  g_autofree char *data_dir = NULL;
  TrServiceConfig *demo;
  TrEndpointConfig *endpoint;

  cr_assert_not_null (config, "%s", error ? error->message : "?");
  cr_assert_eq (config->server_type, TR_SERVER_MASTER);
  cr_assert_str_eq (config->listen_host, "127.0.0.1");
  cr_assert_eq (config->listen_port, 9090);
  cr_assert_eq (config->admin_port, 9091);
  conf_dir = g_canonicalize_filename (here, NULL);
  data_dir = g_build_filename (conf_dir, "..", "..", "conf", "data", NULL);
  {
    g_autofree char *canonical = g_canonicalize_filename (data_dir, NULL);
    cr_assert_str_eq (config->data_dir, canonical);
  }
  cr_assert_eq (config->services->len, 1);
  demo = tr_config_lookup_service (config, "demo");
  cr_assert_not_null (demo);
  cr_assert_eq (demo->rpcs->len, 2);
  cr_assert_str_eq (g_ptr_array_index (demo->rpcs, 0), "log_event");
  cr_assert_str_eq (g_ptr_array_index (demo->rpcs, 1), "fire");
  cr_assert_eq (demo->endpoints->len, 1);
  endpoint = g_ptr_array_index (demo->endpoints, 0);
  cr_assert_str_eq (endpoint->host, "127.0.0.1");
  cr_assert_eq (endpoint->port, 9190);
  cr_assert_null (tr_config_lookup_service (config, "nope"));
  text = tr_config_to_string (config);
  cr_assert (strstr (text, "server_type = MASTER\n") != NULL, "%s", text);
  cr_assert (strstr (text, "rpcs = log_event, fire\n") != NULL, "%s", text);
  cr_assert (strstr (text, "[endpoint local]\n") != NULL, "%s", text);
}

/* conf/examples/pair (README: "Run a master and a backup on one machine"):
 * both load, the master's link points at the backup's replication_listen. */
Test (tr_config, shipped_pair_example_loads)
{
  g_autofree char *here = g_path_get_dirname (__FILE__);
  g_autofree char *master_path = g_build_filename (here, "..", "..", "conf", "examples", "pair", "master",
                                                   "router.conf", NULL);
  g_autofree char *backup_path = g_build_filename (here, "..", "..", "conf", "examples", "pair", "backup",
                                                   "router.conf", NULL);
  g_autoptr (GError) error = NULL;
  g_autoptr (TrConfig) master = tr_config_load (master_path, &error);
  g_autoptr (TrConfig) backup = NULL;
  const TrServiceConfig *link;
  const TrEndpointConfig *replica;

  cr_assert_not_null (master, "%s", error ? error->message : "?");
  backup = tr_config_load (backup_path, &error);
  cr_assert_not_null (backup, "%s", error ? error->message : "?");
  cr_assert_eq (master->server_type, TR_SERVER_MASTER);
  cr_assert_eq (backup->server_type, TR_SERVER_BACKUP);
  cr_assert_eq (master->services->len, 1);
  cr_assert_eq (backup->services->len, 1);
  cr_assert_eq (master->replicas->len, 1);
  link = g_ptr_array_index (master->replicas, 0);
  replica = g_ptr_array_index (link->endpoints, 0);
  cr_assert_str_eq (replica->host, backup->replication_host);
  cr_assert_eq (replica->port, backup->replication_port);
}

Test (tr_config, defaults, .init = setup, .fini = teardown)
{
  g_autoptr (TrConfig) config = NULL;
  g_autofree char *text = NULL;
  TrServiceConfig *s;
  TrEndpointConfig *e;

  with_service (MIN_SERVICE);
  config = load_ok ();
  cr_assert_str_eq (config->server_id, "node1");
  cr_assert_eq (config->server_type, TR_SERVER_MASTER);
  cr_assert_str_eq (config->listen_host, "127.0.0.1");
  cr_assert_eq (config->listen_port, 9090);
  cr_assert_str_eq (config->admin_host, "127.0.0.1");
  cr_assert_eq (config->admin_port, 9091);
  cr_assert_null (config->metrics_host, "metrics_listen is off unless set");
  cr_assert_eq (config->sync_mode, TR_SYNC_ALWAYS);
  cr_assert_eq (config->sync_interval_ms, 10);
  cr_assert_eq (config->rpc_cache_size, 64u << 20);
  cr_assert_eq (config->group_file_size, G_GUINT64_CONSTANT (2) << 30);
  cr_assert_eq (config->max_frame_size, 16384000u);
  cr_assert_eq (config->state_flush_ms, 100);
  cr_assert_eq (config->max_connections, 1024);
  s = g_ptr_array_index (config->services, 0);
  cr_assert_str_eq (s->name, "s");
  cr_assert_eq (s->service_type, TR_SERVICE_COMMON);
  cr_assert_eq (s->max_inflight, 64);
  cr_assert_eq (s->on_failure, TR_ON_FAILURE_BLOCK);
  cr_assert_eq (s->max_retries, 10);
  cr_assert_eq (s->retry_backoff_ms, 100);
  cr_assert_eq (s->retry_backoff_max_ms, 30000);
  cr_assert_eq (s->connect_timeout_ms, 3000);
  cr_assert_eq (s->socket_timeout_ms, 10000);
  cr_assert (s->oneway_barrier);
  cr_assert_str_eq (s->barrier_method, "__thriftrouter_barrier__");
  e = g_ptr_array_index (s->endpoints, 0);
  cr_assert_str_eq (e->id, "a");
  cr_assert_str_eq (e->host, "127.0.0.1");
  cr_assert_eq (e->max_connection, 1);
  cr_assert_not (e->stop_send);
  text = tr_config_to_string (config);
  cr_assert (strstr (text, "rpc_cache_size = 64M\n") != NULL, "%s", text);
  cr_assert (strstr (text, "group_file_size = 2G\n") != NULL, "%s", text);
  cr_assert (strstr (text, "# max_frame_size: not set, so 16000K (the default 16000K, or half of group_file_size "
                           "when that is smaller)\n") != NULL, "%s", text);
  cr_assert (strstr (text, "on_failure = block\n") != NULL, "%s", text);
  /* The printed settings load back: [router] as router.conf, each service
   * section as its file. */
  {
    const char *service_part = strstr (text, "\n\n# ");
    g_autofree char *router_part = NULL;
    g_autoptr (TrConfig) again = NULL;
    g_autofree char *text_again = NULL;

    cr_assert_not_null (service_part, "%s", text);
    router_part = g_strndup (text, (gsize) (service_part - text));
    write_router (router_part);
    write_service ("s", strchr (service_part + 3, '\n') + 1);
    again = load_ok ();
    text_again = tr_config_to_string (again);
    cr_assert_str_eq (text_again, text);
  }
}

Test (tr_config, explicit_values, .init = setup, .fini = teardown)
{
  g_autoptr (TrConfig) config = NULL;
  TrServiceConfig *s;
  TrEndpointConfig *e;

  write_router ("[router]\nserver_id = n-2\nserver_type = master\nlisten = [::1]:0\n"
                "admin_listen = localhost:7000\nsync_mode = interval\nsync_interval_ms = 5\n"
                "state_flush_ms = 0\nmax_connections = 7\nmetrics_listen = [::1]:9100\nservices = s\n");
  write_service ("s", "[service]\nrpcs = a\non_failure = skip\nmax_retries = 0\n"
                      "oneway_barrier = false\nbarrier_method = ping\n"
                      "[endpoint x]\nhost = example.org\nport = 1\nmax_connection = 3\n"
                      "stop_send = TRUE\n[endpoint y]\nport = 65535\nstop_send = 0\n");
  config = load_ok ();
  cr_assert_str_eq (config->server_id, "n-2");
  cr_assert_str_eq (config->listen_host, "::1");
  cr_assert_eq (config->listen_port, 0);
  cr_assert_str_eq (config->admin_host, "localhost");
  cr_assert_eq (config->admin_port, 7000);
  cr_assert_str_eq (config->metrics_host, "::1");
  cr_assert_eq (config->metrics_port, 9100);
  cr_assert_eq (config->sync_mode, TR_SYNC_INTERVAL);
  cr_assert_eq (config->sync_interval_ms, 5);
  cr_assert_eq (config->state_flush_ms, 0);
  cr_assert_eq (config->max_connections, 7);
  s = g_ptr_array_index (config->services, 0);
  cr_assert_eq (s->on_failure, TR_ON_FAILURE_SKIP);
  cr_assert_eq (s->max_retries, 0);
  cr_assert_not (s->oneway_barrier);
  cr_assert_str_eq (s->barrier_method, "ping");
  cr_assert_eq (s->endpoints->len, 2);
  e = g_ptr_array_index (s->endpoints, 0);
  cr_assert_str_eq (e->id, "x");
  cr_assert_str_eq (e->host, "example.org");
  cr_assert_eq (e->port, 1);
  cr_assert_eq (e->max_connection, 3);
  cr_assert (e->stop_send);
  e = g_ptr_array_index (s->endpoints, 1);
  cr_assert_eq (e->port, 65535);
  cr_assert_not (e->stop_send);
  {
    g_autofree char *text = tr_config_to_string (config);
    cr_assert (strstr (text, "listen = [::1]:0\n") != NULL, "%s", text);
  }
}

Test (tr_config, size_suffixes, .init = setup, .fini = teardown)
{
  static const struct {
    const char *text;
    guint64 value;
  } ok[] = {
    { "0", 0 },
    { "123", 123 },
    { "64K", 64u << 10 },
    { "64k", 64u << 10 },
    { "10M", 10u << 20 },
    { "3MB", 3u << 20 },
    { "3MiB", 3u << 20 },
    { "5G", G_GUINT64_CONSTANT (5) << 30 },
  };
  static const char *const bad[] = { "1T", "12X", "-1", "1.5M", "M", "1 M", "99999999999999999999",
                                     "16777216T", "4MBs" };

  write_service ("s", MIN_SERVICE);
  for (guint i = 0; i < G_N_ELEMENTS (ok); i++) {
    g_autofree char *text = g_strdup_printf ("[router]\nrpc_cache_size = %s\n", ok[i].text);
    g_autoptr (TrConfig) config = NULL;
    write_router (text);
    config = load_ok ();
    cr_assert_eq (config->rpc_cache_size, ok[i].value, "%s", ok[i].text);
  }
  for (guint i = 0; i < G_N_ELEMENTS (bad); i++) {
    g_autofree char *text = g_strdup_printf ("[router]\nrpc_cache_size = %s\n", bad[i]);
    g_autofree char *quoted = g_strdup_printf ("'%s' is not a size", bad[i]);
    write_router (text);
    expect_error (TR_CONFIG_ERROR_INVALID, "router.conf: [router] rpc_cache_size: ", quoted, NULL);
  }
}

Test (tr_config, list_separators, .init = setup, .fini = teardown)
{
  g_autoptr (TrConfig) config = NULL;
  static const char *const names[] = { "a", "b", "c" };

  write_router ("[router]\nservices =  a; b ,c ;\n");
  write_service ("a", "[service]\nrpcs = x;y , z,\n[endpoint e]\nport = 1\n");
  write_service ("b", MIN_SERVICE);
  write_service ("c", "[service]\nrpcs=log_event\n");
  config = load_ok ();
  cr_assert_eq (config->services->len, 3);
  for (guint i = 0; i < 3; i++) {
    TrServiceConfig *s = g_ptr_array_index (config->services, i);
    cr_assert_str_eq (s->name, names[i]);
  }
  {
    TrServiceConfig *a = g_ptr_array_index (config->services, 0);
    TrServiceConfig *c = g_ptr_array_index (config->services, 2);
    cr_assert_eq (a->rpcs->len, 3);
    cr_assert_str_eq (g_ptr_array_index (a->rpcs, 0), "x");
    cr_assert_str_eq (g_ptr_array_index (a->rpcs, 1), "y");
    cr_assert_str_eq (g_ptr_array_index (a->rpcs, 2), "z");
    cr_assert_eq (c->endpoints->len, 0); /* allowed: RPCs are stored for later */
  }
}

Test (tr_config, relative_data_dir, .init = setup, .fini = teardown)
{
  g_autoptr (TrConfig) config = NULL;
  g_autofree char *expect = NULL;
  g_autofree char *cwd = g_get_current_dir ();

  /* Relative to router.conf's directory, wherever the process runs. */
  cr_assert_eq (chdir ("/"), 0);
  write_router ("[router]\ndata_dir = ../store/./x\n");
  config = load_ok ();
  expect = g_build_filename (fx.root, "store", "x", NULL);
  {
    g_autofree char *canonical = g_canonicalize_filename (expect, NULL);
    cr_assert_str_eq (config->data_dir, canonical);
  }
  g_clear_pointer (&config, tr_config_free);
  write_router ("[router]\n");
  config = load_ok ();
  g_free (expect);
  expect = g_build_filename (fx.root, "conf", "data", NULL);
  cr_assert_str_eq (config->data_dir, expect);
  cr_assert_eq (config->services->len, 0);
  g_clear_pointer (&config, tr_config_free);
  write_router ("[router]\ndata_dir = /var/lib/tr\n");
  config = load_ok ();
  cr_assert_str_eq (config->data_dir, "/var/lib/tr");
  cr_assert_eq (chdir (cwd), 0);
}

Test (tr_config, relative_conf_path, .init = setup, .fini = teardown)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (TrConfig) config = NULL;
  g_autofree char *expect = g_build_filename (fx.root, "conf", "data", NULL);
  g_autofree char *cwd = g_get_current_dir ();

  write_router ("[router]\nservices = s\n");
  write_service ("s", MIN_SERVICE);
  cr_assert_eq (chdir (fx.root), 0);
  config = tr_config_load ("conf/router.conf", &error);
  cr_assert_not_null (config, "%s", error ? error->message : "?");
  cr_assert_str_eq (config->data_dir, expect);
  cr_assert_str_eq (((TrServiceConfig *) g_ptr_array_index (config->services, 0))->path,
                    "conf/services/s.conf");
  /* Errors name the file as given. */
  write_service ("s", "[service]\nrpcs = a\n[endpoint a]\nport = 70000\n");
  g_clear_pointer (&config, tr_config_free);
  g_clear_error (&error);
  config = tr_config_load ("conf/router.conf", &error);
  cr_assert_null (config);
  cr_assert_str_eq (error->message,
                    "conf/services/s.conf: [endpoint a] port: '70000' is not a port (1..65535)");
  cr_assert_eq (chdir (cwd), 0);
}

/* ---- every error class names file, group and key ---- */

Test (tr_config, missing_files, .init = setup, .fini = teardown)
{
  expect_error (TR_CONFIG_ERROR_IO, "router.conf: no such file", NULL);
  write_router ("[router]\nservices = demo, gone\n");
  write_service ("demo", MIN_SERVICE);
  expect_error (TR_CONFIG_ERROR_IO, "router.conf: [router] services: service 'gone': ",
                "services/gone.conf: no such file", NULL);
}

Test (tr_config, syntax_error, .init = setup, .fini = teardown)
{
  write_router ("[router\nlisten = x\n");
  expect_error (TR_CONFIG_ERROR_PARSE, "router.conf: ", NULL);
  write_router ("just some text\n");
  expect_error (TR_CONFIG_ERROR_PARSE, "router.conf: ", NULL);
}

Test (tr_config, unknown_group_and_key, .init = setup, .fini = teardown)
{
  write_router ("[router]\nlisten_port = 1\n");
  expect_error (TR_CONFIG_ERROR_INVALID, "router.conf: [router] listen_port: unknown key", NULL);
  write_router ("[router]\n[routers]\n");
  expect_error (TR_CONFIG_ERROR_INVALID, "router.conf: [routers]: unknown group", NULL);
  write_router ("[other]\n");
  expect_error (TR_CONFIG_ERROR_INVALID, "router.conf: [other]: unknown group", NULL);
  write_router ("# empty\n");
  expect_error (TR_CONFIG_ERROR_INVALID, "router.conf: [router]: group missing", NULL);
  with_service ("[service]\nrpcs = a\nrpc = b\n");
  expect_error (TR_CONFIG_ERROR_INVALID, "s.conf: [service] rpc: unknown key", NULL);
  with_service ("[service]\nrpcs = a\n[endpoints a]\nport = 1\n");
  expect_error (TR_CONFIG_ERROR_INVALID, "s.conf: [endpoints a]: unknown group", NULL);
  with_service ("[service]\nrpcs = a\n[endpoint a]\nport = 1\nstopsend = true\n");
  expect_error (TR_CONFIG_ERROR_INVALID, "s.conf: [endpoint a] stopsend: unknown key", NULL);
  with_service ("[endpoint a]\nport = 1\n");
  expect_error (TR_CONFIG_ERROR_INVALID, "s.conf: [service]: group missing", NULL);
}

Test (tr_config, duplicates, .init = setup, .fini = teardown)
{
  with_service ("[service]\nrpcs = a\n[endpoint a]\nport = 1\n[endpoint a]\nport = 2\n");
  expect_error (TR_CONFIG_ERROR_INVALID, "s.conf: [endpoint a]: group appears twice", NULL);
  with_service ("[service]\nrpcs = a\n[endpoint a]\nport = 1\nport = 2\n");
  expect_error (TR_CONFIG_ERROR_INVALID, "s.conf: [endpoint a] port: key appears twice", NULL);
  write_router ("[router]\nservices = s, s\n");
  expect_error (TR_CONFIG_ERROR_INVALID, "router.conf: [router] services: 's' is listed twice",
                NULL);
  with_service ("[service]\nrpcs = a, b; a\n");
  expect_error (TR_CONFIG_ERROR_INVALID, "s.conf: [service] rpcs: 'a' is listed twice", NULL);
}

Test (tr_config, bad_values, .init = setup, .fini = teardown)
{
  static const struct {
    const char *router; /* [router] body */
    const char *needle;
  } cases[] = {
    { "server_type = BACKUP", "[router] replication_listen: missing: a BACKUP node receives" },
    { "replication_listen = 127.0.0.1:9300", "[router] replication_listen: only a BACKUP node receives" },
    { "server_type = BACKUP\nlisten = 127.0.0.1:9300\nreplication_listen = 127.0.0.1:9300",
      "[router] replication_listen: '127.0.0.1:9300' is also listen or admin_listen" },
    { "server_type = BACKUP\nreplication_listen = 9300", "[router] replication_listen: '9300' is not host:port" },
    { "server_type = REPLY", "[router] server_type: server_type REPLY is not supported yet" },
    { "server_type = SLAVE", "[router] server_type: 'SLAVE' is not one of MASTER, BACKUP, REPLY" },
    { "sync_mode = sometimes", "[router] sync_mode: 'sometimes' is not one of always, interval, none" },
    { "sync_interval_ms = 0", "[router] sync_interval_ms: '0' is not an integer in 1..3600000" },
    { "sync_interval_ms = -5", "[router] sync_interval_ms: '-5' is not an integer" },
    { "sync_interval_ms = 10ms", "[router] sync_interval_ms: '10ms' is not an integer" },
    { "max_connections = 0", "[router] max_connections: '0' is not an integer in 1..1000000" },
    { "listen = 9090", "[router] listen: '9090' is not host:port" },
    { "listen = :9090", "[router] listen: ':9090' is not host:port" },
    { "listen = ::1:9090", "[router] listen: '::1:9090' is not host:port" },
    { "listen = 127.0.0.1:65536", "[router] listen: '127.0.0.1:65536': '65536' is not a port" },
    { "admin_listen = host:x", "[router] admin_listen: 'host:x': 'x' is not a port" },
    { "metrics_listen = 9100", "[router] metrics_listen: '9100' is not host:port" },
    { "metrics_listen = localhost:99999", "[router] metrics_listen: 'localhost:99999': '99999' is not a port" },
    { "metrics_listen =", "[router] metrics_listen: is empty" },
    { "server_id = a/b", "[router] server_id: 'a/b' is not a valid id" },
    { "server_id =", "[router] server_id: is empty" },
    { "data_dir = ", "[router] data_dir: is empty" },
    { "max_frame_size = 2M\ngroup_file_size = 3M",
      "[router] max_frame_size: 2097152 is more than half of group_file_size (3145728)" },
    { "max_frame_size = 2G", "[router] max_frame_size: '2G' is not a size in 64..2147483647" },
    { "max_frame_size = 10", "[router] max_frame_size: '10' is not a size" },
    { "group_file_size = 1K", "[router] group_file_size: '1K' is not a size in 65536.." },
    { "services = ../etc", "[router] services: '../etc' is not a valid service name" },
    { "services = a b", "[router] services: 'a b' is not a valid service name" },
  };

  for (guint i = 0; i < G_N_ELEMENTS (cases); i++) {
    g_autofree char *text = g_strdup_printf ("[router]\n%s\n", cases[i].router);
    write_router (text);
    expect_error (TR_CONFIG_ERROR_INVALID, "router.conf: ", cases[i].needle, NULL);
  }
}

Test (tr_config, bad_service_values, .init = setup, .fini = teardown)
{
  static const struct {
    const char *service; /* whole service file */
    const char *needle;
  } cases[] = {
    { "[service]\n", "s.conf: [service] rpcs: missing or empty" },
    { "[service]\nrpcs = ,;\n", "s.conf: [service] rpcs: missing or empty" },
    { "[service]\nrpcs = log-event\n", "s.conf: [service] rpcs: 'log-event' is not a valid rpc name" },
    { "[service]\nrpcs = a\nservice_type = REPLY\n",
      "s.conf: [service] service_type: REPLY is not supported yet" },
    { "[service]\nrpcs = a\nservice_type = BACKUP\n",
      "s.conf: [service] rpcs: a BACKUP service takes every committed rpc and has no rpcs key" },
    { "[service]\nrpcs = a\non_failure = drop\n",
      "s.conf: [service] on_failure: 'drop' is not one of block, skip" },
    { "[service]\nrpcs = a\nmax_inflight = 0\n", "s.conf: [service] max_inflight: '0' is not an integer in 1..65536" },
    { "[service]\nrpcs = a\nretry_backoff_ms = 500\nretry_backoff_max_ms = 100\n",
      "s.conf: [service] retry_backoff_max_ms: '100' is less than retry_backoff_ms (500)" },
    { "[service]\nrpcs = a\nconnect_timeout_ms = 0\n", "s.conf: [service] connect_timeout_ms: '0'" },
    { "[service]\nrpcs = a\noneway_barrier = maybe\n",
      "s.conf: [service] oneway_barrier: 'maybe' is not a boolean" },
    { "[service]\nrpcs = a, b\nbarrier_method = b\n",
      "s.conf: [service] barrier_method: 'b' is also listed in rpcs" },
    { "[service]\nrpcs = a\nbarrier_method = no way\n",
      "s.conf: [service] barrier_method: 'no way' is not a valid rpc name" },
    { "[service]\nrpcs = a\n[endpoint a]\nport = 70000\n",
      "s.conf: [endpoint a] port: '70000' is not a port (1..65535)" },
    { "[service]\nrpcs = a\n[endpoint a]\nport = 0\n", "s.conf: [endpoint a] port: '0' is not a port" },
    { "[service]\nrpcs = a\n[endpoint a]\nhost = h\n", "s.conf: [endpoint a] port: missing (required)" },
    { "[service]\nrpcs = a\n[endpoint a]\nport = 1\nhost =\n", "s.conf: [endpoint a] host: is empty" },
    { "[service]\nrpcs = a\n[endpoint a]\nport = 1\nmax_connection = 0\n",
      "s.conf: [endpoint a] max_connection: '0' is not an integer in 1..1024" },
    { "[service]\nrpcs = a\n[endpoint a]\nport = 1\nstop_send = yes please\n",
      "s.conf: [endpoint a] stop_send: 'yes please' is not a boolean" },
    { "[service]\nrpcs = a\n[endpoint a/b]\nport = 1\n",
      "s.conf: [endpoint a/b]: 'a/b' is not a valid endpoint id" },
    { "[service]\nrpcs = a\n[endpoint ]\nport = 1\n", "is not a valid endpoint id" },
  };

  for (guint i = 0; i < G_N_ELEMENTS (cases); i++) {
    with_service (cases[i].service);
    expect_error (TR_CONFIG_ERROR_INVALID, cases[i].needle, NULL);
  }
}

Test (tr_config, load_service_alone, .init = setup, .fini = teardown)
{
  g_autofree char *path = service_path ("solo");
  g_autoptr (GError) error = NULL;
  g_autoptr (TrServiceConfig) service = NULL;

  write_service ("solo", MIN_SERVICE);
  service = tr_config_load_service (path, "solo", &error);
  cr_assert_not_null (service, "%s", error ? error->message : "?");
  cr_assert_str_eq (service->name, "solo");
  cr_assert_str_eq (service->path, path);
  g_clear_pointer (&service, tr_service_config_free);
  write_service ("solo", "[service]\n");
  service = tr_config_load_service (path, "solo", &error);
  cr_assert_null (service);
  cr_assert (g_error_matches (error, TR_CONFIG_ERROR, TR_CONFIG_ERROR_INVALID));
}

Test (tr_config, endpoint_start, .init = setup, .fini = teardown)
{
  g_autofree char *path = service_path ("s");
  g_autoptr (GError) error = NULL;
  g_autoptr (TrServiceConfig) service = NULL;
  g_autofree char *text = NULL;
  g_autoptr (TrConfig) config = NULL;

  write_service ("s", "[service]\nrpcs = a\n[endpoint x]\nport = 1\n[endpoint y]\nport = 2\nstart = Earliest\n"
                      "[endpoint z]\nport = 3\nstart = head\n");
  service = tr_config_load_service (path, "s", &error);
  cr_assert_not_null (service, "%s", error ? error->message : "?");
  cr_assert_eq (((TrEndpointConfig *) g_ptr_array_index (service->endpoints, 0))->start, TR_START_HEAD);
  cr_assert_eq (((TrEndpointConfig *) g_ptr_array_index (service->endpoints, 1))->start, TR_START_EARLIEST);
  cr_assert_eq (tr_config_lookup_endpoint (service, "z")->start, TR_START_HEAD);
  cr_assert_null (tr_config_lookup_endpoint (service, "w"));
  write_router ("[router]\nservices = s\n");
  config = tr_config_load (fx.router_path, &error);
  cr_assert_not_null (config, "%s", error ? error->message : "?");
  text = tr_config_to_string (config);
  cr_assert_not_null (strstr (text, "[endpoint y]\nhost = 127.0.0.1\nport = 2\nmax_connection = 1\n"
                                    "stop_send = false\nstart = earliest\n"),
                      "%s", text);
  with_service ("[service]\nrpcs = a\n[endpoint a]\nport = 1\nstart = now\n");
  expect_error (TR_CONFIG_ERROR_INVALID, "s.conf: [endpoint a] start: 'now' is not one of head, earliest", NULL);
}

/* tr_config_load_router reads router.conf alone: a broken service file
 * does not matter (tr-admin -c while a service file is being edited). */
Test (tr_config, load_router_alone, .init = setup, .fini = teardown)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (TrConfig) config = NULL;

  write_router ("[router]\nadmin_listen = 127.0.0.1:7001\nservices = s\n");
  write_service ("s", "[service]\nrpcs = a\ncolour = red\n");
  config = tr_config_load_router (fx.router_path, &error);
  cr_assert_not_null (config, "%s", error ? error->message : "?");
  cr_assert_eq (config->admin_port, 7001);
  cr_assert_eq (config->services->len, 0);
  g_clear_pointer (&config, tr_config_free);
  config = tr_config_load (fx.router_path, &error);
  cr_assert_null (config);
  cr_assert (strstr (error->message, "[service] colour: unknown key") != NULL, "%s", error->message);
}

/* A kill during a stop-send rewrite can leave the service file torn next to
 * a complete side copy: the loader replays the side copy before parsing. */
Test (tr_config, side_copy_replayed_before_parsing, .init = setup, .fini = teardown)
{
  static const char good[] = "[service]\nrpcs = a\n[endpoint x]\nport = 1\nstop_send = true\n";
  g_autofree char *path = service_path ("s");
  g_autofree char *side = g_strconcat (path, TR_DWFILE_SUFFIX, NULL);
  g_autofree guint8 *payload = g_malloc (8 + sizeof good - 1);
  g_autoptr (GBytes) record = NULL;
  g_autoptr (GError) error = NULL;
  g_autoptr (TrConfig) config = NULL;
  const TrServiceConfig *service;

  tr_put_le64 (payload, sizeof good - 1);
  memcpy (payload + 8, good, sizeof good - 1);
  record = tr_record_encode (TR_DWFILE_RECORD_TYPE, payload, 8 + sizeof good - 1);
  with_service ("[service]\nrpcs = a\n[endpoint x]\nport = 1\nstop_se"); /* torn in place */
  tr_test_write_file (side, g_bytes_get_data (record, NULL), g_bytes_get_size (record));
  config = tr_config_load (fx.router_path, &error);
  cr_assert_not_null (config, "%s", error ? error->message : "?");
  service = tr_config_lookup_service (config, "s");
  cr_assert (tr_config_lookup_endpoint (service, "x")->stop_send, "the side copy's content was not used");
  cr_assert_not (g_file_test (side, G_FILE_TEST_EXISTS), "side copy left behind");
}

/* An endpoint at the router's own listen or admin address is refused at
 * load, naming the service file, the endpoint, the address and which of
 * the router's addresses it is; other loopback ports and other interfaces
 * load. */
Test (tr_config, endpoint_at_the_routers_own_address, .init = setup, .fini = teardown)
{
  static const struct {
    const char *router_keys; /* after [router] services = s */
    const char *endpoint;    /* the [endpoint a] group's keys */
    const char *needle;      /* NULL: loads */
  } cases[] = {
    { "", "port = 9090\n", "s.conf: [endpoint a] host, port: 127.0.0.1:9090 is this router's own listen address" },
    { "", "host = localhost\nport = 9091\n", "localhost:9091 is this router's own admin_listen address" },
    { "listen = 0.0.0.0:7000\n", "host = 127.0.0.2\nport = 7000\n", "own listen address" },
    { "listen = [::]:7000\n", "host = ::1\nport = 7000\n", "[::1]:7000 is this router's own listen address" },
    { "listen = 10.1.2.3:7000\n", "host = 10.1.2.3\nport = 7000\n", "own listen address" },
    { "", "port = 9092\n", NULL },
    { "listen = 10.1.2.3:7000\n", "host = 127.0.0.1\nport = 7000\n", NULL },
    { "", "host = 10.9.9.9\nport = 9090\n", NULL },
  };

  for (guint i = 0; i < G_N_ELEMENTS (cases); i++) {
    g_autofree char *router = g_strconcat ("[router]\nservices = s\n", cases[i].router_keys, NULL);
    g_autofree char *service = g_strconcat ("[service]\nrpcs = a\n[endpoint a]\n", cases[i].endpoint, NULL);
    write_router (router);
    write_service ("s", service);
    if (cases[i].needle != NULL) {
      expect_error (TR_CONFIG_ERROR_INVALID, cases[i].needle, "router.conf", NULL);
    } else {
      g_autoptr (TrConfig) config = load_ok ();
      cr_assert_eq (config->services->len, 1);
    }
  }
}

/* ---- tr_config_edit_endpoint_key (tr-admin stop-send's one-line edit) ---- */

#define EDIT_FILE                                                                                                  \
  "# ledger\n[service]\nrpcs  =  log_event\n\n[endpoint a]\r\nport = 1\r\n  stop_send\t=  false\r\n"             \
  "\n# b has none\n[endpoint b]\nport = 2\n# end of b\n\n[endpoint c]\nport = 3"

static char *
edit_ok (const char *text, const char *id, const char *value)
{
  g_autoptr (GError) error = NULL;
  char *out = tr_config_edit_endpoint_key (text, strlen (text), id, "stop_send", value, &error);

  cr_assert_not_null (out, "%s", error ? error->message : "?");
  return out;
}

Test (tr_config, edit_changes_only_the_value_of_that_line)
{
  g_autofree char *out = edit_ok (EDIT_FILE, "a", "true");

  /* Spacing before the value and the CRLF ending are the operator's. */
  cr_assert_str_eq (out, "# ledger\n[service]\nrpcs  =  log_event\n\n[endpoint a]\r\nport = 1\r\n"
                         "  stop_send\t=  true\r\n\n# b has none\n[endpoint b]\nport = 2\n# end of b\n\n"
                         "[endpoint c]\nport = 3");
}

Test (tr_config, edit_adds_one_line_after_the_last_key_of_the_group)
{
  g_autofree char *b = edit_ok (EDIT_FILE, "b", "true");
  g_autofree char *c = edit_ok (EDIT_FILE, "c", "false");
  g_autofree char *expected_b = NULL;

  expected_b = g_strjoin ("", "# ledger\n[service]\nrpcs  =  log_event\n\n[endpoint a]\r\nport = 1\r\n",
                          "  stop_send\t=  false\r\n\n# b has none\n[endpoint b]\nport = 2\nstop_send = true\n",
                          "# end of b\n\n[endpoint c]\nport = 3", NULL);
  cr_assert_str_eq (b, expected_b);
  /* The last line had no newline: it gets one, then the added line. */
  cr_assert (g_str_has_suffix (c, "[endpoint c]\nport = 3\nstop_send = false\n"), "%s", c);
  cr_assert (strncmp (c, EDIT_FILE, strlen (EDIT_FILE)) == 0, "%s", c);
}

Test (tr_config, edit_of_a_missing_endpoint_is_an_error)
{
  g_autoptr (GError) error = NULL;
  char *out = tr_config_edit_endpoint_key (EDIT_FILE, strlen (EDIT_FILE), "zz", "stop_send", "true", &error);

  cr_assert_null (out);
  cr_assert (g_error_matches (error, TR_CONFIG_ERROR, TR_CONFIG_ERROR_INVALID));
  cr_assert (strstr (error->message, "[endpoint zz]") != NULL, "%s", error->message);
}

/* A key of the same name in another group, or a longer key that starts
 * with it, is not the line to change. */
Test (tr_config, edit_matches_the_key_of_that_group_only)
{
  const char *text = "[endpoint x]\nstop_sendx = 1\nport = 1\n[endpoint y]\nstop_send = false\nport = 2\n";
  g_autofree char *out = edit_ok (text, "x", "true");

  cr_assert_str_eq (out, "[endpoint x]\nstop_sendx = 1\nport = 1\nstop_send = true\n[endpoint y]\n"
                         "stop_send = false\nport = 2\n");
}

/* ---- issue 12: mistakes that used to pass, or were reported vaguely ---- */

/* A host:port in host passed --check and reload, then every connection
 * attempt looked up the name "localhost:19191" and failed. */
Test (tr_config, endpoint_host_with_a_port_is_refused_naming_the_fix, .init = setup, .fini = teardown)
{
  with_service ("[service]\nrpcs = log_event\n[endpoint a]\nhost = localhost:19191\nport = 9190\n");
  expect_error (TR_CONFIG_ERROR_INVALID, "s.conf: [endpoint a] host: 'localhost:19191'", "holds a port",
                "host = localhost", "port = 19191", NULL);
}

/* An IPv6 address has colons too, and stays valid. */
Test (tr_config, endpoint_host_ipv6_is_not_a_host_with_port, .init = setup, .fini = teardown)
{
  g_autoptr (TrConfig) config = NULL;

  with_service ("[service]\nrpcs = log_event\n[endpoint a]\nhost = ::1\nport = 9190\n"
                "[endpoint b]\nhost = fe80::1:2\nport = 9191\n");
  config = load_ok ();
  cr_assert_str_eq (((TrEndpointConfig *) tr_config_lookup_endpoint (g_ptr_array_index (config->services, 0),
                                                                     "b"))->host,
                    "fe80::1:2");
}

Test (tr_config, service_key_in_an_endpoint_group_says_where_it_belongs, .init = setup, .fini = teardown)
{
  with_service ("[service]\nrpcs = log_event\n[endpoint a]\nport = 9190\nmax_retries = 3\n");
  expect_error (TR_CONFIG_ERROR_INVALID, "[endpoint a] max_retries: unknown key in this group",
                "belongs in the [service] group", NULL);
}

Test (tr_config, endpoint_key_in_the_service_group_says_where_it_belongs, .init = setup, .fini = teardown)
{
  with_service ("[service]\nrpcs = log_event\nport = 9190\n[endpoint a]\nport = 9190\n");
  expect_error (TR_CONFIG_ERROR_INVALID, "[service] port: unknown key in this group",
                "belongs in an [endpoint ID] group", NULL);
}

Test (tr_config, router_and_service_keys_swapped_between_files, .init = setup, .fini = teardown)
{
  with_service ("[service]\nrpcs = log_event\nsync_mode = none\n");
  expect_error (TR_CONFIG_ERROR_INVALID, "[service] sync_mode: unknown key in this group",
                "belongs in the [router] group of router.conf", NULL);
  write_router ("[router]\nmax_inflight = 3\n");
  expect_error (TR_CONFIG_ERROR_INVALID, "[router] max_inflight: unknown key in this group",
                "belongs in the [service] group", NULL);
}

Test (tr_config, unknown_key_anywhere_stays_unknown, .init = setup, .fini = teardown)
{
  with_service ("[service]\nrpcs = log_event\n[endpoint a]\nport = 9190\ncolour = red\n");
  expect_error (TR_CONFIG_ERROR_INVALID, "[endpoint a] colour: unknown key", NULL);
}

/* ---- max_frame_size: a default follows group_file_size ---- */

/* A small group_file_size with max_frame_size unset used to fail start-up
 * with "max_frame_size: 16384000 is more than half of group_file_size". */
Test (tr_config, default_max_frame_size_follows_a_small_group_file_size, .init = setup, .fini = teardown)
{
  g_autoptr (TrConfig) config = NULL;
  g_autofree char *text = NULL;

  write_router ("[router]\ngroup_file_size = 1M\n");
  config = load_ok ();
  cr_assert_eq (config->max_frame_size, 512u * 1024);
  cr_assert (config->max_frame_size_is_default);
  text = tr_config_to_string (config);
  cr_assert (strstr (text, "# max_frame_size: not set, so 512K (the default 16000K, or half of group_file_size "
                           "when that is smaller)\n") != NULL, "%s", text);
  cr_assert (strstr (text, "\nmax_frame_size") == NULL, "%s", text);
}

Test (tr_config, default_max_frame_size_when_group_file_size_is_large, .init = setup, .fini = teardown)
{
  g_autoptr (TrConfig) config = NULL;
  g_autofree char *text = NULL;

  write_router ("[router]\ngroup_file_size = 64M\n");
  config = load_ok ();
  cr_assert_eq (config->max_frame_size, TR_FRAME_DEFAULT_MAX_SIZE);
  text = tr_config_to_string (config);
  cr_assert (strstr (text, "# max_frame_size: not set, so 16000K (the default") != NULL, "%s", text);
}

/* A value the user wrote is never lowered behind their back. */
Test (tr_config, explicit_max_frame_size_above_half_stays_an_error, .init = setup, .fini = teardown)
{
  write_router ("[router]\ngroup_file_size = 1M\nmax_frame_size = 16384000\n");
  expect_error (TR_CONFIG_ERROR_INVALID, "[router] max_frame_size: 16384000 is more than half of group_file_size "
                "(1048576)", NULL);
}

Test (tr_config, explicit_max_frame_size_has_no_default_comment, .init = setup, .fini = teardown)
{
  g_autoptr (TrConfig) config = NULL;
  g_autofree char *text = NULL;

  write_router ("[router]\nmax_frame_size = 1M\n");
  config = load_ok ();
  cr_assert_not (config->max_frame_size_is_default);
  text = tr_config_to_string (config);
  cr_assert (strstr (text, "# max_frame_size") == NULL && strstr (text, "max_frame_size = 1M\n") != NULL, "%s",
             text);
}

/* ---- tr_config_copy: the admin thread's own configuration ---- */

Test (tr_config, copy_is_equal_and_shares_nothing, .init = setup, .fini = teardown)
{
  g_autoptr (TrConfig) config = NULL;
  g_autoptr (TrConfig) copy = NULL;
  g_autofree char *before = NULL;
  g_autofree char *copied = NULL;
  g_autofree char *token = NULL;
  TrEndpointConfig *endpoint;

  write_router ("[router]\nservices = s\nadmin_token_file = token\n");
  token = g_build_filename (fx.root, "conf", "token", NULL);
  tr_test_write_file (token, "t\n", 2);
  write_service ("s", "[service]\nrpcs = log_event, fire\n[endpoint a]\nport = 9190\n[endpoint b]\nport = 9191\n");
  config = load_ok ();
  before = tr_config_to_string (config);
  copy = tr_config_copy (config);
  copied = tr_config_to_string (copy);
  cr_assert_str_eq (copied, before);
  /* What the admin thread changes in its copy stays there. */
  endpoint = tr_config_lookup_endpoint (tr_config_lookup_service (copy, "s"), "b");
  endpoint->stop_send = TRUE;
  cr_assert_not (tr_config_lookup_endpoint (tr_config_lookup_service (config, "s"), "b")->stop_send);
  /* And it outlives the original (ASan / valgrind would see a shared pointer). */
  g_clear_pointer (&config, tr_config_free);
  cr_assert (g_str_has_suffix (tr_config_lookup_service (copy, "s")->path, "/services/s.conf"));
  cr_assert_str_eq (g_ptr_array_index (tr_config_lookup_service (copy, "s")->rpcs, 1), "fire");
  cr_assert (g_str_has_suffix (copy->admin_token_file, "/conf/token"), "%s", copy->admin_token_file);
}

/* Bounded disk: min_free_space ([router], a size or N%), max_backlog_bytes
 * and max_backlog_age ([service]). */
Test (tr_config, disk_limits_defaults_units_and_errors, .init = setup, .fini = teardown)
{
  static const struct {
    const char *age;
    guint64 seconds;
    const char *shown; /* as tr_config_format_duration() writes it back */
  } ages[] = { { "0", 0, "0" },          { "30s", 30, "30s" },  { "90s", 90, "90s" }, { "10m", 600, "10m" },
               { "24h", 86400, "1d" },   { "7d", 604800, "7d" }, { "3650d", 315360000, "3650d" } };
  static const struct {
    const char *router; /* [router] keys */
    const char *service; /* [service] keys */
    const char *needle;
  } bad[] = {
    { "min_free_space = 100%", "", "[router] min_free_space: '100%' is not a percentage in 0..99%" },
    { "min_free_space = x%", "", "[router] min_free_space: 'x%' is not a percentage" },
    { "min_free_space = 5T", "", "[router] min_free_space: '5T' is neither a size" },
    { "", "max_backlog_bytes = -1", "[service] max_backlog_bytes: '-1' is not a size" },
    { "", "max_backlog_age = 10", "[service] max_backlog_age: '10' is not a duration" },
    { "", "max_backlog_age = 10y", "[service] max_backlog_age: '10y' is not a duration" },
    { "", "max_backlog_age = 3651d", "[service] max_backlog_age: '3651d' is not a duration" },
    { "", "max_backlog_age = 1hh", "[service] max_backlog_age: '1hh' is not a duration" },
  };

  with_service (MIN_SERVICE);
  {
    g_autoptr (TrConfig) c = load_ok ();
    const TrServiceConfig *s = g_ptr_array_index (c->services, 0);
    g_autofree char *text = tr_config_to_string (c);
    cr_assert_eq (c->min_free_bytes, G_GUINT64_CONSTANT (256) << 20);
    cr_assert_eq (c->min_free_percent, 0);
    cr_assert_eq (s->max_backlog_bytes, 0, "off by default");
    cr_assert_eq (s->max_backlog_age_s, 0, "off by default");
    cr_assert (strstr (text, "min_free_space = 256M\n") && strstr (text, "max_backlog_bytes = 0\n")
                   && strstr (text, "max_backlog_age = 0\n"),
               "%s", text);
  }
  for (guint i = 0; i < G_N_ELEMENTS (ages); i++) {
    g_autofree char *service = g_strdup_printf ("[service]\nrpcs = log_event\nmax_backlog_bytes = 2G\n"
                                                "max_backlog_age = %s\n[endpoint a]\nport = 9190\n",
                                                ages[i].age);
    g_autoptr (TrConfig) c = NULL;
    const TrServiceConfig *s;
    g_autofree char *back = NULL;
    write_router ("[router]\nservices = s\nmin_free_space = 5%\n");
    write_service ("s", service);
    c = load_ok ();
    s = g_ptr_array_index (c->services, 0);
    cr_assert_eq (s->max_backlog_bytes, G_GUINT64_CONSTANT (2) << 30);
    cr_assert_eq (s->max_backlog_age_s, ages[i].seconds, "%s", ages[i].age);
    cr_assert_eq (c->min_free_percent, 5);
    cr_assert_eq (c->min_free_bytes, 0);
    back = tr_config_format_duration (ages[i].seconds);
    cr_assert_str_eq (back, ages[i].shown);
  }
  for (guint i = 0; i < G_N_ELEMENTS (bad); i++) {
    g_autofree char *router = g_strdup_printf ("[router]\nservices = s\n%s\n", bad[i].router);
    g_autofree char *service = g_strdup_printf ("[service]\nrpcs = log_event\n%s\n[endpoint a]\nport = 9190\n",
                                                bad[i].service);
    write_router (router);
    write_service ("s", service);
    expect_error (TR_CONFIG_ERROR_INVALID, bad[i].needle, NULL);
  }
}

/* A BACKUP service is a replication link: kept apart from the COMMON
 * services (push, ingress and the store never see it), loaded back from
 * the effective settings, and refused on a node that is not a MASTER. */
Test (tr_config, backup_service_is_a_replication_link, .init = setup, .fini = teardown)
{
  g_autoptr (TrConfig) config = NULL;
  g_autoptr (TrConfig) copy = NULL;
  g_autoptr (TrConfig) again = NULL;
  g_autoptr (GPtrArray) changes = NULL;
  g_autofree char *text = NULL;
  const TrServiceConfig *link;

  write_router ("[router]\nservices = s, replicas\n");
  write_service ("s", "[service]\nrpcs = a\n[endpoint e]\nport = 7000\n");
  write_service ("replicas", "[service]\nservice_type = BACKUP\n[endpoint b1]\nport = 9300\nstop_send = true\n");
  config = load_ok ();
  cr_assert_eq (config->services->len, 1);
  cr_assert_eq (config->replicas->len, 1);
  link = g_ptr_array_index (config->replicas, 0);
  cr_assert_str_eq (link->name, "replicas");
  cr_assert_eq (link->service_type, TR_SERVICE_BACKUP);
  cr_assert_eq (link->rpcs->len, 0);
  cr_assert_null (tr_config_lookup_service (config, "replicas"));
  copy = tr_config_copy (config);
  cr_assert_eq (copy->replicas->len, 1);
  cr_assert (((TrEndpointConfig *) ((TrServiceConfig *) copy->replicas->pdata[0])->endpoints->pdata[0])->stop_send);
  text = tr_config_to_string (config);
  cr_assert (strstr (text, "services = s, replicas\n") != NULL, "%s", text);
  cr_assert (strstr (text, "service_type = BACKUP\nmax_inflight") != NULL, "%s", text);
  /* A change of the links is named apart, so a reload refuses it. */
  write_router ("[router]\nservices = s\n");
  again = load_ok ();
  changes = tr_config_diff_router (config, again);
  cr_assert_eq (changes->len, 1);
  cr_assert_str_eq (((TrConfigKeyChange *) changes->pdata[0])->key, "services (service_type = BACKUP)");

  write_router ("[router]\nserver_type = BACKUP\nreplication_listen = 127.0.0.1:9300\nservices = s, replicas\n");
  expect_error (TR_CONFIG_ERROR_INVALID, "replicas.conf: [service] service_type: BACKUP: only a MASTER feeds replicas",
                NULL);
  write_router ("[router]\nserver_type = BACKUP\nreplication_listen = [::1]:9300\nservices = s\n");
  g_clear_pointer (&config, tr_config_free);
  config = load_ok ();
  cr_assert_eq (config->server_type, TR_SERVER_BACKUP);
  cr_assert_str_eq (config->replication_host, "::1");
  cr_assert_eq (config->replication_port, 9300);
}
