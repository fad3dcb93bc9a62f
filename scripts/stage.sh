#!/usr/bin/env bash
# Install the libchat of a build directory into a staging directory, the way
# a packager's `meson install --destdir` would, so that bindings and the
# embedding examples build against an *installed* libchat found through
# pkg-config, not against the source tree.
#
# Usage: scripts/stage.sh [--build-dir DIR] [--stage DIR] [--env]
#   --build-dir DIR  the meson build to install (default: $BUILD_DIR or build);
#                    built first if needed
#   --stage DIR      where to install (default: <build-dir>/stage)
#   --env            print only the environment to use it, as shell
#                    assignments (eval "$(scripts/stage.sh --env)")
# The environment is PKG_CONFIG_PATH and PKG_CONFIG_SYSROOT_DIR (pkg-config
# then rewrites -I/-L into the stage) and LD_LIBRARY_PATH for running.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build_dir=${BUILD_DIR:-build}
stage=""
env_only=0
while [ $# -gt 0 ]; do
  case "$1" in
    --build-dir) build_dir=$2; shift 2 ;;
    --stage) stage=$2; shift 2 ;;
    --env) env_only=1; shift ;;
    -h|--help) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "stage.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
cd "$root"
[ -f "$build_dir/build.ninja" ] || { echo "stage.sh: $build_dir is not a configured meson build (run scripts/test.sh or meson setup first)" >&2; exit 1; }
case "$build_dir" in /*) ;; *) build_dir=$root/$build_dir ;; esac
stage=${stage:-$build_dir/stage}
case "$stage" in /*) ;; *) stage=$root/$stage ;; esac

if [ "$env_only" = 0 ]; then
  ninja -C "$build_dir" -j "${JOBS:-2}" >/dev/null
  rm -rf "$stage"
  meson install -C "$build_dir" --destdir "$stage" --no-rebuild --quiet >/dev/null
fi
pc=$(find "$stage" -name libchat.pc -path '*pkgconfig*' 2>/dev/null | head -n 1)
[ -n "$pc" ] || { echo "stage.sh: no libchat.pc under $stage (run without --env first)" >&2; exit 1; }
pcdir=$(dirname "$pc")
libdir=$(dirname "$pcdir")
echo "PKG_CONFIG_PATH='$pcdir'; export PKG_CONFIG_PATH"
echo "PKG_CONFIG_SYSROOT_DIR='$stage'; export PKG_CONFIG_SYSROOT_DIR"
echo "LD_LIBRARY_PATH='$libdir'\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}; export LD_LIBRARY_PATH"
