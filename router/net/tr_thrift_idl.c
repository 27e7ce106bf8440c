/* tr_thrift_idl.c - a small Thrift IDL reader (see tr_thrift_idl.h for
 * what it reads and refuses).
 *
 * A tokenizer (identifiers, integers, reals, quoted strings, one-character
 * punctuation; comments skipped; every token knows its line) feeds a
 * recursive-descent parser of the definitions.  Named types are resolved
 * after the whole file is read, so a struct may use one declared further
 * down, as the Thrift compiler allows; a typedef chain is followed at most
 * IDL_MAX_ALIASES deep (a cycle is an error, not a hang).
 */
#include "tr_thrift_idl.h"

#include <gio/gio.h>
#include <string.h>

#define IDL_MAX_ALIASES 16
#define IDL_MAX_TYPE_DEPTH 32

typedef enum { TOK_END, TOK_IDENT, TOK_INT, TOK_REAL, TOK_STRING, TOK_PUNCT } TokenKind;

typedef struct {
  TokenKind kind;
  const char *text;
  gsize len;
  guint line;
} Token;

/* A type and the line it was written on (for errors found when resolving). */
typedef struct {
  TrThriftIdlType type;    /* first: a TrThriftIdlType* is a TypeEntry* */
  guint line;
} TypeEntry;

typedef struct {
  char *service;
  char *method;
  TrThriftIdlStruct *args; /* (transfer none): in ->structs */
} Method;

struct _TrThriftIdl {
  GPtrArray *types;        /* owns every TrThriftIdlType */
  GPtrArray *structs;      /* owns every TrThriftIdlStruct (declared and argument lists) */
  GHashTable *declared;    /* struct / union / exception name -> TrThriftIdlStruct */
  GHashTable *enums;       /* enum name -> GHashTable (value -> name) */
  GHashTable *typedefs;    /* alias -> TrThriftIdlType (the target as written) */
  GPtrArray *methods;      /* (element-type Method) */
};

typedef struct {
  const char *file;
  const char *text;
  gsize len;
  gsize pos;
  guint line;
  Token token;             /* the current (not yet consumed) token */
  TrThriftIdl *idl;
} Parser;

/* ---- errors ---- */

static gboolean fail (Parser *parser, GError **error, gint code, guint line, const char *format, ...)
    G_GNUC_PRINTF (5, 6);

static gboolean
fail (Parser *parser, GError **error, gint code, guint line, const char *format, ...)
{
  g_autofree char *message = NULL;
  va_list ap;

  va_start (ap, format);
  message = g_strdup_vprintf (format, ap);
  va_end (ap);
  g_set_error (error, G_IO_ERROR, code, "%s:%u: %s", parser->file, line, message);
  return FALSE;
}

static char *
token_dup (const Token *token)
{
  return g_strndup (token->text, token->len);
}

static gboolean
token_is (const Token *token, const char *text)
{
  return (token->kind == TOK_IDENT || token->kind == TOK_PUNCT) && token->len == strlen (text)
         && memcmp (token->text, text, token->len) == 0;
}

/* "'name'" or "the end of the file", for messages. */
static char *
token_describe (const Token *token)
{
  if (token->kind == TOK_END)
    return g_strdup ("the end of the file");
  return g_strdup_printf ("'%.*s'", (int) MIN (token->len, 40), token->text);
}

/* ---- tokenizer ---- */

/* Skips blanks and comments; FALSE (with @error) for a comment left open. */
static gboolean
skip_space (Parser *parser, GError **error)
{
  while (parser->pos < parser->len) {
    const char *p = parser->text + parser->pos;
    gsize left = parser->len - parser->pos;
    if (*p == '\n') {
      parser->line++;
      parser->pos++;
    } else if (g_ascii_isspace (*p)) {
      parser->pos++;
    } else if (*p == '#' || (left >= 2 && p[0] == '/' && p[1] == '/')) {
      while (parser->pos < parser->len && parser->text[parser->pos] != '\n')
        parser->pos++;
    } else if (left >= 2 && p[0] == '/' && p[1] == '*') {
      guint start = parser->line;
      parser->pos += 2;
      while (parser->pos + 1 < parser->len
             && !(parser->text[parser->pos] == '*' && parser->text[parser->pos + 1] == '/')) {
        if (parser->text[parser->pos] == '\n')
          parser->line++;
        parser->pos++;
      }
      if (parser->pos + 1 >= parser->len)
        return fail (parser, error, G_IO_ERROR_INVALID_DATA, start, "comment not closed");
      parser->pos += 2;
    } else {
      break;
    }
  }
  return TRUE;
}

