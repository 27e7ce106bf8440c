"""Integration tests of the Prometheus /metrics endpoint (issue 15,
docs/operations.md "Metrics"): the real daemon with metrics_listen, scraped
over HTTP; the exposition checked with Debian's promtool and scraped by a
real prometheus server; hostile scrapers next to producers; the shipped
dashboard and alert rules checked against a real scrape."""
import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

from trtest import SOURCE, Endpoint, Producer, Router, Skip, TApplicationException, check, free_port, run_tests
from trtest import wait_until

DASHBOARD = os.path.join(SOURCE, "docs", "grafana", "thriftrouter.json")
ALERTS = os.path.join(SOURCE, "docs", "prometheus", "alerts.yml")


def need(tool):
    path = shutil.which(tool)
    if path is None:
        raise Skip("%s not installed (Debian package prometheus, in tools/deps.sh's TEST list)" % tool)
    return path


def started(services, **keys):
    """A router with metrics_listen on a free loopback port, up and scrapeable."""
    port = free_port()
    router = Router(services, metrics_listen="127.0.0.1:%d" % port, **keys).start()
    router.metrics_port = port

    def listening():
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return True
        except OSError:
            return False

    try:
        wait_until(listening, 20, "the metrics port to listen")
    except AssertionError:
        router.cleanup()
        raise
    return router


def scrape(router, timeout=10):
    """GET /metrics: (content type, body text)."""
    url = "http://127.0.0.1:%d/metrics" % router.metrics_port
    with urllib.request.urlopen(url, timeout=timeout) as answer:
        check(answer.status == 200, "GET /metrics: status %d" % answer.status)
        return answer.headers.get("Content-Type"), answer.read().decode()


SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})? (\S+)$')


