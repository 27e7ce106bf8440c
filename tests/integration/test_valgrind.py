"""The daemon under valgrind memcheck (issue 5 item 7): a short run with
producers, an endpoint, a oneway, an unknown rpc, tr-admin status and a clean
SIGTERM.  Passes with zero memcheck errors and zero definitely lost bytes.
Skipped (with a printed reason) when valgrind is not installed."""
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time

import trtest
from trtest import Endpoint, Producer, Router, TApplicationException, check, run_tests, wait_until


def test_daemon_under_valgrind():
    if trtest.sanitizer() is not None:
        raise trtest.Skip("valgrind cannot run a sanitizer build (%s)" % trtest.sanitizer())
    if shutil.which("valgrind") is None:
        raise trtest.Skip("valgrind is not installed (tools/deps.sh installs it)")
    vglog = tempfile.mktemp(prefix="tr-vg-", suffix=".log")
    ep = Endpoint().start()
    router = Router({"books": {"rpcs": ["log_event", "fire"], "endpoints": {"a": ep.port}}})
    log = open(router.log_path, "ab")
    # Not under timeout(1): it re-sends SIGTERM to its whole process group,
    # and a second signal makes the daemon exit at once (by design).  The
    # waits below are bounded instead, and router.stop() kills on expiry.
    router.proc = subprocess.Popen(["valgrind", "--leak-check=full",
                                    "--errors-for-leak-kinds=definite", "--log-file=" + vglog,
                                    trtest.DAEMON, "-c", os.path.join(router.tmp, "router.conf")],
                                   stdout=log, stderr=log)
    log.close()
    try:
        wait_until(lambda: "accepting producers" in router.log(), 120, "the router under valgrind")
        p = Producer(router.port)
        for i in range(300):
            p.log_event(b"vg-%d" % i)
        p.fire(b"vg-oneway")
        try:
            p.other(1)
        except TApplicationException:
            pass
        p.close()
        wait_until(lambda: len(ep.payloads()) >= 301, 120, "delivery under valgrind")
        subprocess.run([os.path.join(trtest.BUILD, "tools", "tr-admin"), "-c",
                        os.path.join(router.tmp, "router.conf"), "status"], capture_output=True, timeout=60)
        router.proc.send_signal(signal.SIGTERM)
        check(router.proc.wait(timeout=120) == 0, "clean exit under valgrind:\n" + router.log())
        router.proc = None
        report = open(vglog).read()
        errors = int(re.search(r"ERROR SUMMARY: (\d+) errors", report).group(1))
        lost = re.search(r"definitely lost: ([\d,]+) bytes", report)
        lost = int(lost.group(1).replace(",", "")) if lost else 0
        print("  valgrind: %d errors, %d bytes definitely lost" % (errors, lost))
        check(errors == 0 and lost == 0, "valgrind report:\n" + report[-4000:])
    finally:
        router.stop()
        router.cleanup()
        ep.stop()
        if os.path.exists(vglog):
            os.unlink(vglog)


if __name__ == "__main__":
    run_tests([test_daemon_under_valgrind])
