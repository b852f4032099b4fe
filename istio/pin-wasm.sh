#!/usr/bin/env bash
# Pins the modules the manifests load to the ones built here, and prints the commands that
# publish them.
#
#   make oci && istio/pin-wasm.sh
#
# Two kinds of pins, each on the lines marked with the artifact's path:
# * `# oci:target/oci/NAME` (WasmPlugin/TrafficExtension, the documented path): the digest of
#   the OCI image manifest `make oci` wrote, in `url: oci://...@sha256:D` and `sha256: D`;
# * `# target/wasm/NAME.wasm` (EnvoyFilter fallbacks, served by 20-wasm-server.yaml on an
#   air-gapped cluster): the module's own sha256, `sha256sum target/wasm/NAME.wasm`.
# Run it after every build you deploy: a module whose digest differs from the manifest is
# refused (the filter then fails closed: nothing passes unrouted).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
TAG="${GEOMESH_VERSION:-0.1.0}"
status=0
for name in redis scope mqtt kafka influx; do
  wasm="target/wasm/geomesh_filter_${name}.wasm"
  oci="target/oci/geomesh-filter-${name}"
  if [ ! -f "$wasm" ] || [ ! -f "$oci/index.json" ]; then
    echo "pin-wasm: $wasm or $oci missing: run make oci" >&2
    status=1
    continue
  fi
  sum="$(sha256sum "$wasm" | cut -d' ' -f1)"
  # The layout read back (index, manifest, every blob against its digest) by the same tool
  # that wrote it; `skopeo inspect --raw oci:$oci:$TAG | sha256sum` gives the same digest.
  digest="$(cargo run -q -p geomesh-wasm-oci -- inspect "$oci" --tag "$TAG" | sed -n 's/.* manifest sha256:\([0-9a-f]\{64\}\) .*/\1/p')"
  [ -n "$digest" ] || { echo "pin-wasm: cannot read $oci" >&2; exit 1; }
  for f in istio/*.yaml; do
    sed -i -E \
      -e "s|^([[:space:]]*sha256:[[:space:]]*)[0-9a-f]{64}([[:space:]]*# ${wasm//./\\.})[[:space:]]*$|\1${sum}\2|" \
      -e "s|^([[:space:]]*sha256:[[:space:]]*)[0-9a-f]{64}([[:space:]]*# oci:${oci})[[:space:]]*$|\1${digest}\2|" \
      -e "s|^([[:space:]]*url:[[:space:]]*oci://[^@]*@sha256:)[0-9a-f]{64}([[:space:]]*# oci:${oci})[[:space:]]*$|\1${digest}\2|" \
      "$f"
  done
  printf '%-40s sha256 %s\n%-40s digest sha256:%s\n' "$wasm" "$sum" "$oci:$TAG" "$digest"
done
[ "$status" -eq 0 ] || exit "$status"
cat <<CMDS

Publish the modules (the documented path: an OCI registry the clusters pull from):
  skopeo copy --preserve-digests oci:target/oci/geomesh-filter-redis:$TAG docker://REGISTRY/geomesh-filter-redis:$TAG
  skopeo copy --preserve-digests oci:target/oci/geomesh-filter-scope:$TAG docker://REGISTRY/geomesh-filter-scope:$TAG
  skopeo copy --preserve-digests oci:target/oci/geomesh-filter-mqtt:$TAG docker://REGISTRY/geomesh-filter-mqtt:$TAG
  skopeo copy --preserve-digests oci:target/oci/geomesh-filter-kafka:$TAG docker://REGISTRY/geomesh-filter-kafka:$TAG
(then replace ghcr.io/geomesh in istio/3*.yaml and istio/4*.yaml by REGISTRY).

Air-gapped clusters instead (20-wasm-server.yaml; namespace geomesh applied first). Server-side
apply: a module is larger than the 256 KiB annotation client-side apply would copy it into.
  kubectl -n geomesh create configmap geomesh-wasm-redis --from-file=target/wasm/geomesh_filter_redis.wasm --dry-run=client -o yaml | kubectl apply --server-side --field-manager=geomesh -f -
  kubectl -n geomesh create configmap geomesh-wasm-scope --from-file=target/wasm/geomesh_filter_scope.wasm --dry-run=client -o yaml | kubectl apply --server-side --field-manager=geomesh -f -
  kubectl -n geomesh create configmap geomesh-wasm-influx --from-file=target/wasm/geomesh_filter_influx.wasm --dry-run=client -o yaml | kubectl apply --server-side --field-manager=geomesh -f -
CMDS
