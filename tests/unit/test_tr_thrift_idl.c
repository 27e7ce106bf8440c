/* test_tr_thrift_idl.c - the small Thrift IDL reader (router/net/tr_thrift_idl.h):
 * the project's own IDL files, every construct it reads, and a clear error
 * naming the line for what it does not read. */
#include <criterion/criterion.h>
#include <gio/gio.h>
#include <string.h>

#include "tr_thrift_idl.h"

static TrThriftIdl *
parse_ok (const char *text)
{
  g_autoptr (GError) error = NULL;
  TrThriftIdl *idl = tr_thrift_idl_parse ("t.thrift", text, strlen (text), &error);

  cr_assert_not_null (idl, "%s", error != NULL ? error->message : "?");
  return idl;
}

/* Parsing fails with @code and a message starting "t.thrift:LINE: " and
 * containing @needle. */
static void
parse_fails (const char *text, gint code, guint line, const char *needle)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (TrThriftIdl) idl = tr_thrift_idl_parse ("t.thrift", text, strlen (text), &error);
  g_autofree char *prefix = g_strdup_printf ("t.thrift:%u: ", line);

  cr_assert_null (idl, "accepted: %s", text);
  cr_assert (g_error_matches (error, G_IO_ERROR, code), "%s", error->message);
  cr_assert (g_str_has_prefix (error->message, prefix), "'%s' does not start with '%s'", error->message, prefix);
  cr_assert (strstr (error->message, needle) != NULL, "'%s' lacks '%s'", error->message, needle);
}

static const TrThriftIdlField *
field (const TrThriftIdlStruct *declaration, gint16 id, const char *name, TrThriftType wire)
{
  const TrThriftIdlField *f = tr_thrift_idl_struct_field (declaration, id);

  cr_assert_not_null (f, "%s has no field %d", declaration->name, id);
  cr_assert_str_eq (f->name, name);
  cr_assert_eq (f->type->wire, wire, "%s: wire %d", name, f->type->wire);
  return f;
}

Test (tr_thrift_idl, reads_the_project_idl_files)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (TrThriftIdl) demo = tr_thrift_idl_load (TR_SOURCE_DIR "/thrift/demo.thrift", &error);
  g_autoptr (TrThriftIdl) admin = NULL;
  const TrThriftIdlStruct *args;

  cr_assert_not_null (demo, "%s", error != NULL ? error->message : "?");
  args = tr_thrift_idl_lookup_method (demo, "log_event");
  cr_assert_not_null (args);
  cr_assert_str_eq (args->name, "EventLog.log_event");
  cr_assert_str_eq (field (args, 1, "data", TR_TTYPE_STRING)->type->name, "binary");
  field (tr_thrift_idl_lookup_method (demo, "EventLog:other"), 1, "x", TR_TTYPE_I32);
  cr_assert_null (tr_thrift_idl_lookup_method (demo, "nope"));

  admin = tr_thrift_idl_load (TR_SOURCE_DIR "/thrift/admin.thrift", &error);
  cr_assert_not_null (admin, "%s", error != NULL ? error->message : "?");
  args = tr_thrift_idl_lookup_method (admin, "dead_letters");
  field (args, 1, "token", TR_TTYPE_STRING);
  field (args, 4, "max", TR_TTYPE_I32);
}

