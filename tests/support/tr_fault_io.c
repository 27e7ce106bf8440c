/* tr_fault_io.c - fault-injecting TrIo for the crash tests (see header).
 *
 * Power loss is simulated with an undo log: every mutating call made since
 * the matching sync (fsync of the file for data, fsync_dir of the directory
 * for names) appends an event holding what is needed to revert it.  A power
 * loss walks the log backwards and reverts each event (DROP) or, for data
 * writes, overwrites the written range with random bytes (GARBLE).
 */
#include "tr_fault_io.h"

#include "tr_storage_error.h"

#include <errno.h>
#include <stdio.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

typedef enum { EV_WRITE, EV_CREATE, EV_RENAME, EV_UNLINK } EventKind;

typedef struct {
  EventKind kind;
  char *path;       /* file written / created / unlinked; rename: the new name */
  char *from;       /* rename: the old name */
  char *dir;        /* directory whose fsync makes a name event durable */
  guint64 offset;   /* write/truncate: start of the changed range */
  guint64 length;   /* write: bytes written (for GARBLE) */
  guint64 size_before;
  GBytes *old;      /* bytes overwritten / removed / unlinked content / replaced rename target */
} Event;

typedef struct {
  char *path;
  gboolean dead; /* opened before the last power loss */
} FdInfo;

struct _TrFaultIo {
  TrIo io;
  GRecMutex lock;   /* every call: the store's writer thread uses the io too */
  GHashTable *fds;  /* int fd -> FdInfo */
  GPtrArray *events;
  guint counts[8];
  guint armed_ops;
  guint countdown;
  int errnum;
  gboolean persistent;
  gboolean short_write;
  gboolean fired;
  char *path_filter; /* (nullable): only paths containing it fail */
  /* Held fsyncs (tr_fault_io_hold_fsyncs()): a lock of their own, so a held
   * thread does not keep ->lock. */
  GMutex hold_lock;
  GCond hold_cond;
  char *hold_substring; /* protected by ->hold_lock; NULL: hold nothing */
  GThread *hold_thread; /* protected by ->hold_lock: whose fsyncs are held */
  guint held;           /* protected by ->hold_lock: threads waiting now */
  gboolean fake_space;  /* tr_fault_io_set_free_space(): report the two below */
  guint64 fake_avail, fake_total;
  gboolean off;     /* tr_fault_io_power_off(): no name is created, renamed or removed any more */
};

static void
event_free (gpointer data)
{
  Event *ev = data;
  g_free (ev->path);
  g_free (ev->from);
  g_free (ev->dir);
  if (ev->old)
    g_bytes_unref (ev->old);
  g_free (ev);
}

static void
fdinfo_free (gpointer data)
{
  FdInfo *info = data;
  g_free (info->path);
  g_free (info);
}

/* Counts the call and decides whether it fails; @path (nullable) is the
 * file the call is about, matched against the path filter. */
static gboolean
should_fail_path (TrFaultIo *fault, TrFaultOp op, const char *path)
{
  guint bit = (guint) g_bit_nth_lsf ((gulong) op, -1);

  fault->counts[bit]++;
  if ((fault->armed_ops & op) == 0)
    return FALSE;
  if (fault->path_filter != NULL && (path == NULL || strstr (path, fault->path_filter) == NULL))
    return FALSE;
  if (fault->fired)
    return fault->persistent;
  if (fault->countdown > 1) {
    fault->countdown--;
    return FALSE;
  }
  fault->fired = TRUE;
  return TRUE;
}

/* The path @fd was opened with, or NULL for a descriptor not seen. */
static const char *
fd_path (TrFaultIo *fault, int fd)
{
  FdInfo *info = g_hash_table_lookup (fault->fds, GINT_TO_POINTER (fd));
  return info != NULL ? info->path : NULL;
}

static FdInfo *
lookup_fd (TrFaultIo *fault, int fd)
{
  return g_hash_table_lookup (fault->fds, GINT_TO_POINTER (fd));
}

