"""Integration tests of the replication stream MASTER -> BACKUP (issue 13,
phase 1; docs/replication.md): real daemons on loopback (trtest.Pair), the
stream's result proven with `tr-admin digest` and the service heads, bad
input on the replication port answered and logged with nothing stored, a
BACKUP refusing producers with the master's address.

TR_REPL_ITERATIONS: kill -9 rounds of the backup under load (default 5)."""
import os
import random
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))
from trtest import (BUILD, SOURCE, Endpoint, Pair, Producer, TApplicationException,  # noqa: E402
                    add_replica_link, admin_json, check, run_tests, wait_until)

_GEN = os.path.join(BUILD, "gen-py")
_IDL = os.path.join(SOURCE, "thrift", "repl.thrift")
# Generated again when the IDL is newer than the code generated from it.
if (not os.path.isdir(os.path.join(_GEN, "tr_repl"))
        or os.path.getmtime(_IDL) > os.path.getmtime(os.path.join(_GEN, "tr_repl", "Replication.py"))):
    os.makedirs(_GEN, exist_ok=True)
    subprocess.check_call(["thrift", "--gen", "py", "-out", _GEN, _IDL])
sys.path.insert(0, _GEN)

from thrift.protocol import TBinaryProtocol  # noqa: E402
from thrift.transport import TSocket, TTransport  # noqa: E402
from tr_repl import Replication  # noqa: E402
from tr_repl.ttypes import Refused, ReplRecord, ReplService  # noqa: E402
from tr_repl import constants as repl_constants  # noqa: E402

SERVICES = {"demo": {"rpcs": ["log_event", "fire"], "endpoints": {}}}


def services_with(endpoint):
    return {"demo": {"rpcs": ["log_event", "fire"], "endpoints": {"e1": endpoint.port}}}


class Load:
    """@threads producers calling log_event on @port until stop(); counts
    acknowledged calls and keeps every error."""

    def __init__(self, port, threads=4, limit=None):
        self.port = port
        self.acked = 0
        self.errors = []
        self.limit = limit
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self.run, args=(i,), daemon=True) for i in range(threads)]
        for t in self.threads:
            t.start()

    def run(self, n):
        try:
            producer = Producer(self.port)
        except Exception as e:  # noqa: BLE001 - reported by the test
            self.errors.append("connect: %r" % e)
            return
        i = 0
        while not self.stopping.is_set() and (self.limit is None or i < self.limit):
            try:
                producer.log_event(b"p%d-%d" % (n, i))
            except Exception as e:  # noqa: BLE001
                self.errors.append("rpc %d of producer %d: %r" % (i, n, e))
                break
            i += 1
            with self.lock:
                self.acked += 1
        producer.close()

    def stop(self, timeout=120):
        self.stopping.set()
        for t in self.threads:
            t.join(timeout)

    def wait(self, timeout=300):
        for t in self.threads:
            t.join(timeout)


def assert_identical(pair, head=None):
    """The backup's store equals the master's: digest over every id, and
    every service's seqid range."""
    head = head or pair.wait_caught_up()
    check(head > 0, "nothing stored")
    master = admin_json(pair.master, "digest", "1", str(head))
    backup = admin_json(pair.backup, "digest", "1", str(head))
    check(master == backup, "digests differ over 1..%d: master %s, backup %s" % (head, master, backup))
    check(master["count"] == head, str(master))
    ms = [(s["name"], s["first_seqid"], s["head_seqid"]) for s in admin_json(pair.master, "services")]
    bs = [(s["name"], s["first_seqid"], s["head_seqid"]) for s in admin_json(pair.backup, "services")]
    check(ms == bs, "service lists differ: master %s, backup %s" % (ms, bs))
    return head


