"""Integration tests: the real thriftrouter daemon with python3-thrift
producers and TThreadedServer endpoints on loopback (DESIGN.md §2, §7)."""
import os
import re
import shutil
import socket
import struct
import subprocess
import threading
import time

from trtest import Skip
from trtest import (Endpoint, Producer, Router, TApplicationException, check, raw_call, require_private_mount_namespace,
                    run_tests, sanitizer, wait_until)


def started(services, **keys):
    return Router(services, **keys).start()


def send_calls(router, prefix, count):
    """Calls log_event with prefix-0 .. prefix-(count-1) through one
    producer connection; returns the payloads sent."""
    p = Producer(router.port)
    sent = [b"%s-%d" % (prefix, i) for i in range(count)]
    for d in sent:
        p.log_event(d)
    p.close()
    return sent


def test_fan_out_two_services_two_endpoints():
    eps = [Endpoint().start() for _ in range(4)]
    router = started({
        "books": {"rpcs": ["log_event"], "endpoints": {"a": eps[0].port, "b": eps[1].port}},
        "mail": {"rpcs": ["log_event", "fire"], "endpoints": {"c": eps[2].port, "d": eps[3].port}},
    })
    try:
        p = Producer(router.port)
        sent = [("payload-%d-" % i).encode() + bytes(range(256)) * (i % 3) for i in range(200)]
        for data in sent:
            check(p.log_event(data) is None, "void reply expected")
        p.fire(b"oneway-1")
        p.log_event(b"after-oneway")
        p.close()
        for ep in eps:
            n = 201 if ep in eps[:2] else 202
            wait_until(lambda: len(ep.payloads()) >= n, what="delivery to endpoint on %d" % ep.port)
        for ep in eps[:2]:
            ep.check_sequence(sent + [b"after-oneway"])
            check(all(name == "log_event" for name, _, _ in ep.received()), "books got a foreign rpc")
        for ep in eps[2:]:
            ep.check_sequence(sent + [b"oneway-1", b"after-oneway"])
            check(ep.received("fire")[0][2] == b"oneway-1", "oneway payload differs")
    finally:
        router.stop()
        router.cleanup()
        for ep in eps:
            ep.stop()


def test_unknown_rpc_gets_unknown_method_and_nothing_is_stored():
    ep = Endpoint().start()
    router = started({"books": {"rpcs": ["log_event"], "endpoints": {"a": ep.port}}})
    try:
        p = Producer(router.port)
        try:
            p.other(7)
            raise AssertionError("other() should have failed")
        except TApplicationException as e:
            check(e.type == TApplicationException.UNKNOWN_METHOD, "type %d" % e.type)
            check("other" in e.message, "message names the rpc: %s" % e.message)
        # The connection is still usable.
        p.log_event(b"x")
        p.close()
        wait_until(lambda: len(ep.payloads()) == 1, what="delivery")
        ep.check_sequence([b"x"])
    finally:
        router.stop()
        router.cleanup()
        ep.stop()


def serve_peer(name):
    """Starts tests/NAME (cglib_peer, cpp_peer) as an endpoint on a free port.
    Returns (path, port, process, lines): the lines it prints, collected."""
    import subprocess
    from trtest import BUILD, free_port
    peer = os.path.join(BUILD, "tests", name)
    port = free_port()
    server = subprocess.Popen([peer, "serve", str(port)], stdout=subprocess.PIPE, text=True)
    lines = []
    reader = threading.Thread(target=lambda: [lines.append(l.strip()) for l in server.stdout], daemon=True)
    reader.start()
    return peer, port, server, lines


def test_cglib_producer_and_endpoint():
    """c_glib generated client -> router -> c_glib ThriftSimpleServer endpoint."""
    import subprocess
    peer, port, server, lines = serve_peer("cglib_peer")
    router = started({"demo": {"rpcs": ["log_event", "fire"], "endpoints": {"c": port}}})
    try:
        out = subprocess.run([peer, "produce", str(router.port), "50", "cg"], capture_output=True, text=True,
                             timeout=60)
        check(out.returncode == 0, "c_glib producer failed: %s" % out.stderr)
        check("unknown-method ok" in out.stdout, "c_glib client did not see UNKNOWN_METHOD: %s" % out.stdout)
        expected = ["log_event cg-%d" % i for i in range(50)] + ["fire cg-oneway"]
        wait_until(lambda: len([l for l in lines if not l.startswith("listening")]) >= 51, what="c_glib endpoint")
        got = [l for l in lines if not l.startswith("listening")]
        check(got[:51] == expected, "c_glib endpoint got %s" % got[:5])
    finally:
        router.stop()
        router.cleanup()
        server.kill()
        server.wait()


