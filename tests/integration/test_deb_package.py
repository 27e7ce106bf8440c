"""Tests of the Debian package (packaging/CMakeLists.txt, cpack -G DEB).

test_deb_lintian builds thriftrouter_VERSION_ARCH.deb (its own build tree,
BUILD/deb-build, configured with CMAKE_INSTALL_PREFIX=/usr and Debian's
hardening flags from dpkg-buildflags) and checks its name, computed Depends,
conffiles and maintainer scripts, and that lintian reports no error or
warning (the info tags left are justified in docs/operations.md).

test_deb_in_fresh_bookworm_chroot installs it into a fresh minimal Debian 12
root (debootstrap --variant=minbase bookworm, with the package's
dependencies, cached as a tarball under /var/tmp/thriftrouter-test-cache so
that a rerun takes seconds), then: thriftrouter --check on the installed
configuration; the installed daemon started in the chroot as the
thriftrouter user (and the installed tr-admin's stop-send, which makes it
rewrite services/demo.conf) (no systemd there: the chroot shares the host's network,
so the ports and the demo endpoint are moved to free ones in the installed
files); an RPC sent by tools/examples/producer.py from the host reaches an
endpoint on the host; a stop by PID; `apt-get remove` (binaries gone,
configuration and data kept) and `apt-get purge` (both gone).  Nothing is
mounted in the chroot (nothing there needs /proc or /dev beyond what
debootstrap creates).  Skipped, with the reason, when not root or without
debootstrap, dpkg-deb or the Debian archive."""
import glob
import hashlib
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile

from trtest import BUILD, SOURCE, Endpoint, Skip, check, free_port, run_tests, sanitizer, wait_until

CACHE = "/var/tmp/thriftrouter-test-cache"
MIRROR = "http://deb.debian.org/debian"
DEB_BUILD = os.path.join(BUILD, "deb-build")


def run(cmd, timeout=600, **kw):
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    if out.returncode != 0:
        raise AssertionError("%s: exit %d\n%s%s" % (" ".join(cmd), out.returncode, out.stdout[-3000:],
                                                    out.stderr[-3000:]))
    return out.stdout


def build_deb():
    """Configures, builds and packs BUILD/deb-build; returns the .deb path."""
    if sanitizer():
        # The package is built from its own plain build tree either way:
        # the sanitizer passes of tools/test.sh would only build it again.
        raise Skip("sanitizer pass (TR_SANITIZE=%s): the package is built and tested in the plain pass"
                   % os.environ.get("TR_SANITIZE"))
    for tool in ("cpack", "dpkg-deb", "dpkg-shlibdeps", "dpkg-buildflags"):
        if shutil.which(tool) is None:
            raise Skip("%s is not installed (packages cmake, dpkg-dev)" % tool)
    env = dict(os.environ, DEB_BUILD_MAINT_OPTIONS="hardening=+all")
    for var in ("CFLAGS", "CPPFLAGS", "LDFLAGS"):
        env[var] = run(["dpkg-buildflags", "--get", var], env=env).strip()
    # Debian passes CPPFLAGS through CFLAGS in CMake builds.
    env["CFLAGS"] = env["CFLAGS"] + " " + env.pop("CPPFLAGS")
    run(["cmake", "-S", SOURCE, "-B", DEB_BUILD, "-DCMAKE_BUILD_TYPE=RelWithDebInfo", "-DTR_WERROR=ON",
         "-DTR_BUILD_TESTS=OFF", "-DCMAKE_INSTALL_PREFIX=/usr"], env=env)
    run(["cmake", "--build", DEB_BUILD, "-j2"], timeout=900, env=env)
    for old in glob.glob(os.path.join(DEB_BUILD, "thriftrouter_*.deb")):
        os.unlink(old)
    run(["cpack", "-G", "DEB"], cwd=DEB_BUILD)
    debs = glob.glob(os.path.join(DEB_BUILD, "thriftrouter_*.deb"))
    check(len(debs) == 1, "one package built: %s" % debs)
    return debs[0]


def deb_field(deb, field):
    return run(["dpkg-deb", "--field", deb, field]).strip()


