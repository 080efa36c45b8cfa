#!/usr/bin/env bash
# Builds the project's images with no base-image pull (the default) or the usual online way.
#
#   hack/images/build.sh [all|manager|pns-executor|busybox|entrypoint]...   # offline
#   IMAGES_ONLINE=1 hack/images/build.sh manager pns-executor               # root Dockerfile
#
# Offline: the static binaries are built on the host (CGO_ENABLED=0) and packed FROM scratch by
# hack/images/<name>.Dockerfile. Test images: a busybox from Debian's busybox-static (tagged both
# $BUSYBOX_IMG and busybox:1.36, the name config/samples uses) and an image whose ENTRYPOINT does
# the work ($ENTRYPOINT_IMG), and one whose USER is 1000:1000 ($NONROOT_IMG). Build contexts live in bin/images/<name>/; each image is saved as a
# tarball there too, and a build whose inputs did not change is skipped.
set -euo pipefail
SCRIPT_NAME=images
# shellcheck source=hack/kind/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../kind/lib.sh"

IMG="${IMG:-pnsflow/manager:dev}"
EXECUTOR_IMG="${EXECUTOR_IMG:-pnsflow/pns-executor:dev}"
BUSYBOX_IMG="${BUSYBOX_IMG:-localhost/pnsflow-busybox:test}"
SAMPLE_BUSYBOX_IMG="${SAMPLE_BUSYBOX_IMG:-busybox:1.36}"
ENTRYPOINT_IMG="${ENTRYPOINT_IMG:-localhost/pnsflow-entrypoint:test}"
NONROOT_IMG="${NONROOT_IMG:-localhost/pnsflow-nonroot:test}"
SEAWEEDFS_IMG="${SEAWEEDFS_IMG:-localhost/pnsflow-seaweedfs:dev}"
IMAGES_DIR="${BIN_DIR}/images"
SRC="${ROOT}/hack/images"

inputs_of() { sha256sum "$@" | awk '{print $1}' | sha256sum | cut -c1-16; }

# INPUTS_LABEL stamps each image with the inputs it was built from, so a tag moved by another
# build (another checkout of the project, say) is seen as stale rather than reused.
INPUTS_LABEL=dev.pnsflow.inputs

