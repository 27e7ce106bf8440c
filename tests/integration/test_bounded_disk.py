"""Bounded disk (issue 15; docs/delivery.md "Backlog limits", docs/operations.md
"Disk full"): a stopped endpoint of a service with max_backlog_bytes or
max_backlog_age has its oldest RPCs expired (recorded as dead letters, logged
once per overflow, counted in tr-admin endpoints) while the other endpoint
gets everything and retention frees the parts; min_free_space refuses new
producer writes with a clear error while delivery goes on, and a reload
lowering it lets writes resume.  Needs no root: min_free_space is set above
the real free space of the data dir's filesystem."""
import json
import os
import re
import subprocess
import time

from test_admin import conf, endpoint_info, ok
from test_reload import reload_ok, send, seqids
from trtest import Endpoint, Producer, Router, Skip, TApplicationException, check, run_tests, wait_until


def dead_letters(router, service):
    return json.loads(ok(router, "--json", "dead-letters", service, "--max", "10000"))


def expired_ranges(router, service, endpoint):
    """(first, last, count) of every 'expired' dead letter of @endpoint, in order."""
    out = []
    for d in dead_letters(router, service):
        m = re.match(r"expired for endpoint (\S+): seqids (\d+)\.\.(\d+) \(rpc ids \d+\.\.\d+, (\d+) rpcs\)",
                     d["reason"])
        check(m is not None, "not an expiry: %s" % d)
        if m.group(1) == endpoint:
            first, last, count = int(m.group(2)), int(m.group(3)), int(m.group(4))
            check(d["seqid"] == first and count == last - first + 1, str(d))
            out.append((first, last, count))
    return out


def warnings_about(router, what):
    return [line for line in router.log().splitlines() if "WARNING" in line and what in line]


def set_router_key(router, key, value):
    path = conf(router)
    with open(path) as f:
        text = f.read()
    if re.search(r"^%s = " % key, text, flags=re.M):
        text = re.sub(r"^%s = .*$" % key, "%s = %s" % (key, value), text, flags=re.M)
    else:
        text = text.replace("[router]\n", "[router]\n%s = %s\n" % (key, value), 1)
    with open(path, "w") as f:
        f.write(text)


def test_backlog_bytes_expire_a_stopped_endpoint_and_free_its_parts():
    a = Endpoint()
    a.start()
    limit = 48 * 1024
    router = Router({"books": {"rpcs": ["log_event"], "endpoints": {"a": a.port, "b": (1, "true")},
                               "max_backlog_bytes": str(limit)}},
                    group_file_size="64K", max_frame_size="16K")
    try:
        router.start()
        payload = b"x" * 900
        p = Producer(router.port)
        sent = []
        for i in range(400):  # about 370 KiB: six 64 KiB parts
            d = b"%04d-" % i + payload
            p.log_event(d)
            sent.append(d)
        p.close()
        # The other endpoint gets everything, in order, unaffected.
        wait_until(lambda: len(a.payloads()) >= len(sent), timeout=30, what="delivery to a")
        a.check_sequence(sent)
        # b ends within its limit; what it lost is recorded range by range.
        wait_until(lambda: 0 < endpoint_info(router, "books", "b")["lag_bytes"] <= limit, timeout=20,
                   what="b's backlog cut to max_backlog_bytes")
        b = endpoint_info(router, "books", "b")
        ranges = expired_ranges(router, "books", "b")
        check(ranges, "no expired range recorded")
        check(ranges[0][0] == 1, "the first range starts at seqid 1: %s" % ranges)
        for before, after in zip(ranges, ranges[1:]):
            check(after[0] == before[1] + 1, "ranges not contiguous: %s" % ranges)
        check(b["acked_seqid"] == ranges[-1][1], "b moved to just after the last range: %s %s" % (b, ranges))
        check(b["expired_rpcs"] == sum(r[2] for r in ranges), "counter %d vs ranges %s" % (b["expired_rpcs"], ranges))
        check(endpoint_info(router, "books", "a")["expired_rpcs"] == 0, "a lost nothing")
        text = ok(router, "endpoints", "books").splitlines()
        check(text[0].split()[11] == "EXPIRED" and text[2].split()[11] == str(b["expired_rpcs"]), "\n".join(text))
        # Logged: one warning per overflow naming service, endpoint, range, rpc ids, limit.
        lines = warnings_about(router, "expired for endpoint b")
        check(1 <= len(lines) <= len(ranges), "%d warnings for %d ranges:\n%s" % (len(lines), len(ranges),
                                                                                 router.log()))
        check("books/b: expired for endpoint b: seqids 1.." in lines[0] and "rpc ids 1.." in lines[0]
              and "max_backlog_bytes %d" % limit in lines[0], lines[0])
        # The overflow is over: no more lines, no more ranges.
        count = len(lines)
        wait_until(lambda: "backlog within its limits again" in router.log() or len(ranges) == 1, timeout=10,
                   what="the end of the overflow")
        check(len(warnings_about(router, "expired for endpoint b")) == count, "logged again after the overflow")
        # Retention freed the parts only b held: the first ones are gone.
        wait_until(lambda: not os.path.exists(os.path.join(router.data_dir, "data.0")), timeout=20,
                   what="data.0 deleted")
        parts = [f for f in os.listdir(router.data_dir) if f.startswith("data.")]
        check(len(parts) <= 2, "data parts left: %s" % parts)
        # b resumes after the jump: it sees the seqids after the expired ones.
        ok(router, "start-send", "books", "b")
        check(router.proc.poll() is None, "router died")
    finally:
        router.stop()
        router.cleanup()
        a.stop()


