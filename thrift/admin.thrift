/* admin.thrift - the thriftrouter admin service (DESIGN.md §6, docs/operations.md).
 *
 * The router serves it on admin_listen (TFramedTransport + TBinaryProtocol)
 * with a hand-written codec (router/admin/tr_admin.c); tools/tr-admin uses the
 * c_glib code generated from this file.  Every call takes the admin token
 * first ("" when the router has no admin_token_file).  ("service" is a Thrift
 * keyword, hence service_name.)  Field ids are part
 * of the protocol: never renumber, only add.
 */
namespace c_glib tr_admin
namespace py tr_admin

/* AdminError.code values. */
const i32 UNKNOWN_SERVICE = 1
const i32 UNKNOWN_ENDPOINT = 2
const i32 OUT_OF_RANGE = 3
const i32 NOT_AUTHORISED = 4
const i32 FAILED = 5
/* reload: a file is invalid (message: file, group, key, problem). */
const i32 INVALID_CONFIG = 6
/* reload: a [router] key other than services changed; needs a restart. */
const i32 RESTART_NEEDED = 7

struct NodeStatus {
  1: string server_id
  2: string server_type
  3: i64 epoch
  4: i64 head_rpc_id
  5: i64 store_bytes
  6: i32 store_parts
  7: i32 producer_connections
  8: i64 rpcs_in
  9: i64 rpcs_committed
  10: i64 commit_errors
  /* RPCs committed per second over the last 10 s (store head delta). */
  11: double rpcs_in_per_sec
  /* Commit latency (submission to the store's callback) over the last 10 s,
   * as the upper bound of its log2 bucket in microseconds; 0 when nothing
   * was committed in that time. */
  12: i64 commit_p50_us
  13: i64 commit_p99_us
  /* The RPC cache (rpc_cache_size): RPCs and bytes it holds now (bytes
   * count each entry's overhead), and its limit for messages. */
  14: i64 cache_rpcs
  15: i64 cache_bytes
  16: i64 cache_limit_bytes
  /* Messages read for delivery since start-up: from the cache, and from
   * disk (an endpoint further behind than the cache holds). */
  17: i64 reads_from_cache
  18: i64 reads_from_disk
  /* A MASTER that learnt of a newer epoch stops taking writes (node.meta). */
  19: bool fenced
}

/* tr-admin digest: a checksum over the stored records of from_id..to_id. */
struct RangeDigest {
  1: i64 from_id
  2: i64 to_id
  3: i64 count
  /* XXH3-64 of the records' bytes as stored, in id order (two nodes whose
   * digests agree hold byte-identical records for the range) */
  4: i64 digest
}

struct ServiceInfo {
  1: string name
  2: list<string> rpcs
  3: i64 head_seqid
  4: i64 first_seqid
  5: i32 endpoints
}

struct EndpointInfo {
  1: string service_name
  2: string endpoint
  3: string state
  4: i64 acked_seqid
  5: i64 head_seqid
  6: i64 lag
  7: i32 retries
  8: string last_error
  9: bool stop_send
  /* RPCs the endpoint acknowledged since the node started (or the reload
   * that added it); a rewind's redeliveries count again. */
  10: i64 delivered
  /* delivered per second over the last 10 s */
  11: double rpcs_out_per_sec
  /* Data-store bytes from its first unacknowledged RPC to the service head
   * (record framing included; RPCs of other services stored in between
   * count too, so an upper bound; exact when every service gets every RPC).
   * 0 when nothing is waiting, -1 when it cannot be read. */
  12: i64 lag_bytes
  /* RPCs expired by the service's max_backlog_bytes / max_backlog_age since
   * the node started (or the reload that added the endpoint): never
   * delivered to it; each expired range is a dead letter whose reason
   * starts with "expired" (docs/delivery.md "Backlog limits"). */
  20: i64 expired_rpcs
  /* state BLOCKED (on_failure = block; docs/delivery.md "BLOCKED or
   * BACKOFF"): the seqid the endpoint keeps refusing and its global rpc id
   * (see dump); 0 in every other state.   */
  21: i64 blocked_seqid
  22: i64 blocked_rpc_id
  /* When last_error happened, Unix time in milliseconds (0: no error since
   * the node started), and when the endpoint recovered from it (the next
   * acknowledgement; for a connection failure the next connection); 0
   * while it is current. */
  23: i64 last_error_time_ms
  24: i64 last_error_resolved_ms
}

