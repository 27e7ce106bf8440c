/* tr_record.h - the one record codec of thriftrouter's on-disk formats.
 *
 * Every checksummed record on disk (RPC store data records, RotateFile state
 * records, DoubleWriteFile side copies, DoubleWriteBuffer journal entries) is
 * framed by this module.  Writers, recovery and tools/ all call it; there is
 * no second parser.  Format (docs/storage-format.md, "Record frame v1"):
 *
 *   offset size  field
 *   0      4     payload length L, little-endian u32
 *   4      1     record type, 1..255 (0 is never valid: zero-filled space fails)
 *   5      1     frame version, 1
 *   6      2     reserved, 0
 *   8      4     checksum: low 32 bits of XXH3-64 (seed TR_RECORD_SEED) over
 *                bytes 0..7 followed by the L payload bytes
 *   12     L     payload
 *
 * A record is valid when the version is 1, the type is non-zero, the
 * reserved bytes are 0, L is at most the caller's limit and the checksum
 * matches.  Pure functions: thread-safe.
 */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

#define TR_RECORD_HEADER_SIZE 12
#define TR_RECORD_VERSION 1
#define TR_RECORD_SEED G_GUINT64_CONSTANT (0x7472726f75746572) /* "trrouter" */

typedef enum {
  TR_RECORD_OK,        /* a whole valid record is at the start of the buffer */
  TR_RECORD_NEED_MORE, /* the header is valid so far but the buffer ends inside the record */
  TR_RECORD_CORRUPT,   /* bad version/type/length/checksum, or zero fill */
} TrRecordStatus;

/* A decoded record.  @payload points into the caller's buffer and is valid
 * as long as that buffer is. */
typedef struct {
  guint8 type;
  guint32 len;           /* payload length */
  const guint8 *payload; /* (transfer none) */
  gsize total;           /* TR_RECORD_HEADER_SIZE + len */
} TrRecordView;

/* Total size on disk of a record with @len payload bytes. */
#define TR_RECORD_SIZE(len) ((gsize) TR_RECORD_HEADER_SIZE + (gsize) (len))

/* tr_record_encode_header:
 * Fills @header for a record of @type (1..255) over @payload[0..@len). */
void tr_record_encode_header (guint8 header[TR_RECORD_HEADER_SIZE], guint8 type, const void *payload,
                              guint32 len);

/* tr_record_encode:
 * Returns: (transfer full): header + payload in one new GBytes. */
GBytes *tr_record_encode (guint8 type, const void *payload, guint32 len);

/* tr_record_decode:
 * Decodes the record at the start of @buf[0..@avail).  @max_len bounds the
 * payload length (a larger length is CORRUPT, so garbage cannot make a reader
 * allocate gigabytes).  On TR_RECORD_OK fills @out. */
TrRecordStatus tr_record_decode (const guint8 *buf, gsize avail, guint32 max_len, TrRecordView *out);

/* tr_record_peek_len:
 * For a streaming reader: if @buf holds at least a header whose fixed fields
 * are plausible (version, type, reserved, @max_len), stores the payload length
 * and returns TRUE.  The checksum is not checked here. */
gboolean tr_record_peek_len (const guint8 header[TR_RECORD_HEADER_SIZE], guint32 max_len, guint32 *len_out);

G_END_DECLS
