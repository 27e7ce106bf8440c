"""Integration tests of what an operator sees of a stuck endpoint and of a
stored RPC (issue 15, "Operator experience"): the BLOCKED state and the
timed LAST_ERROR of `tr-admin endpoints`, the decoded `tr-admin dump`, and
`tr-admin redrive`.  The real daemon, driven through build/tools/tr-admin."""
import datetime
import json
import logging
import os
import re
import struct

from test_admin import endpoint_info, ok, tr_admin
from trtest import SOURCE, Endpoint, Producer, Router, check, free_port, raw_call, run_tests, wait_until


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
        check(row.split()[2] in ("BACKOFF", "CONNECTING") and row.split()[12] == "-", row)

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


# ---- dump: decoded arguments ----

def t_field(ftype, fid, value):
    return struct.pack(">bh", ftype, fid) + value


def t_str(b):
    return struct.pack(">i", len(b)) + b


T_BOOL, T_BYTE, T_DOUBLE, T_I16, T_I32, T_I64, T_STRING, T_STRUCT, T_MAP, T_SET, T_LIST = \
    2, 3, 4, 6, 8, 10, 11, 12, 13, 14, 15


def nested_args():
    """log_event's arguments as a hand-made binary-protocol struct: more
    than demo.thrift declares, as another producer's IDL might send."""
    inner = (t_field(T_I32, 1, struct.pack(">i", -7))
             + t_field(T_LIST, 2, struct.pack(">bi", T_STRING, 2) + t_str(b"a") + t_str(b"b\n\"q\""))
             + b"\x00")
    return (t_field(T_STRING, 1, t_str(b"hello"))
            + t_field(T_STRUCT, 2, inner)
            + t_field(T_MAP, 3, struct.pack(">bbi", T_STRING, T_I64, 1) + t_str(b"k") + struct.pack(">q", 9))
            + t_field(T_SET, 4, struct.pack(">bi", T_I16, 2) + struct.pack(">hh", 1, -2))
            + t_field(T_DOUBLE, 5, struct.pack(">d", 0.25))
            + t_field(T_BOOL, 6, b"\x01")
            + t_field(T_STRING, 7, t_str(b"\x00\xff\x10"))
            + t_field(T_I32, 8, struct.pack(">i", 2))
            + b"\x00")


def framed_call(name, seqid, body):
    message = struct.pack(">Ii", 0x80010001, len(name)) + name + struct.pack(">i", seqid) + body
    return struct.pack(">i", len(message)) + message


IDL = """/* a producer's view of EventLog, richer than demo.thrift */
namespace py x
enum Colour { RED = 1, GREEN, BLUE }
struct Inner {
  1: i32 number
  2: list<string> words
}
service EventLog {
  void log_event(1: binary data, 2: Inner inner, 3: map<string, i64> counts, 4: set<i16> small,
                 5: double ratio, 6: bool flag, 7: binary raw, 8: Colour colour)
}
"""


