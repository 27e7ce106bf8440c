#!/usr/bin/env python3
"""Fills the sections of a man page source (docs/man/*.md) that come from a
program's own --help, so the page cannot drift from the program: every line

    <!-- --help: SECTION -->

is replaced by SECTION of `PROGRAM --help` (GOption's "Commands:",
"Application Options:", ...) as a markdown definition list, one item per
entry, continuation lines joined.  A section the help text lacks is an
error (the page would silently lose it).

Usage: help_to_md.py PROGRAM SOURCE.md OUTPUT.md  (run at build time by
docs/man/CMakeLists.txt, before pandoc)."""
import os
import re
import subprocess
import sys

MARKER = re.compile(r"^<!-- --help: (.+) -->$")
ENTRY = re.compile(r"^ {2}(\S.*?)(?: {2,}(\S.*))?$")
MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]<>#|])")


def sections(help_text):
    """{section title: [(term, description)]}"""
    found, current = {}, None
    for line in help_text.splitlines():
        if line and not line.startswith(" ") and line.endswith(":"):
            current = found.setdefault(line[:-1], [])
        elif current is not None and line.strip():
            m = ENTRY.match(line)
            if m:
                current.append([m.group(1), m.group(2) or ""])
            elif current:
                current[-1][1] = (current[-1][1] + " " + line.strip()).strip()
        elif not line.strip():
            current = None
    return found


def as_markdown(entries):
    out = []
    for term, description in entries:
        out.append("**%s**\n:   %s\n" % (MARKDOWN_SPECIAL.sub(r"\\\1", term),
                                         MARKDOWN_SPECIAL.sub(r"\\\1", description)))
    return "\n".join(out)


def main():
    program, source, output = sys.argv[1:4]
    env = dict(os.environ, LC_ALL="C.UTF-8", LANG="C.UTF-8")
    help_text = subprocess.run([program, "--help"], capture_output=True, text=True, env=env, check=True).stdout
    found = sections(help_text)
    lines = []
    with open(source) as f:
        for line in f:
            m = MARKER.match(line.rstrip("\n"))
            if not m:
                lines.append(line)
                continue
            if m.group(1) not in found:
                sys.exit("%s: section '%s' is not in '%s --help' (it has: %s)"
                         % (source, m.group(1), program, ", ".join(found)))
            lines.append(as_markdown(found[m.group(1)]))
    with open(output, "w") as f:
        f.write("".join(lines))


if __name__ == "__main__":
    main()