static gboolean
is_ident_char (char c)
{
  return g_ascii_isalnum (c) || c == '_' || c == '.';
}

/* Reads the next token into ->token. */
static gboolean
advance (Parser *parser, GError **error)
{
  Token *token = &parser->token;
  const char *start;
  gsize end;

  if (!skip_space (parser, error))
    return FALSE;
  token->line = parser->line;
  token->text = start = parser->text + parser->pos;
  if (parser->pos >= parser->len) {
    token->kind = TOK_END;
    token->len = 0;
    return TRUE;
  }
  end = parser->pos + 1;
  if (g_ascii_isalpha (*start) || *start == '_') {
    token->kind = TOK_IDENT;
    while (end < parser->len && is_ident_char (parser->text[end]))
      end++;
  } else if (g_ascii_isdigit (*start) || ((*start == '-' || *start == '+') && end < parser->len
                                          && g_ascii_isdigit (parser->text[end]))) {
    gboolean hex = end + 1 < parser->len && parser->text[end - 1] == '0' && g_ascii_tolower (parser->text[end]) == 'x';
    while (end < parser->len && (g_ascii_isalnum (parser->text[end]) || parser->text[end] == '.'
                                 || (!hex && (parser->text[end] == '-' || parser->text[end] == '+')
                                     && g_ascii_tolower (parser->text[end - 1]) == 'e')))
      end++;
    token->kind = !hex && (memchr (start, '.', end - parser->pos) != NULL || memchr (start, 'e', end - parser->pos)
                           != NULL || memchr (start, 'E', end - parser->pos) != NULL)
                      ? TOK_REAL
                      : TOK_INT;
  } else if (*start == '"' || *start == '\'') {
    token->kind = TOK_STRING;
    while (end < parser->len && parser->text[end] != *start && parser->text[end] != '\n')
      end++;
    if (end >= parser->len || parser->text[end] != *start)
      return fail (parser, error, G_IO_ERROR_INVALID_DATA, parser->line, "string not closed on its line");
    end++;
  } else {
    token->kind = TOK_PUNCT;
  }
  token->len = end - parser->pos;
  parser->pos = end;
  return TRUE;
}

/* Consumes the current token if it is @text. */
static gboolean
accept (Parser *parser, const char *text, gboolean *taken, GError **error)
{
  *taken = token_is (&parser->token, text);
  return !*taken || advance (parser, error);
}

static gboolean
expect (Parser *parser, const char *text, GError **error)
{
  g_autofree char *got = NULL;

  if (token_is (&parser->token, text))
    return advance (parser, error);
  got = token_describe (&parser->token);
  return fail (parser, error, G_IO_ERROR_INVALID_DATA, parser->token.line, "expected '%s', found %s", text, got);
}

/* An identifier (a name being declared or a type name) into @out. */
static gboolean
expect_ident (Parser *parser, const char *what, char **out, GError **error)
{
  g_autofree char *got = NULL;

  if (parser->token.kind == TOK_IDENT) {
    *out = token_dup (&parser->token);
    if (advance (parser, error))
      return TRUE;
    g_clear_pointer (out, g_free); /* the next token is broken: nothing is handed out */
    return FALSE;
  }
  got = token_describe (&parser->token);
  return fail (parser, error, G_IO_ERROR_INVALID_DATA, parser->token.line, "expected %s, found %s", what, got);
}

/* An optional ',' or ';' after a definition, field or method. */
static gboolean
skip_separator (Parser *parser, GError **error)
{
  gboolean taken;

  if (!accept (parser, ",", &taken, error))
    return FALSE;
  return taken || accept (parser, ";", &taken, error);
}

/* '(' after a type or a definition: annotations, which this reader does
 * not read. */
