"""Shared harness for thriftrouter integration tests.

Starts the real daemon on loopback in a temporary directory and drives it
with independent Thrift peers: python3-thrift generated clients as
producers and TThreadedServer endpoints that record every call they get
(with the seqid the router put in the header).  Run with Debian's
/usr/bin/python3 (python3-thrift).  Every wait is bounded; only processes
started here are stopped, by PID.  TR_DEBUG_LOG=all shows the daemon's
debug and info lines in its log (the G_MESSAGES_DEBUG it is started with).
"""
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

BUILD = os.environ.get("TR_BUILD_DIR") or os.path.join(os.path.dirname(__file__), "../../build")
SOURCE = os.environ.get("TR_SOURCE_DIR") or os.path.join(os.path.dirname(__file__), "../..")
DAEMON = os.path.join(BUILD, "router", "thriftrouter")

_GEN = os.path.join(BUILD, "gen-py")
if not os.path.isdir(os.path.join(_GEN, "tr_demo")):
    os.makedirs(_GEN, exist_ok=True)
    subprocess.check_call(["thrift", "--gen", "py", "-out", _GEN, os.path.join(SOURCE, "thrift", "demo.thrift")])
sys.path.insert(0, _GEN)

from thrift.protocol import TBinaryProtocol, TMultiplexedProtocol  # noqa: E402
from thrift.TMultiplexedProcessor import TMultiplexedProcessor  # noqa: E402
from thrift.server import TServer  # noqa: E402
from thrift.transport import TSocket, TTransport  # noqa: E402
from thrift.Thrift import TApplicationException  # noqa: E402
from tr_demo import EventLog  # noqa: E402

__all__ = ["Router", "Endpoint", "Producer", "free_port", "wait_until", "TApplicationException", "EventLog",
           "raw_call", "check", "sanitizer", "Skip", "SKIP_EXIT", "admin_json", "add_replica_link", "Pair"]

# The exit code of a suite whose every selected test was skipped; tests/CMakeLists.txt
# gives it to CTest as SKIP_RETURN_CODE, so a test that cannot run here shows as skipped.
SKIP_EXIT = 77


class Skip(Exception):
    """Raised by a test that cannot run on this machine (no root, no valgrind, a
    sanitizer build where the check means nothing); the message is the reason,
    printed as 'SKIP name: reason'.  Never raised for a failure."""


def sanitizer():
    """The sanitizer the daemon under test was built with, from TR_SANITIZE
    (set by tests/CMakeLists.txt): "address" (ASan+UBSan, TR_SANITIZE=1),
    "thread" (TSan, tools/tsan.sh) or None."""
    value = os.environ.get("TR_SANITIZE", "0")
    if value in ("", "0"):
        return None
    return "thread" if value == "thread" else "address"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_until(predicate, timeout=20.0, what="condition"):
    end = time.time() + timeout
    while time.time() < end:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError("timed out after %.0fs waiting for %s" % (timeout, what))


def check(cond, message):
    if not cond:
        raise AssertionError(message)


class _Recorder:
    """Handler of EventLog that records (name, seqid, data) per call."""

    def __init__(self, endpoint):
        self.endpoint = endpoint

    def _record(self, name, data):
        seqid = self.endpoint._local.seqid
        with self.endpoint.lock:
            self.endpoint.arrivals[seqid] = self.endpoint.arrivals.get(seqid, 0) + 1
            if self.endpoint.refuse.get(seqid, 0) > 0:
                self.endpoint.refuse[seqid] -= 1
                raise TApplicationException(TApplicationException.INTERNAL_ERROR, "endpoint refuses seqid %d" % seqid)
        with self.endpoint.lock:
            self.endpoint.calls.append((name, seqid, data))
            fail = self.endpoint.fail_next
            if fail > 0:
                self.endpoint.fail_next -= 1
            elif seqid is not None and seqid > self.endpoint.max_seqid:
                self.endpoint.max_seqid = seqid
        if fail > 0:
            with self.endpoint.lock:
                self.endpoint.calls.pop()
            raise TApplicationException(TApplicationException.INTERNAL_ERROR, "endpoint says no")

    def log_event(self, data):
        self._record("log_event", data)

    def fire(self, data):
        self._record("fire", data)

    def other(self, x):
        self._record("other", x)


class _SeqidProcessor(EventLog.Processor):
    def __init__(self, handler, endpoint):
        EventLog.Processor.__init__(self, handler)
        self.endpoint = endpoint

    def process(self, iprot, oprot):
        # The same protocol object serves every call of a connection: wrap once.
        if not getattr(iprot, "_tr_wrapped", False):
            original = iprot.readMessageBegin

            def read_message_begin():
                name, mtype, seqid = original()
                self.endpoint._local.seqid = seqid
                return name, mtype, seqid

            iprot.readMessageBegin = read_message_begin
            iprot._tr_wrapped = True
        return EventLog.Processor.process(self, iprot, oprot)