def test_cpp_producer_and_endpoint():
    """Apache Thrift C++ generated client -> router -> stock C++ TThreadedServer
    endpoint, beside a python endpoint of another service: seqids 1, 2, 3 ..."""
    import subprocess
    peer, port, server, lines = serve_peer("cpp_peer")
    py = Endpoint().start()
    router = started({"cpp": {"rpcs": ["log_event", "fire"], "endpoints": {"c": port}},
                      "py": {"rpcs": ["log_event"], "endpoints": {"p": py.port}}})
    try:
        out = subprocess.run([peer, "produce", str(router.port), "50", "cpp"], capture_output=True, text=True,
                             timeout=60)
        check(out.returncode == 0, "C++ producer failed: %s" % out.stderr)
        check("unknown-method ok" in out.stdout, "C++ client did not see UNKNOWN_METHOD: %s" % out.stdout)
        expected = ["log_event cpp-%d %d" % (i, i + 1) for i in range(50)] + ["fire cpp-oneway 51"]
        wait_until(lambda: len([l for l in lines if not l.startswith("listening")]) >= 51, what="C++ endpoint")
        got = [l for l in lines if not l.startswith("listening")]
        check(got[:51] == expected, "C++ endpoint got %s ... (expected %s ...)" % (got[:3], expected[:3]))
        wait_until(lambda: len(py.payloads()) == 50, what="python endpoint")
        py.check_sequence([("cpp-%d" % i).encode() for i in range(50)])
    finally:
        router.stop()
        router.cleanup()
        server.kill()
        server.wait()
        py.stop()


def test_data_dir_of_another_node_is_refused():
    ep = Endpoint().start()
    router = started({"books": {"rpcs": ["log_event"], "endpoints": {"a": ep.port}}})
    try:
        check(router.stop() == 0, "clean stop")
        meta = open(os.path.join(router.data_dir, "node.meta")).read()
        check("server_id = it-1" in meta and "epoch = 1" in meta, "node.meta: %s" % meta)
        router.router_keys["server_id"] = "someone-else"
        router.write_config()
        try:
            router.start(timeout=10)
            raise AssertionError("router started on another node's data dir")
        except AssertionError as e:
            check("belongs to node 'it-1'" in str(e) and "someone-else" in str(e), "message: %s" % e)
        router.proc = None
        router.router_keys["server_id"] = "it-1"
        router.router_keys["group_file_size"] = "2M"
        router.write_config()
        try:
            router.start(timeout=10)
            raise AssertionError("router started with another group_file_size")
        except AssertionError as e:
            check("group_file_size = 1048576" in str(e), "message: %s" % e)
        router.proc = None
    finally:
        router.stop()
        router.cleanup()
        ep.stop()


def _frame(payload):
    return struct.pack(">i", len(payload)) + payload


def _strict_call(name, seqid, body=b"\x00", mtype=1):
    return struct.pack(">I", 0x80010000 | mtype) + struct.pack(">i", len(name)) + name + struct.pack(">i", seqid) + body


def _parse_exception(reply):
    check(len(reply) >= 8, "no reply: %r" % reply)
    mtype = struct.unpack(">I", reply[4:8])[0] & 0xff
    return mtype


