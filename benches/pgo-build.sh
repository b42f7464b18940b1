#!/usr/bin/env bash
# pgo-build.sh -- the profile-guided release build of the proxy (and of the rig's floor):
# what the README's figures are measured on, and what to deploy.
#
#   benches/pgo-build.sh
#
# 1. Builds trunkstore and benches' floor instrumented (-Cprofile-generate) into
#    target/pgo-instrumented.
# 2. Trains them on the project's own SIPp scenarios (benches/sipp/load.sh), each run
#    bounded and on loopback only, all of which must complete every call:
#      inbound   carrier -> DID -> PBX over UDP, 20,000 calls at 1,000/s
#      auth      digest-authenticated PBX -> carrier, 5,000 calls at 500/s
#      register  digest REGISTER rounds from 10,000 PBXs, 5,000 rounds at 500/s
#      tls       the inbound scenario over TLS on both legs (load-tls.sh, needs stunnel
#                and openssl; skipped with a warning without them), 3,000 calls at 300/s
#      floor     the inbound scenario through the floor, 10,000 calls at 1,000/s
# 3. Merges the profiles (llvm-profdata of the toolchain's own LLVM: the llvm-tools
#    rustup component, added when missing) into target/pgo/trunkstore.profdata.
# 4. Builds target/release/trunkstore and target/release/floor with -Cprofile-use.
#
# Why: on the rig the SIP work runs with caches the kernel's network stack has just
# emptied (about half of the CPU per call is the kernel's send and receive path), so
# where code sits and which branch is the fall-through count as much as instructions.
# With the profile, LLVM lays hot paths out together and moves cold code away. Code no
# scenario reaches (the admin API, media, cluster mode, DNS-named targets) is laid out
# as cold: still correct, and on no call's path here.
#
# Needs: sipp (Debian's sip-tester, which tests/run.sh installs), stunnel and openssl for
# the TLS run (Debian's stunnel4; without them that run is skipped) and rustup (for
# llvm-profdata). Takes two release builds (a few minutes each) and about a minute of
# training. A plain `cargo build --release` afterwards rebuilds without the profile.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
SIPP_DIR=$ROOT/benches/sipp
GEN_DIR=$ROOT/target/pgo-instrumented
RAW=$ROOT/target/pgo/raw
PROFILE=$ROOT/target/pgo/trunkstore.profdata
PACKAGES=(-p trunkstore -p trunkstore-benches --bin trunkstore --bin floor)

die() { echo "pgo-build.sh: $*" >&2; exit 2; }
log() { echo "[$(date +%T)] pgo-build.sh: $*" >&2; }

# llvm-profdata must read the raw format of rustc's own LLVM: the toolchain's copy.
find_profdata() {
	local host sysroot tool
	host=$(rustc -vV | sed -n 's/^host: //p')
	sysroot=$(rustc --print sysroot)
	tool=$sysroot/lib/rustlib/$host/bin/llvm-profdata
	if [ ! -x "$tool" ]; then
		command -v rustup >/dev/null || die "llvm-profdata not found at $tool and no rustup to add llvm-tools"
		log "adding the llvm-tools rustup component (llvm-profdata)"
		rustup component add llvm-tools >&2 || die "cannot add the llvm-tools component"
	fi
	[ -x "$tool" ] || die "llvm-profdata not found at $tool"
	echo "$tool"
}

# Runs one training scenario; a run that lost calls would teach the wrong paths.
train() {
	local line
	line=$("$@" 2>&1 | grep '^proxy=') || die "training run failed: $*"
	echo "$line" >&2
	case "$line" in
	*" failed=0 "*) ;;
	*) die "training run lost calls: $line" ;;
	esac
}

command -v sipp >/dev/null || die "sipp not found (apt-get install sip-tester, as tests/run.sh does)"
PROFDATA=$(find_profdata)

log "instrumented build into $GEN_DIR"
rm -rf "$RAW"
mkdir -p "$RAW"
RUSTFLAGS="-Cprofile-generate=$RAW" CARGO_TARGET_DIR=$GEN_DIR \
	cargo build --release --locked "${PACKAGES[@]}"
# Build scripts ran instrumented too; their profiles are not the proxy's.
rm -f "$RAW"/*.profraw

BIN=$GEN_DIR/release/trunkstore
log "training"
train "$SIPP_DIR/load.sh" --rate 1000 --calls 20000 --name pgo-train -- \
	"$BIN" serve --config "$SIPP_DIR/config/trunkstore.json"
train "$SIPP_DIR/load.sh" --scenario auth --auth loadpbx:load-s3cret --rate 500 \
	--calls 5000 --proxy-port 5160 --uas-port 5190 --uac-port 5170 --name pgo-train -- \
	"$BIN" serve --config "$SIPP_DIR/config-auth/trunkstore.json"
"$SIPP_DIR/gen-register-users.sh" >/dev/null
train "$SIPP_DIR/load.sh" --scenario register --rate 500 --calls 5000 --proxy-port 5260 \
	--uac-port 5270 --uas-port 5290 --name pgo-train -- \
	"$BIN" serve --config "$SIPP_DIR/config-register/trunkstore.json"
if command -v stunnel >/dev/null && command -v openssl >/dev/null; then
	train "$SIPP_DIR/load-tls.sh" --rate 300 --calls 3000 trunkstore "$BIN"
else
	log "warning: no stunnel or openssl (apt-get install stunnel4 openssl): the TLS paths are not trained (laid out as cold)"
fi
train "$SIPP_DIR/load.sh" --rate 1000 --calls 10000 --name pgo-train -- \
	"$GEN_DIR/release/floor"

ls "$RAW"/*.profraw >/dev/null 2>&1 || die "the training wrote no profile"
"$PROFDATA" merge -o "$PROFILE" "$RAW"
log "profile: $PROFILE"

log "optimised build into target/release"
RUSTFLAGS="-Cprofile-use=$PROFILE" cargo build --release --locked "${PACKAGES[@]}"
log "done: target/release/trunkstore and target/release/floor"
