/* tr_groupfile.c - GroupFile: one logical append-only byte stream in parts.
 *
 * On-disk format (version 1, mirrored in docs/format/groupfile.md):
 *   DIR/NAME.<i>   part i, i = 0, 1, 2, ... in decimal without leading zeros.
 *                  Raw bytes, no header, no checksum of its own: the owner's
 *                  records carry checksums.  Each part holds at most part_size
 *                  bytes.  Parts first..last are all present (no gaps).
 *   logical offset = i * part_size + position inside part i.
 *   A part other than the last may end before part_size: the rest is a
 *   hole that no valid offset points into (reads there return 0 bytes).
 *   With tr_groupfile_zero_ahead(), any part may also end in zeros past
 *   its last logical byte (the owner's records tell where the data ends).
 *   Other files in DIR (NAME.0.tmp, OTHER.3, ...) are ignored.
 *
 * Part life cycle:
 *
 *          part_create()                      drop_before() / truncate()
 *   (none) -------------> OPEN --------------> SEALED ------------------> DELETED
 *     append()/write_at()      append() rolls      part_unlink()
 *                              to the next part
 *
 *   truncate() may delete the OPEN (last) part too, making the part before it
 *   the OPEN one again.
 *
 * Object states:
 *
 *   OK ---- any failed pwrite / fsync / fsync_dir / truncate / create, or
 *    |      an unlink made by truncate() (record_failure())
 *    v
 *   FAILED: every append/write_at/sync/truncate/drop_before/zero_ahead returns
 *           TR_STORAGE_ERROR_CLOSED; only tr_groupfile_free() helps.  Reads
 *           still work (tr_groupfile_read(): they change nothing).
 *
 *   A failed unlink in drop_before() (retention) and a failed zero_ahead()
 *   leave the file OK: neither touched the logical stream.
 *
 * Invariants:
 *  - parts->data[k] describes part first_index + k; parts->len == 0 only for
 *    an empty GroupFile, then first_index == 0.
 *  - every part with dirty == TRUE has fd >= 0 and its index in ->dirty.
 *  - open descriptors: the last part, dirty parts, and cached_index.
 *
 * Thread rules: none; one thread at a time (see tr_groupfile.h).
 */
#include "tr_groupfile.h"

#include "tr_storage_error.h"

#include <string.h>

#define NO_INDEX G_MAXUINT64

typedef struct {
  int fd;         /* -1 while closed */
  guint64 size;   /* bytes of the logical stream in this part */
  gboolean dirty; /* written or truncated since the last sync */
  guint64 alloc;  /* physical end: size plus the zeros of tr_groupfile_zero_ahead() */
  guint64 writes; /* bumped by every change (mark_dirty()): a sync that began
                   * before the last change does not make the part clean */
  guint syncing;  /* syncs between _begin() and _end() holding ->fd */
} TrGroupPart;

/* A sync in three steps (tr_groupfile_sync_begin()): what it covers. */
typedef struct {
  guint64 index;
  int fd;
  guint64 writes; /* the part's ->writes at begin */
} TrGroupSyncPart;

struct _TrGroupFileSync {
  TrIo *io;
  char *dir;
  GArray *parts;     /* TrGroupSyncPart: every part dirty at begin */
  gboolean sync_dir; /* a part was created or deleted before begin */
  guint64 dir_changes;
  GError *error;     /* set by tr_groupfile_sync_run() when it failed */
};

struct _TrGroupFile {
  TrIo *io;
  char *dir;
  char *name;
  guint64 part_size;
  guint64 first_index;  /* index of parts->data[0] */
  GArray *parts;        /* TrGroupPart for first_index, first_index + 1, ... */
  GArray *dirty;        /* guint64 indices of dirty parts (may hold stale ones) */
  guint64 cached_index; /* a non-last part whose fd is kept for reads, or NO_INDEX */
  gboolean dir_dirty;   /* a part was created or deleted since the last sync */
  guint64 dir_changes;  /* bumped by every create and delete */
  GError *failure;      /* set once FAILED */
};