struct DeadLetter {
  1: i64 index      /* 0-based position in the service's dead-letter file */
  2: i64 seqid      /* service seqid that was given up */
  3: i64 rpc_id     /* its global rpc id (see dump) */
  4: string reason
  /* Sent again by redrive as this rpc id (the last time); 0: never. */
  5: i64 redriven_rpc_id
}

/* One dead letter of a redrive: sent again, or left alone because it was
 * redriven before (and force was not given). */
struct Redriven {
  1: i64 index          /* its dead-letter index */
  2: i64 seqid          /* the seqid that was given up */
  3: i64 rpc_id         /* the stored original */
  4: i64 new_rpc_id     /* the copy committed now; 0 when left alone */
  5: i64 new_seqid      /* the copy's seqid in the service; 0 when left alone */
  6: i64 before_rpc_id  /* redriven before as this rpc id; 0: never */
}

exception AdminError {
  1: i32 code
  2: string message
}

service Admin {
  NodeStatus status(1: string token) throws (1: AdminError e)
  list<ServiceInfo> services(1: string token) throws (1: AdminError e)
  list<EndpointInfo> endpoints(1: string token, 2: string service_name) throws (1: AdminError e)
  void set_stop_send(1: string token, 2: string service_name, 3: string endpoint, 4: bool stop)
      throws (1: AdminError e)
  /* Either to_seqid (by = 0) or by >= 1: skip the next `by` rpcs, so the
   * acknowledged seqid becomes acked + by.  Returns the next seqid to send. */
  i64 skip(1: string token, 2: string service_name, 3: string endpoint, 4: i64 to_seqid, 5: i64 by)
      throws (1: AdminError e)
  void rewind(1: string token, 2: string service_name, 3: string endpoint, 4: i64 to_seqid)
      throws (1: AdminError e)
  binary dump(1: string token, 2: i64 rpc_id) throws (1: AdminError e)
  /* The global rpc id of a service's seqid (tr-admin dump SERVICE SEQID);
   * OUT_OF_RANGE when the seqid is not stored (never was, or retention
   * deleted it). */
  i64 rpc_id_of(1: string token, 2: string service_name, 3: i64 seqid) throws (1: AdminError e)
  /* At most max (1..10000) dead letters of a service from index from_index. */
  list<DeadLetter> dead_letters(1: string token, 2: string service_name, 3: i64 from_index, 4: i32 max)
      throws (1: AdminError e)
  /* Sends the dead letters from_index..to_index (inclusive; to_index -1:
   * to the last; at most 10000) of a service again, as new RPCs of that
   * service (new rpc ids and seqids, after its head: every endpoint of the
   * service gets them in order; docs/delivery.md "Redrive").  Dead letters
   * redriven before are left alone unless force.  All or nothing before
   * the commit: an original no longer stored refuses the call
   * (OUT_OF_RANGE). */
  list<Redriven> redrive(1: string token, 2: string service_name, 3: i64 from_index, 4: i64 to_index,
                         5: bool force) throws (1: AdminError e)
  /* Re-reads router.conf and the service files and applies the differences
   * (docs/configuration.md "Reload").  Returns one line per change. */
  list<string> reload(1: string token) throws (1: AdminError e)
  /* Both ids stored (first..head) and from_id <= to_id; reads from disk. */
  RangeDigest digest(1: string token, 2: i64 from_id, 3: i64 to_id) throws (1: AdminError e)
}
