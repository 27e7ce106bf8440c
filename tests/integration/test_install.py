"""Integration tests of the installed tree (packaging/CMakeLists.txt): stage
`cmake --install` of the build into a temporary DESTDIR, check that every
file is where GNUInstallDirs and docs/operations.md say, run the installed
`thriftrouter --check` on the installed configuration, check the systemd
unit with `systemd-analyze verify`, and start the installed daemon on a
copy of the installed configuration; where systemd is PID 1, start, reload
and stop the unit with systemctl."""
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile

from trtest import BUILD, Skip, check, free_port, run_tests, wait_until


def layout():
    with open(os.path.join(BUILD, "packaging", "install-layout.json")) as f:
        return json.load(f)


def staged():
    """(destdir, layout): a fresh DESTDIR install of the build."""
    root = tempfile.mkdtemp(prefix="tr-install-")
    env = dict(os.environ, DESTDIR=root)
    out = subprocess.run(["cmake", "--install", BUILD], env=env, capture_output=True, text=True)
    check(out.returncode == 0, "cmake --install failed:\n%s%s" % (out.stdout, out.stderr))
    return root, layout()


def under(root, path):
    return os.path.join(root, path.lstrip("/"))


def test_install_tree_and_check():
    root, lay = staged()
    try:
        expect = [
            (lay["sbindir"], "thriftrouter"), (lay["bindir"], "tr-admin"),
            (lay["confdir"], "router.conf"), (lay["confdir"], "services/demo.conf"),
            (lay["datadir"], "thriftrouter/demo.thrift"), (lay["datadir"], "thriftrouter/admin.thrift"),
            (lay["docdir"], "README.md"), (lay["docdir"], "configuration.md"), (lay["docdir"], "operations.md"),
            (lay["unitdir"], "thriftrouter.service"),
            (lay["prefix"], "lib/sysusers.d/thriftrouter.conf"), (lay["prefix"], "lib/tmpfiles.d/thriftrouter.conf"),
            (lay["datadir"], "bash-completion/completions/tr-admin"),
        ]
        missing = [os.path.join(d, f) for d, f in expect if not os.path.isfile(under(root, os.path.join(d, f)))]
        check(not missing, "not installed: %s" % missing)
        for binary in (os.path.join(lay["sbindir"], "thriftrouter"), os.path.join(lay["bindir"], "tr-admin")):
            check(os.access(under(root, binary), os.X_OK), "%s is not executable" % binary)
        # The installed configuration differs from conf/router.conf in data_dir only.
        conf = under(root, os.path.join(lay["confdir"], "router.conf"))
        with open(conf) as f:
            text = f.read()
        check(re.search(r"^data_dir = %s$" % re.escape(lay["data_dir"]), text, re.M), "data_dir in\n" + text)
        out = subprocess.run([under(root, os.path.join(lay["sbindir"], "thriftrouter")), "--check", "-c", conf],
                             capture_output=True, text=True)
        check(out.returncode == 0 and "configuration OK" in out.stderr,
              "installed thriftrouter --check: rc %d\n%s%s" % (out.returncode, out.stdout, out.stderr))
        check("data_dir = %s" % lay["data_dir"] in out.stdout, "effective data_dir:\n" + out.stdout)
        check("demo" in out.stdout, "the demo service is configured:\n" + out.stdout)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_systemd_unit_verifies():
    if shutil.which("systemd-analyze") is None:
        raise Skip("systemd-analyze is not installed (package systemd)")
    root, lay = staged()
    try:
        with open(under(root, os.path.join(lay["unitdir"], "thriftrouter.service"))) as f:
            unit = f.read()
        for line in ("Type=notify", "ExecReload=/bin/kill -HUP $MAINPID", "User=thriftrouter",
                     "ProtectSystem=strict", "NoNewPrivileges=yes", "LimitNOFILE=65536",
                     "ReadWritePaths=%s %s/services" % (lay["data_dir"], lay["confdir"]),
                     "ExecStart=%s/thriftrouter -c %s/router.conf" % (lay["sbindir"], lay["confdir"])):
            check(line in unit.splitlines(), "unit lacks %r:\n%s" % (line, unit))
        # verify checks that ExecStart exists: point it at the staged binary.
        test_unit = os.path.join(root, "thriftrouter.service")
        with open(test_unit, "w") as f:
            f.write(unit.replace("ExecStart=%s/" % lay["sbindir"], "ExecStart=%s/" % under(root, lay["sbindir"])))
        out = subprocess.run(["systemd-analyze", "verify", "--man=no", test_unit], capture_output=True, text=True)
        check(out.returncode == 0 and out.stderr.strip() == "",
              "systemd-analyze verify: rc %d\n%s%s" % (out.returncode, out.stdout, out.stderr))
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_installed_daemon_starts_from_installed_config():
    """The installed binaries on a copy of the installed configuration (data
    in a temp dir, free ports): the node starts and the installed tr-admin
    sees the demo service."""
    root, lay = staged()
    proc = None
    try:
        conf_dir = os.path.join(root, "node")
        shutil.copytree(under(root, lay["confdir"]), conf_dir)
        port, admin = free_port(), free_port()
        conf = os.path.join(conf_dir, "router.conf")
        with open(conf) as f:
            text = f.read()
        text = re.sub(r"^data_dir = .*$", "data_dir = ./data", text, flags=re.M)
        text = re.sub(r"^listen = .*$", "listen = 127.0.0.1:%d" % port, text, flags=re.M)
        text = re.sub(r"^admin_listen = .*$", "admin_listen = 127.0.0.1:%d" % admin, text, flags=re.M)
        with open(conf, "w") as f:
            f.write(text)
        log = open(os.path.join(root, "router.log"), "wb")
        proc = subprocess.Popen([under(root, os.path.join(lay["sbindir"], "thriftrouter")), "-c", conf],
                                stdout=log, stderr=log)
        log.close()
        tr_admin = [under(root, os.path.join(lay["bindir"], "tr-admin")), "-c", conf]

        def listed():
            if proc.poll() is not None:
                raise AssertionError("installed thriftrouter exited %s" % proc.returncode)
            out = subprocess.run(tr_admin + ["--json", "services"], capture_output=True, text=True)
            return out.returncode == 0 and '"demo"' in out.stdout

        wait_until(listed, 20, "the installed tr-admin to list the demo service")
        proc.terminate()
        check(proc.wait(timeout=30) == 0, "clean stop")
        proc = None
    finally:
        if proc is not None:
            proc.kill()
            proc.wait()
        shutil.rmtree(root, ignore_errors=True)


