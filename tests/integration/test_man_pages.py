"""Tests of the man pages generated at build time (docs/man/CMakeLists.txt):
each renders with `man --warnings -l` without a single warning at 80
columns, thriftrouter.conf(5) lists every key of docs/configuration.md's
tables (it is generated from that file), tr-admin(1) and thriftrouter(8)
list every command and option of their program's --help, and the pages
are installed gzip'ed under MANDIR."""
import gzip
import json
import os
import re
import shutil
import subprocess
import tempfile

from trtest import BUILD, DAEMON, SOURCE, Skip, check, run_tests

TR_ADMIN = os.path.join(BUILD, "tools", "tr-admin")


def pages():
    with open(os.path.join(BUILD, "packaging", "install-layout.json")) as f:
        listed = json.load(f)["man_pages"]
    if not listed:
        raise Skip("the man pages were not built: pandoc is not installed (Debian package pandoc; "
                   "cmake says 'man pages: skipped')")
    if shutil.which("man") is None:
        raise Skip("man is not installed (Debian package man-db)")
    return {os.path.basename(p): p for p in listed.split(";")}


def render(path):
    """(text, warnings) of `man -l PATH` at 80 columns."""
    env = dict(os.environ, MANWIDTH="80", LANG="C.UTF-8", LC_ALL="C.UTF-8", MAN_KEEP_FORMATTING="")
    out = subprocess.run(["man", "--warnings", "-l", path], capture_output=True, text=True, env=env)
    check(out.returncode == 0, "man -l %s: exit %d\n%s" % (path, out.returncode, out.stderr))
    text = re.sub(r".\x08", "", out.stdout)  # overstrike bold/underline
    return text, out.stderr


def help_terms(program):
    """The first word of every entry of PROGRAM --help (commands and long options)."""
    text = subprocess.run([program, "--help"], capture_output=True, text=True, check=True).stdout
    terms = set()
    for line in text.splitlines():
        m = re.match(r"^  (?:-\w, )?(--[\w-]+|[a-z][\w-]*)", line)
        if m:
            terms.add(m.group(1))
    return terms


def test_pages_render_without_warnings():
    for name, path in sorted(pages().items()):
        text, warnings = render(path)
        check(warnings.strip() == "", "%s: man --warnings:\n%s" % (name, warnings))
        check("NAME" in text and len(text.splitlines()) > 30, "%s renders to a page:\n%s" % (name, text[:500]))


def test_conf_page_has_every_documented_key():
    text, _ = render(pages()["thriftrouter.conf.5"])
    with open(os.path.join(SOURCE, "docs", "configuration.md")) as f:
        keys = set(re.findall(r"^\| `([a-z_]+)` \|", f.read(), re.M))
    check(len(keys) > 20, "keys found in docs/configuration.md: %s" % sorted(keys))
    rendered = set(re.findall(r"^       ([a-z_]+)\s*$|^       ([a-z_]+) ", text, re.M))
    rendered = {a or b for a, b in rendered}
    missing = sorted(keys - rendered)
    check(not missing, "keys of docs/configuration.md not listed as terms in thriftrouter.conf(5): %s" % missing)


def test_program_pages_have_every_help_entry():
    found = pages()
    for page, program in (("tr-admin.1", TR_ADMIN), ("thriftrouter.8", DAEMON)):
        text, _ = render(found[page])
        missing = sorted(t for t in help_terms(program) if t not in text)
        check(not missing, "%s lacks entries of %s --help: %s" % (page, os.path.basename(program), missing))


def test_pages_installed_compressed():
    pages()
    root = tempfile.mkdtemp(prefix="tr-man-")
    try:
        out = subprocess.run(["cmake", "--install", BUILD], env=dict(os.environ, DESTDIR=root),
                             capture_output=True, text=True)
        check(out.returncode == 0, "cmake --install:\n" + out.stdout + out.stderr)
        with open(os.path.join(BUILD, "packaging", "install-layout.json")) as f:
            mandir = json.load(f)["mandir"]
        for section, name in (("8", "thriftrouter.8"), ("1", "tr-admin.1"), ("5", "thriftrouter.conf.5")):
            path = os.path.join(root, mandir.lstrip("/"), "man" + section, name + ".gz")
            check(os.path.isfile(path), "not installed: %s" % path)
            with gzip.open(path, "rt") as f:
                check(f.read().startswith(".\\\""), "%s is a gzip'ed man page" % path)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    run_tests([test_pages_render_without_warnings, test_conf_page_has_every_documented_key,
               test_program_pages_have_every_help_entry, test_pages_installed_compressed])