def test_expired_ranges_survive_kill9_and_are_not_delivered_after_restart():
    """The record is durable before the position moves: after kill -9 the
    ranges are still listed, and the endpoint, started after the restart,
    gets nothing from them (any range a crash put back before its position
    is expired again, never delivered)."""
    b = Endpoint()  # down
    router = Router({"books": {"rpcs": ["log_event"], "endpoints": {"b": b.port}, "max_backlog_age": "1s"}})
    try:
        router.start()
        send(router, 20, b"old")
        wait_until(lambda: endpoint_info(router, "books", "b")["expired_rpcs"] == 20, timeout=15,
                   what="20 rpcs expired")
        before = expired_ranges(router, "books", "b")
        router.kill9()
        router.start()
        after = expired_ranges(router, "books", "b")
        check(after[:len(before)] == before, "ranges lost by kill -9: %s then %s" % (before, after))
        wait_until(lambda: endpoint_info(router, "books", "b")["acked_seqid"] == 20, timeout=15,
                   what="b past the expired range after the restart")
        b.start()
        new = send(router, 1, b"new")
        wait_until(lambda: len(b.payloads()) >= 1, timeout=20, what="delivery of the new rpc")
        check(seqids(b) == [21] and [d for _, d in b.payloads()] == new, str(b.payloads()))
    finally:
        router.stop()
        router.cleanup()
        b.stop()


def test_backlog_age_expires_old_rpcs_and_the_endpoint_sees_the_jump():
    b = Endpoint()  # not started: b is down
    router = Router({"books": {"rpcs": ["log_event"], "endpoints": {"b": b.port}, "max_backlog_age": "2s"}})
    try:
        router.start()
        send(router, 5, b"old")
        wait_until(lambda: endpoint_info(router, "books", "b")["expired_rpcs"] == 5, timeout=15,
                   what="5 rpcs older than 2 s expired")
        ranges = expired_ranges(router, "books", "b")
        # Usually one range; two when the five commit times straddle a check.
        check(ranges[0][0] == 1 and ranges[-1][1] == 5 and sum(r[2] for r in ranges) == 5
              and all(b2[0] == a2[1] + 1 for a2, b2 in zip(ranges, ranges[1:])), str(ranges))
        reason = dead_letters(router, "books")[0]["reason"]
        check("max_backlog_age 2 s" in reason, reason)
        check(len(warnings_about(router, "expired for endpoint b")) == 1, router.log())
        b.start()
        new = send(router, 2, b"new")
        wait_until(lambda: len(b.payloads()) >= 2, timeout=20, what="delivery of the new rpcs")
        check(seqids(b) == [6, 7], "the endpoint sees seqids continue after the expired ones: %s" % seqids(b))
        check([d for _, d in b.payloads()] == new, str(b.payloads()))
    finally:
        router.stop()
        router.cleanup()
        b.stop()


def test_limits_off_by_default_and_turned_on_by_reload():
    router = Router({"books": {"rpcs": ["log_event"], "endpoints": {"b": (1, "true")}}})
    try:
        router.start()
        send(router, 3, b"kept")
        b = endpoint_info(router, "books", "b")
        check(b["expired_rpcs"] == 0 and b["lag"] == 3, str(b))
        with open(os.path.join(router.tmp, "services", "books.conf")) as f:
            text = f.read()
        with open(os.path.join(router.tmp, "services", "books.conf"), "w") as f:
            f.write(text.replace("[service]\n", "[service]\nmax_backlog_age = 1s\n", 1))
        out = reload_ok(router)
        check("max_backlog_age 0 -> 1s" in out, out)
        wait_until(lambda: endpoint_info(router, "books", "b")["expired_rpcs"] == 3, timeout=15,
                   what="expiry after the reload")
    finally:
        router.stop()
        router.cleanup()