def systemctl_show(unit, prop):
    return subprocess.run(["systemctl", "show", "-p", prop, "--value", unit], capture_output=True,
                          text=True).stdout.strip()


def test_systemctl_start_reload_stop():
    """The installed unit under the machine's systemd: `systemctl start`
    returns once READY=1 came (both ports accept), STATUS= shows in
    systemctl, `systemctl reload` ends with the outcome in it, the journal
    has the daemon's lines with their GLib domain, `systemctl stop` is
    clean.  A copy of the unit runs the staged binary on a staged
    configuration (its own unit name, free ports, every path under one
    directory); User= is dropped (the Debian package test covers the
    thriftrouter user), the hardening stays."""
    if not os.path.isdir("/run/systemd/system") or os.geteuid() != 0 or shutil.which("systemctl") is None:
        raise Skip("systemd is not PID 1 here (no /run/systemd/system), or not root: the unit can only be "
                   "checked offline (test_systemd_unit_verifies)")
    # Not under /tmp: the unit's PrivateTmp= would hide it from the service.
    top = tempfile.mkdtemp(prefix="thriftrouter-systemd-test-", dir="/var/lib")
    unit = "thriftrouter-test-%d.service" % os.getpid()
    unit_path = os.path.join("/run/systemd/system", unit)
    try:
        os.chmod(top, 0o755)
        run_env = dict(os.environ, DESTDIR=os.path.join(top, "root"))
        subprocess.run(["cmake", "--install", BUILD], env=run_env, capture_output=True, check=True)
        lay = layout()
        root = os.path.join(top, "root")
        conf_dir = os.path.join(top, "conf")
        shutil.copytree(under(root, lay["confdir"]), conf_dir)
        data_dir = os.path.join(top, "data")
        port, admin = free_port(), free_port()
        conf = os.path.join(conf_dir, "router.conf")
        with open(conf) as f:
            text = f.read()
        text = re.sub(r"^data_dir = .*$", "data_dir = " + data_dir, text, flags=re.M)
        text = re.sub(r"^listen = .*$", "listen = 127.0.0.1:%d" % port, text, flags=re.M)
        text = re.sub(r"^admin_listen = .*$", "admin_listen = 127.0.0.1:%d" % admin, text, flags=re.M)
        with open(conf, "w") as f:
            f.write(text)
        with open(under(root, os.path.join(lay["unitdir"], "thriftrouter.service"))) as f:
            lines = f.read().splitlines()
        sbin = under(root, lay["sbindir"])
        out = []
        for line in lines:
            if line.startswith(("User=", "Group=")):
                continue
            if line.startswith("ExecStart="):
                line = "ExecStart=%s/thriftrouter -c %s" % (sbin, conf)
            elif line.startswith("ReadWritePaths="):
                line = "ReadWritePaths=%s %s/services" % (data_dir, conf_dir)
            out.append(line)
        os.makedirs(data_dir)
        with open(unit_path, "w") as f:
            f.write("\n".join(out) + "\n")
        subprocess.run(["systemctl", "daemon-reload"], check=True)
        start = subprocess.run(["systemctl", "start", unit], capture_output=True, text=True, timeout=120)
        check(start.returncode == 0, "systemctl start: %s\n%s" % (start.stderr, subprocess.run(
            ["journalctl", "-u", unit, "-n", "30", "--no-pager"], capture_output=True, text=True).stdout))
        check(systemctl_show(unit, "ActiveState") == "active", "active after start")
        for p in (port, admin):
            socket.create_connection(("127.0.0.1", p), timeout=2).close()  # READY=1 came after both listened
        check("127.0.0.1:%d" % port in systemctl_show(unit, "StatusText"),
              "STATUS= in systemctl: %r" % systemctl_show(unit, "StatusText"))
        reload = subprocess.run(["systemctl", "reload", unit], capture_output=True, text=True, timeout=120)
        check(reload.returncode == 0, "systemctl reload: %s" % reload.stderr)
        wait_until(lambda: "reload applied" in systemctl_show(unit, "StatusText"), 30, "the reload's STATUS=")
        journal = subprocess.run(["journalctl", "-u", unit, "-o", "verbose", "--no-pager"], capture_output=True,
                                 text=True).stdout
        check("GLIB_DOMAIN=thriftrouter" in journal and "PRIORITY=5" in journal,
              "journalctl -o verbose shows the domain and priority:\n" + journal[-3000:])
        stop = subprocess.run(["systemctl", "stop", unit], capture_output=True, text=True, timeout=120)
        check(stop.returncode == 0 and systemctl_show(unit, "ActiveState") == "inactive",
              "systemctl stop: %s" % stop.stderr)
        check(systemctl_show(unit, "Result") == "success", "clean stop: %s" % systemctl_show(unit, "Result"))
    finally:
        subprocess.run(["systemctl", "stop", unit], capture_output=True)
        if os.path.exists(unit_path):
            os.unlink(unit_path)
            subprocess.run(["systemctl", "daemon-reload"], capture_output=True)
        shutil.rmtree(top, ignore_errors=True)


if __name__ == "__main__":
    run_tests([test_install_tree_and_check, test_systemd_unit_verifies,
               test_installed_daemon_starts_from_installed_config, test_systemctl_start_reload_stop])
