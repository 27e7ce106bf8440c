/* tr_config_error.h - the error domain of the configuration loader.
 *
 * Messages always name the file, and where it applies the group and key:
 *   "conf/services/demo.conf: [endpoint a] port: '70000' is not a port (1..65535)"
 */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

#define TR_CONFIG_ERROR (tr_config_error_quark ())

typedef enum {
  TR_CONFIG_ERROR_PARSE,   /* the file is not a valid key file (syntax) */
  TR_CONFIG_ERROR_INVALID, /* unknown group/key, bad or inconsistent value, missing key */
  TR_CONFIG_ERROR_IO,      /* a file could not be read (missing, permissions) */
  TR_CONFIG_ERROR_RESTART, /* reload: a changed key that only a restart can apply */
} TrConfigError;

GQuark tr_config_error_quark (void);

G_END_DECLS
