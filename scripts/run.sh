#!/usr/bin/env bash
# Set up, configure (first time only) and build ./build, then start the
# main program with this script's arguments.
#
# Usage: scripts/run.sh [ARGS...]
# Environment: BUILD_DIR (default: build), MAIN_PROGRAM (see below), JOBS.
set -euo pipefail

# The main program, as a path inside the build directory: the reference
# server chatd. With no arguments it is `chatd serve` on 127.0.0.1:8080 with
# ./chatd-data (see docs/chatd.md); `scripts/run.sh --help` lists its flags.
MAIN_PROGRAM=${MAIN_PROGRAM:-chatd/chatd}

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
build_dir=${BUILD_DIR:-build}
jobs=${JOBS:-$(nproc 2>/dev/null || echo 2)}

"$root/scripts/setup.sh"

if [ ! -f "$build_dir/build.ninja" ]; then
  if [ -f "$build_dir/meson-private/coredata.dat" ]; then
    meson setup --reconfigure "$build_dir" >/dev/null
  else
    meson setup "$build_dir" >/dev/null
  fi
fi

# Build only what we are about to run, so work in progress elsewhere in the
# tree (a test that does not compile yet) does not stand in the way. ninja
# re-runs meson by itself when a meson.build changed.
if ! ninja -C "$build_dir" -t query "$MAIN_PROGRAM" >/dev/null 2>&1; then
  # The target list may be stale; let meson regenerate it once.
  ninja -C "$build_dir" build.ninja >/dev/null
fi
if ! ninja -C "$build_dir" -t query "$MAIN_PROGRAM" >/dev/null 2>&1; then
  echo "run.sh: $build_dir has no target $MAIN_PROGRAM (is it built by" \
       "the meson files and enabled, e.g. -Dexamples=true?)" >&2
  exit 1
fi
ninja -C "$build_dir" -j "$jobs" "$MAIN_PROGRAM" >&2

exec "$build_dir/$MAIN_PROGRAM" "$@"
