#!/usr/bin/env bash
# Starts Slipway with its embedded defaults (SQLite store and repositories in
# ./slipway-data, API and git on http://127.0.0.1:7700), installing and
# starting the Docker Engine first if it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
cargo build --release --locked --bin slipway
exec ./target/release/slipway server "$@"
