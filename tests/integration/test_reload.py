"""Integration tests of configuration reload (issue 4; docs/configuration.md
"Reload"): tr-admin reload and SIGHUP against a live router with RPCs
flowing.  Each test edits router.conf / conf/services/*.conf in the
router's temp dir, reloads, and checks delivery through recording
endpoints (seqids as the router put them in the headers)."""
import json
import logging
import os
import re
import signal
import struct
import threading
import time

from test_admin import conf, endpoint_info, ok, tr_admin
from trtest import Endpoint, Producer, Router, TApplicationException, check, free_port, run_tests, wait_until


def write_service(router, name, rpcs, endpoints, **keys):
    """Writes services/NAME.conf (atomically: a reload may be reading it);
    endpoints: {id: port or (port, {key: value})}."""
    path = os.path.join(router.tmp, "services", name + ".conf")
    with open(path + ".tmp", "w") as f:
        f.write("[service]\nrpcs = %s\nretry_backoff_ms = 20\nretry_backoff_max_ms = 200\n" % ", ".join(rpcs))
        f.write("connect_timeout_ms = 500\n")
        for k, v in keys.items():
            f.write("%s = %s\n" % (k, v))
        for eid, spec in endpoints.items():
            port, extra = spec if isinstance(spec, tuple) else (spec, {})
            f.write("\n[endpoint %s]\nhost = 127.0.0.1\nport = %d\n" % (eid, port))
            for k, v in extra.items():
                f.write("%s = %s\n" % (k, v))
    os.replace(path + ".tmp", path)


def set_services(router, names):
    path = conf(router)
    with open(path) as f:
        text = f.read()
    with open(path, "w") as f:
        f.write(re.sub(r"^services = .*$", "services = " + ", ".join(names), text, flags=re.M))


def reload_ok(router):
    out = ok(router, "reload")
    check(out.strip().splitlines()[-1].startswith("reload done"), out)
    return out


def send(router, n, prefix, name="log_event"):
    p = Producer(router.port)
    data = [b"%s-%d" % (prefix, i) for i in range(n)]
    for d in data:
        getattr(p, name)(d)
    p.close()
    return data


def seqids(ep):
    return [s for s, _ in ep.payloads()]


def unknown_method(router, name):
    """TRUE if a CALL of @name (log_event or other) is answered UNKNOWN_METHOD."""
    p = Producer(router.port)
    try:
        getattr(p, name)(0 if name == "other" else b"x")
    except TApplicationException as e:
        return e.type == TApplicationException.UNKNOWN_METHOD
    finally:
        p.close()
    return False


def acked_on_disk(router, service, endpoint):
    """The acknowledged seqid in SERVICE@ENDPOINT's send state file as the
    router last wrote it (RotateFile, docs/format/rotatefile.md: the record
    with the highest sequence number; state payload: u32 version, u64 acked,
    little-endian, storage/tr_positions.c), or None if there is none yet."""
    best_seq, acked = 0, None
    for suffix in (".0", ".1"):
        try:
            with open(os.path.join(router.data_dir, "state", "%s@%s%s" % (service, endpoint, suffix)), "rb") as f:
                data = f.read()
        except FileNotFoundError:
            continue
        off = 0
        while off + 20 <= len(data):
            length, record_type = struct.unpack_from("<IB", data, off)
            if record_type != 0x52 or length < 8 or off + 12 + length > len(data):
                break
            (seq,) = struct.unpack_from("<Q", data, off + 12)
            if length >= 8 + 12 and seq > best_seq:
                best_seq, (_, acked) = seq, struct.unpack_from("<IQ", data, off + 20)
            off += 12 + length
    return acked


def stop_cleanly(router):
    """Stops the router; after reloads it must still exit 0 (and, under the
    sanitizers, with no error or leak report)."""
    if router.proc is None:
        return
    rc = router.stop()
    log = router.log()
    check(rc == 0 and "Sanitizer" not in log, "router exit %s after reloads:\n%s" % (rc, log))


class Setup:
    """One router with service books (log_event) and endpoint a."""

    def __init__(self, extra_endpoints=0, services=None):
        self.eps = [Endpoint().start() for _ in range(1 + extra_endpoints)]
        self.router = Router(services or {"books": {"rpcs": ["log_event"], "endpoints": {"a": self.eps[0].port}}})
        self.router.start()

    def close(self):
        try:
            stop_cleanly(self.router)
        finally:
            self.router.cleanup()
            for ep in self.eps:
                ep.stop()


def test_add_endpoints_head_and_earliest():
    s = Setup(extra_endpoints=2)
    a, b, c = s.eps
    try:
        first = send(s.router, 10, b"before")
        wait_until(lambda: len(a.payloads()) == 10, what="delivery to a")
        write_service(s.router, "books", ["log_event"],
                      {"a": a.port, "b": b.port, "c": (c.port, {"start": "earliest"})})
        out = reload_ok(s.router)
        check("endpoint books/b added" in out and "start = head" in out, out)
        check("endpoint books/c added" in out and "start = earliest" in out, out)
        second = send(s.router, 10, b"after")
        wait_until(lambda: len(a.payloads()) == 20 and len(b.payloads()) == 10 and len(c.payloads()) == 20,
                   what="delivery after reload")
        a.check_sequence(first + second)
        c.check_sequence(first + second)
        check(seqids(b) == list(range(11, 21)), "b (start = head) got seqids %s" % seqids(b))
        check([d for _, d in b.payloads()] == second, "b payloads")
        eps = [e["endpoint"] for e in json.loads(ok(s.router, "--json", "endpoints", "books"))]
        check(eps == ["a", "b", "c"], str(eps))
        check(json.loads(ok(s.router, "--json", "reload")) == {"ok": True, "changes": []},
              "second reload should change nothing")
        write_service(s.router, "books", ["log_event"], {"a": a.port, "b": b.port})
        doc = json.loads(ok(s.router, "--json", "reload"))
        check(doc["ok"] and len(doc["changes"]) == 1 and doc["changes"][0].startswith("endpoint books/c removed"),
              str(doc))
    finally:
        s.close()


def test_remove_endpoint_and_readd_resumes_from_its_state():
    s = Setup(extra_endpoints=1)
    a, b = s.eps
    try:
        write_service(s.router, "books", ["log_event"], {"a": a.port, "b": b.port})
        reload_ok(s.router)
        first = send(s.router, 5, b"one")
        wait_until(lambda: len(b.payloads()) == 5, what="b gets 5")
        write_service(s.router, "books", ["log_event"], {"a": a.port})
        out = reload_ok(s.router)
        check("endpoint books/b removed" in out, out)
        second = send(s.router, 5, b"two")
        wait_until(lambda: len(a.payloads()) == 10, what="a gets 10")
        time.sleep(0.3)
        check(len(b.payloads()) == 5, "removed endpoint still receives: %d" % len(b.payloads()))
        check([e["endpoint"] for e in json.loads(ok(s.router, "--json", "endpoints", "books"))] == ["a"], "b listed")
        check(os.path.exists(os.path.join(s.router.data_dir, "state", "books@b.0"))
              or os.path.exists(os.path.join(s.router.data_dir, "state", "books@b.1")), "b's send state removed")
        # Back again: it resumes after its acknowledged seqid (5), not at the head.
        write_service(s.router, "books", ["log_event"], {"a": a.port, "b": b.port})
        reload_ok(s.router)
        wait_until(lambda: len(b.payloads()) == 10, what="b catches up from its state")
        b.check_sequence(first + second)
        a.check_sequence(first + second)
    finally:
        s.close()


def test_endpoint_moved_to_another_port_resumes_at_its_position():
    s = Setup(extra_endpoints=1)
    old, new = s.eps
    try:
        first = send(s.router, 5, b"old")
        wait_until(lambda: endpoint_info(s.router, "books", "a")["acked_seqid"] == 5, what="5 acknowledged")
        write_service(s.router, "books", ["log_event"], {"a": new.port}, socket_timeout_ms=5000)
        out = reload_ok(s.router)
        check("endpoint books/a changed: 127.0.0.1:%d -> 127.0.0.1:%d" % (old.port, new.port) in out, out)
        check("service books: socket_timeout_ms 10000 -> 5000" in out, out)
        second = send(s.router, 5, b"new")
        wait_until(lambda: len(new.payloads()) == 5, what="delivery at the new address")
        check(seqids(new) == list(range(6, 11)), "moved endpoint got seqids %s" % seqids(new))
        check([d for _, d in new.payloads()] == second and len(old.payloads()) == 5, "payloads")
        old.check_sequence(first)
    finally:
        s.close()