Test (tr_thrift_idl, reads_structs_containers_enums_typedefs)
{
  g_autoptr (TrThriftIdl) idl = parse_ok (
      "# comment\n"
      "// comment\n"
      "namespace * x\n"
      "const string GREETING = 'hi';\n"
      "const double PI = 3.14e0\n"
      "typedef list<Book> Shelf\n"
      "typedef Shelf Library\n"
      "enum Colour { RED = 1, GREEN, BLUE = 0x10 }\n"
      "service Store {\n"
      "  oneway void put(1: Library books, 2: map<string, Colour> tags) throws (1: Oops e),\n"
      "  Book get(1: required i64 id = -1; 2: optional set<i16> s)\n"
      "}\n"
      "struct Book {\n"
      "  1: string title /* multi\n line */\n"
      "  7: Book sequel\n"
      "}\n"
      "exception Oops { 1: string why }\n"
      "union U { 1: i32 a, 2: uuid u }\n");
  const TrThriftIdlStruct *put = tr_thrift_idl_lookup_method (idl, "Store:put");
  const TrThriftIdlField *books, *tags, *sequel;

  cr_assert_not_null (put);
  books = field (put, 1, "books", TR_TTYPE_LIST);
  cr_assert_eq (books->type->element->wire, TR_TTYPE_STRUCT);
  cr_assert_str_eq (books->type->element->fields->name, "Book");
  sequel = field (books->type->element->fields, 7, "sequel", TR_TTYPE_STRUCT);
  cr_assert_eq (sequel->type->fields, books->type->element->fields);
  tags = field (put, 2, "tags", TR_TTYPE_MAP);
  cr_assert_eq (tags->type->key->wire, TR_TTYPE_STRING);
  cr_assert_eq (tags->type->element->wire, TR_TTYPE_I32);
  cr_assert_str_eq (g_hash_table_lookup (tags->type->element->enum_names, GINT_TO_POINTER (2)), "GREEN");
  cr_assert_str_eq (g_hash_table_lookup (tags->type->element->enum_names, GINT_TO_POINTER (16)), "BLUE");
  field (tr_thrift_idl_lookup_method (idl, "get"), 2, "s", TR_TTYPE_SET);
  cr_assert_null (tr_thrift_idl_struct_field (put, 3));
}

/* What the reader does not read is an error naming the line, never a
 * silent skip; so are mistakes. */
Test (tr_thrift_idl, refuses_with_the_line)
{
  parse_fails ("include \"other.thrift\"\n", G_IO_ERROR_NOT_SUPPORTED, 1, "'include' is not supported");
  parse_fails ("\nstruct A {\n  1: i32 a (x = \"y\")\n}\n", G_IO_ERROR_NOT_SUPPORTED, 3, "annotations");
  parse_fails ("struct A {\n  i32 a\n}\n", G_IO_ERROR_NOT_SUPPORTED, 2, "explicit id");
  parse_fails ("service B {}\nservice A extends B {}\n", G_IO_ERROR_NOT_SUPPORTED, 2, "extends");
  parse_fails ("const list<i32> L = [1, 2]\n", G_IO_ERROR_NOT_SUPPORTED, 1, "constants");
  parse_fails ("struct A {\n 1: i32 a\n 1: i32 b\n}\n", G_IO_ERROR_INVALID_DATA, 3, "used twice");
  parse_fails ("struct A {\n\n 1: Missing m\n}\n", G_IO_ERROR_INVALID_DATA, 3, "'Missing' is not declared");
  parse_fails ("struct A { 1: i32 a }\nstruct A { 1: i32 b }\n", G_IO_ERROR_INVALID_DATA, 2, "declared twice");
  parse_fails ("typedef B A\ntypedef A B\nstruct S { 1: A a }\n", G_IO_ERROR_INVALID_DATA, 1, "chain");
  parse_fails ("/* open\n\n", G_IO_ERROR_INVALID_DATA, 1, "comment not closed");
  parse_fails ("struct A {\n 1: i32 a\n", G_IO_ERROR_INVALID_DATA, 3, "expected '}'");
  parse_fails ("wibble X\n", G_IO_ERROR_INVALID_DATA, 1, "unknown definition 'wibble'");
  parse_fails ("enum E { A = 99999999999 }\n", G_IO_ERROR_INVALID_DATA, 1, "not an i32");
  /* A name followed by a broken token (found by fuzz_idl: the name leaked). */
  parse_fails ("struct Na'me {\n", G_IO_ERROR_INVALID_DATA, 1, "string not closed");
}
