/* tr_positions.h - endpoint send state: where each endpoint of a node is.
 *
 * An endpoint's position is the last service seqid it acknowledged.  Each
 * endpoint has its own RotateFile at DATA_DIR/state/<service>@<endpoint>.0
 * and .1 (tr_rotatefile.h); its state payload is (docs/format/positions.md):
 *
 *   offset size field
 *   0      4    version = 1, little-endian u32
 *   4      8    last acknowledged service seqid, little-endian u64
 *
 * Any other size or version is TR_STORAGE_ERROR_CORRUPT naming the file.
 * Everything goes through the TrIo given to tr_positions_open(), so the
 * crash tests drive it with the fault backend.
 *
 * Export/import: tr_positions_export() serializes the positions of every
 * endpoint this object has loaded, written or imported (one record frame of
 * type TR_POSITIONS_EXPORT_TYPE, format in docs/format/positions.md);
 * tr_positions_import() writes such a set into the state directory, synced.
 * Replication ships a master's positions to its replicas this way.
 *
 * Durability: tr_positions_endpoint_write() does not sync; after a crash
 * load gives the position of the last write followed by a successful
 * tr_positions_endpoint_sync(), or of a later write, never an older one and
 * never garbage (the RotateFile guarantee).  Errors of one endpoint's file
 * are sticky for that file (STYLE.md §2): reopen it to recover.
 *
 * Threads: a TrPositionsEndpoint belongs to one thread (push's).  The
 * TrPositions object itself is thread-safe: it keeps the last known position
 * of every endpoint under ->lock, so export may run on any thread while
 * endpoints write.  Import must not run while an endpoint file of the same
 * object is open (it would write behind that file's back): it fails with
 * TR_STORAGE_ERROR_BUSY then.
 */
#pragma once

#include "tr_io.h"

#include <glib.h>

G_BEGIN_DECLS

/* The state directory's name inside the data directory. */
#define TR_POSITIONS_DIR "state"
/* Bound of each of an endpoint's two RotateFiles. */
#define TR_POSITIONS_FILE_SIZE (64 * 1024)
/* Record type of an exported position set in the record frame v1. */
#define TR_POSITIONS_EXPORT_TYPE 0x50 /* 'P' */

typedef struct _TrPositions TrPositions;
typedef struct _TrPositionsEndpoint TrPositionsEndpoint;

/* One endpoint's position: a plain value (tr_positions_decode()). */
typedef struct {
  char *service;
  char *endpoint;
  guint64 acked;
} TrPositionsEntry;

/* tr_positions_open:
 * @io: (transfer none): the I/O backend; must outlive the object.
 * @data_dir: the node's data directory; DATA_DIR/state is created when
 *   missing, and the data directory synced so that it stays.
 *
 * Returns: (transfer full) (nullable): the object, or NULL with
 *   TR_STORAGE_ERROR_IO / _FULL. */
TrPositions *tr_positions_open (TrIo *io, const char *data_dir, GError **error);

/* tr_positions_get_dir:
 * Returns: (transfer none): DATA_DIR/state, valid as long as @positions. */
const char *tr_positions_get_dir (TrPositions *positions);

/* tr_positions_free: NULL is ignored.  Every endpoint file must be freed first. */
void tr_positions_free (TrPositions *positions);

/* tr_positions_open_endpoint:
 * Opens (creating it if needed) the file of @endpoint of @service and runs
 * the RotateFile recovery on it.  Names may not contain '/' or '@' (the
 * configuration refuses those), so no two endpoints share a file.
 *
 * Returns: (transfer full) (nullable): the file, or NULL with TR_STORAGE_ERROR
 *   (message prefixed with the path). */
TrPositionsEndpoint *tr_positions_open_endpoint (TrPositions *positions, const char *service, const char *endpoint,
                                                 GError **error);

/* tr_positions_endpoint_load:
 * Reads the newest position on disk into @acked_out.
 *
 * Returns: TRUE, or FALSE with TR_STORAGE_ERROR_NOT_FOUND (no position
 *   recorded yet), _CORRUPT (a state of another size or version), _IO or
 *   _CLOSED; the message names the file. */
gboolean tr_positions_endpoint_load (TrPositionsEndpoint *file, guint64 *acked_out, GError **error);

/* tr_positions_endpoint_write:
 * Records @acked as the endpoint's position, without syncing.
 *
 * Returns: TRUE, or FALSE with TR_STORAGE_ERROR (the file is then failed). */
gboolean tr_positions_endpoint_write (TrPositionsEndpoint *file, guint64 acked, GError **error);

/* tr_positions_endpoint_sync:
 * Makes every write so far durable.
 * Returns: TRUE, or FALSE with TR_STORAGE_ERROR. */
gboolean tr_positions_endpoint_sync (TrPositionsEndpoint *file, GError **error);

/* tr_positions_endpoint_get_path:
 * Returns: (transfer none): the base path (without .0/.1), valid as long as
 *   @file. */
const char *tr_positions_endpoint_get_path (TrPositionsEndpoint *file);

/* tr_positions_endpoint_free: closes without syncing.  NULL is ignored. */
void tr_positions_endpoint_free (TrPositionsEndpoint *file);

/* tr_positions_export:
 * Serializes the last known position of every endpoint loaded, written or
 * imported through @positions (sorted by service, then endpoint).  Any thread.
 *
 * Returns: (transfer full): the export record. */
GBytes *tr_positions_export (TrPositions *positions);

/* tr_positions_decode:
 * Checks and decodes an export record (frame, type, version, lengths, names).
 *
 * Returns: (transfer full) (nullable) (element-type TrPositionsEntry): the
 *   entries (the array frees them), or NULL with TR_STORAGE_ERROR_CORRUPT
 *   saying what is wrong. */
GArray *tr_positions_decode (GBytes *exported, GError **error);

/* tr_positions_import:
 * Decodes @exported and writes every position in it to its endpoint's file,
 * synced before it returns (other endpoints' files are left alone).
 *
 * Returns: TRUE, or FALSE with TR_STORAGE_ERROR_CORRUPT (bad record: nothing
 *   written), _BUSY (an endpoint file of @positions is open: nothing
 *   written) or an I/O error (the positions before the failing one are
 *   written). */
gboolean tr_positions_import (TrPositions *positions, GBytes *exported, GError **error);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (TrPositions, tr_positions_free)
G_DEFINE_AUTOPTR_CLEANUP_FUNC (TrPositionsEndpoint, tr_positions_endpoint_free)

G_END_DECLS