def test_on_failure_and_retries_changed_live():
    """A blocked endpoint (on_failure = block) is unblocked by a reload that
    says on_failure = skip: the failing RPC becomes a dead letter and the
    next ones are delivered, on the same running endpoint."""
    logging.getLogger().setLevel(logging.CRITICAL)  # python thrift logs every raise
    s = Setup()
    a = s.eps[0]
    try:
        write_service(s.router, "books", ["log_event"], {"a": a.port}, max_retries=1)
        reload_ok(s.router)
        a.fail_next = 10 ** 9
        send(s.router, 1, b"bad")
        wait_until(lambda: endpoint_info(s.router, "books", "a")["retries"] >= 3, what="blocked on seqid 1")
        time.sleep(0.3)
        check(endpoint_info(s.router, "books", "a")["acked_seqid"] == 0, "block let seqid 1 go")
        write_service(s.router, "books", ["log_event"], {"a": a.port}, max_retries=1, on_failure="skip")
        out = reload_ok(s.router)
        check("service books: on_failure block -> skip" in out, out)
        wait_until(lambda: len(json.loads(ok(s.router, "--json", "dead-letters", "books"))) == 1,
                   what="seqid 1 dead-lettered after the reload")
        a.fail_next = 0
        good = send(s.router, 3, b"good")
        wait_until(lambda: endpoint_info(s.router, "books", "a")["acked_seqid"] == 4, what="delivery resumes")
        check([d for _, d in a.payloads()] == good, str(a.payloads()))
    finally:
        s.close()


def test_add_service_with_new_rpc_then_restart():
    s = Setup(extra_endpoints=1)
    a, x = s.eps
    try:
        check(unknown_method(s.router, "other"), "other should be UNKNOWN_METHOD before the reload")
        write_service(s.router, "extra", ["other"], {"x": x.port})
        set_services(s.router, ["books", "extra"])
        out = reload_ok(s.router)
        check("service extra added (rpcs other; 1 endpoints)" in out, out)
        p = Producer(s.router.port)
        for i in range(5):
            p.other(i)
        p.close()
        wait_until(lambda: len(x.payloads()) == 5, what="delivery to the new service")
        x.check_sequence([i for i in range(5)])
        services = json.loads(ok(s.router, "--json", "services"))
        check([(v["name"], v["head_seqid"]) for v in services] == [("books", 0), ("extra", 5)], str(services))
        check(s.router.stop() == 0, "unclean stop")
        with open(os.path.join(s.router.data_dir, "services.map")) as f:
            check(re.search(r"^1 extra$", f.read(), re.M) is not None, "extra has no id in services.map")
        s.router.start()
        p = Producer(s.router.port)
        p.other(5)
        p.close()
        wait_until(lambda: len(x.payloads()) == 6, what="delivery after restart")
        x.check_sequence([i for i in range(6)])
    finally:
        s.close()


def test_remove_service_and_change_rpcs():
    eps = [Endpoint().start() for _ in range(2)]
    a, m = eps
    router = Router({"books": {"rpcs": ["log_event"], "endpoints": {"a": a.port}},
                     "mail": {"rpcs": ["log_event", "fire"], "endpoints": {"m": m.port}}}).start()
    try:
        send(router, 3, b"x")
        send(router, 2, b"f", name="fire")
        wait_until(lambda: len(m.payloads()) == 5 and len(a.payloads()) == 3, what="first delivery")
        set_services(router, ["books"])
        write_service(router, "books", ["log_event", "fire"], {"a": a.port}, max_retries=3)
        out = reload_ok(router)
        check("service mail removed" in out, out)
        check("service books: rpcs changed from [log_event] to [log_event, fire]" in out, out)
        check("service books: max_retries 10 -> 3" in out, out)
        send(router, 2, b"g", name="fire")
        send(router, 2, b"y")
        wait_until(lambda: len(a.payloads()) == 7, what="books gets fire now")
        check([d for _, d in a.payloads()][3:] == [b"g-0", b"g-1", b"y-0", b"y-1"], str(a.payloads()))
        time.sleep(0.3)
        check(len(m.payloads()) == 5, "removed service still delivers: %d" % len(m.payloads()))
        check([v["name"] for v in json.loads(ok(router, "--json", "services"))] == ["books"], "mail listed")
        rc, _, err = tr_admin(router, "endpoints", "mail")
        check(rc == 1 and "no service 'mail'" in err, err)
        # Routing stops with the last subscriber: UNKNOWN_METHOD again.
        write_service(router, "books", ["fire"], {"a": a.port})
        reload_ok(router)
        check(unknown_method(router, "log_event"), "log_event should be unknown once nobody subscribes")
        state = os.path.join(router.data_dir, "state")
        check(any(f.startswith("mail@m.") for f in os.listdir(state)), "removed service's send state deleted")
        with open(os.path.join(router.data_dir, "services.map")) as f:
            check(re.search(r"^1 mail$", f.read(), re.M) is not None, "removed service lost its id")
    finally:
        try:
            stop_cleanly(router)
        finally:
            router.cleanup()
        for ep in eps:
            ep.stop()