def test_dump_by_service_seqid_decodes_arguments_with_and_without_idl():
    router = Router({"books": {"rpcs": ["log_event"], "endpoints": {}},
                     "mail": {"rpcs": ["fire"], "endpoints": {}}}).start()
    try:
        p = Producer(router.port)
        p.fire(b"mail only")  # rpc 1
        p.log_event(b"first")  # rpc 2 = books seqid 1
        p.close()
        reply = raw_call(router.port, framed_call(b"log_event", 5, nested_args()))  # rpc 3 = books seqid 2
        check(len(reply) > 4, "no answer to the raw call: %r" % reply)
        idl = os.path.join(router.tmp, "producer.thrift")
        with open(idl, "w") as f:
            f.write(IDL)

        d = json.loads(ok(router, "--json", "dump", "books", "2"))
        check(d["service"] == "books" and d["seqid"] == 2 and d["rpc_id"] == 3, str(d))
        check(d["name"] == "log_event" and d["type"] == "CALL" and "args_error" not in d, str(d))
        check(bytes.fromhex(d["hex"]).endswith(nested_args()), d["hex"])
        args = {a["id"]: a for a in d["args"]}
        check(args[1] == {"id": 1, "type": "string", "value": "hello", "hex": b"hello".hex()}, str(args[1]))
        inner = args[2]["fields"]
        check(inner[0] == {"id": 1, "type": "i32", "value": -7}, str(inner))
        check([e["value"] for e in inner[1]["elements"]] == ["a", 'b\n"q"'] and inner[1]["type"] == "list<string>",
              str(inner))
        check(args[3]["entries"] == [{"key": {"type": "string", "value": "k", "hex": "6b"},
                                      "value": {"type": "i64", "value": 9}}], str(args[3]))
        check([e["value"] for e in args[4]["elements"]] == [1, -2] and args[4]["type"] == "set<i16>", str(args[4]))
        check(args[5]["value"] == 0.25 and args[6]["value"] is True, str(args))
        check("value" not in args[7] and args[7]["hex"] == "00ff10", str(args[7]))
        check("name" not in args[1], "names without --idl: " + str(args[1]))

        text = ok(router, "dump", "books", "2")
        check(re.search(r"^service\s+books$", text, re.M) and re.search(r"^seqid\s+2$", text, re.M)
              and re.search(r"^rpc_id\s+3$", text, re.M), text)
        for line in ['  1: string = "hello" (5 bytes)', "  2: struct", "    1: i32 = -7", "    2: list<string> (2)",
                     '      [0] string = "a" (1 byte)', r'      [1] string = "b\n\"q\"" (5 bytes)',
                     "  3: map<string,i64> (1)", '    ["k"] i64 = 9', "  4: set<i16> (2)",
                     "    [1] i16 = -2", "  5: double = 0.25", "  6: bool = true", "  7: string = 0x00ff10 (3 bytes)"]:
            check(line in text.splitlines(), "no line %r in:\n%s" % (line, text))
        check("00000000 " not in text, "hex without --hex:\n" + text)
        check("00000000 " in ok(router, "dump", "books", "2", "--hex"), "--hex shows no hex dump")

        named = ok(router, "dump", "books", "2", "--idl", idl)
        for line in ["args     EventLog.log_event", '  1 data: binary = "hello" (5 bytes)', "  2 inner: Inner",
                     "    1 number: i32 = -7", "    2 words: list<string> (2)", "  3 counts: map<string,i64> (1)",
                     "  8 colour: Colour = 2 (GREEN)"]:
            check(line in named.splitlines(), "no line %r in:\n%s" % (line, named))
        d = json.loads(ok(router, "--json", "dump", "books", "2", "--idl", idl))
        args = {a["id"]: a for a in d["args"]}
        check(d["args_declared_as"] == "EventLog.log_event" and args[2]["name"] == "inner", str(d))
        check(args[2]["fields"][1]["name"] == "words" and args[8]["enum"] == "GREEN", str(args))
        # The project's own IDL names field 1 and says nothing of the rest.
        demo = ok(router, "dump", "books", "1", "--idl", os.path.join(SOURCE, "thrift", "demo.thrift"))
        check('  1 data: binary = "first" (5 bytes)' in demo.splitlines(), demo)
        other = ok(router, "dump", "books", "2", "--idl", os.path.join(SOURCE, "thrift", "demo.thrift"))
        check("  2: struct  (field 2 is not in EventLog.log_event)" in other.splitlines(), other)
        # By rpc id as before: no service line.
        check("service" not in ok(router, "dump", "3") and "rpc_id   3" in ok(router, "dump", "3"), "dump 3")

        bad = os.path.join(router.tmp, "bad.thrift")
        with open(bad, "w") as f:
            f.write("namespace py x\n\ninclude \"shared.thrift\"\n")
        for args, code, text in [
            (("dump", "books", "9"), 1, "books has no seqid 9 stored (stored: 1..2)"),
            (("dump", "nope", "1"), 1, "no service 'nope'"),
            (("dump", "books", "x"), 2, "'x' is not a seqid"),
            (("dump", "books", "1", "--idl", bad), 2, "bad.thrift:3: 'include' is not supported"),
            (("dump", "books", "1", "--idl", bad + ".missing"), 2, "bad.thrift.missing"),
            (("status", "--hex"), 2, "--idl and --hex are options of dump"),
        ]:
            rc, out, err = tr_admin(router, *args)
            check(rc == code and text in err, "tr-admin %s: exit %d (want %d), stderr %r" % (args, rc, code, err))
        rc, out, _ = tr_admin(None, "dump", "--help")
        check(rc == 0 and "SERVICE SEQID" in out and "--idl" in out, out)
    finally:
        router.stop()
        router.cleanup()


# ---- redrive ----

