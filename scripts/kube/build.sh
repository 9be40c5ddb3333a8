#!/usr/bin/env bash
# Builds kube-apiserver, kube-controller-manager and kube-scheduler v1.20.2 from Debian bookworm's
# `kubernetes` source package, for the Kubernetes-mode tests (test/kube/cluster.ts). No Kubernetes
# distribution can be downloaded on these machines; the source package carries the full upstream
# tree with vendor/, and Debian's Go builds it offline. See /work/shared/KUBE-APISERVER.md.
#
# Idempotent: the binaries are cached outside the repo, keyed by the source version, in
#   ${IPKEEPER_KUBE_CACHE:-/var/cache/ipkeeper-kube}/<version>/bin/
# When all three are there it prints that directory and exits at once (no root needed). Otherwise
# (as root) it installs golang-1.19-go, etcd-server and golang-github-modern-go-reflect2-dev,
# fetches the source, builds, caches, and removes the build tree (~3 GB: source + Go build cache).
#
# stdout: the bin directory, one line, and nothing else. Progress goes to stderr.
# Env: IPKEEPER_KUBE_CACHE   cache root (default /var/cache/ipkeeper-kube)
#      IPKEEPER_KUBE_BUILD   build dir (default /var/tmp/ipkeeper-kube-build); kept on failure
# Usage: scripts/kube/build.sh [--print-bin-dir]   (the option prints the path without building)
set -euo pipefail

readonly SRC_PACKAGE=kubernetes
readonly SRC_VERSION='1.20.5+really1.20.2-1.1+deb12u1'
readonly KUBE_VERSION=v1.20.2
readonly COMPONENTS=(kube-apiserver kube-controller-manager kube-scheduler)
readonly CACHE_ROOT="${IPKEEPER_KUBE_CACHE:-/var/cache/ipkeeper-kube}"
readonly BIN_DIR="$CACHE_ROOT/$SRC_VERSION/bin"
readonly BUILD="${IPKEEPER_KUBE_BUILD:-/var/tmp/ipkeeper-kube-build}"
readonly GO_ROOT=/usr/lib/go-1.19
readonly REFLECT2_DEBIAN=/usr/share/gocode/src/github.com/modern-go/reflect2
# Build dir, Go cache and source tree peak at ~3 GB; refuse early rather than fail at minute 5.
readonly NEED_FREE_KB=$((4 * 1024 * 1024))

log() { printf '[kube-build %4ds] %s\n' "$SECONDS" "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}

have_binaries() {
  local c
  for c in "${COMPONENTS[@]}"; do [[ -x "$BIN_DIR/$c" ]] || return 1; done
}

if [[ "${1:-}" == --print-bin-dir ]]; then
  echo "$BIN_DIR"
  exit 0
fi
if have_binaries; then
  echo "$BIN_DIR"
  exit 0
fi

[[ $(id -u) == 0 ]] || die "the binaries are not in $BIN_DIR and building them needs root (apt-get): run sudo $0"

# One build at a time: a second caller waits here, then finds the binaries and leaves.
mkdir -p "$CACHE_ROOT"
exec 9>"$CACHE_ROOT/.build.lock"
if ! flock -n 9; then
  log "another build holds $CACHE_ROOT/.build.lock; waiting for it"
  flock 9
fi
if have_binaries; then
  log "built by the other caller"
  echo "$BIN_DIR"
  exit 0
fi

log "building ${COMPONENTS[*]} $KUBE_VERSION from Debian source $SRC_PACKAGE $SRC_VERSION"
log "build dir $BUILD, cache $BIN_DIR"

# --- packages ---------------------------------------------------------------------------------
missing=()
for p in golang-1.19-go etcd-server golang-github-modern-go-reflect2-dev dpkg-dev; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]} > 0)); then
  log "apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
  # etcd-server's package starts a system etcd on :2379 where systemd runs; the tests run their own.
  if [[ " ${missing[*]} " == *' etcd-server '* ]]; then systemctl stop etcd 2>/dev/null || true; fi
fi
[[ -x "$GO_ROOT/bin/go" ]] || die "$GO_ROOT/bin/go missing after installing golang-1.19-go"

