"""Integration tests of the data directory lock (issue 12): a second router
on a data directory in use exits before it reads or repairs anything, names
the directory and the holder's pid; the running router's files stay as they
were; once the holder stops, a start succeeds."""
import os
import subprocess
import time

from trtest import DAEMON, Endpoint, Producer, Router, check, run_tests, wait_until

SERVICES_KEY = "books"


def services(endpoint_port):
    return {SERVICES_KEY: {"rpcs": ["log_event"], "endpoints": {"a": endpoint_port}}}


def snapshot(data_dir):
    """{relative path: (size, mtime_ns)} of every file under data_dir."""
    files = {}
    for root, _dirs, names in os.walk(data_dir):
        for name in names:
            path = os.path.join(root, name)
            st = os.stat(path)
            files[os.path.relpath(path, data_dir)] = (st.st_size, st.st_mtime_ns)
    return files


def idle_snapshot(data_dir, timeout=20.0):
    """Waits until the running router leaves its files alone (two snapshots
    1.5 s apart are equal: longer than its 1 s checkpoint timer and its
    20 ms state flush), and returns that snapshot."""
    last = [snapshot(data_dir)]

    def settled():
        time.sleep(1.5)
        now = snapshot(data_dir)
        same = now == last[0]
        last[0] = now
        return same

    wait_until(settled, timeout, "the idle router to stop touching its data files")
    return last[0]


def start_busy_first(endpoint):
    """A router with some stored and delivered RPCs, then idle."""
    router = Router(services(endpoint.port)).start()
    p = Producer(router.port)
    for i in range(50):
        p.log_event(b"rpc-%d" % i + b"x" * 2000)
    p.close()
    wait_until(lambda: len(endpoint.received()) >= 50, 20, "the 50 rpcs to reach the endpoint")
    return router


def run_second(conf_path, timeout=30):
    """Starts a second daemon; returns (exit code, output).  One still running
    after @timeout is killed and reported as running (what happened before
    the lock existed)."""
    proc = subprocess.Popen([DAEMON, "-c", conf_path], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        raise AssertionError("the second router is still running on a data directory in use:\n%s" % out[-3000:])
    return proc.returncode, out


def check_refused(rc, out, first):
    data_dir = os.path.realpath(first.data_dir)
    check(rc != 0, "second router exited 0:\n%s" % out)
    check("data directory %s is in use" % data_dir in out or "data directory %s is in use" % first.data_dir in out,
          "the error does not name the data directory %s:\n%s" % (data_dir, out))
    check("pid %d," % first.proc.pid in out, "the error does not name the holder's pid %d:\n%s" % (first.proc.pid, out))


def test_second_router_with_other_ports_is_refused():
    endpoint = Endpoint().start()
    first = start_busy_first(endpoint)
    second = Router(services(endpoint.port), data_dir=first.data_dir)
    try:
        before = idle_snapshot(first.data_dir)
        rc, out = run_second(os.path.join(second.tmp, "router.conf"))
        check_refused(rc, out, first)
        check(snapshot(first.data_dir) == before,
              "the refused router changed the data files:\nbefore %s\nafter  %s" % (before, snapshot(first.data_dir)))
        check(first.proc.poll() is None, "the first router died")
        p = Producer(first.port)
        p.log_event(b"after")
        p.close()
        wait_until(lambda: any(d == b"after" for _, d in endpoint.payloads()), 20, "the first router to go on delivering")
        check(first.stop() == 0, "first router did not stop cleanly")
        # The holder is gone: the same directory starts now.
        second.start()
        check(second.stop() == 0, "second router did not stop cleanly:\n%s" % second.log())
    finally:
        second.cleanup()
        first.cleanup()
        endpoint.stop()


def test_second_start_with_the_same_config_runs_no_recovery():
    endpoint = Endpoint().start()
    first = start_busy_first(endpoint)
    try:
        before = idle_snapshot(first.data_dir)
        rc, out = run_second(os.path.join(first.tmp, "router.conf"))
        check_refused(rc, out, first)
        check("Address already in use" not in out, "it got as far as the busy port:\n%s" % out)
        check(snapshot(first.data_dir) == before,
              "the refused router changed the data files:\nbefore %s\nafter  %s" % (before, snapshot(first.data_dir)))
        check(first.stop() == 0, "first router did not stop cleanly")
        first.start()
        check(first.stop() == 0, "restart did not stop cleanly:\n%s" % first.log())
    finally:
        first.cleanup()
        endpoint.stop()


def test_check_needs_no_lock():
    """--check reads only the configuration: it works while the router runs."""
    endpoint = Endpoint().start()
    first = Router(services(endpoint.port)).start()
    try:
        res = subprocess.run([DAEMON, "-c", os.path.join(first.tmp, "router.conf"), "--check"], capture_output=True,
                             text=True, timeout=30)
        check(res.returncode == 0, "--check failed while the router runs: %s" % res.stderr)
    finally:
        first.stop()
        first.cleanup()
        endpoint.stop()


if __name__ == "__main__":
    run_tests([test_second_router_with_other_ports_is_refused, test_second_start_with_the_same_config_runs_no_recovery,
               test_check_needs_no_lock])