static gboolean
check_alive (TrFaultIo *fault, int fd, GError **error)
{
  FdInfo *info = lookup_fd (fault, fd);

  if (info != NULL && info->dead) {
    tr_io_set_errno_error (error, EIO, "power lost for", info->path);
    return FALSE;
  }
  return TRUE;
}

static void
push_event (TrFaultIo *fault, EventKind kind, const char *path)
{
  Event *ev = g_new0 (Event, 1);
  ev->kind = kind;
  ev->path = g_strdup (path);
  ev->dir = g_path_get_dirname (path);
  g_ptr_array_add (fault->events, ev);
}

static GBytes *
read_range (int fd, guint64 offset, guint64 len)
{
  guint8 *buf = g_malloc (len ? len : 1);
  ssize_t n = len ? pread (fd, buf, len, (off_t) offset) : 0;
  return g_bytes_new_take (buf, n > 0 ? (gsize) n : 0);
}

static guint64
fd_size (int fd)
{
  off_t end = lseek (fd, 0, SEEK_END);
  return end > 0 ? (guint64) end : 0;
}

/* Records the undo entry for a write or truncate of [offset, offset+len). */
static void
log_data_change (TrFaultIo *fault, int fd, guint64 offset, guint64 len, guint64 new_size)
{
  FdInfo *info = lookup_fd (fault, fd);
  Event *ev;
  guint64 size = fd_size (fd);
  guint64 end = MIN (MAX (offset + len, new_size), size);

  if (info == NULL)
    return;
  push_event (fault, EV_WRITE, info->path);
  ev = g_ptr_array_index (fault->events, fault->events->len - 1);
  ev->offset = offset;
  ev->length = len;
  ev->size_before = size;
  ev->old = read_range (fd, offset, end > offset ? end - offset : 0);
}

/* After tr_fault_io_power_off() the machine the io stood for is gone: a
 * thread of an abandoned store must not touch the directory a test reopens. */
static gboolean
check_on (TrFaultIo *fault, const char *path, GError **error)
{
  if (fault->off) {
    tr_io_set_errno_error (error, EIO, "power is off for", path);
    return FALSE;
  }
  return TRUE;
}

static gboolean
fault_open (TrIo *io, const char *path, TrIoFlags flags, int *fd_out, GError **error)
{
  TrFaultIo *fault = io->user_data;
  g_autoptr (GRecMutexLocker) locker = g_rec_mutex_locker_new (&fault->lock);
  gboolean existed = g_file_test (path, G_FILE_TEST_EXISTS);
  FdInfo *info;

  if (!check_on (fault, path, error))
    return FALSE;
  if (should_fail_path (fault, TR_FAULT_OPEN, path)) {
    tr_io_set_errno_error (error, fault->errnum, "cannot open (injected)", path);
    return FALSE;
  }
  if (!tr_io_posix ()->vtable->open (tr_io_posix (), path, flags, fd_out, error))
    return FALSE;
  if (!existed)
    push_event (fault, EV_CREATE, path);
  info = g_new0 (FdInfo, 1);
  info->path = g_strdup (path);
  g_hash_table_replace (fault->fds, GINT_TO_POINTER (*fd_out), info);
  return TRUE;
}

static gboolean
fault_close (TrIo *io, int fd, GError **error)
{
  TrFaultIo *fault = io->user_data;
  g_autoptr (GRecMutexLocker) locker = g_rec_mutex_locker_new (&fault->lock);

  g_hash_table_remove (fault->fds, GINT_TO_POINTER (fd));
  return tr_io_posix ()->vtable->close (tr_io_posix (), fd, error);
}

static gboolean
fault_pwrite (TrIo *io, int fd, const void *buf, gsize len, guint64 offset, GError **error)
{
  TrFaultIo *fault = io->user_data;
  TrIo *posix = tr_io_posix ();
  g_autoptr (GRecMutexLocker) locker = g_rec_mutex_locker_new (&fault->lock);

  if (!check_alive (fault, fd, error))
    return FALSE;
  if (should_fail_path (fault, TR_FAULT_WRITE, fd_path (fault, fd))) {
    if (fault->short_write && len > 1) {
      log_data_change (fault, fd, offset, len / 2, offset + len / 2);
      posix->vtable->pwrite (posix, fd, buf, len / 2, offset, NULL);
    }
    tr_io_set_errno_error (error, fault->errnum, "cannot write (injected)", lookup_fd (fault, fd)->path);
    return FALSE;
  }
  log_data_change (fault, fd, offset, len, offset + len);
  return posix->vtable->pwrite (posix, fd, buf, len, offset, error);
}