def test_steady_replication_under_load():
    """Producers on the master; the backup follows while they run and holds
    the same records (digest over every id) and the same lists."""
    endpoint = Endpoint().start()
    pair = Pair(services_with(endpoint))
    try:
        pair.start()
        load = Load(pair.master.port, threads=4, limit=750)
        # The stream follows the load, not only its end.
        wait_until(lambda: pair.head(pair.backup) >= 500, 60, "the backup to follow while producers run")
        load.wait()
        check(not load.errors, "producers saw errors: %s" % load.errors[:3])
        head = assert_identical(pair)
        check(head == 3000 == load.acked, "head %d, acknowledged %d" % (head, load.acked))
        # The backup pushes nothing: the endpoint got each RPC once, from the master.
        wait_until(lambda: len(endpoint.received()) >= 3000, 60, "the master's push")
        check(len(endpoint.received()) == 3000, "endpoint got %d" % len(endpoint.received()))
        check("streaming from 1" in pair.master.log(), pair.master.log())
        # The link is an endpoint of its BACKUP service in tr-admin endpoints,
        # its seqids the global ids: acknowledged up to the head, no lag.
        links = admin_json(pair.master, "endpoints", "replicas")
        check(len(links) == 1, str(links))
        link = links[0]
        check(link["endpoint"] == "b1" and link["state"] == "SENDING" and link["acked_seqid"] == head
              and link["head_seqid"] == head and link["lag"] == 0 and link["lag_bytes"] == 0
              and link["delivered"] == head, str(link))
        check(any(e["service"] == "demo" for e in admin_json(pair.master, "endpoints")), "demo/e1 not listed")
        check(admin_json(pair.backup, "endpoints") == [], "a BACKUP lists endpoints it does not push")
    finally:
        pair.cleanup()
        endpoint.stop()


def test_backup_killed_repeatedly_during_load():
    """kill -9 of the backup, again and again while producers write to the
    master: the producers never notice, the backup resumes from its own head
    each time and ends identical."""
    iterations = int(os.environ.get("TR_REPL_ITERATIONS", "5"))
    rng = random.Random(int(os.environ.get("TR_TEST_SEED", "13")))
    # No endpoint holds retention here: parts large enough that the master
    # keeps every id the digest covers (the replica's own hold is tested by
    # the backlog test).
    big = {"group_file_size": "64M"}
    pair = Pair(SERVICES, master_keys=big, backup_keys=big)
    try:
        pair.start()
        load = Load(pair.master.port, threads=3)
        for i in range(iterations):
            time.sleep(rng.uniform(0.2, 0.8))
            pair.backup.kill9()
            before = pair.head(pair.master)
            time.sleep(rng.uniform(0.05, 0.3))
            pair.backup.start()
            # Caught up again past what the master had when it died.
            wait_until(lambda: pair.head(pair.backup) > before, 60,
                       "iteration %d: the restarted backup to pass rpc %d" % (i, before))
        load.stop()
        check(not load.errors, "producers saw errors: %s" % load.errors[:3])
        head = assert_identical(pair)
        check(head == load.acked, "head %d, acknowledged %d" % (head, load.acked))
        print("  %d kills, %d rpcs replicated" % (iterations, head))
    finally:
        pair.cleanup()


def test_backup_with_another_group_file_size_is_refused():
    """The master sends its group_file_size in the hello: a backup laid out
    otherwise refuses it, nothing is stored, both say why."""
    pair = Pair(SERVICES, master_keys={"group_file_size": "2M"})
    try:
        pair.start()
        producer = Producer(pair.master.port)
        producer.log_event(b"x")
        producer.close()
        wait_until(lambda: "group_file_size is 2097152 on the master and 1048576 on this replica"
                   in pair.master.log(), 30, "the master to log the refusal")
        check("refused hello" in pair.backup.log() and pair.head(pair.backup) == 0, pair.backup.log())
    finally:
        pair.cleanup()


def test_master_killed_and_restarted_the_backup_continues():
    """kill -9 of the master under load (sync_mode always: the stream only
    carries what the master has synced, so the backup is never ahead of it):
    the restarted master says hello again, the backup resumes from its own
    head, and the stores end identical."""
    big = {"group_file_size": "64M"}
    pair = Pair(SERVICES, master_keys=big, backup_keys=big)
    try:
        pair.start()
        for i in range(3):
            load = Load(pair.master.port, threads=3)
            wait_until(lambda: load.acked >= 300, 60, "round %d: some load on the master" % i)
            pair.master.kill9()
            load.stop()
            pair.master.start()
            wait_until(lambda: pair.head(pair.backup) == pair.head(pair.master), 60,
                       "round %d: the backup to match the restarted master" % i)
        log = pair.master.log()
        check("beyond this master's" not in log, "the backup got ahead of its master:\n" + log)
        assert_identical(pair)
    finally:
        pair.cleanup()


