/* tr_peer.h - one outbound Thrift connection: resolve, connect, back off,
 * pipeline up to a window of framed messages and match the replies.
 *
 * Threads: a TrPeer belongs to the thread that runs the GMainContext it is
 * attached to (tr_peer_attach()); for COMMON delivery that is the push
 * thread (tr_push.h).  Every function runs on that thread only; before
 * the peer is attached, or after that thread has stopped for good, the
 * thread that created it may call them instead (TrPush builds its peers on
 * the main thread and stops them there at shutdown).  Not thread-safe.  Name
 * lookups run on GIO's resolver threads and come back on the thread-default
 * context of the owning thread, which must be the attached context.
 *
 * The peer knows frames, seqids and replies, not what the messages mean:
 * its user (TrPushEndpoint for COMMON delivery; replica and forwarding
 * links later) queues messages, tells which await a reply, and decides in
 * its callbacks what a reply or a failure means.
 *
 * States (transitions in tr_peer.c):
 *
 *   IDLE --tr_peer_start()--> CONNECTING --connected--> CONNECTED
 *     ^                         |    ^                      |
 *     |                 failure |    | backoff timer        | failure
 *     |                         v    |                      v
 *     +----tr_peer_stop()---- BACKOFF <---------------------+
 *   (tr_peer_stop() from any state)
 *
 * A failure (refused, timed out, reset, unparsable reply, wrong seqid, or
 * the user's tr_peer_fail()) closes the connection, drops what is in
 * flight and waits retry_backoff_ms x 2^(n-1) (n failures in a row, capped
 * at retry_backoff_max_ms; at most TR_PEER_FIRST_CONTACT_RETRY_MS before
 * the first connection ever made to host:port) before connecting again.
 * tr_peer_reset_backoff() (the user saw progress) starts the count over.
 *
 * Replies are matched in order: a Thrift server answers one connection's
 * requests in order and never answers a oneway, so the expected reply is
 * for the oldest entry in flight that awaits one, and its seqid must be
 * that entry's, on the 32 bits of the wire (tr_frame_wire_seqid()).
 */
#pragma once

#include "tr_frame.h"

#include <glib.h>

G_BEGIN_DECLS

typedef struct _TrPeer TrPeer;

/* Cap of the backoff before the first connection to an address: a peer
 * started after its user is not a failing one. */
#define TR_PEER_FIRST_CONTACT_RETRY_MS 1000

typedef enum {
  TR_PEER_IDLE,       /* not started, or stopped */
  TR_PEER_CONNECTING, /* resolving the name or connecting */
  TR_PEER_CONNECTED,
  TR_PEER_BACKOFF,    /* waiting before the next attempt */
} TrPeerState;

typedef struct {
  guint max_inflight;         /* window: entries in flight at most (>= 1) */
  guint connect_timeout_ms;   /* name lookup + connect */
  guint socket_timeout_ms;    /* no reply for this long with entries in flight: failure */
  guint retry_backoff_ms;
  guint retry_backoff_max_ms;
} TrPeerSettings;

/* One queued message.  A plain value: the user reads it in its callbacks
 * and pops it with tr_peer_inflight_pop(). */
typedef struct {
  guint64 seqid;         /* matched against the reply on its wire 32 bits */
  guint64 end;           /* output stream position just after this message */
  guint64 tag;           /* the user's (for push: the rpc id) */
  guint kind;            /* the user's */
  gboolean awaits_reply; /* FALSE for a oneway */
  gint64 time_us;        /* the user's, 0 from tr_peer_queue() (for push: the RPC's commit time) */
} TrPeerInflight;

typedef struct {
  /* CONNECTING -> CONNECTED.  @where names the address ("127.0.0.1:9000",
   * "name (127.0.0.1:9000)").  The user queues its messages now. */
  void (*connected) (TrPeer *peer, const char *where, gpointer user_data);
  /* A reply to @expected, the oldest entry that awaits one (its seqid was
   * checked).  The entry is still in flight: the callback pops what the
   * reply acknowledges.  Returns FALSE if it failed the peer
   * (tr_peer_fail()). */
  gboolean (*reply) (TrPeer *peer, const TrReply *reply, TrPeerInflight *expected, gpointer user_data);
  /* Bytes were written (tr_peer_get_written()): entries that await no
   * reply may count as sent.  Optional. */
  void (*written) (TrPeer *peer, gpointer user_data);
  /* After a batch of socket events that left the peer connected (replies
   * made room in the window).  Optional. */
  void (*io_done) (TrPeer *peer, gpointer user_data);
  /* The connection failed (@reason, also tr_peer_get_last_error()); it is
   * closed, nothing is in flight, and the next attempt comes in @delay_ms. */
  void (*failed) (TrPeer *peer, const char *reason, guint64 delay_ms, gpointer user_data);
  /* Something worth a log line that is not a failure (an address refused
   * while another is left to try). */
  void (*note) (TrPeer *peer, GLogLevelFlags level, const char *message, gpointer user_data);
} TrPeerCallbacks;

