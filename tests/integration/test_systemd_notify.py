"""Integration tests of the service manager's notify protocol (sd_notify(3),
router/tr_notify.h) without systemd: the test binds the AF_UNIX datagram
socket a manager would, starts the daemon with NOTIFY_SOCKET naming it, and
checks what arrives: READY=1 only once both ports accept, RELOADING=1 and
READY=1 around a SIGHUP reload (also a refused one), WATCHDOG=1 when
WATCHDOG_USEC asks for it, STOPPING=1 on SIGTERM.  And the journal fields
(GLIB_DOMAIN, PRIORITY, TR_*): with a stand-in for journald's sockets
(journal_capture.py, in a private mount namespace), and through journalctl
-o verbose where journald runs."""
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time

from trtest import (BUILD, DAEMON, SOURCE, Router, Skip, check, free_port, require_private_mount_namespace, run_tests,
                    sanitizer, wait_until)


def require_notify_support():
    out = subprocess.run([DAEMON, "--version"], capture_output=True, text=True, check=True).stdout
    if "sd_notify: yes" not in out:
        raise Skip("thriftrouter was built without libsystemd (TR_SYSTEMD=OFF or no libsystemd-dev): %s"
                   % out.strip().replace("\n", "; "))


def accepts(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


class NotifyListener:
    """The manager's side: an AF_UNIX datagram socket; every message is
    recorded as a dict of its KEY=VALUE lines, with, for READY=1, whether
    the router's producer and admin ports accepted at that moment."""

    def __init__(self, tmp, router):
        self.path = os.path.join(tmp, "notify.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.2)
        self.router = router
        self.messages = []
        self.lock = threading.Lock()
        self.running = True
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while self.running:
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            fields = dict(line.split("=", 1) for line in data.decode().split("\n") if "=" in line)
            if fields.get("READY") == "1":
                fields["_ports_accepting"] = accepts(self.router.port) and accepts(self.router.admin_port)
            with self.lock:
                self.messages.append(fields)

    def snapshot(self):
        with self.lock:
            return list(self.messages)

    def count(self, key, value="1"):
        return sum(1 for m in self.snapshot() if m.get(key) == value)

    def close(self):
        self.running = False
        self.thread.join()
        self.sock.close()


def start_notified(watchdog_usec=None):
    """A router with NOTIFY_SOCKET (and WATCHDOG_USEC) set; returns (router,
    listener).  The environment is the harness's (Router.start copies
    os.environ), restored at once."""
    # admin_listen fixed: write_config() (the reload test) must keep it.
    router = Router({"demo": {"rpcs": ["log_event"], "endpoints": {"a": (9, "true")}}},
                    admin_listen="127.0.0.1:%d" % free_port())
    listener = NotifyListener(router.tmp, router)
    saved = dict(os.environ)
    os.environ["NOTIFY_SOCKET"] = listener.path
    os.environ.pop("WATCHDOG_PID", None)
    if watchdog_usec is not None:
        os.environ["WATCHDOG_USEC"] = str(watchdog_usec)
    else:
        os.environ.pop("WATCHDOG_USEC", None)
    try:
        router.start()
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return router, listener


def test_ready_after_ports_accept_and_stopping_on_sigterm():
    require_notify_support()
    router, listener = start_notified()
    try:
        wait_until(lambda: listener.count("READY") >= 1, 20, "READY=1 on NOTIFY_SOCKET")
        ready = [m for m in listener.snapshot() if m.get("READY") == "1"]
        check(len(ready) == 1, "one READY=1 at start-up, got %r" % ready)
        check(ready[0]["_ports_accepting"], "READY=1 arrived before both ports accepted: %r" % ready[0])
        status = ready[0].get("STATUS", "")
        check("MASTER" in status and "127.0.0.1:%d" % router.port in status
              and "127.0.0.1:%d" % router.admin_port in status,
              "STATUS names role and both ports: %r" % status)
        check(listener.count("STOPPING") == 0, "no STOPPING=1 before SIGTERM")
        rc = router.stop()
        check(rc == 0, "clean stop, exit %s\n%s" % (rc, router.log()))
        # Sent before the exit, but maybe not read yet by the listener thread.
        wait_until(lambda: listener.count("STOPPING") >= 1, 10, "STOPPING=1 on SIGTERM")
        check(listener.count("STOPPING") == 1, "one STOPPING=1: %r" % listener.snapshot())
        check(listener.snapshot()[-1].get("STOPPING") == "1", "nothing after STOPPING=1: %r" % listener.snapshot())
    finally:
        listener.close()
        router.cleanup()


def test_reload_on_sighup_reloading_then_ready():
    require_notify_support()
    router, listener = start_notified()
    try:
        wait_until(lambda: listener.count("READY") >= 1, 20, "READY=1 at start-up")
        # A reload that applies: a second service appears.
        router.services["audit"] = {"rpcs": ["fire"], "endpoints": {"b": (9, "true")}}
        router.write_config()
        router.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: listener.count("READY") >= 2, 20, "READY=1 after the SIGHUP reload")
        messages = listener.snapshot()
        reloading = [i for i, m in enumerate(messages) if m.get("RELOADING") == "1"]
        ready = [i for i, m in enumerate(messages) if m.get("READY") == "1"]
        check(len(reloading) == 1 and ready[0] < reloading[0] < ready[1],
              "READY=1, RELOADING=1, READY=1 in that order: %r" % messages)
        check("MONOTONIC_USEC" in messages[reloading[0]], "RELOADING=1 carries MONOTONIC_USEC: %r" % messages)
        check("reload applied (1 changes)" in messages[ready[1]].get("STATUS", ""),
              "STATUS after the reload says it applied: %r" % messages[ready[1]])
        check(messages[ready[1]]["_ports_accepting"], "both ports accept at READY=1: %r" % messages[ready[1]])
        # A refused reload ends in READY=1 too (the node runs on, unchanged).
        with open(os.path.join(router.tmp, "services", "audit.conf"), "a") as f:
            f.write("no_such_key = 1\n")
        router.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: listener.count("READY") >= 3, 20, "READY=1 after the refused reload")
        last = [m for m in listener.snapshot() if m.get("READY") == "1"][-1]
        check("reload refused" in last.get("STATUS", "") and "no_such_key" in last["STATUS"],
              "STATUS says the reload was refused and why: %r" % last)
        check(listener.count("RELOADING") == 2, "one RELOADING=1 per SIGHUP: %r" % listener.snapshot())
        check(router.stop() == 0, "clean stop\n" + router.log())
    finally:
        listener.close()
        router.cleanup()


