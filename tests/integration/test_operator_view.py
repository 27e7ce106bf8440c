"""Integration tests of what an operator sees of a stuck endpoint and of a
stored RPC (issue 15, "Operator experience"): the BLOCKED state and the
timed LAST_ERROR of `tr-admin endpoints`, the decoded `tr-admin dump`, and
`tr-admin redrive`.  The real daemon, driven through build/tools/tr-admin."""
import datetime
import json
import logging
import re
import time

from test_admin import endpoint_info, ok, tr_admin
from trtest import Endpoint, Producer, Router, check, free_port, run_tests, wait_until


def parse_iso(text):
    return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc)


def table_row(router, service, endpoint):
    lines = ok(router, "endpoints", service).splitlines()
    header = lines[0]
    for line in lines[1:]:
        if line.split()[:2] == [service, endpoint]:
            return header, line
    raise AssertionError("no row %s/%s in:\n%s" % (service, endpoint, "\n".join(lines)))


def test_blocked_is_not_backoff_and_last_error_is_timed():
    ep = Endpoint().start()
    ep.refuse[2] = 10 ** 9  # answers, but refuses seqid 2
    logging.getLogger().setLevel(logging.CRITICAL)  # python thrift logs every raise with a traceback
    router = Router({"books": {"rpcs": ["log_event"], "endpoints": {"a": ep.port, "down": free_port()},
                               "on_failure": "block", "max_retries": "1"},
                     "mail": {"rpcs": ["fire"], "endpoints": {}}}).start()
    try:
        p = Producer(router.port)
        p.fire(b"mail only")  # rpc 1: not in books, so books' seqid 2 is rpc 3
        for i in range(3):
            p.log_event(b"b%d" % i)
        p.close()
        started = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=2)
        wait_until(lambda: endpoint_info(router, "books", "a")["state"] == "BLOCKED", what="a BLOCKED")
        a = endpoint_info(router, "books", "a")
        check(a["blocked_seqid"] == 2 and a["blocked_rpc_id"] == 3 and a["acked_seqid"] == 1, str(a))
        check("refuses seqid 2" in a["last_error"] and a["last_error_past"] is False, str(a))
        check(a["last_error_resolved_time"] is None and a["last_error_resolved_ms"] == 0, str(a))
        when = parse_iso(a["last_error_time"])
        check(started <= when <= datetime.datetime.now(datetime.timezone.utc), str(a))
        check(abs(a["last_error_time_ms"] / 1000 - when.timestamp()) < 1, str(a))
        # Down is BACKOFF, never BLOCKED, whatever on_failure says.
        wait_until(lambda: endpoint_info(router, "books", "down")["retries"] >= 2, what="down fails")
        down = endpoint_info(router, "books", "down")
        check(down["state"] in ("BACKOFF", "CONNECTING") and down["blocked_seqid"] == 0, str(down))
        check(down["last_error_time"] is not None and down["last_error_past"] is False, str(down))
        header, row = table_row(router, "books", "a")
        check("BLOCKED_ON" in header and header.index("LAST_ERROR") > header.index("BLOCKED_ON"), header)
        check(row.split()[2] == "BLOCKED" and "seqid=2,rpc=3" in row.split(), row)
        last = row[header.index("LAST_ERROR"):]
        check(re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ .*refuses seqid 2", last) and "resolved" not in last, row)
        _, row = table_row(router, "books", "down")
        check(row.split()[2] in ("BACKOFF", "CONNECTING") and row.split()[11] == "-", row)

        with ep.lock:
            ep.refuse[2] = 0  # the endpoint is fixed
        wait_until(lambda: endpoint_info(router, "books", "a")["acked_seqid"] == 3, what="a delivers 2 and 3")
        a = endpoint_info(router, "books", "a")
        check(a["state"] == "SENDING" and a["blocked_seqid"] == 0, str(a))
        check("refuses seqid 2" in a["last_error"] and a["last_error_past"] is True, str(a))
        check(parse_iso(a["last_error_resolved_time"]) >= parse_iso(a["last_error_time"]), str(a))
        header, row = table_row(router, "books", "a")
        check("(resolved at " in row[header.index("LAST_ERROR"):], row)
        rc, out, _ = tr_admin(None, "endpoints", "--help")
        check(rc == 0 and "BLOCKED" in out and "resolved at" in out, out)
    finally:
        logging.getLogger().setLevel(logging.WARNING)
        router.stop()
        router.cleanup()
        ep.stop()


if __name__ == "__main__":
    run_tests([test_blocked_is_not_backoff_and_last_error_is_timed])
