/* repl.thrift - the replication stream MASTER -> BACKUP (docs/replication.md).
 *
 * A BACKUP serves it on replication_listen (TFramedTransport +
 * TBinaryProtocol, strict headers), a port apart from the producers' listen.
 * The master's side is router/repl/tr_repl_source.c, the replica's
 * router/repl/tr_repl_sink.c; both encode and parse with the project's own
 * codec (tr_frame, tr_thrift_value), never with generated code: this file is
 * the contract, and the integration tests use the Python code generated
 * from it to talk to a replica like a master would (or would not).
 *
 * One connection: hello first, then appends, pipelined (several in flight;
 * answers come in order).  Field ids are part of the protocol: never
 * renumber, only add.
 */
namespace py tr_repl

/* Refused.code values. */
/* The services of the master and the replica differ (reason names the one). */
const i32 SERVICES_DIFFER = 1
/* The message's epoch is below the replica's: a stale master. */
const i32 STALE_EPOCH = 2
/* append's first_id is not the replica's head + 1: nothing was stored. */
const i32 NOT_CONTINUOUS = 3
/* append before hello on this connection. */
const i32 NO_HELLO = 4
/* The replica could not store the batch (disk): retry later. */
const i32 STORE_FAILED = 5
/* A malformed record (an id out of order in the batch, a bad service id). */
const i32 BAD_BATCH = 6
/* The stores are laid out differently (group_file_size): the files would
 * not be byte-identical. */
const i32 LAYOUT_DIFFERS = 7

/* A COMMON service as the store knows it: the name, its permanent store id
 * (services.map) and the rpcs routed to it.  Master and replica must agree
 * on every one, or the per-service lists would diverge. */
struct ReplService {
  1: string name
  2: i32 store_id
  3: list<string> rpcs
}

/* One committed RPC as stored (tr_rpcstore_read_record()): applied by the
 * replica under the same id with the same commit time, message and
 * service ids, so its data record is byte-identical. */
struct ReplRecord {
  1: i64 rpc_id
  2: i64 commit_time_us
  3: binary message
  4: list<i32> service_ids
}

struct HelloReply {
  1: string server_id
  /* The replica's head: the master streams from head + 1. */
  2: i64 head
  3: i64 epoch
  /* tr-admin digest of the record at head (XXH3-64 as a signed i64); absent
   * when head is 0.  The master compares it with its own record of that id:
   * a replica whose last record is not the master's has diverged. */
  4: optional i64 head_digest
}

exception Refused {
  1: i32 code
  2: string reason
  /* The replica's head and epoch when it refused. */
  3: i64 head
  4: i64 epoch
}

service Replication {
  /* The master introduces itself: who it is, its epoch and head, the
   * address producers should use (a BACKUP names it in its refusals) and
   * its COMMON services. */
  HelloReply hello(1: string server_id, 2: i64 epoch, 3: i64 head, 4: list<ReplService> services,
                   5: string producer_address, 6: optional i64 group_file_size) throws (1: Refused refused),

  /* Records first_id .. first_id + n - 1, in id order.  Answered with the
   * replica's head once the batch is stored as its own sync_mode promises
   * (its own group commit).  source_keeps_from: the master's retention
   * needs no id below it any more (every endpoint and replica acknowledged
   * them); a BACKUP, which pushes nothing, lets go of them too. */
  i64 append(1: i64 epoch, 2: i64 first_id, 3: list<ReplRecord> records, 4: i64 source_head,
             5: optional i64 source_keeps_from)
    throws (1: Refused refused)
}