def test_deb_lintian():
    deb = build_deb()
    arch = run(["dpkg", "--print-architecture"]).strip()
    with open(os.path.join(SOURCE, "CMakeLists.txt")) as f:
        version = re.search(r"project\(thriftrouter VERSION ([0-9.]+)", f.read()).group(1)
    check(os.path.basename(deb) == "thriftrouter_%s_%s.deb" % (version, arch), "package name: %s" % deb)
    depends = deb_field(deb, "Depends")
    for lib in ("libc6", "libglib2.0-0", "libthrift-c-glib0", "libxxhash0", "adduser"):
        check(lib in depends, "Depends lists %s (computed by dpkg-shlibdeps): %s" % (lib, depends))
    control = tempfile.mkdtemp(prefix="tr-deb-control-")
    try:
        run(["dpkg-deb", "--control", deb, control])
        with open(os.path.join(control, "conffiles")) as f:
            conffiles = f.read().split()
        check(conffiles == ["/etc/thriftrouter/router.conf", "/etc/thriftrouter/services/demo.conf"],
              "conffiles: %s" % conffiles)
        for script in ("postinst", "prerm", "postrm"):
            run(["sh", "-n", os.path.join(control, script)])
    finally:
        shutil.rmtree(control, ignore_errors=True)
    if shutil.which("lintian") is None:
        raise Skip("lintian is not installed (Debian package lintian); the package itself was checked")
    out = subprocess.run(["lintian", "--pedantic", "-I", "--tag-display-limit", "0", deb], capture_output=True,
                         text=True, timeout=600)
    tags = [line for line in (out.stdout + out.stderr).splitlines() if re.match(r"^[EWIPX]: ", line)]
    bad = [t for t in tags if t[0] in "EW"]
    check(not bad, "lintian errors or warnings:\n%s" % "\n".join(tags))
    justified = ("binary-has-unneeded-section", "package-supports-alternative-init-but-no-init.d-script")
    unexplained = [t for t in tags if not any(j in t for j in justified)]
    check(not unexplained, "lintian tags not justified in docs/operations.md:\n%s" % "\n".join(unexplained))


