/* tr_repl_proto.h - the replication stream's messages (thrift/repl.thrift),
 * encoded and decoded with the project's own codec (tr_frame,
 * tr_thrift_value): the one place that knows their field ids, shared by the
 * master's side (tr_repl_source) and the replica's (tr_repl_sink).
 *
 * Pure functions over caller buffers: thread-safe.  Decoders point into the
 * caller's buffer (names, messages) and allocate only the arrays they fill.
 */
#pragma once

#include "tr_frame.h"
#include "tr_rpcstore.h"

#include <glib.h>

G_BEGIN_DECLS

#define TR_REPL_METHOD_HELLO "hello"
#define TR_REPL_METHOD_APPEND "append"

/* A batch the source sends: at most this many records, and at most this
 * many message bytes unless one record alone is larger (it then goes
 * alone).  Big enough that a catch-up is a few hundred frames a second,
 * small enough that one batch's group commit on the replica stays short. */
#define TR_REPL_BATCH_RECORDS 512
#define TR_REPL_BATCH_BYTES (1024 * 1024)
/* What a batch frame may hold beyond its messages (record fields, ids). */
#define TR_REPL_BATCH_OVERHEAD (64 * 1024)

/* Refused.code (repl.thrift). */
typedef enum {
  TR_REPL_REFUSED_SERVICES_DIFFER = 1,
  TR_REPL_REFUSED_STALE_EPOCH = 2,
  TR_REPL_REFUSED_NOT_CONTINUOUS = 3,
  TR_REPL_REFUSED_NO_HELLO = 4,
  TR_REPL_REFUSED_STORE_FAILED = 5,
  TR_REPL_REFUSED_BAD_BATCH = 6,
  TR_REPL_REFUSED_LAYOUT_DIFFERS = 7,
} TrReplRefusedCode;

/* A ReplService: a COMMON service as a store knows it. */
typedef struct {
  char *name;      /* (transfer full) */
  gint32 store_id;
  GPtrArray *rpcs; /* (transfer full) (element-type utf8) */
} TrReplService;

void tr_repl_service_free (gpointer service);

/* hello's arguments. */
typedef struct {
  char *server_id;        /* (transfer full) */
  guint64 epoch;
  guint64 head;
  GPtrArray *services;    /* (transfer full) (element-type TrReplService) */
  char *producer_address; /* (transfer full) */
  guint64 group_file_size; /* 0: not sent */
} TrReplHello;

void tr_repl_hello_clear (TrReplHello *hello);

/* Refused (also the replica's answer to a hello or append it refuses). */
typedef struct {
  TrReplRefusedCode code;
  char *reason; /* (transfer full) */
  guint64 head;
  guint64 epoch;
} TrReplRefused;

void tr_repl_refused_clear (TrReplRefused *refused);

/* ---- the master's side ---- */

/* Appends a framed CALL hello with @seqid to @out. */
void tr_repl_build_hello (GByteArray *out, gint32 seqid, const TrReplHello *hello);

/* Appends a framed CALL append with @seqid: @records[0..@n) (ids in order)
 * of @epoch, the source's head @source_head and the id below which its
 * retention needs nothing @source_keeps_from. */
void tr_repl_build_append (GByteArray *out, gint32 seqid, guint64 epoch, TrRpcStoreRecord *const *records,
                           guint n_records, guint64 source_head, guint64 source_keeps_from);

/* tr_repl_parse_result:
 * Reads a REPLY's result struct @body[0..@len) (TrReply->body): the
 * success value (field 0: for hello a HelloReply, whose head and epoch go
 * to @head_out / @epoch_out, server id to @server_id_out (transfer full,
 * optional) and head digest to @digest_out (optional; *@has_digest_out
 * says whether it was sent); for append an i64 head to @head_out), or the
 * Refused (field 1) into @refused.
 * Returns: TR_FRAME_OK with *@is_refused set accordingly, or a parse error
 * (a result with neither field is TR_FRAME_BAD_DATA). */
TrFrameStatus tr_repl_parse_result (const guint8 *body, gsize len, gboolean hello, guint64 *head_out,
                                    guint64 *epoch_out, char **server_id_out, guint64 *digest_out,
                                    gboolean *has_digest_out, gboolean *is_refused, TrReplRefused *refused);

/* ---- the replica's side ---- */

/* tr_repl_parse_hello:
 * Decodes hello's args struct @body[0..@len) into @out, which is
 * overwritten (clear a hello it held first); clear it afterwards, also
 * after an error.
 * Returns: TR_FRAME_OK, a parse error, or TR_FRAME_BAD_DATA when a field is
 * missing or has the wrong type. */
TrFrameStatus tr_repl_parse_hello (const guint8 *body, gsize len, TrReplHello *out);

/* tr_repl_parse_append:
 * Decodes append's args (*@source_keeps_from_out 0 when absent): the records
 * become TrRpcStoreRecords whose
 * messages are copied with tr_rpcstore_copy_message (@store's memory).
 * @records_out: (transfer full) (element-type TrRpcStoreRecord) freed with
 * tr_rpcstore_record_free.
 * Returns: TR_FRAME_OK or a parse error (a record without id, message or
 * service list, a negative service id: TR_FRAME_BAD_DATA). */
TrFrameStatus tr_repl_parse_append (TrRpcStore *store, const guint8 *body, gsize len, guint64 *epoch_out,
                                    guint64 *first_id_out, GPtrArray **records_out, guint64 *source_head_out,
                                    guint64 *source_keeps_from_out);

/* Appends a REPLY to hello/@seqid carrying HelloReply {server_id, head,
 * epoch, head_digest (only when @has_digest)}. */
void tr_repl_build_hello_reply (GByteArray *out, gint32 seqid, const char *server_id, guint64 head, guint64 epoch,
                                gboolean has_digest, guint64 head_digest);

/* Appends a REPLY to append carrying @head. */
void tr_repl_build_append_reply (GByteArray *out, gint32 seqid, guint64 head);

/* Appends a REPLY to @method (hello or append) carrying @refused. */
void tr_repl_build_refused (GByteArray *out, const char *method, gint32 seqid, const TrReplRefused *refused);

/* "services differ", "stale epoch", ... for log lines. */
const char *tr_repl_refused_code_to_string (TrReplRefusedCode code);

G_END_DECLS
