/* tr_config.c - loading and validating router.conf and services/NAME.conf.
 *
 * Every value is read as a string and parsed here (not with GKeyFile's typed
 * getters) so each error names file, group, key and value in one format:
 *   "<file>: [<group>] <key>: '<value>' <problem>"
 * GKeyFile silently merges a repeated group and lets a repeated key win, so
 * the raw text is scanned for duplicates before it is parsed.
 * Key reference and defaults: tr_config.h.  Single-threaded.
 * Copies and the in-place edit of a service file: tr_config_edit.c.
 */
#include "tr_config.h"
#include "tr_config_private.h"

#include "tr_dwfile.h"
#include "tr_frame.h"
#include "tr_storage_error.h"

#include <stdarg.h>
#include <string.h>

#define GROUP_ROUTER "router"
#define GROUP_SERVICE "service"
#define MAX_ID_LEN 64
#define MAX_MS 86400000u /* one day */

/* Where values come from and where errors go. */
typedef struct {
  const char *path;
  GKeyFile *keyfile;
  GError **error;
} Reader;

static const char *const router_keys[] = {
  "server_id", "server_type", "listen", "admin_listen", "data_dir", "sync_mode",
  "sync_interval_ms", "rpc_cache_size", "group_file_size", "max_frame_size",
  "state_flush_ms", "max_connections", "services", "admin_token_file", "admin_allow_insecure", "min_free_space",
  "metrics_listen", "replication_listen",
  NULL,
};
static const char *const service_keys[] = {
  "service_type", "rpcs", "max_inflight", "on_failure", "max_retries", "retry_backoff_ms",
  "retry_backoff_max_ms", "connect_timeout_ms", "socket_timeout_ms", "oneway_barrier",
  "barrier_method", "max_backlog_bytes", "max_backlog_age", NULL,
};
static const char *const endpoint_keys[] = {
  "host", "port", "max_connection", "stop_send", "start", NULL,
};
static const char *const server_type_names[] = { "MASTER", "BACKUP", "REPLY", NULL };
/* Indexed by TrSyncMode (tr_rpcstore.h). */
static const char *const sync_mode_names[] = {
  [TR_SYNC_ALWAYS] = "always", [TR_SYNC_INTERVAL] = "interval", [TR_SYNC_NONE] = "none", NULL,
};
static const char *const service_type_names[] = { "COMMON", "BACKUP", "REPLY", NULL };
static const char *const on_failure_names[] = { "block", "skip", NULL };
static const char *const bool_names[] = { "false", "true", NULL };
static const char *const start_names[] = { [TR_START_HEAD] = "head", [TR_START_EARLIEST] = "earliest", NULL };

/* Sets the error "<path>: [<group>] <key>: <message>" (group/key optional);
 * always returns FALSE. */
G_GNUC_PRINTF (5, 6)
static gboolean
fail (const Reader *r, TrConfigError code, const char *group, const char *key, const char *fmt, ...)
{
  g_autofree char *msg = NULL;
  g_autofree char *where = NULL;
  va_list ap;

  va_start (ap, fmt);
  msg = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  if (group != NULL && key != NULL)
    where = g_strdup_printf ("[%s] %s: ", group, key);
  else if (group != NULL)
    where = g_strdup_printf ("[%s]: ", group);
  g_set_error (r->error, TR_CONFIG_ERROR, code, "%s: %s%s", r->path, where ? where : "", msg);
  return FALSE;
}

/* ---- raw text: read, check duplicates, parse ---- */

/* Scans key-file text for a repeated group or a repeated key in a group. */
static gboolean
check_duplicates (const Reader *r, const char *text)
{
  g_auto (GStrv) lines = g_strsplit (text, "\n", -1);
  g_autoptr (GHashTable) groups = g_hash_table_new (g_str_hash, g_str_equal);
  g_autoptr (GHashTable) keys = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  const char *group = NULL;

  for (guint i = 0; lines[i] != NULL; i++) {
    char *line = g_strstrip (lines[i]);
    char *end;

    if (*line == '\0' || *line == '#')
      continue;
    if (*line == '[' && (end = strchr (line, ']')) != NULL) {
      *end = '\0';
      group = line + 1;
      if (!g_hash_table_add (groups, (gpointer) group))
        return fail (r, TR_CONFIG_ERROR_INVALID, group, NULL, "group appears twice");
      g_hash_table_remove_all (keys);
    } else if ((end = strchr (line, '=')) != NULL && group != NULL) {
      *end = '\0';
      if (!g_hash_table_add (keys, g_strdup (g_strchomp (line))))
        return fail (r, TR_CONFIG_ERROR_INVALID, group, g_strchomp (line), "key appears twice");
    }
  }
  return TRUE;
}

/* Reads through DoubleWriteFile: tr-admin stop-send rewrites service files
 * with it, and a kill during that write may leave a side copy that must be
 * replayed (or dropped) before the file is read, or it could be torn. */
static GKeyFile *
read_keyfile (const Reader *r)
{
  g_autoptr (GKeyFile) keyfile = g_key_file_new ();
  g_autoptr (GError) local = NULL;
  g_autoptr (GBytes) content = tr_dwfile_read (tr_io_posix (), r->path, &local);
  g_autofree char *text = NULL;
  gsize len;

  if (content == NULL) {
    if (g_error_matches (local, TR_STORAGE_ERROR, TR_STORAGE_ERROR_NOT_FOUND))
      fail (r, TR_CONFIG_ERROR_IO, NULL, NULL, "no such file");
    else
      fail (r, TR_CONFIG_ERROR_IO, NULL, NULL, "cannot read: %s", local->message);
    return NULL;
  }
  len = g_bytes_get_size (content);
  text = g_malloc (len + 1);
  memcpy (text, len > 0 ? g_bytes_get_data (content, NULL) : "", len);
  text[len] = '\0';
  if (!g_key_file_load_from_data (keyfile, text, len, G_KEY_FILE_NONE, &local)) {
    fail (r, TR_CONFIG_ERROR_PARSE, NULL, NULL, "%s", local->message);
    return NULL;
  }
  if (!check_duplicates (r, text))
    return NULL;
  return g_steal_pointer (&keyfile);
}

/* Where a key of another group belongs, for the "unknown key" error: a
 * key put in the wrong group is the common mistake, and "unknown" alone
 * sends the operator looking for a typo. */
static const char *
where_key_belongs (const char *key)
{
  if (g_strv_contains (router_keys, key))
    return "it belongs in the [router] group of router.conf";
  if (g_strv_contains (service_keys, key))
    return "it belongs in the [service] group of the service file";
  if (g_strv_contains (endpoint_keys, key))
    return "it belongs in an [endpoint ID] group of a service file";
  return NULL;
}

