"""Stands in for journald so that test_systemd_notify.py can check the
fields the daemon sends to the journal on a machine without journald.

Run as root inside a private mount namespace (unshare --mount): mounts a
tmpfs on /run (hiding the host's, in this namespace only), binds the
journal's two sockets there, /run/systemd/journal/stdout (a stream, which
GLib recognises as "stderr is the journal") and /run/systemd/journal/socket
(datagrams of the native protocol, which g_log_writer_journald() sends),
starts the daemon with its stderr connected to the first, SIGTERMs it once
it has logged that it accepts producers and an entry of each log DOMAIN
named (or after 30 s), and prints every entry received as one
JSON list of {FIELD: value} objects: what `journalctl -o verbose` would
show, without the fields journald adds itself (_PID, _COMM, ...).

Usage: journal_capture.py DAEMON ROUTER_CONF [DOMAIN...]"""
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import time


def parse(datagram):
    """The native journal protocol: KEY=value\\n, or KEY\\n + le64 size + value + \\n."""
    fields, pos = {}, 0
    while pos < len(datagram):
        end = datagram.index(b"\n", pos)
        line = datagram[pos:end]
        if b"=" in line:
            key, value = line.split(b"=", 1)
            pos = end + 1
        else:
            key = line
            (size,) = struct.unpack_from("<Q", datagram, end + 1)
            value = datagram[end + 9:end + 9 + size]
            pos = end + 9 + size + 1
        fields[key.decode()] = value.decode(errors="replace")
    return fields


def main():
    daemon, conf = sys.argv[1:3]
    waiting_for = set(sys.argv[3:]) | {"ready"}
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", "/run"], check=True)
    os.makedirs("/run/systemd/journal")
    entries_socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    entries_socket.bind("/run/systemd/journal/socket")
    entries_socket.settimeout(0.2)
    stream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stream.bind("/run/systemd/journal/stdout")
    stream.listen(1)
    stderr = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stderr.connect("/run/systemd/journal/stdout")
    accepted, _ = stream.accept()
    proc = subprocess.Popen([daemon, "-c", conf], stdout=stderr.fileno(), stderr=stderr.fileno())
    stderr.close()
    entries, start, stopping = [], time.time(), False
    while time.time() < start + 60:
        if not stopping and (not waiting_for or time.time() > start + 30):
            proc.send_signal(signal.SIGTERM)
            stopping = True
        try:
            entries.append(parse(entries_socket.recv(1 << 20)))
        except socket.timeout:
            if proc.poll() is not None:
                break
            continue
        if "accepting producers" in entries[-1].get("MESSAGE", ""):
            waiting_for.discard("ready")
        waiting_for.discard(entries[-1].get("GLIB_DOMAIN"))
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    accepted.close()
    json.dump({"exit": proc.returncode, "entries": entries}, sys.stdout)


if __name__ == "__main__":
    main()