/* ---- small helpers ---------------------------------------------------- */

static char *
part_path (TrGroupFile *file, guint64 index)
{
  return g_strdup_printf ("%s/%s.%" G_GUINT64_FORMAT, file->dir, file->name, index);
}

static guint64
last_index (TrGroupFile *file)
{
  g_assert (file->parts->len > 0);
  return file->first_index + file->parts->len - 1;
}

static TrGroupPart *
part_at (TrGroupFile *file, guint64 index)
{
  if (file->parts->len == 0 || index < file->first_index || index > last_index (file))
    return NULL;
  return &g_array_index (file->parts, TrGroupPart, index - file->first_index);
}

static gboolean
check_usable (TrGroupFile *file, GError **error)
{
  if (file->failure == NULL)
    return TRUE;
  g_set_error (error, TR_STORAGE_ERROR, TR_STORAGE_ERROR_CLOSED,
               "group file %s/%s failed earlier: %s; reopen to recover", file->dir, file->name,
               file->failure->message);
  return FALSE;
}

/* Moves the file to FAILED with @local as the cause and hands @local on.
 * Always returns FALSE. */
static gboolean
record_failure (TrGroupFile *file, GError *local, GError **error)
{
  g_assert (local != NULL);
  if (file->failure == NULL)
    file->failure = g_error_copy (local);
  g_propagate_error (error, local);
  return FALSE;
}

/* Closes the fd of a part that no rule keeps open (see invariants). */
static void
release_fd_if_idle (TrGroupFile *file, guint64 index)
{
  TrGroupPart *part = part_at (file, index);

  if (part == NULL || part->fd < 0 || part->dirty || part->syncing > 0 || index == last_index (file)
      || index == file->cached_index)
    return;
  tr_io_close_quietly (file->io, part->fd);
  part->fd = -1;
}

static void
close_all_fds (TrGroupFile *file)
{
  for (guint k = 0; k < file->parts->len; k++) {
    TrGroupPart *part = &g_array_index (file->parts, TrGroupPart, k);
    tr_io_close_quietly (file->io, part->fd);
    part->fd = -1;
  }
}

/* Returns the descriptor of an existing part, opening it on demand.  A
 * non-last part opened here becomes the one cached read descriptor, so a
 * reader walking old parts opens each once, not once per read. */
static gboolean
part_fd (TrGroupFile *file, guint64 index, int *fd_out, GError **error)
{
  TrGroupPart *part = part_at (file, index);
  g_autofree char *path = NULL;
  guint64 old_cached;
  int fd = -1;

  g_assert (part != NULL);
  if (part->fd < 0) {
    path = part_path (file, index);
    if (!tr_io_open (file->io, path, TR_IO_WRITE, &fd, error))
      return FALSE;
    part->fd = fd;
    if (index != last_index (file)) {
      old_cached = file->cached_index;
      file->cached_index = index;
      release_fd_if_idle (file, old_cached);
    }
  }
  *fd_out = part->fd;
  return TRUE;
}

static void
mark_dirty (TrGroupFile *file, guint64 index, TrGroupPart *part)
{
  part->writes++;
  if (part->dirty)
    return;
  part->dirty = TRUE;
  g_array_append_val (file->dirty, index);
}

/* Creates part @index (which must be last_index + 1, or 0 when empty). */
static gboolean
part_create (TrGroupFile *file, guint64 index, GError **error)
{
  g_autofree char *path = part_path (file, index);
  TrGroupPart part = { -1, 0, FALSE, 0, 0, 0 };

  g_assert (file->parts->len == 0 ? index == file->first_index : index == last_index (file) + 1);
  /* EXCLUSIVE: open listed every part, so an existing file here means a
   * second writer or a stray file; never adopt bytes we did not write. */
  if (!tr_io_open (file->io, path, TR_IO_WRITE | TR_IO_CREATE | TR_IO_EXCLUSIVE, &part.fd, error))
    return FALSE;
  g_array_append_val (file->parts, part);
  file->dir_dirty = TRUE;
  file->dir_changes++;
  if (index > file->first_index)
    release_fd_if_idle (file, index - 1);
  g_log_structured (G_LOG_DOMAIN, G_LOG_LEVEL_INFO, "TR_FILE", path, "MESSAGE",
                    "group file part %s created", path);
  return TRUE;
}

