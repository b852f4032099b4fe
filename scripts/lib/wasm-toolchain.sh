# Sourced by scripts/build-wasm.sh and scripts/test-wasm.sh: the wasm32-unknown-unknown
# toolchain and target dir both use, chosen the same way.
#
# Toolchain: rustup's wasm32-unknown-unknown target when installed; otherwise Debian's
# rustc-web/cargo-web/rust-web-src/rust-web-clippy (1.96) with -Zbuild-std
# (see /work/shared/notes/environment.md). scripts/bootstrap.sh installs the latter.
#
# Expects ROOT (the repo) and WASM_WHO (the caller's name, for messages). Sets and exports
# CARGO_TARGET_DIR (GEOMESH_WASM_TARGET_DIR, default <repo>/.cache/wasm-target: kept between
# runs so std is built once) and sets WASM_TARGET, WASM_TARGET_DIR, WASM_TOOLCHAIN (for logs).
# Defines:
#   wasm_cargo SUBCOMMAND ARGS...   cargo SUBCOMMAND --target wasm32-unknown-unknown [build-std] ARGS
#   wasm_clippy ARGS...             cargo clippy, the same way (ARGS may end in `-- -D warnings`)

WASM_TARGET=wasm32-unknown-unknown
WASM_TARGET_DIR="${GEOMESH_WASM_TARGET_DIR:-$ROOT/.cache/wasm-target}"

_wasm_installed_targets="$(rustup target list --installed 2>/dev/null || true)"
if grep -qx "$WASM_TARGET" <<<"$_wasm_installed_targets"; then
  WASM_TOOLCHAIN="rustup $(rustc --version | cut -d' ' -f2)"
  wasm_cargo() { local sub="$1"; shift; cargo "$sub" --target "$WASM_TARGET" "$@"; }
  wasm_clippy() { cargo clippy --target "$WASM_TARGET" "$@"; }
else
  for _wasm_b in /usr/bin/rustc /usr/bin/cargo; do
    [ -x "$_wasm_b" ] || { echo "$WASM_WHO: no rustup wasm32 target and no $_wasm_b: run scripts/bootstrap.sh" >&2; exit 1; }
  done
  command -v wasm-ld >/dev/null || { echo "$WASM_WHO: wasm-ld missing (Debian package lld): run scripts/bootstrap.sh" >&2; exit 1; }
  WASM_TOOLCHAIN="Debian $(/usr/bin/rustc --version | cut -d' ' -f2) + build-std"
  export RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1 CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER=wasm-ld
  # rustup's proxies (rustdoc, clippy-driver, ...) come first on PATH; keep Debian's own.
  unset RUSTDOC RUSTC_WRAPPER RUSTC_WORKSPACE_WRAPPER
  # (`cargo test` adds the `test` crate to build-std by itself.)
  wasm_cargo() {
    local sub="$1"; shift
    /usr/bin/cargo "$sub" --target "$WASM_TARGET" -Zbuild-std=std,panic_abort "$@"
  }
  wasm_clippy() {
    [ -x /usr/bin/cargo-clippy ] && [ -x /usr/bin/clippy-driver ] \
      || { echo "$WASM_WHO: /usr/bin/cargo-clippy missing (Debian package rust-web-clippy): run scripts/bootstrap.sh" >&2; exit 1; }
    # Call Debian's cargo-clippy directly: `cargo clippy` would resolve to rustup's proxy in
    # ~/.cargo/bin first. CARGO tells it which cargo to drive; it wraps workspace crates with the
    # clippy-driver beside it (same 1.96 as /usr/bin/rustc, which builds std).
    CARGO=/usr/bin/cargo /usr/bin/cargo-clippy clippy --target "$WASM_TARGET" -Zbuild-std=std,panic_abort "$@"
  }
fi
unset _wasm_installed_targets _wasm_b
export CARGO_TARGET_DIR="$WASM_TARGET_DIR"