def test_removed_service_no_longer_holds_retention_back():
    a = Endpoint().start()
    router = Router({"books": {"rpcs": ["log_event"], "endpoints": {"a": a.port}},
                     "mail": {"rpcs": ["log_event"], "endpoints": {"m": (free_port(), "true")}}},
                    group_file_size="64K", max_frame_size="16K").start()
    data0 = os.path.join(router.data_dir, "data.0")
    try:
        p = Producer(router.port)
        for i in range(150):
            p.log_event(b"z" * 1000 + b"%d" % i)
        wait_until(lambda: len(a.payloads()) >= 150, what="books delivery")
        time.sleep(2.5)
        check(os.path.exists(data0), "data.0 deleted while the stopped mail endpoint needs it")
        set_services(router, ["books"])
        reload_ok(router)
        for i in range(150):  # more parts, and a checkpoint + retention pass
            p.log_event(b"y" * 1000 + b"%d" % i)
        wait_until(lambda: not os.path.exists(data0), timeout=15,
                   what="data.0 deleted once the removed service stopped pinning it")
        p.close()
        wait_until(lambda: len(a.payloads()) >= 300, what="books delivery after the reload")
    finally:
        try:
            stop_cleanly(router)
        finally:
            router.cleanup()
        a.stop()


def test_removed_service_killed_restarted_then_readded_continues_its_seqids():
    """A reload removes mail, kill -9 follows at once (before the store's
    next checkpoint), the router restarts without mail, then with it again:
    mail's endpoint must get the RPCs routed to it after that with the next
    seqids.  Recovery used to skip the lists of services that were not
    configured, so mail came back with the entries of its last checkpoint
    interval missing and handed out seqids its endpoint had acknowledged
    already (those RPCs were never delivered)."""
    a, m = Endpoint().start(), Endpoint().start()
    services = {"books": {"rpcs": ["log_event"], "endpoints": {"a": a.port}},
                "mail": {"rpcs": ["log_event"], "endpoints": {"m": m.port}}}
    router = Router(services).start()
    try:
        first = send(router, 40, b"x")
        wait_until(lambda: len(m.payloads()) == 40, what="mail's endpoint to get 40 rpcs")
        # state_flush_ms: the endpoint's position reaches its file a little later.
        wait_until(lambda: acked_on_disk(router, "mail", "m") == 40,
                   what="mail's acknowledged seqid 40 in its send state file")
        set_services(router, ["books"])
        reload_ok(router)
        router.kill9()
        router.start()  # books only
        later = send(router, 5, b"y")
        wait_until(lambda: len(a.payloads()) == 45, what="books after the restart")
        check(len(m.payloads()) == 40, "removed service delivered after the restart")
        router.stop()
        set_services(router, ["books", "mail"])
        router.start()
        again = send(router, 5, b"z")
        wait_until(lambda: len(m.payloads()) == 45, timeout=20,
                   what="mail's endpoint to get the RPCs routed to it after it came back")
        wait_until(lambda: len(a.payloads()) == 50, what="books to get the last 5 too")
        check(seqids(m) == list(range(1, 46)), "mail seqids: %s" % seqids(m)[35:])
        check([d for _, d in m.payloads()] == first + again, "mail got: %s" % m.payloads()[38:])
        check([d for _, d in a.payloads()] == first + later + again, "books got something else")
    finally:
        try:
            stop_cleanly(router)
        finally:
            router.cleanup()
        a.stop()
        m.stop()


