#!/usr/bin/env bash
# Brings up the local kind cluster "${KIND_CLUSTER_NAME}" (default pnsflow), offline if it must.
#
#   hack/kind/kind-up.sh            # idempotent: an existing cluster is kept
#   KIND_RECREATE=1 hack/kind/kind-up.sh
#   KIND_PROXY_MODE=nftables KIND_RECREATE=1 hack/kind/kind-up.sh
#   KIND_WORKERS=2 KIND_RECREATE=1 hack/kind/kind-up.sh   # 1 control plane + 2 workers (as CI)
#
# KIND_WORKERS (default 0: one node that runs everything, the quickest to start) adds worker
# nodes from the same node image, labelled pnsflow.dev/worker=w1, w2, ...; the control plane then
# keeps its NoSchedule taint, so Pods run on the workers.
#
# Steps, each detecting first and changing nothing it does not need to:
#   1. a Docker daemon (hack/kind/docker.sh up: Debian's docker.io, started by hand, runc wrapper
#      where the host lacks CAP_SYS_RESOURCE);
#   2. cgroup v1 host fixes: mount the hugetlb, perf_event and net_cls,net_prio hierarchies when
#      the host has not, since kubelet inside the node fails with "cgroup ["kubelet"] has some
#      missing paths: /sys/fs/cgroup/hugetlb/kubelet.slice" without them;
#   3. the node image (hack/kind/node-image.sh: kindest/node if present or pullable, else built);
#   4. `kind create cluster` with a config written to bin/kind/kind-config.yaml;
#   5. with workers, each node's Pod subnet and routes to the others' (hack/kind/network.sh);
#   6. a check that a Pod reaches the API server through the kubernetes Service (10.96.0.1), i.e.
#      that kube-proxy works (hack/kind/verify.sh).
set -euo pipefail
SCRIPT_NAME=kind-up
# shellcheck source=hack/kind/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

KIND_CONFIG="${KIND_DIR}/kind-config.yaml"
KIND_WAIT="${KIND_WAIT:-180s}"
# kube-proxy's mode; the local kube-proxy image carries the tools for both.
KIND_PROXY_MODE="${KIND_PROXY_MODE:-iptables}"
KIND_WORKERS="${KIND_WORKERS:-0}"
[[ "$KIND_WORKERS" =~ ^[0-9]+$ ]] || die "KIND_WORKERS must be a number of worker nodes, not ${KIND_WORKERS}"

# The v1 hierarchies kubelet's cgroup manager insists on; "net_cls,net_prio" is one co-mount.
# shellcheck disable=SC2054 # "net_cls,net_prio" is one element: a co-mounted pair
CGROUP_V1_SETS=(hugetlb perf_event net_cls,net_prio)

cgroup_v1_mounted() {
  local ctrl="$1"
  awk -v c="$ctrl" '$3 == "cgroup" { n = split($4, o, ","); for (i = 1; i <= n; i++) if (o[i] == c) found = 1 } END { exit !found }' /proc/mounts
}

cgroup_v1_enabled() { awk -v c="$1" '$1 == c && $4 == 1 { found = 1 } END { exit !found }' /proc/cgroups; }

