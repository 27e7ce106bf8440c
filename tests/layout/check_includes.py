#!/usr/bin/env python3
"""The include rules of the source tree (docs/layout.md), checked on every
test run so that the layers cannot drift:

  storage/          includes only storage/ headers (no Thrift, no sockets,
                    nothing of router/)
  router/net/       includes storage/ and net/ only: the bottom of router/,
                    never a subsystem built on top of it
  router/core/      includes storage/, core/ and net/
  router/ingress/,  include storage/, core/, net/ and their own folder; never
  router/push/      each other (they meet in tr_daemon)
  router/repl/      includes storage/, core/, net/ and its own folder; never
                    push/ or ingress/ (they meet in tr_daemon)
  router/admin/     may include ingress/ and push/ (it steers them)
  router/metrics/   may read storage/, core/, net/, ingress/ and push/ (the
                    /metrics endpoint); nothing but the top includes metrics/
  router/ (top)     tr_daemon.c and main.c: the wiring, anything

Usage: check_includes.py SOURCE_DIR.  Prints every violation with file and
line; exits 1 if there is one."""
import os
import re
import sys

ALLOWED = {
    "storage": {"storage"},
    "router/net": {"storage", "router/net"},
    "router/core": {"storage", "router/core", "router/net"},
    "router/ingress": {"storage", "router/core", "router/net", "router/ingress"},
    "router/push": {"storage", "router/core", "router/net", "router/push"},
    "router/repl": {"storage", "router/core", "router/net", "router/repl"},
    "router/admin": {"storage", "router/core", "router/net", "router/ingress", "router/push", "router/admin"},
    "router/metrics": {"storage", "router/core", "router/net", "router/ingress", "router/push", "router/metrics"},
}
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"')


def main():
    top = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "../.."))
    home = {}  # header name -> folder relative to top
    sources = []
    for folder in ["storage", "router"]:
        for dirpath, _, files in os.walk(os.path.join(top, folder)):
            rel = os.path.relpath(dirpath, top)
            for f in files:
                if f.endswith(".h"):
                    if f in home:
                        print("%s/%s: header name also used in %s" % (rel, f, home[f]))
                        return 1
                    home[f] = rel
                if f.endswith((".c", ".h")):
                    sources.append((rel, f))
    bad = 0
    for rel, f in sorted(sources):
        allowed = ALLOWED.get(rel)
        if allowed is None:
            if rel != "router":
                print("%s/%s: folder %s has no include rule in %s" % (rel, f, rel, __file__))
                bad += 1
            continue
        with open(os.path.join(top, rel, f)) as src:
            for lineno, line in enumerate(src, 1):
                m = INCLUDE.match(line)
                if not m:
                    continue
                name = os.path.basename(m.group(1))
                where = home.get(name)
                if where is None:
                    continue  # generated Thrift code, system headers in quotes
                if where not in allowed:
                    print("%s/%s:%d: includes %s from %s/ (allowed: %s)"
                          % (rel, f, lineno, name, where, ", ".join(sorted(allowed))))
                    bad += 1
    print("check_includes: %d files, %d violations" % (len(sources), bad))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