def test_bad_input_gets_defined_outcomes_and_router_keeps_serving():
    ep = Endpoint().start()
    router = started({"books": {"rpcs": ["log_event"], "endpoints": {"a": ep.port}}}, max_frame_size="64K", group_file_size="1M")
    try:
        # Oversize frame: connection closed, nothing answered.
        check(raw_call(router.port, struct.pack(">i", 10 * 1024 * 1024) + b"x" * 100) == b"", "oversize answered")
        # Negative length: closed.
        check(raw_call(router.port, struct.pack(">i", -5)) == b"", "negative length answered")
        # Garbage inside a well-formed frame with no readable seqid: closed.
        check(raw_call(router.port, _frame(b"\xff\xff\xff\xff\x00\x00\x00\x00\x01")) == b"", "garbage answered")
        # Bad version with a readable seqid -> exception (type 3).
        reply = raw_call(router.port, _frame(struct.pack(">I", 0x80020001) + b"\x00\x00\x00\x03abc\x00\x00\x00\x05\x00"))
        check(reply == b"" or _parse_exception(reply) == 3, "bad version: %r" % reply)
        # REPLY sent by a producer -> TApplicationException.
        reply = raw_call(router.port, _frame(_strict_call(b"log_event", 9, mtype=2)))
        check(_parse_exception(reply) == 3, "REPLY from producer: %r" % reply)
        # Truncated header in a frame -> closed or exception, never a crash.
        raw_call(router.port, _frame(struct.pack(">I", 0x80010001) + b"\x00\x00\x00\x20ab"))
        # A producer that disconnects mid-frame.
        raw_call(router.port, struct.pack(">i", 1000) + b"partial", read_reply=False)
        # Non-strict (old) header is accepted and routed; pushes go out strict.
        body = b"\x0b\x00\x01" + struct.pack(">i", 3) + b"old\x00"
        old = struct.pack(">i", 9) + b"log_event" + b"\x01" + struct.pack(">i", 77) + body
        reply = raw_call(router.port, _frame(old))
        check(_parse_exception(reply) == 2, "non-strict call should get a REPLY: %r" % reply)
        check(struct.unpack(">i", reply[-5:-1])[0] == 77, "producer seqid echoed")
        # Everyone else is still served.
        p = Producer(router.port)
        p.log_event(b"still-alive")
        p.close()
        wait_until(lambda: len(ep.payloads()) == 2, what="delivery")
        ep.check_sequence([b"old", b"still-alive"])
        check(router.proc.poll() is None, "router died")
        check("frame larger than max_frame_size (10485760 bytes; max_frame_size is 65536)" in router.log(),
              "oversize frame logged with its size and the limit:\n" + router.log())
    finally:
        router.stop()
        router.cleanup()
        ep.stop()


def test_stock_clients_with_the_wrong_transport_are_told_what_is_wrong():
    """Stock python3-thrift clients set up with a transport or protocol the
    router does not speak (unframed, compact, THeader, HTTP, TLS) fail their
    call, and the router's log line names the likely mistake; nothing is
    stored, and a framed binary client is served meanwhile."""
    import ssl
    from thrift.protocol import TBinaryProtocol, TCompactProtocol, THeaderProtocol
    from thrift.transport import THeaderTransport, THttpClient, TSocket, TSSLSocket, TTransport
    from tr_demo import EventLog

    ep = Endpoint().start()
    router = started({"books": {"rpcs": ["log_event"], "endpoints": {"a": ep.port}}})

    def over_socket(make_transport, make_protocol, socket_class=TSocket.TSocket, **socket_args):
        sock = socket_class("127.0.0.1", router.port, **socket_args)
        sock.setTimeout(5000)
        transport = make_transport(sock)
        return transport, make_protocol(transport)

    def header(transport):
        return THeaderProtocol.THeaderProtocol(transport, (THeaderTransport.THeaderClientType.HEADERS,))

    def http():
        transport = THttpClient.THttpClient("http://127.0.0.1:%d/" % router.port)
        transport.setTimeout(5000)
        return transport, TBinaryProtocol.TBinaryProtocol(transport)

    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    tls.check_hostname = False
    tls.verify_mode = ssl.CERT_NONE
    cases = [
        ("unframed binary", "TFramedTransport",
         lambda: over_socket(TTransport.TBufferedTransport, TBinaryProtocol.TBinaryProtocol)),
        ("framed compact", "the binary protocol",
         lambda: over_socket(TTransport.TFramedTransport, TCompactProtocol.TCompactProtocol)),
        ("THeader", "THeader", lambda: over_socket(lambda s: s, header)),
        ("HTTP", "HTTP", http),
        ("TLS", "TLS", lambda: over_socket(TTransport.TFramedTransport, TBinaryProtocol.TBinaryProtocol,
                                           TSSLSocket.TSSLSocket, ssl_context=tls)),
    ]
    try:
        for what, words, make in cases:
            try:
                transport, protocol = make()
                transport.open()
                EventLog.Client(protocol).log_event(b"wrong-" + what.encode())
                raise AssertionError("%s: the call succeeded" % what)
            except AssertionError:
                raise
            except Exception:
                pass  # refused, as it must be
            wait_until(lambda: any(words in line and "this looks like" in line for line in router.log().splitlines()),
                       timeout=10, what="a log line naming %r for the %s client" % (words, what))
            p = Producer(router.port)
            p.log_event(b"right-after-" + what.encode())
            p.close()  # no pause: each diagnosis is rate-limited on its own
        wait_until(lambda: len(ep.payloads()) >= len(cases), what="delivery of the framed binary calls")
        ep.check_sequence([b"right-after-" + what.encode() for what, _, _ in cases])
        check(router.proc.poll() is None, "router exited")
    finally:
        router.stop()
        router.cleanup()
        ep.stop()