def test_service_left_without_endpoints_holds_nothing_back():
    a = Endpoint().start()
    router = Router({"books": {"rpcs": ["log_event"], "endpoints": {"a": a.port}},
                     "mail": {"rpcs": ["log_event"], "endpoints": {"m": (free_port(), "true")}}},
                    group_file_size="64K", max_frame_size="16K").start()
    data0 = os.path.join(router.data_dir, "data.0")
    try:
        write_service(router, "mail", ["log_event"], {})
        out = reload_ok(router)
        check("endpoint mail/m removed" in out, out)
        p = Producer(router.port)
        for i in range(300):  # still stored for mail (it subscribes), needed by nobody once a has them
            p.log_event(b"z" * 1000 + b"%d" % i)
        wait_until(lambda: len(a.payloads()) >= 300, what="books delivery")
        p.log_event(b"tick")
        wait_until(lambda: not os.path.exists(data0), timeout=15, what="data.0 deleted: mail has no endpoint")
        p.close()
        services = {v["name"]: v for v in json.loads(ok(router, "--json", "services"))}
        check(services["mail"]["head_seqid"] == 301 and services["mail"]["endpoints"] == 0, str(services))
    finally:
        try:
            stop_cleanly(router)
        finally:
            router.cleanup()
            a.stop()


def test_untouched_endpoint_no_gap_no_duplicate_across_reloads():
    s = Setup(extra_endpoints=1)
    a, b = s.eps
    sent, errors = [], []
    stop_flag = threading.Event()

    def produce():
        p = Producer(s.router.port)
        i = 0
        try:
            while not stop_flag.is_set():
                data = b"flow-%d" % i
                p.log_event(data)
                sent.append(data)
                i += 1
        except Exception as e:  # reported below
            errors.append(e)
        finally:
            p.close()

    thread = threading.Thread(target=produce)
    thread.start()
    try:
        for i in range(6):
            wait_until(lambda n=len(sent): len(sent) >= n + 200, what="rpcs between reloads")
            endpoints = {"a": a.port} if i % 2 else {"a": a.port, "b": b.port}
            write_service(s.router, "books", ["log_event"], endpoints, max_inflight=16 + i)
            reload_ok(s.router)
        stop_flag.set()
        thread.join(30)
        check(not errors, "producer errors: %s" % errors[:3])
        wait_until(lambda: len(a.payloads()) >= len(sent), what="a gets everything")
        # The connection of a was never cut: every seqid exactly once, in order.
        got = [s_ for _, s_, _ in a.received()]
        check(got == list(range(1, len(sent) + 1)), "a saw a gap, a duplicate or a reorder: %s..." % got[:20])
        a.check_sequence(sent)
        check(s.router.proc.poll() is None, "router died")
    finally:
        stop_flag.set()
        thread.join(30)
        s.close()


