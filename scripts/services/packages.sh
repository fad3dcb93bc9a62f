#!/usr/bin/env bash
# Debian packages for the optional scale-out stages (docs/services.md).
# Not part of scripts/setup.sh's default path: the README's two commands
# need none of this. Source it and call the function, or run it:
#
#   source scripts/services/packages.sh; services_packages scale
#   scripts/services/packages.sh full
#
#   scale  PostgreSQL 15, Redis 7, HAProxy 2.6 and the C client libraries
#          (libpq, hiredis): part 1 of the scale-out
#   full   scale, plus librdkafka and kcat (Kafka from C and the shell),
#          a Java 17 runtime and Maven (Kafka and Cassandra come from Maven
#          Central through scripts/engines/*/pom.xml), and curl for rustup
#
# Idempotent: with everything installed it asks dpkg once and returns.
# Package installs never start the packages' system services: the scripts
# in this folder run every engine on loopback with its own data directory
# and port, so a system-wide redis-server or postgresql would only be in the
# way. Where no /usr/sbin/policy-rc.d exists, one that refuses every start
# is put in place for the length of the apt-get run and removed afterwards.
#
# Rust is not taken from Debian: bookworm's rustc 1.63 is older than the
# scylla crate's minimum; the cassandra build wants a rustup toolchain
# (`cargo` on PATH, or in ~/.cargo/bin).

services_packages() {
  local set=${1:-scale}
  local pkgs=(haproxy libhiredis-dev libpq-dev postgresql redis-server)
  case "$set" in
    scale) ;;
    full) pkgs+=(curl default-jre-headless kcat librdkafka-dev maven) ;;
    *) echo "services_packages: unknown set '$set' (scale or full)" >&2
       return 2 ;;
  esac
  local installed missing=() p
  installed=$(dpkg-query -W -f='${Package} ${db:Status-Abbrev}\n' \
                "${pkgs[@]}" 2>/dev/null | awk '$2 == "ii" { print $1 }' || true)
  for p in "${pkgs[@]}"; do
    grep -qxF -- "$p" <<<"$installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -eq 0 ]; then
    return 0
  fi
  local as_root=()
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
      as_root=(sudo -n)
    else
      echo "services_packages: missing and not root: ${missing[*]}" >&2
      echo "  as root: apt-get install -y ${missing[*]}" >&2
      return 1
    fi
  fi
  echo "services_packages: installing: ${missing[*]}"
  local policy=/usr/sbin/policy-rc.d placed=0 rc=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\n# services_packages: no service starts during install\nexit 101\n' |
      "${as_root[@]}" tee "$policy" >/dev/null
    "${as_root[@]}" chmod 755 "$policy"
    placed=1
  fi
  "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq || rc=$?
  if [ $rc -eq 0 ]; then
    "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
      apt-get install -y -qq -o Dpkg::Use-Pty=0 "${missing[@]}" </dev/null || rc=$?
  fi
  if [ $placed = 1 ]; then
    "${as_root[@]}" rm -f "$policy"
  fi
  return $rc
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  set -euo pipefail
  services_packages "$@"
fi