/* Every key of @group must be in @allowed. */
static gboolean
check_keys (const Reader *r, const char *group, const char *const *allowed)
{
  g_auto (GStrv) keys = g_key_file_get_keys (r->keyfile, group, NULL, NULL);

  for (guint i = 0; keys != NULL && keys[i] != NULL; i++) {
    const char *belongs;
    if (g_strv_contains (allowed, keys[i]))
      continue;
    belongs = where_key_belongs (keys[i]);
    if (belongs != NULL)
      return fail (r, TR_CONFIG_ERROR_INVALID, group, keys[i], "unknown key in this group: %s", belongs);
    return fail (r, TR_CONFIG_ERROR_INVALID, group, keys[i], "unknown key");
  }
  return TRUE;
}

/* ---- typed values ---- */

/* The stripped value of @key, or NULL if the key is absent. */
static char *
get_raw (const Reader *r, const char *group, const char *key)
{
  char *value;

  if (!g_key_file_has_key (r->keyfile, group, key, NULL))
    return NULL;
  value = g_key_file_get_string (r->keyfile, group, key, NULL);
  return value != NULL ? g_strstrip (value) : g_strdup ("");
}

static gboolean
get_string (const Reader *r, const char *group, const char *key, const char *def, char **out)
{
  char *value = get_raw (r, group, key);

  if (value == NULL && def == NULL)
    return fail (r, TR_CONFIG_ERROR_INVALID, group, key, "missing (required)");
  if (value != NULL && *value == '\0') {
    g_free (value);
    return fail (r, TR_CONFIG_ERROR_INVALID, group, key, "is empty");
  }
  *out = value != NULL ? value : g_strdup (def);
  return TRUE;
}

static gboolean
all_digits (const char *s)
{
  if (*s == '\0')
    return FALSE;
  for (; *s != '\0'; s++) {
    if (!g_ascii_isdigit (*s))
      return FALSE;
  }
  return TRUE;
}

static gboolean
get_uint (const Reader *r, const char *group, const char *key, guint def, guint min, guint max,
          guint *out)
{
  g_autofree char *value = get_raw (r, group, key);
  guint64 n;

  if (value == NULL) {
    *out = def;
    return TRUE;
  }
  if (!all_digits (value) || !g_ascii_string_to_unsigned (value, 10, min, max, &n, NULL))
    return fail (r, TR_CONFIG_ERROR_INVALID, group, key, "'%s' is not an integer in %u..%u",
                 value, min, max);
  *out = (guint) n;
  return TRUE;
}

/* "123", "64K", "64M", "2G" (1024-based, case-insensitive, optional B or iB). */
static gboolean
parse_size (const char *s, guint64 *out)
{
  g_autofree char *digits = NULL;
  const char *p = s;
  guint64 n, mult = 1;

  while (g_ascii_isdigit (*p))
    p++;
  digits = g_strndup (s, (gsize) (p - s));
  if (!all_digits (digits) || !g_ascii_string_to_unsigned (digits, 10, 0, G_MAXUINT64, &n, NULL))
    return FALSE;
  switch (g_ascii_toupper (*p)) {
  case '\0':
    break;
  case 'K':
    mult = G_GUINT64_CONSTANT (1) << 10;
    break;
  case 'M':
    mult = G_GUINT64_CONSTANT (1) << 20;
    break;
  case 'G':
    mult = G_GUINT64_CONSTANT (1) << 30;
    break;
  default:
    return FALSE;
  }
  if (*p != '\0')
    p++;
  if (*p != '\0' && g_ascii_strcasecmp (p, "B") != 0 && g_ascii_strcasecmp (p, "iB") != 0)
    return FALSE;
  if (n > G_MAXUINT64 / mult)
    return FALSE;
  *out = n * mult;
  return TRUE;
}

static gboolean
get_size (const Reader *r, const char *group, const char *key, guint64 def, guint64 min,
          guint64 max, guint64 *out)
{
  g_autofree char *value = get_raw (r, group, key);
  guint64 n;

  if (value == NULL) {
    *out = def;
    return TRUE;
  }
  if (!parse_size (value, &n) || n < min || n > max)
    return fail (r, TR_CONFIG_ERROR_INVALID, group, key,
                 "'%s' is not a size in %" G_GUINT64_FORMAT "..%" G_GUINT64_FORMAT
                 " bytes (suffixes K, M, G allowed)",
                 value, min, max);
  *out = n;
  return TRUE;
}

/* A size (as parse_size) or a percentage of the filesystem "N%" (0..99):
 * min_free_space.  Exactly one of *@bytes_out and *@percent_out is set
 * (the other is 0). */
static gboolean
get_size_or_percent (const Reader *r, const char *group, const char *key, guint64 def, guint64 *bytes_out,
                     guint *percent_out)
{
  g_autofree char *value = get_raw (r, group, key);
  gsize len = value != NULL ? strlen (value) : 0;
  guint64 n;

  *bytes_out = def;
  *percent_out = 0;
  if (value == NULL)
    return TRUE;
  if (len > 1 && value[len - 1] == '%') {
    value[len - 1] = '\0';
    if (!all_digits (value) || !g_ascii_string_to_unsigned (value, 10, 0, 99, &n, NULL))
      return fail (r, TR_CONFIG_ERROR_INVALID, group, key, "'%s%%' is not a percentage in 0..99%%", value);
    *bytes_out = 0;
    *percent_out = (guint) n;
    return TRUE;
  }
  if (!parse_size (value, &n) || n > G_MAXINT64)
    return fail (r, TR_CONFIG_ERROR_INVALID, group, key,
                 "'%s' is neither a size (suffixes K, M, G allowed) nor a percentage of the filesystem (N%%)",
                 value);
  *bytes_out = n;
  return TRUE;
}

/* "0" (off), or a number with a unit: "30s", "10m", "24h", "7d"; at most
 * 3650 days.  Stored in seconds. */
static gboolean
parse_duration (const char *s, guint64 *seconds_out)
{
  g_autofree char *digits = NULL;
  const char *p = s;
  guint64 n, unit;

  while (g_ascii_isdigit (*p))
    p++;
  digits = g_strndup (s, (gsize) (p - s));
  if (!all_digits (digits) || !g_ascii_string_to_unsigned (digits, 10, 0, G_MAXUINT32, &n, NULL))
    return FALSE;
  switch (*p) {
  case '\0':
    if (n != 0)
      return FALSE; /* a bare number has no unit: only 0 (off) is clear */
    unit = 1;
    break;
  case 's':
    unit = 1;
    break;
  case 'm':
    unit = 60;
    break;
  case 'h':
    unit = 3600;
    break;
  case 'd':
    unit = 86400;
    break;
  default:
    return FALSE;
  }
  if (*p != '\0' && p[1] != '\0')
    return FALSE;
  if (n * unit > G_GUINT64_CONSTANT (3650) * 86400)
    return FALSE;
  *seconds_out = n * unit;
  return TRUE;
}

static gboolean
get_duration (const Reader *r, const char *group, const char *key, guint64 def, guint64 *seconds_out)
{
  g_autofree char *value = get_raw (r, group, key);

  if (value == NULL) {
    *seconds_out = def;
    return TRUE;
  }
  if (!parse_duration (value, seconds_out))
    return fail (r, TR_CONFIG_ERROR_INVALID, group, key,
                 "'%s' is not a duration: a number with a unit s, m, h or d (30s, 10m, 24h, 7d), at most 3650d, "
                 "or 0 for off",
                 value);
  return TRUE;
}