class Endpoint:
    """A stock Python TThreadedServer subscriber (on 127.0.0.1 unless told
    otherwise) that records calls."""

    def __init__(self, port=None, host="127.0.0.1", transport_factory=None, protocol_factory=None, multiplexed=None):
        self.port = port or free_port()
        self.host = host
        self.multiplexed = multiplexed  # a service name: serve through a TMultiplexedProcessor
        # Framed binary unless a test sets up a misconfigured server.
        self.transport_factory = transport_factory or TTransport.TFramedTransportFactory()
        self.protocol_factory = protocol_factory or TBinaryProtocol.TBinaryProtocolFactory()
        self.calls = []
        self.max_seqid = 0
        self.lock = threading.Lock()
        self.fail_next = 0
        self.refuse = {}  # seqid -> how many more times to answer it with a TApplicationException
        self.arrivals = {}  # seqid -> how many times it arrived, refused or not
        self._local = threading.local()
        self.server = None
        self.thread = None

    def start(self):
        processor = _SeqidProcessor(_Recorder(self), self)
        if self.multiplexed:
            multiplexer = TMultiplexedProcessor()
            multiplexer.registerProcessor(self.multiplexed, processor)
            processor = multiplexer
        transport = TSocket.TServerSocket(host=self.host, port=self.port)
        transport.listen()
        transport.listen = lambda: None  # serve() would listen again
        self.stopped = False
        self.clients = []
        accept = transport.accept

        def guarded_accept():
            if self.stopped:
                raise SystemExit  # not caught by TThreadedServer's "except Exception": ends serve()
            client = accept()
            if self.stopped:
                client.close()
                raise SystemExit
            self.clients.append(client)
            return client

        transport.accept = guarded_accept
        self.server = TServer.TThreadedServer(processor, transport, self.transport_factory, self.protocol_factory,
                                              daemon=True)
        self.transport = transport
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()
        return self

    def _serve(self):
        try:
            self.server.serve()
        except BaseException:
            pass  # stopped

    def stop(self):
        """Stops accepting and cuts every open connection (the endpoint is down)."""
        if self.thread is None:
            return
        self.stopped = True
        try:
            socket.create_connection((self.host, self.port), timeout=1).close()  # wake accept()
        except OSError:
            pass
        self.thread.join(timeout=5)
        self.transport.close()
        for client in self.clients:
            try:
                client.handle.shutdown(socket.SHUT_RDWR)
            except (OSError, AttributeError):
                pass
        self.thread = None

    def received(self, name=None):
        with self.lock:
            return [c for c in self.calls if name is None or c[0] == name]

    def highest_seqid(self):
        """The highest seqid received: with seqids 1..n in order and
        duplicates only as re-sends, how many were delivered.  O(1), for
        polling while millions arrive (payloads() is O(n) and, holding the
        GIL, slows down the endpoint's own server threads)."""
        with self.lock:
            return self.max_seqid

    def payloads(self, dedupe=True):
        """Payloads in seqid order, duplicates (re-deliveries) dropped."""
        seen = {}
        order = []
        for _, seqid, data in self.received():
            if dedupe and seqid in seen:
                check(seen[seqid] == data, "seqid %d delivered twice with different data" % seqid)
                continue
            seen[seqid] = data
            order.append((seqid, data))
        return order

    def check_sequence(self, expected_payloads):
        """Seqids must be 1..n in order (duplicates only as re-sends), payloads equal."""
        got = self.payloads()
        seqids = [s for s, _ in got]
        check(seqids == list(range(1, len(got) + 1)),
              "seqids not 1..n in order: %s" % seqids[:50])
        check([d for _, d in got] == list(expected_payloads),
              "payloads differ: got %d, expected %d" % (len(got), len(expected_payloads)))


class Producer:
    """A stock python3-thrift client (framed, binary) talking to the router."""

    def __init__(self, port, timeout_ms=20000, multiplexed=None):
        self.socket = TSocket.TSocket("127.0.0.1", port)
        self.socket.setTimeout(timeout_ms)
        self.transport = TTransport.TFramedTransport(self.socket)
        protocol = TBinaryProtocol.TBinaryProtocol(self.transport)
        if multiplexed:  # a service name: calls are named "SERVICE:method"
            protocol = TMultiplexedProtocol.TMultiplexedProtocol(protocol, multiplexed)
        self.client = EventLog.Client(protocol)
        self.transport.open()

    def __getattr__(self, name):
        return getattr(self.client, name)

    def close(self):
        self.transport.close()


