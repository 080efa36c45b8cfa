#!/usr/bin/env bash
# Provides the kind node image for Kubernetes ${KUBE_VERSION}; prints its reference on stdout.
#
#   hack/kind/node-image.sh           # $KIND_NODE_IMAGE, else kindest/node:v1.37.x if present or
#                                     # pullable, else the locally built image
#   hack/kind/node-image.sh build     # always the locally built image (built when missing/stale)
#
# The local build needs no container registry: Debian packages (debootstrap) and Go modules only.
#   1. rootfs: `debootstrap --variant=minbase bookworm` with systemd, containerd, runc, CNI plugins,
#      iptables/nftables and friends; cached as a tarball under bin/kind/cache.
#   2. control-plane images, FROM scratch, from static binaries built by hack/envtest-assets.sh:
#      kube-apiserver, kube-controller-manager, kube-scheduler, etcd; pause from pause.c; kube-proxy
#      with Debian's iptables/nft tools and libraries. Named as `kubeadm config images list
#      --image-repository localhost` wants them, saved as tarballs under bin/kind/cache/images.
#   3. node: the rootfs with kind's base-image files (from the kind module, laid out as kind's base
#      Dockerfile does), kubelet/kubeadm/kubectl, the image tarballs (imported into containerd by a
#      oneshot unit before kubelet), a bridge + host-local CNI config; `docker import`, then a
#      one-line build for STOPSIGNAL. Labelled with a hash of all its inputs and saved as a tarball:
#      an image whose label matches is reused, a saved tarball is loaded instead of rebuilt.
set -euo pipefail
SCRIPT_NAME=node-image
# shellcheck source=hack/kind/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

DEBIAN_SUITE="${DEBIAN_SUITE:-bookworm}"
KIND_VERSION="$(cd "${ROOT}" && go list -m -f '{{.Version}}' sigs.k8s.io/kind)"
NODE_SRC="${ROOT}/hack/kind/node"
IMAGES_CACHE="${CACHE_DIR}/images"
# What the node runs; kind's base image has the same list (plus storage/fuse extras we don't use).
NODE_PACKAGES=(
  systemd containerd runc containernetworking-plugins
  iptables nftables conntrack socat ethtool iproute2 kmod procps util-linux mount
  libseccomp2 ca-certificates jq hostname
)
# What kube-proxy's image needs: it runs iptables/ip6tables(-save/-restore) and nft in both modes.
KUBE_PROXY_PACKAGES=(iptables nftables conntrack)
CONTROL_PLANE=(kube-apiserver kube-controller-manager kube-scheduler etcd)

sha() { sha256sum "$@" | awk '{print $1}' | sha256sum | cut -c1-16; }
str_sha() { printf '%s' "$*" | sha256sum | cut -c1-16; }

# debian_mirror prints the Debian archive URI this host's apt already uses for $DEBIAN_SUITE (so no
# mirror is written into the repository); $DEBIAN_MIRROR overrides it.
debian_mirror() {
  if [ -n "${DEBIAN_MIRROR:-}" ]; then echo "${DEBIAN_MIRROR}"; return; fi
  local m
  m="$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null | awk -v suite="${DEBIAN_SUITE}" '
    BEGIN { RS = ""; FS = "\n" }
    {
      uri = ""; ok = 0; deb = 0
      for (i = 1; i <= NF; i++) {
        if ($i ~ /^Types:/ && $i ~ /(^|[ \t])deb([ \t]|$)/) deb = 1
        if ($i ~ /^URIs:/) { split($i, a, /[ \t]+/); uri = a[2] }
        if ($i ~ /^Suites:/) { n = split($i, s, /[ \t]+/); for (j = 2; j <= n; j++) if (s[j] == suite) ok = 1 }
      }
      if (deb && ok && uri != "") { print uri; exit }
    }')"
  if [ -z "$m" ]; then
    m="$(awk -v suite="${DEBIAN_SUITE}" '
      $1 == "deb" { i = 2; if ($i ~ /^\[/) { while ($i !~ /\]$/) i++; i++ } if ($(i + 1) == suite) { print $i; exit } }' /etc/apt/sources.list 2>/dev/null)"
  fi
  [ -n "$m" ] || die "no apt source for suite ${DEBIAN_SUITE} on this host; set DEBIAN_MIRROR"
  echo "$m"
}

