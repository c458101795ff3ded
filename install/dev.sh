#!/usr/bin/env bash
# Sets up a Debian machine for developing wolf, then runs the demo or the tests.
#
#   bash install/dev.sh demo    install what is missing, build dist/wolf, run the local demo
#   bash install/dev.sh test    install what is missing, build, run every test; the last line is
#                               "N passed, N failed, N skipped"
#
# Needs root (or sudo) for apt; skips every package that is already present.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  mariadb-server mariadb-client # wolf scale
  fuse3 attr fio                # wolf disk (attr: setfattr/getfattr in tests; fio: benchmarks)
  libsodium23 wireguard-go      # wolf net (libsodium: fast AEAD; wireguard-go: benchmark peer)
  iperf3 sysbench nftables iproute2 iputils-ping procps psmisc git curl ca-certificates
)

say() { printf 'dev.sh: %s\n' "$*" >&2; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    say "need root (or sudo) to run: $*"; exit 1
  fi
}

install_apt() {
  local missing=()
  for pkg in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  if [ "${#missing[@]}" -eq 0 ]; then return; fi
  say "installing apt packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  as_root apt-get update -qq
  # policy-rc.d: do not start the system MariaDB; tests start their own instances.
  local policy=/usr/sbin/policy-rc.d created_policy=0
  if [ ! -e "$policy" ]; then as_root sh -c "printf '#!/bin/sh\nexit 101\n' > $policy && chmod +x $policy"; created_policy=1; fi
  as_root apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  if [ "$created_policy" -eq 1 ]; then as_root rm -f "$policy"; fi
}

install_npm() {
  # node_modules is current when it was installed after the last change to the lock file.
  if [ -x node_modules/.bin/bun ] && [ node_modules/.package-lock.json -nt package-lock.json ]; then return; fi
  say "installing npm packages"
  npm ci --no-audit --no-fund --loglevel=error >&2
}

cmd="${1:-}"
[ $# -gt 0 ] && shift
case "$cmd" in
  demo) install_apt; install_npm; exec node_modules/.bin/bun install/demo.ts "$@" ;;
  test) install_apt; install_npm; exec node_modules/.bin/bun test/run.ts "$@" ;;
  deps) install_apt; install_npm ;;
  *) say "usage: bash install/dev.sh demo|test|deps"; exit 2 ;;
esac
