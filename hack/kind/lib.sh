# shellcheck shell=bash
# Shared helpers for the hack/kind and hack/images scripts. Source it; it sets no shell options of
# its own beyond what the caller has (every caller runs with `set -euo pipefail`).
#
# Everything these scripts build or start lives under bin/ (never committed):
#   bin/kind/run/     PIDs and logs of the containerd/dockerd we started, dockerd's config
#   bin/kind/cache/   debootstrap rootfs tarballs, built images saved as tarballs
#   bin/kind/build/   scratch space for image build contexts
#   bin/k8s/<ver>/    kube binaries (hack/envtest-assets.sh)

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
KUBE_VERSION="${KUBE_VERSION:-v1.37.2}"
KIND_CLUSTER_NAME="${KIND_CLUSTER_NAME:-pnsflow}"
BIN_DIR="${ROOT}/bin"
KIND_DIR="${BIN_DIR}/kind"
RUN_DIR="${KIND_DIR}/run"
# shellcheck disable=SC2034 # used by the scripts that source this file
CACHE_DIR="${KIND_DIR}/cache"
# shellcheck disable=SC2034
BUILD_DIR="${KIND_DIR}/build"
# The node image we build when no kindest/node image for this minor can be had.
LOCAL_NODE_IMAGE="${LOCAL_NODE_IMAGE:-localhost/pnsflow-kind-node:${KUBE_VERSION}}"
# The runc stand-in (hack/kind/runc-wrapper), used only where CAP_SYS_RESOURCE is missing.
RUNC_WRAPPER="${KIND_DIR}/pnsflow-runc"

SCRIPT_NAME="${SCRIPT_NAME:-$(basename "$0" .sh)}"

log() { printf '%s %s: %s\n' "$(date +%H:%M:%S)" "${SCRIPT_NAME}" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
# run prints a command before running it, so the scripts stay loud about what they change.
run() { log "+ $*"; "$@"; }

# timed runs a command and logs how long it took (the numbers go into the issue's notes).
timed() {
  local label="$1" start end
  shift
  start=$(date +%s)
  "$@"
  end=$(date +%s)
  log "TIME ${label}: $((end - start))s"
}

# host_lacks_cap_sys_resource: true when this host's capability bounding set has no
# CAP_SYS_RESOURCE (bit 24), as on Firecracker VMs. Privileged containers then cannot start unless
# runc drops that capability (hack/kind/runc-wrapper).
host_lacks_cap_sys_resource() {
  local bnd
  bnd="$(awk '/^CapBnd:/ {print $2}' /proc/self/status)"
  [ -n "$bnd" ] && (( (16#${bnd} >> 24 & 1) == 0 ))
}

# host_cgroup_v1: true on a cgroup v1 (or hybrid) host, where kubelet 1.35+ refuses to start
# unless failCgroupV1 is false.
host_cgroup_v1() { [ ! -f /sys/fs/cgroup/cgroup.controllers ]; }

# build_runc_wrapper builds the static runc stand-in into bin/kind when missing or stale.
build_runc_wrapper() {
  local src="${ROOT}/hack/kind/runc-wrapper"
  if [ -x "${RUNC_WRAPPER}" ] && [ -z "$(find "${src}" -newer "${RUNC_WRAPPER}" -name '*.go' -print -quit)" ]; then
    return 0
  fi
  mkdir -p "${KIND_DIR}"
  log "building the runc wrapper into ${RUNC_WRAPPER}"
  (cd "${src}" && CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath -ldflags "-s -w" -o "${RUNC_WRAPPER}" .)
}

# our_pid NAME prints the PID recorded for a daemon we started, if that process still runs the
# same program (a stale file or a reused PID is ignored).
our_pid() {
  local name="$1" file="${RUN_DIR}/$1.pid" pid
  [ -f "$file" ] || return 1
  pid="$(cat "$file")"
  [ -n "$pid" ] && [ -r "/proc/${pid}/cmdline" ] || return 1
  tr '\0' ' ' <"/proc/${pid}/cmdline" | grep -q "${name}" || return 1
  echo "$pid"
}

# use_docker_client puts the daemon's own client first on PATH when the daemon is Debian's
# docker.io: the `docker` first on PATH may be a much newer CLI whose `docker build` wants buildx.
# kind runs `docker` from PATH, so this also decides what kind talks with.
use_docker_client() {
  local server client_dir="${RUN_DIR}/client"
  [ -x /usr/bin/docker ] || return 0
  server="$(/usr/bin/docker version --format '{{.Server.Version}}' 2>/dev/null || true)"
  [ -n "$server" ] || return 0
  if [ "$(/usr/bin/docker version --format '{{.Client.Version}}' 2>/dev/null)" = "$server" ]; then
    mkdir -p "$client_dir"
    ln -sfn /usr/bin/docker "${client_dir}/docker"
    case ":${PATH}:" in *":${client_dir}:"*) ;; *) export PATH="${client_dir}:${PATH}" ;; esac
  fi
}

docker_ready() { docker info >/dev/null 2>&1; }

# kind_bin prints the path of kind, pinned in go.mod as a tool and built into Go's cache.
kind_bin() { (cd "${ROOT}" && go tool -n kind); }

kind_cmd() {
  local k
  k="$(kind_bin)"
  "$k" "$@"
}

# kubectl_bin prints the kubectl to use: $KUBECTL, the one on PATH, else one built from source.
kubectl_bin() {
  if [ -n "${KUBECTL:-}" ] && command -v "${KUBECTL}" >/dev/null 2>&1; then
    command -v "${KUBECTL}"
  elif command -v kubectl >/dev/null 2>&1; then
    command -v kubectl
  else
    echo "$("${ROOT}/hack/envtest-assets.sh" kubectl)/kubectl"
  fi
}

cluster_exists() { kind_cmd get clusters 2>/dev/null | grep -qx "${KIND_CLUSTER_NAME}"; }