static gboolean
fault_pread (TrIo *io, int fd, void *buf, gsize len, guint64 offset, gsize *got_out, GError **error)
{
  TrFaultIo *fault = io->user_data;
  g_autoptr (GRecMutexLocker) locker = g_rec_mutex_locker_new (&fault->lock);

  if (!check_alive (fault, fd, error))
    return FALSE;
  if (should_fail_path (fault, TR_FAULT_READ, fd_path (fault, fd))) {
    tr_io_set_errno_error (error, fault->errnum, "cannot read (injected)", lookup_fd (fault, fd)->path);
    return FALSE;
  }
  return tr_io_posix ()->vtable->pread (tr_io_posix (), fd, buf, len, offset, got_out, error);
}

/* Drops the undo entries of data writes to @path: they are durable now. */
static void
forget_data_events (TrFaultIo *fault, const char *path)
{
  for (guint i = fault->events->len; i-- > 0;) {
    Event *ev = g_ptr_array_index (fault->events, i);
    if (ev->kind == EV_WRITE && g_strcmp0 (ev->path, path) == 0)
      g_ptr_array_remove_index (fault->events, i);
  }
}

/* Blocks while fsyncs of @path are held (tr_fault_io_hold_fsyncs()).
 * Called without ->lock, so that the rest of the backend keeps working. */
static void
wait_while_held (TrFaultIo *fault, const char *path)
{
  g_mutex_lock (&fault->hold_lock);
  if (path != NULL && fault->hold_substring != NULL && fault->hold_thread == g_thread_self ()
      && strstr (path, fault->hold_substring) != NULL) {
    fault->held++;
    g_cond_broadcast (&fault->hold_cond);
    while (fault->hold_substring != NULL && strstr (path, fault->hold_substring) != NULL)
      g_cond_wait (&fault->hold_cond, &fault->hold_lock);
    fault->held--;
  }
  g_mutex_unlock (&fault->hold_lock);
}

static gboolean
fault_fsync (TrIo *io, int fd, GError **error)
{
  TrFaultIo *fault = io->user_data;
  FdInfo *info;
  g_autofree char *path = NULL;

  g_rec_mutex_lock (&fault->lock);
  path = g_strdup (fd_path (fault, fd));
  g_rec_mutex_unlock (&fault->lock);
  wait_while_held (fault, path);

  g_autoptr (GRecMutexLocker) locker = g_rec_mutex_locker_new (&fault->lock);
  info = lookup_fd (fault, fd);

  if (!check_alive (fault, fd, error))
    return FALSE;
  if (should_fail_path (fault, TR_FAULT_FSYNC, fd_path (fault, fd))) {
    tr_io_set_errno_error (error, fault->errnum, "cannot sync (injected)", info ? info->path : "?");
    return FALSE;
  }
  if (!tr_io_posix ()->vtable->fsync (tr_io_posix (), fd, error))
    return FALSE;
  if (info != NULL)
    forget_data_events (fault, info->path);
  return TRUE;
}

static gboolean
fault_fsync_dir (TrIo *io, const char *dir, GError **error)
{
  TrFaultIo *fault = io->user_data;
  g_autoptr (GRecMutexLocker) locker = g_rec_mutex_locker_new (&fault->lock);

  if (should_fail_path (fault, TR_FAULT_FSYNC_DIR, dir)) {
    tr_io_set_errno_error (error, fault->errnum, "cannot sync directory (injected)", dir);
    return FALSE;
  }
  if (!tr_io_posix ()->vtable->fsync_dir (tr_io_posix (), dir, error))
    return FALSE;
  for (guint i = fault->events->len; i-- > 0;) {
    Event *ev = g_ptr_array_index (fault->events, i);
    if (ev->kind != EV_WRITE && g_strcmp0 (ev->dir, dir) == 0)
      g_ptr_array_remove_index (fault->events, i);
  }
  return TRUE;
}