def test_watchdog_keepalives_when_watchdog_usec_set():
    require_notify_support()
    router, listener = start_notified(watchdog_usec=200000)  # 200 ms: a keep-alive every 100 ms
    try:
        start = time.time()
        wait_until(lambda: listener.count("WATCHDOG") >= 5, 20, "five WATCHDOG=1 keep-alives")
        check("keep-alive every 100 ms" in router.log(), "the watchdog period is logged:\n" + router.log())
        # Keeps coming while the node runs: five more.
        seen = listener.count("WATCHDOG")
        wait_until(lambda: listener.count("WATCHDOG") >= seen + 5, 20, "keep-alives to go on")
        elapsed = time.time() - start
        check(elapsed > 0.5, "keep-alives are paced (10 in %.2fs is too fast for a 100 ms timer)" % elapsed)
        check(router.stop() == 0, "clean stop\n" + router.log())
    finally:
        listener.close()
        router.cleanup()


def test_no_watchdog_without_watchdog_usec():
    require_notify_support()
    router, listener = start_notified()
    try:
        wait_until(lambda: listener.count("READY") >= 1, 20, "READY=1 at start-up")
        # The STOPPING=1 below is the marker: every datagram sent before it
        # has been received by then (one socket, in order).
        check(router.stop() == 0, "clean stop\n" + router.log())
        wait_until(lambda: listener.count("STOPPING") >= 1, 10, "STOPPING=1")
        check(listener.count("WATCHDOG") == 0, "no WATCHDOG=1 without WATCHDOG_USEC: %r" % listener.snapshot())
    finally:
        listener.close()
        router.cleanup()