/* tr_peer_new:
 * @host: (transfer none): an IP address or a name (resolved at every attempt)
 * @callbacks: (transfer none): outlives the peer
 * @user_data: (transfer none): given to every callback
 * A new IDLE peer, not attached to any context.
 * Returns: (transfer full) */
TrPeer *tr_peer_new (const char *host, guint16 port, const TrPeerSettings *settings,
                     const TrPeerCallbacks *callbacks, gpointer user_data);

/* Attaches the peer's GSource (socket + timer) to @context; once. */
void tr_peer_attach (TrPeer *peer, GMainContext *context);

/* Closes the connection and destroys the GSource.  NULL is ignored.  Never
 * from inside one of the peer's own callbacks. */
void tr_peer_free (TrPeer *peer);

/* Takes new settings; what is in flight and the connection stay. */
void tr_peer_set_settings (TrPeer *peer, const TrPeerSettings *settings);

/* Changes the address (the next connection uses it); the peer counts as
 * never contacted again.  The caller reconnects (tr_peer_stop() +
 * tr_peer_start()) when it wants the change now. */
void tr_peer_set_address (TrPeer *peer, const char *host, guint16 port);

/* IDLE or BACKOFF -> CONNECTING now. */
void tr_peer_start (TrPeer *peer);

/* Any state -> IDLE: closes the connection, drops what is in flight, stops
 * the timer, resets the backoff and the window. */
void tr_peer_stop (TrPeer *peer);

/* tr_peer_fail:
 * The user's failure (for example an exception the peer cannot judge):
 * closes the connection, drops what is in flight, backs off and calls
 * ->failed.  Safe inside the peer's own callbacks. */
void tr_peer_fail (TrPeer *peer, const char *format, ...) G_GNUC_PRINTF (2, 3);

/* Progress: the next failure backs off from retry_backoff_ms again. */
void tr_peer_reset_backoff (TrPeer *peer);

/* ---- window ---- */

/* Entries the window allows in flight now: max_inflight, or less after
 * tr_peer_window_shrink(). */
guint tr_peer_window (const TrPeer *peer);
/* After a failure of a message: one entry in flight at a time... */
void tr_peer_window_shrink (TrPeer *peer);
/* ...until the user calls this per acknowledgement: the window doubles
 * back to max_inflight. */
void tr_peer_window_grow (TrPeer *peer);

/* ---- sending ---- */

/* tr_peer_queue:
 * Appends one framed message, given as @prefix then @body (either may be
 * empty), to the output, and an entry in flight for it.  CONNECTED only.
 * Nothing is written before tr_peer_flush(). */
void tr_peer_queue (TrPeer *peer, const guint8 *prefix, gsize prefix_len, const guint8 *body, gsize body_len,
                    guint64 seqid, gboolean awaits_reply, guint kind, guint64 tag);

/* Writes what the socket takes now; the rest goes out when it is writable.
 * Returns FALSE if the peer failed (now in BACKOFF). */
gboolean tr_peer_flush (TrPeer *peer);

/* ---- in flight (oldest first) ---- */

guint tr_peer_inflight_length (const TrPeer *peer);
/* Returns: (transfer none) (nullable): valid until the entry is popped or
 * the peer fails or stops. */
TrPeerInflight *tr_peer_inflight_peek_head (const TrPeer *peer);
TrPeerInflight *tr_peer_inflight_peek_tail (const TrPeer *peer);
/* Returns: (transfer full) (nullable): free with g_free(). */
TrPeerInflight *tr_peer_inflight_pop (TrPeer *peer);

/* ---- state ---- */

TrPeerState tr_peer_get_state (const TrPeer *peer);
/* Consecutive failures (the backoff count). */
guint tr_peer_get_retries (const TrPeer *peer);
/* Returns: (transfer none) (nullable): the reason of the last failure;
 * valid until the next failure or tr_peer_free(). */
const char *tr_peer_get_last_error (const TrPeer *peer);
/* Output stream position written to the socket on this connection. */
guint64 tr_peer_get_written (const TrPeer *peer);
/* Whether the peer ever connected to its current host:port. */
gboolean tr_peer_get_contacted (const TrPeer *peer);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (TrPeer, tr_peer_free)

G_END_DECLS
