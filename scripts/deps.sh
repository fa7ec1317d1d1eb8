#!/usr/bin/env bash
# Installs and starts what Slipway and its tests need on a Debian machine:
# git, the Docker Engine (Debian's docker.io), busybox-static (the tiny base
# image is built from it), debootstrap (the Debian and language images), etcd + protoc (cluster mode), iproute2 (the
# partition test's network namespaces) and, with `--test`,
# chromium + chromium-driver (the dashboard's browser test) and prometheus
# (promtool and the server, for the /metrics test). Idempotent;
# safe to run on every start.
set -euo pipefail

need_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

missing=()
command -v git >/dev/null 2>&1 || missing+=(git)
command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
[ -x /bin/busybox ] && /bin/busybox --list 2>/dev/null | grep -qx wget || missing+=(busybox-static)
# Cluster mode: etcd holds the cluster state (the tests start their own
# members), etcdctl is for operators, and protoc compiles the etcd-client
# crate's gRPC definitions at build time.
command -v etcd >/dev/null 2>&1 || missing+=(etcd-server)
command -v etcdctl >/dev/null 2>&1 || missing+=(etcd-client)
command -v protoc >/dev/null 2>&1 || missing+=(protobuf-compiler)
# `slipway images bootstrap --debian` and `slipway exec images build` make
# Debian root file systems for the base and language images.
command -v debootstrap >/dev/null 2>&1 || [ -x /usr/sbin/debootstrap ] || missing+=(debootstrap)
# The network-partition test puts agents in network namespaces (ip netns, veth).
command -v ip >/dev/null 2>&1 || [ -x /usr/sbin/ip ] || [ -x /sbin/ip ] || missing+=(iproute2)
# The web dashboard's browser test drives headless Chromium through chromedriver.
if [ "${1:-}" = "--test" ]; then
    command -v chromium >/dev/null 2>&1 || missing+=(chromium)
    command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
    # tests/prometheus.rs lints /metrics with promtool and scrapes it with a real Prometheus.
    { command -v promtool && command -v prometheus; } >/dev/null 2>&1 || missing+=(prometheus)
fi
if [ "${#missing[@]}" -gt 0 ]; then
    echo "==> installing ${missing[*]} from Debian" >&2
    need_root apt-get update -qq
    need_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

docker_up() { timeout 5 docker version --format '{{.Server.Version}}' >/dev/null 2>&1; }
if ! docker_up; then
    echo "==> starting the Docker Engine" >&2
    if command -v systemctl >/dev/null 2>&1 && systemctl is-system-running >/dev/null 2>&1; then
        need_root systemctl start docker || true
    fi
    if ! docker_up; then
        need_root sh -c 'nohup dockerd >/var/log/slipway-dockerd.log 2>&1 &'
    fi
    for _ in $(seq 1 60); do
        docker_up && break
        sleep 0.5
    done
fi
if ! docker_up; then
    echo "error: the Docker Engine did not start; see /var/log/slipway-dockerd.log" >&2
    exit 1
fi
echo "==> Docker Engine $(docker version --format '{{.Server.Version}}') is up" >&2
