#!/usr/bin/env bash
# Builds every Proxy-Wasm filter (each package under filters/* with a cdylib lib target) for
# wasm32-unknown-unknown with the workspace profile `wasm`, and copies the results to
# target/wasm/<lib_name>.wasm (lib name = crate name with '-' -> '_').
#
#   scripts/build-wasm.sh                 build all filters
#   scripts/build-wasm.sh --clippy        clippy on all filters for wasm32, -D warnings
#   scripts/build-wasm.sh [--clippy] P..  only the named packages
#
# Toolchain and target dir: scripts/lib/wasm-toolchain.sh (rustup's wasm32-unknown-unknown target
# when installed; otherwise Debian's rustc-web 1.96 with -Zbuild-std), shared with
# scripts/test-wasm.sh.
#
# Env:
#   GEOMESH_WASM_TARGET_DIR  cargo target dir (default <repo>/.cache/wasm-target; kept between
#                            runs so std is built once)
#   GEOMESH_WASM_OUT         output dir (default <repo>/target/wasm)
#   GEOMESH_WASM_MAX_BYTES   size limit per .wasm (default 1048576 = 1 MiB, must be below)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# rustup's bin dir may be missing from a non-login shell's PATH (CI).
[ -d "${CARGO_HOME:-$HOME/.cargo}/bin" ] && export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
cd "$ROOT"
OUT="${GEOMESH_WASM_OUT:-$ROOT/target/wasm}"
MAX="${GEOMESH_WASM_MAX_BYTES:-1048576}"

MODE=build
if [ "${1:-}" = "--clippy" ]; then MODE=clippy; shift; fi
case "${1:-}" in -h|--help) sed -n '2,20p' "$0"; exit 0;; esac

# package name <TAB> lib target name, for every cdylib package under filters/.
mapfile -t FILTERS < <(cargo metadata --no-deps --format-version 1 --offline 2>/dev/null \
  | python3 -c '
import json, os, sys
root = os.path.realpath(sys.argv[1])
m = json.load(sys.stdin)
for p in sorted(m["packages"], key=lambda p: p["name"]):
    rel = os.path.relpath(os.path.realpath(p["manifest_path"]), root)
    if not rel.startswith("filters" + os.sep):
        continue
    for t in p["targets"]:
        if "cdylib" in t["crate_types"]:
            print(p["name"] + "\t" + t["name"].replace("-", "_"))
' "$ROOT") || true
if [ "${#FILTERS[@]}" -eq 0 ] && ! cargo metadata --no-deps --format-version 1 --offline >/dev/null; then
  echo "build-wasm: cargo metadata failed (is every Cargo.toml valid?)" >&2
  exit 1
fi

if [ "$#" -gt 0 ]; then
  selected=()
  for want in "$@"; do
    hit=""
    for f in "${FILTERS[@]}"; do [ "${f%%$'\t'*}" = "$want" ] && hit="$f"; done
    [ -n "$hit" ] || { echo "build-wasm: '$want' is not a cdylib package under filters/" >&2; exit 1; }
    selected+=("$hit")
  done
  FILTERS=("${selected[@]}")
fi

if [ "${#FILTERS[@]}" -eq 0 ]; then
  echo "build-wasm: no cdylib crate under filters/, nothing to $MODE"
  exit 0
fi

PKGS=()
for f in "${FILTERS[@]}"; do PKGS+=(-p "${f%%$'\t'*}"); done

WASM_WHO=build-wasm
# shellcheck source=lib/wasm-toolchain.sh
. "$ROOT/scripts/lib/wasm-toolchain.sh"
TARGET="$WASM_TARGET"
TD="$WASM_TARGET_DIR"
run_build()  { wasm_cargo build --profile wasm "${PKGS[@]}"; }
run_clippy() { wasm_clippy --profile wasm "${PKGS[@]}" -- -D warnings; }

echo "build-wasm: $MODE ${#FILTERS[@]} crate(s) with $WASM_TOOLCHAIN, target dir $TD"

if [ "$MODE" = clippy ]; then
  run_clippy
  echo "build-wasm: clippy clean (wasm32, -D warnings)"
  exit 0
fi

run_build
mkdir -p "$OUT"
status=0
for f in "${FILTERS[@]}"; do
  lib="${f#*$'\t'}"
  src="$TD/$TARGET/wasm/$lib.wasm"
  [ -f "$src" ] || { echo "build-wasm: expected $src was not produced" >&2; exit 1; }
  cp -f "$src" "$OUT/$lib.wasm.tmp"
  # Envoy calls proxy_on_upstream_connection_close after proxy_on_delete for network filters and
  # the SDK panics on the unknown context (see the script's header): hide that export.
  python3 "$ROOT/scripts/wasm-mask-exports.py" "$OUT/$lib.wasm.tmp" proxy_on_upstream_connection_close >/dev/null
  mv -f "$OUT/$lib.wasm.tmp" "$OUT/$lib.wasm"
  size=$(stat -c %s "$OUT/$lib.wasm")
  if [ "$size" -ge "$MAX" ]; then
    printf '%-40s %9d bytes  TOO BIG (limit %d)\n' "target/wasm/$lib.wasm" "$size" "$MAX" >&2
    status=1
  else
    printf '%-40s %9d bytes\n' "${OUT#$ROOT/}/$lib.wasm" "$size"
  fi
done
exit "$status"
