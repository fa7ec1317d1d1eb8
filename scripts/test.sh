#!/usr/bin/env bash
# The whole test suite, exactly as CI runs it: dependencies, formatting,
# lints, then every unit and end-to-end test of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh --test
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# The README tour test (tests/readme.rs) starts Slipway with ./scripts/up.sh,
# which runs the release binary: build it first, as up.sh would.
time cargo build --release --locked --bin slipway
cargo test --workspace --locked
