#!/usr/bin/env bash
# The last part of `make quickstart` (after kind-up, images, kind-load and deploy): wait for the
# manager, deploy SeaweedFS as the default artifact repository (config/seaweedfs), apply
# config/samples, and show `kubectl get stepruns -o wide` once the sample StepRun and the sample
# WorkflowRun that passes artifacts between its steps have ended.
# Exits non-zero unless both end Succeeded.
set -euo pipefail
SCRIPT_NAME=quickstart
# shellcheck source=hack/kind/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

EXECUTOR_IMG="${EXECUTOR_IMG:-pnsflow/pns-executor:dev}"
NS=pnsflow-system
SAMPLE=hello
ARTIFACT_SAMPLE=hello-artifacts
TIMEOUT="${QUICKSTART_TIMEOUT:-180}"

KUBECTL_BIN="$(kubectl_bin)"
k() { "${KUBECTL_BIN}" --context "kind-${KIND_CLUSTER_NAME}" "$@"; }

# check_executor_settings: images loaded with `kind load` exist only in the node, so the manager
# must not make kubelet pull the executor image (config/manager sets IfNotPresent).
check_executor_settings() {
  local env image policy
  env="$(k -n "$NS" get deployment pnsflow-manager -o jsonpath='{range .spec.template.spec.containers[0].env[*]}{.name}={.value}{"\n"}{end}')"
  image="$(sed -n 's/^PNSFLOW_EXECUTOR_IMAGE=//p' <<<"$env")"
  policy="$(sed -n 's/^PNSFLOW_EXECUTOR_IMAGE_PULL_POLICY=//p' <<<"$env")"
  log "manager: executor image ${image:-?}, pull policy ${policy:-?}"
  [ "$image" = "${EXECUTOR_IMG}" ] || die "the manager's executor image is ${image:-unset}, want ${EXECUTOR_IMG}"
  case "$policy" in
    IfNotPresent | Never) ;;
    *) die "PNSFLOW_EXECUTOR_IMAGE_PULL_POLICY is '${policy}': locally loaded images need IfNotPresent or Never" ;;
  esac
}

# restart_if_stale: `kind load` of a rebuilt image under the same tag changes nothing in the
# Deployment, so a running manager would keep the old binary; restart it when the image (saved by
# hack/images/build.sh on every rebuild) is newer than the manager Pod.
restart_if_stale() {
  local tar="${BIN_DIR}/images/manager.tar" created
  [ -f "$tar" ] || return 0
  created="$(k -n "$NS" get pods -l app.kubernetes.io/name=pnsflow-manager \
    -o jsonpath='{range .items[*]}{.metadata.creationTimestamp}{"\n"}{end}' | sort | head -n1)"
  [ -n "$created" ] || return 0
  if [ "$(date -d "$created" +%s)" -lt "$(stat -c %Y "$tar")" ]; then
    log "the manager image was rebuilt after the manager Pod started: restarting it"
    run k -n "$NS" rollout restart deployment/pnsflow-manager
    run k -n "$NS" rollout status deployment/pnsflow-manager --timeout="${TIMEOUT}s"
  fi
}

# deploy_artifacts: SeaweedFS in pnsflow-system as the default artifact repository, and its
# credentials Secret in the sample's namespace (a run's executor reads it there, through the
# kubelet; the manager never does).
deploy_artifacts() {
  (cd "${ROOT}" && go tool kustomize build config/seaweedfs) | run k apply -f -
  run k -n "$NS" rollout status deployment/seaweedfs --timeout="${TIMEOUT}s"
  # The offline kind cluster runs no cluster DNS: name the Service by its IP in the repository.
  local ip
  ip="$(k -n "$NS" get service seaweedfs -o jsonpath='{.spec.clusterIP}')"
  [ -n "$ip" ] || die "the seaweedfs Service has no cluster IP"
  run k -n "$NS" patch configmap pnsflow-artifact-repository --type merge \
    -p "{\"data\":{\"endpoint\":\"http://${ip}:8333\"}}"
  k -n default create secret generic pnsflow-artifacts --from-literal=accessKey=pnsflow \
    --from-literal=secretKey=pnsflow-local-dev-only --dry-run=client -o yaml | run k apply -f -
}

# wait_terminal KIND NAME prints the object's phase once it is terminal (or the last seen).
wait_terminal() {
  local phase="" i
  for ((i = 0; i < TIMEOUT; i++)); do
    phase="$(k get "$1" "$2" -o jsonpath='{.status.phase}' 2>/dev/null || true)"
    case "$phase" in Succeeded | Failed | Error) break ;; esac
    sleep 1
  done
  echo "$phase"
}

main() {
  run k -n "$NS" rollout status deployment/pnsflow-manager --timeout="${TIMEOUT}s"
  restart_if_stale
  check_executor_settings
  deploy_artifacts
  # A StepRun's spec is immutable and a finished run stays finished: start the samples afresh.
  run k delete steprun "$SAMPLE" --ignore-not-found --wait=true
  run k delete workflowrun "$ARTIFACT_SAMPLE" --ignore-not-found --wait=true
  (cd "${ROOT}" && go tool kustomize build config/samples) | run k apply -f -
  local phase
  phase="$(wait_terminal steprun "$SAMPLE")"
  echo
  run k get stepruns -o wide
  echo
  if [ "$phase" != Succeeded ]; then
    k describe steprun "$SAMPLE" >&2 || true
    k get pods -l "workflows.pnsflow.dev/steprun=${SAMPLE}" -o wide >&2 || true
    die "the sample StepRun ended '${phase:-not terminal after ${TIMEOUT}s}'"
  fi
  log "the sample StepRun ${SAMPLE} Succeeded; outputs: $(k get steprun "$SAMPLE" -o jsonpath='{.status.outputs.parameters}')"
  phase="$(wait_terminal workflowrun "$ARTIFACT_SAMPLE")"
  run k get stepruns -l "workflows.pnsflow.dev/workflowrun=${ARTIFACT_SAMPLE}" -o wide
  if [ "$phase" != Succeeded ]; then
    k describe workflowrun "$ARTIFACT_SAMPLE" >&2 || true
    die "the sample WorkflowRun ${ARTIFACT_SAMPLE} ended '${phase:-not terminal after ${TIMEOUT}s}'"
  fi
  log "the sample WorkflowRun ${ARTIFACT_SAMPLE} Succeeded: check loaded $(k get steprun "${ARTIFACT_SAMPLE}-check" \
    -o jsonpath='{.status.outputs.parameters[0].value}') files stored by build"
}

main "$@"