def test_min_free_space_refuses_writes_keeps_delivering_and_reload_resumes():
    ep, b = Endpoint(), Endpoint()
    ep.start()
    b.start()
    router = Router({"books": {"rpcs": ["log_event"], "endpoints": {"a": ep.port, "b": (b.port, "true")}}},
                    min_free_space="0")
    try:
        os.makedirs(router.data_dir)
        router.start()
        before = send(router, 5, b"before")
        wait_until(lambda: len(ep.payloads()) >= 5, what="delivery before")
        st = os.statvfs(router.data_dir)
        free = st.f_bavail * st.f_frsize
        limit_mib = free // (1 << 20) + 1024  # a GiB more than is free: refused
        set_router_key(router, "min_free_space", "%dM" % limit_mib)
        out = reload_ok(router)
        check("min_free_space 0 -> %dM" % limit_mib in out, out)
        p = Producer(router.port)
        try:
            p.log_event(b"refused")
            check(False, "a write below min_free_space was accepted")
        except TApplicationException as e:
            check(e.type == TApplicationException.INTERNAL_ERROR, "type %d" % e.type)
            check("below min_free_space %d.0 MiB" % limit_mib in e.message and router.data_dir in e.message
                  and "free space" in e.message, e.message)
        p.close()
        check(endpoint_info(router, "books", "a")["head_seqid"] == 5, "a refused rpc was stored")
        # The store keeps delivering and acknowledging: b, stopped until now, catches up.
        ok(router, "start-send", "books", "b")
        wait_until(lambda: endpoint_info(router, "books", "b")["acked_seqid"] == 5, timeout=20,
                   what="b delivered while writes are refused")
        b.check_sequence(before)
        check(len(warnings_about(router, "below min_free_space")) >= 1, router.log())
        # Lowering the limit by reload: writes resume without a restart.
        set_router_key(router, "min_free_space", "1M")
        reload_ok(router)
        after = send(router, 1, b"after")
        wait_until(lambda: len(ep.payloads()) >= 6, what="delivery after")
        ep.check_sequence(before + after)
        check("accepting writes" in router.log(), router.log())
    finally:
        router.stop()
        router.cleanup()
        ep.stop()
        b.stop()


def test_min_free_space_on_a_small_filesystem_trips_before_enospc_and_resumes_by_itself():
    """The guard on a real small filesystem (a tmpfs, as test_full_disk.py):
    producers are refused by the guard, never by ENOSPC; once the endpoint
    catches up, retention frees the parts and writes resume without any
    operator action."""
    if os.geteuid() != 0:
        raise Skip("needs root to mount a small tmpfs")
    ep = Endpoint()  # down while the disk fills
    router = Router({"books": {"rpcs": ["log_event"], "endpoints": {"a": ep.port}}},
                    group_file_size="256K", max_frame_size="64K", rpc_cache_size="1M", min_free_space="3M")
    os.makedirs(router.data_dir)
    subprocess.check_call(["mount", "-t", "tmpfs", "-o", "size=12m", "tmpfs", router.data_dir])
    try:
        router.start()
        p = Producer(router.port)
        acked, refusal = [], None
        payload = b"g" * 2000
        for i in range(20000):
            data = b"%d-" % i + payload
            try:
                p.log_event(data)
                acked.append(data)
            except TApplicationException as e:
                refusal = e
                break
        check(refusal is not None, "the guard never refused (%d acknowledged)" % len(acked))
        check("below min_free_space 3.0 MiB" in refusal.message, refusal.message)
        st = os.statvfs(router.data_dir)
        check(st.f_bavail * st.f_frsize > 1 << 20, "the guard left less than 1 MiB free")
        check("No space left" not in router.log() and "reopening the store" not in router.log(),
              "the store hit ENOSPC although the guard was on:\n" + router.log())
        # Delivery and retention go on; space returns; writes resume by themselves.
        ep.start()
        wait_until(lambda: len(ep.payloads()) >= len(acked), timeout=30, what="delivery of the stored rpcs")
        resumed = False
        deadline = time.time() + 20
        while not resumed and time.time() < deadline:
            try:
                p.log_event(b"after")
                resumed = True
            except TApplicationException:
                time.sleep(0.1)
        check(resumed, "writes did not resume once retention freed the parts:\n" + router.log())
        acked.append(b"after")
        wait_until(lambda: len(ep.payloads()) >= len(acked), timeout=30, what="delivery after")
        ep.check_sequence(acked)
        p.close()
        check("accepting writes" in router.log(), router.log())
    finally:
        router.stop()
        subprocess.call(["umount", router.data_dir])
        router.cleanup()
        ep.stop()


if __name__ == "__main__":
    run_tests([test_backlog_bytes_expire_a_stopped_endpoint_and_free_its_parts,
               test_expired_ranges_survive_kill9_and_are_not_delivered_after_restart,
               test_backlog_age_expires_old_rpcs_and_the_endpoint_sees_the_jump,
               test_limits_off_by_default_and_turned_on_by_reload,
               test_min_free_space_refuses_writes_keeps_delivering_and_reload_resumes,
               test_min_free_space_on_a_small_filesystem_trips_before_enospc_and_resumes_by_itself])