def test_notify_and_reload_under_valgrind():
    """The notify path under valgrind memcheck: READY=1, keep-alives, a
    SIGHUP reload whose outcome travels from the admin thread back to the
    main loop, STOPPING=1; zero errors, nothing definitely lost."""
    require_notify_support()
    if sanitizer() is not None:
        raise Skip("valgrind cannot run a sanitizer build (%s)" % sanitizer())
    if shutil.which("valgrind") is None:
        raise Skip("valgrind is not installed (tools/deps.sh installs it)")
    vglog = os.path.join(tempfile.mkdtemp(prefix="tr-vg-"), "valgrind.log")
    router = Router({"demo": {"rpcs": ["log_event"], "endpoints": {"a": (9, "true")}}},
                    admin_listen="127.0.0.1:%d" % free_port())
    router.command_prefix = ["valgrind", "--leak-check=full", "--errors-for-leak-kinds=definite",
                             "--log-file=" + vglog]
    listener = NotifyListener(router.tmp, router)
    saved = dict(os.environ)
    os.environ.update(NOTIFY_SOCKET=listener.path, WATCHDOG_USEC="400000")
    try:
        router.start(timeout=120)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    try:
        wait_until(lambda: listener.count("READY") >= 1 and listener.count("WATCHDOG") >= 2, 120,
                   "READY=1 and keep-alives under valgrind")
        router.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: listener.count("READY") >= 2, 120, "READY=1 after the reload under valgrind")
        check(router.stop(timeout=120) == 0, "clean exit under valgrind:\n" + router.log())
        with open(vglog) as f:
            report = f.read()
        errors = int(re.search(r"ERROR SUMMARY: (\d+) errors", report).group(1))
        lost = re.search(r"definitely lost: ([\d,]+) bytes", report)
        lost = int(lost.group(1).replace(",", "")) if lost else 0
        check(errors == 0 and lost == 0, "valgrind report:\n" + report[-4000:])
    finally:
        listener.close()
        router.cleanup()
        shutil.rmtree(os.path.dirname(vglog), ignore_errors=True)


def test_builds_and_runs_without_libsystemd():
    """TR_SYSTEMD=OFF (as on a machine without libsystemd-dev): the daemon
    builds (its own tree, BUILD/nosd-build, the daemon only), does not link
    libsystemd, says so in --version, and with NOTIFY_SOCKET set logs once
    that it is ignored, sends nothing, and runs as usual."""
    if sanitizer() is not None:
        raise Skip("sanitizer pass: the plain pass builds the variant without libsystemd")
    build = os.path.join(BUILD, "nosd-build")
    source = SOURCE
    for cmd in (["cmake", "-S", source, "-B", build, "-DCMAKE_BUILD_TYPE=RelWithDebInfo", "-DTR_WERROR=ON",
                 "-DTR_SYSTEMD=OFF", "-DTR_BUILD_TESTS=OFF"],
                ["cmake", "--build", build, "-j2", "--target", "thriftrouter"]):
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
        check(out.returncode == 0, "%s:\n%s%s" % (" ".join(cmd), out.stdout[-3000:], out.stderr[-3000:]))
        if "-S" in cmd:
            check("sd_notify: off" in out.stdout, "cmake says the notify protocol is off:\n" + out.stdout[-2000:])
    daemon = os.path.join(build, "router", "thriftrouter")
    version = subprocess.run([daemon, "--version"], capture_output=True, text=True).stdout
    check("sd_notify: no" in version, "--version: %r" % version)
    ldd = subprocess.run(["ldd", daemon], capture_output=True, text=True).stdout
    check("libsystemd" not in ldd, "not linked with libsystemd:\n" + ldd)
    router = Router({"demo": {"rpcs": ["log_event"], "endpoints": {"a": (9, "true")}}})
    listener = NotifyListener(router.tmp, router)
    saved = dict(os.environ)
    os.environ.update(NOTIFY_SOCKET=listener.path, WATCHDOG_USEC="200000")
    try:
        log = open(router.log_path, "ab")
        router.proc = subprocess.Popen([daemon, "-c", os.path.join(router.tmp, "router.conf")], stdout=log,
                                       stderr=log)
        log.close()
    finally:
        os.environ.clear()
        os.environ.update(saved)
    try:
        wait_until(lambda: "accepting producers" in router.log(), 20, "the daemon built without libsystemd")
        check(router.log().count("NOTIFY_SOCKET is ignored") == 1, "said once:\n" + router.log())
        check(router.stop() == 0, "clean stop\n" + router.log())
        # A marker sent now is read after anything the daemon sent before it exited.
        marker = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        marker.sendto(b"MARKER=1", listener.path)
        marker.close()
        wait_until(lambda: listener.count("MARKER") == 1, 10, "the marker datagram")
        check(listener.snapshot() == [{"MARKER": "1"}], "nothing sent: %r" % listener.snapshot())
    finally:
        listener.close()
        router.cleanup()


