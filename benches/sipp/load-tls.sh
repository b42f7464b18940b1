#!/usr/bin/env bash
# load-tls.sh -- load.sh's inbound scenario with both legs over TLS: one proxy, a fixed
# call rate for a fixed number of calls, the proxy's CPU time per call and the INVITE ->
# 200 latency.
#
#   benches/sipp/load-tls.sh [options] trunkstore [BINARY]   (default target/release/trunkstore)
#   benches/sipp/load-tls.sh [options] kamailio               (kamailio-tls.cfg, tls module)
#
# Debian's SIPp has no TLS, so stunnel (stunnel4) wraps SIPp's TCP, the same for both
# proxies:
#
#   UAC SIPp --tcp--> stunnel client :5471 --TLS--> proxy :5461 --TLS--> stunnel server
#   :5491 --tcp--> UAS SIPp :5490
#
# The proxy verifies the PBX side (stunnel server) against the test CA, the stunnel client
# verifies the proxy; a throwaway CA and two certificates for 127.0.0.1 (P-256) are made
# with openssl in the run's directory. Every INVITE (uac-inbound.xml, Request-URI on the
# proxy's TLS port) goes to DID +14155550000..0999 -> sip:NPANXXXXXX@127.0.0.1:5491 over
# TLS; the UAS's Contact names the stunnel port with ;transport=tls (uas.xml rewritten
# into the run directory), so a proxy that routes ACK/BYE by Contact also goes over TLS.
# One TLS connection each side (SIPp's single TCP socket, reused by both proxies).
#
# The proxy runs on CPU 1; SIPps and both stunnels on CPU 0. cpu_us_per_call is the
# proxy's process tree only: the stunnels' CPU is excluded (stunnel_cpu_us_per_call is
# printed beside it). Prints one line:
#   proxy=NAME scenario=tls rate=R calls=N ok=… failed=… uas_failed=… cpu_us_per_call=…
#   p50_ms=… p99_ms=… stunnel_cpu_us_per_call=… sipp_rc=… out=DIR
#
# Options: --rate R (default 300), --calls N (default 6000; latency is sampled by 100s of
# calls: SIPp writes its rtt file every 100 calls), --out DIR
# Ports (fixed, all 127.0.0.1): proxy tls 5461 (+ udp/tcp 5460), UAC 5470, stunnel client
# 5471, UAS 5490, stunnel server 5491; SIPp media 16490/17490 (unused, no RTP).
# The stunnel client connects to the proxy from 127.0.0.3, the carrier's trusted address.
# Safety: 127.0.0.1 and 127.0.0.3 only; everything bounded by timeout(1); a port already bound stops the
# run; only processes started here are signalled, by PID.
set -u

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
RATE=300; CALLS=6000; OUT=""
IP=127.0.0.1
# The stunnel client's source address toward the proxy: the carrier (trusted by address),
# apart from the PBX at 127.0.0.1.
CARRIER_IP=127.0.0.3
PROXY_PORT=5460; TLS_PORT=5461; UAC_PORT=5470; UAC_TUNNEL=5471; UAS_PORT=5490; UAS_TLS=5491
MEDIA_PORT=16490

die() { echo "load-tls.sh: $*" >&2; exit 2; }
log() { echo "[$(date +%T)] $*" >&2; }

while [ $# -gt 0 ]; do
	case "$1" in
	--rate) RATE=$2; shift 2 ;;
	--calls) CALLS=$2; shift 2 ;;
	--out) OUT=$2; shift 2 ;;
	-h|--help) sed -n '2,/^set -u$/p' "$0" | sed '$d'; exit 0 ;;
	-*) die "unknown option $1" ;;
	*) break ;;
	esac
done
PROXY=${1:-}; BINARY=${2:-$ROOT/target/release/trunkstore}
case "$PROXY" in
trunkstore)
	[ -x "$BINARY" ] || die "no trunkstore binary $BINARY (cargo build --release -p trunkstore)"
	BINARY=$(cd "$(dirname "$BINARY")" && pwd)/$(basename "$BINARY") ;;
kamailio) command -v kamailio >/dev/null || die "kamailio not found" ;;
*) die "usage: load-tls.sh [options] trunkstore [BINARY] | kamailio" ;;
esac
for v in "$RATE" "$CALLS"; do [[ $v =~ ^[0-9]+$ ]] || die "'$v' is not a number"; done
[ "$RATE" -ge 1 ] && [ "$RATE" -le 5000 ] || die "rate must be 1..5000"
[ "$CALLS" -ge 1 ] && [ "$CALLS" -le 100000 ] || die "calls must be 1..100000"
for c in sipp stunnel openssl taskset; do command -v $c >/dev/null || die "$c not found"; done

