/* test_tr_frame.c - the Thrift frame/header codec (router/net/tr_frame.h).
 * Reference bytes are the captures in ../shared/THRIFT.md §3 and a
 * python3-thrift serialization of a TApplicationException. */
#include <criterion/criterion.h>
#include <string.h>

#include "tr_frame.h"
#include "tr_test_util.h"

/* log_event(b"abc"), framed, as sent by the Python and c_glib clients. */
static const guint8 capture_call[] = {
  0x00, 0x00, 0x00, 0x20, 0x80, 0x01, 0x00, 0x01, 0x00, 0x00, 0x00, 0x09, 'l',  'o',
  'g',  '_',  'e',  'v',  'e',  'n',  't',  0x00, 0x00, 0x00, 0x00, 0x0b, 0x00, 0x01,
  0x00, 0x00, 0x00, 0x03, 'a',  'b',  'c',  0x00,
};
/* The void reply of every stock server to it (26 bytes, seqid 0). */
static const guint8 capture_reply[] = {
  0x00, 0x00, 0x00, 0x16, 0x80, 0x01, 0x00, 0x02, 0x00, 0x00, 0x00, 0x09, 'l',
  'o',  'g',  '_',  'e',  'v',  'e',  'n',  't',  0x00, 0x00, 0x00, 0x00, 0x00,
};
/* python3-thrift: writeMessageBegin("other", EXCEPTION, 7) +
 * TApplicationException(UNKNOWN_METHOD, "Unknown function other"). */
static const char python_exception_hex[] =
  "80010003000000056f74686572000000070b000100000016556e6b6e6f776e2066756e6374696f6e206f7468"
  "65720800020000000100";

static GByteArray *
from_hex (const char *hex)
{
  GByteArray *out = g_byte_array_new ();
  gsize n = strlen (hex);

  for (gsize i = 0; i + 1 < n; i += 2) {
    guint8 b = (guint8) (g_ascii_xdigit_value (hex[i]) << 4 | g_ascii_xdigit_value (hex[i + 1]));
    g_byte_array_append (out, &b, 1);
  }
  return out;
}

static void
assert_name (const TrMsgHeader *h, const char *name)
{
  cr_assert_eq (h->name_len, strlen (name));
  cr_assert (memcmp (h->name, name, h->name_len) == 0);
}

/* An old (non-strict) header message: name_len, name, i8 type, i32 seqid, body. */
static GByteArray *
build_old (const char *name, guint8 type, gint32 seqid, const guint8 *body, gsize body_len)
{
  GByteArray *out = g_byte_array_new ();
  guint8 word[4];

  tr_put_be32 (word, (guint32) strlen (name));
  g_byte_array_append (out, word, 4);
  g_byte_array_append (out, (const guint8 *) name, (guint) strlen (name));
  g_byte_array_append (out, &type, 1);
  tr_put_be32 (word, (guint32) seqid);
  g_byte_array_append (out, word, 4);
  g_byte_array_append (out, body, (guint) body_len);
  return out;
}

Test (tr_frame, be_helpers)
{
  guint8 b[8];

  tr_put_be32 (b, 0x01020304u);
  cr_assert (b[0] == 1 && b[3] == 4);
  cr_assert_eq (tr_get_be32 (b), 0x01020304u);
  tr_put_be16 (b, 0xabcd);
  cr_assert (b[0] == 0xab && b[1] == 0xcd);
  cr_assert_eq (tr_get_be16 (b), 0xabcd);
  tr_put_be64 (b, G_GUINT64_CONSTANT (0x0102030405060708));
  cr_assert (b[0] == 1 && b[7] == 8);
  cr_assert_eq (tr_get_be64 (b), G_GUINT64_CONSTANT (0x0102030405060708));
}

Test (tr_frame, capture_parses)
{
  guint32 len = 0;
  TrMsgHeader h;

  cr_assert_eq (tr_frame_next (capture_call, sizeof capture_call, TR_FRAME_DEFAULT_MAX_SIZE, &len),
                TR_FRAME_OK);
  cr_assert_eq (len, 0x20);
  cr_assert_eq (tr_frame_parse_header (capture_call + 4, len, &h), TR_FRAME_OK);
  cr_assert_eq (h.type, TR_MSG_CALL);
  assert_name (&h, "log_event");
  cr_assert_eq (h.seqid, 0);
  cr_assert (h.strict);
  cr_assert (h.seqid_valid);
  cr_assert_eq (h.seqid_offset, 4 + 4 + 9);
  cr_assert_eq (h.body_offset, 4 + 4 + 9 + 4);
  cr_assert_eq (capture_call[4 + h.body_offset], TR_TTYPE_STRING);
}