static gboolean
refuse_annotation (Parser *parser, GError **error)
{
  if (token_is (&parser->token, "("))
    return fail (parser, error, G_IO_ERROR_NOT_SUPPORTED, parser->token.line,
                 "annotations in parentheses are not supported by this IDL reader");
  return TRUE;
}

/* ---- types ---- */

static TrThriftIdlType *
type_new (Parser *parser, TrThriftType wire, char *name)
{
  TypeEntry *entry = g_new0 (TypeEntry, 1);

  entry->type.wire = wire;
  entry->type.name = name;
  entry->line = parser->token.line;
  g_ptr_array_add (parser->idl->types, entry);
  return &entry->type;
}

static void
type_free (gpointer data)
{
  TypeEntry *entry = data;

  g_free (entry->type.name);
  g_free (entry);
}

static const struct {
  const char *name;
  TrThriftType wire;
} base_types[] = {
  { "bool", TR_TTYPE_BOOL },   { "byte", TR_TTYPE_BYTE },     { "i8", TR_TTYPE_BYTE },
  { "i16", TR_TTYPE_I16 },     { "i32", TR_TTYPE_I32 },       { "i64", TR_TTYPE_I64 },
  { "double", TR_TTYPE_DOUBLE }, { "string", TR_TTYPE_STRING }, { "binary", TR_TTYPE_STRING },
  { "uuid", TR_TTYPE_UUID },
};

static gboolean parse_type (Parser *parser, guint depth, TrThriftIdlType **out, GError **error);

/* list<T>, set<T>, map<K, V> after the keyword (@wire). */
static gboolean
parse_container (Parser *parser, TrThriftType wire, guint depth, TrThriftIdlType **out, GError **error)
{
  TrThriftIdlType *key = NULL, *element = NULL;

  if (!expect (parser, "<", error))
    return FALSE;
  if (wire == TR_TTYPE_MAP && (!parse_type (parser, depth + 1, &key, error) || !expect (parser, ",", error)))
    return FALSE;
  if (!parse_type (parser, depth + 1, &element, error) || !expect (parser, ">", error))
    return FALSE;
  if (wire == TR_TTYPE_MAP)
    *out = type_new (parser, wire, g_strdup_printf ("map<%s,%s>", key->name, element->name));
  else
    *out = type_new (parser, wire, g_strdup_printf ("%s<%s>", wire == TR_TTYPE_LIST ? "list" : "set", element->name));
  (*out)->key = key;
  (*out)->element = element;
  return refuse_annotation (parser, error);
}

/* A field or return type.  Named types stay unresolved (wire STOP) until
 * resolve_types(). */
static gboolean
parse_type (Parser *parser, guint depth, TrThriftIdlType **out, GError **error)
{
  g_autofree char *name = NULL;
  guint line = parser->token.line;

  if (depth > IDL_MAX_TYPE_DEPTH)
    return fail (parser, error, G_IO_ERROR_INVALID_DATA, line, "types nested deeper than %d", IDL_MAX_TYPE_DEPTH);
  if (!expect_ident (parser, "a type", &name, error))
    return FALSE;
  if (strcmp (name, "list") == 0 || strcmp (name, "set") == 0 || strcmp (name, "map") == 0)
    return parse_container (parser, name[0] == 'l' ? TR_TTYPE_LIST : name[0] == 's' ? TR_TTYPE_SET : TR_TTYPE_MAP,
                            depth, out, error);
  if (strcmp (name, "slist") == 0 || strcmp (name, "senum") == 0)
    return fail (parser, error, G_IO_ERROR_NOT_SUPPORTED, line, "'%s' (deprecated) is not supported", name);
  *out = NULL;
  for (guint i = 0; i < G_N_ELEMENTS (base_types); i++)
    if (strcmp (name, base_types[i].name) == 0)
      *out = type_new (parser, base_types[i].wire, g_strdup (name));
  if (*out == NULL) /* named: resolve_types() */
    *out = type_new (parser, TR_TTYPE_STOP, g_strdup (name));
  return refuse_annotation (parser, error);
}

/* ---- values (const, defaults): scalars only ---- */