# current NAME REF INPUTS: the image exists in Docker and was built from these inputs.
current() {
  local name="$1" ref="$2" inputs="$3"
  [ "$(cat "${IMAGES_DIR}/${name}.inputs" 2>/dev/null)" = "$inputs" ] &&
    [ "$(docker image inspect -f "{{index .Config.Labels \"${INPUTS_LABEL}\"}}" "$ref" 2>/dev/null)" = "$inputs" ]
}

# finish NAME INPUTS REF...: save the image as a tarball and stamp its inputs.
finish() {
  local name="$1" inputs="$2"
  shift 2
  run docker save -o "${IMAGES_DIR}/${name}.tar" "$@"
  echo "$inputs" >"${IMAGES_DIR}/${name}.inputs"
  log "$* : $(docker image inspect -f '{{.Size}}' "$1" | awk '{printf "%.1f MB", $1/1e6}')"
}

# go_binary NAME: a static binary from ./cmd/NAME into its build context. GO_LDFLAGS="" keeps
# the symbol tables (for perf on the node); the default strips them. No -trimpath: built as
# `make test` builds (CGO_ENABLED=0, the Makefile's), every package comes from its build cache.
go_binary() {
  local name="$1" ctx="${IMAGES_DIR}/$1"
  mkdir -p "$ctx"
  log "go build ./cmd/${name} (CGO_ENABLED=0, static)"
  (cd "${ROOT}" && CGO_ENABLED=0 go build -ldflags "${GO_LDFLAGS--s -w}" -o "${ctx}/${name}" "./cmd/${name}")
}

build_go_image() {
  local name="$1" ref="$2" inputs
  if [ "${IMAGES_ONLINE:-0}" = 1 ]; then
    # The usual way: the multi-stage root Dockerfile (pulls golang:<version>).
    run docker build --target "$name" -t "$ref" "${ROOT}"
    return 0
  fi
  go_binary "$name"
  inputs="$(inputs_of "${IMAGES_DIR}/${name}/${name}" "${SRC}/${name}.Dockerfile")"
  if current "$name" "$ref" "$inputs"; then log "${ref}: current"; return 0; fi
  run docker build -q -f "${SRC}/${name}.Dockerfile" --label "${INPUTS_LABEL}=${inputs}" -t "$ref" "${IMAGES_DIR}/${name}" >/dev/null
  finish "$name" "$inputs" "$ref"
}

busybox_binary() {
  if ! dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q 'install ok installed'; then
    # Debian's busybox-static: one static binary, no libraries to carry along.
    run env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends busybox-static >&2
  fi
  echo /bin/busybox
}

build_busybox() {
  local bb ctx="${IMAGES_DIR}/busybox" inputs a
  bb="$(busybox_binary)"
  inputs="$(inputs_of "$bb" "${SRC}/busybox.Dockerfile" "$0")"
  if current busybox "${BUSYBOX_IMG}" "$inputs" && docker image inspect "${SAMPLE_BUSYBOX_IMG}" >/dev/null 2>&1; then
    log "${BUSYBOX_IMG}: current"
    return 0
  fi
  rm -rf "$ctx"
  mkdir -p "${ctx}/rootfs/bin" "${ctx}/rootfs/etc" "${ctx}/rootfs/tmp" "${ctx}/rootfs/root" "${ctx}/rootfs/home"
  chmod 1777 "${ctx}/rootfs/tmp"
  cp "$bb" "${ctx}/rootfs/bin/busybox"
  for a in $("$bb" --list); do
    [ "$a" = busybox ] || ln -s busybox "${ctx}/rootfs/bin/${a}"
  done
  # The accounts the busybox image has, so `id`, `whoami` and `ls -l` name them.
  printf '%s\n' 'root:x:0:0:root:/root:/bin/sh' 'daemon:x:1:1:daemon:/usr/sbin:/bin/false' \
    'nobody:x:65534:65534:nobody:/home:/bin/false' >"${ctx}/rootfs/etc/passwd"
  printf '%s\n' 'root:x:0:' 'daemon:x:1:' 'nogroup:x:65534:' >"${ctx}/rootfs/etc/group"
  # A file baked into the image, for tests that read an output from main's image filesystem.
  printf 'baked into the image' >"${ctx}/rootfs/etc/pnsflow-baked"
  cp "${SRC}/busybox.Dockerfile" "${ctx}/Dockerfile"
  run docker build -q --label "${INPUTS_LABEL}=${inputs}" -t "${BUSYBOX_IMG}" "$ctx" >/dev/null
  run docker tag "${BUSYBOX_IMG}" "${SAMPLE_BUSYBOX_IMG}"
  finish busybox "$inputs" "${BUSYBOX_IMG}" "${SAMPLE_BUSYBOX_IMG}"
}

build_entrypoint() {
  local ctx="${IMAGES_DIR}/entrypoint" inputs
  inputs="$(inputs_of "${SRC}/entrypoint.Dockerfile" "${SRC}/entrypoint.sh" "${IMAGES_DIR}/busybox.inputs")-${BUSYBOX_IMG}"
  if current entrypoint "${ENTRYPOINT_IMG}" "$inputs"; then log "${ENTRYPOINT_IMG}: current"; return 0; fi
  rm -rf "$ctx"
  mkdir -p "$ctx"
  cp "${SRC}/entrypoint.sh" "$ctx/"
  run docker build -q -f "${SRC}/entrypoint.Dockerfile" --build-arg "BASE=${BUSYBOX_IMG}" --label "${INPUTS_LABEL}=${inputs}" -t "${ENTRYPOINT_IMG}" "$ctx" >/dev/null
  finish entrypoint "$inputs" "${ENTRYPOINT_IMG}"
}

# build_nonroot: the busybox image with a numeric non-root USER (1000:1000) and no
# securityContext needed: main's UID is then known only once it runs.
build_nonroot() {
  local ctx="${IMAGES_DIR}/nonroot" inputs
  inputs="$(inputs_of "${SRC}/nonroot.Dockerfile" "${IMAGES_DIR}/busybox.inputs")-${BUSYBOX_IMG}"
  if current nonroot "${NONROOT_IMG}" "$inputs"; then log "${NONROOT_IMG}: current"; return 0; fi
  rm -rf "$ctx"
  mkdir -p "$ctx"
  run docker build -q -f "${SRC}/nonroot.Dockerfile" --build-arg "BASE=${BUSYBOX_IMG}" --label "${INPUTS_LABEL}=${inputs}" -t "${NONROOT_IMG}" "$ctx" >/dev/null
  finish nonroot "$inputs" "${NONROOT_IMG}"
}

# build_seaweedfs: SeaweedFS's weed (hack/seaweedfs.sh builds it once into bin/) FROM scratch.
build_seaweedfs() {
  local ctx="${IMAGES_DIR}/seaweedfs" inputs weed
  weed="$("${ROOT}/hack/seaweedfs.sh")/weed"
  inputs="$(inputs_of "$weed" "${SRC}/seaweedfs.Dockerfile")"
  if current seaweedfs "${SEAWEEDFS_IMG}" "$inputs"; then log "${SEAWEEDFS_IMG}: current"; return 0; fi
  rm -rf "$ctx"
  mkdir -p "$ctx"
  cp "$weed" "$ctx/weed"
  run docker build -q -f "${SRC}/seaweedfs.Dockerfile" --label "${INPUTS_LABEL}=${inputs}" -t "${SEAWEEDFS_IMG}" "$ctx" >/dev/null
  finish seaweedfs "$inputs" "${SEAWEEDFS_IMG}"
}

main() {
  "${ROOT}/hack/kind/docker.sh" up
  use_docker_client
  mkdir -p "${IMAGES_DIR}"
  local targets=("$@") t
  [ ${#targets[@]} -gt 0 ] || targets=(all)
  [ "${targets[*]}" != all ] || targets=(manager pns-executor busybox entrypoint nonroot seaweedfs)
  for t in "${targets[@]}"; do
    case "$t" in
      manager) build_go_image manager "${IMG}" ;;
      pns-executor) build_go_image pns-executor "${EXECUTOR_IMG}" ;;
      busybox) build_busybox ;;
      entrypoint) build_busybox && build_entrypoint ;;
      nonroot) build_busybox && build_nonroot ;;
      seaweedfs) build_seaweedfs ;;
      *) die "unknown image: $t (manager, pns-executor, busybox, entrypoint, nonroot, seaweedfs, all)" ;;
    esac
  done
}

main "$@"