static gboolean
fault_rename (TrIo *io, const char *from, const char *to, GError **error)
{
  TrFaultIo *fault = io->user_data;
  GBytes *old_to;
  Event *ev;
  g_autoptr (GRecMutexLocker) locker = g_rec_mutex_locker_new (&fault->lock);

  if (!check_on (fault, to, error))
    return FALSE;
  if (should_fail_path (fault, TR_FAULT_RENAME, from)) {
    tr_io_set_errno_error (error, fault->errnum, "cannot rename (injected)", from);
    return FALSE;
  }
  {
    char *contents = NULL;
    gsize len = 0;
    old_to = g_file_get_contents (to, &contents, &len, NULL) ? g_bytes_new_take (contents, len) : NULL;
  }
  if (!tr_io_posix ()->vtable->rename (tr_io_posix (), from, to, error)) {
    if (old_to)
      g_bytes_unref (old_to);
    return FALSE;
  }
  push_event (fault, EV_RENAME, to);
  ev = g_ptr_array_index (fault->events, fault->events->len - 1);
  ev->from = g_strdup (from);
  ev->old = old_to;
  /* Data events of the old name now belong to the new one. */
  for (guint i = 0; i + 1 < fault->events->len; i++) {
    Event *data = g_ptr_array_index (fault->events, i);
    if (data->kind == EV_WRITE && g_strcmp0 (data->path, from) == 0) {
      g_free (data->path);
      data->path = g_strdup (to);
    }
  }
  return TRUE;
}

static gboolean
fault_truncate (TrIo *io, int fd, guint64 length, GError **error)
{
  TrFaultIo *fault = io->user_data;
  g_autoptr (GRecMutexLocker) locker = g_rec_mutex_locker_new (&fault->lock);

  if (!check_alive (fault, fd, error))
    return FALSE;
  if (should_fail_path (fault, TR_FAULT_TRUNCATE, fd_path (fault, fd))) {
    tr_io_set_errno_error (error, fault->errnum, "cannot truncate (injected)", lookup_fd (fault, fd)->path);
    return FALSE;
  }
  log_data_change (fault, fd, length, 0, length);
  return tr_io_posix ()->vtable->truncate (tr_io_posix (), fd, length, error);
}

static gboolean
fault_unlink (TrIo *io, const char *path, GError **error)
{
  TrFaultIo *fault = io->user_data;
  char *contents = NULL;
  gsize len = 0;
  Event *ev;
  g_autoptr (GRecMutexLocker) locker = g_rec_mutex_locker_new (&fault->lock);

  if (!check_on (fault, path, error))
    return FALSE;
  if (should_fail_path (fault, TR_FAULT_UNLINK, path)) {
    tr_io_set_errno_error (error, fault->errnum, "cannot remove (injected)", path);
    return FALSE;
  }
  if (!g_file_get_contents (path, &contents, &len, NULL))
    contents = NULL;
  if (!tr_io_posix ()->vtable->unlink (tr_io_posix (), path, error)) {
    g_free (contents);
    return FALSE;
  }
  push_event (fault, EV_UNLINK, path);
  ev = g_ptr_array_index (fault->events, fault->events->len - 1);
  ev->old = contents ? g_bytes_new_take (contents, len) : g_bytes_new (NULL, 0);
  return TRUE;
}

static gboolean
fault_size (TrIo *io, int fd, guint64 *size_out, GError **error)
{
  TrFaultIo *fault = io->user_data;
  g_autoptr (GRecMutexLocker) locker = g_rec_mutex_locker_new (&fault->lock);

  if (!check_alive (fault, fd, error))
    return FALSE;
  return tr_io_posix ()->vtable->size (tr_io_posix (), fd, size_out, error);
}

