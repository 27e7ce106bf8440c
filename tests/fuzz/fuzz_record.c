/* fuzz_record.c - libFuzzer harness for the record frame codec
 * (storage/tr_record.h).
 *
 * tr_record_decode runs at every offset of the input and on every prefix
 * of it.  A record that decodes OK must re-encode (tr_record_encode) to
 * identical bytes and be found again by tr_record_peek_len; NEED_MORE must
 * mean that the bytes seen so far are a plausible header; once a prefix is
 * CORRUPT no longer prefix may decode OK or NEED_MORE. */
#include <string.h>

#include "fuzz_util.h"
#include "tr_record.h"

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
check_ok (const guint8 *buf, gsize avail, guint32 max_len, const TrRecordView *v)
{
  g_autoptr (GBytes) again = NULL;
  guint32 peek = 0;

  FUZZ_CHECK (v->type != 0);
  FUZZ_CHECK (v->len <= max_len);
  FUZZ_CHECK (v->total == TR_RECORD_SIZE (v->len) && v->total <= avail);
  FUZZ_CHECK (v->payload == buf + TR_RECORD_HEADER_SIZE);
  FUZZ_CHECK (tr_record_peek_len (buf, max_len, &peek) && peek == v->len);
  again = tr_record_encode (v->type, v->payload, v->len);
  FUZZ_CHECK (g_bytes_get_size (again) == v->total);
  FUZZ_CHECK (memcmp (g_bytes_get_data (again, NULL), buf, v->total) == 0);
}

/* NEED_MORE: every byte of the header seen so far is plausible. */
static void
check_need_more (const guint8 *buf, gsize avail, guint32 max_len)
{
  if (avail >= TR_RECORD_HEADER_SIZE) {
    guint32 len = 0;

    FUZZ_CHECK (tr_record_peek_len (buf, max_len, &len));
    FUZZ_CHECK (TR_RECORD_SIZE (len) > avail);
    return;
  }
  FUZZ_CHECK (avail <= 4 || buf[4] != 0);
  FUZZ_CHECK (avail <= 5 || buf[5] == TR_RECORD_VERSION);
  FUZZ_CHECK (avail <= 6 || buf[6] == 0);
  FUZZ_CHECK (avail <= 7 || buf[7] == 0);
}

static void
decode_at (const guint8 *buf, gsize avail, guint32 max_len)
{
  TrRecordView v;

  switch (tr_record_decode (buf, avail, max_len, &v)) {
  case TR_RECORD_OK:
    check_ok (buf, avail, max_len, &v);
    break;
  case TR_RECORD_NEED_MORE:
    check_need_more (buf, avail, max_len);
    break;
  case TR_RECORD_CORRUPT:
    break;
  default:
    FUZZ_CHECK (!"unknown status");
  }
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  /* A copy of exactly @size bytes so ASan sees any read past the end. */
  g_autofree guint8 *buf = g_memdup2 (data, size ? size : 1);
  TrRecordStatus prev = TR_RECORD_NEED_MORE;
  guint32 max_len = size > 0 ? data[0] : 0;

  for (gsize off = 0; off <= size; off++) {
    decode_at (buf + off, size - off, G_MAXUINT32);
    decode_at (buf + off, size - off, max_len); /* a tight limit too */
  }

  /* Every prefix at offset 0: NEED_MORE until the record is complete, then
   * OK or CORRUPT for good. */
  for (gsize n = 0; n <= size; n++) {
    TrRecordView v;
    TrRecordStatus st = tr_record_decode (buf, n, G_MAXUINT32, &v);

    if (prev == TR_RECORD_CORRUPT)
      FUZZ_CHECK (st == TR_RECORD_CORRUPT);
    if (prev == TR_RECORD_OK)
      FUZZ_CHECK (st == TR_RECORD_OK);
    prev = st;
  }
  return 0;
}
