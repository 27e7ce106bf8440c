/* fuzz_idl.c - libFuzzer harness for the small Thrift IDL reader
 * (router/net/tr_thrift_idl.h) of tr-admin dump --idl.
 *
 * The input is IDL text.  Invariants: it is accepted, or refused with a
 * G_IO_ERROR whose message starts with "fuzz.thrift:LINE: " for a line the
 * text has; an accepted IDL answers lookups of names taken from the input
 * without crashing, and every field it resolved has a wire type. */
#include <string.h>

#include <gio/gio.h>

#include "fuzz_util.h"
#include "tr_thrift_idl.h"

int LLVMFuzzerInitialize (int *argc, char ***argv);
int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

int
LLVMFuzzerInitialize (int *argc, char ***argv)
{
  (void) argc;
  (void) argv;
  fuzz_init_logging ();
  return 0;
}

static void
check_struct (const TrThriftIdlStruct *declaration)
{
  for (guint i = 0; i < declaration->fields->len; i++) {
    const TrThriftIdlField *field = g_ptr_array_index (declaration->fields, i);
    FUZZ_CHECK (field->type != NULL && field->type->wire != TR_TTYPE_STOP);
    FUZZ_CHECK (tr_thrift_idl_struct_field (declaration, field->id) == field);
  }
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (TrThriftIdl) idl = tr_thrift_idl_parse ("fuzz.thrift", (const char *) data, size, &error);
  guint lines = 1;

  for (gsize i = 0; i < size; i++)
    lines += data[i] == '\n';
  if (idl == NULL) {
    guint64 line = 0;
    FUZZ_CHECK (error != NULL && error->domain == G_IO_ERROR);
    FUZZ_CHECK (g_str_has_prefix (error->message, "fuzz.thrift:"));
    line = g_ascii_strtoull (error->message + strlen ("fuzz.thrift:"), NULL, 10);
    FUZZ_CHECK (line >= 1 && line <= lines);
    return 0;
  }
  FUZZ_CHECK (error == NULL);
  /* Lookups of every word of the input, as a method and as "A:B". */
  {
    g_autofree char *text = g_strndup ((const char *) data, size);
    g_auto (GStrv) words = g_strsplit_set (text, " \t\n(){}<>,;=", -1);
    for (guint i = 0; words[i] != NULL; i++) {
      const TrThriftIdlStruct *args = tr_thrift_idl_lookup_method (idl, words[i]);
      g_autofree char *multiplexed = g_strdup_printf ("%s:%s", words[i], words[i + 1] != NULL ? words[i + 1] : "");
      if (args != NULL)
        check_struct (args);
      if ((args = tr_thrift_idl_lookup_method (idl, multiplexed)) != NULL)
        check_struct (args);
    }
  }
  return 0;
}
