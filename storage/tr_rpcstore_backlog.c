/* tr_rpcstore_backlog.c - how far an endpoint's backlog exceeds its
 * service's retention limits (max_backlog_bytes, max_backlog_age):
 * tr_rpcstore_backlog_cut().
 *
 * Both measures shrink as the first unacknowledged seqid moves forward:
 * records are in rpc id order, so a later seqid's record starts later in
 * the data file (fewer bytes to the head), and commit times grow with rpc
 * ids (a clock stepped back can make them not grow; the search then still
 * ends at a seqid within the limits, perhaps not the first).  So the first
 * seqid within a limit is found by binary search.
 *
 * Threads: any; only the store's thread-safe reads are used.
 */
#include "tr_rpcstore_private.h"
#include "tr_storage_error.h"

#include <string.h>

const char *
tr_backlog_excess_to_string (TrBacklogExcess excess)
{
  switch (excess) {
  case TR_BACKLOG_BYTES:
    return "max_backlog_bytes";
  case TR_BACKLOG_AGE:
    return "max_backlog_age";
  case TR_BACKLOG_WITHIN:
    break;
  }
  return "none";
}

typedef struct {
  TrRpcStore *store;
  guint32 service_id;
  guint64 head;     /* service head */
  guint64 head_end; /* data offset just after the head's record */
  gint64 now_us;
} Backlog;

/* Data offset of the record of @seqid's RPC. */
static gboolean
seqid_offset (const Backlog *b, guint64 seqid, guint64 *offset_out, GError **error)
{
  guint64 rpc_id;
  guint32 len;

  return tr_rpcstore_service_lookup (b->store, b->service_id, seqid, &rpc_id, error)
         && tr_rpcstore_locate (b->store, rpc_id, offset_out, &len, error);
}

/* Bytes of the backlog that starts at @seqid (<= head). */
static gboolean
backlog_bytes (const Backlog *b, guint64 seqid, guint64 *bytes_out, GError **error)
{
  guint64 offset;

  if (!seqid_offset (b, seqid, &offset, error))
    return FALSE;
  *bytes_out = b->head_end > offset ? b->head_end - offset : 0;
  return TRUE;
}

/* Commit time of @rpc_id: from the cache if it holds the message (without
 * counting a cache hit or miss: this is no delivery read), else from the
 * first bytes of its data record (tr_rpcrecord_peek_time()), not the whole
 * record: messages may be megabytes, and this runs every second. */
static gboolean
commit_time (TrRpcStore *store, guint64 rpc_id, gint64 *time_out, GError **error)
{
  guint8 buf[TR_RPCRECORD_PEEK_SIZE];
  TrRpcIndexEntry index;
  guint64 got_id = 0;
  gboolean cached = FALSE, ok;
  gsize got = 0;

  g_mutex_lock (&store->cache_lock);
  if (store->ring_cap > 0 && rpc_id >= store->cache_lo && rpc_id <= store->cache_hi) {
    *time_out = store->ring_time[rpc_id % store->ring_cap];
    cached = TRUE;
  }
  g_mutex_unlock (&store->cache_lock);
  if (cached)
    return TRUE;
  g_rw_lock_reader_lock (&store->files_lock);
  ok = store->data != NULL && tr_rpcstore__read_index (store, rpc_id, &index, error);
  if (ok) {
    g_mutex_lock (&store->data_lock);
    ok = tr_groupfile_read (store->data, index.offset, buf, sizeof buf, &got, error);
    g_mutex_unlock (&store->data_lock);
  } else if (store->data == NULL) {
    g_set_error (error, TR_STORAGE_ERROR, TR_STORAGE_ERROR_CLOSED, "the store failed and is being reopened");
  }
  g_rw_lock_reader_unlock (&store->files_lock);
  if (!ok)
    return FALSE;
  if (got != sizeof buf || !tr_rpcrecord_peek_time (buf, index.length, &got_id, time_out) || got_id != rpc_id) {
    g_set_error (error, TR_STORAGE_ERROR, TR_STORAGE_ERROR_CORRUPT,
                 "data record of rpc %" G_GUINT64_FORMAT " at offset %" G_GUINT64_FORMAT
                 " does not start as one (reading its commit time)",
                 rpc_id, index.offset);
    return FALSE;
  }
  return TRUE;
}