def raw_call(port, data, read_reply=True, timeout=10):
    """Sends raw bytes to the router; returns what comes back until a full
    frame or EOF (bytes), for bad-input tests."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.sendall(data)
    out = b""
    if read_reply:
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                out += chunk
                if len(out) >= 4 and len(out) >= 4 + int.from_bytes(out[:4], "big"):
                    break
        except socket.timeout:
            pass
    s.close()
    return out


class Router:
    """The real thriftrouter daemon in a temp dir.

    services: {name: {"rpcs": [...], "endpoints": {id: port}, **service keys}}
    """

    def __init__(self, services, tmpdir=None, **router_keys):
        self.tmp = tmpdir or tempfile.mkdtemp(prefix="tr-it-")
        self.port = free_port()
        self.services = services
        self.router_keys = router_keys
        self.proc = None
        self.command_prefix = []  # e.g. unshare(1): the daemon is exec'd, so its PID is proc.pid
        self.log_path = os.path.join(self.tmp, "router.log")
        self.write_config()

    def write_config(self):
        os.makedirs(os.path.join(self.tmp, "services"), exist_ok=True)
        keys = {
            "server_id": "it-1", "server_type": "MASTER", "listen": "127.0.0.1:%d" % self.port,
            "admin_listen": "127.0.0.1:%d" % free_port(), "data_dir": "data",
            "group_file_size": "1M", "max_frame_size": "256K", "state_flush_ms": "20",
        }
        keys.update(self.router_keys)
        keys["services"] = ", ".join(self.services)
        self.admin_port = int(keys["admin_listen"].rsplit(":", 1)[1])
        with open(os.path.join(self.tmp, "router.conf"), "w") as f:
            f.write("[router]\n")
            for k, v in keys.items():
                f.write("%s = %s\n" % (k, v))
        for name, svc in self.services.items():
            with open(os.path.join(self.tmp, "services", name + ".conf"), "w") as f:
                f.write("[service]\nservice_type = COMMON\nrpcs = %s\n" % ", ".join(svc["rpcs"]))
                f.write("retry_backoff_ms = 20\nretry_backoff_max_ms = 200\nconnect_timeout_ms = 500\n")
                for k, v in svc.items():
                    if k not in ("rpcs", "endpoints"):
                        f.write("%s = %s\n" % (k, v))
                for eid, port in svc["endpoints"].items():
                    # port, or (port, stop_send) or (port, stop_send, host)
                    stop, host = "false", "127.0.0.1"
                    if isinstance(port, tuple):
                        port, stop, host = (port + (host,))[:3]
                    f.write("\n[endpoint %s]\nhost = %s\nport = %d\nstop_send = %s\n" % (eid, host, port, stop))

    @property
    def data_dir(self):
        return os.path.join(self.tmp, "data")

    def start(self, timeout=20):
        log = open(self.log_path, "ab")
        env = dict(os.environ, G_MESSAGES_DEBUG=os.environ.get("TR_DEBUG_LOG", ""))
        self.proc = subprocess.Popen(self.command_prefix + [DAEMON, "-c", os.path.join(self.tmp, "router.conf")],
                                     stdout=log,
                                     stderr=log, env=env)
        log.close()

        def up():
            if self.proc.poll() is not None:
                raise AssertionError("thriftrouter exited with %s:\n%s" % (self.proc.returncode, self.log()))
            # Both ports: the admin port opens after the producer port, and a
            # slow start (ThreadSanitizer) leaves a gap between the two.
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                socket.create_connection(("127.0.0.1", self.admin_port), timeout=0.2).close()
                return True
            except OSError:
                return False

        wait_until(up, timeout, "router to listen on its producer and admin ports")
        return self

    def stop(self, sig=signal.SIGTERM, timeout=30):
        if self.proc is None:
            return None
        self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
            raise AssertionError("router did not stop within %ds\n%s" % (timeout, self.log()))
        self.proc = None
        return rc

    def kill9(self):
        return self.stop(signal.SIGKILL)

    def log(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()[-6000:]
        except OSError:
            return ""

    def rss_kib(self):
        with open("/proc/%d/status" % self.proc.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def cleanup(self):
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.tmp, ignore_errors=True)


def require_private_mount_namespace(what):
    """Skips the calling test unless it can run commands in a private mount
    namespace (root, unshare(1) and mount(8); not inside a chroot such as a
    debootstrap test root, where unshare says "cannot change root filesystem
    propagation").  @what: what the test needs it for, for the skip reason."""
    if os.geteuid() != 0 or shutil.which("unshare") is None or shutil.which("mount") is None:
        raise Skip("needs root, unshare(1) and mount(8) %s" % what)
    probe = subprocess.run(["unshare", "--mount", "--propagation", "private", "true"],
                           capture_output=True, text=True)
    if probe.returncode != 0:
        raise Skip("no private mount namespace here (unshare: %s), needed %s" % (probe.stderr.strip(), what))


TR_ADMIN = os.path.join(BUILD, "tools", "tr-admin")


def admin_json(router, *args, timeout=30):
    """Runs tr-admin --json -c ROUTER.conf ARGS against @router; returns the
    parsed JSON document (raises with tr-admin's output on a non-zero exit)."""
    import json
    res = subprocess.run([TR_ADMIN, "--json", "-c", os.path.join(router.tmp, "router.conf")] + list(args),
                         capture_output=True, text=True, timeout=timeout)
    if res.returncode != 0:
        raise AssertionError("tr-admin %s: exit %d: %s%s" % (" ".join(args), res.returncode, res.stdout, res.stderr))
    return json.loads(res.stdout)


def add_replica_link(router, name, endpoints, **keys):
    """Adds to @router (a MASTER, not started) a service @name with
    service_type = BACKUP whose endpoints are {id: replication port, or
    (port, "true") for stop_send = true}
    (docs/replication.md), and lists it in router.conf.  Router.write_config()
    rewrites router.conf without it: call this again after it."""
    path = os.path.join(router.tmp, "services", name + ".conf")
    with open(path, "w") as f:
        f.write("[service]\nservice_type = BACKUP\n")
        keys = dict({"retry_backoff_ms": 20, "retry_backoff_max_ms": 200, "connect_timeout_ms": 500}, **keys)
        for k, v in keys.items():
            f.write("%s = %s\n" % (k, v))
        for eid, port in endpoints.items():
            stop = "false"
            if isinstance(port, tuple):  # (port, stop_send)
                port, stop = port
            f.write("\n[endpoint %s]\nhost = 127.0.0.1\nport = %d\nstop_send = %s\n" % (eid, port, stop))
    conf = os.path.join(router.tmp, "router.conf")
    with open(conf) as f:
        lines = f.read().splitlines()
    lines = [line + (", " if line.strip() != "services =" else " ") + name if line.startswith("services =") else line
             for line in lines]
    with open(conf, "w") as f:
        f.write("\n".join(lines) + "\n")


class Pair:
    """A MASTER and its BACKUP (docs/replication.md) on loopback: two Router
    objects, the master streaming to the backup's replication_listen through
    a service @link (service_type = BACKUP, endpoint b1).  Both have
    @services (the backup's COMMON services must be the master's).  Start
    them in any order (pair.start() starts the backup first); cleanup() both."""

    def __init__(self, services, link="replicas", master_keys=None, backup_keys=None, link_keys=None):
        self.repl_port = free_port()
        self.backup = Router(services, server_id="it-backup", server_type="BACKUP",
                             replication_listen="127.0.0.1:%d" % self.repl_port, **(backup_keys or {}))
        self.master = Router(services, server_id="it-master", **(master_keys or {}))
        self.link = link
        add_replica_link(self.master, link, {"b1": self.repl_port}, **(link_keys or {}))

    def start(self):
        self.backup.start()
        self.master.start()
        return self

    def head(self, router):
        return int(admin_json(router, "status")["head_rpc_id"])

    def wait_caught_up(self, timeout=60.0):
        """Waits until the backup's head is the master's (both read through
        tr-admin); returns that head."""
        heads = {}

        def same():
            heads["m"] = self.head(self.master)
            heads["b"] = self.head(self.backup)
            return heads["m"] == heads["b"]

        wait_until(same, timeout, "backup to catch up with the master (heads %s)" % heads)
        return heads["m"]

    def cleanup(self):
        self.master.cleanup()
        self.backup.cleanup()


def run_tests(tests):
    """Runs test functions in order, or only those named on the command line
    (CTest runs each test on its own); prints PASS, SKIP (with the reason) or
    FAIL per test and 'N passed, N skipped, N failed'.  Exits 1 on a failure,
    2 when a name given is not a test of this suite, SKIP_EXIT when every test
    that ran was skipped, 0 otherwise."""
    only = sys.argv[1:]
    known = [t.__name__ for t in tests]
    unknown = [name for name in only if name not in known]
    if unknown:
        print("no test named %s in %s (it has: %s)" % (", ".join(unknown), sys.argv[0], ", ".join(known)))
        sys.exit(2)
    passed = skipped = failed = 0
    for test in tests:
        if only and test.__name__ not in only:
            continue
        start = time.time()
        try:
            test()
            passed += 1
            print("PASS %s (%.1fs)" % (test.__name__, time.time() - start), flush=True)
        except Skip as e:
            skipped += 1
            print("SKIP %s: %s" % (test.__name__, e), flush=True)
        except Exception as e:  # report and go on with the next test
            failed += 1
            import traceback
            traceback.print_exc()
            print("FAIL %s: %s" % (test.__name__, e), flush=True)
    print("%d passed, %d skipped, %d failed" % (passed, skipped, failed))
    if failed:
        sys.exit(1)
    sys.exit(SKIP_EXIT if skipped and not passed else 0)