Test (tr_frame, void_reply_equals_capture)
{
  g_autoptr (GByteArray) out = g_byte_array_new ();

  tr_frame_build_void_reply (out, "log_event", 9, 0);
  cr_assert_eq (out->len, sizeof capture_reply);
  cr_assert_eq (out->len - 4, 13 + 9);
  cr_assert (memcmp (out->data, capture_reply, sizeof capture_reply) == 0);

  /* Builders append: a second reply follows the first. */
  tr_frame_build_void_reply (out, "log_event", 9, 0);
  cr_assert_eq (out->len, 2 * sizeof capture_reply);
  cr_assert (memcmp (out->data + sizeof capture_reply, capture_reply, sizeof capture_reply) == 0);
}

Test (tr_frame, reply_capture_parses_as_void_success)
{
  TrReply reply;

  cr_assert_eq (tr_frame_parse_reply (capture_reply + 4, sizeof capture_reply - 4, &reply),
                TR_FRAME_OK);
  cr_assert_eq (reply.header.type, TR_MSG_REPLY);
  cr_assert_eq (reply.result_field_id, -1);
  assert_name (&reply.header, "log_event");
}

Test (tr_frame, exception_matches_python_and_parses_back)
{
  g_autoptr (GByteArray) out = g_byte_array_new ();
  g_autoptr (GByteArray) python = from_hex (python_exception_hex);
  TrReply reply;

  tr_frame_build_exception (out, "other", 5, 7, TR_APP_EXC_UNKNOWN_METHOD,
                            "Unknown function other");
  cr_assert_eq (tr_get_be32 (out->data), out->len - 4);
  cr_assert_eq (out->len - 4, python->len);
  cr_assert (memcmp (out->data + 4, python->data, python->len) == 0);

  cr_assert_eq (tr_frame_parse_reply (out->data + 4, out->len - 4, &reply), TR_FRAME_OK);
  cr_assert_eq (reply.header.type, TR_MSG_EXCEPTION);
  cr_assert_eq (reply.header.seqid, 7);
  cr_assert_eq (reply.exception_type, TR_APP_EXC_UNKNOWN_METHOD);
  cr_assert_eq (reply.exception_message_len, strlen ("Unknown function other"));
  cr_assert (memcmp (reply.exception_message, "Unknown function other", 22) == 0);
}

Test (tr_frame, exception_without_message)
{
  g_autoptr (GByteArray) out = g_byte_array_new ();
  TrReply reply;

  tr_frame_build_exception (out, "x", 1, -5, TR_APP_EXC_PROTOCOL_ERROR, NULL);
  cr_assert_eq (tr_frame_parse_reply (out->data + 4, out->len - 4, &reply), TR_FRAME_OK);
  cr_assert_eq (reply.exception_type, TR_APP_EXC_PROTOCOL_ERROR);
  cr_assert_eq (reply.exception_message_len, 0);
  cr_assert_eq (reply.header.seqid, -5);
}

Test (tr_frame, exception_with_unknown_fields_and_missing_type)
{
  /* {3: list<struct{1: i64}>[1], 1: string "m", 9: map<i32,string>{}} : no type. */
  static const guint8 body[] = {
    0x0f, 0x00, 0x03, 0x0c, 0x00, 0x00, 0x00, 0x01, 0x0a, 0x00, 0x01, 0, 0, 0, 0, 0, 0, 0, 1, 0x00,
    0x0b, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 'm',
    0x0d, 0x00, 0x09, 0x08, 0x0b, 0x00, 0x00, 0x00, 0x00,
    0x00,
  };
  g_autoptr (GByteArray) out = g_byte_array_new ();
  TrReply reply;

  tr_frame_build_call (out, TR_MSG_EXCEPTION, "f", 1, 3, body, sizeof body);
  cr_assert_eq (tr_frame_parse_reply (out->data + 4, out->len - 4, &reply), TR_FRAME_OK);
  cr_assert_eq (reply.exception_type, TR_APP_EXC_UNKNOWN);
  cr_assert_eq (reply.exception_message_len, 1);
  cr_assert_eq (reply.exception_message[0], 'm');
}

