#!/usr/bin/env bash
# Builds the e2e control-plane tools (etcd, kube-apiserver, kubectl, kube-controller-manager,
# helm) from the pinned Go tools modules in hack/tools/{kube,etcd,helm} and caches them OUTSIDE
# the repository:
#
#   ${ERPGUARD_TOOLS_DIR:-$HOME/.cache/erpguard/tools}/<key>/bin/
#
# <key> = first 16 hex digits of sha256(tools go.mod/go.sum files + `go version` + build spec).
# The build runs only when that directory is missing (built in a temp dir, smoke-checked, then
# renamed into place); a warm run only hashes a few files. Builds are serialized with flock.
#
# stdout: ONLY the bin directory path. Progress goes to stderr.
#
# Env:
#   ERPGUARD_TOOLS_DIR   cache root (default $HOME/.cache/erpguard/tools)
#   ERPGUARD_TOOLS_KCM   1 to also build kube-controller-manager (default 0; a separate cache key).
#                        It is not cheap: ~400 s cold on top of kube-apiserver (measured).
#
# Measured on 2 shared cores (Go 1.26.8): cold ~25 min for everything incl. KCM (kube-apiserver
# 450 s, kubectl 43 s, KCM 402 s, etcd 93 s, helm 527 s), ~1.5 GB GOMODCACHE + ~5.3 GB GOCACHE,
# 314 MB of binaries; warm run ~0.1 s. Versions come from the tools modules' go.mod files.
set -euo pipefail