static gboolean
skip_scalar_value (Parser *parser, GError **error)
{
  g_autofree char *got = NULL;
  Token *token = &parser->token;

  if (token->kind == TOK_INT || token->kind == TOK_REAL || token->kind == TOK_STRING || token->kind == TOK_IDENT)
    return advance (parser, error);
  if (token_is (token, "[") || token_is (token, "{"))
    return fail (parser, error, G_IO_ERROR_NOT_SUPPORTED, token->line,
                 "list, set or map constants are not supported by this IDL reader");
  got = token_describe (token);
  return fail (parser, error, G_IO_ERROR_INVALID_DATA, token->line, "expected a value, found %s", got);
}

/* ---- fields ---- */

static void
field_free (gpointer data)
{
  TrThriftIdlField *field = data;

  g_free (field->name);
  g_free (field);
}

static TrThriftIdlStruct *
struct_new (Parser *parser, char *name)
{
  TrThriftIdlStruct *declaration = g_new0 (TrThriftIdlStruct, 1);

  declaration->name = name;
  declaration->fields = g_ptr_array_new_with_free_func (field_free);
  g_ptr_array_add (parser->idl->structs, declaration);
  return declaration;
}

static void
struct_free (gpointer data)
{
  TrThriftIdlStruct *declaration = data;

  g_free (declaration->name);
  g_ptr_array_unref (declaration->fields);
  g_free (declaration);
}

/* One field: ID ':' [required|optional] TYPE NAME ['=' VALUE] [','|';']. */
static gboolean
parse_field (Parser *parser, TrThriftIdlStruct *declaration, GError **error)
{
  TrThriftIdlField *field;
  guint line = parser->token.line;
  gint64 id;
  gboolean taken;

  g_autofree char *id_text = NULL;

  if (parser->token.kind != TOK_INT)
    return fail (parser, error, G_IO_ERROR_NOT_SUPPORTED, line,
                 "fields without an explicit id ('1: type name') are not supported by this IDL reader");
  id_text = token_dup (&parser->token);
  if (!g_ascii_string_to_signed (id_text, 10, 1, G_MAXINT16, &id, NULL))
    return fail (parser, error, G_IO_ERROR_INVALID_DATA, line, "field id '%.*s' is not 1..32767",
                 (int) parser->token.len, parser->token.text);
  if (tr_thrift_idl_struct_field (declaration, (gint16) id) != NULL)
    return fail (parser, error, G_IO_ERROR_INVALID_DATA, line, "field id %" G_GINT64_FORMAT " used twice in %s", id,
                 declaration->name);
  field = g_new0 (TrThriftIdlField, 1);
  field->id = (gint16) id;
  g_ptr_array_add (declaration->fields, field);
  if (!advance (parser, error) || !expect (parser, ":", error))
    return FALSE;
  if (token_is (&parser->token, "required") || token_is (&parser->token, "optional"))
    if (!advance (parser, error))
      return FALSE;
  if (!parse_type (parser, 0, &field->type, error) || !expect_ident (parser, "a field name", &field->name, error))
    return FALSE;
  if (!accept (parser, "=", &taken, error) || (taken && !skip_scalar_value (parser, error)))
    return FALSE;
  return refuse_annotation (parser, error) && skip_separator (parser, error);
}

/* Fields up to @close ("}" or ")"), which is consumed. */
static gboolean
parse_fields (Parser *parser, TrThriftIdlStruct *declaration, const char *close, GError **error)
{
  while (!token_is (&parser->token, close)) {
    if (parser->token.kind == TOK_END)
      return expect (parser, close, error);
    if (!parse_field (parser, declaration, error))
      return FALSE;
  }
  return advance (parser, error);
}

/* ---- definitions ---- */

static gboolean
check_new_name (Parser *parser, const char *name, guint line, GError **error)
{
  TrThriftIdl *idl = parser->idl;

  if (g_hash_table_contains (idl->declared, name) || g_hash_table_contains (idl->enums, name)
      || g_hash_table_contains (idl->typedefs, name))
    return fail (parser, error, G_IO_ERROR_INVALID_DATA, line, "'%s' is declared twice", name);
  return TRUE;
}

static gboolean
parse_struct (Parser *parser, GError **error)
{
  char *name = NULL;
  guint line = parser->token.line;
  TrThriftIdlStruct *declaration;

  if (!expect_ident (parser, "a struct name", &name, error))
    return FALSE;
  declaration = struct_new (parser, name);
  if (!check_new_name (parser, name, line, error))
    return FALSE;
  g_hash_table_insert (parser->idl->declared, name, declaration);
  return expect (parser, "{", error) && parse_fields (parser, declaration, "}", error)
         && refuse_annotation (parser, error);
}

