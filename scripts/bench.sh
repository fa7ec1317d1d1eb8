#!/usr/bin/env bash
# Runs Slipway's benchmarks with their peers installed. Usage: scripts/bench.sh [git]
set -euo pipefail
cd "$(dirname "$0")/.."
what="${1:-git}"
case "$what" in
    git)
        if ! command -v fcgiwrap >/dev/null 2>&1 || ! { command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ]; }; then
            apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light fcgiwrap >/dev/null
        fi
        cargo bench --locked --bench git_http
        ;;
    *) echo "unknown benchmark $what (known: git)" >&2; exit 2 ;;
esac
