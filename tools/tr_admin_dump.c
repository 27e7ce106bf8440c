/* tr_admin_dump.c - tr-admin dump: one stored message shown to an operator:
 * its ids, name and type, the arguments decoded with tr_thrift_value's
 * tree decoder (the one Thrift value codec) and, with an IDL, named with
 * tr_thrift_idl; as text or as one JSON document (json-glib).  The admin
 * calls themselves are made by tools/tr-admin.c.
 */
#include "tr_admin_dump.h"

#include "tr_thrift_value.h"

#include <json-glib/json-glib.h>
#include <stdio.h>
#include <string.h>

/* @builder with its next member named @name (for a json_builder_add_*). */
static JsonBuilder *
member (JsonBuilder *builder, const char *name)
{
  json_builder_set_member_name (builder, name);
  return builder;
}

/* The document of @builder as one line on stdout. */
static void
print_json (JsonBuilder *builder)
{
  g_autoptr (JsonGenerator) generator = json_generator_new ();
  g_autoptr (JsonNode) root = json_builder_get_root (builder);
  g_autofree char *text = NULL;

  json_generator_set_root (generator, root);
  text = json_generator_to_data (generator, NULL);
  printf ("%s\n", text);
}

static const char *
msg_type_name (TrMsgType type)
{
  switch (type) {
  case TR_MSG_CALL:
    return "CALL";
  case TR_MSG_REPLY:
    return "REPLY";
  case TR_MSG_EXCEPTION:
    return "EXCEPTION";
  case TR_MSG_ONEWAY:
    return "ONEWAY";
  }
  return "?";
}

/* ---- dump: the decoded arguments ---- */

/* Whether a string value reads as text: valid UTF-8 without control
 * characters other than tab and newline.  Otherwise it is shown in hex. */
static gboolean
is_text (const TrThriftValue *v)
{
  if (!g_utf8_validate ((const char *) v->data, (gssize) v->len, NULL))
    return FALSE;
  for (gsize i = 0; i < v->len; i++)
    if (v->data[i] < 0x20 && v->data[i] != '\t' && v->data[i] != '\n')
      return FALSE;
  return TRUE;
}

/* A text value quoted with C escapes for '"', '\\', tab and newline; UTF-8
 * kept as it is. */
static char *
quoted_text (const guint8 *data, gsize len)
{
  GString *out = g_string_sized_new (len + 2);

  for (gsize i = 0; i < len; i++) {
    if (data[i] == '"' || data[i] == '\\')
      g_string_append_c (out, '\\');
    if (data[i] == '\n')
      g_string_append (out, "\\n");
    else if (data[i] == '\t')
      g_string_append (out, "\\t");
    else
      g_string_append_c (out, (char) data[i]);
  }
  return g_string_free (out, FALSE);
}

static char *
hex_string (const guint8 *data, gsize len)
{
  GString *hex = g_string_sized_new (len * 2 + 1);

  for (gsize i = 0; i < len; i++)
    g_string_append_printf (hex, "%02x", data[i]);
  return g_string_free (hex, FALSE);
}

/* The wire type of @v as IDL text, containers with their element types. */
static char *
wire_type_text (const TrThriftValue *v)
{
  if (v->type == TR_TTYPE_MAP)
    return g_strdup_printf ("map<%s,%s>", tr_thrift_type_to_string (v->key_type),
                            tr_thrift_type_to_string (v->element_type));
  if (v->type == TR_TTYPE_LIST || v->type == TR_TTYPE_SET)
    return g_strdup_printf ("%s<%s>", tr_thrift_type_to_string (v->type), tr_thrift_type_to_string (v->element_type));
  return g_strdup (tr_thrift_type_to_string (v->type));
}

/* The IDL's type for @v when it matches the wire (else NULL: a value the
 * IDL does not describe is shown by its wire type only). */
static const TrThriftIdlType *
matching (const TrThriftIdlType *idl_type, const TrThriftValue *v)
{
  return idl_type != NULL && idl_type->wire == v->type ? idl_type : NULL;
}

#define DUMP_MAX_STRING 512

