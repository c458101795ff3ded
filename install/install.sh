#!/bin/sh
# wolf installer: downloads the wolf binary for this machine, verifies its SHA-256 and installs it
# with its systemd units.
#
#   curl -fsSL https://github.com/wolf-cluster/wolf/releases/latest/download/install.sh | sh
#   curl -fsSL .../install.sh | sh -s -- --version 0.1.0 --prefix /tmp/root
#   sh install.sh --help
#
# POSIX sh only. Everything runs from main() at the very end, so a download cut short by the
# network never executes half a script. Nothing is written under the prefix before the binary has
# been downloaded and its checksum verified.
set -eu

DEFAULT_RELEASES="https://github.com/wolf-cluster/wolf/releases"
UNITS="wolf-scale.service wolf-disk@.service wolf-net.service"

# Set by main() and read by cleanup(), which the EXIT trap runs.
work_dir=""
staged=""

usage() {
  cat <<'EOF'
Usage: install.sh [options]
       curl -fsSL <base-url>/install.sh | sh -s -- [options]

Downloads wolf-linux-<arch> from the release location, verifies its SHA-256, installs it to
<prefix>/usr/local/bin/wolf with the systemd units, and creates /etc/wolf and /var/lib/wolf.
Services are not enabled or started.

Options:
  --prefix DIR      install under DIR instead of / (DIR/usr/local/bin/wolf, ...)
  --version V       install release V (e.g. 0.1.0) instead of the latest
  --base-url URL    download from URL instead of the GitHub releases
                    (also: env WOLF_BASE_URL; --base-url wins)
  --no-systemd      do not install the systemd units
  -h, --help        show this help

Must run as root when the prefix is /.
EOF
}

err() {
  printf 'wolf-install: error: %s\n' "$*" >&2
  exit 1
}

warn() {
  printf 'wolf-install: warning: %s\n' "$*" >&2
}

say() {
  printf 'wolf-install: %s\n' "$*"
}

cleanup() {
  if [ -n "$staged" ]; then rm -f "$staged"; fi
  if [ -n "$work_dir" ]; then rm -rf "$work_dir"; fi
}

have() {
  command -v "$1" >/dev/null 2>&1
}

detect_platform() {
  os=$(uname -s) || err "cannot run uname to detect the operating system"
  [ "$os" = Linux ] || err "wolf runs on Linux only; this system is $os"
  machine=$(uname -m) || err "cannot run uname to detect the architecture"
  case $machine in
    x86_64 | amd64) arch=x64 ;;
    aarch64 | arm64) arch=arm64 ;;
    *) err "unsupported architecture '$machine': wolf is released for x86_64 and aarch64 only" ;;
  esac
}

# download URL FILE
download() {
  if have curl; then
    curl -fsSL --retry 3 --connect-timeout 20 -o "$2" "$1" ||
      err "could not download $1 (check the URL, the version and the network)"
  elif have wget; then
    wget -q -O "$2" "$1" ||
      err "could not download $1 (check the URL, the version and the network)"
  else
    err "neither curl nor wget is installed; install one of them and run the installer again"
  fi
}

# sha256_of FILE: prints the lowercase hex digest.
sha256_of() {
  if have sha256sum; then
    sum=$(sha256sum "$1") || err "sha256sum failed on $1"
  elif have shasum; then
    sum=$(shasum -a 256 "$1") || err "shasum failed on $1"
  elif have openssl; then
    sum=$(openssl dgst -sha256 -r "$1") || err "openssl failed on $1"
  else
    err "no SHA-256 tool found (sha256sum, shasum or openssl); install coreutils and run the installer again"
  fi
  printf '%s\n' "${sum%% *}" | tr 'A-F' 'a-f'
}

# verify_checksum FILE SUMFILE NAME: the sum file holds "<hex>  <name>", as install/build.ts writes it.
verify_checksum() {
  line=$(head -n 1 "$2")
  expected=${line%% *}
  listed=${line#"$expected"}
  listed=$(printf '%s' "$listed" | sed 's/^[[:space:]]*\*\{0,1\}//; s/[[:space:]]*$//')
  case $expected in
    *[!0-9a-fA-F]* | "") err "checksum file $3.sha256 is malformed (expected '<sha256>  $3'); is the base URL right?" ;;
  esac
  [ "${#expected}" -eq 64 ] ||
    err "checksum file $3.sha256 is malformed (expected '<sha256>  $3'); is the base URL right?"
  if [ -n "$listed" ] && [ "$listed" != "$3" ]; then
    err "checksum file $3.sha256 is for '$listed', not '$3'"
  fi
  expected=$(printf '%s\n' "$expected" | tr 'A-F' 'a-f')
  actual=$(sha256_of "$1") || exit 1
  [ "$actual" = "$expected" ] ||
    err "checksum mismatch for $3: expected $expected, got $actual; the download is corrupt or was tampered with, nothing was installed"
}

# install_file SRC DEST MODE: atomic replace (stage beside the target, then rename).
install_file() {
  staged="$(dirname "$2")/.$(basename "$2").wolf-install.$$"
  cp "$1" "$staged" || err "cannot write $staged"
  chmod "$3" "$staged" || err "cannot chmod $staged"
  mv -f "$staged" "$2" || err "cannot move $staged to $2"
  staged=""
}

