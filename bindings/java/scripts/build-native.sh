#!/usr/bin/env bash
# Build the JNI library of the Java binding the way an app's build would:
# install libchat from a meson build into a staging directory
# (scripts/stage.sh), then build bindings/java/jni against it through
# pkg-config, and put libchat.so.1 beside libchat_jni.so (which finds it
# there through its $ORIGIN rpath, as on Android where both sit in
# lib/<abi>/).
#
# Usage: build-native.sh [--build-dir DIR] [--out DIR]
#   --build-dir DIR  libchat's meson build (default: the repository's
#                    build/); configured here when it is not yet
#   --out DIR        the JNI build (default: DIR/java-jni)
# Prints the directory holding libchat_jni.so and libchat.so.1.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../../.." && pwd)
build_dir=$root/build
out=""
while [ $# -gt 0 ]; do
  case "$1" in
    --build-dir) build_dir=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    -h|--help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "build-native.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
case "$build_dir" in /*) ;; *) build_dir=$(pwd)/$build_dir ;; esac
out=${out:-$build_dir/java-jni}
case "$out" in /*) ;; *) out=$(pwd)/$out ;; esac

if [ ! -f "$build_dir/build.ninja" ]; then
  meson setup "$build_dir" "$root" >/dev/null
fi
# Staging (a meson install) is skipped when the stage is newer than the
# library it would install, so a rebuild of Maven alone costs nothing.
stage=$build_dir/stage-java
ninja -C "$build_dir" -j "${JOBS:-2}" >/dev/null
lib=$(find "$build_dir/lib" -maxdepth 1 -name 'libchat.so.*.*' | head -n 1)
pc=$(find "$stage" -name libchat.pc 2>/dev/null | head -n 1 || true)
if [ -z "$pc" ] || [ -z "$lib" ] || [ "$lib" -nt "$pc" ]; then
  eval "$("$root/scripts/stage.sh" --build-dir "$build_dir" --stage "$stage")"
else
  eval "$("$root/scripts/stage.sh" --build-dir "$build_dir" --stage "$stage" --env)"
fi
if [ ! -f "$out/build.ninja" ]; then
  meson setup "$out" "$root/bindings/java/jni" >/dev/null
fi
ninja -C "$out" >/dev/null
libdir=$(pkg-config --variable=libdir libchat)
libdir=$PKG_CONFIG_SYSROOT_DIR${libdir#"$PKG_CONFIG_SYSROOT_DIR"}
cp -P "$libdir"/libchat.so* "$out/"
echo "$out"