Test (tr_frame, reply_with_declared_exception_field)
{
  /* result struct {1: struct Busy {}} */
  static const guint8 body[] = { 0x0c, 0x00, 0x01, 0x00, 0x00 };
  g_autoptr (GByteArray) out = g_byte_array_new ();
  TrReply reply;

  tr_frame_build_call (out, TR_MSG_REPLY, "log_event", 9, 1, body, sizeof body);
  cr_assert_eq (tr_frame_parse_reply (out->data + 4, out->len - 4, &reply), TR_FRAME_OK);
  cr_assert_eq (reply.result_field_id, 1);
}

Test (tr_frame, reply_rejects_call_and_garbage)
{
  TrReply reply;
  static const guint8 bad_body[] = { 0x07, 0x00, 0x01, 0x00 }; /* type 7 does not exist */
  g_autoptr (GByteArray) out = g_byte_array_new ();

  cr_assert_eq (tr_frame_parse_reply (capture_call + 4, sizeof capture_call - 4, &reply),
                TR_FRAME_BAD_TYPE);
  tr_frame_build_call (out, TR_MSG_REPLY, "a", 1, 1, bad_body, sizeof bad_body);
  cr_assert_eq (tr_frame_parse_reply (out->data + 4, out->len - 4, &reply), TR_FRAME_BAD_DATA);
  /* A reply cut inside its result struct. */
  cr_assert_eq (tr_frame_parse_reply (capture_reply + 4, sizeof capture_reply - 5, &reply),
                TR_FRAME_TRUNCATED);
}

Test (tr_frame, non_strict_header)
{
  static const guint8 body[] = { 0x0b, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 'z', 0x00 };
  g_autoptr (GByteArray) msg = build_old ("fire", TR_MSG_ONEWAY, 42, body, sizeof body);
  TrMsgHeader h;

  cr_assert_eq (tr_frame_parse_header (msg->data, msg->len, &h), TR_FRAME_OK);
  cr_assert_not (h.strict);
  cr_assert_eq (h.type, TR_MSG_ONEWAY);
  assert_name (&h, "fire");
  cr_assert_eq (h.seqid, 42);
  cr_assert_eq (h.seqid_offset, 4 + 4 + 1);
  cr_assert_eq (h.body_offset, 4 + 4 + 1 + 4);
  cr_assert (memcmp (msg->data + h.body_offset, body, sizeof body) == 0);
}

Test (tr_frame, non_strict_to_strict_push)
{
  static const guint8 body[] = { 0x0b, 0x00, 0x01, 0x00, 0x00, 0x00, 0x03, 'a', 'b', 'c', 0x00 };
  g_autoptr (GByteArray) msg = build_old ("log_event", TR_MSG_CALL, 0, body, sizeof body);
  guint8 prefix[TR_FRAME_PUSH_PREFIX_MAX];
  g_autoptr (GByteArray) joined = g_byte_array_new ();
  TrMsgHeader h;
  gsize n;

  cr_assert_eq (tr_frame_parse_header (msg->data, msg->len, &h), TR_FRAME_OK);
  /* What the push sends: prefix + body of the original message. */
  n = tr_frame_push_prefix (msg->data, msg->len, &h, 0, prefix);
  g_byte_array_append (joined, prefix, (guint) n);
  g_byte_array_append (joined, msg->data + h.body_offset, msg->len - (guint) h.body_offset);
  cr_assert_eq (joined->len, sizeof capture_call);
  cr_assert (memcmp (joined->data, capture_call, sizeof capture_call) == 0);
  /* The same with another seqid: a strict message carrying it. */
  g_byte_array_set_size (joined, 0);
  n = tr_frame_push_prefix (msg->data, msg->len, &h, 0x01020304, prefix);
  g_byte_array_append (joined, prefix, (guint) n);
  g_byte_array_append (joined, msg->data + h.body_offset, msg->len - (guint) h.body_offset);
  cr_assert_eq (joined->len, sizeof capture_call);
  {
    TrMsgHeader h2;
    cr_assert_eq (tr_frame_parse_header (joined->data + 4, sizeof capture_call - 4, &h2), TR_FRAME_OK);
    cr_assert (h2.strict);
    cr_assert_eq (h2.seqid, 0x01020304);
    cr_assert (memcmp (joined->data + 4 + h2.body_offset, body, sizeof body) == 0);
  }
}

