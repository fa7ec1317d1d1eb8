#!/usr/bin/env bash
# Runs Slipway's benchmarks with their peers installed.
# Usage: scripts/bench.sh [git|ci|exec|deploy|proxy|scheduler|failover|cluster|stack|forward|all]
set -euo pipefail
cd "$(dirname "$0")/.."

install_missing() {
    local missing=()
    for pair in "$@"; do
        local bin="${pair%%:*}" pkg="${pair##*:}"
        command -v "$bin" >/dev/null 2>&1 || [ -x "/usr/sbin/$bin" ] || missing+=("$pkg")
    done
    if [ "${#missing[@]}" -gt 0 ]; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
}

run() {
    case "$1" in
        git)   install_missing nginx:nginx-light fcgiwrap:fcgiwrap; cargo bench --locked --bench git_http ;;
        ci)    bash scripts/deps.sh; cargo bench --locked --bench ci ;;
        exec)  bash scripts/deps.sh; cargo bench --locked --bench exec ;;
        deploy) bash scripts/deps.sh; cargo bench --locked --bench deploy ;;
        proxy) install_missing wrk:wrk haproxy:haproxy; cargo bench --locked --bench proxy ;;
        scheduler) bash scripts/deps.sh; cargo bench --locked --bench scheduler ;;
        # Cluster failover with real servers and agents (needs Docker and etcd).
        failover) bash scripts/deps.sh; cargo bench --locked --bench failover ;;
        # A five-service Compose stack going live, against Debian's docker-compose.
        stack) bash scripts/deps.sh; install_missing docker-compose:docker-compose; cargo bench --locked --bench stack ;;
        # Stack service calls through a node's forwarder, against HAProxy (TCP mode).
        forward) install_missing haproxy:haproxy; cargo bench --locked --bench forward ;;
        # Everything the issue asks of cluster mode: throughput and failover.
        cluster) run scheduler; run failover ;;
        *) echo "unknown benchmark $1 (known: git, ci, exec, deploy, proxy, scheduler, failover, cluster, stack, forward, all)" >&2; exit 2 ;;
    esac
}

what="${1:-all}"
if [ "$what" = all ]; then
    for b in git ci exec deploy proxy scheduler failover stack forward; do run "$b"; done
else
    run "$what"
fi
