#!/usr/bin/env bash
# tools/fuzz.sh [SECONDS] - builds the libFuzzer harnesses (tests/fuzz/) with
# clang + ASan + UBSan in build-fuzz/ and runs each for SECONDS (default 300).
#
# Each harness starts from a scratch copy of its seed corpus
# (tests/fuzz/corpus/<target>/; the committed corpus never grows) and stops at
# the first crash, leak, timeout or invariant failure.  Prints executions and
# time per harness; exits non-zero if any harness failed, naming the crash
# file (reproduce: build-fuzz/tests/fuzz/fuzz_<target> <crash file>).
#
#   TR_FUZZ_TARGETS="frame record"  run only these harnesses
#   TR_FUZZ_JOBS=n                  build parallelism (default 1: shared machines)
#   TR_FUZZ_OUT=dir                 where scratch corpora and crashes go
#                                   (default build-fuzz/fuzz-out)
set -euo pipefail

top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$top"
seconds=${1:-300}
targets=${TR_FUZZ_TARGETS:-frame config record recovery thrift_value idl}
out=${TR_FUZZ_OUT:-$top/build-fuzz/fuzz-out}

command -v clang >/dev/null || { echo "fuzz.sh: clang not found (apt-get install clang)" >&2; exit 1; }
CC=clang cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTR_FUZZ=ON -DTR_BUILD_TESTS=ON \
  -DTR_WERROR=ON -DCMAKE_C_FLAGS='-fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined' \
  >/dev/null
cmake --build build-fuzz -j"${TR_FUZZ_JOBS:-1}" --target fuzz_all

# Longest input per harness: frames and records are small; a config file or
# a set of store files needs more room.
max_len() {
  case $1 in
    frame) echo 4096 ;;
    record) echo 1024 ;;
    config) echo 4096 ;;
    recovery) echo 16384 ;;
    idl) echo 8192 ;;
    *) echo 4096 ;;
  esac
}

# Scratch files of the harnesses: on a tmpfs when there is one (the storage
# code fsyncs a lot), removed even when a harness crashes.
tmp_base=/dev/shm
[ -d "$tmp_base" ] && [ -w "$tmp_base" ] || tmp_base=${TMPDIR:-/tmp}
export TR_FUZZ_TMPDIR
TR_FUZZ_TMPDIR=$(mktemp -d "$tmp_base/tr-fuzz-run.XXXXXX")
trap 'rm -rf "$TR_FUZZ_TMPDIR"' EXIT

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:symbolize=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
failed=()
summary=()
for t in $targets; do
  bin=build-fuzz/tests/fuzz/fuzz_$t
  work=$out/$t
  rm -rf "$work"
  mkdir -p "$work/corpus" "$work/crashes"
  cp tests/fuzz/corpus/"$t"/* "$work/corpus/"
  log=$work/fuzz.log
  echo "fuzz.sh: fuzz_$t for ${seconds}s (log $log)"
  start=$(date +%s.%N)
  rc=0
  "$bin" -max_total_time="$seconds" -max_len="$(max_len "$t")" -timeout=25 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$work/crashes/" "$work/corpus" >"$log" 2>&1 || rc=$?
  end=$(date +%s.%N)
  rm -rf "${TR_FUZZ_TMPDIR:?}"/*
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  secs=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.0f", b - a }')
  rate=$(awk -v e="${execs:-0}" -v s="$secs" 'BEGIN { printf "%.0f", (s > 0 ? e / s : 0) }')
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 || true)
  line="fuzz_$t: ${execs:-?} execs in ${secs}s (${rate}/s), ${cov:-cov: ?}"
  if [ "$rc" -ne 0 ]; then
    crash=$(ls -1 "$work"/crashes/* 2>/dev/null | head -1 || true)
    line="$line: FAILED (exit $rc) ${crash:+crash file $crash}"
    failed+=("$t")
    grep -m1 -B2 -A25 'ERROR\|fuzz invariant\|runtime error' "$log" || tail -40 "$log"
  fi
  echo "fuzz.sh: $line"
  summary+=("$line")
done

echo "fuzz.sh: summary"
printf '  %s\n' "${summary[@]}"
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz.sh: FAILED: ${failed[*]}" >&2
  exit 1
fi
echo "fuzz.sh: no crashes"
