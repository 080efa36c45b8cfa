#!/usr/bin/env bash
# Provides SeaweedFS's `weed`, a real S3 server for internal/artifact's tests, built from Go modules
# (no release download needed). Prints the directory holding `weed`; prints nothing else when the
# binary is already built.
#
#   hack/seaweedfs.sh            # -> bin/seaweedfs/<version>   (then run <dir>/weed)
#
# The version is the one pinned in hack/seaweedfs/go.mod (a wrapper module: SeaweedFS's go.mod has a
# replace that only takes effect in the main module). The first build downloads ~430 modules and
# compiles for about 5 minutes on 2 cores; afterwards bin/seaweedfs/ (kept by CI) makes it instant.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MOD="${ROOT}/hack/seaweedfs"
VERSION="$(awk '$1 == "github.com/seaweedfs/seaweedfs" { print $2; exit }' "${MOD}/go.mod")"
[ -n "${VERSION}" ] || { echo "seaweedfs: no github.com/seaweedfs/seaweedfs in ${MOD}/go.mod" >&2; exit 1; }
OUT="${ROOT}/bin/seaweedfs/${VERSION}"

if [ -x "${OUT}/weed" ]; then
  echo "${OUT}"
  exit 0
fi

mkdir -p "${OUT}"
# One build at a time: the test helper and make may both ask for it, and it is a heavy build.
exec 9>"${OUT}/.lock"
if command -v flock >/dev/null; then flock 9; fi
if [ -x "${OUT}/weed" ]; then
  echo "${OUT}"
  exit 0
fi

echo "seaweedfs: building weed ${VERSION} (first time only, several minutes)" >&2
start=$SECONDS
tmp="${OUT}/.weed.$$"
trap 'rm -f "${tmp}"' EXIT
# weed needs no cgo: CGO_ENABLED=0 gives a static binary that runs anywhere the tests run. Build to a
# temporary name and rename, so an interrupted build never leaves a truncated `weed` that looks cached.
(cd "${MOD}" && GOWORK=off CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "${tmp}" \
  github.com/seaweedfs/seaweedfs/weed) >&2
mv "${tmp}" "${OUT}/weed"
echo "seaweedfs: built ${OUT}/weed in $((SECONDS - start))s" >&2
echo "${OUT}"
