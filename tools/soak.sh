#!/usr/bin/env bash
# tools/soak.sh [SECONDS] - the soak run of issue 5 (not part of CI): mixed
# load with endpoint flaps and stop_send toggles for SECONDS (default 1800)
# against a RelWithDebInfo build; RSS and descriptors must stay flat and
# every acknowledged RPC must reach every endpoint in order.
set -euo pipefail
top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$top"
. tools/deps.sh
tr_install_deps test
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTR_BUILD_TESTS=ON >/dev/null
cmake --build build -j"$(nproc)"
cd build
TR_SOAK_SECONDS=${1:-1800} TR_BUILD_DIR=$PWD TR_SOURCE_DIR=.. exec /usr/bin/python3 ../tests/integration/soak.py
