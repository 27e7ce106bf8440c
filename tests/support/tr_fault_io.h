/* tr_fault_io.h - a fault-injecting TrIo backend for the crash tests.
 *
 * Wraps the POSIX backend.  It can
 *  - fail the Nth call of a chosen set of operations with a chosen errno
 *    (countdown faults, SQLite do_faultsim_test style), optionally making the
 *    failing write a short write (half the bytes land, then the error);
 *  - simulate a power loss: every byte written since the last fsync of its
 *    file is either dropped (old bytes restored, file cut back to its synced
 *    length) or garbled (overwritten with seeded random bytes), and files
 *    created since the last fsync_dir of their directory disappear.  After a
 *    power loss every descriptor opened before it is dead: calls on it fail
 *    with EIO, close succeeds.  Reopen the store through the same TrIo.
 *
 * Thread-safe: every call takes one lock, so a power loss is atomic with
 * respect to the store's threads (its writer writes zeros ahead of the data
 * while the test thread commits).
 */
#pragma once

#include "tr_io.h"

#include <glib.h>

G_BEGIN_DECLS

typedef enum {
  TR_FAULT_OPEN = 1 << 0,
  TR_FAULT_WRITE = 1 << 1,
  TR_FAULT_FSYNC = 1 << 2,
  TR_FAULT_FSYNC_DIR = 1 << 3,
  TR_FAULT_RENAME = 1 << 4,
  TR_FAULT_TRUNCATE = 1 << 5,
  TR_FAULT_UNLINK = 1 << 6,
  TR_FAULT_READ = 1 << 7,
  TR_FAULT_ALL_MUTATING = TR_FAULT_OPEN | TR_FAULT_WRITE | TR_FAULT_FSYNC | TR_FAULT_FSYNC_DIR
                          | TR_FAULT_RENAME | TR_FAULT_TRUNCATE | TR_FAULT_UNLINK,
} TrFaultOp;

typedef enum {
  TR_FAULT_LOSS_DROP,   /* unsynced bytes vanish */
  TR_FAULT_LOSS_GARBLE, /* unsynced bytes become random */
} TrFaultLoss;

typedef struct _TrFaultIo TrFaultIo;

TrFaultIo *tr_fault_io_new (void);
void tr_fault_io_free (TrFaultIo *fault);
/* Returns: (transfer none): the TrIo to hand to the code under test. */
TrIo *tr_fault_io_get_io (TrFaultIo *fault);

/* Arms a fault: the @n-th (1-based, counted from now) call of any operation in
 * @ops fails with @errnum.  With @persistent, every later call in @ops fails
 * too (a disk that stays broken); otherwise only that one.  With @short_write
 * and a failing write, half the bytes are written before the error. */
void tr_fault_io_arm (TrFaultIo *fault, guint ops, guint n, int errnum, gboolean persistent,
                      gboolean short_write);
void tr_fault_io_disarm (TrFaultIo *fault);
/* TRUE once an armed fault has fired. */
gboolean tr_fault_io_fired (TrFaultIo *fault);
/* Calls seen of the operations in @ops since creation. */
guint tr_fault_io_count (TrFaultIo *fault, guint ops);

/* Restricts the armed fault to calls on paths containing @substring (NULL:
 * every path, the default; for fsync the path the descriptor was opened
 * with).  Calls on other paths are counted but never fail, so a test can
 * aim at one file (say, a data part that retention deletes) while the rest
 * of the store works.  Kept until changed; tr_fault_io_disarm() keeps it. */
void tr_fault_io_set_path_filter (TrFaultIo *fault, const char *substring);

/* Holds every fsync that the calling thread makes later on a file whose
 * path contains @substring (NULL: stop holding) until
 * tr_fault_io_release_fsyncs(): the thread blocks outside the backend's
 * lock, so every other call (reads of the same file included) goes on
 * meanwhile.  Only the caller's own fsyncs, so that a test aims at its
 * commit and not at the store's writer thread.  The held fsync then runs
 * normally.  For tests of what must not wait for a sync. */
void tr_fault_io_hold_fsyncs (TrFaultIo *fault, const char *substring);
/* Waits until at least one fsync is held, at most @timeout_us; TRUE if one is. */
gboolean tr_fault_io_wait_held (TrFaultIo *fault, gint64 timeout_us);
/* Lets every held fsync go and stops holding new ones. */
void tr_fault_io_release_fsyncs (TrFaultIo *fault);

/* Makes free_space report @avail of @total bytes free (a full disk without
 * filling one); @total 0 goes back to the real figures. */
void tr_fault_io_set_free_space (TrFaultIo *fault, guint64 avail, guint64 total);

/* Simulates a power loss (see above).  @seed drives GARBLE. */
void tr_fault_io_power_loss (TrFaultIo *fault, TrFaultLoss mode, guint32 seed);

/* A power loss after which this io is never used again (the test reopens
 * with another io): as tr_fault_io_power_loss(), and from then on every
 * open, rename and unlink through it fails with EIO, in the same step.  For
 * stores that keep running threads after the loss: an abandoned store
 * reopening itself after its failed writes would otherwise create and
 * remove files (the DoubleWriteBuffer journal) in the directory the test
 * is recovering. */
void tr_fault_io_power_off (TrFaultIo *fault, TrFaultLoss mode, guint32 seed);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (TrFaultIo, tr_fault_io_free)

G_END_DECLS