def test_reload_keeps_links_and_refuses_changing_them():
    """tr-admin reload on a master with a replica link applies COMMON
    changes and keeps streaming; a change of the list of BACKUP services
    needs a restart (refused, nothing changed); a BACKUP refuses reloads."""
    import json
    import trtest
    pair = Pair(SERVICES)

    def reload(node):
        res = subprocess.run([trtest.TR_ADMIN, "--json", "-c", os.path.join(node.tmp, "router.conf"), "reload"],
                             capture_output=True, text=True, timeout=30)
        return res.returncode, json.loads(res.stdout)

    try:
        pair.start()
        rc, doc = reload(pair.master)
        check(rc == 0, str(doc))
        conf = os.path.join(pair.master.tmp, "router.conf")
        with open(conf) as f:
            text = f.read()
        with open(conf, "w") as f:
            f.write(text.replace(", replicas", ""))
        rc, doc = reload(pair.master)
        check(rc != 0 and "services (service_type = BACKUP)" in doc["error"] and "restart" in doc["error"], str(doc))
        producer = Producer(pair.master.port)
        producer.log_event(b"after the reloads")
        producer.close()
        check(pair.wait_caught_up() == 1, "the link stopped streaming")
        rc, doc = reload(pair.backup)
        check(rc != 0 and "is a BACKUP" in doc["error"], str(doc))
    finally:
        pair.cleanup()


def repl_client(port):
    transport = TTransport.TFramedTransport(TSocket.TSocket("127.0.0.1", port))
    transport.open()
    return Replication.Client(TBinaryProtocol.TBinaryProtocol(transport)), transport


def demo_services(rpcs=("log_event", "fire"), store_id=0):
    return [ReplService(name="demo", store_id=store_id, rpcs=list(rpcs))]


def refused_code(call):
    try:
        call()
    except Refused as e:
        return e.code, e.reason, e.head
    raise AssertionError("not refused")


def test_bad_input_on_the_replication_port():
    """Garbage, a producer, an append before hello, a stale epoch, mismatched
    services, a batch that does not continue the head: each answered (when
    it can be) and logged; nothing stored.  Then a good batch is stored, so
    the refusals were not a replica that stores nothing at all."""
    pair = Pair(SERVICES)
    backup = pair.backup
    try:
        backup.start()
        port = pair.repl_port

        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        check(s.recv(100) == b"", "garbage: the connection should be closed")
        s.close()
        wait_until(lambda: "replication: closing" in backup.log(), 10, "the garbage to be logged")

        producer = Producer(port)
        try:
            producer.log_event(b"x")
            raise AssertionError("a producer's log_event was answered")
        except TApplicationException as e:
            check("'log_event' is not a replication call" in e.message and "replication port" in e.message,
                  e.message)
        producer.close()

        client, transport = repl_client(port)
        code, reason, head = refused_code(lambda: client.append(1, 1, [ReplRecord(1, 1, b"m", [0])], 1, None))
        check(code == repl_constants.NO_HELLO and head == 0, (code, reason))
        code, reason, _ = refused_code(lambda: client.hello("stale", 0, 5, demo_services(), "127.0.0.1:1", None))
        check(code == repl_constants.STALE_EPOCH and "below" in reason, (code, reason))
        code, reason, _ = refused_code(
            lambda: client.hello("m", 1, 5, demo_services(("log_event",)), "127.0.0.1:1", None))
        check(code == repl_constants.SERVICES_DIFFER and "service 'demo'" in reason, (code, reason))
        code, reason, _ = refused_code(lambda: client.hello("m", 1, 5, demo_services(), "127.0.0.1:1", 2 << 20))
        check(code == repl_constants.LAYOUT_DIFFERS and "group_file_size is 2097152 on the master and 1048576"
              in reason, (code, reason))
        code, reason, _ = refused_code(
            lambda: client.hello("m", 1, 5, demo_services(store_id=3), "127.0.0.1:1", None))
        check(code == repl_constants.SERVICES_DIFFER and "store id" in reason, (code, reason))
        code, reason, _ = refused_code(lambda: client.hello("m", 1, 5, demo_services() + [
            ReplService(name="extra", store_id=1, rpcs=["x"])], "127.0.0.1:1", None))
        check(code == repl_constants.SERVICES_DIFFER and "'extra'" in reason, (code, reason))

        answer = client.hello("m", 1, 5, demo_services(), "127.0.0.1:1", None)
        check(answer.head == 0 and answer.server_id == "it-backup", str(answer))
        code, reason, head = refused_code(lambda: client.append(1, 3, [ReplRecord(3, 1, b"m", [0])], 5, None))
        check(code == repl_constants.NOT_CONTINUOUS and head == 0 and "takes 1 next" in reason, (code, reason))
        code, reason, head = refused_code(lambda: client.append(1, 1, [ReplRecord(1, 1, b"m", [0]),
                                                                      ReplRecord(3, 1, b"m", [0])], 5, None))
        check(code == repl_constants.BAD_BATCH and head == 0, (code, reason))
        code, reason, head = refused_code(lambda: client.append(1, 1, [ReplRecord(1, 1, b"m", [9])], 5, None))
        check(code == repl_constants.BAD_BATCH and "service id 9" in reason, (code, reason))
        check(pair.head(backup) == 0, "a refused batch was stored")
        log = backup.log()
        check("refused append" in log and "refused hello" in log and "nothing stored" in log, log)

        # The good one: stored, answered with the new head.
        message = bytes.fromhex("80010001000000096c6f675f6576656e7400000001") + b"\x00"
        check(client.append(1, 1, [ReplRecord(1, 1700000000000000, message, [0])], 1, None) == 1, "good batch")
        check(pair.head(backup) == 1, "the good batch was not stored")
        transport.close()
    finally:
        pair.cleanup()


