/* tr_config_edit.c - configurations changed after loading: a deep copy for
 * a new owner (tr_config_copy; ownership rules in tr_config.h) and the
 * one-line edit of a service file that tr-admin stop-send / start-send
 * write (tr_config_edit_endpoint_key).  The loader is tr_config.c.
 * Pure functions on their arguments: any thread.
 */
#include "tr_config.h"
#include "tr_config_private.h"

#include <string.h>

/* ---- editing one key of a service file in place ---- */

/* The group name of a "[name]" line (surrounding blanks allowed), or NULL. */
static char *
line_group (const char *line, gsize len)
{
  g_autofree char *copy = g_strndup (line, len);
  char *stripped = g_strstrip (copy);
  gsize n = strlen (stripped);

  if (n < 2 || stripped[0] != '[' || stripped[n - 1] != ']')
    return NULL;
  return g_strndup (stripped + 1, n - 2);
}

/* Whether the line is "@key = ..." (blanks around the key allowed). */
static gboolean
line_has_key (const char *line, gsize len, const char *key)
{
  const char *end = line + len;
  gsize key_len = strlen (key);

  while (line < end && (*line == ' ' || *line == '\t'))
    line++;
  if ((gsize) (end - line) < key_len || memcmp (line, key, key_len) != 0)
    return FALSE;
  line += key_len;
  while (line < end && (*line == ' ' || *line == '\t'))
    line++;
  return line < end && *line == '=';
}

char *
tr_config_edit_endpoint_key (const char *text, gsize len, const char *endpoint_id, const char *key,
                             const char *value, GError **error)
{
  g_autofree char *wanted = NULL;
  GString *out;
  const char *end = text + len, *line = text;
  const char *last_key_end = NULL; /* after the last key line of the group */
  gboolean in_group = FALSE;

  g_return_val_if_fail ((text != NULL || len == 0) && endpoint_id != NULL && key != NULL && value != NULL, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  wanted = g_strconcat (TR_CONFIG__ENDPOINT_PREFIX, endpoint_id, NULL);
  for (; line < end; ) {
    const char *newline = memchr (line, '\n', (gsize) (end - line));
    const char *next = newline != NULL ? newline + 1 : end;
    gsize line_len = (gsize) ((newline != NULL ? newline : end) - line);
    g_autofree char *group = line_group (line, line_len);
    const char *content = line;

    while (content < line + line_len && (*content == ' ' || *content == '\t'))
      content++;
    if (group != NULL) {
      if (in_group)
        break;
      in_group = strcmp (group, wanted) == 0;
      if (in_group)
        last_key_end = next;
    } else if (in_group && line_has_key (line, line_len, key)) {
      /* Keep "key = " as written and the line ending; replace the value. */
      const char *value_start = memchr (line, '=', line_len) + 1;
      const char *value_end = line + line_len;
      while (value_start < value_end && (*value_start == ' ' || *value_start == '\t'))
        value_start++;
      if (value_end > value_start && value_end[-1] == '\r')
        value_end--;
      out = g_string_new_len (text, value_start - text);
      g_string_append (out, value);
      g_string_append_len (out, value_end, end - value_end);
      return g_string_free (out, FALSE);
    } else if (in_group && content < line + line_len && *content != '#' && *content != '\r') {
      last_key_end = next;
    }
    line = next;
  }
  if (last_key_end == NULL) {
    g_set_error (error, TR_CONFIG_ERROR, TR_CONFIG_ERROR_INVALID, "[%s]: group missing", wanted);
    return NULL;
  }
  out = g_string_new_len (text, last_key_end - text);
  if (out->len > 0 && out->str[out->len - 1] != '\n')
    g_string_append_c (out, '\n');
  g_string_append_printf (out, "%s = %s\n", key, value);
  g_string_append_len (out, last_key_end, end - last_key_end);
  return g_string_free (out, FALSE);
}

/* ---- copies ---- */

static GPtrArray *
strings_copy (const GPtrArray *strings)
{
  GPtrArray *out = g_ptr_array_new_full (strings->len, g_free);

  for (guint i = 0; i < strings->len; i++)
    g_ptr_array_add (out, g_strdup (g_ptr_array_index (strings, i)));
  return out;
}

static TrServiceConfig *
service_config_copy (const TrServiceConfig *service)
{
  TrServiceConfig *out = g_memdup2 (service, sizeof *service);

  out->name = g_strdup (service->name);
  out->path = g_strdup (service->path);
  out->rpcs = strings_copy (service->rpcs);
  out->barrier_method = g_strdup (service->barrier_method);
  out->endpoints = g_ptr_array_new_full (service->endpoints->len, tr_config__endpoint_free);
  for (guint i = 0; i < service->endpoints->len; i++) {
    const TrEndpointConfig *endpoint = g_ptr_array_index (service->endpoints, i);
    TrEndpointConfig *copy = g_memdup2 (endpoint, sizeof *endpoint);
    copy->id = g_strdup (endpoint->id);
    copy->host = g_strdup (endpoint->host);
    g_ptr_array_add (out->endpoints, copy);
  }
  return out;
}

TrConfig *
tr_config_copy (const TrConfig *config)
{
  TrConfig *out;

  g_return_val_if_fail (config != NULL, NULL);

  /* Plain values come with the struct; every pointer is duplicated below. */
  out = g_memdup2 (config, sizeof *config);
  out->path = g_strdup (config->path);
  out->dir = g_strdup (config->dir);
  out->server_id = g_strdup (config->server_id);
  out->listen_host = g_strdup (config->listen_host);
  out->admin_host = g_strdup (config->admin_host);
  out->admin_token_file = g_strdup (config->admin_token_file);
  out->metrics_host = g_strdup (config->metrics_host);
  out->data_dir = g_strdup (config->data_dir);
  out->replication_host = g_strdup (config->replication_host);
  out->services = g_ptr_array_new_full (config->services->len, (GDestroyNotify) tr_service_config_free);
  for (guint i = 0; i < config->services->len; i++)
    g_ptr_array_add (out->services, service_config_copy (g_ptr_array_index (config->services, i)));
  out->replicas = g_ptr_array_new_full (config->replicas->len, (GDestroyNotify) tr_service_config_free);
  for (guint i = 0; i < config->replicas->len; i++)
    g_ptr_array_add (out->replicas, service_config_copy (g_ptr_array_index (config->replicas, i)));
  return out;
}