Test (tr_frame, push_prefix_of_a_strict_message_changes_only_the_seqid)
{
  const guint8 *msg = capture_call + 4;
  gsize len = sizeof capture_call - 4;
  guint8 prefix[TR_FRAME_PUSH_PREFIX_MAX];
  TrMsgHeader h, h2;
  gsize n;

  cr_assert_eq (tr_frame_parse_header (msg, len, &h), TR_FRAME_OK);
  n = tr_frame_push_prefix (msg, len, &h, 123456, prefix);
  /* The original frame length and header, but for the 4 seqid bytes. */
  cr_assert_eq (n, 4 + h.body_offset);
  cr_assert (memcmp (prefix, capture_call, 4 + h.seqid_offset) == 0);
  cr_assert_eq (tr_frame_parse_header (prefix + 4, n - 4, &h2), TR_FRAME_OK);
  cr_assert_eq (h2.seqid, 123456);
  cr_assert_eq (h2.body_offset, h.body_offset);
}

/* Service seqids have no end; the wire carries their low 32 bits as an i32,
 * and a pushed message parses back to exactly that value. */
Test (tr_frame, wire_seqid_wraps_modulo_2_32)
{
  static const struct {
    guint64 seqid;
    gint32 wire;
  } cases[] = {
    { 1, 1 },
    { G_MAXINT32, G_MAXINT32 },
    { (guint64) G_MAXINT32 + 1, G_MININT32 },
    { (guint64) G_MAXINT32 + 2, G_MININT32 + 1 },
    { G_MAXUINT32, -1 },
    { (guint64) G_MAXUINT32 + 1, 0 },
    { (guint64) G_MAXUINT32 + 2, 1 },
    { ((guint64) 5 << 32) + 7, 7 },
  };
  guint8 msg[sizeof capture_call - 4];
  TrMsgHeader h;

  memcpy (msg, capture_call + 4, sizeof msg);
  cr_assert_eq (tr_frame_parse_header (msg, sizeof msg, &h), TR_FRAME_OK);
  for (guint i = 0; i < G_N_ELEMENTS (cases); i++) {
    guint8 prefix[TR_FRAME_PUSH_PREFIX_MAX];
    g_autoptr (GByteArray) joined = g_byte_array_new ();
    TrMsgHeader h2;
    gsize n;
    gint32 wire = tr_frame_wire_seqid (cases[i].seqid);

    cr_assert_eq (wire, cases[i].wire, "seqid %" G_GUINT64_FORMAT ": wire %d, expected %d", cases[i].seqid, wire,
                  cases[i].wire);
    /* Consecutive seqids stay consecutive on the wire, modulo 2^32. */
    cr_assert_eq ((guint32) tr_frame_wire_seqid (cases[i].seqid + 1), (guint32) wire + 1u);
    n = tr_frame_push_prefix (msg, sizeof msg, &h, wire, prefix);
    g_byte_array_append (joined, prefix + 4, (guint) n - 4);
    g_byte_array_append (joined, msg + h.body_offset, (guint) (sizeof msg - h.body_offset));
    cr_assert_eq (tr_frame_parse_header (joined->data, joined->len, &h2), TR_FRAME_OK);
    cr_assert_eq (h2.seqid, cases[i].wire);
  }
}

Test (tr_frame, build_call_round_trip)
{
  g_autoptr (GByteArray) out = g_byte_array_new ();
  TrMsgHeader h;
  guint32 len;

  tr_frame_build_call (out, TR_MSG_CALL, "log_event", 9, 0, capture_call + 25,
                       sizeof capture_call - 25);
  cr_assert_eq (out->len, sizeof capture_call);
  cr_assert (memcmp (out->data, capture_call, sizeof capture_call) == 0);

  g_byte_array_set_size (out, 0);
  tr_frame_build_call (out, TR_MSG_CALL, "__thriftrouter_barrier__",
                       24, 9, NULL, 0);
  cr_assert_eq (tr_frame_next (out->data, out->len, 1000, &len), TR_FRAME_OK);
  cr_assert_eq (tr_frame_parse_header (out->data + 4, len, &h), TR_FRAME_OK);
  cr_assert_eq (h.seqid, 9);
  cr_assert_eq (len - h.body_offset, 1); /* empty args struct */
  cr_assert_eq (out->data[4 + h.body_offset], TR_TTYPE_STOP);
}

