/* tr_test_util.c - temp dirs, seeds and file helpers for tests. */
#include "tr_test_util.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

char *
tr_test_mkdtemp (void)
{
  g_autoptr (GError) error = NULL;
  char *dir = g_dir_make_tmp ("tr-test-XXXXXX", &error);

  cr_assert_not_null (dir, "g_dir_make_tmp: %s", error ? error->message : "?");
  return dir;
}

static void
rm_rf (const char *path)
{
  GDir *dir = g_dir_open (path, 0, NULL);

  if (dir != NULL) {
    const char *name;
    while ((name = g_dir_read_name (dir)) != NULL) {
      g_autofree char *child = g_build_filename (path, name, NULL);
      rm_rf (child);
    }
    g_dir_close (dir);
    rmdir (path);
  } else {
    unlink (path);
  }
}

void
tr_test_rmdir (const char *path)
{
  if (path != NULL)
    rm_rf (path);
}

guint32
tr_test_seed (void)
{
  const char *env = g_getenv ("TR_TEST_SEED");
  guint32 seed = 20261122;

  if (env != NULL && *env != '\0')
    seed = (guint32) g_ascii_strtoull (env, NULL, 10);
  fprintf (stderr, "TR_TEST_SEED=%u\n", seed);
  return seed;
}

GBytes *
tr_test_read_file (const char *path)
{
  char *contents = NULL;
  gsize len = 0;

  if (!g_file_get_contents (path, &contents, &len, NULL))
    return NULL;
  return g_bytes_new_take (contents, len);
}

void
tr_test_write_file (const char *path, const void *data, gsize len)
{
  g_autoptr (GError) error = NULL;
  gboolean ok = g_file_set_contents (path, data, (gssize) len, &error);

  cr_assert (ok, "write %s: %s", path, error ? error->message : "?");
}

void
tr_test_patch_file (const char *path, guint64 offset, const void *data, gsize len)
{
  int fd = open (path, O_WRONLY);

  cr_assert (fd >= 0, "open %s: %s", path, g_strerror (errno));
  cr_assert_eq (pwrite (fd, data, len, (off_t) offset), (ssize_t) len, "patch %s", path);
  close (fd);
}

gint64
tr_test_file_size (const char *path)
{
  struct stat st;

  if (stat (path, &st) < 0)
    return -1;
  return (gint64) st.st_size;
}

int
tr_test_bind_loopback (guint16 port, gboolean do_listen, guint16 *port_out)
{
  struct sockaddr_in addr = { 0 };
  socklen_t addr_len = sizeof addr;
  int one = 1;
  int fd = socket (AF_INET, SOCK_STREAM, 0);

  cr_assert (fd >= 0);
  setsockopt (fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl (INADDR_LOOPBACK);
  addr.sin_port = htons (port);
  cr_assert_eq (bind (fd, (struct sockaddr *) &addr, sizeof addr), 0, "bind: %s", g_strerror (errno));
  if (do_listen)
    cr_assert_eq (listen (fd, 16), 0);
  cr_assert_eq (getsockname (fd, (struct sockaddr *) &addr, &addr_len), 0);
  *port_out = ntohs (addr.sin_port);
  return fd;
}
