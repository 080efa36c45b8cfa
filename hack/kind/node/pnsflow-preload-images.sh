#!/bin/bash
# Imports /kind/images/*.tar into containerd (namespace k8s.io, where the CRI looks). Run by
# pnsflow-preload-images.service before kubelet. Idempotent: an image already present is skipped.
set -euo pipefail

for _ in $(seq 1 120); do
  ctr version >/dev/null 2>&1 && break
  sleep 0.5
done

for tar in /kind/images/*.tar; do
  [ -e "$tar" ] || continue
  ref="$(cat "${tar%.tar}.ref")"
  if ctr -n k8s.io images check "name==${ref}" 2>/dev/null | grep -q complete; then
    echo "preload: ${ref} already present"
    continue
  fi
  echo "preload: importing ${ref} from ${tar}"
  ctr -n k8s.io images import --all-platforms --snapshotter=overlayfs "$tar"
done
