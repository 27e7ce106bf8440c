"""Tests of tr-admin's bash completion (packaging/tr-admin.bash-completion):
commands come from tr-admin --help, SERVICE arguments from the running
node's `tr-admin --json services`, ENDPOINT arguments from `--json
endpoints SERVICE`, with the -a/-c options already on the line; with and
without Debian's bash-completion framework loaded."""
import os
import shlex
import shutil
import subprocess

from trtest import BUILD, SOURCE, Router, Skip, check, run_tests

SCRIPT = os.path.join(SOURCE, "packaging", "tr-admin.bash-completion")
TR_ADMIN = os.path.join(BUILD, "tools", "tr-admin")
FRAMEWORK = "/usr/share/bash-completion/bash_completion"


def complete(words, framework=False):
    """The completions bash offers for the command line @words (the last
    word is the one being typed), as a sorted list."""
    setup = ". %s\n" % shlex.quote(FRAMEWORK) if framework else ""
    script = setup + (". %s\n" % shlex.quote(SCRIPT)) + (
        "COMP_WORDS=(%s)\nCOMP_CWORD=%d\nCOMP_LINE=%s\nCOMP_POINT=${#COMP_LINE}\n"
        "_tr_admin\nprintf '%%s\\n' \"${COMPREPLY[@]}\"\n"
        % (" ".join(shlex.quote(w) for w in words), len(words) - 1, shlex.quote(" ".join(words))))
    out = subprocess.run(["bash", "--norc", "--noprofile", "-c", script], capture_output=True, text=True, timeout=30)
    check(out.returncode == 0, "bash: %s" % out.stderr)
    return sorted(line for line in out.stdout.splitlines() if line)


def modes():
    found = [False]
    if os.path.exists(FRAMEWORK):
        found.append(True)
    return found


def test_commands_from_help():
    if shutil.which("bash") is None:
        raise Skip("bash is not installed")
    for framework in modes():
        all_commands = complete([TR_ADMIN, ""], framework)
        for command in ("status", "services", "endpoints", "stop-send", "start-send", "dead-letters", "reload"):
            check(command in all_commands, "%s offered (framework %s): %s" % (command, framework, all_commands))
        check(complete([TR_ADMIN, "st"], framework) == ["start-send", "status", "stop-send"],
              "prefix st: %s" % complete([TR_ADMIN, "st"], framework))
        check("--json" in complete([TR_ADMIN, "--js"], framework), "options complete")


def test_services_and_endpoints_from_the_node():
    services = {"books": {"rpcs": ["log_event"], "endpoints": {"shelf": (9, "true"), "shop": (9, "true")}},
                "bank": {"rpcs": ["fire"], "endpoints": {"vault": (9, "true")}}}
    router = Router(services).start()
    try:
        address = "127.0.0.1:%d" % router.admin_port
        for framework in modes():
            got = complete([TR_ADMIN, "-a", address, "stop-send", ""], framework)
            check(got == ["bank", "books"], "services for stop-send (framework %s): %s" % (framework, got))
            got = complete([TR_ADMIN, "-a", address, "stop-send", "bo"], framework)
            check(got == ["books"], "service prefix: %s" % got)
            got = complete([TR_ADMIN, "-a", address, "stop-send", "books", ""], framework)
            check(got == ["shelf", "shop"], "endpoints of books: %s" % got)
            got = complete([TR_ADMIN, "--json", "-a", address, "endpoints", "ba"], framework)
            check(got == ["bank"], "endpoints [SERVICE]: %s" % got)
            got = complete([TR_ADMIN, "-a", address, "stop-send", "books", "shelf", ""], framework)
            check(got == [], "nothing after ENDPOINT: %s" % got)
            # -c: the address comes from the router configuration.
            got = complete([TR_ADMIN, "-c", os.path.join(router.tmp, "router.conf"), "skip", "bank", ""], framework)
            check(got == ["vault"], "endpoints with -c: %s" % got)
    finally:
        router.stop()
        router.cleanup()


if __name__ == "__main__":
    run_tests([test_commands_from_help, test_services_and_endpoints_from_the_node])