Test (tr_frame, truncated_at_every_position)
{
  guint32 len;
  TrMsgHeader h;

  for (gsize cut = 0; cut < sizeof capture_call; cut++) {
    TrFrameStatus s = tr_frame_next (capture_call, cut, TR_FRAME_DEFAULT_MAX_SIZE, &len);
    cr_assert_eq (s, TR_FRAME_NEED_MORE, "cut %zu: %s", cut, tr_frame_status_to_string (s));
  }
  /* A frame whose length covers less than its header. */
  for (gsize cut = 0; cut < 21; cut++) {
    TrFrameStatus s = tr_frame_parse_header (capture_call + 4, cut, &h);
    cr_assert_eq (s, TR_FRAME_TRUNCATED, "cut %zu: %s", cut, tr_frame_status_to_string (s));
  }
  /* The old header too. */
  {
    g_autoptr (GByteArray) msg = build_old ("fire", TR_MSG_ONEWAY, 1, NULL, 0);
    for (gsize cut = 0; cut < msg->len; cut++)
      cr_assert_eq (tr_frame_parse_header (msg->data, cut, &h), TR_FRAME_TRUNCATED, "cut %zu", cut);
    cr_assert_eq (tr_frame_parse_header (msg->data, msg->len, &h), TR_FRAME_OK);
  }
}

Test (tr_frame, bad_frame_lengths)
{
  guint8 buf[8] = { 0 };
  guint32 len = 0;

  tr_put_be32 (buf, 0);
  cr_assert_eq (tr_frame_next (buf, 8, 1000, &len), TR_FRAME_BAD_LENGTH);
  tr_put_be32 (buf, 0xffffffffu); /* -1 */
  cr_assert_eq (tr_frame_next (buf, 8, 1000, &len), TR_FRAME_BAD_LENGTH);
  tr_put_be32 (buf, 0x80010001u); /* an unframed strict message */
  cr_assert_eq (tr_frame_next (buf, 8, G_MAXUINT32, &len), TR_FRAME_BAD_LENGTH);
  tr_put_be32 (buf, TR_FRAME_MIN_MESSAGE_SIZE - 1);
  cr_assert_eq (tr_frame_next (buf, 8, 1000, &len), TR_FRAME_BAD_LENGTH);
  tr_put_be32 (buf, 1001);
  cr_assert_eq (tr_frame_next (buf, 8, 1000, &len), TR_FRAME_TOO_LARGE);
  tr_put_be32 (buf, 1000);
  cr_assert_eq (tr_frame_next (buf, 8, 1000, &len), TR_FRAME_NEED_MORE);
  cr_assert_eq (len, 1000); /* known once the prefix is in */
  cr_assert_eq (tr_frame_next (capture_call, sizeof capture_call, 0x1f, &len), TR_FRAME_TOO_LARGE);
}

Test (tr_frame, bad_version_and_type)
{
  guint8 msg[sizeof capture_call - 4];
  TrMsgHeader h;

  memcpy (msg, capture_call + 4, sizeof msg);
  msg[1] = 0x02; /* 0x8002 */
  cr_assert_eq (tr_frame_parse_header (msg, sizeof msg, &h), TR_FRAME_BAD_VERSION);
  msg[1] = 0x01;
  msg[0] = 0xff; /* 0xff01 */
  cr_assert_eq (tr_frame_parse_header (msg, sizeof msg, &h), TR_FRAME_BAD_VERSION);
  msg[0] = 0x80;
  for (guint type = 0; type < 256; type++) {
    msg[3] = (guint8) type;
    TrFrameStatus expect = type >= 1 && type <= 4 ? TR_FRAME_OK : TR_FRAME_BAD_TYPE;
    cr_assert_eq (tr_frame_parse_header (msg, sizeof msg, &h), expect, "type %u", type);
    /* The seqid is still readable: the producer can get PROTOCOL_ERROR. */
    cr_assert (h.seqid_valid);
  }
  msg[3] = 1;
  msg[2] = 0x01; /* unused byte must be 0 */
  cr_assert_eq (tr_frame_parse_header (msg, sizeof msg, &h), TR_FRAME_BAD_TYPE);
  {
    g_autoptr (GByteArray) old = build_old ("fire", 9, 1, NULL, 0);
    cr_assert_eq (tr_frame_parse_header (old->data, old->len, &h), TR_FRAME_BAD_TYPE);
    cr_assert (h.seqid_valid);
    cr_assert_eq (h.seqid, 1);
  }
}