def samples(text):
    """{(name, frozenset of label pairs): value} of an exposition text."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        check(m is not None, "not a sample line: %r" % line)
        labels = frozenset(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
        out[(m.group(1), labels)] = float(m.group(3))
    return out


def value(parsed, name, **labels):
    key = (name, frozenset(labels.items()))
    check(key in parsed, "no sample %s%s in the scrape" % (name, labels))
    return parsed[key]


def send(router, count, prefix="m"):
    p = Producer(router.port)
    try:
        for i in range(count):
            p.log_event(("%s-%d" % (prefix, i)).encode())
    finally:
        p.close()


def promtool_check_metrics(text):
    res = subprocess.run([need("promtool"), "check", "metrics"], input=text, capture_output=True, text=True,
                         timeout=60)
    check(res.returncode == 0, "promtool check metrics: exit %d:\n%s%s" % (res.returncode, res.stdout, res.stderr))


def test_scrape_counts_rpcs_and_passes_promtool():
    # Without promtool every check but the last runs, then the test says SKIP.
    ep = Endpoint().start()
    router = started({"books": {"rpcs": ["log_event"], "endpoints": {"a": ep.port, "down": free_port()}}})
    try:
        content_type, before = scrape(router)
        check(content_type.startswith("text/plain; version=0.0.4"), "content type %s" % content_type)
        first = samples(before)
        check(value(first, "thriftrouter_rpcs_committed_total") == 0, "committed before any RPC")
        send(router, 25)
        try:
            Producer(router.port).other(1)
        except TApplicationException:
            pass
        wait_until(lambda: len(ep.received()) >= 25, 20, "25 RPCs at endpoint a")

        def delivered():
            s = samples(scrape(router)[1])
            return value(s, "thriftrouter_endpoint_delivered_total", service="books", endpoint="a") == 25

        wait_until(delivered, 20, "delivered_total of books/a to reach 25")
        text = scrape(router)[1]
        s = samples(text)
        check(value(s, "thriftrouter_rpcs_received_total") == 25, "received")
        check(value(s, "thriftrouter_rpcs_committed_total") == 25, "committed")
        check(value(s, "thriftrouter_rpcs_refused_total", reason="unknown_method") == 1, "unknown method refused")
        check(value(s, "thriftrouter_commit_latency_seconds_count") == 25, "one commit latency per RPC")
        check(value(s, "thriftrouter_commit_latency_seconds_bucket", le="+Inf") == 25, "+Inf bucket = count")
        check(value(s, "thriftrouter_commit_batch_rpcs_sum") == 25, "batch sizes add up to the RPCs")
        check(value(s, "thriftrouter_store_fdatasync_seconds_count") >= 1, "sync_mode always: fdatasyncs counted")
        check(value(s, "thriftrouter_store_head_rpc_id") == 25, "store head")
        check(value(s, "thriftrouter_store_bytes") > 0, "store bytes")
        check(value(s, "thriftrouter_endpoint_head_seqid", service="books", endpoint="a") == 25, "head")
        check(value(s, "thriftrouter_endpoint_acked_seqid", service="books", endpoint="a") == 25, "acked")
        check(value(s, "thriftrouter_endpoint_lag_rpcs", service="books", endpoint="a") == 0, "a has no lag")
        check(value(s, "thriftrouter_endpoint_lag_bytes", service="books", endpoint="a") == 0, "a: 0 bytes")
        check(value(s, "thriftrouter_endpoint_delivery_latency_seconds_count", service="books", endpoint="a") == 25,
              "a delivery latency per RPC")
        check(value(s, "thriftrouter_endpoint_state", service="books", endpoint="a", state="SENDING") == 1,
              "a is SENDING")
        # The endpoint nobody listens on: all 25 behind, backing off, failures and a failure time.
        check(value(s, "thriftrouter_endpoint_lag_rpcs", service="books", endpoint="down") == 25, "down's lag")
        check(value(s, "thriftrouter_endpoint_lag_bytes", service="books", endpoint="down") > 25 * 10,
              "down's lag in bytes covers its 25 records")
        check(value(s, "thriftrouter_endpoint_failures_total", service="books", endpoint="down") >= 1, "failures")
        check(value(s, "thriftrouter_endpoint_state", service="books", endpoint="down", state="SENDING") == 0,
              "down is not SENDING")
        error_time = value(s, "thriftrouter_endpoint_last_error_timestamp_seconds", service="books",
                           endpoint="down")
        check(abs(error_time - time.time()) < 600, "last error time %f is not now" % error_time)
        check(value(s, "thriftrouter_node_role", server_id="it-1", role="MASTER") == 1, "role")
        check(value(s, "thriftrouter_node_epoch") == 1, "epoch")
        check(value(s, "thriftrouter_uptime_seconds") > 0, "uptime")
        check(any(k[0] == "thriftrouter_build_info" and dict(k[1]).get("version") and v == 1 for k, v in s.items()),
              "build info with a version label")
        check(value(s, "thriftrouter_scrape_partial") == 0, "complete scrape")
        for family in set(k[0] for k in s):
            base = re.sub(r"_(bucket|sum|count)$", "", family)
            check("# TYPE %s " % family in text or "# TYPE %s histogram" % base in text, "no TYPE for %s" % family)
            check("# HELP %s " % family in text or "# HELP %s " % base in text, "no HELP for %s" % family)
        promtool_check_metrics(text)
        # Not a metrics path or method.
        try:
            urllib.request.urlopen("http://127.0.0.1:%d/other" % router.metrics_port, timeout=10)
            check(False, "GET /other answered 200")
        except urllib.error.HTTPError as e:
            check(e.code == 404, "GET /other: %d" % e.code)
    finally:
        router.cleanup()
        ep.stop()


def test_dead_letters_and_retries_per_endpoint():
    ep = Endpoint().start()
    ep.fail_next = 10 ** 9  # the endpoint always raises
    logging.getLogger().setLevel(logging.CRITICAL)  # python thrift logs every raise with a traceback
    router = started({"books": {"rpcs": ["log_event"], "endpoints": {"a": ep.port}, "on_failure": "skip",
                                "max_retries": "1"}})
    try:
        send(router, 4)

        def dead():
            s = samples(scrape(router)[1])
            return value(s, "thriftrouter_endpoint_dead_letters_total", service="books", endpoint="a")

        wait_until(lambda: dead() == 4, 30, "4 dead letters counted for books/a")
        s = samples(scrape(router)[1])
        # Each seqid failed twice (max_retries = 1) before it became a dead letter.
        check(value(s, "thriftrouter_endpoint_failures_total", service="books", endpoint="a") >= 8, "failures")
        check(value(s, "thriftrouter_endpoint_acked_seqid", service="books", endpoint="a") == 4, "moved past them")
        check(value(s, "thriftrouter_endpoint_delivered_total", service="books", endpoint="a") == 0,
              "a dead letter is not delivered")
        check(value(s, "thriftrouter_endpoint_delivery_latency_seconds_count", service="books", endpoint="a") == 0,
              "no delivery latency without a delivery")
    finally:
        router.cleanup()
        ep.stop()


def test_endpoints_added_by_a_reload_are_scraped():
    ep = Endpoint().start()
    router = started({"books": {"rpcs": ["log_event"], "endpoints": {"a": ep.port}}})
    try:
        send(router, 2)
        check(not any(dict(k[1]).get("endpoint") == "b" for k in samples(scrape(router)[1])), "b before the reload")
        with open(os.path.join(router.tmp, "services", "books.conf"), "a") as f:
            f.write("\n[endpoint b]\nhost = 127.0.0.1\nport = %d\n" % ep.port)
        router.proc.send_signal(signal.SIGHUP)

        def b_scraped():
            s = samples(scrape(router)[1])
            key = ("thriftrouter_endpoint_state", frozenset({"service": "books", "endpoint": "b",
                                                             "state": "SENDING"}.items()))
            return s.get(key) == 1

        wait_until(b_scraped, 20, "books/b SENDING in a scrape after the reload")
    finally:
        router.cleanup()
        ep.stop()


def test_bad_metrics_listen_is_an_error_naming_the_key():
    for bad, needle in (("9100", "[router] metrics_listen: '9100' is not host:port"),
                        ("127.0.0.1:%d" % 0, None)):
        if needle is None:
            # A port in use: the start-up error names metrics_listen and the address.
            holder = socket.socket()
            holder.bind(("127.0.0.1", 0))
            holder.listen(1)
            bad = "127.0.0.1:%d" % holder.getsockname()[1]
            needle = "metrics_listen: cannot listen on %s" % bad
        router = Router({"books": {"rpcs": ["log_event"], "endpoints": {"a": free_port()}}}, metrics_listen=bad)
        try:
            try:
                # The producer and admin ports may open before the metrics
                # port fails: then the exit follows.
                router.start(timeout=10)
                rc = router.proc.wait(timeout=20)
                check(rc != 0, "router exited 0 with metrics_listen = %s" % bad)
            except AssertionError as e:
                check("exited with" in str(e), "did not exit: %s" % e)
            check(needle in router.log(), "log lacks %r:\n%s" % (needle, router.log()))
        finally:
            router.cleanup()
            if needle.startswith("metrics_listen: cannot"):
                holder.close()


def test_metrics_off_when_unset():
    router = Router({"books": {"rpcs": ["log_event"], "endpoints": {"a": free_port()}}}).start()
    try:
        log = router.log()
        check("metrics: serving" not in log, "metrics served without metrics_listen:\n%s" % log)
        pid = router.proc.pid
        # The daemon listens on exactly the producer and the admin port.
        ports = set()
        # Descriptors come and go while we look (the endpoint connection,
        # start()'s probe connections): one that closed in between is skipped.
        inodes = set()
        for fd in os.listdir("/proc/%d/fd" % pid):
            try:
                target = os.readlink("/proc/%d/fd/%s" % (pid, fd))
            except FileNotFoundError:
                continue
            if target.startswith("socket:"):
                inodes.add(target[8:-1])
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            with open(table) as f:
                for line in f.readlines()[1:]:
                    fields = line.split()
                    if fields[3] == "0A" and fields[9] in inodes:  # LISTEN
                        ports.add(int(fields[1].rsplit(":", 1)[1], 16))
        check(ports == {router.port, router.admin_port}, "listening on %s" % sorted(ports))
    finally:
        router.cleanup()


def test_hostile_scrapers_do_not_stall_producers():
    ep = Endpoint().start()
    router = started({"books": {"rpcs": ["log_event"], "endpoints": {"a": ep.port}}})
    hostile = []
    try:
        addr = ("127.0.0.1", router.metrics_port)
        # 1. connects and says nothing; 2. sends garbage; 3. pipelines many scrapes and never reads one.
        hostile.append(socket.create_connection(addr, timeout=5))
        garbage = socket.create_connection(addr, timeout=5)
        garbage.sendall(b"\x00\xff NOT HTTP \r\n\r\n" * 100)
        hostile.append(garbage)
        greedy = socket.create_connection(addr, timeout=5)
        greedy.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        greedy.setblocking(False)
        request = b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"
        sent = 0
        try:
            for _ in range(5000):
                sent += greedy.send(request)
        except (BlockingIOError, ConnectionResetError, BrokenPipeError):
            pass  # its buffers are full, or the router answered once and closed (one request per connection)
        hostile.append(greedy)
        check(sent >= len(request), "the greedy scraper sent only %d bytes" % sent)
        # 4. many connections that each ask once and never read.
        for _ in range(20):
            mute = socket.create_connection(addr, timeout=5)
            mute.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            mute.sendall(request)
            hostile.append(mute)
        # 5. scrapes back to back as fast as it can, for as long as the producers run.
        stop = threading.Event()
        scrapes = []

        def hammer():
            while not stop.is_set():
                scrape(router)
                scrapes.append(1)

        hammering = threading.Thread(target=hammer, daemon=True)
        hammering.start()
        # Producers while they are connected: every call is answered quickly.
        p = Producer(router.port)
        worst = 0.0
        try:
            for i in range(200):
                start = time.time()
                p.log_event(b"h-%d" % i)
                worst = max(worst, time.time() - start)
        finally:
            p.close()
            stop.set()
            hammering.join(30)
        check(worst < 1.0, "a producer call took %.3f s while hostile scrapers were connected" % worst)
        check(len(scrapes) > 0, "the back-to-back scraper got no answer")
        wait_until(lambda: len(ep.received()) >= 200, 20, "200 RPCs delivered while scrapers misbehave")
        # An honest scraper is still answered (scrapes 200 ms apart may get the same text).
        wait_until(lambda: value(samples(scrape(router)[1]), "thriftrouter_rpcs_committed_total") == 200, 10,
                   "a scrape to show the 200 RPCs committed")
    finally:
        for sock in hostile:
            sock.close()
        router.cleanup()
        ep.stop()


def fd_count(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def test_scraper_connections_are_bounded():
    router = started({"books": {"rpcs": ["log_event"], "endpoints": {"a": free_port()}}})
    idle = []
    try:
        scrape(router)
        before = fd_count(router.proc.pid)
        for _ in range(100):
            idle.append(socket.create_connection(("127.0.0.1", router.metrics_port), timeout=5))

        def refused_the_rest():
            # The router closes connections beyond the bound at once: they read EOF.
            closed = 0
            for sock in idle:
                sock.setblocking(False)
                try:
                    closed += sock.recv(1) == b""
                except BlockingIOError:
                    pass
                except OSError:
                    closed += 1
            return closed >= 100 - 32

        wait_until(refused_the_rest, 20, "the router to close the connections beyond 32")
        check(fd_count(router.proc.pid) <= before + 32 + 2,
              "%d descriptors open for 100 idle scrapers (%d before)" % (fd_count(router.proc.pid), before))
        check("metrics: refusing 127.0.0.1:" in router.log(), "no refusal logged:\n%s" % router.log())
        send(router, 3)  # producers unaffected
        for sock in idle:
            sock.close()
        idle = []

        # Closed connections give their places back: scraping works again.
        def scrapes():
            try:
                return value(samples(scrape(router, timeout=2)[1]), "thriftrouter_rpcs_committed_total") == 3
            except OSError:
                return False

        wait_until(scrapes, 20, "a scrape once the idle scrapers are gone")
        for _ in range(40):  # more than the bound, one after the other
            scrape(router)
    finally:
        for sock in idle:
            sock.close()
        router.cleanup()


def start_prometheus(tmp, target_port):
    """A real prometheus server on a free loopback port scraping the router
    every second; returns (process, api base URL)."""
    port = free_port()
    config = os.path.join(tmp, "prometheus.yml")
    with open(config, "w") as f:
        f.write("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
                "scrape_configs:\n  - job_name: thriftrouter\n    scrape_interval: 1s\n    scrape_timeout: 1s\n"
                "    static_configs:\n      - targets: ['127.0.0.1:%d']\n" % target_port)
    log = open(os.path.join(tmp, "prometheus.log"), "wb")
    proc = subprocess.Popen([need("prometheus"), "--config.file=" + config,
                             "--web.listen-address=127.0.0.1:%d" % port,
                             "--storage.tsdb.path=" + os.path.join(tmp, "tsdb")],
                            stdout=log, stderr=log, cwd=tmp)
    log.close()
    return proc, "http://127.0.0.1:%d" % port


def api(base, path, **params):
    url = base + path + ("?" + urllib.parse.urlencode(params) if params else "")
    with urllib.request.urlopen(url, timeout=5) as answer:
        body = json.loads(answer.read().decode())
    check(body.get("status") == "success", "%s: %s" % (path, body))
    return body["data"]


def test_prometheus_server_scrapes_the_router():
    need("prometheus")
    ep = Endpoint().start()
    router = started({"books": {"rpcs": ["log_event"], "endpoints": {"a": ep.port}}})
    tmp = tempfile.mkdtemp(prefix="tr-prom-")
    proc = None
    try:
        send(router, 7)
        proc, base = start_prometheus(tmp, router.metrics_port)

        def target_up():
            if proc.poll() is not None:
                with open(os.path.join(tmp, "prometheus.log"), errors="replace") as f:
                    raise AssertionError("prometheus exited with %s:\n%s" % (proc.returncode, f.read()[-3000:]))
            try:
                targets = api(base, "/api/v1/targets")["activeTargets"]
            except (OSError, ValueError):
                return False
            return any(t["health"] == "up" for t in targets)

        wait_until(target_up, 60, "prometheus to scrape the router (target up)")

        def committed():
            try:
                result = api(base, "/api/v1/query", query='thriftrouter_rpcs_committed_total{job="thriftrouter"}')
            except (OSError, ValueError):
                return None
            return float(result["result"][0]["value"][1]) if result["result"] else None

        wait_until(lambda: committed() == 7, 30, "prometheus to return thriftrouter_rpcs_committed_total = 7")
        result = api(base, "/api/v1/query",
                     query='thriftrouter_endpoint_delivered_total{service="books",endpoint="a"}')["result"]
        check(result and float(result[0]["value"][1]) == 7, "delivered through prometheus: %s" % result)
    finally:
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(tmp, ignore_errors=True)
        router.cleanup()
        ep.stop()


def test_alert_rules_pass_promtool():
    res = subprocess.run([need("promtool"), "check", "rules", ALERTS], capture_output=True, text=True, timeout=60)
    check(res.returncode == 0, "promtool check rules: exit %d:\n%s%s" % (res.returncode, res.stdout, res.stderr))
    check("4 rules found" in res.stdout, "rules: %s" % res.stdout)


def shipped_metric_names():
    """Every thriftrouter_* name in the dashboard's and the alerts' queries."""
    names = set()
    with open(DASHBOARD) as f:
        dashboard = json.load(f)
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            names.update(re.findall(r"\bthriftrouter_[a-z_]+\b", target["expr"]))
    with open(ALERTS) as f:
        text = f.read()
    exprs = re.findall(r"expr: \|\n((?:          .*\n)+)", text)
    check(len(exprs) == 4, "found %d alert expressions" % len(exprs))
    for expr in exprs:
        names.update(re.findall(r"\bthriftrouter_[a-z_]+\b", expr))
    return names


def test_dashboard_and_alerts_use_metrics_that_exist():
    names = shipped_metric_names()
    check(len(names) >= 10, "only %d metric names found in the dashboard and alerts" % len(names))
    ep = Endpoint().start()
    router = started({"books": {"rpcs": ["log_event"], "endpoints": {"a": ep.port, "down": free_port()}}})
    try:
        send(router, 3)
        wait_until(lambda: len(ep.received()) >= 3, 20, "3 RPCs at endpoint a")
        scraped = set(k[0] for k in samples(scrape(router)[1]))
        missing = sorted(n for n in names if n not in scraped)
        check(not missing, "used in docs/grafana or docs/prometheus but not in a scrape: %s" % missing)
    finally:
        router.cleanup()
        ep.stop()


if __name__ == "__main__":
    run_tests([test_scrape_counts_rpcs_and_passes_promtool, test_dead_letters_and_retries_per_endpoint,
               test_endpoints_added_by_a_reload_are_scraped,
               test_bad_metrics_listen_is_an_error_naming_the_key,
               test_metrics_off_when_unset, test_hostile_scrapers_do_not_stall_producers,
               test_scraper_connections_are_bounded,
               test_prometheus_server_scrapes_the_router, test_alert_rules_pass_promtool,
               test_dashboard_and_alerts_use_metrics_that_exist])