def test_redrive_sends_dead_letters_again_as_new_seqids_once():
    a, b = Endpoint().start(), Endpoint().start()
    a.refuse[2] = a.refuse[3] = 10 ** 9  # a gives up seqids 2 and 3; b takes everything
    logging.getLogger().setLevel(logging.CRITICAL)  # python thrift logs every raise with a traceback
    router = Router({"books": {"rpcs": ["log_event"], "endpoints": {"a": a.port, "b": b.port},
                               "on_failure": "skip", "max_retries": "1"},
                     "mail": {"rpcs": ["fire"], "endpoints": {}}}).start()
    try:
        rc, out, err = tr_admin(router, "redrive", "books")
        check(rc == 1 and "books has no dead letter 0" in err, "redrive with none: %d %r" % (rc, err))
        p = Producer(router.port)
        p.fire(b"mail only")  # rpc 1
        for i in range(4):
            p.log_event(b"b%d" % i)  # books seqid 1..4 = rpc 2..5
        p.close()

        def letters():
            return json.loads(ok(router, "--json", "dead-letters", "books"))

        wait_until(lambda: len(letters()) == 2 and endpoint_info(router, "books", "a")["acked_seqid"] == 4,
                   what="seqids 2 and 3 dead letters of a")
        check([(d["seqid"], d["rpc_id"], d["redriven_rpc_id"]) for d in letters()] == [(2, 3, 0), (3, 4, 0)],
              str(letters()))
        with a.lock:
            a.refuse.clear()  # a is fixed

        r = json.loads(ok(router, "--json", "redrive", "books"))
        check(r["ok"] and r["sent"] == 2 and r["left_alone"] == 0, str(r))
        check([(d["index"], d["seqid"], d["rpc_id"], d["new_rpc_id"], d["new_seqid"]) for d in r["dead_letters"]]
              == [(0, 2, 3, 6, 5), (1, 3, 4, 7, 6)], str(r))
        # Both endpoints get the copies after what they had, seqids consecutive.
        wait_until(lambda: endpoint_info(router, "books", "a")["acked_seqid"] == 6, what="a acks the copies")
        wait_until(lambda: endpoint_info(router, "books", "b")["acked_seqid"] == 6, what="b acks the copies")
        check(a.payloads() == [(1, b"b0"), (4, b"b3"), (5, b"b1"), (6, b"b2")], str(a.received()))
        b.check_sequence([b"b0", b"b1", b"b2", b"b3", b"b1", b"b2"])
        check([d["redriven_rpc_id"] for d in letters()] == [6, 7], str(letters()))
        lines = ok(router, "dead-letters", "books").splitlines()
        check(lines[0].split()[:4] == ["INDEX", "SEQID", "RPC_ID", "REDRIVEN_AS"] and lines[1].split()[3] == "6",
              "\n".join(lines))
        d = json.loads(ok(router, "--json", "dump", "books", "5"))
        check(d["rpc_id"] == 6 and d["args"][0]["value"] == "b1", str(d))

        # Not twice by accident: left alone, nothing committed.
        text = ok(router, "redrive", "books")
        check("books: nothing sent again; 2 left alone" in text and "--force" in text, text)
        check("left alone: redriven before as rpc 6" in text, text)
        check(json.loads(ok(router, "--json", "services"))[0]["head_seqid"] == 6, "a copy was committed")
        # --force, one index.
        r = json.loads(ok(router, "--json", "redrive", "books", "1", "1", "--force"))
        check([(d["index"], d["new_seqid"]) for d in r["dead_letters"]] == [(1, 7)], str(r))
        wait_until(lambda: endpoint_info(router, "books", "a")["acked_seqid"] == 7, what="a acks the forced copy")
        check(a.received()[-1][1:] == (7, b"b2"), str(a.received()))
        check(letters()[1]["redriven_rpc_id"] == 8, str(letters()))

        for args, code, text in [
            (("redrive", "books", "5"), 1, "books has no dead letter 5"),
            (("redrive", "books", "0", "3"), 1, "books has no dead letter 3 (the last is 1)"),
            (("redrive", "books", "1", "0"), 1, "FROM <= TO"),
            (("redrive", "nope"), 1, "no service 'nope'"),
            (("redrive", "books", "x"), 2, "'x' is not a dead-letter index"),
            (("redrive",), 2, "usage"),
            (("status", "--force"), 2, "--force is an option of redrive"),
        ]:
            rc, out, err = tr_admin(router, *args)
            check(rc == code and text in err, "tr-admin %s: exit %d (want %d), stderr %r" % (args, rc, code, err))
        rc, out, _ = tr_admin(router, "--json", "redrive", "books", "9")
        check(rc == 1 and json.loads(out)["code"] == 3, out)
        rc, out, _ = tr_admin(None, "redrive", "--help")
        check(rc == 0 and "Usage: tr-admin [OPTIONS] redrive SERVICE [FROM [TO]]" in out, out)

        # The marks are durable: after a restart nothing is sent again.
        check(router.stop() == 0, "unclean stop")
        router.start()
        r = json.loads(ok(router, "--json", "redrive", "books"))
        check(r["sent"] == 0 and r["left_alone"] == 2, str(r))
    finally:
        logging.getLogger().setLevel(logging.WARNING)
        router.stop()
        router.cleanup()
        a.stop()
        b.stop()


if __name__ == "__main__":
    run_tests([test_blocked_is_not_backoff_and_last_error_is_timed,
               test_dump_by_service_seqid_decodes_arguments_with_and_without_idl,
               test_redrive_sends_dead_letters_again_as_new_seqids_once])
