/* fuzz_frame.c - libFuzzer harness for the Thrift frame/header codec
 * (router/net/tr_frame.h).
 *
 * The input is parsed twice: as one message payload, and as a connection's
 * byte stream (tr_frame_next in a loop, each frame payload parsed).  Every
 * payload goes through tr_frame_parse_header, tr_frame_parse_reply and
 * tr_frame_skip with every type id; when the header parses, the push path
 * (tr_frame_push_prefix followed by the body, as the push sends it) must
 * produce a strict framed message that re-parses to the same name, type
 * and body with the new seqid. */
#include <string.h>

#include "fuzz_util.h"
#include "tr_frame.h"

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
check_round_trip (const guint8 *msg, gsize len, const TrMsgHeader *h)
{
  gint32 seqid = (gint32) ((guint32) h->seqid ^ 0x5a5a5a5au);
  guint8 prefix[TR_FRAME_PUSH_PREFIX_MAX];
  gsize prefix_len = tr_frame_push_prefix (msg, len, h, seqid, prefix);
  g_autoptr (GByteArray) strict = g_byte_array_new ();
  const guint8 *s;
  gsize slen;
  gsize body_len = len - h->body_offset;
  guint32 frame_len = 0;
  TrMsgHeader h2;

  FUZZ_CHECK (prefix_len > 0 && prefix_len <= TR_FRAME_PUSH_PREFIX_MAX);
  g_byte_array_append (strict, prefix, (guint) prefix_len);
  g_byte_array_append (strict, msg + h->body_offset, (guint) body_len);
  s = strict->data;
  slen = strict->len;
  FUZZ_CHECK (tr_frame_next (s, slen, G_MAXUINT32, &frame_len) == TR_FRAME_OK);
  FUZZ_CHECK ((gsize) frame_len + TR_FRAME_LEN_SIZE == slen);
  FUZZ_CHECK (tr_frame_parse_header (s + TR_FRAME_LEN_SIZE, frame_len, &h2) == TR_FRAME_OK);
  FUZZ_CHECK (h2.strict && h2.seqid_valid);
  FUZZ_CHECK (h2.type == h->type);
  FUZZ_CHECK (h2.seqid == seqid);
  FUZZ_CHECK (h2.name_len == h->name_len && memcmp (h2.name, h->name, h->name_len) == 0);
  FUZZ_CHECK (h2.body_offset + body_len == frame_len);
  FUZZ_CHECK (body_len == 0 || memcmp (s + TR_FRAME_LEN_SIZE + h2.body_offset, msg + h->body_offset, body_len) == 0);

}

static void
fuzz_payload (const guint8 *msg, gsize len)
{
  TrMsgHeader h;
  TrReply reply;
  TrFrameStatus st;

  memset (&h, 0, sizeof h);
  st = tr_frame_parse_header (msg, len, &h);
  FUZZ_CHECK (tr_frame_status_to_string (st) != NULL);
  if (st == TR_FRAME_OK) {
    FUZZ_CHECK (h.type >= TR_MSG_CALL && h.type <= TR_MSG_ONEWAY);
    FUZZ_CHECK (h.seqid_valid);
    FUZZ_CHECK (h.seqid_offset + 4 <= h.body_offset && h.body_offset <= len);
    FUZZ_CHECK (h.name >= msg && h.name + h.name_len <= msg + len);
    FUZZ_CHECK (tr_frame_valid_rpc_name ((const char *) h.name, h.name_len));
    FUZZ_CHECK (tr_get_be32 (msg + h.seqid_offset) == (guint32) h.seqid);
    check_round_trip (msg, len, &h);
  } else if (h.seqid_valid) {
    FUZZ_CHECK (h.seqid_offset + 4 <= len);
  }

  memset (&reply, 0, sizeof reply);
  st = tr_frame_parse_reply (msg, len, &reply);
  FUZZ_CHECK (tr_frame_status_to_string (st) != NULL);
  if (st == TR_FRAME_OK) {
    FUZZ_CHECK (reply.header.type == TR_MSG_REPLY || reply.header.type == TR_MSG_EXCEPTION);
    FUZZ_CHECK (reply.header.body_offset <= len);
    if (reply.exception_message != NULL)
      FUZZ_CHECK (reply.exception_message >= msg
                  && reply.exception_message + reply.exception_message_len <= msg + len);
  }

  /* tr_frame_skip with every type id (and a few invalid ones), from the
   * start and from the body offset when the header parsed. */
  for (guint t = 0; t <= 17; t++) {
    gsize off = 0;

    if (tr_frame_skip (msg, len, &off, (guint8) t, TR_FRAME_MAX_DEPTH) == TR_FRAME_OK)
      FUZZ_CHECK (off <= len);
    if (st == TR_FRAME_OK || h.seqid_valid) {
      off = MIN (h.body_offset, len);
      if (tr_frame_skip (msg, len, &off, (guint8) t, TR_FRAME_MAX_DEPTH) == TR_FRAME_OK)
        FUZZ_CHECK (off <= len);
    }
  }
  {
    gsize off = 0;
    if (tr_frame_skip (msg, len, &off, 0xff, 1) == TR_FRAME_OK)
      FUZZ_CHECK (off <= len);
  }
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  gsize pos = 0;

  /* The whole input as one payload (the fuzzer need not learn the length
   * prefix to reach the header and body parsers). */
  fuzz_payload (data, size);

  /* The input as a connection's byte stream. */
  while (pos < size) {
    guint32 frame_len = 0;
    TrFrameStatus st = tr_frame_next (data + pos, size - pos, TR_FRAME_DEFAULT_MAX_SIZE, &frame_len);

    FUZZ_CHECK (tr_frame_status_to_string (st) != NULL);
    if (st != TR_FRAME_OK) {
      if (st == TR_FRAME_NEED_MORE && size - pos >= TR_FRAME_LEN_SIZE)
        FUZZ_CHECK ((gsize) frame_len + TR_FRAME_LEN_SIZE > size - pos);
      break;
    }
    FUZZ_CHECK (frame_len >= TR_FRAME_MIN_MESSAGE_SIZE && frame_len <= TR_FRAME_DEFAULT_MAX_SIZE);
    FUZZ_CHECK ((gsize) frame_len + TR_FRAME_LEN_SIZE <= size - pos);
    {
      /* Copy the payload so ASan sees reads past its end. */
      g_autofree guint8 *payload = g_memdup2 (data + pos + TR_FRAME_LEN_SIZE, frame_len);
      fuzz_payload (payload, frame_len);
    }
    pos += TR_FRAME_LEN_SIZE + frame_len;
  }
  return 0;
}