def test_producer_on_backup_gets_error_naming_the_master():
    """A BACKUP keeps its listen port but never acknowledges a write: before
    its master connects the answer says so, afterwards it names the
    master's producer address.  Nothing is stored either way."""
    pair = Pair(SERVICES)
    try:
        pair.backup.start()
        producer = Producer(pair.backup.port)
        try:
            producer.log_event(b"early")
            raise AssertionError("the backup acknowledged a write")
        except TApplicationException as e:
            check("is a BACKUP" in e.message and "has not connected" in e.message, e.message)
        pair.master.start()
        master_address = "127.0.0.1:%d" % pair.master.port

        def names_master():
            try:
                producer.log_event(b"x")
            except TApplicationException as e:
                return master_address in e.message
            raise AssertionError("the backup acknowledged a write")

        wait_until(names_master, 30, "the backup's refusal to name the master at %s" % master_address)
        producer.close()
        check(pair.head(pair.backup) == 0 and pair.head(pair.master) == 0, "something was stored")
    finally:
        pair.cleanup()


def test_backup_started_long_after_the_master_catches_up():
    """20,000 RPCs on the master while its backup has never run (the link
    holds retention meanwhile; the master's parts are 1 MiB, so the backlog
    spans several): the backup starts and catches up from rpc 1."""
    endpoint = Endpoint().start()
    pair = Pair(services_with(endpoint), master_keys={"sync_mode": "none"})
    try:
        pair.master.start()
        load = Load(pair.master.port, threads=8, limit=2500)
        load.wait()
        check(not load.errors and load.acked == 20000, "load: %d acked, errors %s" % (load.acked, load.errors[:3]))
        wait_until(lambda: len(endpoint.received()) >= 20000, 120, "the master's push")
        link = admin_json(pair.master, "endpoints", "replicas")[0]
        check(link["state"] in ("CONNECTING", "BACKOFF") and link["acked_seqid"] == 0 and link["lag"] == 20000
              and link["lag_bytes"] > 1 << 20, str(link))
        # Only the link holds these parts now: the master still has them all.
        master_digest = admin_json(pair.master, "digest", "1", "20000")
        check(os.path.exists(os.path.join(pair.master.data_dir, "data.0")), "data.0 is gone already")
        started = time.time()
        pair.backup.start()
        head = pair.wait_caught_up(180)
        check(head == 20000, "head %d" % head)
        # Once the replica has acknowledged them the master may drop those
        # parts, so the digest taken before is the one to compare with.
        backup_digest = admin_json(pair.backup, "digest", "1", "20000")
        check(backup_digest == master_digest, "master %s, backup %s" % (master_digest, backup_digest))
        heads = [[(s["name"], s["head_seqid"]) for s in admin_json(node, "services")]
                 for node in (pair.master, pair.backup)]
        check(heads[0] == heads[1] == [("demo", 20000)], str(heads))
        # Acknowledged by the replica, the first part is no longer held; the
        # backup, which pushes nothing, keeps what its master keeps.
        wait_until(lambda: not os.path.exists(os.path.join(pair.master.data_dir, "data.0")), 30,
                   "the master to drop data.0 once the replica acknowledged it")
        producer = Producer(pair.master.port)
        producer.log_event(b"one more: the next batch tells the backup")
        producer.close()
        wait_until(lambda: not os.path.exists(os.path.join(pair.backup.data_dir, "data.0")), 30,
                   "the backup to drop data.0 like its master")
        check(os.path.exists(os.path.join(pair.backup.data_dir, "data.0")) is False
              and pair.head(pair.backup) == 20001, "backup head %d" % pair.head(pair.backup))
        print("  backlog of %d rpcs caught up in %.1f s" % (head, time.time() - started))
    finally:
        pair.cleanup()
        endpoint.stop()


