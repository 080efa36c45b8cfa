#!/usr/bin/env bash
# Makes sure a Docker daemon is there for kind, and stops the one we started.
#
#   hack/kind/docker.sh up      # install Debian's packages docker.io, containerd, runc if missing, start them
#   hack/kind/docker.sh down    # stop exactly the containerd/dockerd that `up` started (by PID)
#   hack/kind/docker.sh status
#
# Machines like ours have no systemd, so nothing starts dockerd: `up` starts containerd and dockerd
# in the background and records their PIDs in bin/kind/run/. A daemon that was already running is
# used as it is and never stopped.
#
# Where the host's capability bounding set lacks CAP_SYS_RESOURCE, `docker run --privileged`
# (which kind needs) fails with "unable to apply caps: operation not permitted"; the dockerd we
# start then uses hack/kind/runc-wrapper as its default runtime, which drops that capability from
# each container's spec. Hosts that have the capability get a plain dockerd.
set -euo pipefail
SCRIPT_NAME=docker
# shellcheck source=hack/kind/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

CONTAINERD_SOCK=/run/containerd/containerd.sock
DOCKER_SOCK=/var/run/docker.sock

# ensure_packages installs the daemons from Debian when they are missing: the network here reaches
# Debian's archive but no container registry or release download.
ensure_packages() {
  local missing=()
  command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
  command -v containerd >/dev/null 2>&1 || missing+=(containerd)
  command -v runc >/dev/null 2>&1 || missing+=(runc)
  [ -x /usr/bin/docker ] || [ -x /usr/local/bin/docker ] || missing+=(docker.io)
  [ ${#missing[@]} -gt 0 ] || return 0
  command -v apt-get >/dev/null 2>&1 || die "no Docker daemon and no apt-get to install one; install Docker by hand"
  log "installing ${missing[*]} from Debian"
  if ! ls /var/lib/apt/lists/*_Packages >/dev/null 2>&1; then run apt-get update; fi
  # policy-rc.d-less install: without an init system the package's start attempt just fails
  # quietly; we start the daemons ourselves below.
  run env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends docker.io containerd runc iptables
}

containerd_up() { [ -S "${CONTAINERD_SOCK}" ] && ctr --address "${CONTAINERD_SOCK}" version >/dev/null 2>&1; }

wait_for() {
  local what="$1" tries="$2"
  shift 2
  local i
  for ((i = 0; i < tries; i++)); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.5
  done
  die "${what} did not come up; see ${RUN_DIR}/*.log"
}

start_containerd() {
  if containerd_up; then
    log "containerd already answers on ${CONTAINERD_SOCK}; using it"
    return 0
  fi
  log "starting containerd (log: ${RUN_DIR}/containerd.log)"
  setsid containerd >"${RUN_DIR}/containerd.log" 2>&1 </dev/null &
  echo $! >"${RUN_DIR}/containerd.pid"
  wait_for containerd 60 containerd_up
  log "containerd running, PID $(cat "${RUN_DIR}/containerd.pid")"
}

# write_daemon_json writes dockerd's config under bin/ (the host's /etc/docker is left alone).
write_daemon_json() {
  local cfg="${RUN_DIR}/daemon.json"
  if host_lacks_cap_sys_resource; then
    build_runc_wrapper
    log "host lacks CAP_SYS_RESOURCE: dockerd's default runtime is ${RUNC_WRAPPER}"
    cat >"$cfg" <<EOF
{
  "default-runtime": "pnsflow-runc",
  "runtimes": {"pnsflow-runc": {"path": "${RUNC_WRAPPER}"}}
}
EOF
  else
    echo '{}' >"$cfg"
  fi
  echo "$cfg"
}

start_dockerd() {
  local cfg
  cfg="$(write_daemon_json)"
  log "starting dockerd (log: ${RUN_DIR}/dockerd.log)"
  setsid dockerd --containerd="${CONTAINERD_SOCK}" --config-file="$cfg" \
    >"${RUN_DIR}/dockerd.log" 2>&1 </dev/null &
  echo $! >"${RUN_DIR}/dockerd.pid"
  wait_for dockerd 120 /usr/bin/docker -H "unix://${DOCKER_SOCK}" version
  log "dockerd running, PID $(cat "${RUN_DIR}/dockerd.pid")"
}

check_existing_daemon() {
  if host_lacks_cap_sys_resource && ! docker info --format '{{json .Runtimes}}' 2>/dev/null | grep -q pnsflow-runc; then
    build_runc_wrapper
    log "WARNING: this host lacks CAP_SYS_RESOURCE and the running dockerd (not ours) has no runc wrapper:"
    log "WARNING: privileged kind nodes may fail with 'unable to apply caps'. Stop that dockerd and rerun,"
    log "WARNING: or make ${RUNC_WRAPPER} its default runtime (see ${RUN_DIR}/daemon.json for the form)."
  fi
}

cmd_up() {
  mkdir -p "${RUN_DIR}"
  if docker_ready; then
    log "a Docker daemon is already running: $(docker version --format 'server {{.Server.Version}}, API {{.Server.APIVersion}}' 2>/dev/null)"
    check_existing_daemon
    return 0
  fi
  ensure_packages
  start_containerd
  start_dockerd
  use_docker_client
  log "docker: $(docker version --format 'client {{.Client.Version}}, server {{.Server.Version}}')"
}

# stop_ours NAME stops the daemon we recorded under NAME, and only that process.
stop_ours() {
  local name="$1" pid i
  if ! pid="$(our_pid "$name")"; then
    rm -f "${RUN_DIR}/${name}.pid"
    return 0
  fi
  log "stopping ${name} (PID ${pid}, started by docker.sh up)"
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 60; i++)); do
    [ -d "/proc/${pid}" ] || break
    sleep 0.5
  done
  if [ -d "/proc/${pid}" ]; then
    log "${name} still running after 30s: SIGKILL ${pid}"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "${RUN_DIR}/${name}.pid"
}

cmd_down() {
  stop_ours dockerd
  stop_ours containerd
}

cmd_status() {
  local n pid
  for n in containerd dockerd; do
    if pid="$(our_pid "$n")"; then echo "${n}: running, PID ${pid} (ours)"; else echo "${n}: not started by us"; fi
  done
  if docker_ready; then
    use_docker_client
    docker version --format 'docker: client {{.Client.Version}} ({{.Client.APIVersion}}), server {{.Server.Version}} ({{.Server.APIVersion}})'
    docker info --format 'runtimes: {{range $k, $v := .Runtimes}}{{$k}} {{end}}(default {{.DefaultRuntime}}), cgroup {{.CgroupVersion}}/{{.CgroupDriver}}'
  else
    echo "docker: no daemon answers"
  fi
}

case "${1:-up}" in
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  *) die "usage: $0 up|down|status" ;;
esac
