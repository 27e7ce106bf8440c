/* test_tr_thrift_value.c - the hand-written Thrift binary-protocol value
 * codec (router/net/tr_thrift_value.h): exact bytes of the writer against the
 * binary protocol (big-endian, field = type byte + i16 id), the reader on
 * the same bytes, and its answers to truncated and hostile input. */
#include <criterion/criterion.h>
#include <string.h>

#include "tr_thrift_value.h"

static void
assert_bytes (const GByteArray *out, const guint8 *expected, gsize len)
{
  cr_assert_eq (out->len, len, "length %u, expected %zu", out->len, len);
  for (gsize i = 0; i < len; i++)
    cr_assert_eq (out->data[i], expected[i], "byte %zu: 0x%02x, expected 0x%02x", i, out->data[i], expected[i]);
}

Test (tr_thrift_value, writer_bytes_follow_the_binary_protocol)
{
  g_autoptr (GByteArray) out = g_byte_array_new ();
  static const guint8 expected[] = {
    0x02, 0x00, 0x01, 0x01,                                           /* 1: bool true */
    0x08, 0x00, 0x02, 0xff, 0xff, 0xff, 0xfe,                         /* 2: i32 -2 */
    0x0a, 0x00, 0x03, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, /* 3: i64 */
    0x04, 0x00, 0x04, 0x3f, 0xf8, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, /* 4: double 1.5 */
    0x0b, 0x00, 0x05, 0x00, 0x00, 0x00, 0x02, 'h', 'i',               /* 5: string "hi" */
    0x0b, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00,                         /* 256: NULL string = "" */
    0x0f, 0x00, 0x06, 0x0b, 0x00, 0x00, 0x00, 0x01,                   /* 6: list<string> [1] */
    0x00, 0x00, 0x00, 0x01, 'x',                                      /*    "x" */
    0x00,                                                             /* stop */
  };

  tr_thrift_write_field_bool (out, 1, TRUE);
  tr_thrift_write_field_i32 (out, 2, -2);
  tr_thrift_write_field_i64 (out, 3, G_GINT64_CONSTANT (0x0102030405060708));
  tr_thrift_write_field_double (out, 4, 1.5);
  tr_thrift_write_field_string (out, 5, "hi");
  tr_thrift_write_field_string (out, 256, NULL);
  tr_thrift_write_field_begin (out, TR_TTYPE_LIST, 6);
  tr_thrift_write_list_begin (out, TR_TTYPE_STRING, 1);
  tr_thrift_write_string (out, "x");
  tr_thrift_write_field_stop (out);
  assert_bytes (out, expected, sizeof expected);
}

Test (tr_thrift_value, reader_walks_what_the_writer_wrote)
{
  g_autoptr (GByteArray) out = g_byte_array_new ();
  static const guint8 blob[] = { 0x00, 0xff, 0x10 };
  TrThriftReader reader;
  guint8 type;
  gint16 id;
  gboolean b = FALSE;
  gint32 i32 = 0;
  gint64 i64 = 0;
  const guint8 *data;
  gsize len;

  tr_thrift_write_field_bool (out, 3, TRUE);
  tr_thrift_write_field_i32 (out, -7, G_MININT32);
  tr_thrift_write_field_i64 (out, 32767, G_MAXINT64);
  tr_thrift_write_field_begin (out, TR_TTYPE_STRING, 9);
  tr_thrift_write_binary (out, blob, sizeof blob);
  tr_thrift_write_field_double (out, 10, -0.25); /* skipped by the reader */
  tr_thrift_write_field_stop (out);

  tr_thrift_reader_init (&reader, out->data, out->len);
  cr_assert_eq (tr_thrift_read_field_begin (&reader, &type, &id), TR_FRAME_OK);
  cr_assert (type == TR_TTYPE_BOOL && id == 3);
  cr_assert_eq (tr_thrift_read_bool (&reader, &b), TR_FRAME_OK);
  cr_assert (b);
  cr_assert_eq (tr_thrift_read_field_begin (&reader, &type, &id), TR_FRAME_OK);
  cr_assert (type == TR_TTYPE_I32 && id == -7);
  cr_assert_eq (tr_thrift_read_i32 (&reader, &i32), TR_FRAME_OK);
  cr_assert_eq (i32, G_MININT32);
  cr_assert_eq (tr_thrift_read_field_begin (&reader, &type, &id), TR_FRAME_OK);
  cr_assert (type == TR_TTYPE_I64 && id == 32767);
  cr_assert_eq (tr_thrift_read_i64 (&reader, &i64), TR_FRAME_OK);
  cr_assert_eq (i64, G_MAXINT64);
  cr_assert_eq (tr_thrift_read_field_begin (&reader, &type, &id), TR_FRAME_OK);
  cr_assert (type == TR_TTYPE_STRING && id == 9);
  cr_assert_eq (tr_thrift_read_binary (&reader, &data, &len), TR_FRAME_OK);
  cr_assert (len == sizeof blob && memcmp (data, blob, len) == 0);
  /* Points into the buffer, no copy. */
  cr_assert (data > out->data && data < out->data + out->len);
  cr_assert_eq (tr_thrift_read_field_begin (&reader, &type, &id), TR_FRAME_OK);
  cr_assert (type == TR_TTYPE_DOUBLE && id == 10);
  cr_assert_eq (tr_thrift_read_skip (&reader, type), TR_FRAME_OK);
  cr_assert_eq (tr_thrift_read_field_begin (&reader, &type, &id), TR_FRAME_OK);
  cr_assert (type == TR_TTYPE_STOP && id == 0);
  cr_assert_eq (reader.pos, out->len);
}