/* Age of @seqid's RPC (<= head) at ->now_us; never negative. */
static gboolean
backlog_age (const Backlog *b, guint64 seqid, gint64 *age_out, GError **error)
{
  guint64 rpc_id;
  gint64 time_us = 0;

  if (!tr_rpcstore_service_lookup (b->store, b->service_id, seqid, &rpc_id, error)
      || !commit_time (b->store, rpc_id, &time_us, error))
    return FALSE;
  *age_out = MAX (b->now_us - time_us, 0);
  return TRUE;
}

/* Whether the backlog from @seqid is within the one limit @excess names. */
static gboolean
within (const Backlog *b, const TrBacklogLimits *limits, TrBacklogExcess excess, guint64 seqid,
        gboolean *within_out, GError **error)
{
  guint64 bytes;
  gint64 age;

  if (seqid > b->head) {
    *within_out = TRUE;
    return TRUE;
  }
  if (excess == TR_BACKLOG_BYTES) {
    if (!backlog_bytes (b, seqid, &bytes, error))
      return FALSE;
    *within_out = bytes <= limits->max_bytes;
  } else {
    if (!backlog_age (b, seqid, &age, error))
      return FALSE;
    *within_out = age <= limits->max_age_us;
  }
  return TRUE;
}

/* The first seqid in (@from, head + 1] within the limit @excess, knowing
 * @from is not: the backlog from head + 1 (empty) always is. */
static gboolean
search (const Backlog *b, const TrBacklogLimits *limits, TrBacklogExcess excess, guint64 from, guint64 *cut_out,
        GError **error)
{
  guint64 lo = from, hi = b->head + 1; /* lo is over the limit, hi within */

  while (hi - lo > 1) {
    guint64 mid = lo + (hi - lo) / 2;
    gboolean ok;
    if (!within (b, limits, excess, mid, &ok, error))
      return FALSE;
    if (ok)
      hi = mid;
    else
      lo = mid;
  }
  *cut_out = hi;
  return TRUE;
}

gboolean
tr_rpcstore_backlog_cut (TrRpcStore *store, guint32 service_id, guint64 from_seqid, const TrBacklogLimits *limits,
                         gint64 now_us, TrBacklogCut *out, GError **error)
{
  Backlog b = { store, service_id, 0, 0, now_us };
  guint64 first, head_offset, age_cut;
  gboolean ok;

  g_return_val_if_fail (store != NULL && limits != NULL && out != NULL, FALSE);
  g_return_val_if_fail (service_id < tr_rpcstore__n_ids (store), FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  memset (out, 0, sizeof *out);
  b.head = tr_rpcstore_service_head (store, service_id);
  first = tr_rpcstore_service_first (store, service_id);
  from_seqid = MAX (MAX (from_seqid, first), 1);
  out->cut = from_seqid;
  if (from_seqid > b.head || (limits->max_bytes == 0 && limits->max_age_us <= 0))
    return TRUE;
  {
    guint64 head_rpc;
    guint32 head_len;
    if (!tr_rpcstore_service_lookup (store, service_id, b.head, &head_rpc, error)
        || !tr_rpcstore_locate (store, head_rpc, &head_offset, &head_len, error))
      return FALSE;
    b.head_end = head_offset + head_len;
  }
  if (!backlog_bytes (&b, from_seqid, &out->bytes, error) || !backlog_age (&b, from_seqid, &out->age_us, error))
    return FALSE;
  if (limits->max_bytes > 0 && out->bytes > limits->max_bytes) {
    if (!search (&b, limits, TR_BACKLOG_BYTES, from_seqid, &out->cut, error))
      return FALSE;
    out->excess = TR_BACKLOG_BYTES;
  }
  if (limits->max_age_us > 0 && out->age_us > limits->max_age_us) {
    /* The age cut only matters beyond the bytes cut. */
    if (!within (&b, limits, TR_BACKLOG_AGE, out->cut, &ok, error))
      return FALSE;
    if (!ok) {
      if (!search (&b, limits, TR_BACKLOG_AGE, out->cut, &age_cut, error))
        return FALSE;
      out->excess = TR_BACKLOG_AGE;
      out->cut = age_cut;
    }
  }
  return TRUE;
}