Test (tr_frame, bad_names)
{
  char long_name[TR_FRAME_MAX_NAME_LEN + 2];
  g_autoptr (GByteArray) out = g_byte_array_new ();
  g_autoptr (GByteArray) old = NULL;
  TrMsgHeader h;
  guint8 word[4];

  memset (long_name, 'a', sizeof long_name - 1);
  long_name[sizeof long_name - 1] = '\0';
  /* 256 bytes of name: too long, in both header forms. */
  old = build_old (long_name, TR_MSG_CALL, 5, NULL, 0);
  cr_assert_eq (tr_frame_parse_header (old->data, old->len, &h), TR_FRAME_NAME_TOO_LONG);
  cr_assert (h.seqid_valid);
  cr_assert_eq (h.seqid, 5);
  /* Exactly 255 is fine. */
  tr_frame_build_call (out, TR_MSG_CALL, long_name, TR_FRAME_MAX_NAME_LEN, 0, NULL, 0);
  cr_assert_eq (tr_frame_parse_header (out->data + 4, out->len - 4, &h), TR_FRAME_OK);
  /* A huge length beyond the message. */
  g_byte_array_set_size (out, 0);
  tr_put_be32 (word, TR_FRAME_VERSION_1 | TR_MSG_CALL);
  g_byte_array_append (out, word, 4);
  tr_put_be32 (word, 0x7fffffff);
  g_byte_array_append (out, word, 4);
  g_byte_array_append (out, (const guint8 *) "abcdefgh", 8);
  cr_assert_eq (tr_frame_parse_header (out->data, out->len, &h), TR_FRAME_NAME_TOO_LONG);
  /* A negative length. */
  tr_put_be32 (out->data + 4, 0xfffffffeu);
  cr_assert_eq (tr_frame_parse_header (out->data, out->len, &h), TR_FRAME_BAD_NAME_LENGTH);
  /* Empty and invalid characters. */
  {
    static const char *const bad[] = { "", "log event", "a/b", "caf\xc3\xa9", "x\n", "a\0b" };
    for (guint i = 0; i < G_N_ELEMENTS (bad); i++) {
      gsize n = i == 5 ? 3 : strlen (bad[i]);
      g_byte_array_set_size (out, 0);
      tr_frame_build_call (out, TR_MSG_CALL, bad[i], n, 77, NULL, 0);
      cr_assert_eq (tr_frame_parse_header (out->data + 4, out->len - 4, &h), TR_FRAME_BAD_NAME,
                    "name %u", i);
      cr_assert (h.seqid_valid);
      cr_assert_eq (h.seqid, 77);
    }
  }
}

Test (tr_frame, rpc_name_validator)
{
  cr_assert (tr_frame_valid_rpc_name ("log_event", 9));
  cr_assert (tr_frame_valid_rpc_name ("Svc:method.v2", 13));
  cr_assert (tr_frame_valid_rpc_name ("__thriftrouter_barrier__", 24));
  cr_assert (tr_frame_valid_rpc_name ("log_event trailing", 9)); /* length-bounded */
  cr_assert_not (tr_frame_valid_rpc_name ("", 0));
  cr_assert_not (tr_frame_valid_rpc_name (NULL, 0));
  cr_assert_not (tr_frame_valid_rpc_name ("a-b", 3));
  cr_assert_not (tr_frame_valid_rpc_name ("a b", 3));
}

Test (tr_frame, status_strings)
{
  for (int s = TR_FRAME_OK; s <= TR_FRAME_TOO_DEEP; s++) {
    const char *text = tr_frame_status_to_string ((TrFrameStatus) s);
    cr_assert_not_null (text);
    cr_assert_str_neq (text, "unknown frame status", "status %d", s);
  }
  cr_assert_str_eq (tr_frame_status_to_string (TR_FRAME_TRUNCATED), "truncated message");
}

/* ---- tr_frame_skip ---- */

/* struct { 1: struct { 1: list<map<string, list<i16>>> [ {"k": [1, 2]} ], 2: set<double>{1.0},
 *                      3: bool, 4: byte, 5: uuid } } */
static const guint8 nested[] = {
  0x0c, 0x00, 0x01,                                     /* field 1: struct */
  0x0f, 0x00, 0x01, 0x0d, 0x00, 0x00, 0x00, 0x01,       /*   1: list<map>[1] */
  0x0b, 0x0f, 0x00, 0x00, 0x00, 0x01,                   /*     map<string,list>{1} */
  0x00, 0x00, 0x00, 0x01, 'k',                          /*       "k" */
  0x06, 0x00, 0x00, 0x00, 0x02, 0x00, 0x01, 0x00, 0x02, /*       list<i16>[1,2] */
  0x0e, 0x00, 0x02, 0x04, 0x00, 0x00, 0x00, 0x01,       /*   2: set<double>{1} */
  0x3f, 0xf0, 0, 0, 0, 0, 0, 0,
  0x02, 0x00, 0x03, 0x01,                               /*   3: bool */
  0x03, 0x00, 0x04, 0x7f,                               /*   4: byte */
  0x10, 0x00, 0x05, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, /* 5: uuid */
  0x00,                                                 /* end inner */
  0x00,                                                 /* end outer */
};

