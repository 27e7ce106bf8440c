/* tr_router_error.c - the TR_ROUTER_ERROR domain. */
#include "tr_router_error.h"

G_DEFINE_QUARK (tr-router-error-quark, tr_router_error)
