/* tr_config_private.h - shared between the files of the configuration
 * module: tr_config.c (loading, validation, comparison, --check text) and
 * tr_config_edit.c (copies, in-place edits).  Nothing outside
 * router/tr_config*.c may include this header.
 */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* The prefix of an endpoint's group name: "[endpoint ID]". */
#define TR_CONFIG__ENDPOINT_PREFIX "endpoint "

/* Frees a TrEndpointConfig (the free function of ->endpoints). */
void tr_config__endpoint_free (gpointer data);

G_END_DECLS