Test (tr_frame, skip_nested)
{
  gsize pos = 0;

  /* outer struct, inner struct, list, map, list<i16>: 5 levels. */
  cr_assert_eq (tr_frame_skip (nested, sizeof nested, &pos, TR_TTYPE_STRUCT, 5), TR_FRAME_OK);
  cr_assert_eq (pos, sizeof nested);
  pos = 0;
  cr_assert_eq (tr_frame_skip (nested, sizeof nested, &pos, TR_TTYPE_STRUCT, 4), TR_FRAME_TOO_DEEP);
  for (gsize cut = 0; cut < sizeof nested; cut++) {
    pos = 0;
    cr_assert_eq (tr_frame_skip (nested, cut, &pos, TR_TTYPE_STRUCT, 64), TR_FRAME_TRUNCATED,
                  "cut %zu", cut);
  }
}

Test (tr_frame, skip_scalars_and_bad_data)
{
  static const guint8 i64[8] = { 0 };
  static const guint8 negative_list[] = { 0x08, 0xff, 0xff, 0xff, 0xff };
  static const guint8 negative_string[] = { 0xff, 0xff, 0xff, 0xff };
  static const guint8 bad_field[] = { 0x05, 0x00, 0x01, 0x00 };
  gsize pos = 0;

  cr_assert_eq (tr_frame_skip (i64, 8, &pos, TR_TTYPE_I64, 0), TR_FRAME_OK);
  cr_assert_eq (pos, 8);
  pos = 0;
  cr_assert_eq (tr_frame_skip (i64, 7, &pos, TR_TTYPE_DOUBLE, 0), TR_FRAME_TRUNCATED);
  pos = 0;
  cr_assert_eq (tr_frame_skip (negative_list, 5, &pos, TR_TTYPE_LIST, 1), TR_FRAME_BAD_DATA);
  pos = 0;
  cr_assert_eq (tr_frame_skip (negative_string, 4, &pos, TR_TTYPE_STRING, 0), TR_FRAME_BAD_DATA);
  pos = 0;
  cr_assert_eq (tr_frame_skip (bad_field, 4, &pos, TR_TTYPE_STRUCT, 1), TR_FRAME_BAD_DATA);
  pos = 0;
  cr_assert_eq (tr_frame_skip (i64, 8, &pos, TR_TTYPE_STOP, 1), TR_FRAME_BAD_DATA);
  pos = 0;
  cr_assert_eq (tr_frame_skip (i64, 8, &pos, TR_TTYPE_VOID, 1), TR_FRAME_BAD_DATA);
}

Test (tr_frame, skip_depth_bomb)
{
  /* 1000 nested lists of lists: rejected at the depth limit, no stack blow-up. */
  g_autoptr (GByteArray) bomb = g_byte_array_new ();
  static const guint8 level[] = { 0x0f, 0x00, 0x00, 0x00, 0x01 };
  gsize pos = 0;

  for (int i = 0; i < 1000; i++)
    g_byte_array_append (bomb, level, sizeof level);
  cr_assert_eq (tr_frame_skip (bomb->data, bomb->len, &pos, TR_TTYPE_LIST, TR_FRAME_MAX_DEPTH),
                TR_FRAME_TOO_DEEP);
}

Test (tr_frame, huge_counts_fail_fast)
{
  /* list<i64> claiming 2^31-1 elements with 8 bytes present. */
  static const guint8 huge[] = { 0x0a, 0x7f, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0 };
  gsize pos = 0;

  cr_assert_eq (tr_frame_skip (huge, sizeof huge, &pos, TR_TTYPE_LIST, 1), TR_FRAME_TRUNCATED);
}

/* Mutated and random inputs: never read out of bounds (run under ASan in CI),
 * and whatever is accepted is self-consistent. */
