#!/usr/bin/env bash
# The 'bindings-java' meson test: stage this build's libchat, build the JNI
# library against it (build-native.sh), then run the JUnit suite with
# Maven, its output under the build directory (nothing in the source tree;
# the local repository stays the default ~/.m2). Fails on any -Xcheck:jni
# warning the suite's JVM printed. Prints the wall time.
#
# Usage: meson-test.sh BUILD_DIR CHATD
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
build=$(cd "$1" && pwd)
chatd=$2
t0=$(date +%s)
jni=$("$here/build-native.sh" --build-dir "$build" --out "$build/java-jni")
mvn_out=$build/java-maven
rm -rf "$mvn_out/surefire-reports"
# (sed: Maven 3.8's -q still prints colour resets)
set +e
mvn -B -q -Dstyle.color=never -f "$here/../pom.xml" verify \
  -DbuildDir="$mvn_out" -Dlibchat.native.skip=true \
  -Dlibchat.jni.dir="$jni" -Dchatd="$chatd" </dev/null 2>&1 |
  sed 's/\x1b\[[0-9;]*m//g'
status=${PIPESTATUS[0]}
set -e
# -Xcheck:jni writes its warnings straight to the forked JVM's stdout,
# which surefire keeps in *.dumpstream files.
if grep -h -E 'WARNING in native method|JNI local refs|FATAL ERROR in native method' \
     "$mvn_out"/surefire-reports/*.dumpstream 2>/dev/null | head -n 20; then
  echo "bindings-java: -Xcheck:jni warnings (above; all in $mvn_out/surefire-reports)"
  status=1
fi
if [ "$status" = 0 ]; then
  # The XML reports count each test of a parametrized class (the .txt
  # summaries do not).
  tests=$(cat "$mvn_out"/surefire-reports/TEST-*.xml | grep -c '<testcase ' || true)
  bad=$(cat "$mvn_out"/surefire-reports/TEST-*.xml | grep -c -E '<(failure|error)[ >]' || true)
  skipped=$(cat "$mvn_out"/surefire-reports/TEST-*.xml | grep -c '<skipped' || true)
  passed=$((tests - bad - skipped)); failed=$bad
  echo "bindings-java: $passed passed, $failed failed, $skipped skipped in $(( $(date +%s) - t0 )) s"
fi
exit "$status"