/* Creates parts until @index exists. */
static gboolean
ensure_part (TrGroupFile *file, guint64 index, GError **error)
{
  guint64 next = file->parts->len == 0 ? file->first_index : last_index (file) + 1;

  for (; next <= index; next++) {
    if (!part_create (file, next, error))
      return FALSE;
  }
  return TRUE;
}

static gboolean
part_write (TrGroupFile *file, guint64 index, guint64 pos, const void *buf, gsize len,
            GError **error)
{
  TrGroupPart *part;
  int fd;

  if (!part_fd (file, index, &fd, error))
    return FALSE;
  part = part_at (file, index);
  if (!tr_io_pwrite (file->io, fd, buf, len, pos, error))
    return FALSE;
  part->size = MAX (part->size, pos + len);
  part->alloc = MAX (part->alloc, part->size);
  mark_dirty (file, index, part);
  return TRUE;
}

/* Removes the part file and its slot; only the first or the last part.
 * The name goes first and the descriptor after, so that a failed unlink
 * leaves the part exactly as it was (open, dirty or not): the caller may
 * carry on without it (retention, tr_groupfile_drop_before()). */
static gboolean
part_unlink (TrGroupFile *file, guint64 index, const char *why, GError **error)
{
  g_autofree char *path = part_path (file, index);
  TrGroupPart *part = part_at (file, index);

  g_assert (index == file->first_index || index == last_index (file));
  if (!tr_io_unlink (file->io, path, error))
    return FALSE;
  tr_io_close_quietly (file->io, part->fd);
  part->fd = -1;
  if (file->cached_index == index)
    file->cached_index = NO_INDEX;
  if (index == file->first_index) {
    g_array_remove_index (file->parts, 0);
    file->first_index++;
  } else {
    g_array_set_size (file->parts, file->parts->len - 1);
  }
  file->dir_dirty = TRUE;
  file->dir_changes++;
  g_log_structured (G_LOG_DOMAIN, G_LOG_LEVEL_MESSAGE, "TR_FILE", path, "MESSAGE",
                    "group file part %s deleted (%s)", path, why);
  return TRUE;
}

/* ---- open --------------------------------------------------------------- */

/* Parses "@name.<digits>" (canonical decimal, no sign, no leading zero). */
static gboolean
parse_part_name (const char *entry, const char *name, guint64 *index_out)
{
  gsize name_len = strlen (name);
  const char *digits;

  if (strncmp (entry, name, name_len) != 0 || entry[name_len] != '.')
    return FALSE;
  digits = entry + name_len + 1;
  if (digits[0] == '\0' || (digits[0] == '0' && digits[1] != '\0'))
    return FALSE;
  for (const char *p = digits; *p != '\0'; p++) {
    if (!g_ascii_isdigit (*p))
      return FALSE;
  }
  return g_ascii_string_to_unsigned (digits, 10, 0, G_MAXUINT32, index_out, NULL);
}

static gint
compare_u64 (gconstpointer a, gconstpointer b)
{
  guint64 x = *(const guint64 *) a;
  guint64 y = *(const guint64 *) b;
  return x < y ? -1 : x > y;
}