static gboolean
get_bool (const Reader *r, const char *group, const char *key, gboolean def, gboolean *out)
{
  static const char *const yes[] = { "true", "yes", "on", "1", NULL };
  static const char *const no[] = { "false", "no", "off", "0", NULL };
  g_autofree char *value = get_raw (r, group, key);

  if (value == NULL) {
    *out = def;
    return TRUE;
  }
  for (guint i = 0; yes[i] != NULL; i++) {
    if (g_ascii_strcasecmp (value, yes[i]) == 0) {
      *out = TRUE;
      return TRUE;
    }
    if (g_ascii_strcasecmp (value, no[i]) == 0) {
      *out = FALSE;
      return TRUE;
    }
  }
  return fail (r, TR_CONFIG_ERROR_INVALID, group, key, "'%s' is not a boolean (true or false)",
               value);
}

/* Case-insensitive choice among @names; stores the index. */
static gboolean
get_enum (const Reader *r, const char *group, const char *key, const char *const *names, int def,
          int *out)
{
  g_autofree char *value = get_raw (r, group, key);
  g_autofree char *choices = NULL;

  if (value == NULL) {
    *out = def;
    return TRUE;
  }
  for (int i = 0; names[i] != NULL; i++) {
    if (g_ascii_strcasecmp (value, names[i]) == 0) {
      *out = i;
      return TRUE;
    }
  }
  choices = g_strjoinv (", ", (char **) names);
  return fail (r, TR_CONFIG_ERROR_INVALID, group, key, "'%s' is not one of %s", value, choices);
}

/* Splits at ',' and ';', trims items, drops empty ones.  Rejects an item
 * @valid refuses, and repeated items. */
static gboolean
get_list (const Reader *r, const char *group, const char *key,
          gboolean (*valid) (const char *, gsize), const char *what, GPtrArray **out)
{
  g_autofree char *value = get_raw (r, group, key);
  g_autoptr (GPtrArray) items = g_ptr_array_new_with_free_func (g_free);
  g_auto (GStrv) parts = NULL;

  if (value != NULL)
    parts = g_strsplit_set (value, ",;", -1);
  for (guint i = 0; parts != NULL && parts[i] != NULL; i++) {
    char *item = g_strstrip (parts[i]);
    if (*item == '\0')
      continue;
    if (!valid (item, strlen (item)))
      return fail (r, TR_CONFIG_ERROR_INVALID, group, key, "'%s' is not a valid %s", item, what);
    if (g_ptr_array_find_with_equal_func (items, item, g_str_equal, NULL))
      return fail (r, TR_CONFIG_ERROR_INVALID, group, key, "'%s' is listed twice", item);
    g_ptr_array_add (items, g_strdup (item));
  }
  *out = g_steal_pointer (&items);
  return TRUE;
}

/* Names used as ids and file names: [A-Za-z0-9_.-]{1,64}, not starting
 * with '.' (so never "..", never a hidden file). */
static gboolean
valid_id (const char *s, gsize len)
{
  if (len == 0 || len > MAX_ID_LEN || s[0] == '.')
    return FALSE;
  for (gsize i = 0; i < len; i++) {
    if (!g_ascii_isalnum (s[i]) && s[i] != '_' && s[i] != '.' && s[i] != '-')
      return FALSE;
  }
  return TRUE;
}

static gboolean
valid_host (const char *s)
{
  gsize len = strlen (s);

  if (len == 0 || len > 255)
    return FALSE;
  for (gsize i = 0; i < len; i++) {
    if (!g_ascii_isgraph (s[i]) || s[i] == '[' || s[i] == ']' || s[i] == '/')
      return FALSE;
  }
  return TRUE;
}

/* "name:digits" with a single colon: a host:port written into a host key
 * (an IPv6 address has at least two colons).  The name lookup would take it
 * whole and fail at every connection attempt, long after --check passed. */
static gboolean
host_with_port (const char *host)
{
  const char *colon = strchr (host, ':');

  return colon != NULL && colon != host && strchr (colon + 1, ':') == NULL && all_digits (colon + 1);
}

/* "host:port" or "[v6addr]:port"; port 0..65535 (0 = any free port). */
static gboolean
get_hostport (const Reader *r, const char *group, const char *key, const char *def, char **host,
              guint16 *port)
{
  g_autofree char *value = NULL;
  g_autofree char *h = NULL;
  const char *colon;
  guint64 n;

  if (!get_string (r, group, key, def, &value))
    return FALSE;
  colon = strrchr (value, ':');
  if (colon == NULL)
    return fail (r, TR_CONFIG_ERROR_INVALID, group, key, "'%s' is not host:port", value);
  if (value[0] == '[' && colon > value && colon[-1] == ']')
    h = g_strndup (value + 1, (gsize) (colon - value - 2));
  else
    h = g_strndup (value, (gsize) (colon - value));
  if (!valid_host (h) || (value[0] != '[' && strchr (h, ':') != NULL))
    return fail (r, TR_CONFIG_ERROR_INVALID, group, key,
                 "'%s' is not host:port (write IPv6 as [addr]:port)", value);
  if (!all_digits (colon + 1) || !g_ascii_string_to_unsigned (colon + 1, 10, 0, 65535, &n, NULL))
    return fail (r, TR_CONFIG_ERROR_INVALID, group, key, "'%s': '%s' is not a port (0..65535)",
                 value, colon + 1);
  *host = g_steal_pointer (&h);
  *port = (guint16) n;
  return TRUE;
}

/* ---- services ---- */

void
tr_config__endpoint_free (gpointer data)
{
  TrEndpointConfig *endpoint = data;

  g_free (endpoint->id);
  g_free (endpoint->host);
  g_free (endpoint);
}

void
tr_service_config_free (TrServiceConfig *service)
{
  if (service == NULL)
    return;
  g_free (service->name);
  g_free (service->path);
  g_clear_pointer (&service->rpcs, g_ptr_array_unref);
  g_free (service->barrier_method);
  g_clear_pointer (&service->endpoints, g_ptr_array_unref);
  g_free (service);
}

/* A required port 1..65535. */
static gboolean
get_port (const Reader *r, const char *group, const char *key, guint16 *out)
{
  g_autofree char *value = get_raw (r, group, key);
  guint64 n;

  if (value == NULL)
    return fail (r, TR_CONFIG_ERROR_INVALID, group, key, "missing (required)");
  if (!all_digits (value) || !g_ascii_string_to_unsigned (value, 10, 1, 65535, &n, NULL))
    return fail (r, TR_CONFIG_ERROR_INVALID, group, key, "'%s' is not a port (1..65535)", value);
  *out = (guint16) n;
  return TRUE;
}