def test_stop_send_link_is_not_streamed():
    """stop_send = true on a link's endpoint: the master never connects to
    that replica (STOPPED in tr-admin endpoints, said at start) and streams
    to the others."""
    pair = Pair(SERVICES)
    other = Pair(SERVICES)
    try:
        add_replica_link(pair.master, "more", {"b2": (other.repl_port, "true")})
        other.backup.start()
        pair.start()
        producer = Producer(pair.master.port)
        for i in range(50):
            producer.log_event(b"%d" % i)
        producer.close()
        check(pair.wait_caught_up() == 50, "the streamed backup")
        links = {e["endpoint"]: e for e in admin_json(pair.master, "endpoints")}
        check(links["b2"]["state"] == "STOPPED" and links["b2"]["acked_seqid"] == 0, str(links["b2"]))
        check(links["b1"]["state"] == "SENDING" and links["b1"]["acked_seqid"] == 50, str(links["b1"]))
        check(pair.head(other.backup) == 0, "a stop_send replica was streamed to")
        check("replica link more/b2 (127.0.0.1:%d): stop_send = true, not connecting" % other.repl_port
              in pair.master.log(), pair.master.log())
    finally:
        pair.cleanup()
        other.cleanup()


def test_replica_that_diverged_is_never_continued():
    """A replica whose store is not its master's: first ahead of it (it
    holds rpc 1, the master nothing), then at an equal head with a different
    rpc 1.  The master refuses to stream in both cases, says why (re-seed),
    shows the link in BACKOFF, and its producers are unaffected.  The
    re-seed procedure of docs/replication.md then makes it a copy again."""
    pair = Pair(SERVICES)
    try:
        pair.backup.start()
        client, transport = repl_client(pair.repl_port)
        client.hello("someone-else", 1, 1, demo_services(), "127.0.0.1:1", None)
        message = bytes.fromhex("80010001000000096c6f675f6576656e7400000001") + b"\x00"
        check(client.append(1, 1, [ReplRecord(1, 1, message, [0])], 1, None) == 1, "seeding the replica")
        transport.close()
        pair.master.start()
        wait_until(lambda: "has head 1, beyond this master's 0" in pair.master.log(), 30,
                   "the master to refuse a replica ahead of it")
        producer = Producer(pair.master.port)
        for i in range(3):
            producer.log_event(b"master %d" % i)
        producer.close()
        wait_until(lambda: "holds a different rpc 1 than this master" in pair.master.log(), 30,
                   "the master to refuse a replica whose rpc 1 is not its own")
        link = admin_json(pair.master, "endpoints", "replicas")[0]
        check(link["state"] in ("BACKOFF", "CONNECTING") and "diverged" in link["last_error"], str(link))
        check(pair.head(pair.backup) == 1 and pair.head(pair.master) == 3, "heads changed")
        check("re-seed the replica" in pair.master.log(), pair.master.log())

        # The re-seed of docs/replication.md: both stopped, the backup's data
        # dir replaced by a copy of the master's, its own node.meta kept.
        import shutil
        check(pair.master.stop() == 0 and pair.backup.stop() == 0, "clean stops")
        meta = open(os.path.join(pair.backup.data_dir, "node.meta"), "rb").read()
        shutil.rmtree(pair.backup.data_dir)
        shutil.copytree(pair.master.data_dir, pair.backup.data_dir)
        os.unlink(os.path.join(pair.backup.data_dir, "lock"))
        with open(os.path.join(pair.backup.data_dir, "node.meta"), "wb") as f:
            f.write(meta)
        pair.backup.start()
        pair.master.start()
        producer = Producer(pair.master.port)
        producer.log_event(b"after the re-seed")
        producer.close()
        check(assert_identical(pair) == 4, "head after the re-seed")
    finally:
        pair.cleanup()