def test_two_different_bad_clients_within_a_second_each_get_their_log_line():
    """Bad-input lines are rate-limited per kind of diagnosis, not all
    together: an unframed binary client and a framed compact client that
    arrive within the same second each get their own line, and a line after
    which nothing was suppressed carries no "(0 … suppressed)" suffix."""
    ep = Endpoint().start()
    router = started({"books": {"rpcs": ["log_event"], "endpoints": {"a": ep.port}}})
    try:
        name = b"log_event"
        unframed = struct.pack(">Ii", 0x80010001, len(name)) + name + struct.pack(">i", 1) + b"\x00"
        compact = b"\x82\x21\x01" + bytes([len(name)]) + name + b"\x00"
        start = time.monotonic()
        raw_call(router.port, unframed)
        raw_call(router.port, _frame(compact))
        check(time.monotonic() - start < 1.0, "both clients must come within one second (took %.2fs)"
              % (time.monotonic() - start))
        for words in ("unframed binary-protocol", "framed compact-protocol"):
            wait_until(lambda: any(words in line for line in router.log().splitlines()), timeout=10,
                       what="a log line naming the %s client:\n%s" % (words, router.log()))
        check("(0 similar messages suppressed" not in router.log(), "empty suppression suffix:\n" + router.log())
        check(router.proc.poll() is None, "router exited")
    finally:
        router.stop()
        router.cleanup()
        ep.stop()


def test_stock_servers_with_the_wrong_transport_are_named_and_then_caught_up():
    """Stock python3-thrift endpoints set up with the wrong transport or
    protocol (TBufferedTransport; TFramedTransport with TCompactProtocol)
    cannot read the router's pushes and hang up.  Nothing is acknowledged,
    the router's log line says what a server doing this is likely missing,
    and once a framed binary server takes the port it gets every RPC, in
    order."""
    from thrift.protocol import TBinaryProtocol, TCompactProtocol
    from thrift.transport import TTransport

    cases = [("unframed binary", TTransport.TBufferedTransportFactory(), TBinaryProtocol.TBinaryProtocolFactory()),
             ("framed compact", TTransport.TFramedTransportFactory(), TCompactProtocol.TCompactProtocolFactory())]
    for what, transport_factory, protocol_factory in cases:
        wrong = Endpoint(transport_factory=transport_factory, protocol_factory=protocol_factory).start()
        router = started({"books": {"rpcs": ["log_event"], "endpoints": {"a": wrong.port}}})
        right = None
        try:
            sent = send_calls(router, what.encode(), 10)
            wait_until(lambda: "before its first reply (a server that is not framed binary does this" in router.log(),
                       what="the log line about the %s endpoint" % what)
            check(wrong.payloads() == [], "%s endpoint decoded a push: %r" % (what, wrong.payloads()[:3]))
            wrong.stop()
            right = Endpoint(port=wrong.port).start()
            wait_until(lambda: len(right.payloads()) >= len(sent), what="catch-up after the %s endpoint" % what)
            right.check_sequence(sent)
        finally:
            router.stop()
            router.cleanup()
            wrong.stop()
            if right is not None:
                right.stop()


def test_multiplexed_producer_and_endpoint():
    """A stock TMultiplexedProtocol producer sends "EventLog:log_event" and
    "EventLog:fire"; a service subscribing those names delivers them to a
    TMultiplexedProcessor endpoint as sent.  The barrier after the closing
    oneway carries the "EventLog:" prefix, so the processor answers it
    (UNKNOWN_METHOD) and the oneway is acknowledged once: a barrier without
    the prefix made the processor hang up, and the oneway was resent
    without end."""
    ep = Endpoint(multiplexed="EventLog").start()
    router = started({"books": {"rpcs": ["EventLog:log_event", "EventLog:fire"], "endpoints": {"a": ep.port}}})
    try:
        p = Producer(router.port, multiplexed="EventLog")
        sent = [b"mux-%d" % i for i in range(10)]
        for d in sent:
            p.log_event(d)
        p.fire(b"mux-oneway")
        p.close()
        sent.append(b"mux-oneway")
        wait_until(lambda: len(ep.payloads()) >= len(sent), what="delivery to the multiplexed endpoint")
        time.sleep(0.5)  # a resend loop would show here
        ep.check_sequence(sent)
        check(len(ep.received()) == len(sent), "%d calls received for %d sent" % (len(ep.received()), len(sent)))
        check("backoff" not in router.log(), "the endpoint failed:\n" + router.log())
    finally:
        router.stop()
        router.cleanup()
        ep.stop()


