/* tr_dwfile.h - DoubleWriteFile: crash-safe in-place replacement of a small
 * file (config files, node metadata).
 *
 * tr_dwfile_replace() first writes the whole new content to a side copy
 * "PATH.dw" as one checksummed record and makes it durable (file and
 * directory), and only then overwrites PATH in place.  After a crash at any
 * point, tr_dwfile_recover() leaves PATH holding exactly the old or exactly
 * the new content, byte for byte:
 *
 *  - side copy absent, or incomplete/corrupt: the crash happened before the
 *    side copy was synced, so PATH was not touched yet and still holds the
 *    old content.  The side copy is discarded (logged at g_message, TR_FILE).
 *  - side copy complete and valid: PATH may be old, new or half written;
 *    the side copy is replayed into PATH (so PATH becomes new), then removed.
 *
 * Why the in-place write is safe: PATH is opened for writing only after the
 * side copy is complete, fdatasync'ed and its directory entry fsync'ed.  So
 * whenever PATH could be torn, a complete valid side copy holding the whole
 * new content exists on disk, and recovery repairs PATH from it.  Replaying
 * is idempotent, so a crash during recovery is repaired by the next one.
 * The content is opaque bytes (comments, NULs, no trailing newline): it is
 * stored and written back byte-exact, with its exact length.
 *
 * Side copy format, version 1 (docs/format/dwfile.md): one record frame v1
 * (tr_record.h) of type TR_DWFILE_RECORD_TYPE at offset 0 whose payload is
 *
 *   offset size  field
 *   0      8     content length N, little-endian u64 (= payload length - 8)
 *   8      N     the new content of PATH
 *
 * It is valid when the frame is valid (checksum over header + payload), the
 * type is TR_DWFILE_RECORD_TYPE and N + 8 equals the payload length.  Bytes
 * after the record are ignored.  PATH itself has no framing: it is exactly
 * the content, so other tools can read it.
 *
 * Thread safety: the functions keep no state, but two concurrent calls on
 * the same PATH race on PATH.dw: callers serialize per path (the config
 * owner does).  Calls on distinct paths are independent.
 *
 * Every caller that reads PATH must go through tr_dwfile_read() (or call
 * tr_dwfile_recover() first at startup), otherwise it may see a torn file.
 */
#pragma once

#include "tr_io.h"

#include <glib.h>

G_BEGIN_DECLS

/* Record type of DoubleWriteFile side copies in the record frame v1. */
#define TR_DWFILE_RECORD_TYPE 0x44 /* 'D' */
/* Suffix of the side copy next to PATH. */
#define TR_DWFILE_SUFFIX ".dw"
/* Largest content tr_dwfile_replace() accepts (the frame length is a u32). */
#define TR_DWFILE_MAX_SIZE ((gsize) G_MAXUINT32 - 8)

/* tr_dwfile_replace:
 * @io: (transfer none): the I/O backend.
 * @path: the file to replace (created if missing).
 * @data: (nullable): the new content, @len bytes (@len <= TR_DWFILE_MAX_SIZE).
 *
 * Recovers a side copy left by an earlier crash first, then replaces the
 * content of @path durably.  When it returns TRUE the new content is durable
 * and the side copy is gone.  When it returns FALSE the file may be old or
 * (after recovery) new, never torn: the next tr_dwfile_recover() /
 * tr_dwfile_read() settles it.  Blocking: not for the event loop thread
 * outside startup and shutdown.
 *
 * Returns: TRUE, or FALSE with @error in TR_STORAGE_ERROR (_IO, _FULL, or
 *   what tr_dwfile_recover() reports). */
gboolean tr_dwfile_replace (TrIo *io, const char *path, const void *data, gsize len, GError **error);

/* tr_dwfile_recover:
 * Settles @path after a crash: replays a complete side copy into it, or
 * discards an incomplete one (see above).  Nothing to do (and TRUE) when no
 * side copy exists.
 *
 * Returns: TRUE, or FALSE with @error in TR_STORAGE_ERROR (_IO, _FULL). */
gboolean tr_dwfile_recover (TrIo *io, const char *path, GError **error);

/* tr_dwfile_read:
 * Recovers, then reads the whole of @path.
 *
 * Returns: (transfer full) (nullable): the content, or NULL with @error:
 *   TR_STORAGE_ERROR_NOT_FOUND if @path does not exist, _IO otherwise. */
GBytes *tr_dwfile_read (TrIo *io, const char *path, GError **error);

G_END_DECLS