def base_root(depends):
    """A tarball of a minbase bookworm root with @depends installed (cached)."""
    names = sorted({re.split(r"[ (]", d.strip())[0] for d in depends.split(",")})
    key = hashlib.sha1(" ".join(names).encode()).hexdigest()[:12]
    tarball = os.path.join(CACHE, "bookworm-minbase-%s.tar.gz" % key)
    if os.path.exists(tarball):
        return tarball
    if shutil.which("debootstrap") is None:
        raise Skip("debootstrap is not installed (Debian package debootstrap)")
    os.makedirs(CACHE, exist_ok=True)
    root = tempfile.mkdtemp(prefix="tr-debootstrap-", dir="/var/tmp")
    try:
        out = subprocess.run(["debootstrap", "--variant=minbase", "bookworm", root, MIRROR], capture_output=True,
                             text=True, timeout=1200)
        if out.returncode != 0:
            if "Failed getting release file" in out.stdout + out.stderr or "Couldn't" in out.stderr:
                raise Skip("the Debian archive %s cannot be reached: %s" % (MIRROR, out.stderr.strip()[-300:]))
            raise AssertionError("debootstrap failed:\n%s%s" % (out.stdout[-3000:], out.stderr[-3000:]))
        run(["chroot", root, "apt-get", "install", "-y", "--no-install-recommends"] + names,
            env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
        run(["chroot", root, "apt-get", "clean"])
        partial = tarball + ".partial"
        run(["tar", "-C", root, "--numeric-owner", "-czf", partial, "."], timeout=600)
        os.rename(partial, tarball)  # a half-written cache is never used
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return tarball


def in_root(root, *cmd, **kw):
    env = dict(PATH="/usr/sbin:/usr/bin:/sbin:/bin", DEBIAN_FRONTEND="noninteractive", LANG="C.UTF-8")
    return run(["chroot", root] + list(cmd), env=env, **kw)


def set_key(path, key, value):
    with open(path) as f:
        text = f.read()
    text, n = re.subn(r"^%s = .*$" % re.escape(key), "%s = %s" % (key, value), text, flags=re.M)
    check(n == 1, "%s has one '%s = ' line" % (path, key))
    with open(path, "w") as f:
        f.write(text)


def start_installed(root, endpoint_port):
    """The installed daemon in the chroot as user thriftrouter, on free
    ports, pushing the demo service to @endpoint_port; returns (proc, port)."""
    conf = os.path.join(root, "etc/thriftrouter/router.conf")
    port, admin = free_port(), free_port()
    set_key(conf, "listen", "127.0.0.1:%d" % port)
    set_key(conf, "admin_listen", "127.0.0.1:%d" % admin)
    set_key(os.path.join(root, "etc/thriftrouter/services/demo.conf"), "port", str(endpoint_port))
    ids = in_root(root, "id", "-u", "thriftrouter").strip(), in_root(root, "id", "-g", "thriftrouter").strip()
    log = open(os.path.join(root, "var/tmp/thriftrouter.log"), "wb")
    # chroot(8) execs the daemon: proc.pid is the daemon's PID.
    proc = subprocess.Popen(["chroot", "--userspec=%s:%s" % ids, root, "/usr/sbin/thriftrouter", "-c",
                             "/etc/thriftrouter/router.conf"], stdout=log, stderr=log,
                            env=dict(PATH="/usr/sbin:/usr/bin:/sbin:/bin", LANG="C.UTF-8"))
    log.close()
    return proc, port


def installed_log(root):
    try:
        with open(os.path.join(root, "var/tmp/thriftrouter.log"), errors="replace") as f:
            return f.read()[-4000:]
    except OSError:
        return ""


def test_deb_in_fresh_bookworm_chroot():
    if os.geteuid() != 0:
        raise Skip("needs root (debootstrap, chroot, dpkg in the chroot)")
    deb = build_deb()
    tarball = base_root(deb_field(deb, "Depends"))
    root = tempfile.mkdtemp(prefix="tr-chroot-", dir="/var/tmp")
    proc = endpoint = None
    try:
        run(["tar", "-C", root, "--numeric-owner", "-xzf", tarball], timeout=600)
        # mkdtemp's 0700 (also in the tarball's "." entry) would keep the
        # thriftrouter user out of its own root.
        os.chmod(root, 0o755)
        shutil.copy(deb, os.path.join(root, "tmp", "thriftrouter.deb"))
        in_root(root, "apt-get", "install", "-y", "--no-install-recommends", "/tmp/thriftrouter.deb")

        # What the postinst made.
        passwd = in_root(root, "getent", "passwd", "thriftrouter")
        check("/usr/sbin/nologin" in passwd, "system user with no shell: %s" % passwd)
        owner = in_root(root, "stat", "-c", "%U:%G %a", "/var/lib/thriftrouter").strip()
        check(owner == "thriftrouter:thriftrouter 750", "data directory: %s" % owner)
        services = in_root(root, "stat", "-c", "%G %a", "/etc/thriftrouter/services",
                           "/etc/thriftrouter/services/demo.conf").split("\n")
        check(services[:2] == ["thriftrouter 775", "thriftrouter 664"], "services dir and file: %s" % services)
        conffiles = in_root(root, "dpkg-query", "-W", "-f", "${Conffiles}", "thriftrouter")
        check("/etc/thriftrouter/router.conf" in conffiles, "conffiles registered: %s" % conffiles)

        out = subprocess.run(["chroot", root, "thriftrouter", "--check", "-c", "/etc/thriftrouter/router.conf"],
                             capture_output=True, text=True)
        check(out.returncode == 0 and "configuration OK" in out.stderr
              and "data_dir = /var/lib/thriftrouter" in out.stdout,
              "installed --check: rc %d\n%s%s" % (out.returncode, out.stdout[-2000:], out.stderr))

        endpoint = Endpoint().start()
        proc, port = start_installed(root, endpoint.port)

        def up():
            if proc.poll() is not None:
                raise AssertionError("installed daemon exited %s:\n%s" % (proc.returncode, installed_log(root)))
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.3).close()
                return True
            except OSError:
                return False

        wait_until(up, 30, "the installed daemon to accept producers")
        producer = subprocess.run(["/usr/bin/python3", os.path.join(SOURCE, "tools", "examples", "producer.py"),
                                   "-n", "1", "--port", str(port)], capture_output=True, text=True, timeout=60,
                                  env=dict(os.environ, TR_BUILD_DIR=BUILD))
        check(producer.returncode == 0 and "stored" in producer.stdout,
              "example producer:\n%s%s" % (producer.stdout, producer.stderr))
        wait_until(lambda: endpoint.received("log_event"), 30,
                   "the RPC to reach the endpoint through the installed daemon")
        check(os.listdir(os.path.join(root, "var/lib/thriftrouter")), "the store is in /var/lib/thriftrouter")
        # The installed tr-admin; stop-send makes the daemon (user
        # thriftrouter) rewrite services/demo.conf: the postinst's group
        # permissions must allow it.
        in_root(root, "tr-admin", "-c", "/etc/thriftrouter/router.conf", "stop-send", "demo", "local")
        with open(os.path.join(root, "etc/thriftrouter/services/demo.conf")) as f:
            check(re.search(r"^stop_send = true$", f.read(), re.M), "stop-send written to services/demo.conf")
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=60)
        proc = None
        check(rc == 0 and "stopped cleanly" in installed_log(root), "clean stop, rc %s\n%s"
              % (rc, installed_log(root)))

        in_root(root, "apt-get", "remove", "-y", "thriftrouter")
        for gone in ("usr/sbin/thriftrouter", "usr/bin/tr-admin", "lib/systemd/system/thriftrouter.service",
                     "usr/share/man/man5/thriftrouter.conf.5.gz"):
            check(not os.path.exists(os.path.join(root, gone)), "removed: /%s" % gone)
        for kept in ("etc/thriftrouter/router.conf", "var/lib/thriftrouter"):
            check(os.path.exists(os.path.join(root, kept)), "kept after remove: /%s" % kept)
        in_root(root, "apt-get", "purge", "-y", "thriftrouter")
        for gone in ("etc/thriftrouter", "var/lib/thriftrouter"):
            check(not os.path.exists(os.path.join(root, gone)), "purged: /%s" % gone)
        status = subprocess.run(["chroot", root, "dpkg-query", "-W", "-f", "${Status}", "thriftrouter"],
                                capture_output=True, text=True).stdout
        check("installed" not in status or "not-installed" in status, "package state after purge: %r" % status)
    finally:
        if proc is not None:
            proc.kill()
            proc.wait()
        if endpoint is not None:
            endpoint.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    run_tests([test_deb_lintian, test_deb_in_fresh_bookworm_chroot])
