/* tr_config_error.c - the TR_CONFIG_ERROR domain. */
#include "tr_config_error.h"

G_DEFINE_QUARK (tr-config-error-quark, tr_config_error)