/* Every prefix of a valid struct is truncated somewhere, never read past. */
Test (tr_thrift_value, every_prefix_is_truncated_not_overread)
{
  g_autoptr (GByteArray) out = g_byte_array_new ();

  tr_thrift_write_field_i32 (out, 1, 5);
  tr_thrift_write_field_i64 (out, 2, 6);
  tr_thrift_write_field_string (out, 3, "abc");
  tr_thrift_write_field_bool (out, 4, FALSE);
  tr_thrift_write_field_stop (out);
  for (guint cut = 0; cut < out->len; cut++) {
    /* A copy of exactly @cut bytes, so ASan sees any read past it. */
    g_autofree guint8 *prefix = g_memdup2 (out->data, MAX (cut, 1));
    TrThriftReader reader;
    TrFrameStatus status = TR_FRAME_OK;
    guint8 type = 0;
    gint16 id;

    tr_thrift_reader_init (&reader, prefix, cut);
    while (status == TR_FRAME_OK) {
      status = tr_thrift_read_field_begin (&reader, &type, &id);
      if (status != TR_FRAME_OK || type == TR_TTYPE_STOP)
        break;
      status = tr_thrift_read_skip (&reader, type);
    }
    cr_assert_eq (status, TR_FRAME_TRUNCATED, "cut at %u: status %d, type %u", cut, status, type);
    cr_assert (reader.pos <= cut, "cut at %u: position %zu", cut, reader.pos);
  }
}

Test (tr_thrift_value, negative_binary_length_is_bad_data)
{
  static const guint8 body[] = { 0xff, 0xff, 0xff, 0xfe, 'x' };
  TrThriftReader reader;
  const guint8 *data = NULL;
  gsize len = 0;

  tr_thrift_reader_init (&reader, body, sizeof body);
  cr_assert_eq (tr_thrift_read_binary (&reader, &data, &len), TR_FRAME_BAD_DATA);
}

Test (tr_thrift_value, binary_longer_than_the_buffer_is_truncated)
{
  static const guint8 body[] = { 0x00, 0x00, 0x00, 0x05, 'a', 'b' };
  TrThriftReader reader;
  const guint8 *data = NULL;
  gsize len = 0;

  tr_thrift_reader_init (&reader, body, sizeof body);
  cr_assert_eq (tr_thrift_read_binary (&reader, &data, &len), TR_FRAME_TRUNCATED);
}

/* Skipping nests containers only to TR_FRAME_MAX_DEPTH: a hostile body of
 * lists within lists is refused, not followed down the stack. */