/* Lists the part indices present in the directory, unsorted. */
static GArray *
list_parts (TrGroupFile *file, GError **error)
{
  g_autoptr (GError) local = NULL;
  g_autoptr (GArray) indices = g_array_new (FALSE, FALSE, sizeof (guint64));
  GDir *dir = g_dir_open (file->dir, 0, &local);
  const char *entry;
  guint64 index;

  if (dir == NULL) {
    g_set_error (error, TR_STORAGE_ERROR,
                 g_error_matches (local, G_FILE_ERROR, G_FILE_ERROR_NOENT)
                   ? TR_STORAGE_ERROR_NOT_FOUND
                   : TR_STORAGE_ERROR_IO,
                 "cannot list %s: %s", file->dir, local->message);
    return NULL;
  }
  while ((entry = g_dir_read_name (dir)) != NULL) {
    if (parse_part_name (entry, file->name, &index))
      g_array_append_val (indices, index);
  }
  g_dir_close (dir);
  return g_steal_pointer (&indices);
}

/* Opens part @index, reads its size and validates it.  Keeps the fd open
 * only for the last part. */
static gboolean
load_part (TrGroupFile *file, guint64 index, gboolean is_last, GError **error)
{
  g_autofree char *path = part_path (file, index);
  TrGroupPart part = { -1, 0, FALSE, 0, 0, 0 };

  if (!tr_io_open (file->io, path, TR_IO_WRITE, &part.fd, error))
    return FALSE;
  if (!tr_io_size (file->io, part.fd, &part.size, error)) {
    tr_io_close_quietly (file->io, part.fd);
    return FALSE;
  }
  if (part.size > file->part_size) {
    tr_io_close_quietly (file->io, part.fd);
    g_set_error (error, TR_STORAGE_ERROR, TR_STORAGE_ERROR_CORRUPT,
                 "part %s has %" G_GUINT64_FORMAT " bytes, more than the part size %" G_GUINT64_FORMAT,
                 path, part.size, file->part_size);
    return FALSE;
  }
  /* Zeros written ahead are bytes of the file like any other until the
   * owner, which knows its records, truncates after the last valid one. */
  part.alloc = part.size;
  if (!is_last) {
    tr_io_close_quietly (file->io, part.fd);
    part.fd = -1;
  }
  g_array_append_val (file->parts, part);
  return TRUE;
}

static gboolean
load_parts (TrGroupFile *file, GError **error)
{
  g_autoptr (GArray) indices = list_parts (file, error);
  guint64 first;

  if (indices == NULL)
    return FALSE;
  if (indices->len == 0)
    return TRUE;
  g_array_sort (indices, compare_u64);
  first = g_array_index (indices, guint64, 0);
  for (guint k = 0; k < indices->len; k++) {
    if (g_array_index (indices, guint64, k) != first + k) {
      g_autofree char *missing = part_path (file, first + k);
      g_set_error (error, TR_STORAGE_ERROR, TR_STORAGE_ERROR_CORRUPT,
                   "missing part %s between %s.%" G_GUINT64_FORMAT " and %s.%" G_GUINT64_FORMAT,
                   missing, file->name, first, file->name,
                   g_array_index (indices, guint64, indices->len - 1));
      return FALSE;
    }
  }
  file->first_index = first;
  for (guint k = 0; k < indices->len; k++) {
    if (!load_part (file, first + k, k + 1 == indices->len, error))
      return FALSE;
  }
  return TRUE;
}