log() { printf '[build-tools] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

script_dir=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
tools_src="$script_dir/tools"
cache_root="${ERPGUARD_TOOLS_DIR:-${HOME:?HOME is not set}/.cache/erpguard/tools}"
with_kcm="${ERPGUARD_TOOLS_KCM:-0}"

command -v go >/dev/null 2>&1 || die "go is not on PATH (need Go >= 1.26)"

# Version of a required module as pinned in a tools go.mod.
mod_version() { # <go.mod> <module path>
  local v
  v=$(awk -v m="$2" '$1 == m && $2 ~ /^v/ {print $2; exit} $1 == "require" && $2 == m {print $3; exit}' "$1")
  [[ -n $v ]] || die "cannot find $2 in $1"
  printf '%s' "$v"
}

kube_version=$(mod_version "$tools_src/kube/go.mod" k8s.io/kubernetes)
etcd_version=$(mod_version "$tools_src/etcd/go.mod" go.etcd.io/etcd/server/v3)
helm_version=$(mod_version "$tools_src/helm/go.mod" helm.sh/helm/v4)
kube_minor=$(cut -d. -f2 <<<"$kube_version")

kube_cmds=(kube-apiserver kubectl)
[[ $with_kcm != 1 ]] || kube_cmds+=(kube-controller-manager)

# Version ldflags as upstream's hack/lib/version.sh sets them; without them the apiserver
# reports v0.0.0-master+$Format:%H$ and helm's kubeVersion checks fail.
kube_ldflags="-s -w"
for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  kube_ldflags+=" -X $p.gitVersion=$kube_version -X $p.gitMajor=1 -X $p.gitMinor=$kube_minor"
  kube_ldflags+=" -X $p.gitTreeState=clean -X $p.gitCommit=module-build -X $p.buildDate=1970-01-01T00:00:00Z"
done
kube_tags="selinux,notest,grpcnotrace"
etcd_ldflags="-s -w"
helm_ldflags="-s -w -X helm.sh/helm/v4/internal/version.version=$helm_version"
helm_ldflags+=" -X helm.sh/helm/v4/internal/version.gitTreeState=clean"

build_spec="spec=1 cgo=0 trimpath kube=[${kube_cmds[*]}] kube_tags=$kube_tags
kube_ldflags=$kube_ldflags
etcd_ldflags=$etcd_ldflags
helm_ldflags=$helm_ldflags"

go_version=$(GOTOOLCHAIN=local go version)
key=$(
  {
    for t in kube etcd helm; do
      printf '== %s\n' "$t"
      cat "$tools_src/$t/go.mod" "$tools_src/$t/go.sum"
    done
    printf '== go\n%s\n== spec\n%s\n' "$go_version" "$build_spec"
  } | sha256sum | cut -c1-16
)
dest="$cache_root/$key"

if [[ -f $dest/.ok ]]; then
  printf '%s\n' "$dest/bin"
  exit 0
fi

mkdir -p "$cache_root"
exec 9>"$cache_root/.lock"
if ! flock -n 9; then
  log "another build holds $cache_root/.lock; waiting"
  flock 9
fi
if [[ -f $dest/.ok ]]; then # built by whoever held the lock
  printf '%s\n' "$dest/bin"
  exit 0
fi

log "cache miss: building kube $kube_version, etcd $etcd_version, helm $helm_version ($go_version)"
log "into $dest (key $key); cold builds take tens of minutes on 2 cores"

# We hold the lock, so any temp dir left is from an interrupted build.
rm -rf -- "$cache_root"/.tmp.*
tmp=$(mktemp -d "$cache_root/.tmp.$key.XXXXXX")
chmod 755 "$tmp"
trap 'rm -rf -- "$tmp"' EXIT
mkdir -p "$tmp/bin"

export CGO_ENABLED=0 GOTOOLCHAIN=local
# Keep the caller's GOFLAGS (e.g. -buildvcs=false); -modcacherw lets CI/cleanup rm -rf the
# module cache. No -mod=mod: the committed go.sum files must be complete.
export GOFLAGS="${GOFLAGS:+$GOFLAGS }-modcacherw"

build() { # <module dir> <out name> <package> <tags> <ldflags>
  local start=$SECONDS
  log "building $2 ($3)"
  (cd "$tools_src/$1" && nice -n 10 go build -trimpath -tags="$4" -ldflags="$5" -o "$tmp/bin/$2" "$3") >&2
  log "built $2 in $((SECONDS - start))s ($(du -h "$tmp/bin/$2" | cut -f1))"
}

# One heavy build at a time: each go build already uses all cores. Shared packages compiled for
# kube-apiserver are reused from GOCACHE by kubectl / kube-controller-manager.
total_start=$SECONDS
for c in "${kube_cmds[@]}"; do
  build kube "$c" "k8s.io/kubernetes/cmd/$c" "$kube_tags" "$kube_ldflags"
done
build etcd etcd go.etcd.io/etcd/server/v3 "" "$etcd_ldflags"
build helm helm helm.sh/helm/v4/cmd/helm "" "$helm_ldflags"

# Smoke checks: the binaries run and report the pinned versions.
expect() { # <description> <needle> <command...>
  local out
  out=$("${@:3}" 2>&1) || die "$1 failed: $out"
  [[ $out == *"$2"* ]] || die "$1: expected '$2' in: $out"
}
expect "kube-apiserver --version" "Kubernetes $kube_version" "$tmp/bin/kube-apiserver" --version
expect "kubectl version --client" "Client Version: $kube_version" "$tmp/bin/kubectl" version --client
if [[ $with_kcm == 1 ]]; then
  expect "kube-controller-manager --version" "Kubernetes $kube_version" "$tmp/bin/kube-controller-manager" --version
fi
expect "etcd --version" "etcd Version: ${etcd_version#v}" "$tmp/bin/etcd" --version
expect "helm version" "$helm_version" env HOME="$tmp" "$tmp/bin/helm" version --short

printf 'KUBE=%s\nETCD=%s\nHELM=%s\nGO=%s\n' "$kube_version" "$etcd_version" "$helm_version" "$go_version" >"$tmp/versions"
printf '%s\n' "$build_spec" >"$tmp/build-spec"
touch "$tmp/.ok"

if [[ -e $dest ]]; then # half-built leftover without .ok (we hold the lock)
  rm -rf -- "$dest"
fi
mv -T -- "$tmp" "$dest"
trap - EXIT
log "done in $((SECONDS - total_start))s: $(du -sh "$dest" | cut -f1) in $dest/bin"
printf '%s\n' "$dest/bin"
