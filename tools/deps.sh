#!/usr/bin/env bash
# tools/deps.sh - installs the Debian 12 packages thriftrouter needs, if missing.
# Sourced by tools/run.sh (tr_install_deps run: build and run the router, and
# the README's python examples) and tools/test.sh (tr_install_deps test:
# everything the suites, sanitizer passes and fuzzers use as well).
# Needs root (or sudo) to install.
set -euo pipefail

# Building and running the router, tr-admin and tools/examples/*.py.
TR_PACKAGES_RUN=(cmake make pkg-config gcc libc6-dev libglib2.0-dev libthrift-c-glib-dev thrift-compiler
                 libxxhash-dev libjson-glib-dev
                 libsystemd-dev                     # optional: sd_notify for the Type=notify unit (TR_SYSTEMD)
                 libsoup-3.0-dev                     # router/metrics/: the /metrics endpoint
                 python3 python3-thrift python3-six)  # python3-thrift imports six without depending on it
# Only for tools/test.sh.
TR_PACKAGES_TEST=(libcriterion-dev
                  g++ libthrift-dev libboost-dev     # tests/integration/cpp_peer.cpp: the C++ Thrift peer
                  valgrind                           # tests/integration/test_valgrind.py
                  util-linux mount                   # unshare(1), mount(8): tests run as root
                  clang libclang-rt-14-dev           # tools/fuzz.sh: clang + libFuzzer/ASan runtimes
                  meson dpkg-dev                     # tools/tsan.sh: builds GLib with -fsanitize=thread
                  pandoc man-db                      # docs/man: the man pages, and test_man_pages.py renders them
                  lintian debootstrap                # test_deb_package.py: checks the .deb, installs it in a chroot
                  bash-completion                    # test_bash_completion.py: with Debian's completion framework
                  prometheus)                        # tests/integration/test_metrics.py: promtool and a real server

# tr_install_deps run|test
tr_install_deps() {
  local want=("${TR_PACKAGES_RUN[@]}")
  [ "${1:-test}" = run ] || want+=("${TR_PACKAGES_TEST[@]}")
  local missing=()
  for p in "${want[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "deps: installing ${missing[*]}" >&2
  local sudo=()
  [ "$(id -u)" -eq 0 ] || sudo=(sudo)
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
}