def test_concurrent_reloads_sighup_and_stop_send():
    """tr-admin reload from two clients, SIGHUP and stop-send/start-send at
    the same time, RPCs flowing: every call is served (the admin thread takes
    them one at a time), the end state is what the files say, and the
    untouched endpoint sees every seqid once, in order."""
    s = Setup(extra_endpoints=2)
    a, b, c = s.eps
    write_service(s.router, "books", ["log_event"], {"a": a.port, "b": b.port})
    write_service(s.router, "extra", ["log_event"], {})
    set_services(s.router, ["books", "extra"])
    reload_ok(s.router)
    sent, errors = [], []
    stop_flag = threading.Event()

    def produce():
        p = Producer(s.router.port)
        try:
            i = 0
            while not stop_flag.is_set():
                p.log_event(b"c-%d" % i)
                sent.append(b"c-%d" % i)
                i += 1
        except Exception as e:  # reported below
            errors.append(e)
        finally:
            p.close()

    def reloads(n):
        for i in range(n):
            write_service(s.router, "extra", ["log_event"], {"c": c.port} if i % 2 == 0 else {})
            rc, out, err = tr_admin(s.router, "reload")
            if rc != 0:
                errors.append(err)
            s.router.proc.send_signal(signal.SIGHUP)

    def toggles(n):
        for i in range(n):
            rc, out, err = tr_admin(s.router, "stop-send" if i % 2 == 0 else "start-send", "books", "b")
            if rc != 0:
                errors.append(err)

    threads = [threading.Thread(target=produce), threading.Thread(target=reloads, args=(10,)),
               threading.Thread(target=toggles, args=(10,))]
    try:
        for t in threads:
            t.start()
        for t in threads[1:]:
            t.join(60)
        stop_flag.set()
        threads[0].join(30)
        check(not errors, "errors: %s" % errors[:3])
        write_service(s.router, "extra", ["log_event"], {"c": (c.port, {"start": "earliest"})})
        reload_ok(s.router)
        eps = [(e["service"], e["endpoint"], e["state"]) for e in json.loads(ok(s.router, "--json", "endpoints"))]
        check([e[:2] for e in eps] == [("books", "a"), ("books", "b"), ("extra", "c")], str(eps))
        check(eps[1][2] != "STOPPED", "b should run after an even number of toggles: %s" % eps)
        wait_until(lambda: len(a.payloads()) >= len(sent) and len(b.payloads()) >= len(sent), what="delivery")
        check([x for _, x, _ in a.received()] == list(range(1, len(sent) + 1)), "a saw a gap or a duplicate")
        b.check_sequence(sent)
        # Signals sent while one is pending coalesce: at least one reload each.
        check(s.router.log().count("SIGHUP: reloading") >= 1, "no SIGHUP reload")
        check("reload refused" not in s.router.log(), s.router.log())
    finally:
        stop_flag.set()
        for t in threads:
            t.join(30)
        s.close()


def test_invalid_file_and_restart_keys_refused():
    s = Setup(extra_endpoints=1)
    a, b = s.eps
    path = os.path.join(s.router.tmp, "services", "books.conf")
    try:
        with open(path) as f:
            good = f.read()
        # An invalid file next to a valid change: nothing at all is applied.
        write_service(s.router, "books", ["log_event"], {"a": a.port, "b": (b.port, {"colour": "red"})})
        rc, out, err = tr_admin(s.router, "reload")
        check(rc == 1 and "code 6" in err and "books.conf" in err and "[endpoint b] colour" in err
              and "unknown key" in err, err)
        check("running configuration unchanged" in err, err)
        write_service(s.router, "books", ["log_event"], {"a": a.port, "b": (b.port, {"start": "sometime"})})
        rc, out, err = tr_admin(s.router, "reload")
        check(rc == 1 and "[endpoint b] start" in err and "head, earliest" in err, err)
        with open(path, "w") as f:
            f.write(good)
        set_services(s.router, ["books", "ghost"])
        rc, out, err = tr_admin(s.router, "reload")
        check(rc == 1 and "ghost" in err and "no such file" in err, err)
        set_services(s.router, ["books"])
        with open(path, "w") as f:
            f.write(good)
        with open(conf(s.router)) as f:
            text = f.read()
        with open(conf(s.router), "w") as f:
            f.write(text.replace("sync_mode", "#").replace("[router]\n", "[router]\nsync_mode = none\n"))
        rc, out, err = tr_admin(s.router, "reload")
        check(rc == 1 and "code 7" in err and "sync_mode = none" in err and "restart" in err, err)
        with open(conf(s.router), "w") as f:
            f.write(text)
        check([e["endpoint"] for e in json.loads(ok(s.router, "--json", "endpoints"))] == ["a"], "b was added")
        data = send(s.router, 5, b"still")
        wait_until(lambda: len(a.payloads()) == 5, what="delivery after refusals")
        a.check_sequence(data)
        log = s.router.log()
        check("reload refused (tr-admin), running configuration unchanged" in log, log)
        check(reload_ok(s.router).strip() == "reload done: 0 changes", "the good files should change nothing")
    finally:
        s.close()


