#!/usr/bin/env bash
# tools/run.sh - build and start a single-node router (README quick start).
#
# On a fresh Debian 12 machine: installs what is missing (tools/deps.sh),
# configures and builds build/ (RelWithDebInfo), then replaces itself with
#   build/router/thriftrouter -c conf/router.conf [extra arguments]
# in the foreground, logging to stderr.  Ctrl-C or SIGTERM stops it cleanly.
# Extra arguments go to thriftrouter, e.g.  tools/run.sh --check
set -euo pipefail

top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$top"
. tools/deps.sh
tr_install_deps run

jobs=$(nproc 2>/dev/null || echo 2)
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTR_BUILD_TESTS=OFF >/dev/null
cmake --build build -j"$jobs" --target thriftrouter tr-admin >&2
exec build/router/thriftrouter -c conf/router.conf "$@"
