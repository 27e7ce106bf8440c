#!/usr/bin/env bash
# tools/bench.sh - the router benchmark of issue 3 (docs/performance.md,
# "Router: W1 / W2"): builds Release and runs, in one process and one table,
# the fdatasync probe, the direct baseline, W1 (sync_mode always), W1
# (sync_mode interval) and W2 (64 producers, always), then the target ratios.
#
#   tools/bench.sh [--count N] [--dir DIR] [other tr-bench run options]
#
#   --count N   RPCs per run (default 100000; e.g. 20000 for a quick look)
#   --dir DIR   parent of the temporary data directories (default /var/tmp;
#               must be a real disk, tmpfs is refused)
#
# Run it on an otherwise idle machine: the figures are ratios measured in the
# same run, but a parallel build still skews them.
set -euo pipefail

top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$top"

count=100000
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --count) count=$2; shift 2 ;;
    --count=*) count=${1#--count=}; shift ;;
    *) args+=("$1"); shift ;;
  esac
done

cmake -S . -B build-release -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build-release -j2 --target thriftrouter tr-bench >/dev/null

echo "# tr-bench: $(date -u +%Y-%m-%dT%H:%M:%SZ), $(git rev-parse --short HEAD 2>/dev/null || echo '?'), load: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# cpu: $(lscpu | sed -n 's/^Model name: *//p') x $(nproc)"
exec timeout 1800 build-release/tools/tr-bench run --workload all --count "$count" \
  --router build-release/router/thriftrouter "${args[@]}"
