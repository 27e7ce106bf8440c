"""Crash loop (DESIGN.md §7, issue 5 item 1): kill -9 the router at seeded
random moments under load, restart, repeat; then check that nothing
acknowledged was lost.

Producers run in a SEPARATE process (this file run with --producer), so the
endpoints' Python threads and the producers' do not share a GIL.  Each
producer thread writes "S <payload>" to its own file before sending a call
and "A <payload>" once the router answered it, flushing each line.  Two
services subscribe log_event, each with one recording endpoint.

  TR_TEST_SEED         seed of the kill moments (printed)
  TR_CRASH_ITERATIONS  kills (default 50, about a minute; more by hand)
  TR_CRASH_ITERATIONS_INTERVAL  kills of the sync_mode = interval run (default 15)
  TR_CRASH_PRODUCERS   producer threads (default 4)

At the end, for each endpoint: every acknowledged payload was delivered;
the seqids, duplicates dropped, are exactly 1..n in order; every delivered
payload was submitted; each producer thread's payloads arrive in its order;
both services saw the same sequence; every restart was clean.  Duplicates
are reported per crash.
"""
import os
import random
import subprocess
import sys
import tempfile
import threading
import time

from trtest import Endpoint, Producer, Router, check, run_tests, wait_until


def producer_main(port, outdir, threads, stop_file):
    """Runs in the child process: threads call log_event until stop_file
    exists, reconnecting whenever the router is gone."""
    def worker(t):
        with open(os.path.join(outdir, "prod-%d.log" % t), "w") as log:
            i = 0
            p = None
            while not os.path.exists(stop_file):
                if p is None:
                    try:
                        p = Producer(port, timeout_ms=5000)
                    except Exception:
                        time.sleep(0.01)
                        continue
                data = b"t%d-%d" % (t, i)
                i += 1
                log.write("S %s\n" % data.decode())
                log.flush()
                try:
                    p.log_event(data)
                except Exception:
                    try:
                        p.close()
                    except Exception:
                        pass
                    p = None
                    continue
                log.write("A %s\n" % data.decode())
                log.flush()
            if p is not None:
                p.close()

    ts = [threading.Thread(target=worker, args=(t,)) for t in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()


def _read_producer_logs(outdir):
    submitted, acked = set(), set()
    per_thread = {}
    for name in os.listdir(outdir):
        if not name.startswith("prod-"):
            continue
        with open(os.path.join(outdir, name), "rb") as f:
            for line in f:
                if not line.endswith(b"\n"):
                    continue  # a torn last line cannot be an ack
                kind, data = line[:1], line[2:-1]
                if kind == b"S":
                    submitted.add(data)
                elif kind == b"A":
                    acked.add(data)
                    per_thread.setdefault(data.split(b"-")[0], []).append(data)
    return submitted, acked


def _dups(ep):
    return len(ep.received()) - len(ep.payloads())


def test_kill9_loop_loses_nothing_acknowledged():
    _kill9_loop("always", int(os.environ.get("TR_CRASH_ITERATIONS", "50")))


def test_kill9_loop_interval_loses_nothing_acknowledged():
    """sync_mode = interval answers before the fdatasync, from the loop
    thread that wrote the batch: a kill -9 (not a power loss) must still
    lose nothing that was answered, since the page cache survives it."""
    _kill9_loop("interval", int(os.environ.get("TR_CRASH_ITERATIONS_INTERVAL", "15")))


def _kill9_loop(sync_mode, iterations):
    seed = int(os.environ.get("TR_TEST_SEED", "20261122"))
    nprod = int(os.environ.get("TR_CRASH_PRODUCERS", "4"))
    rnd = random.Random(seed)
    print("  TR_TEST_SEED=%d iterations=%d producers=%d sync_mode=%s" % (seed, iterations, nprod, sync_mode),
          flush=True)
    eps = [Endpoint().start(), Endpoint().start()]
    router = Router({"books": {"rpcs": ["log_event"], "endpoints": {"a": eps[0].port}},
                     "mail": {"rpcs": ["log_event"], "endpoints": {"b": eps[1].port}}},
                    sync_mode=sync_mode, state_flush_ms="100")
    outdir = tempfile.mkdtemp(prefix="tr-crash-prod-")
    stop_file = os.path.join(outdir, "STOP")
    prod = None
    try:
        router.start()
        prod = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--producer", str(router.port), outdir,
                                 str(nprod), stop_file])
        dups_at_kill = []
        kills = 0
        t0 = time.time()
        for it in range(iterations):
            time.sleep(rnd.uniform(0.05, 1.2))
            check(prod.poll() is None, "producer process died: rc %s" % prod.returncode)
            router.kill9()
            kills += 1
            dups_at_kill.append([_dups(ep) for ep in eps])
            router.start()
            check(router.proc.poll() is None, "router exited after restart %d" % (it + 1))
        # Let the last restart deliver its duplicates too, then stop the producers.
        time.sleep(1.0)
        with open(stop_file, "w"):
            pass
        prod.wait(timeout=30)
        check(prod.returncode == 0, "producer process exit code %s" % prod.returncode)
        prod = None
        submitted, acked = _read_producer_logs(outdir)
        check(len(acked) > 0, "nothing was acknowledged")
        for ep in eps:
            wait_until(lambda: acked <= set(d for _, d in ep.payloads()), timeout=120,
                       what="every acknowledged rpc delivered to endpoint %d" % ep.port)
        # The producers are stopped: also wait for whatever was stored but not acked.
        time.sleep(1.0)
        sequences = []
        for ep in eps:
            got = ep.payloads()
            seqids = [s for s, _ in got]
            check(seqids == list(range(1, len(got) + 1)),
                  "endpoint %d: seqids not 1..n: first bad at %s" %
                  (ep.port, next((i for i, s in enumerate(seqids) if s != i + 1), None)))
            delivered = [d for _, d in got]
            missing = acked - set(delivered)
            check(not missing, "endpoint %d: %d acknowledged rpcs never delivered, e.g. %r" %
                  (ep.port, len(missing), sorted(missing)[:5]))
            foreign = set(delivered) - submitted
            check(not foreign, "endpoint %d: delivered rpcs never submitted: %r" % (ep.port, sorted(foreign)[:5]))
            check(len(set(delivered)) == len(delivered), "endpoint %d: one payload under two seqids" % ep.port)
            last = {}
            for d in delivered:
                t, i = d.split(b"-")
                i = int(i)
                check(i > last.get(t, -1), "endpoint %d: producer %r out of order at %d" % (ep.port, t, i))
                last[t] = i
            sequences.append(delivered)
        check(sequences[0] == sequences[1], "the two services saw different sequences")
        final = [_dups(ep) for ep in eps]
        per_crash = []
        for k in range(kills):
            nxt = dups_at_kill[k + 1] if k + 1 < kills else final
            per_crash.append(tuple(nxt[e] - dups_at_kill[k][e] for e in range(len(eps))))
        log = router.log()
        with open(router.log_path, errors="replace") as f:
            full_log = f.read()
        check("refusing to start" not in full_log, "a restart refused to start:\n" + log)
        rc = router.stop()
        check(rc == 0, "clean stop exit code %s" % rc)
        router.start()  # the store opens clean once more
        router.stop()
        with open(router.log_path, errors="replace") as f:
            full_log = f.read()
        check("refusing to start" not in full_log, "final restart refused to start")
        total_dups = [sum(p[e] for p in per_crash) for e in range(len(eps))]
        print("  %d kills in %.0fs: %d submitted, %d acknowledged, %d delivered per endpoint (%d stored but not acked)"
              % (kills, time.time() - t0, len(submitted), len(acked), len(sequences[0]),
                 len(sequences[0]) - len(acked)))
        print("  duplicates per crash (books, mail): %s" % " ".join("%d/%d" % p for p in per_crash))
        print("  duplicates total: books %d, mail %d; max per crash %d; mean per crash %.1f"
              % (total_dups[0], total_dups[1], max(max(p) for p in per_crash) if per_crash else 0,
                 sum(total_dups) / max(1, len(eps) * kills)), flush=True)
    finally:
        if prod is not None:
            with open(stop_file, "w"):
                pass
            try:
                prod.wait(timeout=10)
            except subprocess.TimeoutExpired:
                prod.kill()
                prod.wait()
        router.cleanup()
        for ep in eps:
            ep.stop()
        import shutil
        shutil.rmtree(outdir, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--producer":
        import logging
        logging.disable(logging.CRITICAL)  # TSocket logs every refused reconnect
        producer_main(int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), sys.argv[5])
        sys.exit(0)
    run_tests([test_kill9_loop_loses_nothing_acknowledged, test_kill9_loop_interval_loses_nothing_acknowledged])