/* Decimal or 0x hex, within i32. */
static gboolean
parse_enum_number (const char *text, gint64 *out)
{
  gboolean negative = text[0] == '-';
  const char *digits = text + (negative || text[0] == '+');
  guint64 value;

  if (g_ascii_strncasecmp (digits, "0x", 2) == 0) {
    if (!g_ascii_string_to_unsigned (digits + 2, 16, 0, (guint64) G_MAXINT32 + 1, &value, NULL))
      return FALSE;
  } else if (!g_ascii_string_to_unsigned (digits, 10, 0, (guint64) G_MAXINT32 + 1, &value, NULL)) {
    return FALSE;
  }
  if (!negative && value > G_MAXINT32)
    return FALSE;
  *out = negative ? -(gint64) value : (gint64) value;
  return TRUE;
}

static gboolean
parse_enum (Parser *parser, GError **error)
{
  g_autofree char *name = NULL;
  GHashTable *names = g_hash_table_new_full (g_direct_hash, g_direct_equal, NULL, g_free);
  guint line = parser->token.line;
  gint64 next = 0;

  if (!expect_ident (parser, "an enum name", &name, error) || !check_new_name (parser, name, line, error)) {
    g_hash_table_unref (names);
    return FALSE;
  }
  g_hash_table_insert (parser->idl->enums, g_strdup (name), names);
  if (!expect (parser, "{", error))
    return FALSE;
  while (!token_is (&parser->token, "}")) {
    char *value_name = NULL;
    g_autofree char *number = NULL;
    gboolean taken;
    if (!expect_ident (parser, "an enum value name", &value_name, error))
      return FALSE;
    if (!accept (parser, "=", &taken, error)) {
      g_free (value_name);
      return FALSE;
    }
    number = taken ? token_dup (&parser->token) : NULL;
    if (taken && (parser->token.kind != TOK_INT || !parse_enum_number (number, &next))) {
      g_free (value_name);
      return fail (parser, error, G_IO_ERROR_INVALID_DATA, parser->token.line, "enum value '%s' is not an i32",
                   number);
    }
    g_hash_table_insert (names, GINT_TO_POINTER ((gint) next), value_name);
    next++;
    if ((taken && !advance (parser, error)) || !refuse_annotation (parser, error) || !skip_separator (parser, error))
      return FALSE;
  }
  return advance (parser, error);
}

static gboolean
parse_typedef (Parser *parser, GError **error)
{
  TrThriftIdlType *target = NULL;
  char *name = NULL;
  guint line;

  if (!parse_type (parser, 0, &target, error))
    return FALSE;
  line = parser->token.line;
  if (!expect_ident (parser, "the typedef's name", &name, error))
    return FALSE;
  if (!check_new_name (parser, name, line, error)) {
    g_free (name);
    return FALSE;
  }
  g_hash_table_insert (parser->idl->typedefs, name, target);
  return refuse_annotation (parser, error) && skip_separator (parser, error);
}

static gboolean
parse_const (Parser *parser, GError **error)
{
  TrThriftIdlType *type = NULL;
  g_autofree char *name = NULL;

  return parse_type (parser, 0, &type, error) && expect_ident (parser, "the constant's name", &name, error)
         && expect (parser, "=", error) && skip_scalar_value (parser, error) && skip_separator (parser, error);
}