static gboolean
read_endpoint (const Reader *r, const char *group, const char *id, TrServiceConfig *service)
{
  TrEndpointConfig *endpoint = g_new0 (TrEndpointConfig, 1);
  int start = TR_START_HEAD;

  /* Owned by @service from here on, so every failure path frees it. */
  endpoint->id = g_strdup (id);
  g_ptr_array_add (service->endpoints, endpoint);
  if (!valid_id (id, strlen (id)))
    return fail (r, TR_CONFIG_ERROR_INVALID, group, NULL,
                 "'%s' is not a valid endpoint id ([A-Za-z0-9_.-], 1..64 chars)", id);
  if (!check_keys (r, group, endpoint_keys) ||
      !get_string (r, group, "host", "127.0.0.1", &endpoint->host) ||
      !get_port (r, group, "port", &endpoint->port) ||
      !get_uint (r, group, "max_connection", 1, 1, 1024, &endpoint->max_connection) ||
      !get_bool (r, group, "stop_send", FALSE, &endpoint->stop_send) ||
      !get_enum (r, group, "start", start_names, TR_START_HEAD, &start))
    return FALSE;
  endpoint->start = (TrEndpointStart) start;
  if (!valid_host (endpoint->host))
    return fail (r, TR_CONFIG_ERROR_INVALID, group, "host", "'%s' is not a host name or address",
                 endpoint->host);
  if (host_with_port (endpoint->host))
    return fail (r, TR_CONFIG_ERROR_INVALID, group, "host",
                 "'%s' holds a port: write the host alone and the port as its own key "
                 "(host = %.*s and port = %s)",
                 endpoint->host, (int) (strrchr (endpoint->host, ':') - endpoint->host), endpoint->host,
                 strrchr (endpoint->host, ':') + 1);
  return TRUE;
}

static gboolean
valid_rpc_name (const char *name, gsize len)
{
  return tr_frame_valid_rpc_name (name, len);
}

static gboolean
read_service_group (const Reader *r, TrServiceConfig *s)
{
  const char *g = GROUP_SERVICE;
  int type = 0, on_failure = 0;

  if (!check_keys (r, g, service_keys) ||
      !get_enum (r, g, "service_type", service_type_names, TR_SERVICE_COMMON, &type) ||
      !get_list (r, g, "rpcs", valid_rpc_name, "rpc name ([A-Za-z0-9_.:], 1..255 chars)",
                 &s->rpcs) ||
      !get_uint (r, g, "max_inflight", 64, 1, 65536, &s->max_inflight) ||
      !get_enum (r, g, "on_failure", on_failure_names, TR_ON_FAILURE_BLOCK, &on_failure) ||
      !get_uint (r, g, "max_retries", 10, 0, G_MAXINT32, &s->max_retries) ||
      !get_uint (r, g, "retry_backoff_ms", 100, 1, MAX_MS, &s->retry_backoff_ms) ||
      !get_uint (r, g, "retry_backoff_max_ms", 30000, 1, MAX_MS, &s->retry_backoff_max_ms) ||
      !get_uint (r, g, "connect_timeout_ms", 3000, 1, MAX_MS, &s->connect_timeout_ms) ||
      !get_uint (r, g, "socket_timeout_ms", 10000, 1, MAX_MS, &s->socket_timeout_ms) ||
      !get_bool (r, g, "oneway_barrier", TRUE, &s->oneway_barrier) ||
      !get_string (r, g, "barrier_method", TR_CONFIG_DEFAULT_BARRIER_METHOD, &s->barrier_method) ||
      !get_size (r, g, "max_backlog_bytes", 0, 0, G_MAXINT64, &s->max_backlog_bytes) ||
      !get_duration (r, g, "max_backlog_age", 0, &s->max_backlog_age_s))
    return FALSE;
  s->service_type = (TrServiceType) type;
  s->on_failure = (TrOnFailure) on_failure;
  if (s->service_type == TR_SERVICE_REPLY)
    return fail (r, TR_CONFIG_ERROR_INVALID, g, "service_type", "%s is not supported yet (COMMON or BACKUP)",
                 service_type_names[type]);
  /* A replication link carries every committed RPC (docs/replication.md):
   * a list of rpcs would suggest a filter that does not exist. */
  if (s->service_type == TR_SERVICE_BACKUP && g_key_file_has_key (r->keyfile, g, "rpcs", NULL))
    return fail (r, TR_CONFIG_ERROR_INVALID, g, "rpcs",
                 "a BACKUP service takes every committed rpc and has no rpcs key; remove it");
  if (s->service_type == TR_SERVICE_BACKUP)
    return TRUE;
  if (s->rpcs->len == 0)
    return fail (r, TR_CONFIG_ERROR_INVALID, g, "rpcs", "missing or empty (a service needs at least one rpc)");
  if (s->retry_backoff_max_ms < s->retry_backoff_ms)
    return fail (r, TR_CONFIG_ERROR_INVALID, g, "retry_backoff_max_ms",
                 "'%u' is less than retry_backoff_ms (%u)", s->retry_backoff_max_ms,
                 s->retry_backoff_ms);
  if (!tr_frame_valid_rpc_name (s->barrier_method, strlen (s->barrier_method)))
    return fail (r, TR_CONFIG_ERROR_INVALID, g, "barrier_method", "'%s' is not a valid rpc name",
                 s->barrier_method);
  if (g_ptr_array_find_with_equal_func (s->rpcs, s->barrier_method, g_str_equal, NULL))
    return fail (r, TR_CONFIG_ERROR_INVALID, g, "barrier_method",
                 "'%s' is also listed in rpcs; the barrier must be a method no endpoint implements",
                 s->barrier_method);
  return TRUE;
}

