#!/usr/bin/env bash
# Provides Kubernetes control-plane binaries built from Go modules, so that envtest (and later a
# local cluster) needs no release download. Prints the directory holding the binaries.
#
#   hack/envtest-assets.sh                      # kube-apiserver and etcd (what envtest needs)
#   hack/envtest-assets.sh kubelet kubeadm ...  # any of the components listed below
#
# Order of preference: $KUBEBUILDER_ASSETS when it holds every requested binary; binaries already
# under bin/k8s/<version>/ that report the right version; otherwise build them.
set -euo pipefail

KUBE_VERSION="${KUBE_VERSION:-v1.37.2}"
ETCD_VERSION="${ETCD_VERSION:-v3.7.3}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${ROOT}/bin/k8s/${KUBE_VERSION}"
SRC="${ROOT}/bin/k8s/src"

components=("$@")
[ ${#components[@]} -gt 0 ] || components=(kube-apiserver etcd)

log() { echo "envtest-assets: $*" >&2; }

has_all() {
  local dir="$1" c
  for c in "${components[@]}"; do [ -x "${dir}/${c}" ] || return 1; done
}

want_version() {
  case "$1" in
    etcd) echo "${ETCD_VERSION#v}" ;;
    *) echo "${KUBE_VERSION}" ;;
  esac
}

# version_of prints what a binary says its version is; kubeadm and kubectl have no --version flag.
version_of() {
  case "$(basename "$1")" in
    kubeadm) "$1" version -o short ;;
    kubectl) "$1" version --client ;;
    *) "$1" --version ;;
  esac
}

is_current() {
  local bin="$1" c out
  c="$(basename "$bin")"
  [ -x "$bin" ] || return 1
  # Capture first: `... | grep -q` can kill a multi-line writer with SIGPIPE, which pipefail turns
  # into a spurious "not current" (etcd was rebuilt that way).
  out="$(version_of "$bin" 2>/dev/null)" || return 1
  grep -qF "$(want_version "$c")" <<<"$out"
}

if [ -n "${KUBEBUILDER_ASSETS:-}" ] && has_all "${KUBEBUILDER_ASSETS}"; then
  echo "${KUBEBUILDER_ASSETS}"
  exit 0
fi

missing=()
for c in "${components[@]}"; do
  is_current "${OUT}/${c}" || missing+=("$c")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "${OUT}"
  exit 0
fi

mkdir -p "${OUT}" "${SRC}"
export CGO_ENABLED=0 GOFLAGS=-mod=mod

build_etcd() {
  local dir="${SRC}/etcd-${ETCD_VERSION}"
  mkdir -p "$dir"
  cat >"${dir}/main.go" <<'GO'
// Command etcd runs etcd's own main so envtest gets an etcd built from Go modules.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
GO
  if [ ! -f "${dir}/go.mod" ]; then
    (cd "$dir" && go mod init pnsflow.dev/hack/etcd >/dev/null 2>&1 \
      && go mod edit -require="go.etcd.io/etcd/server/v3@${ETCD_VERSION}" && go mod tidy >&2)
  fi
  log "building etcd ${ETCD_VERSION}"
  (cd "$dir" && go build -trimpath -ldflags "-s -w" -o "${OUT}/etcd" .) >&2
}

# k8s.io/kubernetes cannot be `go install`ed: its go.mod replaces its staging modules. A wrapper
# module repeats those replaces, pointing each staging module at its published v0.x release.
kube_wrapper() {
  local dir="${SRC}/kubernetes-${KUBE_VERSION}" staging gomod
  mkdir -p "$dir"
  if [ ! -f "${dir}/go.mod" ]; then
    staging="v0.${KUBE_VERSION#v1.}"
    gomod="$(go mod download -json "k8s.io/kubernetes@${KUBE_VERSION}" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",*$/\1/p')"
    [ -f "$gomod" ] || { log "cannot find go.mod of k8s.io/kubernetes@${KUBE_VERSION}"; exit 1; }
    {
      echo "module pnsflow.dev/hack/kubernetes"
      echo
      echo "go $(go env GOVERSION | sed 's/^go\([0-9]*\.[0-9]*\).*/\1/')"
      echo
      echo "require k8s.io/kubernetes ${KUBE_VERSION}"
      echo
      # Every k8s.io module required at v0.0.0 is a staging module; sample-* ones are not published.
      awk '$1 ~ /^k8s\.io\// && $2 == "v0.0.0" && $1 !~ /^k8s\.io\/sample-/ {print $1}' "$gomod" | sort -u |
        while read -r m; do echo "replace ${m} => ${m} ${staging}"; done
    } >"${dir}/go.mod"
    log "wrapper module has $(grep -c '^replace' "${dir}/go.mod") replace lines"
  fi
  echo "$dir"
}

kube_pkg() {
  case "$1" in
    kube-apiserver | kube-controller-manager | kube-scheduler | kube-proxy | kubelet | kubeadm | kubectl)
      echo "k8s.io/kubernetes/cmd/$1" ;;
    *) log "unknown component: $1"; exit 2 ;;
  esac
}

build_kube() {
  local dir pkgs=() c minor
  dir="$(kube_wrapper)"
  for c in "$@"; do pkgs+=("$(kube_pkg "$c")"); done
  for p in "${pkgs[@]}"; do
    grep -qx "tool $p" "${dir}/go.mod" || (cd "$dir" && go mod edit -tool="$p")
  done
  (cd "$dir" && go mod tidy >&2)
  minor="${KUBE_VERSION#v1.}"; minor="${minor%%.*}"
  local ldflags="-s -w" pkgpath
  for pkgpath in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X ${pkgpath}.gitVersion=${KUBE_VERSION} -X ${pkgpath}.gitMajor=1 -X ${pkgpath}.gitMinor=${minor} -X ${pkgpath}.gitTreeState=clean"
  done
  for c in "$@"; do
    log "building ${c} ${KUBE_VERSION}"
    (cd "$dir" && go build -trimpath -ldflags "$ldflags" -o "${OUT}/${c}" "$(kube_pkg "$c")") >&2
  done
}

kube=()
for c in "${missing[@]}"; do
  if [ "$c" = etcd ]; then build_etcd; else kube+=("$c"); fi
done
[ ${#kube[@]} -eq 0 ] || build_kube "${kube[@]}"

for c in "${components[@]}"; do
  is_current "${OUT}/${c}" || { log "${c} does not report version $(want_version "$c")"; exit 1; }
done
echo "${OUT}"
