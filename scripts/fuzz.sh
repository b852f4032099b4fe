#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for a bounded time (libFuzzer -max_total_time).
#
#   scripts/fuzz.sh            each target for GEOMESH_FUZZ_SECONDS (default 30) seconds
#   scripts/fuzz.sh 120        each target for 120 s
#   scripts/fuzz.sh 10 t1 t2   only targets t1 and t2
#
# Layout expected in fuzz/ (a cargo-fuzz project, `cargo fuzz init` / `cargo fuzz add`):
#   fuzz/Cargo.toml            with `[package.metadata] cargo-fuzz = true`, one [[bin]] per target
#                              and an empty `[workspace]` table (it is not a member of the root
#                              workspace; cargo refuses to build it otherwise)
#   fuzz/fuzz_targets/*.rs     the targets
#   fuzz/seeds/<target>/       optional committed seed inputs (read-only corpus)
#   fuzz/corpus/<target>/      working corpus, grows between runs (git-ignored)
# A crash fails the script; the reproducer lands in fuzz/artifacts/<target>/ (git-ignored):
#   RUSTC_BOOTSTRAP=1 cargo fuzz run <target> fuzz/artifacts/<target>/crash-...
#
# cargo-fuzz needs nightly flags (-Zsanitizer=address); with rustup's stable toolchain they are
# unlocked with RUSTC_BOOTSTRAP=1 (stable ships the ASan runtime for x86_64 Linux).
# cargo-fuzz itself comes from scripts/bootstrap.sh (.cache/cargo-bin/bin).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# rustup's bin dir may be missing from a non-login shell's PATH (CI).
[ -d "${CARGO_HOME:-$HOME/.cargo}/bin" ] && export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
cd "$ROOT"
SECONDS_EACH="${1:-${GEOMESH_FUZZ_SECONDS:-30}}"
[ "$#" -gt 0 ] && shift
case "$SECONDS_EACH" in ''|*[!0-9]*) echo "fuzz: seconds must be a number, got '$SECONDS_EACH'" >&2; exit 2;; esac

if [ ! -f fuzz/Cargo.toml ]; then
  echo "fuzz: no fuzz/Cargo.toml, no fuzz targets yet: skipped"
  exit 0
fi
if ! grep -q '^\[workspace\]' fuzz/Cargo.toml; then
  echo "fuzz: fuzz/Cargo.toml needs an empty [workspace] table (it is not a member of the root workspace)" >&2
  exit 1
fi

export PATH="$ROOT/.cache/cargo-bin/bin:$PATH"
command -v cargo-fuzz >/dev/null || { echo "fuzz: cargo-fuzz missing: run scripts/bootstrap.sh" >&2; exit 1; }
export RUSTC_BOOTSTRAP=1

if [ "$#" -gt 0 ]; then
  TARGETS=("$@")
else
  mapfile -t TARGETS < <(cargo fuzz list --fuzz-dir fuzz)
fi
if [ "${#TARGETS[@]}" -eq 0 ]; then
  echo "fuzz: fuzz/ has no targets: skipped"
  exit 0
fi

echo "fuzz: building ${#TARGETS[@]} target(s)"
cargo fuzz build --fuzz-dir fuzz

for t in "${TARGETS[@]}"; do
  corpus=("fuzz/corpus/$t")
  mkdir -p "fuzz/corpus/$t"
  [ -d "fuzz/seeds/$t" ] && corpus+=("fuzz/seeds/$t")
  echo "fuzz: $t for ${SECONDS_EACH}s"
  start=$(date +%s)
  log="fuzz/target/fuzz-$t.log"
  mkdir -p fuzz/target
  set +e
  cargo fuzz run --fuzz-dir fuzz "$t" "${corpus[@]}" -- \
    -max_total_time="$SECONDS_EACH" -rss_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1
  status=$?
  set -e
  if [ "$status" -ne 0 ]; then
    tail -n 60 "$log" >&2
    echo "fuzz: $t FAILED (exit $status, full log $log); reproducer under fuzz/artifacts/$t/" >&2
    exit 1
  fi
  grep -E '^(Done [0-9]+ runs|stat::new_units_added)' "$log" | sed 's/^/  /' || true
  echo "fuzz: $t ok ($(( $(date +%s) - start ))s)"
done