Test (tr_thrift_value, skip_refuses_nesting_past_the_depth_limit)
{
  g_autoptr (GByteArray) deep = g_byte_array_new ();
  g_autoptr (GByteArray) shallow = g_byte_array_new ();
  TrThriftReader reader;

  for (guint i = 0; i < TR_FRAME_MAX_DEPTH + 2; i++)
    tr_thrift_write_list_begin (deep, TR_TTYPE_LIST, 1);
  tr_thrift_write_list_begin (deep, TR_TTYPE_I32, 0);
  tr_thrift_reader_init (&reader, deep->data, deep->len);
  cr_assert_neq (tr_thrift_read_skip (&reader, TR_TTYPE_LIST), TR_FRAME_OK);

  for (guint i = 0; i < 3; i++)
    tr_thrift_write_list_begin (shallow, TR_TTYPE_LIST, 1);
  tr_thrift_write_list_begin (shallow, TR_TTYPE_I32, 1);
  tr_thrift_write_i32 (shallow, 42);
  tr_thrift_reader_init (&reader, shallow->data, shallow->len);
  cr_assert_eq (tr_thrift_read_skip (&reader, TR_TTYPE_LIST), TR_FRAME_OK);
  cr_assert_eq (reader.pos, shallow->len);
}

static const TrThriftValue *
child (const TrThriftValue *value, guint i)
{
  cr_assert_not_null (value->children);
  cr_assert_lt (i, value->children->len);
  return g_ptr_array_index (value->children, i);
}

/* Every wire type, nested: struct { 1: byte, 2: i16, 3: double, 4: list of
 * structs, 5: map<string, i64>, 6: set<i32>, 7: uuid, 8: binary } written by
 * hand in binary-protocol bytes, decoded back value by value. */
Test (tr_thrift_value, decode_struct_every_type_nested)
{
  static const guint8 body[] = {
    0x03, 0x00, 0x01, 0xff,                                           /* 1: byte -1 */
    0x06, 0x00, 0x02, 0x80, 0x00,                                     /* 2: i16 -32768 */
    0x04, 0x00, 0x03, 0x3f, 0xf8, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, /* 3: double 1.5 */
    0x0f, 0x00, 0x04, 0x0c, 0x00, 0x00, 0x00, 0x02,                   /* 4: list<struct> [2] */
    0x02, 0x00, 0x01, 0x01, 0x00,                                     /*    { 1: bool true } */
    0x00,                                                             /*    { } */
    0x0d, 0x00, 0x05, 0x0b, 0x0a, 0x00, 0x00, 0x00, 0x01,             /* 5: map<string, i64> [1] */
    0x00, 0x00, 0x00, 0x01, 'k', 0, 0, 0, 0, 0, 0, 0, 0x07,           /*    "k" => 7 */
    0x0e, 0x00, 0x06, 0x08, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x2a, /* 6: set<i32> {42} */
    0x10, 0x00, 0x07, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, /* 7: uuid */
    0x0b, 0x00, 0x08, 0x00, 0x00, 0x00, 0x02, 0x00, 0xff,             /* 8: binary 00 ff */
    0x00,                                                             /* stop */
    0x99,                                                             /* not part of it */
  };
  g_autoptr (TrThriftValue) value = NULL;
  const TrThriftValue *list, *map, *set;
  gsize offset = 0;

  cr_assert_eq (tr_thrift_value_decode_struct (body, sizeof body, &offset, &value), TR_FRAME_OK);
  cr_assert_eq (offset, sizeof body - 1);
  cr_assert_eq (value->type, TR_TTYPE_STRUCT);
  cr_assert_eq (value->children->len, 8);
  cr_assert (child (value, 0)->id == 1 && child (value, 0)->type == TR_TTYPE_BYTE && child (value, 0)->i == -1);
  cr_assert (child (value, 1)->type == TR_TTYPE_I16 && child (value, 1)->i == -32768);
  cr_assert (child (value, 2)->type == TR_TTYPE_DOUBLE && child (value, 2)->d == 1.5);
  list = child (value, 3);
  cr_assert (list->id == 4 && list->type == TR_TTYPE_LIST && list->element_type == TR_TTYPE_STRUCT);
  cr_assert_eq (list->children->len, 2);
  cr_assert (child (child (list, 0), 0)->type == TR_TTYPE_BOOL && child (child (list, 0), 0)->b);
  cr_assert_null (child (list, 1)->children);
  map = child (value, 4);
  cr_assert (map->type == TR_TTYPE_MAP && map->key_type == TR_TTYPE_STRING && map->element_type == TR_TTYPE_I64);
  cr_assert_eq (map->children->len, 2);
  cr_assert (child (map, 0)->len == 1 && child (map, 0)->data[0] == 'k' && child (map, 1)->i == 7);
  set = child (value, 5);
  cr_assert (set->type == TR_TTYPE_SET && set->element_type == TR_TTYPE_I32 && child (set, 0)->i == 42);
  cr_assert (child (value, 6)->type == TR_TTYPE_UUID && child (value, 6)->len == 16 && child (value, 6)->data[15] == 15);
  cr_assert (child (value, 7)->len == 2 && child (value, 7)->data[1] == 0xff);
  cr_assert_str_eq (tr_thrift_type_to_string (TR_TTYPE_MAP), "map");
  cr_assert_str_eq (tr_thrift_type_to_string (7), "?");
}

