# geomesh: the two commands are `make test` (what CI runs, via .ci/run) and `make demo`.
#
#   make bootstrap   install missing tools (Debian packages, Envoy, json-server, cargo-fuzz)
#   make build       bootstrap + .wasm filters (target/wasm/) + native binaries (dev profile)
#   make test        build + clippy (native and wasm32, -D warnings) + cargo test --workspace
#                    (unit + integration against real Envoy/servers) + the protocol crates'
#                    tests compiled for wasm32 under wasm-bindgen-test in node + bounded fuzzing
#   make demo        bootstrap + release builds + run the main topology (geomesh-demo)
#   make clippy | make wasm | make test-wasm | make fuzz     the single steps
#   make oci         the filters as OCI image layouts (target/oci/), for Istio's WasmPlugin
#   make images      the bridge and agent container images (needs a Docker engine)
#   make schema      rewrite schema/geomesh-filter.schema.json from the config field tables
#   make bench-mqtt  the MQTT benchmark (release build; writes integration/benches/results/)
#
# Variables: FUZZ_SECONDS (per fuzz target, default 30), CARGO_TARGET_DIR (native builds and
# tests; the harness finds the native binaries next to the test executables), CARGO (default
# cargo). Everything downloaded lives in .cache/ (git-ignored), wasm-bindgen-test-runner too.

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := test
# 2 cores and steps that each use both: run steps one after another, in the order written.
.NOTPARALLEL:

# rustup's cargo may be missing from a non-login shell's PATH (CI); cargo-fuzz lives in .cache.
export PATH := $(or $(CARGO_HOME),$(HOME)/.cargo)/bin:$(CURDIR)/.cache/cargo-bin/bin:$(PATH)
CARGO ?= cargo
FUZZ_SECONDS ?= 30
# Incremental caches are large and a clean checkout (CI) never reuses them; set it to 1 to
# iterate locally with make.
export CARGO_INCREMENTAL ?= 0

.PHONY: disk bootstrap wasm native build clippy clippy-native clippy-wasm test-rust test-wasm fuzz test demo oci images schema bench-mqtt

# Printed first so a CI log shows how much room the run started with (a clean run needs about
# DISK_NEED_GB; see README "Disk").
DISK_NEED_GB ?= 10
disk:
	@avail=$$(df -Pk . | awk 'NR==2 {print int($$4/1048576)}'); \
	  echo "disk: $${avail} GiB free on $$(df -P . | awk 'NR==2 {print $$6}'), a clean run needs about $(DISK_NEED_GB) GiB"; \
	  if [ "$$avail" -lt "$(DISK_NEED_GB)" ]; then \
	    echo "disk: warning: less than $(DISK_NEED_GB) GiB free; builds may fail with 'No space left on device'" >&2; \
	    du -sh target .cache fuzz/target 2>/dev/null || true; fi

bootstrap:
	scripts/bootstrap.sh

wasm: bootstrap
	scripts/build-wasm.sh

# The binaries the integration tests start (geomesh-bridge, geomesh-agent, ...), in the same
# profile and target dir as `cargo test` so the harness finds them.
native: bootstrap
	$(CARGO) build --workspace --bins
	$(CARGO) build -p geomesh-native

build: wasm native

clippy-native: bootstrap
	$(CARGO) clippy --workspace --all-targets -- -D warnings

clippy-wasm: bootstrap
	scripts/build-wasm.sh --clippy

clippy: clippy-native clippy-wasm

# Integration tests load target/wasm/*.wasm and the native binaries: build first.
test-rust: build
	$(CARGO) test --workspace

# protocols/* tests built for wasm32-unknown-unknown (32-bit usize, the filters' target), run
# in node by wasm-bindgen-test-runner (installed into .cache/cargo-bin at Cargo.lock's version).
test-wasm: bootstrap
	scripts/test-wasm.sh

fuzz: bootstrap
	scripts/fuzz.sh $(FUZZ_SECONDS)

# Prerequisites run left to right, each once (.NOTPARALLEL): cheap checks first, fuzzing last.
test: disk build clippy test-rust test-wasm fuzz

# The filters as OCI image layouts (target/oci/geomesh-filter-NAME, tag GEOMESH_VERSION), in the
# format Istio's Wasm fetcher reads; istio/pin-wasm.sh writes their digests into the manifests,
# `skopeo copy --preserve-digests oci:DIR:TAG docker://REGISTRY/NAME:TAG` pushes them.
GEOMESH_VERSION ?= 0.1.0
oci: wasm
	$(CARGO) build -q -p geomesh-wasm-oci
	for m in redis scope mqtt influx kafka; do \
	  $(CARGO) run -q -p geomesh-wasm-oci -- build --wasm target/wasm/geomesh_filter_$$m.wasm \
	    --out target/oci/geomesh-filter-$$m --tag $(GEOMESH_VERSION); done

# The bridge and agent images (needs a Docker engine; not part of `make test`, which lints the
# Dockerfiles with hadolint and checks what they build). One name everywhere: IMAGE_REPO.
IMAGE_REPO ?= ghcr.io/geomesh
images:
	docker build -f bridge/Dockerfile -t $(IMAGE_REPO)/geomesh-bridge:$(GEOMESH_VERSION) .
	docker build -f agent/Dockerfile -t $(IMAGE_REPO)/geomesh-agent:$(GEOMESH_VERSION) .

# The filter configuration's JSON Schema, written from the field tables the parsers read
# (tools/config-schema); `make test` fails while the committed file differs from them.
schema:
	$(CARGO) run -q -p geomesh-config-schema -- --write

demo: wasm
	$(CARGO) build --workspace --bins --release
	$(CARGO) run -p geomesh-integration --bin geomesh-demo --release

# The MQTT benchmark (integration/src/bin/bench-mqtt.rs): direct / Envoy tcp_proxy / geomesh over
# two mosquitto brokers; writes integration/benches/results/mqtt-<date>.md.
bench-mqtt: bootstrap
	scripts/build-wasm.sh geomesh-filter-mqtt
	$(CARGO) build --release -p geomesh-bridge
	$(CARGO) run --release -p geomesh-integration --bin bench-mqtt
