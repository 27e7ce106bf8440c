/* tr_push_control.c - operator control of the endpoints (tr-admin):
 * stop_send on/off, skip forward, rewind.
 *
 * Each public call packs its request and runs it on the push thread with
 * tr_push__run_sync(): every field of TrPush stays owned by the push
 * thread (tr_push_private.h).
 *
 * Moving a position (skip, rewind) closes the connection first, so no
 * answer to a message sent from the old position can be mistaken for one
 * from the new; the endpoint then reconnects (unless stopped) and sends
 * from the new position.  The new position is recorded like an
 * acknowledgement (send state flushed within state_flush_ms) and the
 * service's low-water mark is recomputed, downwards too after a rewind.
 */
#undef G_LOG_DOMAIN
#define G_LOG_DOMAIN "tr-push"

#include "tr_push_private.h"

#include "tr_router_error.h"

#include <string.h>

typedef enum {
  CONTROL_STOP_SEND,
  CONTROL_SKIP,
  CONTROL_SKIP_BY,
  CONTROL_REWIND,
} ControlOp;

typedef struct {
  TrPush *push;
  ControlOp op;
  const char *service;
  const char *endpoint;
  gboolean stop;
  guint64 seqid;
  gboolean ok;
  GError *error;
} ControlRequest;

static TrPushEndpoint *
find_endpoint (TrPush *push, const char *service_name, const char *endpoint_id, GError **error)
{
  for (guint s = 0; s < push->services->len; s++) {
    TrPushService *service = g_ptr_array_index (push->services, s);
    if (strcmp (service->name, service_name) != 0)
      continue;
    for (guint i = 0; i < service->endpoints->len; i++) {
      TrPushEndpoint *endpoint = g_ptr_array_index (service->endpoints, i);
      if (strcmp (endpoint->id, endpoint_id) == 0)
        return endpoint;
    }
    g_set_error (error, TR_ROUTER_ERROR, TR_ROUTER_ERROR_NOT_FOUND, "service '%s' has no endpoint '%s'",
                 service_name, endpoint_id);
    return NULL;
  }
  g_set_error (error, TR_ROUTER_ERROR, TR_ROUTER_ERROR_NOT_FOUND, "no service '%s'", service_name);
  return NULL;
}

/* Closes the connection and drops what is in flight (the peer is IDLE,
 * its backoff and window reset); stop_send is left as it is. */
void
tr_push__endpoint_disconnect (TrPushEndpoint *endpoint)
{
  tr_peer_stop (endpoint->peer);
  endpoint->next_seqid = endpoint->acked + 1;
  endpoint->stop_fill_at = 0;
  endpoint->rpc_fail_seqid = 0;
  endpoint->rpc_fail_rpc_id = 0;
  endpoint->rpc_fail_count = 0;
  /* The operator moved or stopped it: no longer blocked on that seqid; the
   * error itself stays current until the next connection (on_connected). */
  endpoint->failure_is_rpc = FALSE;
}

void
tr_push__endpoint_set_stop_send (TrPushEndpoint *endpoint, gboolean stop)
{
  if (stop && !endpoint->stopped) {
    tr_push__endpoint_disconnect (endpoint);
    endpoint->stopped = TRUE;
    tr_push__log (endpoint, G_LOG_LEVEL_MESSAGE, endpoint->acked + 1,
                  "stop_send on (operator): sending nothing, position kept at seqid %" G_GUINT64_FORMAT,
                  endpoint->acked + 1);
  } else if (!stop && endpoint->stopped) {
    tr_push__endpoint_disconnect (endpoint);
    endpoint->stopped = FALSE;
    tr_push__log (endpoint, G_LOG_LEVEL_MESSAGE, endpoint->acked + 1,
                  "stop_send off (operator): resuming at seqid %" G_GUINT64_FORMAT, endpoint->acked + 1);
    tr_push__endpoint_start (endpoint);
  }
}

void
tr_push__endpoint_move (TrPushEndpoint *endpoint, guint64 to_seqid)
{
  gboolean running = !endpoint->stopped;

  tr_push__endpoint_disconnect (endpoint);
  endpoint->acked = to_seqid - 1;
  endpoint->next_seqid = to_seqid;
  tr_push__acked (endpoint);
  tr_push__positions_moved (endpoint->push, endpoint->service);
  if (running)
    tr_push__endpoint_start (endpoint);
}

static void
move_position (TrPushEndpoint *endpoint, guint64 to_seqid)
{
  guint64 from = endpoint->acked + 1;

  tr_push__log (endpoint, G_LOG_LEVEL_MESSAGE, to_seqid,
                "position moved by the operator from seqid %" G_GUINT64_FORMAT " to %" G_GUINT64_FORMAT, from,
                to_seqid);
  tr_push__endpoint_move (endpoint, to_seqid);
}

static gboolean
skip (TrPushEndpoint *endpoint, guint64 to_seqid, GError **error)
{
  guint64 head = tr_rpcstore_service_head (endpoint->push->store, endpoint->service->service_id);

  if (to_seqid < endpoint->acked + 1 || to_seqid > head + 1) {
    g_set_error (error, TR_ROUTER_ERROR, TR_ROUTER_ERROR_INVALID,
                 "%s/%s: cannot skip to seqid %" G_GUINT64_FORMAT ": allowed %" G_GUINT64_FORMAT "..%"
                 G_GUINT64_FORMAT " (next to send .. service head + 1)",
                 endpoint->service->name, endpoint->id, to_seqid, endpoint->acked + 1, head + 1);
    return FALSE;
  }
  if (to_seqid != endpoint->acked + 1)
    move_position (endpoint, to_seqid);
  return TRUE;
}

