"""Soak run (issue 5 item 8; a script, not a CI test): mixed load for
TR_SOAK_SECONDS (default 1800) against the real daemon, with endpoint flaps
and stop_send toggles through tr-admin, sampling the router's RSS and open
file descriptors every 5 s, and configuration reloads (tr-admin reload)
that add and later remove an extra endpoint of service a.  At the end every
acknowledged RPC must have reached every endpoint in seqid order (the
reloads must not disturb the untouched endpoints), and RSS and descriptors
must be flat (no growth beyond a small bound after the first minute).  Run
it with tools/soak.sh."""
import os
import random
import subprocess
import sys
import threading
import time

from trtest import BUILD, Endpoint, Producer, Router, check, wait_until

SECONDS = int(os.environ.get("TR_SOAK_SECONDS", "1800"))
SEED = int(os.environ.get("TR_TEST_SEED", "20261122"))


def fd_count(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def admin(router, *args):
    return subprocess.run([os.path.join(BUILD, "tools", "tr-admin"), "-c", os.path.join(router.tmp, "router.conf")]
                          + list(args), capture_output=True, text=True, timeout=30)


def producer(port, prefix, acked, stop):
    p = None
    i = 0
    while not stop.is_set():
        try:
            if p is None:
                p = Producer(port, timeout_ms=10000)
            data = b"%s-%d" % (prefix, i)
            p.log_event(data)
            acked.append(data)
            i += 1
        except Exception:
            p = None
            time.sleep(0.2)
    if p is not None:
        p.close()


def toggle_extra(router, extra, present):
    """Adds or removes [endpoint extra] in services/a.conf and reloads."""
    path = os.path.join(router.tmp, "services", "a.conf")
    with open(path) as f:
        text = f.read().split("\n[endpoint extra]")[0]
    if not present:
        text += "\n[endpoint extra]\nhost = 127.0.0.1\nport = %d\n" % extra.port
    with open(path, "w") as f:
        f.write(text)
    out = admin(router, "reload")
    check(out.returncode == 0 and "endpoint a/extra" in out.stdout, "reload: %s%s" % (out.stdout, out.stderr))
    return not present


def main():
    rng = random.Random(SEED)
    print("soak: %d s, TR_TEST_SEED=%d" % (SECONDS, SEED), flush=True)
    steady, flappy, extra = Endpoint().start(), Endpoint().start(), Endpoint().start()
    extra_present = False
    reloads = 0
    router = Router({"a": {"rpcs": ["log_event"], "endpoints": {"steady": steady.port}},
                     "b": {"rpcs": ["log_event"], "endpoints": {"flappy": flappy.port}}},
                    group_file_size="8M", rpc_cache_size="8M", sync_mode="always").start()
    stop = threading.Event()
    acked = [[] for _ in range(4)]
    threads = [threading.Thread(target=producer, args=(router.port, b"p%d" % t, acked[t], stop)) for t in range(4)]
    for t in threads:
        t.start()
    samples = []
    end = time.time() + SECONDS
    stopped = False
    try:
        while time.time() < end:
            action = rng.random()
            if action < 0.3:
                flappy.stop()
                time.sleep(rng.uniform(0.5, 3))
                flappy.start()  # same port, same record of calls
            elif action < 0.6:
                out = admin(router, "start-send" if stopped else "stop-send", "b", "flappy")
                check(out.returncode == 0, "tr-admin: %s" % out.stderr)
                stopped = not stopped
            elif action < 0.75:
                extra_present = toggle_extra(router, extra, extra_present)
                reloads += 1
            time.sleep(rng.uniform(1, 5))
            samples.append((time.time(), router.rss_kib(), fd_count(router.proc.pid)))
            print("  t=%4.0fs rss=%d KiB fds=%d acked=%d reloads=%d"
                  % (SECONDS - (end - time.time()), samples[-1][1], samples[-1][2], sum(len(a) for a in acked),
                     reloads), flush=True)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)
    if stopped:
        admin(router, "start-send", "b", "flappy")
    total = sum(len(a) for a in acked)
    # highest_seqid(), not payloads(): this polls while millions arrive.
    wait_until(lambda: steady.highest_seqid() >= total, timeout=300, what="steady endpoint delivery")
    wait_until(lambda: flappy.highest_seqid() >= total, timeout=300, what="flappy endpoint delivery")
    print("soak: %d rpcs acknowledged" % total, flush=True)
    router.stop()
    router.cleanup()
    everything = set(x for a in acked for x in a)
    for name, ep in (("steady", steady), ("flappy", flappy)):
        got = ep.payloads()
        check([s for s, _ in got] == list(range(1, len(got) + 1)), "%s: seqids not 1..n in order" % name)
        check(set(d for _, d in got) >= everything, "%s endpoint misses acknowledged rpcs" % name)
    later = [s for s in samples if s[0] > samples[0][0] + 60] or samples
    rss_growth = max(s[1] for s in later) - later[0][1]
    fd_growth = max(s[2] for s in later) - later[0][2]
    print("soak: RSS %d -> max %d KiB (+%d after the first minute), fds %d -> max %d"
          % (samples[0][1], max(s[1] for s in samples), rss_growth, samples[0][2], max(s[2] for s in samples)))
    check(rss_growth < 16 * 1024, "RSS grew %d KiB" % rss_growth)
    check(fd_growth < 16, "file descriptors grew by %d" % fd_growth)
    seen = [s for s, _ in extra.payloads()]
    check(seen == sorted(seen), "extra endpoint: seqids out of order")
    steady.stop()
    flappy.stop()
    extra.stop()
    print("soak: 1 passed, 0 failed")


if __name__ == "__main__":
    try:
        main()
    except AssertionError as e:
        print("soak FAILED: %s" % e)
        print("soak: 0 passed, 1 failed")
        sys.exit(1)
