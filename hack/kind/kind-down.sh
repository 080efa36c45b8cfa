#!/usr/bin/env bash
# Deletes the kind cluster and stops the containerd/dockerd that hack/kind/docker.sh started (by
# their recorded PIDs; a daemon we did not start is left running). KEEP_DOCKER=1 keeps ours too.
# The cgroup v1 hierarchies kind-up mounted stay mounted: they are harmless and another user of
# this host may rely on them by now.
set -euo pipefail
SCRIPT_NAME=kind-down
# shellcheck source=hack/kind/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

use_docker_client
if docker_ready && cluster_exists; then
  run kind_cmd delete cluster --name "${KIND_CLUSTER_NAME}"
else
  log "no cluster ${KIND_CLUSTER_NAME} to delete"
fi
if [ "${KEEP_DOCKER:-0}" = 1 ]; then
  log "KEEP_DOCKER=1: leaving the Docker daemon running"
else
  "${ROOT}/hack/kind/docker.sh" down
fi