static gboolean
fault_free_space (TrIo *io, const char *path, guint64 *avail_out, guint64 *total_out, GError **error)
{
  TrFaultIo *fault = io->user_data;
  g_autoptr (GRecMutexLocker) locker = g_rec_mutex_locker_new (&fault->lock);

  if (!fault->fake_space)
    return tr_io_posix ()->vtable->free_space (tr_io_posix (), path, avail_out, total_out, error);
  *avail_out = fault->fake_avail;
  *total_out = fault->fake_total;
  return TRUE;
}

void
tr_fault_io_set_free_space (TrFaultIo *fault, guint64 avail, guint64 total)
{
  g_rec_mutex_lock (&fault->lock);
  fault->fake_space = total > 0;
  fault->fake_avail = avail;
  fault->fake_total = total;
  g_rec_mutex_unlock (&fault->lock);
}

static const TrIoVtable fault_vtable = {
  .open = fault_open,
  .close = fault_close,
  .pwrite = fault_pwrite,
  .pread = fault_pread,
  .fsync = fault_fsync,
  .fsync_dir = fault_fsync_dir,
  .rename = fault_rename,
  .truncate = fault_truncate,
  .unlink = fault_unlink,
  .size = fault_size,
  .free_space = fault_free_space,
};

TrFaultIo *
tr_fault_io_new (void)
{
  TrFaultIo *fault = g_new0 (TrFaultIo, 1);

  fault->io.vtable = &fault_vtable;
  fault->io.user_data = fault;
  g_rec_mutex_init (&fault->lock);
  g_mutex_init (&fault->hold_lock);
  g_cond_init (&fault->hold_cond);
  fault->fds = g_hash_table_new_full (g_direct_hash, g_direct_equal, NULL, fdinfo_free);
  fault->events = g_ptr_array_new_with_free_func (event_free);
  return fault;
}

void
tr_fault_io_free (TrFaultIo *fault)
{
  if (fault == NULL)
    return;
  g_hash_table_destroy (fault->fds);
  g_ptr_array_unref (fault->events);
  g_rec_mutex_clear (&fault->lock);
  g_mutex_clear (&fault->hold_lock);
  g_cond_clear (&fault->hold_cond);
  g_free (fault->path_filter);
  g_free (fault->hold_substring);
  g_free (fault);
}

TrIo *
tr_fault_io_get_io (TrFaultIo *fault)
{
  return &fault->io;
}

void
tr_fault_io_arm (TrFaultIo *fault, guint ops, guint n, int errnum, gboolean persistent,
                 gboolean short_write)
{
  g_autoptr (GRecMutexLocker) locker = g_rec_mutex_locker_new (&fault->lock);

  fault->armed_ops = ops;
  fault->countdown = MAX (n, 1);
  fault->errnum = errnum;
  fault->persistent = persistent;
  fault->short_write = short_write;
  fault->fired = FALSE;
}

void
tr_fault_io_disarm (TrFaultIo *fault)
{
  g_autoptr (GRecMutexLocker) locker = g_rec_mutex_locker_new (&fault->lock);

  fault->armed_ops = 0;
  fault->fired = FALSE;
}

void
tr_fault_io_set_path_filter (TrFaultIo *fault, const char *substring)
{
  g_autoptr (GRecMutexLocker) locker = g_rec_mutex_locker_new (&fault->lock);

  g_free (fault->path_filter);
  fault->path_filter = g_strdup (substring);
}

void
tr_fault_io_hold_fsyncs (TrFaultIo *fault, const char *substring)
{
  g_mutex_lock (&fault->hold_lock);
  g_free (fault->hold_substring);
  fault->hold_substring = g_strdup (substring);
  fault->hold_thread = g_thread_self ();
  g_cond_broadcast (&fault->hold_cond);
  g_mutex_unlock (&fault->hold_lock);
}

gboolean
tr_fault_io_wait_held (TrFaultIo *fault, gint64 timeout_us)
{
  gint64 end = g_get_monotonic_time () + timeout_us;
  gboolean held;

  g_mutex_lock (&fault->hold_lock);
  while (fault->held == 0 && g_cond_wait_until (&fault->hold_cond, &fault->hold_lock, end))
    ;
  held = fault->held > 0;
  g_mutex_unlock (&fault->hold_lock);
  return held;
}