/* One scalar as text ("true", "42", "\"abc\"", "0x00ff (2 bytes)"). */
static char *
scalar_text (const TrThriftValue *v, const TrThriftIdlType *idl_type)
{
  g_autofree char *text = NULL;
  const char *enum_name;

  switch (v->type) {
  case TR_TTYPE_BOOL:
    return g_strdup (v->b ? "true" : "false");
  case TR_TTYPE_DOUBLE:
    return g_strdup_printf ("%.17g", v->d);
  case TR_TTYPE_UUID:
    text = hex_string (v->data, 16);
    return g_strdup_printf ("%.8s-%.4s-%.4s-%.4s-%.12s", text, text + 8, text + 12, text + 16, text + 20);
  case TR_TTYPE_STRING:
    if (is_text (v)) {
      gsize shown = v->len;
      while (shown > DUMP_MAX_STRING) /* cut on a character boundary */
        shown = (gsize) (g_utf8_find_prev_char ((const char *) v->data, (const char *) v->data + shown)
                         - (const char *) v->data);
      text = quoted_text (v->data, shown);
      return g_strdup_printf ("\"%s\"%s (%zu byte%s)", text, shown < v->len ? "..." : "", v->len,
                              v->len == 1 ? "" : "s");
    }
    text = hex_string (v->data, MIN (v->len, DUMP_MAX_STRING / 2));
    return g_strdup_printf ("0x%s%s (%zu byte%s)", text, v->len > DUMP_MAX_STRING / 2 ? "..." : "", v->len,
                            v->len == 1 ? "" : "s");
  default:
    enum_name = idl_type != NULL && idl_type->enum_names != NULL
                    ? g_hash_table_lookup (idl_type->enum_names, GINT_TO_POINTER ((gint) v->i))
                    : NULL;
    if (enum_name != NULL)
      return g_strdup_printf ("%" G_GINT64_FORMAT " (%s)", v->i, enum_name);
    return g_strdup_printf ("%" G_GINT64_FORMAT, v->i);
  }
}

static gboolean
is_container (const TrThriftValue *v)
{
  return v->type == TR_TTYPE_STRUCT || v->type == TR_TTYPE_LIST || v->type == TR_TTYPE_SET
         || v->type == TR_TTYPE_MAP;
}

static void print_value (GString *out, guint indent, const char *label, const TrThriftValue *v,
                         const TrThriftIdlType *idl_type, const char *note);

/* The fields of a struct, named from @declaration (nullable). */
static void
print_fields (GString *out, guint indent, const TrThriftValue *v, const TrThriftIdlStruct *declaration)
{
  for (guint i = 0; v->children != NULL && i < v->children->len; i++) {
    const TrThriftValue *f = g_ptr_array_index (v->children, i);
    const TrThriftIdlField *field = declaration != NULL ? tr_thrift_idl_struct_field (declaration, f->id) : NULL;
    g_autofree char *label = field != NULL ? g_strdup_printf ("%d %s:", f->id, field->name)
                                           : g_strdup_printf ("%d:", f->id);
    g_autofree char *note = NULL;
    if (declaration != NULL && field == NULL)
      note = g_strdup_printf ("(field %d is not in %s)", f->id, declaration->name);
    else if (field != NULL && field->type->wire != f->type)
      note = g_strdup_printf ("(the IDL declares %s)", field->type->name);
    print_value (out, indent, label, f, field != NULL ? matching (field->type, f) : NULL, note);
  }
}

/* One value on a line "LABEL TYPE = VALUE" (containers: their elements on
 * the lines below, indented). */