TrGroupFile *
tr_groupfile_open (TrIo *io, const char *dir, const char *name, guint64 part_size, GError **error)
{
  g_autoptr (TrGroupFile) file = NULL;

  g_return_val_if_fail (io != NULL && dir != NULL && name != NULL, NULL);
  g_return_val_if_fail (*name != '\0' && strchr (name, '/') == NULL, NULL);
  g_return_val_if_fail (part_size > 0, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  file = g_new0 (TrGroupFile, 1);
  file->io = io;
  file->dir = g_strdup (dir);
  file->name = g_strdup (name);
  file->part_size = part_size;
  file->parts = g_array_new (FALSE, FALSE, sizeof (TrGroupPart));
  file->dirty = g_array_new (FALSE, FALSE, sizeof (guint64));
  file->cached_index = NO_INDEX;
  if (!load_parts (file, error)) {
    g_prefix_error (error, "cannot open group file %s/%s: ", dir, name);
    return NULL;
  }
  return g_steal_pointer (&file);
}

void
tr_groupfile_free (TrGroupFile *file)
{
  if (file == NULL)
    return;
  close_all_fds (file);
  g_array_unref (file->parts);
  g_array_unref (file->dirty);
  g_clear_error (&file->failure);
  g_free (file->dir);
  g_free (file->name);
  g_free (file);
}

/* ---- writes ------------------------------------------------------------- */

gboolean
tr_groupfile_append (TrGroupFile *file, const void *buf, gsize len, guint64 *offset_out,
                     GError **error)
{
  GError *local = NULL;
  TrGroupPart *last;
  guint64 index;

  g_return_val_if_fail (file != NULL && buf != NULL, FALSE);
  g_return_val_if_fail (len >= 1 && len <= file->part_size, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);
  if (!check_usable (file, error))
    return FALSE;

  index = file->parts->len == 0 ? file->first_index : last_index (file);
  last = part_at (file, index);
  /* A write never spans two parts: roll when the record does not fit and
   * leave the rest of the current part as a hole. */
  if (last == NULL || last->size + len > file->part_size) {
    if (last != NULL)
      index++;
    if (!part_create (file, index, &local))
      goto failed;
  }
  last = part_at (file, index);
  if (!part_write (file, index, last->size, buf, len, &local))
    goto failed;
  if (offset_out != NULL)
    *offset_out = index * file->part_size + (part_at (file, index)->size - len);
  return TRUE;

failed:
  g_prefix_error (&local, "cannot append %" G_GSIZE_FORMAT " bytes to group file %s/%s: ", len,
                  file->dir, file->name);
  return record_failure (file, local, error);
}

gboolean
tr_groupfile_write_at (TrGroupFile *file, guint64 offset, const void *buf, gsize len,
                       GError **error)
{
  GError *local = NULL;
  guint64 index;
  guint64 pos;

  g_return_val_if_fail (file != NULL && buf != NULL && len >= 1, FALSE);
  g_return_val_if_fail (offset % file->part_size + len <= file->part_size, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);
  if (!check_usable (file, error))
    return FALSE;
  if (offset < tr_groupfile_first_offset (file)) {
    g_set_error (error, TR_STORAGE_ERROR, TR_STORAGE_ERROR_NOT_FOUND,
                 "cannot write group file %s/%s at offset %" G_GUINT64_FORMAT
                 ": before the first offset %" G_GUINT64_FORMAT " (dropped)",
                 file->dir, file->name, offset, tr_groupfile_first_offset (file));
    return FALSE;
  }
  index = offset / file->part_size;
  pos = offset % file->part_size;
  if (!ensure_part (file, index, &local) || !part_write (file, index, pos, buf, len, &local)) {
    g_prefix_error (&local, "cannot write group file %s/%s at offset %" G_GUINT64_FORMAT ": ",
                    file->dir, file->name, offset);
    return record_failure (file, local, error);
  }
  return TRUE;
}

/* ---- reads -------------------------------------------------------------- */

gboolean
tr_groupfile_read (TrGroupFile *file, guint64 offset, void *buf, gsize len, gsize *got_out,
                   GError **error)
{
  TrGroupPart *part;
  guint64 index;
  guint64 pos;
  int fd;

  g_return_val_if_fail (file != NULL && (buf != NULL || len == 0) && got_out != NULL, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);
  *got_out = 0;
  /* Reads stay allowed in FAILED: they change nothing, and what was written
   * before the failure is still there, so a store whose disk is full keeps
   * delivering what it holds.  Only writes, syncs and deletions stop. */
  if (offset < tr_groupfile_first_offset (file)) {
    g_set_error (error, TR_STORAGE_ERROR, TR_STORAGE_ERROR_NOT_FOUND,
                 "cannot read group file %s/%s at offset %" G_GUINT64_FORMAT
                 ": before the first offset %" G_GUINT64_FORMAT " (dropped)",
                 file->dir, file->name, offset, tr_groupfile_first_offset (file));
    return FALSE;
  }
  index = offset / file->part_size;
  pos = offset % file->part_size;
  part = part_at (file, index);
  /* Past the end, or in the hole at the tail of a part: nothing to read. */
  if (part == NULL || pos >= part->size || len == 0)
    return TRUE;
  len = (gsize) MIN ((guint64) len, part->size - pos);
  /* A failed read changes nothing on disk, so it does not make the file
   * FAILED. */
  if (!part_fd (file, index, &fd, error)
      || !tr_io_pread (file->io, fd, buf, len, pos, got_out, error)) {
    g_prefix_error (error, "cannot read group file %s/%s at offset %" G_GUINT64_FORMAT ": ",
                    file->dir, file->name, offset);
    return FALSE;
  }
  return TRUE;
}

/* ---- sync, truncate, drop ----------------------------------------------- */

/* A sync is three steps so that an owner can let readers in during the
 * fsyncs, which take milliseconds: _begin() notes, under the owner's lock,
 * every dirty part (its descriptor and its ->writes) and whether the
 * directory changed; _run() fsyncs them with no lock held; _end(), under
 * the lock again, marks clean each part not written since _begin() and
 * releases descriptors, or moves the file to FAILED.  A part stays dirty
 * (so its descriptor stays open, and a sync that begins meanwhile covers
 * it too) until a sync that began after its last write has ended; while a
 * sync holds its descriptor, ->syncing keeps it from being closed. */
TrGroupFileSync *
tr_groupfile_sync_begin (TrGroupFile *file, GError **error)
{
  TrGroupFileSync *sync;

  g_return_val_if_fail (file != NULL, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);
  if (!check_usable (file, error))
    return NULL;
  sync = g_new0 (TrGroupFileSync, 1);
  sync->io = file->io;
  sync->dir = g_strdup (file->dir);
  sync->parts = g_array_new (FALSE, FALSE, sizeof (TrGroupSyncPart));
  for (guint k = 0; k < file->dirty->len; k++) {
    guint64 index = g_array_index (file->dirty, guint64, k);
    TrGroupPart *part = part_at (file, index);
    TrGroupSyncPart noted;

    /* Stale entries: the part was deleted (or recreated and already done). */
    if (part == NULL || !part->dirty)
      continue;
    noted.index = index;
    noted.fd = part->fd;
    noted.writes = part->writes;
    part->syncing++;
    g_array_append_val (sync->parts, noted);
  }
  sync->sync_dir = file->dir_dirty;
  sync->dir_changes = file->dir_changes;
  return sync;
}

void
tr_groupfile_sync_run (TrGroupFileSync *sync)
{
  g_return_if_fail (sync != NULL && sync->error == NULL);
  /* Data first, then the directory.  Both must be done before we report
   * success; doing the parts first means that a crash in between leaves at
   * worst a new part whose name is not yet durable (its bytes were never
   * acknowledged), never a durable name whose acknowledged bytes are
   * missing. */
  for (guint k = 0; k < sync->parts->len; k++) {
    if (!tr_io_fsync (sync->io, g_array_index (sync->parts, TrGroupSyncPart, k).fd, &sync->error))
      return;
  }
  if (sync->sync_dir)
    tr_io_fsync_dir (sync->io, sync->dir, &sync->error);
}

gboolean
tr_groupfile_sync_end (TrGroupFile *file, TrGroupFileSync *sync, GError **error)
{
  GError *local = g_steal_pointer (&sync->error);
  guint kept = 0;

  g_return_val_if_fail (file != NULL && sync != NULL, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);
  for (guint k = 0; k < sync->parts->len; k++) {
    TrGroupSyncPart *noted = &g_array_index (sync->parts, TrGroupSyncPart, k);
    TrGroupPart *part = part_at (file, noted->index);

    g_assert (part != NULL && part->syncing > 0); /* a part being synced is never deleted */
    part->syncing--;
    if (local == NULL && part->writes == noted->writes)
      part->dirty = FALSE;
  }
  if (local == NULL && sync->sync_dir && file->dir_changes == sync->dir_changes)
    file->dir_dirty = FALSE;
  /* Keep the entries of parts still dirty; release the descriptors of the
   * others (invariants). */
  for (guint k = 0; k < file->dirty->len; k++) {
    guint64 index = g_array_index (file->dirty, guint64, k);
    TrGroupPart *part = part_at (file, index);
    if (part != NULL && part->dirty)
      g_array_index (file->dirty, guint64, kept++) = index;
    else
      release_fd_if_idle (file, index);
  }
  g_array_set_size (file->dirty, kept);
  for (guint k = 0; k < sync->parts->len; k++)
    release_fd_if_idle (file, g_array_index (sync->parts, TrGroupSyncPart, k).index);
  g_array_unref (sync->parts);
  g_free (sync->dir);
  g_free (sync);
  if (local == NULL)
    return TRUE;
  /* A failed fsync is never retried: the kernel may already have dropped
   * the dirty pages, so the file goes FAILED and reopening re-reads what
   * really is on disk. */
  g_prefix_error (&local, "cannot sync group file %s/%s: ", file->dir, file->name);
  return record_failure (file, local, error);
}

gboolean
tr_groupfile_sync (TrGroupFile *file, GError **error)
{
  TrGroupFileSync *sync;

  g_return_val_if_fail (file != NULL, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);
  sync = tr_groupfile_sync_begin (file, error);
  if (sync == NULL)
    return FALSE;
  tr_groupfile_sync_run (sync);
  return tr_groupfile_sync_end (file, sync, error);
}

static gboolean
truncate_parts (TrGroupFile *file, guint64 offset, GError **error)
{
  guint64 index = offset / file->part_size;
  guint64 pos = offset % file->part_size;
  TrGroupPart *part;
  int fd;

  /* Delete from the end backwards so that a crash part-way still leaves a
   * gap-free run of parts (open treats a missing middle part as corrupt). */
  while (last_index (file) > index) {
    if (!part_unlink (file, last_index (file), "truncated", error))
      return FALSE;
  }
  part = part_at (file, index);
  /* Never extend: an offset in the hole at a part's tail cuts nothing. */
  if (part == NULL || pos >= part->size)
    return TRUE;
  if (!part_fd (file, index, &fd, error) || !tr_io_truncate (file->io, fd, pos, error))
    return FALSE;
  part = part_at (file, index);
  part->size = pos;
  part->alloc = pos;
  mark_dirty (file, index, part);
  return TRUE;
}

gboolean
tr_groupfile_truncate (TrGroupFile *file, guint64 offset, GError **error)
{
  GError *local = NULL;

  g_return_val_if_fail (file != NULL, FALSE);
  g_return_val_if_fail (offset >= tr_groupfile_first_offset (file), FALSE);
  g_return_val_if_fail (offset <= tr_groupfile_size (file), FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);
  if (!check_usable (file, error))
    return FALSE;
  if (file->parts->len == 0 || offset == tr_groupfile_size (file))
    return TRUE;
  if (!truncate_parts (file, offset, &local)) {
    g_prefix_error (&local, "cannot truncate group file %s/%s to %" G_GUINT64_FORMAT ": ",
                    file->dir, file->name, offset);
    return record_failure (file, local, error);
  }
  return TRUE;
}

gboolean
tr_groupfile_drop_before (TrGroupFile *file, guint64 offset, GError **error)
{
  GError *local = NULL;

  g_return_val_if_fail (file != NULL, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);
  if (!check_usable (file, error))
    return FALSE;
  /* Oldest first, so a crash part-way leaves a gap-free run of parts.  The
   * last part is kept even if @offset is past it: it holds the end of the
   * stream, which open needs to find the logical size. */
  while (file->parts->len > 1 && (file->first_index + 1) * file->part_size <= offset
         && part_at (file, file->first_index)->syncing == 0) {
    if (!part_unlink (file, file->first_index, "retention", &local)) {
      /* Not sticky, unlike every other failure here: nothing of the
       * stream changed (the part is still there, still readable, and
       * part_unlink() left its state as it was), so appends and syncs may
       * go on, and a later call tries again.  The caller decides how loud
       * that is. */
      g_prefix_error (&local, "cannot drop group file %s/%s before %" G_GUINT64_FORMAT ": ",
                      file->dir, file->name, offset);
      g_propagate_error (error, local);
      return FALSE;
    }
  }
  return TRUE;
}

gboolean
tr_groupfile_zero_ahead (TrGroupFile *file, guint64 ahead, gsize max_bytes, char **path_out, GError **error)
{
  static const guint8 zeros[64 * 1024];
  GError *local = NULL;
  guint64 index, end;
  TrGroupPart *part;
  int fd;

  g_return_val_if_fail (file != NULL && path_out != NULL, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);
  *path_out = NULL;
  if (!check_usable (file, error))
    return FALSE;
  if (file->parts->len == 0)
    return TRUE; /* the first append creates the part; zeros follow then */
  index = last_index (file);
  part = part_at (file, index);
  /* Whole pieces of @max_bytes, so a caller that keeps up with a stream
   * of small appends does not write (and sync) a sliver for each. */
  end = part->alloc < part->size + ahead ? MIN (file->part_size, part->alloc + max_bytes) : part->alloc;
  if (part->alloc >= end)
    return TRUE;
  if (!part_fd (file, index, &fd, &local))
    goto failed;
  part = part_at (file, index);
  while (part->alloc < end) {
    gsize n = (gsize) MIN ((guint64) sizeof zeros, end - part->alloc);
    if (!tr_io_pwrite (file->io, fd, zeros, n, part->alloc, &local))
      goto failed;
    part->alloc += n;
  }
  /* Dirty, so the sync before a roll seals the part with its zeros synced:
   * unsynced zeros could come back as garbage in a sealed part, which
   * recovery must call corruption. */
  mark_dirty (file, index, part);
  *path_out = part_path (file, index);
  return TRUE;

failed:
  /* Not sticky: the zeros lie outside the logical stream, nothing in it
   * was touched.  ->alloc counts only what was written. */
  g_prefix_error (&local, "cannot write zeros ahead in group file %s/%s: ", file->dir, file->name);
  g_propagate_error (error, local);
  return FALSE;
}

/* ---- accessors ---------------------------------------------------------- */

guint64
tr_groupfile_zeroed_end (TrGroupFile *file)
{
  g_return_val_if_fail (file != NULL, 0);
  if (file->parts->len == 0)
    return tr_groupfile_size (file);
  return last_index (file) * file->part_size + part_at (file, last_index (file))->alloc;
}

guint64
tr_groupfile_size (TrGroupFile *file)
{
  g_return_val_if_fail (file != NULL, 0);
  if (file->parts->len == 0)
    return file->first_index * file->part_size;
  return last_index (file) * file->part_size + part_at (file, last_index (file))->size;
}

guint64
tr_groupfile_first_offset (TrGroupFile *file)
{
  g_return_val_if_fail (file != NULL, 0);
  return file->first_index * file->part_size;
}

guint64
tr_groupfile_part_size (TrGroupFile *file)
{
  g_return_val_if_fail (file != NULL, 0);
  return file->part_size;
}

guint
tr_groupfile_n_parts (TrGroupFile *file)
{
  g_return_val_if_fail (file != NULL, 0);
  return file->parts->len;
}

guint64
tr_groupfile_disk_bytes (TrGroupFile *file)
{
  guint64 total = 0;

  g_return_val_if_fail (file != NULL, 0);
  for (guint k = 0; k < file->parts->len; k++)
    total += g_array_index (file->parts, TrGroupPart, k).alloc;
  return total;
}

char *
tr_groupfile_part_path (TrGroupFile *file, guint64 offset)
{
  g_return_val_if_fail (file != NULL, NULL);
  return part_path (file, offset / file->part_size);
}