Test (tr_frame, random_mutations_are_safe)
{
  g_autoptr (GRand) rand = g_rand_new_with_seed (tr_test_seed ());
  guint8 buf[64];

  for (int round = 0; round < 20000; round++) {
    gsize len = sizeof capture_reply - 4;
    TrMsgHeader h;
    TrReply reply;
    guint32 frame_len;
    gsize pos = 0;

    if (round % 2 == 0) {
      memcpy (buf, capture_call + 4, sizeof capture_call - 4);
      len = sizeof capture_call - 4;
    } else {
      memcpy (buf, capture_reply + 4, len);
    }
    for (int flips = g_rand_int_range (rand, 1, 4); flips > 0; flips--)
      buf[g_rand_int_range (rand, 0, (gint32) len)] = (guint8) g_rand_int_range (rand, 0, 256);
    len = (gsize) g_rand_int_range (rand, 0, (gint32) len + 1);
    if (tr_frame_parse_header (buf, len, &h) == TR_FRAME_OK) {
      cr_assert (h.body_offset <= len && h.seqid_offset + 4 == h.body_offset);
      cr_assert (h.name + h.name_len <= buf + len);
    }
    if (tr_frame_parse_reply (buf, len, &reply) == TR_FRAME_OK && reply.exception_message)
      cr_assert (reply.exception_message + reply.exception_message_len <= buf + len);
    (void) tr_frame_skip (buf, len, &pos, (guint8) g_rand_int_range (rand, 0, 20), 8);
    (void) tr_frame_next (buf, len, 64, &frame_len);
  }
}

Test (tr_frame, read_field_begin)
{
  /* i32 field 7 = 5, then STOP. */
  static const guint8 body[] = { TR_TTYPE_I32, 0x00, 0x07, 0, 0, 0, 5, TR_TTYPE_STOP };
  gsize pos = 0;
  guint8 type = 0xff;
  gint16 id = -1;

  cr_assert_eq (tr_frame_read_field_begin (body, sizeof body, &pos, &type, &id), TR_FRAME_OK);
  cr_assert_eq (type, TR_TTYPE_I32);
  cr_assert_eq (id, 7);
  cr_assert_eq (pos, 3);
  pos += 4;
  cr_assert_eq (tr_frame_read_field_begin (body, sizeof body, &pos, &type, &id), TR_FRAME_OK);
  cr_assert_eq (type, TR_TTYPE_STOP);
  cr_assert_eq (id, 0);
  cr_assert_eq (pos, sizeof body);
  /* Every cut inside a field header is TRUNCATED, never a read past it. */
  for (gsize cut = 0; cut < 3; cut++) {
    pos = 0;
    cr_assert_eq (tr_frame_read_field_begin (body, cut, &pos, &type, &id), TR_FRAME_TRUNCATED, "cut %zu", cut);
  }
}

/* The first bytes of what stock clients send when set up with the wrong
 * transport or protocol each get a hint naming the mistake; a well-formed
 * framed binary call, and bytes too short to tell, get none. */
Test (tr_frame, protocol_hint_names_the_wrong_transport_or_protocol)
{
  static const struct {
    const char *what;
    guint8 bytes[8];
    gsize len;
    const char *expect; /* a word the hint must contain, or NULL for none */
  } cases[] = {
    { "unframed binary", { 0x80, 0x01, 0x00, 0x01, 0x00, 0x00, 0x00, 0x09 }, 8, "TFramedTransport" },
    { "unframed compact", { 0x82, 0x21, 0x00, 0x09, 'l', 'o', 'g', '_' }, 8, "compact" },
    { "framed compact", { 0x00, 0x00, 0x00, 0x20, 0x82, 0x21, 0x00, 0x09 }, 8, "TBinaryProtocol" },
    { "THeader", { 0x00, 0x00, 0x00, 0x30, 0x0f, 0xff, 0x00, 0x00 }, 8, "THeader" },
    { "HTTP", { 'P', 'O', 'S', 'T', ' ', '/', ' ', 'H' }, 8, "HTTP" },
    { "TLS", { 0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01 }, 8, "TLS" },
    { "framed binary", { 0x00, 0x00, 0x00, 0x20, 0x80, 0x01, 0x00, 0x01 }, 8, NULL },
    { "one byte", { 0x80 }, 1, NULL },
    { "short framed", { 0x00, 0x00, 0x00, 0x20, 0x82 }, 5, NULL },
  };

  for (guint i = 0; i < G_N_ELEMENTS (cases); i++) {
    const char *hint = tr_frame_protocol_hint (cases[i].bytes, cases[i].len);
    if (cases[i].expect == NULL)
      cr_assert_null (hint, "%s: unexpected hint \"%s\"", cases[i].what, hint);
    else
      cr_assert (hint != NULL && strstr (hint, cases[i].expect) != NULL, "%s: hint \"%s\" lacks \"%s\"",
                 cases[i].what, hint ? hint : "(none)", cases[i].expect);
  }
  /* The whole capture of a stock call is well-formed: no hint. */
  cr_assert_null (tr_frame_protocol_hint (capture_call, sizeof capture_call));
}