def test_journal_fields_without_journald():
    """What the daemon sends to the journal, checked without journald:
    journal_capture.py binds the journal's sockets on a private /run (a
    mount namespace) and records the native-protocol entries GLib sends
    when stderr is the journal: the fields journalctl -o verbose shows."""
    require_private_mount_namespace("to stand in for journald on a private /run")
    router = Router({"demo": {"rpcs": ["log_event"], "endpoints": {"a": 9}}})  # port 9: refused, a warning
    try:
        out = subprocess.run(["unshare", "--mount", "--propagation", "private", "/usr/bin/python3",
                              os.path.join(os.path.dirname(os.path.abspath(__file__)), "journal_capture.py"), DAEMON,
                              os.path.join(router.tmp, "router.conf"), "tr-push"], capture_output=True, text=True,
                             timeout=120)
        check(out.returncode == 0, "journal_capture.py: %s" % out.stderr[-3000:])
        result = json.loads(out.stdout)
        entries = result["entries"]
        check(result["exit"] == 0, "clean stop, exit %s: %r" % (result["exit"], entries))

        def find(predicate, what):
            found = [e for e in entries if predicate(e)]
            check(found, "no journal entry %s among:\n%s" % (what, "\n".join(map(repr, entries))))
            return found[0]

        ready = find(lambda e: "accepting producers" in e.get("MESSAGE", ""), "for the ready line")
        check(ready.get("GLIB_DOMAIN") == "thriftrouter" and ready.get("PRIORITY") == "5",
              "the ready line has GLIB_DOMAIN=thriftrouter PRIORITY=5 (notice): %r" % ready)
        backoff = find(lambda e: e.get("GLIB_DOMAIN") == "tr-push", "from tr-push")
        check(backoff.get("PRIORITY") == "4" and backoff.get("TR_SERVICE") == "demo"
              and backoff.get("TR_ENDPOINT") == "a",
              "an endpoint warning has PRIORITY=4 and the TR_SERVICE/TR_ENDPOINT fields: %r" % backoff)
        find(lambda e: e.get("MESSAGE") == "thriftrouter stopped cleanly", "for the clean stop")
    finally:
        router.cleanup()


def test_journald_shows_domain_and_priority():
    """GLib's structured log writer talks to journald when stderr is a
    journal stream (systemd-cat here, StandardError=journal under the unit);
    journalctl -o verbose must show GLIB_DOMAIN and PRIORITY."""
    if not os.path.exists("/run/systemd/journal/socket") or shutil.which("journalctl") is None \
            or shutil.which("systemd-cat") is None:
        raise Skip("journald does not run on this machine (no /run/systemd/journal/socket), so journalctl "
                   "cannot be asked; test_journal_fields_without_journald checks the fields the daemon sends")
    router = Router({"demo": {"rpcs": ["log_event"], "endpoints": {"a": (9, "true")}}})
    router.command_prefix = ["systemd-cat", "--identifier=thriftrouter-test"]
    try:
        router.start()
        pid = router.proc.pid
        check(router.stop() == 0, "clean stop")

        def logged():
            out = subprocess.run(["journalctl", "-o", "verbose", "--no-pager", "_PID=%d" % pid,
                                  "GLIB_DOMAIN=thriftrouter"], capture_output=True, text=True).stdout
            return "stopped cleanly" in out and out

        wait_until(logged, 20, "the daemon's lines in the journal")
        out = logged()
        check("PRIORITY=5" in out, "g_message lines carry PRIORITY=5 (notice):\n" + out[-2000:])
    finally:
        router.cleanup()


if __name__ == "__main__":
    run_tests([test_ready_after_ports_accept_and_stopping_on_sigterm, test_reload_on_sighup_reloading_then_ready,
               test_watchdog_keepalives_when_watchdog_usec_set, test_no_watchdog_without_watchdog_usec,
               test_notify_and_reload_under_valgrind, test_builds_and_runs_without_libsystemd,
               test_journal_fields_without_journald,
               test_journald_shows_domain_and_priority])