def test_adding_admin_token_file_is_refused():
    """docs/configuration.md: admin_token_file is read at start-up, and a
    changed [router] key other than services refuses the reload (code 7).
    The reload used to compare serialized text that skipped comment lines,
    and an unset admin_token_file serializes as one: adding it was reported
    as a successful reload while the admin port stayed open without a token."""
    s = Setup()
    try:
        token = os.path.join(s.router.tmp, "admin.token")
        with open(token, "w") as f:
            f.write("s3cret\n")
        with open(conf(s.router)) as f:
            text = f.read()
        with open(conf(s.router), "w") as f:
            f.write(text.replace("[router]\n", "[router]\nadmin_token_file = admin.token\n"))
        # Without the token: the running node takes none, as before the edit.
        rc, out, err = tr_admin(s.router, "--token-file", "/dev/null", "reload")
        check(rc == 1 and "code 7" in err and "admin_token_file = " + token in err
              and "(running: not set)" in err and "restart" in err, "rc %d: %s%s" % (rc, out, err))
        rc, out, err = tr_admin(s.router, "--token-file", "/dev/null", "status")
        check(rc == 0, "the refused reload changed the admin port's token: %s" % err)
        with open(conf(s.router), "w") as f:
            f.write(text)
        check(reload_ok(s.router).strip() == "reload done: 0 changes", "the running files should change nothing")
    finally:
        s.close()


def test_sighup_reload_and_refusal_logged():
    s = Setup(extra_endpoints=1)
    a, b = s.eps
    try:
        write_service(s.router, "books", ["log_event"], {"a": a.port, "b": (b.port, {"start": "earliest"})})
        first = send(s.router, 3, b"h")
        s.router.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: len(b.payloads()) == 3, what="endpoint added by SIGHUP gets everything")
        b.check_sequence(first)
        # The reload logs its changes once it has applied them all, so the
        # added endpoint may deliver before the lines are written.
        wait_until(lambda: "reload of " in s.router.log(), what="the reload's change lines in the log")
        log = s.router.log()
        check("SIGHUP: reloading the configuration" in log and "reload: endpoint books/b added" in log, log)
        write_service(s.router, "books", ["log_event", "no such rpc!"], {"a": a.port})
        s.router.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: "reload refused (SIGHUP)" in s.router.log(), what="refusal in the log")
        check("books.conf: [service] rpcs: 'no such rpc!' is not a valid rpc name" in s.router.log(),
              s.router.log())
        check(len(json.loads(ok(s.router, "--json", "endpoints", "books"))) == 2, "refused reload removed b")
    finally:
        s.close()


def test_reload_keeps_operator_stop_send():
    s = Setup(extra_endpoints=1)
    a, b = s.eps
    try:
        write_service(s.router, "books", ["log_event"], {"a": a.port, "b": b.port})
        reload_ok(s.router)
        ok(s.router, "stop-send", "books", "b")
        out = reload_ok(s.router)  # reads stop_send = true back from the file
        check(out.strip() == "reload done: 0 changes", out)
        check(endpoint_info(s.router, "books", "b")["state"] == "STOPPED", "reload restarted b")
        data = send(s.router, 4, b"s")
        time.sleep(0.3)
        check(len(b.payloads()) == 0, "stopped endpoint received")
        # The operator edits the file instead: the reload applies it.
        path = os.path.join(s.router.tmp, "services", "books.conf")
        with open(path) as f:
            text = f.read()
        with open(path, "w") as f:
            f.write(re.sub(r"stop_send\s*=\s*true", "stop_send = false", text))
        out = reload_ok(s.router)
        check("endpoint books/b: stop_send true -> false" in out and "reload done: 1 change" in out, out)
        wait_until(lambda: len(b.payloads()) == 4, what="b resumes after the file says stop_send = false")
        b.check_sequence(data)
        check("stop_send off" in s.router.log(), s.router.log())
    finally:
        s.close()


if __name__ == "__main__":
    run_tests([
        test_add_endpoints_head_and_earliest,
        test_remove_endpoint_and_readd_resumes_from_its_state,
        test_endpoint_moved_to_another_port_resumes_at_its_position,
        test_on_failure_and_retries_changed_live,
        test_add_service_with_new_rpc_then_restart,
        test_remove_service_and_change_rpcs,
        test_removed_service_no_longer_holds_retention_back,
        test_removed_service_killed_restarted_then_readded_continues_its_seqids,
        test_service_left_without_endpoints_holds_nothing_back,
        test_untouched_endpoint_no_gap_no_duplicate_across_reloads,
        test_invalid_file_and_restart_keys_refused,
        test_concurrent_reloads_sighup_and_stop_send,
        test_sighup_reload_and_refusal_logged,
        test_reload_keeps_operator_stop_send,
        test_adding_admin_token_file_is_refused,
    ])
