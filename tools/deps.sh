#!/usr/bin/env bash
# tools/deps.sh - installs the Debian 12 packages thriftrouter needs, if missing.
# Sourced by tools/test.sh and tools/run.sh. Needs root (or sudo) to install.
set -euo pipefail

TR_PACKAGES=(cmake pkg-config gcc libglib2.0-dev libthrift-c-glib-dev thrift-compiler
             libxxhash-dev libcriterion-dev python3-thrift
             libjson-glib-dev  # tools/tr-admin.c: --json output
             g++ libthrift-dev libboost-dev  # tests/integration/cpp_peer.cpp: the C++ Thrift peer
             clang libclang-rt-14-dev  # tools/fuzz.sh: clang + libFuzzer/ASan runtimes
             meson dpkg-dev)           # tools/tsan.sh: builds GLib with -fsanitize=thread

tr_install_deps() {
  local missing=()
  for p in "${TR_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "deps: installing ${missing[*]}" >&2
  local sudo=()
  [ "$(id -u)" -eq 0 ] || sudo=(sudo)
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
}
