/* tr_rpcrecord.h - the one codec of the RPC store's records: data records,
 * index entries, list entries and the checkpoint.
 *
 * The store's commit path, its reads, its recovery and tools all encode and
 * decode through these functions; there is no second parser.  Formats
 * (version 1, docs/format/rpcstore.md), all little-endian:
 *
 * Data record: record frame v1 (tr_record.h) of type TR_RPCRECORD_TYPE_RPC,
 * payload:
 *   0   8  global rpc id (>= 1, dense: each record is the previous one + 1)
 *   8   8  commit time, microseconds since the Unix epoch (i64)
 *   16  2  n = number of subscribing services
 *   18  2  flags, 0 (not checked by readers in version 1)
 *   20  4n service ids (u32 each), in the order their list entries were made
 *   20+4n  the Thrift message, byte for byte as received (no frame length)
 *
 * Index entry (16 bytes, entry of rpc id r at logical offset (r-1)*16):
 *   0 8 logical offset of the data record in the data GroupFile
 *   8 4 total record length (header + payload)
 *   12 4 the data record's checksum (its header bytes 8..11)
 *
 * List entry (16 bytes, entry of service seqid s at logical offset (s-1)*16):
 *   0 8 global rpc id
 *   8 4 the data record's checksum
 *   12 4 low 32 bits of XXH3-64(seed TR_RECORD_SEED) over bytes 0..11
 *
 * Checkpoint (RotateFile state):
 *   0 4 version (1)
 *   4 8 last rpc id whose index and list entries are durable
 *   12 8 logical data offset just after that rpc's record
 *   20 4 m = number of services
 *   24 12m (u32 service id, u64 list head seqid) pairs
 *
 * Threads: pure functions on caller-owned memory; thread-safe.
 */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

#define TR_RPCRECORD_TYPE_RPC 0x44 /* 'D' */
/* Payload bytes before the service ids. */
#define TR_RPCRECORD_PREFIX 20
#define TR_RPCRECORD_ENTRY_SIZE 16
#define TR_RPCRECORD_CHECKPOINT_VERSION 1
/* The smallest data record (no service, empty message). */
#define TR_RPCRECORD_MIN_SIZE (12 + TR_RPCRECORD_PREFIX)

/* A decoded data record.  Pointers point into the caller's buffer and are
 * valid as long as it is. */
typedef struct {
  guint64 rpc_id;
  gint64 commit_time_us;
  guint n_services;
  const guint8 *service_ids; /* (transfer none): n_services u32 LE; tr_rpcrecord_service_id() */
  const guint8 *message;     /* (transfer none) */
  gsize message_len;
  gsize message_offset;      /* of the message in the record */
  guint32 checksum;          /* the record's checksum (header bytes 8..11) */
  gsize total;               /* the record's size, header included */
} TrRpcRecordView;

/* Size of a data record for @n_services and a message of @message_len. */
gsize tr_rpcrecord_size (guint n_services, gsize message_len);

/* tr_rpcrecord_encode:
 * Appends the data record to @buf.
 * Returns: the record's checksum (the copy its index and list entries carry). */
guint32 tr_rpcrecord_encode (GByteArray *buf, guint64 rpc_id, gint64 commit_time_us, const guint32 *service_ids,
                             guint n_services, const guint8 *message, gsize message_len);

/* tr_rpcrecord_decode:
 * Decodes the data record at the start of @buf[0..@avail), which must hold
 * it whole; @max_len bounds its payload.  Returns FALSE, with *@why (a
 * static phrase for a log line or an error message) set, when it is not a
 * valid data record: "record cut short", "record checksum mismatch",
 * "record of unexpected type or size". */
gboolean tr_rpcrecord_decode (const guint8 *buf, gsize avail, guint32 max_len, TrRpcRecordView *out,
                              const char **why);

/* tr_rpcrecord_peek_time:
 * The rpc id and commit time of the data record that starts with
 * @buf[0..TR_RPCRECORD_PEEK_SIZE), read without the rest of the record and
 * so without checking its checksum: for measures (the age of an endpoint's
 * backlog, tr_rpcstore_backlog_cut()), never for what is delivered.
 * FALSE when the header is not that of a data record (type, version,
 * reserved bytes, a payload of at least the fixed prefix up to @max_len). */
#define TR_RPCRECORD_PEEK_SIZE (12 + 16)
gboolean tr_rpcrecord_peek_time (const guint8 *buf, guint32 max_len, guint64 *rpc_id_out, gint64 *time_out);

/* The @i-th service id of a decoded record (@i < n_services). */
guint32 tr_rpcrecord_service_id (const TrRpcRecordView *view, guint i);

/* An index entry. */
typedef struct {
  guint64 offset;    /* of the data record in the data GroupFile */
  guint32 length;    /* of the whole record */
  guint32 checksum;  /* the record's */
} TrRpcIndexEntry;

void tr_rpcrecord_index_encode (guint8 entry[TR_RPCRECORD_ENTRY_SIZE], const TrRpcIndexEntry *index);
/* FALSE when the entry cannot describe a record: a length below the
 * smallest record or above @max_record_len (an unwritten entry is zeros). */
gboolean tr_rpcrecord_index_decode (const guint8 entry[TR_RPCRECORD_ENTRY_SIZE], guint64 max_record_len,
                                    TrRpcIndexEntry *out);

void tr_rpcrecord_list_encode (guint8 entry[TR_RPCRECORD_ENTRY_SIZE], guint64 rpc_id, guint32 record_checksum);
/* FALSE when the entry fails its checksum or is unwritten (rpc id 0). */
gboolean tr_rpcrecord_list_decode (const guint8 entry[TR_RPCRECORD_ENTRY_SIZE], guint64 *rpc_id_out,
                                   guint32 *record_checksum_out);

/* One service's list head in a checkpoint. */
typedef struct {
  guint32 service_id;
  guint64 head; /* last seqid whose list entry is durable */
} TrRpcCheckpointHead;

typedef struct {
  guint64 rpc_id;   /* last rpc id whose entries are durable */
  guint64 data_end; /* logical data offset just after its record */
  GArray *heads;    /* (element-type TrRpcCheckpointHead) */
} TrRpcCheckpoint;

/* Appends the checkpoint of @rpc_id and @data_end with the list heads of
 * service ids 0..@n_heads-1 to @out. */
void tr_rpcrecord_checkpoint_encode (GByteArray *out, guint64 rpc_id, guint64 data_end, const guint64 *heads,
                                     guint n_heads);

/* tr_rpcrecord_checkpoint_decode:
 * Decodes and checks a checkpoint: version and size, an rpc count that fits
 * in @data_end bytes of records, no list longer than the rpcs.  Fills @out
 * (free its heads with tr_rpcrecord_checkpoint_clear()).
 * Errors: TR_STORAGE_ERROR_CORRUPT (the message says what is wrong; the
 * caller names the file). */
gboolean tr_rpcrecord_checkpoint_decode (const guint8 *state, gsize len, TrRpcCheckpoint *out, GError **error);
void tr_rpcrecord_checkpoint_clear (TrRpcCheckpoint *checkpoint);

G_END_DECLS
