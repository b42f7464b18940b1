#!/usr/bin/env bash
# The project's one test command (README, CI). Installs what the tests need on a fresh
# Debian machine, then runs every test of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."

need_sipp() {
    # End-to-end tests drive the real binary with SIPp (Debian package sip-tester).
    grep -rqs --include='*.rs' 'sipp' tests crates/*/tests 2>/dev/null
}

if need_sipp && ! command -v sipp >/dev/null 2>&1; then
    echo "installing SIPp (sip-tester)…"
    if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq sip-tester
fi

need_baresip() {
    # A real softphone (libre's SIP stack) calls through the proxy (tests/e2e/baresip.rs).
    grep -rqs --include='*.rs' 'baresip' tests crates/*/tests 2>/dev/null
}

if need_baresip && ! command -v baresip >/dev/null 2>&1; then
    echo "installing baresip (baresip-core)…"
    if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq baresip-core
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
