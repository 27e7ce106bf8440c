/* tr_thrift_idl.h - a small reader of Thrift IDL files, for naming the
 * fields of a stored RPC's arguments (tr-admin dump --idl FILE).
 *
 * It reads what thriftrouter's own IDLs use and little more: comments
 * (slash-star, //, #), namespace, const with a scalar value, typedef, enum,
 * struct / union / exception (fields with explicit ids, required /
 * optional, scalar defaults), service with [oneway] methods and throws,
 * base types, list / set / map and named types.  Anything else (include,
 * cpp_include, service extends, annotations in parentheses, container
 * constants or defaults, fields without an id, senum) is refused with an
 * error naming the file and line, never skipped silently: a name shown
 * for a field must come from a declaration that was understood.
 *
 * Errors: G_IO_ERROR_INVALID_DATA (not Thrift IDL as this reader knows
 * it: syntax, an undefined or duplicate name), G_IO_ERROR_NOT_SUPPORTED
 * (a construct it does not read), G_FILE_ERROR (reading the file).
 * Messages start with "FILE:LINE: ".
 *
 * No shared state; a TrThriftIdl is read-only once parsed: any thread.
 */
#pragma once

#include "tr_frame.h"

#include <glib.h>

G_BEGIN_DECLS

typedef struct _TrThriftIdl TrThriftIdl;
typedef struct _TrThriftIdlType TrThriftIdlType;
typedef struct _TrThriftIdlStruct TrThriftIdlStruct;

/* A type as declared; typedefs are resolved (the alias's target). */
struct _TrThriftIdlType {
  TrThriftType wire;             /* what it is on the wire (an enum is an i32) */
  char *name;                    /* as written: "i32", "binary", "list<Book>", "Book" */
  TrThriftIdlType *key;          /* map: the key type (nullable otherwise) */
  TrThriftIdlType *element;      /* list / set: the element; map: the value (nullable otherwise) */
  const TrThriftIdlStruct *fields; /* a struct / union / exception type: its declaration (nullable) */
  GHashTable *enum_names;        /* an enum: value (GINT_TO_POINTER) -> name (nullable) */
};

typedef struct {
  gint16 id;
  char *name;
  TrThriftIdlType *type;
} TrThriftIdlField;

/* A struct, union or exception; also a method's argument list. */
struct _TrThriftIdlStruct {
  char *name;                    /* "Book"; for arguments "Service.method" */
  GPtrArray *fields;             /* (element-type TrThriftIdlField) in declaration order */
};

/* tr_thrift_idl_load:
 * Reads and parses the IDL file @path.
 * Returns: (transfer full) (nullable): NULL with @error (see above). */
TrThriftIdl *tr_thrift_idl_load (const char *path, GError **error);

/* tr_thrift_idl_parse:
 * @file_name: for messages only
 * @text: the IDL, @len bytes (need not be NUL-terminated)
 * Returns: (transfer full) (nullable): NULL with @error. */
TrThriftIdl *tr_thrift_idl_parse (const char *file_name, const char *text, gsize len, GError **error);

void tr_thrift_idl_free (TrThriftIdl *idl);

/* tr_thrift_idl_lookup_method:
 * @name: a message name as on the wire: "method", or "Service:method"
 * (TMultiplexedProtocol: the part before ':' is matched against the
 * service names first; without a match, or without ':', the first service
 * declaring a method of that name is used).
 * Returns: (transfer none) (nullable): its arguments, valid while @idl is. */
const TrThriftIdlStruct *tr_thrift_idl_lookup_method (const TrThriftIdl *idl, const char *name);

/* Returns: (transfer none) (nullable): the field of @declaration with @id. */
const TrThriftIdlField *tr_thrift_idl_struct_field (const TrThriftIdlStruct *declaration, gint16 id);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (TrThriftIdl, tr_thrift_idl_free)

G_END_DECLS