# --- build dir ----------------------------------------------------------------------------------
[[ "$BUILD" == /*/* ]] || die "IPKEEPER_KUBE_BUILD=$BUILD: want an absolute path at least two levels deep (it is rm -rf'd)"
rm -rf "$BUILD"
mkdir -p "$BUILD"
free_kb=$(df -Pk "$BUILD" | awk 'NR == 2 { print $4 }')
((free_kb >= NEED_FREE_KB)) || die "only $((free_kb / 1024)) MB free under $BUILD; the build needs ~4 GB"

# --- source -------------------------------------------------------------------------------------
# A temporary deb-src entry for the archive and suites that already serve kubernetes-client, in
# the format used here (deb822 .sources, or one-line .list). It lives in the build dir and apt is
# pointed at it (and at private index lists) by -o options, so /etc/apt and /var/lib/apt/lists are
# never touched; removing the build dir removes the entry.
archive_uri=$(apt-cache madison kubernetes-client | awk -F'|' -v v="$SRC_VERSION" '
  { gsub(/ /, "", $2) } $2 == v { split($3, a, " "); print a[1]; exit }')
[[ -n "$archive_uri" ]] || die "no apt archive offers kubernetes-client $SRC_VERSION (apt-get update?)"
apt_dir="$BUILD/apt"
mkdir -p "$apt_dir/sources.list.d" "$apt_dir/lists/partial"
shopt -s nullglob
for f in /etc/apt/sources.list.d/*.sources; do
  # Whole stanzas of Types containing deb whose URIs name the archive, Types switched to deb-src.
  awk -v uri="$archive_uri" '
    function flush() {
      if (n > 0 && isdeb && hasuri && !disabled) { for (i = 1; i <= n; i++) print lines[i]; print "" }
      n = 0; isdeb = 0; hasuri = 0; disabled = 0
    }
    /^[[:space:]]*$/ { flush(); next }
    /^#/ { next }
    /^Types:/ { if ($0 ~ /[[:space:]]deb([[:space:]]|$)/) isdeb = 1; lines[++n] = "Types: deb-src"; next }
    /^URIs:/ { for (i = 2; i <= NF; i++) if ($i == uri || $i == uri "/") hasuri = 1 }
    /^Enabled:[[:space:]]*no/ { disabled = 1 }
    { lines[++n] = $0 }
    END { flush() }' "$f" >>"$apt_dir/sources.list.d/ipkeeper-kube-src.sources"
done
for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
  [[ -f "$f" ]] || continue
  awk -v uri="$archive_uri" '
    $1 == "deb" { for (i = 2; i <= NF; i++) if ($i == uri || $i == uri "/") { sub(/^deb/, "deb-src"); print; next } }
  ' "$f" >>"$apt_dir/sources.list.d/ipkeeper-kube-src.list"
done
shopt -u nullglob
[[ -s "$apt_dir/sources.list.d/ipkeeper-kube-src.sources" || -s "$apt_dir/sources.list.d/ipkeeper-kube-src.list" ]] ||
  die "found no deb entry for $archive_uri in /etc/apt to derive a deb-src entry from"
log "temporary deb-src entry for $archive_uri:"
cat "$apt_dir"/sources.list.d/* | sed 's/^/    /' >&2
apt_opts=(
  -o "Dir::Etc::sourcelist=$apt_dir/none"
  -o "Dir::Etc::sourceparts=$apt_dir/sources.list.d"
  -o "Dir::State::Lists=$apt_dir/lists"
  -o "Dir::Cache::pkgcache=" -o "Dir::Cache::srcpkgcache="
  -o "APT::Sandbox::User=root"
)
log "apt-get update (source indexes only, into the build dir)"
apt-get "${apt_opts[@]}" update -qq >&2
mkdir -p "$BUILD/dl"
log "apt-get source --download-only $SRC_PACKAGE=$SRC_VERSION"
(cd "$BUILD/dl" && apt-get "${apt_opts[@]}" source --download-only -qq "$SRC_PACKAGE=$SRC_VERSION" >&2)
rm -rf "$apt_dir"

# GOPATH mode, as upstream 1.20 itself built: module mode fails with Go 1.19 ("updates to go.mod
# needed, disabled by -mod=vendor"). The tree is unpacked straight into GOPATH.
export GOPATH="$BUILD/gopath" GOCACHE="$BUILD/gocache" GOROOT="$GO_ROOT"
export GO111MODULE=off GOPROXY=off GOFLAGS= CGO_ENABLED=0 GOTOOLCHAIN=local
export PATH="$GO_ROOT/bin:$PATH"
tree="$GOPATH/src/k8s.io/kubernetes"
mkdir -p "$(dirname "$tree")"
log "dpkg-source -x (upstream tree + Debian patches)"
# apt-get already checked the files against the signed Sources index.
dpkg-source --no-check -x "$BUILD/dl/${SRC_PACKAGE}_${SRC_VERSION}.dsc" "$tree" >/dev/null
rm -rf "$BUILD/dl"
cd "$tree"

# The vendored github.com/modern-go/reflect2 v1.0.1 breaks on Go >= 1.18 (it reads runtime
# internals that moved); Debian's 1.0.2 has the fix and the same API.
log "replacing vendored reflect2 with Debian's $(dpkg-query -W -f='${Version}' golang-github-modern-go-reflect2-dev)"
rm -f vendor/github.com/modern-go/reflect2/*.go vendor/github.com/modern-go/reflect2/*.s
find "$REFLECT2_DEBIAN" -maxdepth 1 -type f \( -name '*.go' -o -name '*.s' \) ! -name '*_test.go' \
  -exec cp {} vendor/github.com/modern-go/reflect2/ \;

# pkg/generated/openapi/zz_generated.openapi.go comes from the upstream Makefile's gen_openapi, not
# the tarball. Same input set as build/root/Makefile.generated_files + cache_go_dirs.sh: the Go
# files outside vendor/, _* and .* (staging/src/ named as vendor/, where its symlinks point) that
# carry a +k8s: tag and among them +k8s:openapi-gen=, minus code-generator and sample-apiserver;
# their dirs are the input packages. The report matching upstream's exception list checks this.
log "building openapi-gen"
go build -o "$BUILD/tools/openapi-gen" ./vendor/k8s.io/kube-openapi/cmd/openapi-gen
log "finding +k8s:openapi-gen packages"
openapi_dirs=$(
  find -H . -not \( \( -path './_*' -o -path './.*' -o -path ./vendor \) -prune \) -type f -name '*.go' -print0 |
    { xargs -0 grep --color=never -l '^// *+k8s:' || true; } |
    sed -e 's|^\./||' -e 's|^staging/src/|vendor/|' |
    { grep -v -e '^vendor/k8s.io/code-generator/' -e '^vendor/k8s.io/sample-apiserver/' || true; } |
    { xargs grep --color=never -l '+k8s:openapi-gen=' || true; } | xargs -n1 dirname | LC_ALL=C sort -u |
    sed 's|^|k8s.io/kubernetes/|' | paste -sd, -
)
log "openapi-gen over $(tr ',' '\n' <<<"$openapi_dirs" | wc -l) packages"
"$BUILD/tools/openapi-gen" --logtostderr \
  -i "$openapi_dirs" \
  -p k8s.io/kubernetes/pkg/generated/openapi \
  -O zz_generated.openapi \
  -h vendor/k8s.io/code-generator/hack/boilerplate.go.txt \
  -r "$BUILD/openapi-violations.report" 2>"$BUILD/openapi-gen.log" ||
  die "openapi-gen failed; see $BUILD/openapi-gen.log"
[[ -s pkg/generated/openapi/zz_generated.openapi.go ]] || die "openapi-gen wrote no pkg/generated/openapi/zz_generated.openapi.go"
if diff -q "$BUILD/openapi-violations.report" api/api-rules/violation_exceptions.list >/dev/null; then
  log "API rule violations match upstream's api/api-rules/violation_exceptions.list"
else
  log "warning: API rule violations differ from upstream's list (input set drifted?)"
fi

# Version stamps, as hack/lib/version.sh would set them for a clean v1.20.2 checkout.
ldflags="-s -w"
for pkg in k8s.io/kubernetes/vendor/k8s.io/component-base/version k8s.io/kubernetes/vendor/k8s.io/client-go/pkg/version; do
  ldflags+=" -X $pkg.gitVersion=$KUBE_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=20"
  ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
done

compile_started=$SECONDS
log "go build ${COMPONENTS[*]} ($(nproc) cores; ~5-6 min on 2)"
mkdir -p "$BUILD/out"
go build -ldflags "$ldflags" -o "$BUILD/out/" "${COMPONENTS[@]/#/./cmd/}"
log "compiled in $((SECONDS - compile_started)) s"

for c in "${COMPONENTS[@]}"; do
  v=$("$BUILD/out/$c" --version 2>&1 || true)
  [[ "$v" == "Kubernetes $KUBE_VERSION" ]] || die "$c --version says '$v', want 'Kubernetes $KUBE_VERSION'"
done

# Into the cache by rename, so a reader never sees half a binary.
mkdir -p "$CACHE_ROOT/$SRC_VERSION"
staging="$CACHE_ROOT/$SRC_VERSION/bin.partial.$$"
rm -rf "$staging"
cp -a "$BUILD/out" "$staging"
rm -rf "$BIN_DIR"
mv "$staging" "$BIN_DIR"
cd /
# Go marks module-cache files read-only; the GOPATH-mode cache is writable, but be safe.
chmod -R u+w "$BUILD" 2>/dev/null || true
rm -rf "$BUILD"
log "done in $SECONDS s total: $(du -sh "$BIN_DIR" | cut -f1) in $BIN_DIR"
echo "$BIN_DIR"
