/* tr_test_util.h - shared helpers for the Criterion suites.
 * Never copy these into a test file: include this header. */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* Creates a fresh empty directory under $TMPDIR (or /tmp).
 * Returns: (transfer full): its path.  Remove it with tr_test_rmdir(). */
char *tr_test_mkdtemp (void);
/* Removes @path and everything under it (rm -rf); NULL is ignored. */
void tr_test_rmdir (const char *path);

/* The seed of random tests: $TR_TEST_SEED if set, otherwise a fixed default.
 * Prints "TR_TEST_SEED=<n>" to stderr so a failing run can be repeated. */
guint32 tr_test_seed (void);

/* Reads a whole file. Returns: (transfer full) (nullable): NULL if missing. */
GBytes *tr_test_read_file (const char *path);
/* Writes @len bytes to @path (creating/replacing it), asserting success. */
void tr_test_write_file (const char *path, const void *data, gsize len);
/* Overwrites bytes of an existing file at @offset (corruption tests). */
void tr_test_patch_file (const char *path, guint64 offset, const void *data, gsize len);
/* Size of @path, or -1 if it does not exist. */
gint64 tr_test_file_size (const char *path);

/* Binds a TCP socket to 127.0.0.1:@port (0 = any free port), listening if
 * @do_listen, asserting success; the port bound goes to @port_out.
 * Returns: the socket (the caller closes it). */
int tr_test_bind_loopback (guint16 port, gboolean do_listen, guint16 *port_out);

G_END_DECLS
