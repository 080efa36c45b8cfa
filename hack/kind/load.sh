#!/usr/bin/env bash
# Loads local Docker images into the kind cluster's node (kind load docker-image), so Pods use
# them without a registry. Images must not be tagged :latest (kubelet would try to pull those).
#   hack/kind/load.sh IMAGE...
set -euo pipefail
SCRIPT_NAME=kind-load
# shellcheck source=hack/kind/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[ $# -gt 0 ] || die "usage: $0 IMAGE..."
use_docker_client
docker_ready || die "no Docker daemon answers: run make kind-up first"
cluster_exists || die "no kind cluster ${KIND_CLUSTER_NAME}: run make kind-up first"
for img in "$@"; do
  docker image inspect "$img" >/dev/null 2>&1 || die "image ${img} is not in Docker: run make images first"
  last="${img##*/}"
  [[ "$last" == *:* && "$last" != *:latest ]] || die "${img}: give it a tag other than latest"
done
timed "kind load ($#)" run kind_cmd load docker-image --name "${KIND_CLUSTER_NAME}" "$@"
