#!/usr/bin/env bash
# tools/test.sh - the one test command (README quick start, CI).
#
# On a fresh Debian 12 machine: installs what is missing, builds with warnings
# as errors, runs every suite (unit, crash, integration), then builds again
# with AddressSanitizer + UBSan and runs every suite again under them (the
# daemon too: the integration tests start the sanitized binary), then runs
# the daemon under ThreadSanitizer (tools/tsan.sh) and a bounded fuzzing pass.
# Exits non-zero on any failure.  About 15 minutes on 2 cores (13.5 min for a
# fresh-clone .ci/run, GLib build for TSan included).
#
#   TR_TEST_SEED=n   seed for the random tests (printed by each suite)
#   TR_SKIP_ASAN=1   skip the ASan+UBSan pass (local iteration only)
#   TR_SKIP_TSAN=1   skip the ThreadSanitizer pass (tools/tsan.sh)
#   TR_SKIP_FUZZ=1   skip the bounded fuzzing pass (tools/fuzz.sh)
set -euo pipefail

top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$top"
. tools/deps.sh
tr_install_deps test

jobs=$(nproc 2>/dev/null || echo 2)
export TR_TEST_SEED=${TR_TEST_SEED:-20261122}
echo "test.sh: TR_TEST_SEED=$TR_TEST_SEED"

cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTR_WERROR=ON -DTR_BUILD_TESTS=ON >/dev/null
cmake --build build -j"$jobs"
(cd build && ctest --output-on-failure -j1 --timeout 900)

if [ "${TR_SKIP_ASAN:-0}" != 1 ]; then
  cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DTR_WERROR=ON -DTR_SANITIZE=ON -DTR_BUILD_TESTS=ON >/dev/null
  cmake --build build-asan -j"$jobs"
  (cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
     LSAN_OPTIONS=suppressions="$top/tests/lsan.supp":print_suppressions=0 \
     UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
     ctest --output-on-failure -j1 --timeout 900)
fi
# ThreadSanitizer pass: the daemon under TSan driven by the integration
# suites (tools/tsan.sh; Criterion cannot run under TSan).  4-5 min, plus
# about 2 min the first time (it builds an instrumented GLib once).
if [ "${TR_SKIP_TSAN:-0}" != 1 ]; then
  TR_TSAN_JOBS=$jobs bash tools/tsan.sh
fi
# Bounded libFuzzer pass (20 s per harness); TR_SKIP_FUZZ=1 skips it.
if [ "${TR_SKIP_FUZZ:-0}" != 1 ]; then
  bash tools/fuzz.sh 20
fi
echo "test.sh: all suites passed"
