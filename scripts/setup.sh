#!/usr/bin/env bash
# Install what libchat needs to build and test on Debian 12, and nothing
# else. Idempotent: when every package is already there it only asks dpkg
# and returns (well under a second); apt-get runs only for what is missing.
#
# Run as root (or as a user with password-less sudo). Used by run.sh,
# test.sh and .ci/run; safe to run by hand at any time.
set -euo pipefail

# One package a line; keep sorted within each group.
packages=(
  # Toolchain. clang + libclang-rt-14-dev give libFuzzer and the sanitizer
  # runtimes for the fuzz build; g++ lets tests/headers compile every public
  # header as C++ too.
  binutils
  clang
  g++
  gcc
  libc6-dev
  libclang-rt-14-dev
  meson
  ninja-build
  pkg-config
  python3
  # Libraries.
  libcjson-dev
  libcriterion-dev
  libsodium-dev
  libsqlite3-dev
  libwebsockets-dev
  # Tools the tests and chatd's data checks use.
  sqlite3
)

if ! command -v dpkg-query >/dev/null 2>&1; then
  echo "setup.sh: no dpkg-query: this is not a Debian-like system." >&2
  echo "setup.sh: install the equivalents of these by hand, then re-run:" >&2
  echo "  ${packages[*]}" >&2
  # Go on: the build itself says precisely what is missing.
  exit 0
fi

# ${db:Status-Abbrev} is "ii " for an installed package. Unknown packages
# make dpkg-query complain on stderr and exit 1; that only means "missing".
installed=$(dpkg-query -W -f='${Package} ${db:Status-Abbrev}\n' \
              "${packages[@]}" 2>/dev/null | awk '$2 == "ii" { print $1 }' || true)
missing=()
for p in "${packages[@]}"; do
  if ! grep -qxF -- "$p" <<<"$installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

echo "setup.sh: installing: ${missing[*]}"
as_root=()
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    as_root=(sudo -n)
  else
    echo "setup.sh: these packages are missing and I am not root:" >&2
    echo "  ${missing[*]}" >&2
    echo "setup.sh: run as root:  apt-get update && apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
fi

export DEBIAN_FRONTEND=noninteractive
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
  apt-get install -y -qq -o Dpkg::Use-Pty=0 "${missing[@]}" </dev/null
echo "setup.sh: done"