static void
print_value (GString *out, guint indent, const char *label, const TrThriftValue *v, const TrThriftIdlType *idl_type,
             const char *note)
{
  g_autofree char *type = idl_type != NULL ? g_strdup (idl_type->name) : wire_type_text (v);
  guint n = v->children != NULL ? v->children->len : 0;

  g_string_append_printf (out, "%*s%s %s", indent, "", label, type);
  if (!is_container (v)) {
    g_autofree char *text = scalar_text (v, idl_type);
    g_string_append_printf (out, " = %s%s%s\n", text, note != NULL ? "  " : "", note != NULL ? note : "");
    return;
  }
  if (v->type == TR_TTYPE_MAP)
    n /= 2;
  if (v->type != TR_TTYPE_STRUCT)
    g_string_append_printf (out, " (%u)", n);
  g_string_append_printf (out, "%s%s\n", note != NULL ? "  " : "", note != NULL ? note : "");
  if (v->type == TR_TTYPE_STRUCT) {
    print_fields (out, indent + 2, v, idl_type != NULL ? idl_type->fields : NULL);
    return;
  }
  for (guint i = 0; i < n; i++) {
    if (v->type == TR_TTYPE_MAP) {
      const TrThriftValue *key = g_ptr_array_index (v->children, 2 * i);
      const TrThriftValue *value = g_ptr_array_index (v->children, 2 * i + 1);
      const TrThriftIdlType *key_type = idl_type != NULL ? matching (idl_type->key, key) : NULL;
      const TrThriftIdlType *value_type = idl_type != NULL ? matching (idl_type->element, value) : NULL;
      /* A text key as it would be written in code: "k", without its size. */
      gboolean short_text = key->type == TR_TTYPE_STRING && is_text (key) && key->len <= DUMP_MAX_STRING;
      g_autofree char *quoted = short_text ? quoted_text (key->data, key->len) : NULL;
      g_autofree char *key_text = short_text ? g_strdup_printf ("\"%s\"", quoted)
                                  : is_container (key) ? NULL : scalar_text (key, key_type);
      g_autofree char *key_label = key_text != NULL ? g_strdup_printf ("[%s]", key_text) : NULL;
      if (key_label == NULL) {
        g_autofree char *index_label = g_strdup_printf ("[%u] key", i);
        print_value (out, indent + 2, index_label, key, key_type, NULL);
        key_label = g_strdup_printf ("[%u] value", i);
      }
      print_value (out, indent + 2, key_label, value, value_type, NULL);
    } else {
      const TrThriftValue *element = g_ptr_array_index (v->children, i);
      g_autofree char *index_label = g_strdup_printf ("[%u]", i);
      print_value (out, indent + 2, index_label, element, idl_type != NULL ? matching (idl_type->element, element)
                                                                            : NULL, NULL);
    }
  }
}

static void add_value_json (JsonBuilder *out, const TrThriftValue *v, const TrThriftIdlType *idl_type);

static void
add_fields_json (JsonBuilder *out, const TrThriftValue *v, const TrThriftIdlStruct *declaration)
{
  json_builder_begin_array (out);
  for (guint i = 0; v->children != NULL && i < v->children->len; i++) {
    const TrThriftValue *f = g_ptr_array_index (v->children, i);
    const TrThriftIdlField *field = declaration != NULL ? tr_thrift_idl_struct_field (declaration, f->id) : NULL;
    json_builder_begin_object (out);
    json_builder_add_int_value (member (out, "id"), f->id);
    if (field != NULL)
      json_builder_add_string_value (member (out, "name"), field->name);
    add_value_json (out, f, field != NULL ? matching (field->type, f) : NULL);
    json_builder_end_object (out);
  }
  json_builder_end_array (out);
}

/* The members of one value's object: type, idl_type, then value / hex /
 * enum, or fields / elements / entries. */
