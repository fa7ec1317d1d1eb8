#!/usr/bin/env bash
# The whole test suite, exactly as CI runs it: dependencies, formatting,
# lints, then every unit and end-to-end test of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh --test
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked
