/* fuzz_thrift_value.c - libFuzzer harness for the Thrift value tree decoder
 * (tr_thrift_value_decode_struct, router/net/tr_thrift_value.h), which
 * tr-admin dump runs on stored producer messages.
 *
 * The input is a struct body.  Invariants: the decoder accepts exactly what
 * tr_frame_skip (the hot path's skipper) accepts, with the same depth limit,
 * and ends at the same offset; the tree it returns has one child per field,
 * element, or key and value, within the input's size. */
#include "fuzz_util.h"
#include "tr_thrift_value.h"

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

/* Counts the values of the tree; checks each container's shape. */
static gsize
check_tree (const TrThriftValue *v, gsize size)
{
  gsize n = 1;
  guint children = v->children != NULL ? v->children->len : 0;

  if (v->type == TR_TTYPE_MAP)
    FUZZ_CHECK (children % 2 == 0);
  if (v->type == TR_TTYPE_STRING || v->type == TR_TTYPE_UUID)
    FUZZ_CHECK (v->len <= size);
  for (guint i = 0; i < children; i++)
    n += check_tree (g_ptr_array_index (v->children, i), size);
  return n;
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  g_autoptr (TrThriftValue) value = NULL;
  gsize decoded_end = 0, skipped_end = 0;
  TrFrameStatus decoded = tr_thrift_value_decode_struct (data, size, &decoded_end, &value);
  TrFrameStatus skipped = tr_frame_skip (data, size, &skipped_end, TR_TTYPE_STRUCT, TR_FRAME_MAX_DEPTH);

  FUZZ_CHECK ((decoded == TR_FRAME_OK) == (skipped == TR_FRAME_OK));
  FUZZ_CHECK ((decoded == TR_FRAME_OK) == (value != NULL));
  if (decoded != TR_FRAME_OK)
    return 0;
  FUZZ_CHECK (decoded_end == skipped_end && decoded_end <= size);
  FUZZ_CHECK (value->type == TR_TTYPE_STRUCT);
  /* Every value takes at least one input byte (a field header: three). */
  FUZZ_CHECK (check_tree (value, size) <= size + 1);
  return 0;
}