OUT=${OUT:-/tmp/trunkstore-load/$PROXY-tls-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT" || die "cannot create $OUT"
OUT=$(cd "$OUT" && pwd)

# ---- throwaway certificates: a CA, the proxy's and the PBX side's (stunnel server)
certs() {
	local d=$OUT/certs name
	mkdir -p "$d"
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
		-subj /CN=load-tls-ca -addext basicConstraints=critical,CA:TRUE \
		-addext keyUsage=critical,keyCertSign -keyout "$d/ca.key" -out "$d/ca.pem" 2>/dev/null ||
		return 1
	for name in proxy pbx; do
		openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$name" \
			-keyout "$d/$name.key" -out "$d/$name.csr" 2>/dev/null || return 1
		printf 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth,clientAuth\n' \
			>"$d/$name.ext"
		openssl x509 -req -in "$d/$name.csr" -CA "$d/ca.pem" -CAkey "$d/ca.key" \
			-CAcreateserial -days 2 -extfile "$d/$name.ext" -out "$d/$name.pem" 2>/dev/null ||
			return 1
	done
}
certs || die "openssl could not make the test certificates"
C=$OUT/certs

# ---- the proxy's files and command
dids() { for i in $(seq 0 999); do printf '+1415555%04d\n' "$i"; done; }
if [ "$PROXY" = trunkstore ]; then
	mkdir -p "$OUT/trunkstore/connectivity/bench"
	cat >"$OUT/trunkstore/trunkstore.json" <<-EOF
	{
	  "listen": {"udp": ["$IP:$PROXY_PORT"], "tcp": ["$IP:$PROXY_PORT"],
	             "tls": [{"address": "$IP:$TLS_PORT", "certificate": "$C/proxy.pem", "key": "$C/proxy.key"}]},
	  "advertise": "$IP:$PROXY_PORT",
	  "connectivity_dir": "connectivity",
	  "default_realm": "bench.trunkstore.local",
	  "tls": {"ca_file": "$C/ca.pem"},
	  "carriers": [{"name": "sipp-uac", "gateways": [{"host": "$CARRIER_IP", "port": $UAC_PORT, "transport": "tls"}],
	                "sources": ["$CARRIER_IP"]}],
	  "failover_on": ["408", "5xx", "timeout", "unreachable"],
	  "log": {"level": "warn", "format": "text"}
	}
	EOF
	{
		printf '{"name": "SIPp TLS load-test PBX", "servers": [{"name": "sipp-uas",\n'
		printf ' "auth": {"auth_method": "IP", "ip": "%s", "port": %s},\n' "$IP" "$UAS_TLS"
		printf ' "options": {"inbound_format": "npan", "transport": "tls",\n'
		printf '  "failover": {"sip": "sips:failover@%s:%s"}},\n' "$IP" $((UAS_TLS + 1))
		printf ' "DIDs": {'
		dids | awk 'NR > 1 { printf ", " } { printf "\"%s\": {}", $0 }'
		printf '}}]}\n'
	} >"$OUT/trunkstore/connectivity/bench/dids.json"
	PROXY_CMD=("$BINARY" serve --config "$OUT/trunkstore/trunkstore.json")
else
	mkdir -p "$OUT/kamailio-db"
	printf 'table_name(str) table_version(int)\ndid_routes:1\n' >"$OUT/kamailio-db/version"
	{
		echo 'did(str) dst(str) alt(str)'
		dids | awk -v ip="$IP" -v p="$UAS_TLS" \
			'{ printf "%s:%s\\:%d;transport=tls:%s\\:%d;transport=tls\n", $0, ip, p, ip, p + 1 }'
	} >"$OUT/kamailio-db/did_routes"
	cat >"$OUT/kamailio-tls.conf" <<-EOF
	[server:default]
	method = TLSv1.2+
	certificate = $C/proxy.pem
	private_key = $C/proxy.key
	ca_list = $C/ca.pem
	verify_certificate = no
	require_certificate = no

	[client:default]
	method = TLSv1.2+
	ca_list = $C/ca.pem
	verify_certificate = yes
	require_certificate = yes
	EOF
	PROXY_CMD=(kamailio -DD -E -m 1024 -M 16 -x tlsf -X tlsf -f "$HERE/kamailio-tls.cfg"
		-A "DBURL=\"text://$OUT/kamailio-db\"" -A "TLSCFG=\"$OUT/kamailio-tls.conf\"")
fi

# ---- stunnel: client in front of the UAC, server in front of the UAS
cat >"$OUT/stunnel-client.conf" <<-EOF
foreground = yes
pid =
debug = 5
[uac]
client = yes
local = $CARRIER_IP
accept = $IP:$UAC_TUNNEL
connect = $IP:$TLS_PORT
CAfile = $C/ca.pem
verifyChain = yes
checkIP = $IP
# No SNI: the proxy is reached by its IP (RFC 6066 forbids an IP in SNI)
sni =
EOF
cat >"$OUT/stunnel-server.conf" <<-EOF
foreground = yes
pid =
debug = 5
[uas]
accept = $IP:$UAS_TLS
connect = $IP:$UAS_PORT
cert = $C/pbx.pem
key = $C/pbx.key
EOF

# ---- scenarios: the INVITE to the proxy's TLS port; the UAS's Contact on its TLS port
sed "s/\[remote_port\]/$TLS_PORT/g" "$HERE/uac-inbound.xml" >"$OUT/uac-inbound-tls.xml"
sed "s/\[local_port\];transport=\[transport\]/$UAS_TLS;transport=tls/" "$HERE/uas.xml" >"$OUT/uas-tls.xml"
{ echo SEQUENTIAL; dids | sed 's/$/;/'; } >"$OUT/calls.csv"

# ---- /proc helpers (as load.sh)
tree() {
	awk -v root="$1" '
		FNR == 1 { s = $0; sub(/.*\) /, "", s); split(s, f, " ");
		           pid = FILENAME; sub("/proc/", "", pid); sub("/stat", "", pid);
		           ppid[pid] = f[2]; st[pid] = f[20] }
		END { want[root] = 1; changed = 1
		      while (changed) { changed = 0
		          for (p in ppid) if (!(p in want) && (ppid[p] in want)) { want[p] = 1; changed = 1 } }
		      for (p in want) if (p in st) print p ":" st[p] }' /proc/[0-9]*/stat 2>/dev/null
}
cpu_ticks() {
	local e pid total=0 s
	for e in $(tree "$1"); do
		pid=${e%%:*}
		s=$(awk '{ sub(/.*\) /, ""); print $12 + $13 }' "/proc/$pid/stat" 2>/dev/null) || continue
		total=$((total + ${s:-0}))
	done
	echo "$total"
}
bound() { # PORT -> exit 0 if a UDP socket or a listening TCP socket is on it
	local hex
	hex=$(printf ':%04X' "$1")
	awk -v h="$hex" 'FNR > 1 && substr($2, length($2) - 4) == h &&
		(FILENAME ~ /udp/ || $4 == "0A") { found = 1 } END { exit !found }' \
		/proc/net/udp /proc/net/udp6 /proc/net/tcp /proc/net/tcp6 2>/dev/null
}
for p in $PROXY_PORT $TLS_PORT $UAC_PORT $UAC_TUNNEL $UAS_PORT $UAS_TLS; do
	bound "$p" && die "port $p is already in use (not by us)"