/* [oneway] TYPE|void NAME '(' fields ')' [throws '(' fields ')'] */
static gboolean
parse_method (Parser *parser, const char *service, GError **error)
{
  g_autofree char *throws_name = NULL;
  TrThriftIdlType *result = NULL;
  TrThriftIdlStruct *throws;
  Method *method;
  gboolean taken;

  if (!accept (parser, "oneway", &taken, error))
    return FALSE;
  if (token_is (&parser->token, "void")) {
    if (!advance (parser, error))
      return FALSE;
  } else if (!parse_type (parser, 0, &result, error)) {
    return FALSE;
  }
  method = g_new0 (Method, 1);
  method->service = g_strdup (service);
  g_ptr_array_add (parser->idl->methods, method);
  if (!expect_ident (parser, "a method name", &method->method, error))
    return FALSE;
  method->args = struct_new (parser, g_strdup_printf ("%s.%s", service, method->method));
  if (!expect (parser, "(", error) || !parse_fields (parser, method->args, ")", error)
      || !accept (parser, "throws", &taken, error))
    return FALSE;
  if (taken) {
    throws_name = g_strdup_printf ("%s.%s.throws", service, method->method);
    throws = struct_new (parser, g_steal_pointer (&throws_name));
    if (!expect (parser, "(", error) || !parse_fields (parser, throws, ")", error))
      return FALSE;
  }
  return refuse_annotation (parser, error) && skip_separator (parser, error);
}

static gboolean
parse_service (Parser *parser, GError **error)
{
  g_autofree char *name = NULL;

  if (!expect_ident (parser, "a service name", &name, error))
    return FALSE;
  if (token_is (&parser->token, "extends"))
    return fail (parser, error, G_IO_ERROR_NOT_SUPPORTED, parser->token.line,
                 "service ... extends is not supported by this IDL reader");
  if (!expect (parser, "{", error))
    return FALSE;
  while (!token_is (&parser->token, "}")) {
    if (parser->token.kind == TOK_END)
      return expect (parser, "}", error);
    if (!parse_method (parser, name, error))
      return FALSE;
  }
  return advance (parser, error) && refuse_annotation (parser, error);
}

static gboolean
parse_definition (Parser *parser, GError **error)
{
  g_autofree char *keyword = NULL;
  g_autofree char *scope = NULL, *name = NULL;
  guint line = parser->token.line;

  if (!expect_ident (parser, "a definition (struct, service, ...)", &keyword, error))
    return FALSE;
  if (strcmp (keyword, "namespace") == 0) {
    if (token_is (&parser->token, "*"))
      return advance (parser, error) && expect_ident (parser, "a namespace", &name, error);
    return expect_ident (parser, "a language", &scope, error) && expect_ident (parser, "a namespace", &name, error);
  }
  if (strcmp (keyword, "struct") == 0 || strcmp (keyword, "union") == 0 || strcmp (keyword, "exception") == 0)
    return parse_struct (parser, error);
  if (strcmp (keyword, "service") == 0)
    return parse_service (parser, error);
  if (strcmp (keyword, "enum") == 0)
    return parse_enum (parser, error);
  if (strcmp (keyword, "typedef") == 0)
    return parse_typedef (parser, error);
  if (strcmp (keyword, "const") == 0)
    return parse_const (parser, error);
  if (strcmp (keyword, "include") == 0 || strcmp (keyword, "cpp_include") == 0 || strcmp (keyword, "senum") == 0)
    return fail (parser, error, G_IO_ERROR_NOT_SUPPORTED, line,
                 "'%s' is not supported by this IDL reader (give one self-contained file)", keyword);
  return fail (parser, error, G_IO_ERROR_INVALID_DATA, line, "unknown definition '%s'", keyword);
}

/* ---- resolving named types ---- */

/* Gives @type (a named one, wire STOP) what its name stands for. */
static gboolean
resolve_type (Parser *parser, TrThriftIdlType *type, GError **error)
{
  TrThriftIdl *idl = parser->idl;
  const char *name = type->name;
  guint line = ((const TypeEntry *) type)->line;

  for (guint hops = 0; hops <= IDL_MAX_ALIASES; hops++) {
    TrThriftIdlType *target = g_hash_table_lookup (idl->typedefs, name);
    if (target == NULL)
      break;
    if (target->wire != TR_TTYPE_STOP) {
      type->wire = target->wire;
      type->key = target->key;
      type->element = target->element;
      type->fields = target->fields;
      type->enum_names = target->enum_names;
      return TRUE;
    }
    name = target->name;
  }
  if ((type->fields = g_hash_table_lookup (idl->declared, name)) != NULL) {
    type->wire = TR_TTYPE_STRUCT;
    return TRUE;
  }
  if ((type->enum_names = g_hash_table_lookup (idl->enums, name)) != NULL) {
    type->wire = TR_TTYPE_I32;
    return TRUE;
  }
  if (g_hash_table_contains (idl->typedefs, name))
    return fail (parser, error, G_IO_ERROR_INVALID_DATA, line, "typedef '%s' refers to itself in a chain of "
                 "more than %d", type->name, IDL_MAX_ALIASES);
  return fail (parser, error, G_IO_ERROR_INVALID_DATA, line, "type '%s' is not declared in this file", type->name);
}