/* Hostile or broken input: truncated anywhere, unknown type id, a count
 * larger than the bytes left (refused before allocating), nesting past
 * the limit.  The offset says where decoding stopped. */
Test (tr_thrift_value, decode_struct_refuses_broken_input)
{
  static const guint8 good[] = { 0x0f, 0x00, 0x01, 0x08, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x05, 0x00 };
  static const guint8 unknown_type[] = { 0x07, 0x00, 0x01, 0x00 };
  static const guint8 huge_count[] = { 0x0f, 0x00, 0x01, 0x02, 0x7f, 0xff, 0xff, 0xff, 0x01, 0x00 };
  g_autoptr (GByteArray) deep = g_byte_array_new ();
  TrThriftValue *value = NULL;
  gsize offset;

  for (gsize cut = 0; cut < sizeof good; cut++) {
    offset = 0;
    cr_assert_eq (tr_thrift_value_decode_struct (good, cut, &offset, &value), TR_FRAME_TRUNCATED, "cut at %zu", cut);
    cr_assert_null (value);
  }
  offset = 0;
  cr_assert_eq (tr_thrift_value_decode_struct (unknown_type, sizeof unknown_type, &offset, &value), TR_FRAME_BAD_DATA);
  cr_assert_eq (offset, 3);
  offset = 0;
  cr_assert_eq (tr_thrift_value_decode_struct (huge_count, sizeof huge_count, &offset, &value), TR_FRAME_TRUNCATED);
  cr_assert_eq (offset, 8, "stopped at the count, offset %zu", offset);
  for (guint i = 0; i < TR_FRAME_MAX_DEPTH + 2; i++)
    tr_thrift_write_field_begin (deep, TR_TTYPE_STRUCT, 1);
  offset = 0;
  cr_assert_eq (tr_thrift_value_decode_struct (deep->data, deep->len, &offset, &value), TR_FRAME_TOO_DEEP);
  cr_assert_null (value);
}

/* A list header: element type and count; a count the bytes left cannot
 * hold (each element takes one byte at least) and a negative one are
 * refused before anyone sizes an array by them. */
Test (tr_thrift_value, list_begin_reads_type_and_count_and_refuses_lies)
{
  static const guint8 good[] = { 0x08, 0x00, 0x00, 0x00, 0x02, 0, 0, 0, 1, 0, 0, 0, 2 };
  static const guint8 lie[] = { 0x08, 0x00, 0x00, 0x10, 0x00, 0, 0, 0, 1 };
  static const guint8 negative[] = { 0x08, 0xff, 0xff, 0xff, 0xff };
  TrThriftReader reader;
  guint8 type = 0;
  guint32 count = 0;
  gint32 value = 0;

  tr_thrift_reader_init (&reader, good, sizeof good);
  cr_assert_eq (tr_thrift_read_list_begin (&reader, &type, &count), TR_FRAME_OK);
  cr_assert_eq (type, TR_TTYPE_I32);
  cr_assert_eq (count, 2);
  cr_assert_eq (tr_thrift_read_i32 (&reader, &value), TR_FRAME_OK);
  cr_assert_eq (tr_thrift_read_i32 (&reader, &value), TR_FRAME_OK);
  cr_assert_eq (value, 2);
  tr_thrift_reader_init (&reader, lie, sizeof lie);
  cr_assert_eq (tr_thrift_read_list_begin (&reader, &type, &count), TR_FRAME_TRUNCATED);
  tr_thrift_reader_init (&reader, negative, sizeof negative);
  cr_assert_eq (tr_thrift_read_list_begin (&reader, &type, &count), TR_FRAME_BAD_DATA);
  tr_thrift_reader_init (&reader, negative, 3);
  cr_assert_eq (tr_thrift_read_list_begin (&reader, &type, &count), TR_FRAME_TRUNCATED);
}
