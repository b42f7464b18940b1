#!/usr/bin/env bash
# The project's one test command (README, CI). Installs what the tests need on a fresh
# Debian machine, then runs every test of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."

# Installs Debian package `$2` when the tests mention `$1` and its command is missing.
install_for_tests() {
    local command=$1 package=$2
    grep -rqs --include='*.rs' "$command" tests crates/*/tests 2>/dev/null || return 0
    command -v "$command" >/dev/null 2>&1 && return 0
    echo "installing $command ($package)…"
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$package"
}

# Stops and disables systemd units `$@` where systemd runs (a container has none).
disable_services() {
    [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1 || return 0
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    local unit
    for unit in "$@"; do
        # One at a time: a unit that is not installed must not keep the others running.
        $sudo systemctl disable --now "$unit" 2>/dev/null || true
    done
}

# End-to-end tests drive the real binary with SIPp, and a real softphone (libre's SIP
# stack, tests/e2e/baresip.rs) calls through it.
install_for_tests sipp sip-tester
install_for_tests baresip baresip-core

# Media tests start their own rtpengine in the foreground on loopback
# (tests/e2e/rtpengine.rs). The package enables and starts its daemons (and the
# recording daemon it recommends): when this script installed it, they are stopped and
# disabled so nothing keeps running after the tests. An rtpengine already there is left
# as its owner set it up.
if ! command -v rtpengine >/dev/null 2>&1; then
    install_for_tests rtpengine rtpengine-daemon
    disable_services rtpengine-daemon rtpengine-recording-daemon \
        rtpengine-recording-nfs-mount
fi

# DNS tests start their own dnsmasq in the foreground on a loopback port
# (crates/edge/tests/dns.rs). dnsmasq-base is the binary alone: no service is installed
# or started (the `dnsmasq` package would add one answering on port 53).
install_for_tests dnsmasq dnsmasq-base

# Cluster tests (issue 18) start their own redis-server in the foreground on a loopback
# port with no persistence (crates/cluster/tests, tests/e2e/cluster.rs). The package
# enables and starts a service on 6379: when this script installed it, it is stopped and
# disabled so nothing keeps running after the tests.
if ! command -v redis-server >/dev/null 2>&1; then
    install_for_tests redis-server redis-server
    disable_services redis-server
fi

# cargo's last line is its last (often empty) doc-test run, so close with the total over
# every test binary.
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test --workspace --locked "$@" 2>&1 | tee "$log" || status=$?
awk '/^test result:/ { p += $4; f += $6; i += $8 }
     END { printf "%d passed, %d failed, %d skipped\n", p, f, i }' "$log"
exit "$status"