static void
add_value_json (JsonBuilder *out, const TrThriftValue *v, const TrThriftIdlType *idl_type)
{
  g_autofree char *type = wire_type_text (v);
  g_autofree char *text = NULL;
  const char *enum_name;

  json_builder_add_string_value (member (out, "type"), type);
  if (idl_type != NULL)
    json_builder_add_string_value (member (out, "idl_type"), idl_type->name);
  switch (v->type) {
  case TR_TTYPE_BOOL:
    json_builder_add_boolean_value (member (out, "value"), v->b);
    return;
  case TR_TTYPE_DOUBLE:
    json_builder_add_double_value (member (out, "value"), v->d);
    return;
  case TR_TTYPE_STRING:
    /* "value" only when it is text; "hex" always (binary and string are
     * one wire type). */
    if (is_text (v)) {
      text = g_strndup ((const char *) v->data, v->len);
      json_builder_add_string_value (member (out, "value"), text);
      g_clear_pointer (&text, g_free);
    }
    text = hex_string (v->data, v->len);
    json_builder_add_string_value (member (out, "hex"), text);
    return;
  case TR_TTYPE_UUID:
    text = scalar_text (v, NULL);
    json_builder_add_string_value (member (out, "value"), text);
    return;
  case TR_TTYPE_STRUCT:
    json_builder_set_member_name (out, "fields");
    add_fields_json (out, v, idl_type != NULL ? idl_type->fields : NULL);
    return;
  case TR_TTYPE_MAP:
    json_builder_set_member_name (out, "entries");
    json_builder_begin_array (out);
    for (guint i = 0; v->children != NULL && i + 1 < v->children->len; i += 2) {
      const TrThriftValue *key = g_ptr_array_index (v->children, i);
      const TrThriftValue *value = g_ptr_array_index (v->children, i + 1);
      json_builder_begin_object (out);
      json_builder_set_member_name (out, "key");
      json_builder_begin_object (out);
      add_value_json (out, key, idl_type != NULL ? matching (idl_type->key, key) : NULL);
      json_builder_end_object (out);
      json_builder_set_member_name (out, "value");
      json_builder_begin_object (out);
      add_value_json (out, value, idl_type != NULL ? matching (idl_type->element, value) : NULL);
      json_builder_end_object (out);
      json_builder_end_object (out);
    }
    json_builder_end_array (out);
    return;
  case TR_TTYPE_LIST:
  case TR_TTYPE_SET:
    json_builder_set_member_name (out, "elements");
    json_builder_begin_array (out);
    for (guint i = 0; v->children != NULL && i < v->children->len; i++) {
      const TrThriftValue *element = g_ptr_array_index (v->children, i);
      json_builder_begin_object (out);
      add_value_json (out, element, idl_type != NULL ? matching (idl_type->element, element) : NULL);
      json_builder_end_object (out);
    }
    json_builder_end_array (out);
    return;
  default:
    json_builder_add_int_value (member (out, "value"), v->i);
    enum_name = idl_type != NULL && idl_type->enum_names != NULL
                    ? g_hash_table_lookup (idl_type->enum_names, GINT_TO_POINTER ((gint) v->i))
                    : NULL;
    if (enum_name != NULL)
      json_builder_add_string_value (member (out, "enum"), enum_name);
    return;
  }
}

/* What dump found in one stored message. */
typedef struct {
  const char *service; /* (nullable) dump SERVICE SEQID */
  gint64 seqid;        /* 0 when dumped by rpc id */
  gint64 rpc_id;
  const GByteArray *message;
  TrMsgHeader header;
  TrFrameStatus header_status;
  TrThriftValue *args;              /* (nullable) decoded arguments */
  char *args_error;                 /* (nullable) why they are not */
  const TrThriftIdlStruct *declaration; /* (nullable) from --idl */
  char *idl_note;                   /* (nullable) e.g. the method is not in the IDL */
} Dumped;

static void
dumped_clear (Dumped *d)
{
  tr_thrift_value_free (d->args);
  g_free (d->args_error);
  g_free (d->idl_note);
}

/* Parses the header and decodes the arguments of d->message. */
static void
decode_dumped (Dumped *d, const TrThriftIdl *idl)
{
  gsize offset;
  TrFrameStatus status;
  g_autofree char *name = NULL;

  d->header_status = tr_frame_parse_header (d->message->data, d->message->len, &d->header);
  if (d->header_status != TR_FRAME_OK) {
    d->args_error = g_strdup_printf ("message header: %s", tr_frame_status_to_string (d->header_status));
    return;
  }
  offset = d->header.body_offset;
  status = tr_thrift_value_decode_struct (d->message->data, d->message->len, &offset, &d->args);
  if (status != TR_FRAME_OK)
    d->args_error = g_strdup_printf ("at byte %zu: %s", offset, tr_frame_status_to_string (status));
  else if (offset != d->message->len)
    d->args_error = g_strdup_printf ("%zu bytes after the arguments' end (byte %zu)", d->message->len - offset,
                                     offset);
  if (idl == NULL)
    return;
  name = g_strndup ((const char *) d->header.name, d->header.name_len);
  d->declaration = tr_thrift_idl_lookup_method (idl, name);
  if (d->declaration == NULL)
    d->idl_note = g_strdup_printf ("method '%s' is not in the IDL: field ids and wire types only", name);
}