def test_endpoint_down_then_back_catches_up_in_order():
    ep = Endpoint()
    router = started({"books": {"rpcs": ["log_event"], "endpoints": {"a": ep.port}}})
    try:
        p = Producer(router.port)
        sent = [b"while-down-%d" % i for i in range(100)]
        for d in sent:
            p.log_event(d)
        time.sleep(0.5)
        ep.start()
        more = [b"after-up-%d" % i for i in range(50)]
        for d in more:
            p.log_event(d)
        p.close()
        wait_until(lambda: len(ep.payloads()) >= 150, what="catch-up")
        ep.check_sequence(sent + more)
    finally:
        router.stop()
        router.cleanup()
        ep.stop()


def test_endpoint_recovery_is_logged_where_its_failures_were():
    """An endpoint that goes down and comes back: after the warnings about
    its failures, the log (default levels: no info lines) says it is
    connected again, how many attempts and how long it took."""
    ep = Endpoint().start()
    router = started({"books": {"rpcs": ["log_event"], "endpoints": {"a": ep.port}}})
    back = None
    try:
        sent = send_calls(router, b"before", 5)
        wait_until(lambda: len(ep.payloads()) >= 5, what="delivery before the outage")
        ep.stop()
        wait_until(lambda: "books/a: backoff" in router.log(), what="the failure in the log")
        back = Endpoint(port=ep.port).start()
        more = send_calls(router, b"after", 5)
        wait_until(lambda: len(back.payloads()) >= 5, what="delivery after the outage")
        check(back.payloads() == list(enumerate(more, 6)), "payloads after the outage differ: %s" % back.payloads())
        check(len(ep.payloads()) == 5 and [d for _, d in ep.payloads()] == sent, "payloads before the outage differ")
        pattern = "books/a: connected to 127.0.0.1:%d after " % ep.port
        wait_until(lambda: pattern in router.log(), timeout=5, what="the recovery line in the log")
        line = [l for l in router.log().splitlines() if pattern in l][-1]
        print("  " + line.strip())
        check(re.search(r"after \d+ failed attempts? in \d+\.\d s \(last: ", line),
              "the recovery line does not say how long, how many attempts and the last error: " + line)
    finally:
        router.stop()
        router.cleanup()
        ep.stop()
        if back:
            back.stop()


def test_endpoint_started_after_the_router_gets_its_rpcs_quickly():
    """The README walk-through: the router runs with its endpoint not yet
    started (default backoff, 100 ms doubling to 30 s), the endpoint starts
    15 s later and must get the RPC within a few seconds.  A refused
    connection before first contact is retried at most 1 s apart; with the
    backoff of a failing endpoint the next attempt came ~10 s later."""
    ep = Endpoint()
    router = Router({"books": {"rpcs": ["log_event"], "endpoints": {"a": ep.port}}})
    # The harness shortens the backoff of every service: back to the defaults.
    conf = os.path.join(router.tmp, "services", "books.conf")
    with open(conf) as f:
        text = f.read()
    with open(conf, "w") as f:
        f.write(text.replace("retry_backoff_ms = 20\nretry_backoff_max_ms = 200\n", ""))
    try:
        router.start()
        sent = send_calls(router, b"early", 1)
        time.sleep(15)  # the scenario: 15 s without the endpoint
        check(router.proc.poll() is None, "router exited")
        ep.start()
        t0 = time.time()
        wait_until(lambda: len(ep.payloads()) >= 1, timeout=30, what="first delivery")
        took = time.time() - t0
        print("  endpoint started 15 s after the router got its rpc %.2f s later" % took)
        ep.check_sequence(sent)
        check(took < 3.0, "the endpoint got its rpc %.1f s after it started (first contact should be quick)" % took)
    finally:
        router.stop()
        router.cleanup()
        ep.stop()


