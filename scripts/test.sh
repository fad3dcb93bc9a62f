#!/usr/bin/env bash
# Set up, configure, build and run every test suite, then print one line:
#   tests: N passed, N failed
# and exit non-zero on any failure (or when no test ran at all).
#
# Usage: scripts/test.sh [--build-dir DIR] [--meson-args "ARGS"]
#                        [--no-setup] [-- MESON_TEST_ARGS...]
#   --build-dir DIR     build directory (default: $BUILD_DIR or ./build)
#   --meson-args ARGS   extra `meson setup` options, word-split, e.g.
#                       "-Dwerror=true -Db_sanitize=address,undefined"
#   --no-setup          skip scripts/setup.sh (packages already there)
#   -- ARGS             passed to `meson test`, e.g. -- --suite unit
# Environment: JOBS (ninja -j, default: number of cores), CC/CXX (first
# configure only, as meson reads them then), ASAN_OPTIONS and friends.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

build_dir=${BUILD_DIR:-build}
meson_args=""
do_setup=1
test_args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --build-dir) build_dir=${2:?--build-dir needs a directory}; shift 2 ;;
    --build-dir=*) build_dir=${1#*=}; shift ;;
    --meson-args) meson_args=${2?--meson-args needs a value}; shift 2 ;;
    --meson-args=*) meson_args=${1#*=}; shift ;;
    --no-setup) do_setup=0; shift ;;
    --) shift; test_args=("$@"); break ;;
    -h|--help) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "test.sh: unknown argument: $1 (try --help)" >&2; exit 2 ;;
  esac
done
jobs=${JOBS:-$(nproc 2>/dev/null || echo 2)}

if [ "$do_setup" = 1 ]; then
  "$root/scripts/setup.sh"
fi

# shellcheck disable=SC2206  # word splitting is the point of --meson-args
extra=($meson_args)
setup_log=$(mktemp)
trap 'rm -f "$setup_log"' EXIT
if [ -f "$build_dir/meson-private/coredata.dat" ]; then
  # Picks up new options and new meson.build files alike.
  setup=(meson setup --reconfigure "$build_dir" "${extra[@]}")
else
  setup=(meson setup "$build_dir" "${extra[@]}")
fi
if ! "${setup[@]}" >"$setup_log" 2>&1; then
  if [ "${setup[2]:-}" = "--reconfigure" ]; then
    # A build directory from another meson version, or a broken one: start
    # it over, keeping the options it was configured with.
    echo "test.sh: reconfigure failed; wiping $build_dir and configuring anew"
    setup=(meson setup --wipe "$build_dir" "${extra[@]}")
  fi
  if [ "${setup[2]:-}" != "--wipe" ] || ! "${setup[@]}" >"$setup_log" 2>&1; then
    cat "$setup_log" >&2
    echo "test.sh: ${setup[*]} failed" >&2
    exit 1
  fi
fi
# The configure log is long; keep only its verdicts on the screen (the
# whole of it is in $build_dir/meson-logs/meson-log.txt).
grep -E '^(Build targets|Message:|WARNING:|DEPRECATION:)' "$setup_log" || true

# -k 0: report every target that fails to build, not just the first.
if ! ninja -C "$build_dir" -j "$jobs" -k 0; then
  echo "test.sh: the build failed in $build_dir (errors above); no test ran," \
       "and the failed build counts as one failure" >&2
  echo "tests: 0 passed, 1 failed"
  exit 1
fi

testlog="$build_dir/meson-logs/testlog.json"
rm -f "$testlog"
set +e
meson test -C "$build_dir" --no-rebuild --print-errorlogs \
  --num-processes "$jobs" "${test_args[@]}" </dev/null
rc=$?
set -e

# Count meson's verdicts (and show what failed TAP tests printed).
summary=$(python3 "$root/scripts/testlog-summary.py" "$testlog")
if [ "$(wc -l <<<"$summary")" -gt 1 ]; then
  sed '$d' <<<"$summary"
fi
read -r passed failed skipped <<<"$(tail -n 1 <<<"$summary")"

if [ "$skipped" -gt 0 ]; then
  echo "($skipped skipped)"
fi
echo "tests: $passed passed, $failed failed"
if [ "$failed" -gt 0 ] || [ "$rc" -ne 0 ]; then
  exit 1
fi
if [ "$passed" -eq 0 ]; then
  echo "test.sh: no test ran" >&2
  exit 1
fi
