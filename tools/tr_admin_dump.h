/* tr_admin_dump.h - how tr-admin dump shows one stored message (decoded
 * arguments, names from an IDL, hex).  Part of the tr-admin program only;
 * runs on its one thread. */
#pragma once

#include "tr_thrift_idl.h"

#include <glib.h>

G_BEGIN_DECLS

typedef enum {
  TR_ADMIN_DUMP_JSON = 1 << 0, /* one JSON document instead of text */
  TR_ADMIN_DUMP_HEX = 1 << 1,  /* text: add a hex dump of the whole message */
} TrAdminDumpFlags;

/* tr_admin_dump_print:
 * @service: (nullable): the service of @seqid when dumped by SERVICE SEQID
 * @message: (transfer none): the stored Thrift message (no frame length)
 * @idl: (nullable): names for the arguments (tr-admin dump --idl)
 *
 * Prints @message on stdout: ids, name, type, size and the decoded
 * arguments; a message that does not decode is shown with the reason and
 * its hex dump.  Never fails: what cannot be decoded is said so. */
void tr_admin_dump_print (const char *service, gint64 seqid, gint64 rpc_id, const GByteArray *message,
                          const TrThriftIdl *idl, TrAdminDumpFlags flags);

G_END_DECLS