def test_endpoint_by_host_name_and_an_unresolvable_one():
    """host = localhost goes through the name lookup (off the push thread)
    and delivers; a name that does not resolve fails that endpoint only,
    with a log line naming it, and it keeps being retried."""
    ep = Endpoint().start()
    lost = Endpoint().start()
    router = started({
        "books": {"rpcs": ["log_event"], "endpoints": {"byname": (ep.port, "false", "localhost")}},
        "mail": {"rpcs": ["log_event"],
                 "endpoints": {"nowhere": (lost.port, "false", "no-such-host.invalid")}},
    })
    try:
        sent = send_calls(router, b"by-name", 50)
        wait_until(lambda: len(ep.payloads()) >= 50, what="delivery to the endpoint named localhost")
        ep.check_sequence(sent)
        wait_until(lambda: "cannot resolve no-such-host.invalid" in router.log(),
                   what="the resolution failure in the log")
        check(lost.payloads() == [], "an unresolvable host received something")
        check(router.proc.poll() is None, "router exited")
    finally:
        router.stop()
        router.cleanup()
        ep.stop()
        lost.stop()


def test_every_address_of_a_name_is_tried():
    """A name with two addresses, ::1 and 127.0.0.1 (an /etc/hosts of its
    own, bind-mounted in a private mount namespace: root and unshare(1)
    needed, skipped otherwise). Two endpoints use that name, one listening
    on ::1 only and one on 127.0.0.1 only: whatever order the resolver
    gives, one of them is refused at the first address and must be reached
    at the second."""
    require_private_mount_namespace("for an /etc/hosts of its own")
    try:
        socket.socket(socket.AF_INET6).bind(("::1", 0))
    except OSError:
        raise Skip("no IPv6 loopback")
    # Each port is picked free on 127.0.0.1 (free_port), so nothing answers
    # the wrong family's address for either endpoint.
    v6 = Endpoint(host="::1").start()
    v4 = Endpoint().start()
    router = Router({
        "books": {"rpcs": ["log_event"], "endpoints": {"six": (v6.port, "false", "trmulti")}},
        "mail": {"rpcs": ["log_event"], "endpoints": {"four": (v4.port, "false", "trmulti")}},
    })
    hosts = os.path.join(router.tmp, "hosts")
    with open(hosts, "w") as f:
        f.write("127.0.0.1 localhost\n::1 trmulti\n127.0.0.1 trmulti\n")
    router.command_prefix = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
                             'mount --bind "$0" /etc/hosts && exec "$@"', hosts]
    try:
        router.start()
        sent = send_calls(router, b"two-addresses", 20)
        try:
            wait_until(lambda: len(v6.payloads()) >= 20 and len(v4.payloads()) >= 20,
                       what="delivery to both endpoints of the two-address name")
        except AssertionError as e:
            raise AssertionError("%s (::1 got %d, 127.0.0.1 got %d); router log:\n%s"
                                 % (e, len(v6.payloads()), len(v4.payloads()), router.log()[-4000:]))
        v6.check_sequence(sent)
        v4.check_sequence(sent)
    finally:
        router.stop()
        router.cleanup()
        v6.stop()
        v4.stop()


def test_endpoint_exception_is_retried_in_order():
    ep = Endpoint().start()
    ep.fail_next = 3
    # max_inflight = 1: with pipelining, RPCs behind a rejected one may already
    # have been processed by the endpoint (docs/delivery.md); strict order
    # under rejections needs one RPC in flight.
    router = started({"books": {"rpcs": ["log_event"], "endpoints": {"a": ep.port}, "max_inflight": 1}})
    try:
        sent = send_calls(router, b"r", 20)
        wait_until(lambda: len(ep.payloads()) >= 20, what="delivery after retries")
        ep.check_sequence(sent)
    finally:
        router.stop()
        router.cleanup()
        ep.stop()