void
tr_fault_io_release_fsyncs (TrFaultIo *fault)
{
  tr_fault_io_hold_fsyncs (fault, NULL);
}

gboolean
tr_fault_io_fired (TrFaultIo *fault)
{
  g_autoptr (GRecMutexLocker) locker = g_rec_mutex_locker_new (&fault->lock);

  return fault->fired;
}

guint
tr_fault_io_count (TrFaultIo *fault, guint ops)
{
  guint total = 0;
  g_autoptr (GRecMutexLocker) locker = g_rec_mutex_locker_new (&fault->lock);

  for (guint bit = 0; bit < G_N_ELEMENTS (fault->counts); bit++)
    if (ops & (1u << bit))
      total += fault->counts[bit];
  return total;
}

static void
write_whole (const char *path, GBytes *content)
{
  int fd = open (path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  gsize len = 0;
  const guint8 *data = g_bytes_get_data (content, &len);

  if (fd < 0)
    return;
  if (len > 0 && pwrite (fd, data, len, 0) != (ssize_t) len)
    g_warning ("power-loss replay: short write to %s", path);
  close (fd);
}

static void
revert_data (Event *ev, TrFaultLoss mode, GRand *rand)
{
  int fd = open (ev->path, O_WRONLY | O_CLOEXEC);
  gsize len = 0;
  const guint8 *old = ev->old ? g_bytes_get_data (ev->old, &len) : NULL;

  if (fd < 0)
    return;
  if (mode == TR_FAULT_LOSS_GARBLE && ev->length > 0) {
    g_autofree guint8 *junk = g_malloc (ev->length);
    for (guint64 i = 0; i < ev->length; i++)
      junk[i] = (guint8) g_rand_int (rand);
    if (pwrite (fd, junk, ev->length, (off_t) ev->offset) < 0)
      g_warning ("power-loss garble of %s failed", ev->path);
  } else {
    if (ftruncate (fd, (off_t) ev->size_before) < 0)
      g_warning ("power-loss truncate of %s failed", ev->path);
    if (len > 0 && pwrite (fd, old, len, (off_t) ev->offset) < 0)
      g_warning ("power-loss restore of %s failed", ev->path);
  }
  close (fd);
}

static void
revert_event (Event *ev, TrFaultLoss mode, GRand *rand)
{
  switch (ev->kind) {
  case EV_WRITE:
    revert_data (ev, mode, rand);
    break;
  case EV_CREATE:
    unlink (ev->path);
    break;
  case EV_RENAME:
    if (rename (ev->path, ev->from) == 0 && ev->old != NULL)
      write_whole (ev->path, ev->old);
    break;
  case EV_UNLINK:
    write_whole (ev->path, ev->old);
    break;
  }
}

void
tr_fault_io_power_loss (TrFaultIo *fault, TrFaultLoss mode, guint32 seed)
{
  g_autoptr (GRecMutexLocker) locker = g_rec_mutex_locker_new (&fault->lock);
  g_autoptr (GRand) rand = g_rand_new_with_seed (seed);
  GHashTableIter iter;
  gpointer value;

  for (guint i = fault->events->len; i-- > 0;)
    revert_event (g_ptr_array_index (fault->events, i), mode, rand);
  g_ptr_array_set_size (fault->events, 0);
  g_hash_table_iter_init (&iter, fault->fds);
  while (g_hash_table_iter_next (&iter, NULL, &value))
    ((FdInfo *) value)->dead = TRUE;
  tr_fault_io_disarm (fault);
}

void
tr_fault_io_power_off (TrFaultIo *fault, TrFaultLoss mode, guint32 seed)
{
  g_autoptr (GRecMutexLocker) locker = g_rec_mutex_locker_new (&fault->lock);

  tr_fault_io_power_loss (fault, mode, seed);
  fault->off = TRUE;
}