static void
print_dumped_json (const Dumped *d)
{
  g_autoptr (JsonBuilder) builder = json_builder_new ();
  g_autofree char *name = NULL;
  g_autofree char *hex = hex_string (d->message->data, d->message->len);

  name = d->header_status == TR_FRAME_OK ? g_strndup ((const char *) d->header.name, d->header.name_len)
                                         : g_strdup ("?");
  json_builder_begin_object (builder);
  if (d->service != NULL) {
    json_builder_add_string_value (member (builder, "service"), d->service);
    json_builder_add_int_value (member (builder, "seqid"), d->seqid);
  }
  json_builder_add_int_value (member (builder, "rpc_id"), d->rpc_id);
  json_builder_add_string_value (member (builder, "name"), name);
  json_builder_add_string_value (member (builder, "type"), d->header_status == TR_FRAME_OK ? msg_type_name (d->header.type) : "?");
  json_builder_add_int_value (member (builder, "size"), d->message->len);
  if (d->declaration != NULL)
    json_builder_add_string_value (member (builder, "args_declared_as"), d->declaration->name);
  if (d->idl_note != NULL)
    json_builder_add_string_value (member (builder, "idl_note"), d->idl_note);
  json_builder_set_member_name (builder, "args");
  if (d->args != NULL)
    add_fields_json (builder, d->args, d->declaration);
  else
    json_builder_add_null_value (builder);
  if (d->args_error != NULL)
    json_builder_add_string_value (member (builder, "args_error"), d->args_error);
  json_builder_add_string_value (member (builder, "hex"), hex);
  json_builder_end_object (builder);
  print_json (builder);
}

static void
print_hex_dump (const GByteArray *message)
{
  for (guint off = 0; off < message->len; off += 16) {
    printf ("%08x ", off);
    for (guint i = off; i < off + 16; i++)
      printf (i < message->len ? " %02x" : "   ", i < message->len ? message->data[i] : 0);
    printf ("  ");
    for (guint i = off; i < off + 16 && i < message->len; i++)
      putchar (message->data[i] >= 0x20 && message->data[i] < 0x7f ? message->data[i] : '.');
    printf ("\n");
  }
}

static void
print_dumped_text (const Dumped *d, gboolean hex)
{
  g_autoptr (GString) args = g_string_new (NULL);
  g_autofree char *name = NULL;

  name = d->header_status == TR_FRAME_OK ? g_strndup ((const char *) d->header.name, d->header.name_len)
                                         : g_strdup ("?");
  if (d->service != NULL)
    printf ("service  %s\nseqid    %" G_GINT64_FORMAT "\n", d->service, d->seqid);
  printf ("rpc_id   %" G_GINT64_FORMAT "\nname     %s\ntype     %s\nsize     %u bytes\n", d->rpc_id, name,
          d->header_status == TR_FRAME_OK ? msg_type_name (d->header.type)
                                          : tr_frame_status_to_string (d->header_status),
          d->message->len);
  if (d->args != NULL)
    print_fields (args, 2, d->args, d->declaration);
  if (d->declaration != NULL)
    printf ("args     %s\n", d->declaration->name);
  else if (d->idl_note != NULL)
    printf ("args     (%s)\n", d->idl_note);
  else
    printf ("args     (field ids and wire types; --idl FILE.thrift names them)\n");
  printf ("%s", args->str);
  if (d->args != NULL && (d->args->children == NULL || d->args->children->len == 0))
    printf ("  (none)\n");
  if (d->args_error != NULL)
    printf ("  cannot decode the arguments %s; the bytes are below\n", d->args_error);
  if (hex || d->args_error != NULL)
    print_hex_dump (d->message);
}


void
tr_admin_dump_print (const char *service, gint64 seqid, gint64 rpc_id, const GByteArray *message,
                     const TrThriftIdl *idl, TrAdminDumpFlags flags)
{
  Dumped d = { 0 };

  d.service = service;
  d.seqid = seqid;
  d.rpc_id = rpc_id;
  d.message = message;
  decode_dumped (&d, idl);
  if (flags & TR_ADMIN_DUMP_JSON)
    print_dumped_json (&d);
  else
    print_dumped_text (&d, (flags & TR_ADMIN_DUMP_HEX) != 0);
  dumped_clear (&d);
}
