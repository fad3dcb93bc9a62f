#!/usr/bin/env bash
# The bindings-python suite (meson registers it; run it by hand the same
# way): run-tests.sh BUILD_DIR SOURCE_ROOT [PYTHON]
#
# 1. a virtualenv <build>/bindings-python/venv with the test tools (made
#    once; reused while requirements are unchanged)
# 2. scripts/stage.sh installs this build into <build>/stage-python and
#    prints the pkg-config environment for it
# 3. pip installs a copy of bindings/python (so no build/ or egg-info lands
#    in the source tree) against the staged libchat
# 4. mypy --strict on the package and examples/python, then pytest
# 5. python -m build makes a wheel that carries libchat.so.1
#    (LIBCHAT_BUNDLE=1); it is installed into a second virtualenv and
#    imported there with neither the stage nor LD_LIBRARY_PATH around
# An ASan build of libchat is loaded with libasan preloaded (Python itself
# is not instrumented), so AddressSanitizer checks libchat under the suite,
# and LeakSanitizer's reports fail it when a leak was allocated by libchat.
set -euo pipefail
build=$(cd "${1:?build dir}" && pwd)
root=$(cd "${2:?source root}" && pwd)
py=${3:-python3}
work=$build/bindings-python
venv=$work/venv
wheelvenv=$work/wheel-venv
mkdir -p "$work"
t0=$(date +%s)

reqs="cffi>=1.15 setuptools>=61 wheel build websockets>=13 aiohttp>=3.9 pytest>=7 pytest-asyncio>=0.23 mypy>=1.8"
pipq=(--quiet --disable-pip-version-check)
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$work/venv.stamp" 2>/dev/null)" != "$reqs" ]; then
  rm -rf "$venv"
  "$py" -m venv "$venv"
  # shellcheck disable=SC2086  # one requirement a word
  "$venv/bin/python" -m pip install "${pipq[@]}" $reqs </dev/null
  echo "$reqs" >"$work/venv.stamp"
fi

stage_env=$("$root/scripts/stage.sh" --build-dir "$build" --stage "$build/stage-python")
eval "$stage_env"
libdir=${LD_LIBRARY_PATH%%:*}

# A sanitizer build: Python must load the ASan runtime first. CPython and
# OpenSSL never free everything at exit, so LeakSanitizer's verdict is not
# taken as is: every report goes to a file, and a leak fails the suite when
# its allocation stack passes through libchat (or the binding's extension);
# any AddressSanitizer error fails it too.
asan=0
# (ldd's whole output first: `ldd | grep -q` under pipefail fails whenever
# grep exits before ldd has written everything.)
deps=$(ldd "$libdir/libchat.so.1" 2>/dev/null || true)
case "$deps" in *libasan*)
  asan=1
  # the very runtime libchat was linked with
  LD_PRELOAD=$(sed -n 's/^[[:space:]]*libasan[^ ]* => \([^ ]*\).*/\1/p' <<<"$deps" | head -n 1)
  export LD_PRELOAD
  rm -rf "$work/asan"
  mkdir -p "$work/asan"
  export ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=1:log_path=$work/asan/report
  export LSAN_OPTIONS=${LSAN_OPTIONS:+$LSAN_OPTIONS:}exitcode=0
  echo "bindings-python: ASan build of libchat, LD_PRELOAD=$LD_PRELOAD" ;;
esac
asan_verdict() {
  [ "$asan" = 1 ] || return 0
  "$venv/bin/python" - "$work/asan" <<'PY'
import glob, re, sys
bad = []
files = sorted(glob.glob(sys.argv[1] + "/report.*"))
for path in files:
    text = open(path, errors="replace").read()
    if "ERROR: AddressSanitizer" in text:
        bad.append(path + ":\n" + text[:6000])
        continue
    for block in re.split(r"\n(?=(?:Direct|Indirect) leak of )", text):
        if re.match(r"(Direct|Indirect) leak of ", block) and \
                re.search(r"\bchat_\w+|libchat\.so|_native\.", block):
            bad.append(path + ":\n" + block[:4000])
print("bindings-python: %d sanitizer report file(s), %d about libchat"
      % (len(files), len(bad)))
for b in bad:
    print(b)
sys.exit(1 if bad else 0)
PY
}

rm -rf "$work/src"
cp -R "$root/bindings/python" "$work/src"
rm -rf "$work/src/build" "$work/src/dist" "$work/src"/src/*.egg-info
"$venv/bin/python" -m pip install "${pipq[@]}" --no-build-isolation --no-deps \
  --force-reinstall "$work/src" </dev/null

cd "$work"
echo "bindings-python: mypy --strict"
"$venv/bin/python" -m mypy --strict --config-file "$work/src/pyproject.toml" \
  --cache-dir "$work/mypy-cache" "$work/src/src/libchat" \
  "$root/examples/python/"*.py "$root/bench/client_rtt.py"

export LIBCHAT_EXAMPLE=$root/examples/python/chat.py
echo "bindings-python: pytest"
rc=0
"$venv/bin/python" -m pytest -q -p no:cacheprovider -o console_output_style=classic \
  -c "$work/src/pyproject.toml" --rootdir "$work/src" "$work/src/tests" || rc=$?
asan_verdict || rc=1
[ $rc -eq 0 ] || exit $rc

echo "bindings-python: wheel in a fresh virtualenv"
rm -rf "$work/dist"
LIBCHAT_BUNDLE=1 "$venv/bin/python" -m build --wheel --no-isolation \
  --outdir "$work/dist" "$work/src" >"$work/wheel-build.log" 2>&1 ||
  { cat "$work/wheel-build.log"; exit 1; }
wheel=$(ls "$work"/dist/libchat-*.whl)
if [ ! -x "$wheelvenv/bin/python" ]; then
  "$py" -m venv "$wheelvenv"
  "$wheelvenv/bin/python" -m pip install "${pipq[@]}" "cffi>=1.15" "websockets>=13" "aiohttp>=3.9" </dev/null
fi
"$wheelvenv/bin/python" -m pip install "${pipq[@]}" --no-deps --force-reinstall "$wheel" </dev/null
(cd / && env -u LD_LIBRARY_PATH -u PKG_CONFIG_PATH -u PKG_CONFIG_SYSROOT_DIR \
  "$wheelvenv/bin/python" -c '
import libchat, libchat.client, libchat.server
assert libchat.decode_frame(b"{\"type\":\"ping\"}") == {"type": "ping"}
print("wheel imports: libchat", libchat.__version__, "on libchat.so", libchat.library_version())
')
echo "bindings-python: done in $(( $(date +%s) - t0 ))s"
