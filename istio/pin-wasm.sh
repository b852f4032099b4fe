#!/usr/bin/env bash
# Pins the modules the manifests load to the ones built in target/wasm/ and prints the commands
# that publish them to the cluster (the ConfigMaps 20-wasm-server.yaml serves).
#
#   scripts/build-wasm.sh && istio/pin-wasm.sh
#
# Every `sha256:` line of istio/*.yaml that ends with `# target/wasm/NAME.wasm` gets the sha256
# of that file: the hash istio-agent (or Envoy) checks after downloading the module, i.e.
#   sha256sum target/wasm/geomesh_filter_redis.wasm
# Run it after every build you deploy: a module whose hash differs from the manifest is refused
# (the filter then fails closed: connections are denied, nothing passes unrouted).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
status=0
for wasm in target/wasm/geomesh_filter_redis.wasm target/wasm/geomesh_filter_scope.wasm; do
  if [ ! -f "$wasm" ]; then
    echo "pin-wasm: $wasm missing: run scripts/build-wasm.sh" >&2
    status=1
    continue
  fi
  sum="$(sha256sum "$wasm" | cut -d' ' -f1)"
  for f in istio/*.yaml; do
    # Only lines marked with this module's path; the hash is the 64 hex digits after `sha256:`.
    sed -i -E "s|^([[:space:]]*sha256:[[:space:]]*)[0-9a-f]{64}([[:space:]]*# ${wasm//./\\.})[[:space:]]*$|\1${sum}\2|" "$f"
  done
  n="$(grep -l -E "sha256:[[:space:]]*${sum}[[:space:]]*# ${wasm//./\\.}" istio/*.yaml | wc -l)"
  printf '%-40s %s  (%s manifests)\n' "$wasm" "$sum" "$n"
done
[ "$status" -eq 0 ] || exit "$status"
cat <<'CMDS'

Publish the modules (namespace geomesh, 00-namespace.yaml applied first):
  kubectl -n geomesh create configmap geomesh-wasm-redis --from-file=target/wasm/geomesh_filter_redis.wasm --dry-run=client -o yaml | kubectl apply -f -
  kubectl -n geomesh create configmap geomesh-wasm-scope --from-file=target/wasm/geomesh_filter_scope.wasm --dry-run=client -o yaml | kubectl apply -f -
CMDS
