/* test_tr_ingress.c - the producer side (router/tr_ingress.h) on loopback
 * against a real store in a temporary directory: this process is both the
 * producer (a plain socket) and the ingress loop (the default
 * GMainContext, iterated while waiting for an answer). */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tr_config.h"
#include "tr_frame.h"
#include "tr_ingress.h"
#include "tr_rpcstore.h"
#include "tr_test_util.h"

typedef struct {
  char *root;
  TrConfig *config;
  TrRpcStore *store;
  TrIngress *ingress;
} Fixture;

static Fixture fx;

static void
setup (void)
{
  fx.root = tr_test_mkdtemp ();
}

static void
teardown (void)
{
  tr_ingress_free (fx.ingress);
  tr_rpcstore_close (fx.store);
  tr_config_free (fx.config);
  tr_test_rmdir (fx.root);
  g_free (fx.root);
  memset (&fx, 0, sizeof fx);
}

/* Writes router.conf (listen on an ephemeral loopback port) and
 * services/svc.conf (rpcs log_event and fire; its endpoint is never
 * contacted: no push runs here), loads them and opens the store. */
static void
open_store (void)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *services = g_build_filename (fx.root, "services", NULL);
  g_autofree char *router_path = g_build_filename (fx.root, "router.conf", NULL);
  g_autofree char *service_path = g_build_filename (services, "svc.conf", NULL);
  const char *router = "[router]\nlisten = 127.0.0.1:0\ndata_dir = data\nservices = svc\n"
                       "group_file_size = 1M\nmax_frame_size = 64K\n";
  const char *service = "[service]\nrpcs = log_event, fire\n\n[endpoint e1]\nhost = 127.0.0.1\nport = 1\n";
  const char *names[] = { "svc", NULL };
  TrRpcStoreOptions options = { 0 };

  cr_assert_eq (g_mkdir_with_parents (services, 0700), 0);
  tr_test_write_file (router_path, router, strlen (router));
  tr_test_write_file (service_path, service, strlen (service));
  fx.config = tr_config_load (router_path, &error);
  cr_assert_not_null (fx.config, "config: %s", error ? error->message : "");
  options.group_file_size = fx.config->group_file_size;
  options.rpc_cache_size = 64 * 1024;
  options.sync_mode = TR_SYNC_NONE;
  options.sync_interval_ms = 10;
  options.checkpoint_interval_ms = 50;
  options.max_message_size = fx.config->max_frame_size;
  fx.store = tr_rpcstore_open (tr_io_posix (), fx.config->data_dir, &options, names, &error);
  cr_assert_not_null (fx.store, "store: %s", error ? error->message : "");
}

TestSuite (tr_ingress, .init = setup, .fini = teardown, .timeout = 30);

/* ---- set-up failures ---- */

/* An fd is open when fcntl() knows it. */
static gboolean
fd_is_open (int fd)
{
  return fcntl (fd, F_GETFD) != -1;
}

Test (tr_ingress, failed_epoll_creation_leaves_fd_0_open)
{
  g_autoptr (GError) error = NULL;
  struct rlimit saved, limit;
  int lowest_free;

  open_store ();
  if (!fd_is_open (0))
    cr_assert_eq (open ("/dev/null", O_RDONLY | O_CLOEXEC), 0, "fd 0 must be open for this test");
  /* Every fd the loop needs exists before the limit drops: the default
   * context's wake-up fd is made once, here. */
  g_main_context_iteration (NULL, FALSE);
  lowest_free = open ("/dev/null", O_RDONLY | O_CLOEXEC);
  cr_assert_gt (lowest_free, 0);
  close (lowest_free);
  cr_assert_eq (getrlimit (RLIMIT_NOFILE, &saved), 0);
  limit = saved;
  limit.rlim_cur = (rlim_t) lowest_free; /* no new fd can be made: epoll_create1 fails with EMFILE */
  cr_assert_eq (setrlimit (RLIMIT_NOFILE, &limit), 0);
  fx.ingress = tr_ingress_new (fx.store, fx.config, &error);
  cr_assert_eq (setrlimit (RLIMIT_NOFILE, &saved), 0);
  cr_assert_null (fx.ingress);
  cr_assert (g_str_has_prefix (error->message, "cannot create an epoll set: "), "%s", error->message);
  cr_assert (fd_is_open (0), "the failed ingress closed fd 0, which it never opened");
}

Test (tr_ingress, listen_on_a_busy_port_fails_naming_it_and_closes_nothing_else)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *expected = NULL;
  TrIngress *first;

  open_store ();
  first = tr_ingress_new (fx.store, fx.config, &error);
  cr_assert_not_null (first, "%s", error ? error->message : "");
  fx.config->listen_port = tr_ingress_get_port (first);
  expected = g_strdup_printf ("cannot listen on 127.0.0.1:%u: ", fx.config->listen_port);
  fx.ingress = tr_ingress_new (fx.store, fx.config, &error);
  cr_assert_null (fx.ingress);
  cr_assert (g_str_has_prefix (error->message, expected), "%s", error->message);
  cr_assert (fd_is_open (0));
  tr_ingress_free (first);
}