# make_dir DIR MODE: creates DIR (and parents); an existing DIR keeps its mode and owner.
make_dir() {
  if [ ! -d "$1" ]; then
    mkdir -p "$(dirname "$1")" || err "cannot create $(dirname "$1")"
    mkdir -m "$2" "$1" || err "cannot create $1"
  fi
}

main() {
  umask 022
  prefix=/
  version=""
  base_url=${WOLF_BASE_URL:-}
  systemd=yes

  while [ $# -gt 0 ]; do
    case $1 in
      --prefix | --version | --base-url)
        if [ $# -lt 2 ] || [ -z "$2" ]; then err "option $1 needs a value (see --help)"; fi
        opt=$1 val=$2
        shift 2
        ;;
      --prefix=* | --version=* | --base-url=*)
        opt=${1%%=*} val=${1#*=}
        [ -n "$val" ] || err "option $opt needs a value (see --help)"
        shift
        ;;
      --no-systemd) systemd=no; shift; continue ;;
      -h | --help) usage; exit 0 ;;
      *) err "unknown option '$1' (see --help)" ;;
    esac
    case $opt in
      --prefix) prefix=$val ;;
      --version) version=${val#v} ;;
      --base-url) base_url=$val ;;
    esac
  done

  case $prefix in
    /*) ;;
    *) prefix="$(pwd)/$prefix" ;;
  esac
  # root is "" for prefix /, so "$root/etc/wolf" is /etc/wolf.
  root=$prefix
  while [ "${root%/}" != "$root" ]; do root=${root%/}; done

  if [ -z "$root" ] && [ "$(id -u)" -ne 0 ]; then
    err "installing to / needs root: run with sudo, or use --prefix DIR"
  fi

  detect_platform
  name="wolf-linux-$arch"

  if [ -n "$base_url" ]; then
    [ -z "$version" ] || warn "--version $version ignored: downloading from the given base URL $base_url"
  elif [ -n "$version" ]; then
    base_url="$DEFAULT_RELEASES/download/v$version"
  else
    base_url="$DEFAULT_RELEASES/latest/download"
  fi
  while [ "${base_url%/}" != "$base_url" ]; do base_url=${base_url%/}; done

  work_dir=$(mktemp -d "${TMPDIR:-/tmp}/wolf-install.XXXXXX") || err "cannot create a temporary directory"

  say "downloading $base_url/$name"
  download "$base_url/$name.sha256" "$work_dir/$name.sha256"
  download "$base_url/$name" "$work_dir/$name"
  verify_checksum "$work_dir/$name" "$work_dir/$name.sha256" "$name"
  say "checksum verified ($actual)"
  if [ "$systemd" = yes ]; then
    mkdir "$work_dir/systemd" || err "cannot create $work_dir/systemd"
    for unit in $UNITS; do
      download "$base_url/systemd/$unit" "$work_dir/systemd/$unit"
      grep -q '^\[Service\]' "$work_dir/systemd/$unit" ||
        err "$base_url/systemd/$unit is not a systemd unit; is the base URL right?"
    done
  fi

  # Everything is downloaded and verified: from here on we write under the prefix.
  make_dir "$root/usr/local/bin" 0755
  install_file "$work_dir/$name" "$root/usr/local/bin/wolf" 0755
  say "installed $root/usr/local/bin/wolf"

  # Configs hold the cluster secret and admin token: root only.
  make_dir "$root/etc/wolf" 0700
  make_dir "$root/var/lib/wolf" 0755
  for sub in scale disk net; do
    make_dir "$root/var/lib/wolf/$sub" 0700
  done

  if [ "$systemd" = yes ]; then
    make_dir "$root/etc/systemd/system" 0755
    for unit in $UNITS; do
      install_file "$work_dir/systemd/$unit" "$root/etc/systemd/system/$unit" 0644
    done
    say "installed systemd units to $root/etc/systemd/system: $UNITS"
    if [ -z "$root" ] && [ -d /run/systemd/system ] && have systemctl; then
      systemctl daemon-reload || warn "systemctl daemon-reload failed; run it yourself"
    fi
  fi

  installed=$("$root/usr/local/bin/wolf" --version 2>/dev/null) || installed=""
  [ -z "$installed" ] || say "$installed"

  cat <<EOF

wolf is installed. Next steps (pick the parts you use):
  wolf scale init                        # writes /etc/wolf/scale.toml; edit it
  wolf disk init                         # writes /etc/wolf/disk.toml
  wolf net init                          # writes /etc/wolf/net.toml
EOF
  if [ "$systemd" = yes ]; then
    cat <<EOF
  systemctl enable --now wolf-scale
  systemctl enable --now wolf-disk@<drive>   # one per drive in disk.toml
  systemctl enable --now wolf-net
EOF
  fi
  if [ -n "$root" ]; then
    printf '(installed under %s: commands and paths above are relative to it)\n' "$root"
  fi
}

trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

main "$@"