def test_rpcs_behind_a_refused_one_are_not_replayed_at_every_retry():
    """Defaults (max_inflight 64, on_failure = block): the endpoint refuses
    seqid 1 five times.  Seqids 2 and 3 went out pipelined behind it once;
    while seqid 1 keeps failing only it is sent (window 1), so 2 and 3
    arrive at most twice (once behind the first failure, once after 1 got
    through), not once per retry."""
    refusals = 5
    ep = Endpoint()
    ep.refuse = {1: refusals}
    router = started({"books": {"rpcs": ["log_event"], "endpoints": {"a": ep.port}}})
    try:
        # All three are committed before the endpoint listens: they go out in
        # one send, pipelined.
        sent = send_calls(router, b"behind", 3)
        ep.start()
        wait_until(lambda: len(ep.payloads()) >= 3, what="delivery after the refusals")
        # 2 and 3 reached the handler before 1 was accepted (pipelining).
        check(sorted(ep.payloads()) == list(enumerate(sent, 1)), "payloads differ: %s" % ep.payloads())
        with ep.lock:
            arrivals = dict(ep.arrivals)
        print("  arrivals per seqid: %s" % arrivals)
        check(arrivals.get(1) == refusals + 1, "seqid 1 arrived %s times, expected %d" % (arrivals.get(1), refusals + 1))
        for seqid in (2, 3):
            check(arrivals.get(seqid, 0) <= 2,
                  "seqid %d arrived %d times behind %d refusals of seqid 1" % (seqid, arrivals.get(seqid, 0), refusals))
        more = send_calls(router, b"after", 100)
        wait_until(lambda: len(ep.payloads()) >= 103, what="delivery once the window grew back")
        check(sorted(ep.payloads()) == list(enumerate(sent + more, 1)), "payloads differ after the recovery")
    finally:
        router.stop()
        router.cleanup()
        ep.stop()


def test_stop_send_holds_position_and_clean_restart_resumes():
    ep = Endpoint().start()
    services = {"books": {"rpcs": ["log_event"], "endpoints": {"a": (ep.port, "true")}}}
    router = started(services)
    try:
        p = Producer(router.port)
        first = [b"held-%d" % i for i in range(30)]
        for d in first:
            p.log_event(d)
        p.close()
        time.sleep(0.5)
        check(ep.received() == [], "stop_send endpoint got rpcs")
        check(router.stop() == 0, "clean stop exit code")
        router.services["books"]["endpoints"]["a"] = ep.port
        router.write_config()
        router.start()
        wait_until(lambda: len(ep.payloads()) >= 30, what="delivery after start-send")
        ep.check_sequence(first)
        check(router.stop() == 0, "clean stop")
        # Restart again: nothing is re-sent beyond what was unrecorded.
        before = len(ep.received())
        router.start()
        time.sleep(0.5)
        check(len(ep.received()) == before, "acknowledged rpcs re-sent after clean restart")
    finally:
        router.stop()
        router.cleanup()
        ep.stop()


def _load(port, prefix, count, acked, errors):
    try:
        p = Producer(port, timeout_ms=5000)
        for i in range(count):
            data = b"%s-%d" % (prefix, i)
            p.log_event(data)
            acked.append(data)
        p.close()
    except Exception as e:  # the router was killed under us
        errors.append(e)


def test_kill9_under_load_loses_nothing_acknowledged():
    ep = Endpoint().start()
    router = started({"books": {"rpcs": ["log_event"], "endpoints": {"a": ep.port}}})
    all_acked = []
    try:
        for round_no in range(3):
            acked, errors = [], []
            threads = [threading.Thread(target=_load, args=(router.port, b"k%d-%d" % (round_no, t), 100000, acked, errors))
                       for t in range(2)]
            for t in threads:
                t.start()
            time.sleep(0.7)
            router.kill9()
            for t in threads:
                t.join(timeout=20)
            all_acked.extend(acked)
            router.start()
        wait_until(lambda: set(d for _, d in ep.payloads()) >= set(all_acked), timeout=60,
                   what="every acknowledged rpc delivered")
        got = ep.payloads()
        check([s for s, _ in got] == list(range(1, len(got) + 1)), "gap or reorder in seqids")
        received = [d for _, d in got]
        # Per producer stream, order is preserved.
        for round_no in range(3):
            for t in range(2):
                prefix = b"k%d-%d-" % (round_no, t)
                mine = [int(d[len(prefix):]) for d in received if d.startswith(prefix)]
                check(mine == sorted(mine), "producer order broken for %r" % prefix)
        dups = len(ep.received()) - len(got)
        print("  kill -9 x3: %d acknowledged, %d delivered, %d duplicates" % (len(all_acked), len(got), dups))
        check(len(all_acked) > 0, "no load was acknowledged")
    finally:
        router.stop()
        router.cleanup()
        ep.stop()


