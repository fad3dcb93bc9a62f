#!/usr/bin/env bash
# The bindings-go suite: stage the libchat of a meson build (installed into
# <build>/stage-go, found through pkg-config as an installed library is),
# then `go vet` and `go test` the Go binding against it, with real chatd
# processes (CHATD) and the C chat-cli (CHAT_CLI).
#
# Usage: bindings/go/run-tests.sh BUILD_DIR [go test flags...]
# meson registers it as the `bindings-go` suite (bindings/go/meson.build).
# Environment: CHATD, CHAT_CLI (meson sets them); SANITIZE=address runs
# `go test -asan` (libchat built with ASan needs the ASan runtime first,
# and Go's -asan also reports C memory leaked at exit) instead of -race.
# Nothing is written into the source tree: the Go build and module caches
# stay in their usual places (or under BUILD_DIR when those would be in
# the tree), and go.mod/go.sum are read-only (-mod=readonly).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${1:?usage: run-tests.sh BUILD_DIR}
shift
case "$build" in /*) ;; *) build=$root/$build ;; esac

eval "$("$root/scripts/stage.sh" --build-dir "$build" --stage "$build/stage-go")"

export GOFLAGS="-buildvcs=false -mod=readonly -modcacherw"
export GOTOOLCHAIN=local
# Caches out of the source tree.
# (Without HOME, go has no default for them: they go under BUILD_DIR too.)
for var in GOCACHE GOMODCACHE; do
  val=$(go env "$var" 2>/dev/null || true)
  case "$val" in
    "$root"/*) export "$var=$build/go-${var#GO}" ;;
    /*) ;;
    *) export "$var=$build/go-${var#GO}" ;; # unset, or "off"
  esac
done
gotmp=$(mktemp -d)
trap 'rm -rf "$gotmp"' EXIT
export GOTMPDIR=$gotmp

mode=(-race)
if [[ "${SANITIZE:-}" == *address* ]]; then
  mode=(-asan)
  # The C compiler that built libchat links the ASan runtime.
  export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
fi

cd "$here"
t0=$SECONDS
go vet ./...
(cd "$root/examples/go" && go vet ./...)
echo "go vet: clean (bindings/go, examples/go)"
rc=0
go test "${mode[@]}" -count=1 "$@" ./... || rc=$?
echo "bindings-go: go test ${mode[*]} exit $rc in $((SECONDS - t0))s"
exit "$rc"
