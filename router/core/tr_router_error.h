/* tr_router_error.h - the error domain of the router layer (ingress, push,
 * admin).  Messages name the service and endpoint concerned:
 *   "service 'books' has no endpoint 'x'"
 */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

#define TR_ROUTER_ERROR (tr_router_error_quark ())

typedef enum {
  TR_ROUTER_ERROR_NO_SUBSCRIBER, /* no service subscribes to an rpc name */
  TR_ROUTER_ERROR_PROTOCOL,      /* malformed Thrift input */
  TR_ROUTER_ERROR_ENDPOINT,      /* an endpoint failed or refused */
  TR_ROUTER_ERROR_NOT_FOUND,     /* unknown service or endpoint */
  TR_ROUTER_ERROR_INVALID,       /* a request out of range (seqid not stored, ...) */
} TrRouterError;

GQuark tr_router_error_quark (void);

G_END_DECLS