def test_retention_deletes_parts_only_when_all_endpoints_passed():
    fast = Endpoint().start()
    slow = Endpoint()
    router = started({"books": {"rpcs": ["log_event"], "endpoints": {"fast": fast.port, "slow": slow.port}}},
                     group_file_size="64K", max_frame_size="16K")
    try:
        p = Producer(router.port)
        sent = [b"z" * 1000 + b"%d" % i for i in range(300)]
        for d in sent:
            p.log_event(d)
        wait_until(lambda: len(fast.payloads()) >= 300, what="fast endpoint")
        time.sleep(2.5)
        check(os.path.exists(os.path.join(router.data_dir, "data.0")), "data.0 deleted while 'slow' needs it")
        slow.start()
        wait_until(lambda: len(slow.payloads()) >= 300, what="slow endpoint")
        p.log_event(b"tick")
        wait_until(lambda: not os.path.exists(os.path.join(router.data_dir, "data.0")), timeout=10,
                   what="data.0 deleted once every endpoint passed it")
        p.close()
        slow.check_sequence(sent + [b"tick"][:len(slow.payloads()) - 300])
    finally:
        router.stop()
        router.cleanup()
        fast.stop()
        slow.stop()


def test_rss_bounded_while_stopped_endpoint_backlog_grows():
    """A stopped endpoint's backlog grows to 1,000,000 RPCs (TR_BACKLOG_RPCS):
    it costs disk, not memory.  Load from tr-bench's C producers (4 synchronous
    connections, like stock clients)."""
    import subprocess
    from trtest import BUILD
    if sanitizer() == "address":
        raise Skip("under AddressSanitizer, shadow memory and quarantine make RSS meaningless")
    if sanitizer() == "thread":
        raise Skip("under ThreadSanitizer, its shadow memory and per-thread history make RSS meaningless")
    ep = Endpoint()
    router = started({"books": {"rpcs": ["log_event"], "endpoints": {"a": (ep.port, "true")}}},
                     rpc_cache_size="4M", sync_mode="none", group_file_size="64M")
    try:
        total = int(os.environ.get("TR_BACKLOG_RPCS", "1000000"))
        load = subprocess.Popen([os.path.join(BUILD, "tools", "tr-bench"), "load", "--port", str(router.port),
                                 "--conns", "4", "--count", str(total), "--size", "100"],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        rss = []
        deadline = time.time() + 600
        while load.poll() is None and time.time() < deadline:
            rss.append(router.rss_kib())
            time.sleep(0.5)
        if load.poll() is None:
            load.kill()
            raise AssertionError("load did not finish within 600 s")
        out = load.stdout.read()
        check(load.returncode == 0, "tr-bench load failed:\n%s" % out)
        rss.append(router.rss_kib())
        early = rss[min(4, len(rss) - 1)]
        peak = max(rss)
        print("  backlog %d rpcs: router RSS after 2 s %d KiB, peak %d KiB, end %d KiB"
              % (total, early, peak, rss[-1]))
        check(peak < 16 * 1024 + 4 * 1024 + 12 * 1024, "router RSS %d KiB is not bounded by configuration" % peak)
        check(peak - early < 8 * 1024, "router RSS grew %d KiB with the backlog" % (peak - early))
    finally:
        router.stop()
        router.cleanup()


if __name__ == "__main__":
    run_tests([
        test_fan_out_two_services_two_endpoints,
        test_unknown_rpc_gets_unknown_method_and_nothing_is_stored,
        test_cglib_producer_and_endpoint,
        test_cpp_producer_and_endpoint,
        test_data_dir_of_another_node_is_refused,
        test_bad_input_gets_defined_outcomes_and_router_keeps_serving,
        test_stock_clients_with_the_wrong_transport_are_told_what_is_wrong,
        test_two_different_bad_clients_within_a_second_each_get_their_log_line,
        test_stock_servers_with_the_wrong_transport_are_named_and_then_caught_up,
        test_multiplexed_producer_and_endpoint,
        test_endpoint_down_then_back_catches_up_in_order,
        test_endpoint_recovery_is_logged_where_its_failures_were,
        test_endpoint_started_after_the_router_gets_its_rpcs_quickly,
        test_endpoint_by_host_name_and_an_unresolvable_one,
        test_every_address_of_a_name_is_tried,
        test_endpoint_exception_is_retried_in_order,
        test_rpcs_behind_a_refused_one_are_not_replayed_at_every_retry,
        test_stop_send_holds_position_and_clean_restart_resumes,
        test_kill9_under_load_loses_nothing_acknowledged,
        test_retention_deletes_parts_only_when_all_endpoints_passed,
        test_rss_bounded_while_stopped_endpoint_backlog_grows,
    ])
