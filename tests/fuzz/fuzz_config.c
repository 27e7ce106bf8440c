/* fuzz_config.c - libFuzzer harness for the configuration loader
 * (router/core/tr_config.h).
 *
 * The input becomes router.conf in a scratch directory (created once and
 * reused) next to a fixed valid services/s.conf, and is loaded with
 * tr_config_load; then it becomes a service file loaded with
 * tr_config_load_service.  Errors are expected; a failure must set the
 * error, a success must survive tr_config_to_string and free cleanly. */
#include <string.h>

#include "fuzz_util.h"
#include "tr_config.h"

int LLVMFuzzerInitialize (int *argc, char ***argv);
int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

static const char service_conf[] = "[service]\n"
                                   "rpcs = log_event, fire\n"
                                   "[endpoint e1]\n"
                                   "port = 9100\n";

static char *router_path;
static char *service_path;
static char *fuzz_service_path;

int
LLVMFuzzerInitialize (int *argc, char ***argv)
{
  const char *dir;
  g_autofree char *services = NULL;

  (void) argc;
  (void) argv;
  fuzz_init_logging ();
  dir = fuzz_tmpdir ();
  services = g_build_filename (dir, "services", NULL);
  if (g_mkdir (services, 0700) != 0)
    abort ();
  router_path = g_build_filename (dir, "router.conf", NULL);
  service_path = g_build_filename (services, "s.conf", NULL);
  fuzz_service_path = g_build_filename (services, "fuzz.conf", NULL);
  fuzz_write_file (service_path, service_conf, strlen (service_conf));
  return 0;
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  g_autoptr (GError) error = NULL;
  TrConfig *config;
  TrServiceConfig *service;

  fuzz_write_file (router_path, data, size);
  config = tr_config_load (router_path, &error);
  if (config == NULL) {
    FUZZ_CHECK (error != NULL && error->message != NULL);
  } else {
    g_autofree char *text = tr_config_to_string (config);

    FUZZ_CHECK (error == NULL);
    FUZZ_CHECK (text != NULL);
    for (guint i = 0; i < config->services->len; i++) {
      TrServiceConfig *s = g_ptr_array_index (config->services, i);
      FUZZ_CHECK (tr_config_lookup_service (config, s->name) == s);
    }
    tr_config_free (config);
  }
  g_clear_error (&error);

  fuzz_write_file (fuzz_service_path, data, size);
  service = tr_config_load_service (fuzz_service_path, "fuzz", &error);
  if (service == NULL) {
    FUZZ_CHECK (error != NULL && error->message != NULL);
  } else {
    FUZZ_CHECK (error == NULL);
    FUZZ_CHECK (service->rpcs->len > 0);
    tr_service_config_free (service);
  }
  return 0;
}