fix_cgroup_v1_host() {
  if ! host_cgroup_v1; then
    log "cgroup v2 host: no cgroup fixes needed"
    return 0
  fi
  local set ctrl missing
  for set in "${CGROUP_V1_SETS[@]}"; do
    missing=0
    for ctrl in ${set//,/ }; do
      cgroup_v1_enabled "$ctrl" || { log "cgroup v1: kernel has no ${ctrl} controller; skipping ${set}"; continue 2; }
      cgroup_v1_mounted "$ctrl" || missing=1
    done
    [ "$missing" = 1 ] || continue
    log "cgroup v1 host: the ${set} hierarchy is not mounted; mounting it (kubelet needs it)"
    run mkdir -p "/sys/fs/cgroup/${set}"
    run mount -t cgroup -o "${set}" cgroup "/sys/fs/cgroup/${set}"
    if [[ "$set" == *,* ]]; then
      # as systemd lays them out: one mount, a symlink per controller
      for ctrl in ${set//,/ }; do [ -e "/sys/fs/cgroup/${ctrl}" ] || run ln -s "${set}" "/sys/fs/cgroup/${ctrl}"; done
    fi
  done
}

# write_kind_config NODE_IMAGE LOCAL: the cluster config; LOCAL=1 for our offline node image.
write_kind_config() {
  local image="$1" local_image="$2" lacks_cap=0 v1=0
  host_lacks_cap_sys_resource && lacks_cap=1
  host_cgroup_v1 && v1=1
  build_runc_wrapper
  {
    echo "# Written by hack/kind/kind-up.sh for ${image}; regenerated on every run."
    echo "kind: Cluster"
    echo "apiVersion: kind.x-k8s.io/v1alpha4"
    echo "networking:"
    echo "  kubeProxyMode: ${KIND_PROXY_MODE}"
    if [ "$local_image" = 1 ]; then
      echo "  # the local node image bakes in a bridge + host-local CNI config (no kindnet image)"
      echo "  disableDefaultCNI: true"
    fi
    echo "nodes:"
    local i role labels
    for ((i = 0; i <= KIND_WORKERS; i++)); do
      role=worker labels="    pnsflow.dev/worker: w${i}"
      [ "$i" -gt 0 ] || role=control-plane labels=""
      echo "- role: ${role}"
      [ -z "$labels" ] || printf '  labels:\n%s\n' "$labels"
      # The runc wrapper runs every container: it drops CAP_SYS_RESOURCE where the host lacks it
      # and injects the faults a Pod asks for (fault.pnsflow.dev/* annotations, passed through by
      # containerd into each container's spec); otherwise it only execs runc.
      echo "  extraMounts:"
      echo "  - hostPath: ${RUNC_WRAPPER}"
      echo "    containerPath: /usr/local/sbin/pnsflow-runc"
      echo "    readOnly: true"
    done
    echo "containerdConfigPatches:"
    echo "- |-"
    if [ "$lacks_cap" = 1 ]; then
      echo "  # The host lacks CAP_SYS_RESOURCE, so the node's containerd must not raise oom_score_adj"
      echo "  # (runc: \"can't get final child's PID from pipe: EOF\") and must drop that capability."
      echo "  [plugins.\"io.containerd.grpc.v1.cri\"]"
      echo "    restrict_oom_score_adj = true"
    fi
    echo "  [plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc]"
    echo "    pod_annotations = [\"fault.pnsflow.dev/*\"]"
    echo "  [plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc.options]"
    echo "    BinaryName = \"/usr/local/sbin/pnsflow-runc\""
    if [ "$local_image" = 1 ] || [ "$v1" = 1 ]; then echo "kubeadmConfigPatches:"; fi
    if [ "$local_image" = 1 ]; then
      echo "# control-plane images are preloaded as localhost/*; there is no CoreDNS image"
      echo "- |"
      echo "  kind: ClusterConfiguration"
      echo "  imageRepository: localhost"
      echo "- |"
      echo "  kind: InitConfiguration"
      echo "  skipPhases: [preflight, addon/coredns]"
      if [ "$KIND_WORKERS" -gt 0 ]; then
        echo "- |"
        echo "  kind: JoinConfiguration"
        echo "  skipPhases: [preflight]"
      fi
    fi
    if [ "$v1" = 1 ]; then
      echo "# cgroup v1 host: kubelet >= 1.35 refuses to start on v1 unless told"
      echo "- |"
      echo "  kind: KubeletConfiguration"
      echo "  failCgroupV1: false"
    fi
  } >"$KIND_CONFIG"
  log "kind config: ${KIND_CONFIG} (workers: ${KIND_WORKERS}, CAP_SYS_RESOURCE missing: ${lacks_cap}, cgroup v1: ${v1}, local image: ${local_image})"
}

# stopped_nodes prints the cluster's node containers that are not running.
stopped_nodes() {
  local node
  for node in $(kind_cmd get nodes --name "${KIND_CLUSTER_NAME}" 2>/dev/null); do
    [ "$(docker inspect -f '{{.State.Running}}' "$node" 2>/dev/null || true)" = true ] || echo "$node"
  done
}

# connect_nodes sets up Pod networking across nodes; only the local image lacks kindnet for it.
connect_nodes() {
  [ "$(docker inspect -f '{{.Config.Image}}' "${KIND_CLUSTER_NAME}-control-plane")" = "${LOCAL_NODE_IMAGE}" ] || return 0
  "${ROOT}/hack/kind/network.sh"
}

# keep_cluster brings an existing cluster's stopped nodes back and checks it.
keep_cluster() {
  local stopped have
  stopped="$(stopped_nodes)"
  if [ -n "$stopped" ]; then
    log "cluster ${KIND_CLUSTER_NAME} exists but nodes are stopped; starting them"
    # shellcheck disable=SC2086 # one word per node
    run docker start $stopped >/dev/null
  else
    log "cluster ${KIND_CLUSTER_NAME} exists and runs; keeping it (KIND_RECREATE=1 to rebuild)"
  fi
  have="$(kind_cmd get nodes --name "${KIND_CLUSTER_NAME}" | grep -c -- '-worker' || true)"
  [ "$have" = "$KIND_WORKERS" ] || log "WARNING: the cluster has ${have} workers, not KIND_WORKERS=${KIND_WORKERS} (KIND_RECREATE=1 to rebuild)"
  run kind_cmd export kubeconfig --name "${KIND_CLUSTER_NAME}"
  connect_nodes
  "${ROOT}/hack/kind/verify.sh"
}

main() {
  "${ROOT}/hack/kind/docker.sh" up
  use_docker_client
  fix_cgroup_v1_host

  if cluster_exists; then
    if [ "${KIND_RECREATE:-0}" = 1 ]; then
      log "KIND_RECREATE=1: deleting cluster ${KIND_CLUSTER_NAME}"
      run kind_cmd delete cluster --name "${KIND_CLUSTER_NAME}"
    else
      keep_cluster
      return 0
    fi
  fi

  local image local_image=0
  image="$("${ROOT}/hack/kind/node-image.sh")"
  [ "$image" != "${LOCAL_NODE_IMAGE}" ] || local_image=1
  write_kind_config "$image" "$local_image"
  timed "kind create cluster" run kind_cmd create cluster --name "${KIND_CLUSTER_NAME}" \
    --image "$image" --config "$KIND_CONFIG" --wait "${KIND_WAIT}"
  connect_nodes
  "${ROOT}/hack/kind/verify.sh"
}

main "$@"
