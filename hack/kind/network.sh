#!/usr/bin/env bash
# Connects the Pod networks of a multi-node kind cluster built from the local node image, the job
# kindnet does on kind's own images. Idempotent: run by kind-up after it creates the cluster, and
# again after a node container is restarted (its routes are gone; its address may have changed).
#
#   hack/kind/network.sh
#
# The local node image bakes in a bridge CNI config for 10.244.0.0/24. For every node this
#   1. rewrites that config to the node's own spec.podCIDR (before any Pod network is used on a
#      worker: kind-up runs it before anything is deployed);
#   2. routes every other node's podCIDR via that node container's address on the kind network,
#      as Docker has it now (the nodes share that network, so the next hop is directly
#      reachable; the Node's InternalIP can lag behind a restarted node's new address).
# A single-node cluster needs neither and is left alone.
set -euo pipefail
SCRIPT_NAME=kind-network
# shellcheck source=hack/kind/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

CNI_CONF=/etc/cni/net.d/10-pnsflow-bridge.conflist
BAKED_SUBNET=10.244.0.0/24
# kind's Docker network (KIND_EXPERIMENTAL_DOCKER_NETWORK changes it, as for kind itself).
KIND_NETWORK="${KIND_EXPERIMENTAL_DOCKER_NETWORK:-kind}"

use_docker_client
KUBECTL_BIN="$(kubectl_bin)"
k() { "${KUBECTL_BIN}" --context "kind-${KIND_CLUSTER_NAME}" "$@"; }

# nodes prints "name podCIDR address" for every node, waiting until each has a podCIDR; the
# address is the node container's on the kind network (kind names containers as their nodes).
nodes() {
  local deadline=$((SECONDS + 120)) out name cidr
  while :; do
    out="$(k get nodes -o jsonpath='{range .items[*]}{.metadata.name} {.spec.podCIDR}{"\n"}{end}')"
    if ! awk 'NF != 2 { bad = 1 } END { exit !bad }' <<<"$out"; then
      while read -r name cidr; do
        echo "${name} ${cidr} $(docker inspect -f "{{(index .NetworkSettings.Networks \"${KIND_NETWORK}\").IPAddress}}" "$name")"
      done <<<"$out"
      return 0
    fi
    [ "$SECONDS" -lt "$deadline" ] || die "nodes without a podCIDR after 120s: ${out}"
    sleep 2
  done
}

# gateway_of 10.244.1.0/24 prints 10.244.1.1, the bridge's address in that subnet.
gateway_of() { local net="${1%/*}"; echo "${net%.*}.$(( ${net##*.} + 1 ))"; }

main() {
  local list
  list="$(nodes)"
  if [ "$(wc -l <<<"$list")" -le 1 ]; then
    log "one node: nothing to connect"
    return 0
  fi
  local name cidr ip other ocidr oip
  while read -r name cidr ip; do
    if ! docker exec "$name" grep -q "\"${cidr}\"" "$CNI_CONF"; then
      log "${name}: Pod subnet ${cidr} (was the image's ${BAKED_SUBNET})"
      docker exec "$name" sed -i \
        -e "s|\"subnet\": \"[0-9./]*\"|\"subnet\": \"${cidr}\"|" \
        -e "s|\"gateway\": \"[0-9.]*\"|\"gateway\": \"$(gateway_of "$cidr")\"|" "$CNI_CONF"
    fi
    while read -r other ocidr oip; do
      [ "$other" != "$name" ] || continue
      # replace: the route is right whether it was missing, stale (a restarted node's new
      # address) or already there.
      docker exec "$name" ip route replace "$ocidr" via "$oip"
    done <<<"$list"
    log "${name} (${ip}, Pods ${cidr}): routes to the other nodes' Pods set"
  done <<<"$list"
}

main "$@"
