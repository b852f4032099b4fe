#!/usr/bin/env bash
# Runs the sans-IO protocol crates' tests (each package under protocols/*: unit tests and
# integration tests, not doctests) compiled for wasm32-unknown-unknown, the filters' target
# inside Envoy's V8 (32-bit usize, 1 MiB stack), under wasm-bindgen-test in node.
#
#   scripts/test-wasm.sh          all protocol crates
#   scripts/test-wasm.sh P..      only the named packages
#
# Tests run there as #[wasm_bindgen_test]: test modules import
#   #[cfg(target_arch = "wasm32")] use wasm_bindgen_test::wasm_bindgen_test as test;
# so their #[test]s (and proptest!'s) run on both targets; tests/wasm32.rs in each crate
# (compiled only for wasm32) adds the 32-bit edge cases.
#
# The runner, wasm-bindgen-test-runner, comes from wasm-bindgen-cli at exactly the wasm-bindgen
# version in Cargo.lock, installed into <repo>/.cache/cargo-bin if missing (a second run
# installs nothing). node must be on PATH (scripts/bootstrap.sh installs it).
# Toolchain and target dir: scripts/lib/wasm-toolchain.sh, as for scripts/build-wasm.sh.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# rustup's bin dir may be missing from a non-login shell's PATH (CI).
[ -d "${CARGO_HOME:-$HOME/.cargo}/bin" ] && export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
cd "$ROOT"
case "${1:-}" in -h|--help) sed -n '2,17p' "$0"; exit 0;; esac
die() { echo "test-wasm: $*" >&2; exit 1; }

command -v node >/dev/null || die "node not found (Debian package nodejs): run scripts/bootstrap.sh"

# ---- wasm-bindgen-test-runner, at Cargo.lock's wasm-bindgen version ------------------------
WB_VERSION="$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/^version = "|"$/, ""); print; exit }' Cargo.lock)"
[ -n "$WB_VERSION" ] || die "no wasm-bindgen in Cargo.lock"
BIN_ROOT="$ROOT/.cache/cargo-bin"
RUNNER="$BIN_ROOT/bin/wasm-bindgen-test-runner"
if [ -x "$RUNNER" ] && [ "$("$RUNNER" --version 2>/dev/null || true)" = "wasm-bindgen-test-runner $WB_VERSION" ]; then
  echo "test-wasm: wasm-bindgen-test-runner $WB_VERSION present ($RUNNER)"
else
  echo "test-wasm: installing wasm-bindgen-cli $WB_VERSION into $BIN_ROOT"
  # Native build with rustup's cargo (before the wasm32 toolchain's environment is set below).
  # Without default features: no TLS stack, which only downloads browser drivers (node needs
  # none). Not --locked: its lock file pins a webpki-roots release the registry does not serve.
  # Own target dir under .cache so a rerun after a failure does not start from scratch.
  CARGO_TARGET_DIR="$ROOT/.cache/cargo-install-target" \
    cargo install --quiet --force --no-default-features --root "$BIN_ROOT" "wasm-bindgen-cli@$WB_VERSION"
  rm -rf "$ROOT/.cache/cargo-install-target"
  [ "$("$RUNNER" --version 2>/dev/null || true)" = "wasm-bindgen-test-runner $WB_VERSION" ] \
    || die "$RUNNER does not report version $WB_VERSION after install"
  echo "test-wasm: wasm-bindgen-test-runner $WB_VERSION installed ($RUNNER)"
fi

# ---- the protocol crates --------------------------------------------------------------------
mapfile -t CRATES < <(cargo metadata --no-deps --format-version 1 --offline \
  | python3 -c '
import json, os, sys
root = os.path.realpath(sys.argv[1])
m = json.load(sys.stdin)
for p in sorted(m["packages"], key=lambda p: p["name"]):
    rel = os.path.relpath(os.path.realpath(p["manifest_path"]), root)
    if rel.startswith("protocols" + os.sep):
        print(p["name"])
' "$ROOT")
[ "${#CRATES[@]}" -gt 0 ] || die "no package under protocols/ (cargo metadata failed?)"
if [ "$#" -gt 0 ]; then
  for want in "$@"; do
    printf '%s\n' "${CRATES[@]}" | grep -qx -- "$want" || die "'$want' is not a package under protocols/"
  done
  CRATES=("$@")
fi
PKGS=()
for c in "${CRATES[@]}"; do PKGS+=(-p "$c"); done

WASM_WHO=test-wasm
# shellcheck source=lib/wasm-toolchain.sh
. "$ROOT/scripts/lib/wasm-toolchain.sh"
export CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER="$RUNNER"
echo "test-wasm: ${CRATES[*]} for $WASM_TARGET with $WASM_TOOLCHAIN, target dir $WASM_TARGET_DIR, in node $(node --version)"

# --tests: unit and integration tests; doctests would need the toolchain's rustdoc to
# cross-compile them, and they document the API rather than test the decoders.
# Lint the test code as built for wasm32 first (tests/wasm32.rs exists only there; the native
# `make clippy` never sees it). Same -D warnings as the rest of `make clippy`.
wasm_clippy --tests "${PKGS[@]}" -- -D warnings
echo "test-wasm: clippy clean (test code, wasm32, -D warnings)"

log="$(mktemp)"
trap 'rm -f "$log"' EXIT
status=0
wasm_cargo test --tests --no-fail-fast "${PKGS[@]}" 2>&1 | tee "$log" || status=$?
# One closing line for all test binaries (each prints its own "test result:").
python3 - "$log" <<'PY'
import re, sys
p = f = i = 0
for line in open(sys.argv[1], errors="replace"):
    m = re.match(r"test result: \w+\. (\d+) passed; (\d+) failed; (\d+) ignored", line)
    if m:
        p += int(m[1]); f += int(m[2]); i += int(m[3])
print("test-wasm: wasm32-unknown-unknown under node, all test binaries:")
print(f"test-wasm: {p} passed, {f} failed, {i} skipped")
PY
exit "$status"