def test_pair_under_valgrind():
    """Master and backup under valgrind memcheck: the stream, a refused
    producer, bad input on the replication port and a clean stop of both
    leave no memory error and nothing definitely lost."""
    import re
    import shutil
    import tempfile
    import trtest
    if trtest.sanitizer():
        raise trtest.Skip("valgrind cannot run a sanitizer build (%s)" % trtest.sanitizer())
    if shutil.which("valgrind") is None:
        raise trtest.Skip("valgrind is not installed (tools/deps.sh installs it)")
    pair = Pair(SERVICES)
    logs = {}
    try:
        for name, node in (("backup", pair.backup), ("master", pair.master)):
            logs[name] = tempfile.mktemp(prefix="tr-vg-%s-" % name, suffix=".log")
            node.command_prefix = ["valgrind", "--leak-check=full", "--errors-for-leak-kinds=definite",
                                   "--log-file=" + logs[name]]
            node.start(timeout=120)
        producer = Producer(pair.master.port)
        for i in range(200):
            producer.log_event(b"vg %d" % i)
        producer.close()
        pair.wait_caught_up(120)
        refused = Producer(pair.backup.port)
        try:
            refused.log_event(b"no")
        except TApplicationException:
            pass
        refused.close()
        s = socket.create_connection(("127.0.0.1", pair.repl_port), timeout=30)
        s.sendall(b"\x00\x00\x00\x10garbage garbage!")
        s.recv(100)
        s.close()
        client, transport = repl_client(pair.repl_port)
        refused_code(lambda: client.hello("m", 1, 5, demo_services(("x",)), "127.0.0.1:1", None))
        transport.close()
        check(pair.master.stop(timeout=120) == 0 and pair.backup.stop(timeout=120) == 0, "clean exits")
        for name, path in logs.items():
            report = open(path).read()
            errors = int(re.search(r"ERROR SUMMARY: (\d+) errors", report).group(1))
            lost = re.search(r"definitely lost: ([\d,]+) bytes", report)
            lost = int(lost.group(1).replace(",", "")) if lost else 0
            print("  valgrind %s: %d errors, %d bytes definitely lost" % (name, errors, lost))
            check(errors == 0 and lost == 0, "valgrind report of the %s:\n%s" % (name, report[-4000:]))
    finally:
        pair.cleanup()
        for path in logs.values():
            if os.path.exists(path):
                os.unlink(path)


if __name__ == "__main__":
    run_tests([
        test_steady_replication_under_load,
        test_backup_killed_repeatedly_during_load,
        test_bad_input_on_the_replication_port,
        test_producer_on_backup_gets_error_naming_the_master,
        test_backup_started_long_after_the_master_catches_up,
        test_stop_send_link_is_not_streamed,
        test_replica_that_diverged_is_never_continued,
        test_backup_with_another_group_file_size_is_refused,
        test_master_killed_and_restarted_the_backup_continues,
        test_reload_keeps_links_and_refuses_changing_them,
        test_pair_under_valgrind,
    ])