done
wait_bound() { # PORT PID WHAT
	local i
	for i in $(seq 1 100); do
		bound "$1" && return 0
		kill -0 "$2" 2>/dev/null || die "$3 exited at start-up ($OUT)"
		sleep 0.1
	done
	die "$3 did not bind $1 within 10 s ($OUT)"
}

ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
PIDS=(); PROXY_PID=""; PROXY_TREE=""
stop() { # PID: TERM, then KILL
	local i
	kill -TERM "$1" 2>/dev/null
	for i in $(seq 1 50); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
	kill -KILL "$1" 2>/dev/null
	wait "$1" 2>/dev/null
}
stop_proxy() {
	[ -n "$PROXY_PID" ] || return 0
	PROXY_TREE="$PROXY_TREE $(tree "$PROXY_PID")"
	kill -TERM "$PROXY_PID" 2>/dev/null
	local i e pid st now
	for i in $(seq 1 50); do kill -0 "$PROXY_PID" 2>/dev/null || break; sleep 0.1; done
	for e in $PROXY_TREE; do
		pid=${e%%:*}; st=${e##*:}
		now=$(awk '{ sub(/.*\) /, ""); print $20 }' "/proc/$pid/stat" 2>/dev/null) || continue
		[ "$now" = "$st" ] && kill -KILL "$pid" 2>/dev/null
	done
	wait "$PROXY_PID" 2>/dev/null
	PROXY_PID=""
}
cleanup() {
	local p
	for p in "${PIDS[@]}"; do stop "$p"; done
	PIDS=()
	stop_proxy
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM

BOUND=$((CALLS / RATE + 30))
# ---- stunnels (CPU 0)
for side in server client; do
	( cd "$OUT" && exec timeout -k 5 $((BOUND + 120)) taskset -c 0 stunnel "$OUT/stunnel-$side.conf" \
		>"stunnel-$side.out" 2>&1 </dev/null ) &
	PIDS+=($!)
done
wait_bound $UAS_TLS "${PIDS[0]}" "stunnel server"
wait_bound $UAC_TUNNEL "${PIDS[1]}" "stunnel client"

# ---- proxy (CPU 1)
( cd "$OUT" && exec taskset -c 1 "${PROXY_CMD[@]}" >"$OUT/proxy.log" 2>&1 </dev/null ) &
PROXY_PID=$!
wait_bound $TLS_PORT "$PROXY_PID" "proxy"
sleep 0.5
PROXY_TREE=$(tree "$PROXY_PID")

# ---- UAS (CPU 0), TCP behind the stunnel server
( cd "$OUT" && exec timeout -k 5 $((BOUND + 60)) taskset -c 0 sipp -sf "$OUT/uas-tls.xml" \
	-t t1 -i $IP -p "$UAS_PORT" -mp "$MEDIA_PORT" -nostdin -aa -timeout "$((BOUND + 45))s" \
	-recv_timeout 20000 -buff_size 4194304 -trace_stat -stf uas_stat.csv -fd 1 \
	-trace_err -max_log_size 1000000 >uas.out 2>&1 </dev/null ) &
UAS_PID=$!
PIDS+=("$UAS_PID")
wait_bound $UAS_PORT "$UAS_PID" "UAS"
sleep 1

# ---- UAC (CPU 0), TCP to the stunnel client, measured
stunnel_ticks() { echo $(( $(cpu_ticks "${PIDS[0]}") + $(cpu_ticks "${PIDS[1]}") )); }
log "$PROXY tls: $CALLS calls at $RATE/s (logs: $OUT)"
c0=$(cpu_ticks "$PROXY_PID"); s0=$(stunnel_ticks)
( cd "$OUT" && exec timeout -k 5 $((BOUND + 15)) taskset -c 0 sipp $IP:$UAC_TUNNEL \
	-sf "$OUT/uac-inbound-tls.xml" -inf "$OUT/calls.csv" -t t1 -i $IP -p "$UAC_PORT" \
	-mp $((MEDIA_PORT + 1000)) -m "$CALLS" -r "$RATE" -rp 1000 -l $((RATE * 10 + 100)) \
	-nostdin -aa -recv_timeout 5000 -timeout "${BOUND}s" -buff_size 4194304 \
	-max_recv_loops 10000 -max_sched_loops 10000 -trace_rtt -rtt_freq 100 \
	-trace_stat -stf uac_stat.csv -fd 1 -trace_err -max_log_size 1000000 \
	>uac.out 2>&1 </dev/null )
rc=$?
c1=$(cpu_ticks "$PROXY_PID"); s1=$(stunnel_ticks)
cleanup

counter() {
	awk -F';' -v n="$2" 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == n) c = i; next }
		NF > 1 { v = $c } END { print (c && v != "" ? v + 0 : "na") }' "$1" 2>/dev/null
}
percentiles() {
	local f
	f=$(ls "$OUT"/*_rtt.csv 2>/dev/null | head -n 1)
	[ -n "$f" ] || { echo "na na"; return; }
	awk -F';' 'NR > 1 && $3 == 1 { print $2 + 0 }' "$f" | sort -n |
		awk '{ v[NR] = $1 } END {
			if (NR == 0) { print "na na"; exit }
			i50 = int(NR * 0.50 + 0.999999); i99 = int(NR * 0.99 + 0.999999)
			print v[i50], v[i99] }'
}
OK=$(counter "$OUT/uac_stat.csv" "SuccessfulCall(C)")
FAILED=$(counter "$OUT/uac_stat.csv" "FailedCall(C)")
UAS_FAILED=$(counter "$OUT/uas_stat.csv" "FailedCall(C)")
HZ=$(getconf CLK_TCK)
per_call() { awk -v t="$1" -v hz="$HZ" -v ok="$OK" \
	'BEGIN { if (ok + 0 > 0) printf "%.0f", t * 1e6 / hz / ok; else print "na" }'; }
read -r P50 P99 < <(percentiles)
echo "proxy=$PROXY scenario=tls rate=$RATE calls=$CALLS ok=$OK failed=$FAILED" \
	"uas_failed=$UAS_FAILED cpu_us_per_call=$(per_call $((c1 - c0))) p50_ms=$P50 p99_ms=$P99" \
	"stunnel_cpu_us_per_call=$(per_call $((s1 - s0))) sipp_rc=$rc out=$OUT"