/* Skips the next @count seqids: @count (>= 1) up to the number waiting. */
static gboolean
skip_by (TrPushEndpoint *endpoint, guint64 count, guint64 *to_seqid_out, GError **error)
{
  guint64 head = tr_rpcstore_service_head (endpoint->push->store, endpoint->service->service_id);
  guint64 waiting = head > endpoint->acked ? head - endpoint->acked : 0;

  if (count == 0 || count > waiting) {
    g_set_error (error, TR_ROUTER_ERROR, TR_ROUTER_ERROR_INVALID,
                 "%s/%s: cannot skip %" G_GUINT64_FORMAT " rpcs: allowed 1..%" G_GUINT64_FORMAT
                 " (acknowledged seqid %" G_GUINT64_FORMAT ", service head %" G_GUINT64_FORMAT ")",
                 endpoint->service->name, endpoint->id, count, waiting, endpoint->acked, head);
    return FALSE;
  }
  *to_seqid_out = endpoint->acked + count + 1;
  return skip (endpoint, *to_seqid_out, error);
}

static gboolean
rewind_to (TrPushEndpoint *endpoint, guint64 to_seqid, GError **error)
{
  TrRpcStore *store = endpoint->push->store;
  guint32 service_id = endpoint->service->service_id;
  guint64 first;

  if (to_seqid == 0 || to_seqid > endpoint->acked + 1) {
    g_set_error (error, TR_ROUTER_ERROR, TR_ROUTER_ERROR_INVALID,
                 "%s/%s: cannot rewind to seqid %" G_GUINT64_FORMAT ": the next seqid to send is %"
                 G_GUINT64_FORMAT " (use skip to move forward)",
                 endpoint->service->name, endpoint->id, to_seqid, endpoint->acked + 1);
    return FALSE;
  }
  /* Hold retention back first, then check what is still stored: a part
   * deleted before this point shows in tr_rpcstore_service_first(). */
  if (to_seqid < endpoint->service->low_water)
    tr_rpcstore_set_low_water (store, service_id, to_seqid);
  first = tr_rpcstore_service_first (store, service_id);
  if (first == 0 || to_seqid < first) {
    tr_push__positions_moved (endpoint->push, endpoint->service);
    g_set_error (error, TR_ROUTER_ERROR, TR_ROUTER_ERROR_INVALID,
                 "%s/%s: cannot rewind to seqid %" G_GUINT64_FORMAT ": retention already deleted it; the first "
                 "seqid still stored is %" G_GUINT64_FORMAT,
                 endpoint->service->name, endpoint->id, to_seqid, first);
    return FALSE;
  }
  if (to_seqid != endpoint->acked + 1)
    move_position (endpoint, to_seqid);
  return TRUE;
}

static void
on_control (gpointer user_data)
{
  ControlRequest *request = user_data;
  TrPushEndpoint *endpoint = find_endpoint (request->push, request->service, request->endpoint, &request->error);

  if (endpoint != NULL) {
    switch (request->op) {
    case CONTROL_STOP_SEND:
      tr_push__endpoint_set_stop_send (endpoint, request->stop);
      request->ok = TRUE;
      break;
    case CONTROL_SKIP:
      request->ok = skip (endpoint, request->seqid, &request->error);
      break;
    case CONTROL_SKIP_BY:
      request->ok = skip_by (endpoint, request->seqid, &request->seqid, &request->error);
      break;
    case CONTROL_REWIND:
      request->ok = rewind_to (endpoint, request->seqid, &request->error);
      break;
    }
  }
}

/* Runs @request on the push thread and waits for it. */
static gboolean
run_control (ControlRequest *request, GError **error)
{
  tr_push__run_sync (request->push, on_control, request);
  if (!request->ok) {
    g_propagate_error (error, request->error);
    return FALSE;
  }
  return TRUE;
}

gboolean
tr_push_set_stop_send (TrPush *push, const char *service, const char *endpoint, gboolean stop, GError **error)
{
  ControlRequest request = { 0 };

  g_return_val_if_fail (push != NULL && service != NULL && endpoint != NULL, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  request.push = push;
  request.op = CONTROL_STOP_SEND;
  request.service = service;
  request.endpoint = endpoint;
  request.stop = stop;
  return run_control (&request, error);
}

gboolean
tr_push_skip (TrPush *push, const char *service, const char *endpoint, guint64 to_seqid, GError **error)
{
  ControlRequest request = { 0 };

  g_return_val_if_fail (push != NULL && service != NULL && endpoint != NULL, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  request.push = push;
  request.op = CONTROL_SKIP;
  request.service = service;
  request.endpoint = endpoint;
  request.seqid = to_seqid;
  return run_control (&request, error);
}

gboolean
tr_push_skip_by (TrPush *push, const char *service, const char *endpoint, guint64 count, guint64 *to_seqid_out,
                 GError **error)
{
  ControlRequest request = { 0 };

  g_return_val_if_fail (push != NULL && service != NULL && endpoint != NULL, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  request.push = push;
  request.op = CONTROL_SKIP_BY;
  request.service = service;
  request.endpoint = endpoint;
  request.seqid = count;
  if (!run_control (&request, error))
    return FALSE;
  if (to_seqid_out != NULL)
    *to_seqid_out = request.seqid;
  return TRUE;
}

gboolean
tr_push_rewind (TrPush *push, const char *service, const char *endpoint, guint64 to_seqid, GError **error)
{
  ControlRequest request = { 0 };

  g_return_val_if_fail (push != NULL && service != NULL && endpoint != NULL, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  request.push = push;
  request.op = CONTROL_REWIND;
  request.service = service;
  request.endpoint = endpoint;
  request.seqid = to_seqid;
  return run_control (&request, error);
}
