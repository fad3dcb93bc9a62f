# Fetch an engine's jars from Maven Central, sourced by svc.sh.
#
# scripts/engines/<name>/pom.xml lists the engine's artifact; Maven copies
# it and its runtime dependencies into
#   $(svc_cache)/engines/<name>-<pom hash>/lib/
# with its local repository in $(svc_cache)/m2 (nothing goes to ~/.m2 or
# into the work tree). The directory name carries a hash of the pom, so a
# version bump fetches anew and an unchanged pom costs one stat. Nothing
# is downloaded from anywhere but the Maven repository Maven is configured
# with (Central by default).

# Prints the lib directory of `name`, fetching it first if needed.
svc_maven_fetch() {
  local name=$1 root pom hash dest cache
  root=$(svc_root)
  pom="$root/scripts/engines/$name/pom.xml"
  [ -f "$pom" ] || svc_die "no $pom"
  cache=$(svc_cache)
  hash=$(sha256sum "$pom" | cut -c1-12)
  dest="$cache/engines/$name-$hash"
  if [ -f "$dest/complete" ]; then
    echo "$dest/lib"
    return 0
  fi
  command -v mvn >/dev/null 2>&1 ||
    svc_die "$name: no mvn (apt-get install maven default-jre-headless; see scripts/services/packages.sh)"
  command -v java >/dev/null 2>&1 || svc_die "$name: no java"
  mkdir -p "$dest"
  rm -rf "$dest/lib.tmp"
  svc_log "$name: fetching jars from Maven Central into $dest (once)"
  local t0
  t0=$(svc_now_ms)
  if ! mvn -q -B -f "$pom" -Dmaven.repo.local="$cache/m2" \
        dependency:copy-dependencies -DincludeScope=runtime \
        -DoutputDirectory="$dest/lib.tmp" >"$dest/fetch.log" 2>&1 </dev/null; then
    tail -n 30 "$dest/fetch.log" >&2
    svc_die "$name: mvn dependency:copy-dependencies failed (log: $dest/fetch.log)"
  fi
  rm -rf "$dest/lib"
  mv "$dest/lib.tmp" "$dest/lib"
  printf '%s jars in %s ms\n' "$(ls "$dest/lib" | wc -l)" \
    "$(( $(svc_now_ms) - t0 ))" >"$dest/complete"
  svc_log "$name: $(cat "$dest/complete")"
  echo "$dest/lib"
}