static gboolean
resolve_types (Parser *parser, GError **error)
{
  GPtrArray *types = parser->idl->types;

  /* A typedef may name another typedef declared later: resolve those
   * targets first, then every use. */
  for (guint i = 0; i < types->len; i++) {
    TrThriftIdlType *type = g_ptr_array_index (types, i);
    if (type->wire == TR_TTYPE_STOP && !resolve_type (parser, type, error))
      return FALSE;
  }
  return TRUE;
}

/* ---- public ---- */

static void
method_free (gpointer data)
{
  Method *method = data;

  g_free (method->service);
  g_free (method->method);
  g_free (method);
}

TrThriftIdl *
tr_thrift_idl_parse (const char *file_name, const char *text, gsize len, GError **error)
{
  g_autoptr (TrThriftIdl) idl = g_new0 (TrThriftIdl, 1);
  Parser parser = { file_name, text, len, 0, 1, { 0 }, NULL };

  g_return_val_if_fail (file_name != NULL && (text != NULL || len == 0), NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  idl->types = g_ptr_array_new_with_free_func (type_free);
  idl->structs = g_ptr_array_new_with_free_func (struct_free);
  idl->declared = g_hash_table_new (g_str_hash, g_str_equal);
  idl->enums = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, (GDestroyNotify) g_hash_table_unref);
  idl->typedefs = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  idl->methods = g_ptr_array_new_with_free_func (method_free);
  parser.idl = idl;
  if (!advance (&parser, error))
    return NULL;
  while (parser.token.kind != TOK_END)
    if (!parse_definition (&parser, error) || !skip_separator (&parser, error))
      return NULL;
  if (!resolve_types (&parser, error))
    return NULL;
  return g_steal_pointer (&idl);
}

TrThriftIdl *
tr_thrift_idl_load (const char *path, GError **error)
{
  g_autofree char *text = NULL;
  gsize len = 0;

  g_return_val_if_fail (path != NULL, NULL);

  if (!g_file_get_contents (path, &text, &len, error))
    return NULL;
  return tr_thrift_idl_parse (path, text, len, error);
}

void
tr_thrift_idl_free (TrThriftIdl *idl)
{
  if (idl == NULL)
    return;
  g_clear_pointer (&idl->methods, g_ptr_array_unref);
  g_clear_pointer (&idl->typedefs, g_hash_table_unref);
  g_clear_pointer (&idl->enums, g_hash_table_unref);
  g_clear_pointer (&idl->declared, g_hash_table_unref);
  g_clear_pointer (&idl->structs, g_ptr_array_unref);
  g_clear_pointer (&idl->types, g_ptr_array_unref);
  g_free (idl);
}

const TrThriftIdlStruct *
tr_thrift_idl_lookup_method (const TrThriftIdl *idl, const char *name)
{
  const char *colon = strrchr (name, ':');
  const char *method = colon != NULL ? colon + 1 : name;
  const TrThriftIdlStruct *first = NULL;

  g_return_val_if_fail (idl != NULL && name != NULL, NULL);

  for (guint i = 0; i < idl->methods->len; i++) {
    const Method *m = g_ptr_array_index (idl->methods, i);
    if (strcmp (m->method, method) != 0)
      continue;
    if (colon != NULL && strlen (m->service) == (gsize) (colon - name)
        && memcmp (m->service, name, (gsize) (colon - name)) == 0)
      return m->args;
    if (first == NULL)
      first = m->args;
  }
  return first;
}

const TrThriftIdlField *
tr_thrift_idl_struct_field (const TrThriftIdlStruct *declaration, gint16 id)
{
  g_return_val_if_fail (declaration != NULL, NULL);

  for (guint i = 0; i < declaration->fields->len; i++) {
    const TrThriftIdlField *field = g_ptr_array_index (declaration->fields, i);
    if (field->id == id)
      return field;
  }
  return NULL;
}