TrServiceConfig *
tr_config_load_service (const char *path, const char *name, GError **error)
{
  g_autoptr (TrServiceConfig) service = NULL;
  g_autoptr (GKeyFile) keyfile = NULL;
  g_auto (GStrv) groups = NULL;
  Reader r = { path, NULL, error };

  g_return_val_if_fail (path != NULL && name != NULL, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  if ((keyfile = read_keyfile (&r)) == NULL)
    return NULL;
  r.keyfile = keyfile;
  service = g_new0 (TrServiceConfig, 1);
  service->name = g_strdup (name);
  service->path = g_strdup (path);
  service->endpoints = g_ptr_array_new_with_free_func (tr_config__endpoint_free);
  if (!g_key_file_has_group (keyfile, GROUP_SERVICE)) {
    fail (&r, TR_CONFIG_ERROR_INVALID, GROUP_SERVICE, NULL, "group missing");
    return NULL;
  }
  if (!read_service_group (&r, service))
    return NULL;
  groups = g_key_file_get_groups (keyfile, NULL);
  for (guint i = 0; groups[i] != NULL; i++) {
    const char *group = groups[i];
    if (strcmp (group, GROUP_SERVICE) == 0)
      continue;
    if (!g_str_has_prefix (group, TR_CONFIG__ENDPOINT_PREFIX)) {
      fail (&r, TR_CONFIG_ERROR_INVALID, group, NULL,
            "unknown group (expected [service] or [endpoint ID])");
      return NULL;
    }
    if (!read_endpoint (&r, group, group + strlen (TR_CONFIG__ENDPOINT_PREFIX), service))
      return NULL;
  }
  return g_steal_pointer (&service);
}

/* ---- router.conf ---- */

void
tr_config_free (TrConfig *config)
{
  if (config == NULL)
    return;
  g_free (config->path);
  g_free (config->dir);
  g_free (config->server_id);
  g_free (config->listen_host);
  g_free (config->admin_host);
  g_free (config->metrics_host);
  g_free (config->admin_token_file);
  g_free (config->data_dir);
  g_free (config->replication_host);
  g_clear_pointer (&config->services, g_ptr_array_unref);
  g_clear_pointer (&config->replicas, g_ptr_array_unref);
  g_free (config);
}

/* 127.0.0.0/8, ::1 and "localhost": where an admin port needs no token. */
static gboolean
is_loopback (const char *host)
{
  return g_str_has_prefix (host, "127.") || strcmp (host, "::1") == 0 || strcmp (host, "localhost") == 0;
}

/* "host:port", "[v6]:port". */
static char *
format_hostport (const char *host, guint16 port)
{
  if (strchr (host, ':') != NULL)
    return g_strdup_printf ("[%s]:%u", host, port);
  return g_strdup_printf ("%s:%u", host, port);
}

/* Whether a connection to @host:@port reaches the socket listening on
 * @listen_host:@listen_port: the same host text, or a loopback name for a
 * loopback or wildcard listen address.  (A name that resolves to this
 * machine's other addresses is not caught: no lookups at load time.) */
static gboolean
reaches (const char *host, guint16 port, const char *listen_host, guint16 listen_port)
{
  gboolean wildcard = strcmp (listen_host, "0.0.0.0") == 0 || strcmp (listen_host, "::") == 0;

  if (port != listen_port)
    return FALSE;
  if (g_ascii_strcasecmp (host, listen_host) == 0)
    return TRUE;
  return (wildcard || is_loopback (listen_host)) && is_loopback (host);
}

/* An endpoint at the router's own listen address would get every RPC back
 * as a producer call, stored and pushed again without end; one at the
 * admin address can only fail.  Both are start-up errors. */
static gboolean
check_endpoints_are_not_self (const Reader *r, const TrConfig *c, const TrServiceConfig *service)
{
  for (guint i = 0; i < service->endpoints->len; i++) {
    const TrEndpointConfig *e = g_ptr_array_index (service->endpoints, i);
    const char *what = reaches (e->host, e->port, c->listen_host, c->listen_port) ? "listen"
                       : reaches (e->host, e->port, c->admin_host, c->admin_port) ? "admin_listen"
                                                                                    : NULL;
    if (what != NULL) {
      g_autofree char *at = format_hostport (e->host, e->port);
      g_set_error (r->error, TR_CONFIG_ERROR, TR_CONFIG_ERROR_INVALID,
                   "%s: [endpoint %s] host, port: %s is this router's own %s address (in %s)%s", service->path,
                   e->id, at, what, r->path,
                   strcmp (what, "listen") == 0 ? ": every RPC would be routed back into the router without end"
                                                : ": the admin service answers no RPC");
      return FALSE;
    }
  }
  return TRUE;
}

/* The token file must exist and hold a non-empty token (read again by the
 * admin server at start; its content never goes into TrConfig). */
static gboolean
check_token_file (const Reader *r, const char *path)
{
  g_autoptr (GError) local_error = NULL;
  g_autofree char *text = NULL;

  if (!g_file_get_contents (path, &text, NULL, &local_error))
    return fail (r, TR_CONFIG_ERROR_IO, GROUP_ROUTER, "admin_token_file", "%s", local_error->message);
  if (g_strstrip (text)[0] == '\0')
    return fail (r, TR_CONFIG_ERROR_INVALID, GROUP_ROUTER, "admin_token_file", "'%s' holds no token", path);
  return TRUE;
}

static gboolean
read_router_values (const Reader *r, TrConfig *c)
{
  const char *g = GROUP_ROUTER;
  int type = 0, sync = 0;
  guint64 frame = 0;

  if (!check_keys (r, g, router_keys) ||
      !get_string (r, g, "server_id", "node1", &c->server_id) ||
      !get_enum (r, g, "server_type", server_type_names, TR_SERVER_MASTER, &type) ||
      !get_hostport (r, g, "listen", "127.0.0.1:9090", &c->listen_host, &c->listen_port) ||
      !get_hostport (r, g, "admin_listen", "127.0.0.1:9091", &c->admin_host, &c->admin_port) ||
      !get_string (r, g, "data_dir", "./data", &c->data_dir) ||
      !get_enum (r, g, "sync_mode", sync_mode_names, TR_SYNC_ALWAYS, &sync) ||
      !get_uint (r, g, "sync_interval_ms", 10, 1, 3600000, &c->sync_interval_ms) ||
      !get_size (r, g, "rpc_cache_size", 64 << 20, 0, G_MAXINT64, &c->rpc_cache_size) ||
      !get_size (r, g, "group_file_size", G_GUINT64_CONSTANT (2) << 30, 64 << 10, G_MAXINT64,
                 &c->group_file_size) ||
      !get_size (r, g, "max_frame_size", TR_FRAME_DEFAULT_MAX_SIZE, 64, G_MAXINT32, &frame) ||
      !get_uint (r, g, "state_flush_ms", 100, 0, 3600000, &c->state_flush_ms) ||
      !get_uint (r, g, "max_connections", 1024, 1, 1000000, &c->max_connections) ||
      !get_string (r, g, "admin_token_file", "", &c->admin_token_file) ||
      !get_bool (r, g, "admin_allow_insecure", FALSE, &c->admin_allow_insecure) ||
      !get_size_or_percent (r, g, "min_free_space", TR_CONFIG_DEFAULT_MIN_FREE_SPACE, &c->min_free_bytes,
                            &c->min_free_percent))
    return FALSE;
  /* Off unless set: a metrics port is a new listening socket, which an
   * upgrade must not open on its own. */
  if (g_key_file_has_key (r->keyfile, g, "metrics_listen", NULL)
      && !get_hostport (r, g, "metrics_listen", NULL, &c->metrics_host, &c->metrics_port))
    return FALSE;
  if (g_key_file_has_key (r->keyfile, g, "replication_listen", NULL)
      && !get_hostport (r, g, "replication_listen", NULL, &c->replication_host, &c->replication_port))
    return FALSE;
  c->server_type = (TrServerType) type;
  c->sync_mode = (TrSyncMode) sync;
  c->max_frame_size = (guint32) frame;
  if (!valid_id (c->server_id, strlen (c->server_id)))
    return fail (r, TR_CONFIG_ERROR_INVALID, g, "server_id",
                 "'%s' is not a valid id ([A-Za-z0-9_.-], 1..64 chars)", c->server_id);
  if (c->server_type == TR_SERVER_REPLY)
    return fail (r, TR_CONFIG_ERROR_INVALID, g, "server_type",
                 "server_type %s is not supported yet (MASTER or BACKUP)", server_type_names[type]);
  if (c->server_type == TR_SERVER_BACKUP && c->replication_host == NULL)
    return fail (r, TR_CONFIG_ERROR_INVALID, g, "replication_listen",
                 "missing: a BACKUP node receives its master's stream on replication_listen = host:port "
                 "(a port of its own, not listen)");
  if (c->server_type == TR_SERVER_MASTER && c->replication_host != NULL)
    return fail (r, TR_CONFIG_ERROR_INVALID, g, "replication_listen",
                 "only a BACKUP node receives a replication stream; a MASTER sends it to the endpoints "
                 "of a service with service_type = BACKUP (remove replication_listen)");
  if (c->replication_host != NULL
      && (reaches (c->replication_host, c->replication_port, c->listen_host, c->listen_port)
          || reaches (c->replication_host, c->replication_port, c->admin_host, c->admin_port)))
    return fail (r, TR_CONFIG_ERROR_INVALID, g, "replication_listen",
                 "'%s:%u' is also listen or admin_listen: the replication stream needs a port of its own",
                 c->replication_host, c->replication_port);
  if (c->admin_token_file[0] == '\0')
    g_clear_pointer (&c->admin_token_file, g_free);
  if (c->admin_token_file == NULL && !c->admin_allow_insecure && !is_loopback (c->admin_host))
    return fail (r, TR_CONFIG_ERROR_INVALID, g, "admin_listen",
                 "'%s' is not a loopback address and no admin_token_file is set: anyone who can reach it "
                 "could stop delivery; set admin_token_file, or admin_allow_insecure = true",
                 c->admin_host);
  /* The default follows group_file_size: a small part size (tests, small
   * disks) must not make start-up fail over a key the user never set. */
  c->max_frame_size_is_default = !g_key_file_has_key (r->keyfile, g, "max_frame_size", NULL);
  if (c->max_frame_size_is_default && frame > c->group_file_size / 2) {
    frame = c->group_file_size / 2;
    c->max_frame_size = (guint32) frame;
  }
  if (frame > c->group_file_size / 2)
    return fail (r, TR_CONFIG_ERROR_INVALID, g, "max_frame_size",
                 "%" G_GUINT64_FORMAT " is more than half of group_file_size (%" G_GUINT64_FORMAT ")",
                 frame, c->group_file_size);
  return TRUE;
}

/* Loads every service listed in [router] services from services/NAME.conf
 * next to router.conf. */
static gboolean
read_services (const Reader *r, TrConfig *c)
{
  g_autoptr (GPtrArray) names = NULL;
  g_autofree char *conf_dir = g_path_get_dirname (r->path);

  if (!get_list (r, GROUP_ROUTER, "services", valid_id,
                 "service name ([A-Za-z0-9_.-], 1..64 chars)", &names))
    return FALSE;
  for (guint i = 0; i < names->len; i++) {
    const char *name = g_ptr_array_index (names, i);
    g_autofree char *file = g_strconcat (name, ".conf", NULL);
    g_autofree char *path = g_build_filename (conf_dir, "services", file, NULL);
    TrServiceConfig *service = tr_config_load_service (path, name, r->error);
    if (service == NULL) {
      if (r->error != NULL && g_error_matches (*r->error, TR_CONFIG_ERROR, TR_CONFIG_ERROR_IO))
        g_prefix_error (r->error, "%s: [%s] services: service '%s': ", r->path, GROUP_ROUTER, name);
      return FALSE;
    }
    if (!check_endpoints_are_not_self (r, c, service)) {
      tr_service_config_free (service);
      return FALSE;
    }
    if (service->service_type == TR_SERVICE_BACKUP && c->server_type != TR_SERVER_MASTER) {
      g_set_error (r->error, TR_CONFIG_ERROR, TR_CONFIG_ERROR_INVALID,
                   "%s: [service] service_type: BACKUP: only a MASTER feeds replicas; this node is a %s "
                   "(in %s); chained replication is not supported", service->path,
                   server_type_names[c->server_type], r->path);
      tr_service_config_free (service);
      return FALSE;
    }
    /* Replication links live apart from the COMMON services: push, ingress
     * and the store never see them (a role is data, not a branch). */
    g_ptr_array_add (service->service_type == TR_SERVICE_BACKUP ? c->replicas : c->services, service);
  }
  return TRUE;
}

typedef enum {
  LOAD_ALL,         /* router.conf and every service file */
  LOAD_ROUTER_ONLY, /* router.conf alone (tr-admin) */
} LoadScope;

static TrConfig *
load (const char *router_conf_path, LoadScope scope, GError **error)
{
  g_autoptr (TrConfig) config = NULL;
  g_autoptr (GKeyFile) keyfile = NULL;
  g_auto (GStrv) groups = NULL;
  g_autofree char *dir = NULL;
  Reader r = { router_conf_path, NULL, error };

  g_return_val_if_fail (router_conf_path != NULL, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  if ((keyfile = read_keyfile (&r)) == NULL)
    return NULL;
  r.keyfile = keyfile;
  groups = g_key_file_get_groups (keyfile, NULL);
  for (guint i = 0; groups[i] != NULL; i++) {
    if (strcmp (groups[i], GROUP_ROUTER) != 0) {
      fail (&r, TR_CONFIG_ERROR_INVALID, groups[i], NULL, "unknown group (expected [router])");
      return NULL;
    }
  }
  if (!g_key_file_has_group (keyfile, GROUP_ROUTER)) {
    fail (&r, TR_CONFIG_ERROR_INVALID, GROUP_ROUTER, NULL, "group missing");
    return NULL;
  }
  config = g_new0 (TrConfig, 1);
  config->path = g_strdup (router_conf_path);
  dir = g_path_get_dirname (router_conf_path);
  config->dir = g_canonicalize_filename (dir, NULL);
  config->services = g_ptr_array_new_with_free_func ((GDestroyNotify) tr_service_config_free);
  config->replicas = g_ptr_array_new_with_free_func ((GDestroyNotify) tr_service_config_free);
  if (!read_router_values (&r, config))
    return NULL;
  /* data_dir is relative to the directory of router.conf, not the cwd. */
  {
    char *abs = g_canonicalize_filename (config->data_dir, config->dir);
    g_free (config->data_dir);
    config->data_dir = abs;
  }
  if (config->admin_token_file != NULL) {
    char *abs = g_canonicalize_filename (config->admin_token_file, config->dir);
    g_free (config->admin_token_file);
    config->admin_token_file = abs;
    if (!check_token_file (&r, config->admin_token_file))
      return NULL;
  }
  if (scope == LOAD_ALL && !read_services (&r, config))
    return NULL;
  return g_steal_pointer (&config);
}

TrConfig *
tr_config_load (const char *router_conf_path, GError **error)
{
  return load (router_conf_path, LOAD_ALL, error);
}

TrConfig *
tr_config_load_router (const char *router_conf_path, GError **error)
{
  return load (router_conf_path, LOAD_ROUTER_ONLY, error);
}

TrServiceConfig *
tr_config_lookup_service (const TrConfig *config, const char *name)
{
  g_return_val_if_fail (config != NULL && name != NULL, NULL);

  for (guint i = 0; i < config->services->len; i++) {
    TrServiceConfig *service = g_ptr_array_index (config->services, i);
    if (strcmp (service->name, name) == 0)
      return service;
  }
  return NULL;
}

TrEndpointConfig *
tr_config_lookup_endpoint (const TrServiceConfig *service, const char *id)
{
  g_return_val_if_fail (service != NULL && id != NULL, NULL);

  for (guint i = 0; i < service->endpoints->len; i++) {
    TrEndpointConfig *endpoint = g_ptr_array_index (service->endpoints, i);
    if (strcmp (endpoint->id, id) == 0)
      return endpoint;
  }
  return NULL;
}

/* ---- effective settings ---- */

/* A size with the largest exact K/M/G suffix. */
static char *
format_size (guint64 n)
{
  static const char suffixes[] = "GMK";

  for (guint i = 0; n != 0 && i < 3; i++) {
    guint shift = (guint) (30 - 10 * i);
    if (n % (G_GUINT64_CONSTANT (1) << shift) == 0)
      return g_strdup_printf ("%" G_GUINT64_FORMAT "%c", n >> shift, suffixes[i]);
  }
  return g_strdup_printf ("%" G_GUINT64_FORMAT, n);
}

/* ---- comparing two configurations ---- */

static void
key_change_free (gpointer data)
{
  TrConfigKeyChange *change = data;

  g_free (change->running);
  g_free (change->loaded);
  g_free (change);
}

/* Adds a change of @key; takes both (formatted) values. */
static void
add_key_change (GPtrArray *changes, const char *key, char *running, char *loaded)
{
  TrConfigKeyChange *change = g_new0 (TrConfigKeyChange, 1);

  change->key = key;
  change->running = running;
  change->loaded = loaded;
  g_ptr_array_add (changes, change);
}

static void
diff_str (GPtrArray *changes, const char *key, const char *running, const char *loaded)
{
  if (g_strcmp0 (running, loaded) != 0)
    add_key_change (changes, key, g_strdup (running != NULL ? running : "not set"),
                    g_strdup (loaded != NULL ? loaded : "not set"));
}

/* An enum or boolean, compared as a number, shown by its word in @names. */
static void
diff_choice (GPtrArray *changes, const char *key, int running, int loaded, const char *const *names)
{
  if (running != loaded)
    add_key_change (changes, key, g_strdup (names[running]), g_strdup (names[loaded]));
}

static void
diff_u64 (GPtrArray *changes, const char *key, guint64 running, guint64 loaded, gboolean is_size)
{
  if (running != loaded)
    add_key_change (changes, key,
                    is_size ? format_size (running) : g_strdup_printf ("%" G_GUINT64_FORMAT, running),
                    is_size ? format_size (loaded) : g_strdup_printf ("%" G_GUINT64_FORMAT, loaded));
}

static void
diff_hostport (GPtrArray *changes, const char *key, const char *running_host, guint16 running_port,
               const char *loaded_host, guint16 loaded_port)
{
  if (strcmp (running_host, loaded_host) != 0 || running_port != loaded_port)
    add_key_change (changes, key, format_hostport (running_host, running_port),
                    format_hostport (loaded_host, loaded_port));
}

static char *
join_service_names (const GPtrArray *services)
{
  GString *out = g_string_new (NULL);

  for (guint i = 0; i < services->len; i++)
    g_string_append_printf (out, "%s%s", i > 0 ? ", " : "",
                            ((const TrServiceConfig *) g_ptr_array_index (services, i))->name);
  return g_string_free (out, FALSE);
}

/* A host:port that may be unset (NULL host): shown as "not set". */
static void
diff_optional_hostport (GPtrArray *changes, const char *key, const char *running_host, guint16 running_port,
                        const char *loaded_host, guint16 loaded_port)
{
  if (g_strcmp0 (running_host, loaded_host) != 0 || running_port != loaded_port)
    add_key_change (changes, key,
                    running_host != NULL ? format_hostport (running_host, running_port) : g_strdup ("not set"),
                    loaded_host != NULL ? format_hostport (loaded_host, loaded_port) : g_strdup ("not set"));
}

/* Every key of router_keys is compared below, one line each: a new key
 * must be added there too (the count is checked at build time). */
G_STATIC_ASSERT (G_N_ELEMENTS (router_keys) == 18 + 1);

GPtrArray *
tr_config_diff_router (const TrConfig *a, const TrConfig *b)
{
  GPtrArray *changes = g_ptr_array_new_with_free_func (key_change_free);
  g_autofree char *a_services = NULL;
  g_autofree char *b_services = NULL;

  g_return_val_if_fail (a != NULL && b != NULL, changes);

  diff_str (changes, "server_id", a->server_id, b->server_id);
  diff_choice (changes, "server_type", a->server_type, b->server_type, server_type_names);
  diff_hostport (changes, "listen", a->listen_host, a->listen_port, b->listen_host, b->listen_port);
  diff_hostport (changes, "admin_listen", a->admin_host, a->admin_port, b->admin_host, b->admin_port);
  diff_optional_hostport (changes, "metrics_listen", a->metrics_host, a->metrics_port, b->metrics_host,
                          b->metrics_port);
  diff_str (changes, "admin_token_file", a->admin_token_file, b->admin_token_file);
  diff_choice (changes, "admin_allow_insecure", a->admin_allow_insecure != FALSE, b->admin_allow_insecure != FALSE,
               bool_names);
  diff_str (changes, "data_dir", a->data_dir, b->data_dir);
  diff_choice (changes, "sync_mode", a->sync_mode, b->sync_mode, sync_mode_names);
  diff_u64 (changes, "sync_interval_ms", a->sync_interval_ms, b->sync_interval_ms, FALSE);
  diff_u64 (changes, "rpc_cache_size", a->rpc_cache_size, b->rpc_cache_size, TRUE);
  diff_u64 (changes, "group_file_size", a->group_file_size, b->group_file_size, TRUE);
  diff_u64 (changes, "max_frame_size", a->max_frame_size, b->max_frame_size, TRUE);
  diff_u64 (changes, "state_flush_ms", a->state_flush_ms, b->state_flush_ms, FALSE);
  diff_u64 (changes, "max_connections", a->max_connections, b->max_connections, FALSE);
  if (a->min_free_bytes != b->min_free_bytes || a->min_free_percent != b->min_free_percent)
    add_key_change (changes, "min_free_space", tr_config_format_min_free_space (a),
                    tr_config_format_min_free_space (b));
  a_services = join_service_names (a->services);
  b_services = join_service_names (b->services);
  diff_optional_hostport (changes, "replication_listen", a->replication_host, a->replication_port,
                          b->replication_host, b->replication_port);
  diff_str (changes, "services", a_services, b_services);
  /* Replication links are built once at start-up (tr_repl_source.h): a
   * change of them is reported under its own name, which a reload refuses
   * as needing a restart. */
  g_free (a_services);
  g_free (b_services);
  a_services = join_service_names (a->replicas);
  b_services = join_service_names (b->replicas);
  diff_str (changes, "services (service_type = BACKUP)", a_services, b_services);
  return changes;
}

static void
append_router (GString *out, const TrConfig *c)
{
  g_autofree char *listen = format_hostport (c->listen_host, c->listen_port);
  g_autofree char *admin = format_hostport (c->admin_host, c->admin_port);
  g_autofree char *cache = format_size (c->rpc_cache_size);
  g_autofree char *part = format_size (c->group_file_size);
  g_autofree char *frame = format_size (c->max_frame_size);
  g_autofree char *default_frame = format_size (TR_FRAME_DEFAULT_MAX_SIZE);

  g_string_append_printf (out, "# %s\n[router]\n", c->path);
  g_string_append_printf (out, "server_id = %s\nserver_type = %s\n", c->server_id,
                          server_type_names[c->server_type]);
  g_string_append_printf (out, "listen = %s\nadmin_listen = %s\n", listen, admin);
  /* An empty value is a load error: an unset token file stays a comment,
   * so the output loads back. */
  if (c->admin_token_file != NULL)
    g_string_append_printf (out, "admin_token_file = %s\n", c->admin_token_file);
  else
    g_string_append (out, "# admin_token_file: not set, the admin port takes no token\n");
  g_string_append_printf (out, "admin_allow_insecure = %s\n", c->admin_allow_insecure ? "true" : "false");
  if (c->metrics_host != NULL) {
    g_autofree char *metrics = format_hostport (c->metrics_host, c->metrics_port);
    g_string_append_printf (out, "metrics_listen = %s\n", metrics);
  } else {
    g_string_append (out, "# metrics_listen: not set, no /metrics endpoint\n");
  }
  g_string_append_printf (out, "data_dir = %s\nsync_mode = %s\nsync_interval_ms = %u\n",
                          c->data_dir, sync_mode_names[c->sync_mode], c->sync_interval_ms);
  g_string_append_printf (out, "rpc_cache_size = %s\ngroup_file_size = %s\n", cache, part);
  /* A default stays a comment, as admin_token_file: written as a key it
   * would no longer follow group_file_size when the output is loaded back. */
  if (c->max_frame_size_is_default)
    g_string_append_printf (out, "# max_frame_size: not set, so %s (the default %s, or half of group_file_size "
                            "when that is smaller)\n", frame, default_frame);
  else
    g_string_append_printf (out, "max_frame_size = %s\n", frame);
  g_string_append_printf (out, "state_flush_ms = %u\nmax_connections = %u\n", c->state_flush_ms,
                          c->max_connections);
  {
    g_autofree char *min_free = tr_config_format_min_free_space (c);
    g_string_append_printf (out, "min_free_space = %s\n", min_free);
  }
  if (c->replication_host != NULL) {
    g_autofree char *replication = format_hostport (c->replication_host, c->replication_port);
    g_string_append_printf (out, "replication_listen = %s\n", replication);
  }
  g_string_append (out, "services = ");
  for (guint i = 0; i < c->services->len; i++) {
    const TrServiceConfig *s = g_ptr_array_index (c->services, i);
    g_string_append_printf (out, "%s%s", i > 0 ? ", " : "", s->name);
  }
  for (guint i = 0; i < c->replicas->len; i++) {
    const TrServiceConfig *s = g_ptr_array_index (c->replicas, i);
    g_string_append_printf (out, "%s%s", i > 0 || c->services->len > 0 ? ", " : "", s->name);
  }
  g_string_append (out, "\n");
}

static void
append_service (GString *out, const TrServiceConfig *s)
{
  g_string_append_printf (out, "\n# %s\n[service]\nservice_type = %s\n", s->path,
                          service_type_names[s->service_type]);
  if (s->service_type != TR_SERVICE_BACKUP) {
    g_string_append (out, "rpcs = ");
    for (guint i = 0; i < s->rpcs->len; i++)
      g_string_append_printf (out, "%s%s", i > 0 ? ", " : "", (char *) g_ptr_array_index (s->rpcs, i));
    g_string_append (out, "\n");
  }
  g_string_append_printf (out, "max_inflight = %u\non_failure = %s\nmax_retries = %u\n",
                          s->max_inflight, tr_config_on_failure_to_string (s->on_failure), s->max_retries);
  g_string_append_printf (out, "retry_backoff_ms = %u\nretry_backoff_max_ms = %u\n",
                          s->retry_backoff_ms, s->retry_backoff_max_ms);
  g_string_append_printf (out, "connect_timeout_ms = %u\nsocket_timeout_ms = %u\n",
                          s->connect_timeout_ms, s->socket_timeout_ms);
  g_string_append_printf (out, "oneway_barrier = %s\nbarrier_method = %s\n",
                          s->oneway_barrier ? "true" : "false", s->barrier_method);
  {
    g_autofree char *bytes = format_size (s->max_backlog_bytes);
    g_autofree char *age = tr_config_format_duration (s->max_backlog_age_s);
    g_string_append_printf (out, "max_backlog_bytes = %s\nmax_backlog_age = %s\n", bytes, age);
  }
  for (guint i = 0; i < s->endpoints->len; i++) {
    const TrEndpointConfig *e = g_ptr_array_index (s->endpoints, i);
    g_string_append_printf (out, "\n[endpoint %s]\nhost = %s\nport = %u\n", e->id, e->host,
                            e->port);
    g_string_append_printf (out, "max_connection = %u\nstop_send = %s\nstart = %s\n", e->max_connection,
                            e->stop_send ? "true" : "false", tr_config_start_to_string (e->start));
  }
}

char *
tr_config_format_duration (guint64 seconds)
{
  static const struct {
    guint64 unit;
    char suffix;
  } units[] = { { 86400, 'd' }, { 3600, 'h' }, { 60, 'm' } };

  if (seconds == 0)
    return g_strdup ("0");
  for (guint i = 0; i < G_N_ELEMENTS (units); i++)
    if (seconds % units[i].unit == 0)
      return g_strdup_printf ("%" G_GUINT64_FORMAT "%c", seconds / units[i].unit, units[i].suffix);
  return g_strdup_printf ("%" G_GUINT64_FORMAT "s", seconds);
}

char *
tr_config_format_min_free_space (const TrConfig *config)
{
  if (config->min_free_percent > 0)
    return g_strdup_printf ("%u%%", config->min_free_percent);
  return format_size (config->min_free_bytes);
}

const char *
tr_config_on_failure_to_string (TrOnFailure on_failure)
{
  return on_failure_names[on_failure];
}

const char *
tr_config_start_to_string (TrEndpointStart start)
{
  return start_names[start];
}

char *
tr_config_to_string (const TrConfig *config)
{
  GString *out = g_string_new (NULL);

  g_return_val_if_fail (config != NULL, NULL);

  append_router (out, config);
  for (guint i = 0; i < config->services->len; i++)
    append_service (out, g_ptr_array_index (config->services, i));
  for (guint i = 0; i < config->replicas->len; i++)
    append_service (out, g_ptr_array_index (config->replicas, i));
  return g_string_free (out, FALSE);
}
