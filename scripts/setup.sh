#!/usr/bin/env bash
# Install what libchat needs to build and test on Debian 12, and nothing
# else. Idempotent: when every package is already there it only asks dpkg
# and returns (well under a second); apt-get runs only for what is missing.
# The integration suite's Python packages (pytest, websockets >= 13) come
# from PyPI through pip, again only when python3 cannot import them. The web
# suite's playwright-core comes from npm (`npm ci` in tests/web), only when
# tests/web/node_modules is missing or older than package-lock.json.
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
  # Tools the tests and chatd's data checks use; pip for the integration
  # suite's Python packages (below). The bindings-python suite builds a C
  # extension (python3-dev) in a virtualenv (python3-venv).
  python3-dev
  python3-pip
  python3-venv
  sqlite3
  # The web suite (tests/web) drives examples/web in headless Chromium.
  chromium
)

# Node.js and npm run the web suite. Any node will do for apt's check (the
# NodeSource build, for one, is not Debian's nodejs package and includes
# npm), so they are only added when the commands are missing.
if ! command -v node >/dev/null 2>&1; then
  packages+=(nodejs)
fi
if ! command -v npm >/dev/null 2>&1; then
  packages+=(npm)
fi

# The integration suite (tests/integration) drives a real chatd with pytest
# and the `websockets` library (13 or newer, for its threading client).
# Debian's python3-websockets is too old, so they come from PyPI; when both
# import already, this costs one Python start-up.
python_ok() {
  python3 - <<'PY' >/dev/null 2>&1
import pytest, websockets
raise SystemExit(0 if int(websockets.__version__.split(".")[0]) >= 13 else 1)
PY
}

python_setup() {
  if python_ok; then
    return 0
  fi
  echo "setup.sh: installing Python packages: pytest websockets"
  local pip=(python3 -m pip install --quiet --disable-pip-version-check)
  if [ "$(id -u)" -ne 0 ]; then
    pip+=(--user)
  fi
  # Debian's own python3 is "externally managed" (PEP 668): retry with the
  # flag that allows installing next to it.
  if ! "${pip[@]}" pytest 'websockets>=13' </dev/null; then
    "${pip[@]}" --break-system-packages pytest 'websockets>=13' </dev/null
  fi
  if ! python_ok; then
    echo "setup.sh: pytest and websockets >= 13 are still not importable" \
         "by python3; the integration suite will fail" >&2
    return 1
  fi
}

# tests/web's pinned npm packages (playwright-core), from its lock file.
# npm ci runs only when node_modules is missing or older than the lock, so
# with everything in place this costs two stat calls.
web_setup() {
  local dir
  dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/tests/web"
  if [ -f "$dir/node_modules/.package-lock.json" ] &&
     [ ! "$dir/package-lock.json" -nt "$dir/node_modules/.package-lock.json" ]; then
    return 0
  fi
  if ! command -v npm >/dev/null 2>&1; then
    echo "setup.sh: no npm; the web suite will be skipped" >&2
    return 0
  fi
  echo "setup.sh: npm ci in tests/web"
  (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error </dev/null)
}

if ! command -v dpkg-query >/dev/null 2>&1; then
  echo "setup.sh: no dpkg-query: this is not a Debian-like system." >&2
  echo "setup.sh: install the equivalents of these by hand, then re-run:" >&2
  echo "  ${packages[*]}" >&2
  # Go on: the build itself says precisely what is missing.
  python_setup || true
  web_setup || true
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
  python_setup
  web_setup
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
python_setup
web_setup
echo "setup.sh: done"