# ensure_host_tools installs what the local build runs on the host.
ensure_host_tools() {
  local missing=()
  command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
  command -v gcc >/dev/null 2>&1 || missing+=(gcc libc6-dev)
  [ ${#missing[@]} -eq 0 ] || run env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
}

rootfs_tar() { echo "${CACHE_DIR}/rootfs-${DEBIAN_SUITE}-minbase-$(str_sha "${NODE_PACKAGES[*]}").tar"; }

# ensure_rootfs debootstraps the node's Debian rootfs once and keeps it as a tarball.
ensure_rootfs() {
  local tar dir mirror
  tar="$(rootfs_tar)"
  if [ -f "$tar" ]; then
    log "rootfs: reusing ${tar}"
    return 0
  fi
  ensure_host_tools
  mirror="$(debian_mirror)"
  dir="${BUILD_DIR}/debootstrap"
  rm -rf "$dir"
  mkdir -p "$dir" "${CACHE_DIR}"
  log "rootfs: debootstrap --variant=minbase ${DEBIAN_SUITE} (packages: ${NODE_PACKAGES[*]})"
  timed debootstrap run debootstrap --variant=minbase --include="$(IFS=,; echo "${NODE_PACKAGES[*]}")" \
    "${DEBIAN_SUITE}" "$dir" "$mirror"
  # Package lists and the .deb cache are of no use in the image.
  rm -rf "${dir}"/var/lib/apt/lists/* "${dir}"/var/cache/apt/archives/*.deb "${dir}"/var/cache/apt/*.bin
  run tar -C "$dir" --numeric-owner -cf "${tar}.tmp" .
  mv "${tar}.tmp" "$tar"
  rm -rf "$dir"
  log "rootfs: cached $(du -h "$tar" | cut -f1) at ${tar}"
}

# extract_rootfs DIR unpacks the cached rootfs into DIR (fresh).
extract_rootfs() {
  local dir="$1"
  rm -rf "$dir"
  mkdir -p "$dir"
  tar -C "$dir" --numeric-owner -xf "$(rootfs_tar)"
}

# kube_bins prints the directory with the kube binaries, building the missing ones from source.
kube_bins() { "${ROOT}/hack/envtest-assets.sh" kubelet kubeadm kubectl kube-apiserver kube-controller-manager kube-scheduler kube-proxy etcd; }

# image_refs prints "name ref" for each image kubeadm will ask for (CoreDNS is skipped: the
# cluster runs without the addon/coredns phase).
image_refs() {
  "${KUBE_BIN}/kubeadm" config images list --kubernetes-version "${KUBE_VERSION}" --image-repository localhost 2>/dev/null |
    awk -F'[/:]' '$2 != "coredns" { print $2, $0 }'
}

ref_of() { awk -v n="$1" '$1 == n { print $2 }' <<<"${IMAGE_REFS}"; }

# image_current NAME INPUTS: the saved tarball exists and was built from the same inputs.
image_current() { [ -f "${IMAGES_CACHE}/$1.tar" ] && [ "$(cat "${IMAGES_CACHE}/$1.inputs" 2>/dev/null)" = "$2" ]; }

# build_image NAME REF INPUTS DOCKERFILE CONTEXT [build args...] builds, saves and stamps one image.
build_image() {
  local name="$1" ref="$2" inputs="$3" dockerfile="$4" ctx="$5"
  shift 5
  run docker build -q -f "$dockerfile" "$@" -t "$ref" "$ctx" >/dev/null
  run docker save -o "${IMAGES_CACHE}/${name}.tar" "$ref"
  echo "$ref" >"${IMAGES_CACHE}/${name}.ref"
  echo "$inputs" >"${IMAGES_CACHE}/${name}.inputs"
  log "image ${ref}: $(du -h "${IMAGES_CACHE}/${name}.tar" | cut -f1)"
}

stage_file() { cp -l "$1" "$2" 2>/dev/null || cp "$1" "$2"; }

build_component_images() {
  local c ref inputs ctx
  for c in "${CONTROL_PLANE[@]}"; do
    ref="$(ref_of "$c")"
    [ -n "$ref" ] || die "kubeadm lists no image for ${c}"
    inputs="$(sha "${KUBE_BIN}/${c}" "${NODE_SRC}/component.Dockerfile")-${ref}"
    if image_current "$c" "$inputs"; then log "image ${ref}: current"; continue; fi
    ctx="${BUILD_DIR}/ctx/${c}"
    rm -rf "$ctx"
    mkdir -p "$ctx"
    stage_file "${KUBE_BIN}/${c}" "${ctx}/${c}"
    build_image "$c" "$ref" "$inputs" "${NODE_SRC}/component.Dockerfile" "$ctx" --build-arg "BINARY=${c}"
    rm -rf "$ctx"
  done
}

build_pause_image() {
  local ref inputs ctx
  ref="$(ref_of pause)"
  inputs="$(sha "${NODE_SRC}/pause.c" "${NODE_SRC}/pause.Dockerfile")-${ref}"
  if image_current pause "$inputs"; then log "image ${ref}: current"; return 0; fi
  ensure_host_tools
  ctx="${BUILD_DIR}/ctx/pause"
  rm -rf "$ctx"
  mkdir -p "$ctx"
  run gcc -Os -static -Wall -o "${ctx}/pause" "${NODE_SRC}/pause.c"
  strip "${ctx}/pause"
  build_image pause "$ref" "$inputs" "${NODE_SRC}/pause.Dockerfile" "$ctx"
  rm -rf "$ctx"
}

# pkg_closure ROOT PKG... prints the installed packages PKG... depend on, transitively.
pkg_closure() {
  local root="$1" p deps alt a name
  shift
  local -A seen=()
  local queue=("$@")
  while [ ${#queue[@]} -gt 0 ]; do
    p="${queue[0]}"
    queue=("${queue[@]:1}")
    [ -z "${seen[$p]:-}" ] || continue
    deps="$(chroot "$root" dpkg-query -W -f='${Pre-Depends}, ${Depends}' "$p" 2>/dev/null)" || continue
    seen[$p]=1
    while IFS= read -r alt; do
      # "a (>= 1) | b" : take the first alternative that is installed
      for a in ${alt//|/ }; do
        name="${a%%:*}"
        [[ "$name" =~ ^[a-z0-9][a-z0-9+.-]+$ ]] || continue
        if chroot "$root" dpkg-query -W -f='${Status}' "$name" 2>/dev/null | grep -q 'install ok installed'; then
          queue+=("$name")
          break
        fi
      done
    done < <(sed -e 's/([^)]*)//g' -e 's/,/\n/g' <<<"$deps")
  done
  printf '%s\n' "${!seen[@]}" | sort
}

# kube_proxy_rootfs ROOTFS OUT.tar: the files of iptables, nftables and conntrack and of every
# package they depend on, with iptables pointing at the nft backend (the kernel's nf_tables, and
# what kind's entrypoint selects when the host's Docker uses iptables-nft, as Debian's does).
kube_proxy_rootfs() {
  local rootfs="$1" out="$2" kp="${BUILD_DIR}/kube-proxy-rootfs" pkgs t
  pkgs="$(pkg_closure "$rootfs" "${KUBE_PROXY_PACKAGES[@]}")"
  log "kube-proxy rootfs: packages $(tr '\n' ' ' <<<"$pkgs")"
  rm -rf "$kp"
  mkdir -p "$kp"
  # bookworm is merged-/usr: /bin, /sbin, /lib, /lib64 are symlinks into /usr. Keep those links
  # (the ELF interpreter is /lib64/ld-linux-x86-64.so.2) and list every file by its /usr path.
  local merged=()
  for t in bin sbin lib lib64; do [ -L "${rootfs}/${t}" ] && merged+=("$t"); done
  # shellcheck disable=SC2086
  chroot "$rootfs" dpkg -L $pkgs |
    sed -E "s#^/($(IFS='|'; echo "${merged[*]:-none}"))/#/usr/\1/#" | sort -u |
    grep -Ev '^/usr/share/(doc|man|info|lintian|locale|bug)(/|$)' |
    while IFS= read -r f; do
      if [ -L "${rootfs}${f}" ] || { [ -f "${rootfs}${f}" ] && [ ! -d "${rootfs}${f}" ]; }; then echo ".${f}"; fi
    done >"${BUILD_DIR}/kube-proxy-files"
  for t in "${merged[@]}"; do echo "./${t}"; done >>"${BUILD_DIR}/kube-proxy-files"
  tar -C "$rootfs" --numeric-owner --no-recursion -cf - -T "${BUILD_DIR}/kube-proxy-files" | tar -C "$kp" -xf -
  for t in iptables iptables-save iptables-restore ip6tables ip6tables-save ip6tables-restore; do
    ln -sfn xtables-nft-multi "${kp}/usr/sbin/${t}"
  done
  mkdir -p "${kp}/tmp" "${kp}/run" "${kp}/var/run"
  chmod 1777 "${kp}/tmp"
  tar -C "$kp" --numeric-owner -cf "$out" .
  rm -rf "$kp"
}

build_kube_proxy_image() {
  local ref inputs ctx
  ref="$(ref_of kube-proxy)"
  inputs="$(sha "${KUBE_BIN}/kube-proxy" "${NODE_SRC}/kube-proxy.Dockerfile" "$0")-$(basename "$(rootfs_tar)")-${ref}"
  if image_current kube-proxy "$inputs"; then log "image ${ref}: current"; return 0; fi
  ctx="${BUILD_DIR}/ctx/kube-proxy"
  rm -rf "$ctx"
  mkdir -p "$ctx"
  extract_rootfs "${BUILD_DIR}/rootfs-for-kube-proxy"
  kube_proxy_rootfs "${BUILD_DIR}/rootfs-for-kube-proxy" "${ctx}/rootfs.tar"
  rm -rf "${BUILD_DIR}/rootfs-for-kube-proxy"
  stage_file "${KUBE_BIN}/kube-proxy" "${ctx}/kube-proxy"
  build_image kube-proxy "$ref" "$inputs" "${NODE_SRC}/kube-proxy.Dockerfile" "$ctx"
  rm -rf "$ctx"
}

kind_base_files() { echo "$(cd "${ROOT}" && go mod download -json "sigs.k8s.io/kind@${KIND_VERSION}" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",*$/\1/p')/images/base/files"; }

# node_inputs prints a hash of everything the node image is made of.
node_inputs() {
  local n
  {
    echo "$(basename "$(rootfs_tar)") kind=${KIND_VERSION} kube=${KUBE_VERSION}"
    sha "$0" "${NODE_SRC}"/* "${KUBE_BIN}/kubelet" "${KUBE_BIN}/kubeadm" "${KUBE_BIN}/kubectl"
    for n in "${CONTROL_PLANE[@]}" pause kube-proxy; do cat "${IMAGES_CACHE}/${n}.inputs"; done
  } | sha256sum | cut -c1-16
}

# lay_out_kind_files copies kind's base-image files into the rootfs with the modes kind's base
# Dockerfile gives them (scripts 0755, everything else 0644).
lay_out_kind_files() {
  local r="$1" kb f
  kb="$(kind_base_files)"
  [ -d "$kb" ] || die "kind base files not found at ${kb}"
  mkdir -p "$r/usr/local/bin" "$r/kind/bin" "$r/LICENSES" "$r/etc/containerd" "$r/etc/default" \
    "$r/etc/sysctl.d" "$r/etc/systemd/system/kubelet.service.d"
  install -m 0755 "$kb"/usr/local/bin/* "$r/usr/local/bin/"
  for f in "$kb"/kind/*; do [ -f "$f" ] && install -m 0644 "$f" "$r/kind/"; done
  install -m 0755 "$kb"/kind/bin/* "$r/kind/bin/"
  install -m 0644 "$kb"/LICENSES/* "$r/LICENSES/"
  for f in "$kb"/etc/*; do [ -f "$f" ] && install -m 0644 "$f" "$r/etc/"; done
  install -m 0644 "$kb"/etc/containerd/* "$r/etc/containerd/"
  install -m 0644 "$kb"/etc/default/* "$r/etc/default/"
  install -m 0644 "$kb"/etc/sysctl.d/* "$r/etc/sysctl.d/"
  for f in "$kb"/etc/systemd/system/*; do [ -f "$f" ] && install -m 0644 "$f" "$r/etc/systemd/system/"; done
  install -m 0644 "$kb"/etc/systemd/system/kubelet.service.d/* "$r/etc/systemd/system/kubelet.service.d/"
  chmod 0755 "$r/kind" "$r/kind/bin"
}

# adapt_to_debian: kind's files expect its own containerd build in /usr/local/bin and a pause
# image from a registry; ours come from Debian and from the local images.
adapt_to_debian() {
  local r="$1" pause_ref="$2" p
  sed -i 's#ExecStart=/usr/local/bin/containerd#ExecStart=/usr/bin/containerd#' "$r/etc/systemd/system/containerd.service"
  sed -i "s#sandbox_image = .*#sandbox_image = \"${pause_ref}\"#" "$r/etc/containerd/config.toml"
  # containerd's CRI looks for CNI plugins in /opt/cni/bin; Debian installs them in /usr/lib/cni.
  mkdir -p "$r/opt/cni/bin" "$r/etc/cni/net.d"
  for p in "$r"/usr/lib/cni/*; do ln -sfn "/usr/lib/cni/$(basename "$p")" "$r/opt/cni/bin/$(basename "$p")"; done
  install -m 0644 "${NODE_SRC}/10-pnsflow-bridge.conflist" "$r/etc/cni/net.d/"
  install -m 0644 "${NODE_SRC}/20-pnsflow-bridge-nf.conf" "$r/etc/sysctl.d/"
}

add_kubernetes() {
  local r="$1" n
  install -m 0755 "${KUBE_BIN}/kubelet" "${KUBE_BIN}/kubeadm" "${KUBE_BIN}/kubectl" "$r/usr/bin/"
  echo -n "${KUBE_VERSION}" >"$r/kind/version"
  mkdir -p "$r/kind/images" "$r/kind/manifests"
  for n in "${CONTROL_PLANE[@]}" pause kube-proxy; do
    stage_file "${IMAGES_CACHE}/${n}.tar" "$r/kind/images/${n}.tar"
    install -m 0644 "${IMAGES_CACHE}/${n}.ref" "$r/kind/images/${n}.ref"
  done
  install -m 0644 "${NODE_SRC}/default-storage.yaml" "$r/kind/manifests/default-storage.yaml"
  install -m 0755 "${NODE_SRC}/pnsflow-preload-images.sh" "$r/kind/bin/"
  install -m 0644 "${NODE_SRC}/pnsflow-preload-images.service" "$r/etc/systemd/system/"
  # The runc wrapper is not baked in: kind-up mounts the current build at
  # /usr/local/sbin/pnsflow-runc, so changing it needs no new node image.
}

# configure_in_chroot repeats the RUN steps of kind's base Dockerfile, then enables our units.
configure_in_chroot() {
  local r="$1"
  chroot "$r" /bin/bash -euo pipefail -c '
    find /lib/systemd/system/sysinit.target.wants/ -name "systemd-tmpfiles-setup.service" -delete
    rm -f /lib/systemd/system/multi-user.target.wants/* /etc/systemd/system/*.wants/* \
      /lib/systemd/system/local-fs.target.wants/* /lib/systemd/system/sockets.target.wants/*udev* \
      /lib/systemd/system/sockets.target.wants/*initctl* /lib/systemd/system/basic.target.wants/*
    echo "ReadKMsg=no" >> /etc/systemd/journald.conf
    ln -sfn /usr/lib/systemd/systemd /sbin/init
    systemctl enable kubelet.service containerd.service undo-mount-hacks.service pnsflow-preload-images.service
    systemctl mask systemd-binfmt.service
    mkdir -p /etc/kubernetes/manifests
    # kind generates its base runtime spec the same way (with its product-files hook).
    ctr oci spec \
      | jq ".hooks.createContainer[.hooks.createContainer| length] |= . + {\"path\": \"/kind/bin/mount-product-files.sh\"}" \
      | jq "del(.process.rlimits)" > /etc/containerd/cri-base.json
    rm -rf /usr/share/doc/* /usr/share/man/* /usr/share/info/* /usr/share/locale/* /var/log/*.log /etc/machine-id
  ' >&2
}

assemble_node() {
  local inputs="$1" r="${BUILD_DIR}/node-rootfs" base="${LOCAL_NODE_IMAGE}-import"
  log "node: assembling ${LOCAL_NODE_IMAGE} (inputs ${inputs})"
  extract_rootfs "$r"
  lay_out_kind_files "$r"
  adapt_to_debian "$r" "$(ref_of pause)"
  add_kubernetes "$r"
  configure_in_chroot "$r"
  log "node: rootfs $(du -sh "$r" | cut -f1); docker import"
  tar -C "$r" --numeric-owner -cf - . | run docker import \
    --change 'ENV container=docker' \
    --change 'ENTRYPOINT [ "/usr/local/bin/entrypoint", "/sbin/init" ]' \
    - "$base" >/dev/null
  run docker build -q -f "${NODE_SRC}/node.Dockerfile" --build-arg "BASE=${base}" \
    --label "dev.pnsflow.node-inputs=${inputs}" -t "${LOCAL_NODE_IMAGE}" "${NODE_SRC}" >/dev/null
  docker rmi "$base" >/dev/null
  rm -rf "$r"
  rm -f "${CACHE_DIR}"/node-image-*.tar
  run docker save -o "${CACHE_DIR}/node-image-${inputs}.tar" "${LOCAL_NODE_IMAGE}"
  log "node: ${LOCAL_NODE_IMAGE} is $(docker image inspect -f '{{.Size}}' "${LOCAL_NODE_IMAGE}" | awk '{printf "%d MB", $1/1e6}')"
}

local_label() { docker image inspect -f '{{index .Config.Labels "dev.pnsflow.node-inputs"}}' "${LOCAL_NODE_IMAGE}" 2>/dev/null || true; }

# build_local makes sure LOCAL_NODE_IMAGE is present and current.
build_local() {
  mkdir -p "${CACHE_DIR}" "${BUILD_DIR}" "${IMAGES_CACHE}"
  KUBE_BIN="$(kube_bins)"
  IMAGE_REFS="$(image_refs)"
  ensure_rootfs
  build_component_images
  build_pause_image
  build_kube_proxy_image
  local inputs
  inputs="$(node_inputs)"
  if [ "$(local_label)" = "$inputs" ]; then
    log "node: ${LOCAL_NODE_IMAGE} is current (${inputs})"
  elif [ -f "${CACHE_DIR}/node-image-${inputs}.tar" ]; then
    log "node: loading the saved ${CACHE_DIR}/node-image-${inputs}.tar"
    run docker load -q -i "${CACHE_DIR}/node-image-${inputs}.tar" >&2
  else
    timed "node image assembly" assemble_node "$inputs"
  fi
}

# kindest_image prints a kindest/node image for this minor that is present or can be pulled.
kindest_image() {
  local minor="${KUBE_VERSION%.*}" present
  present="$(docker images --format '{{.Repository}}:{{.Tag}}' kindest/node 2>/dev/null | grep -F ":${minor}." | sort -V | tail -n1 || true)"
  if [ -n "$present" ]; then echo "$present"; return 0; fi
  log "no kindest/node:${minor}.x present; trying to pull kindest/node:${KUBE_VERSION}"
  if timeout 60 docker pull -q "kindest/node:${KUBE_VERSION}" >&2 2>/dev/null; then
    echo "kindest/node:${KUBE_VERSION}"
    return 0
  fi
  log "kindest/node:${KUBE_VERSION} cannot be pulled (no registry reachable?): building one locally"
  return 1
}

main() {
  # stdout carries only the image reference; everything else goes to stderr.
  "${ROOT}/hack/kind/docker.sh" up >&2
  use_docker_client
  case "${1:-resolve}" in
    build)
      timed "node image (build or reuse)" build_local >&2
      echo "${LOCAL_NODE_IMAGE}"
      ;;
    resolve)
      if [ -n "${KIND_NODE_IMAGE:-}" ]; then
        log "using KIND_NODE_IMAGE=${KIND_NODE_IMAGE}"
        echo "${KIND_NODE_IMAGE}"
      elif kindest_image; then
        :
      else
        timed "node image (build or reuse)" build_local >&2
        echo "${LOCAL_NODE_IMAGE}"
      fi
      ;;
    *) die "usage: $0 [resolve|build]" ;;
  esac
}

main "$@"
