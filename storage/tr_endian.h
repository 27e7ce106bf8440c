/* tr_endian.h - little-endian integer load/store for on-disk formats.
 *
 * Every on-disk integer in storage/ is little-endian; these are the only
 * helpers that read or write them.  (Thrift's wire integers are big-endian
 * and live in router/net/tr_frame.h.)
 */
#pragma once

#include <glib.h>
#include <string.h>

static inline void
tr_put_le16 (guint8 *p, guint16 v)
{
  v = GUINT16_TO_LE (v);
  memcpy (p, &v, 2);
}

static inline void
tr_put_le32 (guint8 *p, guint32 v)
{
  v = GUINT32_TO_LE (v);
  memcpy (p, &v, 4);
}

static inline void
tr_put_le64 (guint8 *p, guint64 v)
{
  v = GUINT64_TO_LE (v);
  memcpy (p, &v, 8);
}

static inline guint16
tr_get_le16 (const guint8 *p)
{
  guint16 v;
  memcpy (&v, p, 2);
  return GUINT16_FROM_LE (v);
}

static inline guint32
tr_get_le32 (const guint8 *p)
{
  guint32 v;
  memcpy (&v, p, 4);
  return GUINT32_FROM_LE (v);
}

static inline guint64
tr_get_le64 (const guint8 *p)
{
  guint64 v;
  memcpy (&v, p, 8);
  return GUINT64_FROM_LE (v);
}
