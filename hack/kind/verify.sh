#!/usr/bin/env bash
# Checks the kind cluster the way the operator will use it: the node is Ready, kube-proxy runs,
# and a Pod reaches the API server through the kubernetes Service (10.96.0.1:443) with its
# service-account token. Without kube-proxy that last step times out, which is what the manager
# and every pns-executor would hit.
set -euo pipefail
SCRIPT_NAME=kind-verify
# shellcheck source=hack/kind/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

BUSYBOX_IMG="${BUSYBOX_IMG:-localhost/pnsflow-busybox:test}"
NS=default
POD=pnsflow-service-check

use_docker_client
KUBECTL_BIN="$(kubectl_bin)"
k() { "${KUBECTL_BIN}" --context "kind-${KIND_CLUSTER_NAME}" "$@"; }

# A node container that Docker has just (re)started, as when dockerd comes up again with a cluster
# kept from an earlier run, serves requests before its authorizer has loaded the RBAC objects:
# for a few seconds even kubernetes-admin is Forbidden. Wait until the API server is ready and
# authorizes us before asking it anything else.
log "waiting for the API server to be ready and to authorize kubernetes-admin"
deadline=$((SECONDS + 180))
until k get --raw=/readyz >/dev/null 2>&1 && k get nodes -o name >/dev/null 2>&1; do
  [ "$SECONDS" -lt "$deadline" ] || { k get --raw='/readyz?verbose' >&2 || true; die "the API server was not ready within 180s"; }
  sleep 2
done
run k wait node --all --for=condition=Ready --timeout=180s
run k -n kube-system rollout status daemonset/kube-proxy --timeout=180s

"${ROOT}/hack/images/build.sh" busybox
"${ROOT}/hack/kind/load.sh" "${BUSYBOX_IMG}"

k -n "$NS" delete pod "$POD" --ignore-not-found --wait=true >/dev/null
# The Pod proves the Service path: a TCP connection to 10.96.0.1:443, and an answer that only the
# API server gives (Go's TLS server replies to plain HTTP with "400 ... HTTPS server"). busybox's
# own TLS cannot talk to the API server (its few cipher suites are refused: alert 40), so no
# HTTPS request here; the manager and executor make real API calls through the same path.
run k -n "$NS" run "$POD" --image="${BUSYBOX_IMG}" --image-pull-policy=IfNotPresent --restart=Never \
  --command -- sh -c '
    set -e
    echo "KUBERNETES_SERVICE_HOST=${KUBERNETES_SERVICE_HOST}:${KUBERNETES_SERVICE_PORT}"
    resp="$(printf "GET /version HTTP/1.0\r\n\r\n" | timeout 15 nc -w 5 10.96.0.1 443)"
    printf "%s\n" "$resp"
    printf "%s" "$resp" | grep -q "HTTPS server"
    echo "API server answered through the kubernetes Service"
  ' >/dev/null
phase=""
for _ in $(seq 1 90); do
  phase="$(k -n "$NS" get pod "$POD" -o jsonpath='{.status.phase}' 2>/dev/null || true)"
  case "$phase" in Succeeded | Failed) break ;; esac
  sleep 1
done
k -n "$NS" logs "$POD" >&2 || true
if [ "$phase" != Succeeded ] || ! k -n "$NS" logs "$POD" 2>/dev/null | grep -q 'answered through the kubernetes Service'; then
  k -n "$NS" describe pod "$POD" >&2 || true
  die "a Pod could not reach the API server through the kubernetes Service (phase: ${phase:-unknown})"
fi
k -n "$NS" delete pod "$POD" --wait=false >/dev/null
log "OK: node Ready, kube-proxy running, a Pod reached the API server via 10.96.0.1:443"
