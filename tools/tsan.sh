#!/usr/bin/env bash
# tools/tsan.sh - the real daemon under ThreadSanitizer (issue 5 item 7).
#
# Criterion's runner does not start under TSan ("Could not initialize
# inheritable arena"), so the unit and crash suites cannot run here.  Instead
# the daemon, tr-admin, tr-bench and cglib_peer are built with gcc
# -fsanitize=thread -O1 -g in build-tsan/ (cpp_peer, the stock C++ Thrift
# peer, without sanitizer) and the integration suites drive them: the loop,
# storage writer, push and admin threads all run.
#
# GLib: on Linux GMutex and GCond are futexes plus atomics inside libglib, so
# with Debian's uninstrumented libglib TSan sees none of GLib's
# synchronisation and reports every hand-off through GMutex, GCond,
# GAsyncQueue or g_main_context_invoke() as a race.  This script therefore
# builds libglib-2.0 and libgobject-2.0 of the *installed* version from
# Debian's source package (apt-get source, a private deb-src list; nothing
# in /etc/apt changes) with -fsanitize=thread, once, into build-tsan/glib/,
# and the binaries load them through their RPATH (CMake TR_TSAN_GLIB).
# Needs network once, and the installed GLib version must still be on the
# mirror (if apt-get source fails after a GLib update there, upgrade
# libglib2.0-0 first: ABI and sources must match).
# G_SLICE=always-malloc makes GSlice use malloc, so TSan tracks every block.
#
# Any TSan report fails the run: halt_on_error=1 stops the daemon (exit 66),
# every report is written to build-tsan/tsan-out/tsan.<pid> and printed.
# tests/tsan.supp lists the few reports in code that is not ours, each with
# the reason.  Exits non-zero on a report, a failed suite or a timeout.
#
#   TR_TSAN_SUITES="test_router ..."  integration suites to run (default below)
#   TR_CRASH_ITERATIONS=n             kill -9 rounds of test_crash_loop (10)
#   TR_TSAN_TIMEOUT=s                 bound per suite in seconds (600)
#   TR_TSAN_JOBS=n                    build parallelism (1: shared machines)
set -euo pipefail

top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$top"
build=$top/build-tsan
glib=$build/glib
out=$build/tsan-out
jobs=${TR_TSAN_JOBS:-1}
suites=${TR_TSAN_SUITES:-test_router test_admin test_reload test_misbehaving_endpoints test_hostile_producers test_full_disk
                        test_crash_loop test_metrics}
start=$(date +%s)

. tools/deps.sh
tr_install_deps test
for tool in meson ninja dpkg-source apt-get gcc; do
  command -v $tool >/dev/null || { echo "tsan.sh: $tool not found (tools/deps.sh installs it)" >&2; exit 1; }
done

# --- 1. GLib with -fsanitize=thread, same version as the installed one -----
version=$(dpkg-query -W -f='${source:Version}' libglib2.0-0)
upstream=${version%%-*}
upstream=${upstream#*:}
if [ "$(cat "$glib/stamp" 2>/dev/null)" != "$version" ]; then
  echo "tsan.sh: building GLib $version with -fsanitize=thread (once)"
  rm -rf "$glib"
  mkdir -p "$glib/apt/lists/partial" "$glib/apt/cache/archives/partial"
  cat > "$glib/apt/src.sources" <<EOF
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb-src
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  apt_private=(-o Dir::Etc::SourceList=/dev/null -o Dir::Etc::SourceParts="$glib/apt"
               -o Dir::State::Lists="$glib/apt/lists" -o Dir::Cache="$glib/apt/cache")
  apt-get "${apt_private[@]}" update -qq
  (cd "$glib" && apt-get "${apt_private[@]}" source -qq "glib2.0=$version" >"$glib/source.log" 2>&1) \
    || { cat "$glib/source.log" >&2; exit 1; }
  # Only what libglib/libgobject need; no tests, docs or optional libraries.
  CC=gcc meson setup "$glib/build" "$glib/glib2.0-$upstream" -Dbuildtype=debugoptimized \
    -Db_sanitize=thread -Db_lundef=false -Dtests=false -Dselinux=disabled -Dlibmount=disabled \
    -Dxattr=false -Dnls=disabled -Dlibelf=disabled -Dman=false -Dgtk_doc=false -Dsysprof=disabled \
    -Ddtrace=false -Dsystemtap=false >"$glib/setup.log" 2>&1 || { cat "$glib/setup.log" >&2; exit 1; }
  IFS=. read -r _ minor micro <<<"$upstream"
  so="so.0.$((minor * 100)).$micro"  # GLib 2.74.6 -> libglib-2.0.so.0.7400.6
  ninja -C "$glib/build" -j"$jobs" "glib/libglib-2.0.$so" "gobject/libgobject-2.0.$so" >"$glib/build.log" 2>&1 \
    || { tail -50 "$glib/build.log" >&2; exit 1; }
  echo "$version" > "$glib/stamp"
fi

# --- 2. The daemon and the tools the integration tests start ---------------
CC=gcc cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Debug -DTR_WERROR=ON -DTR_TSAN=ON \
  -DTR_TSAN_GLIB="$glib/build" >/dev/null
cmake --build "$build" -j"$jobs" --target thriftrouter tr-admin tr-bench cglib_peer cpp_peer
if ! ldd "$build/router/thriftrouter" | grep "$glib/build/glib/libglib-2.0.so.0" >/dev/null; then
  echo "tsan.sh: thriftrouter does not load the instrumented GLib:" >&2
  ldd "$build/router/thriftrouter" >&2
  exit 1
fi
built=$(date +%s)

# --- 3. The integration suites against the TSan daemon ---------------------
rm -rf "$out"
mkdir -p "$out"
export TSAN_OPTIONS="halt_on_error=1 exitcode=66 second_deadlock_stack=1 log_path=$out/tsan suppressions=$top/tests/tsan.supp"
export G_SLICE=always-malloc
export TR_BUILD_DIR=$build TR_SOURCE_DIR=$top TR_SANITIZE=thread
export TR_TEST_SEED=${TR_TEST_SEED:-20261122} TR_CRASH_ITERATIONS=${TR_CRASH_ITERATIONS:-10}
failed=()
for suite in $suites; do
  t0=$(date +%s)
  rc=0
  timeout -k 10 "${TR_TSAN_TIMEOUT:-600}" /usr/bin/python3 "tests/integration/$suite.py" >"$out/$suite.log" 2>&1 || rc=$?
  grep -E "^(PASS|FAIL)|passed, " "$out/$suite.log" | sed 's/^/  /'
  echo "tsan.sh: $suite exit $rc in $(( $(date +%s) - t0 )) s"
  [ "$rc" -eq 0 ] || failed+=("$suite")
done

reports=$(find "$out" -name 'tsan.*' | sort)
for report in $reports; do
  echo "=== $report"
  cat "$report"
done
echo "tsan.sh: build $(( built - start )) s, suites $(( $(date +%s) - built )) s;" \
  "$(echo "$reports" | grep -c . || true) TSan report file(s); failed suites: ${failed[*]:-none}"
[ -z "$reports" ] && [ ${#failed[@]} -eq 0 ]
