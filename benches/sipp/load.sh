#!/usr/bin/env bash
# load.sh -- the project's own SIPp load run: one proxy, one scenario, a fixed call rate
# for a fixed number of calls, and the proxy's CPU time per call.
#
#   benches/sipp/load.sh [options] -- PROXY_COMMAND [ARGS...]
#
# Starts PROXY_COMMAND in the foreground pinned to CPU 1 (taskset -c 1), a SIPp UAS
# (uas.xml, the carrier or the customer PBX) and then a SIPp UAC, both pinned to CPU 0,
# reads the proxy process tree's CPU time (utime+stime of every live descendant, from
# /proc) right before and after the UAC run, stops everything it started (by PID only)
# and prints one line:
#   proxy=NAME scenario=S rate=R calls=N ok=… failed=… cpu_us_per_call=… out=DIR
# (the register scenario has no UAS, and adds p50_ms= p99_ms=: its round's response time)
#
# Scenarios (files next to this script):
#   inbound  uac-inbound.xml: carrier -> proxy -> PBX, DIDs +14155550000..0999
#            (the shared rig's scenario: compare with its cpu_us_per_call)
#   auth     uac-auth.xml: password PBX -> proxy -> carrier with digest on every call
#            (INVITE / 407 / ACK / INVITE with credentials / 100 / 180 / 200 / ACK /
#            BYE / 200); needs --auth USER:PASSWORD
#   register uac-register.xml: password PBXs (re-)registering with digest, one "call" =
#            one REGISTER round (REGISTER / 401 / REGISTER with credentials / 200), users
#            in turn from --users (gen-register-users.sh: 10,000 PBXs pbx00000..); no
#            UAS. cpu_us_per_call is the proxy's CPU per round; p50_ms / p99_ms are the
#            round's response time (first REGISTER -> 200, SIPp's -trace_rtt, 1 ms
#            resolution). 10,000 PBXs re-registering every 60 s = --rate 167
#
# Options:
#   --scenario inbound|auth|register   (default inbound)
#   --rate R                  calls/s (default 1000)
#   --calls N                 calls in all (default 20000: 20 s at 1000/s)
#   --name NAME               label (default: the command's basename)
#   --proxy-port P            where the proxy listens (default 5060)
#   --uas-port P              where the UAS listens, the proxy's target (default 5090)
#   --uac-port P              the UAC's source port (default 5070)
#   --media-port P            SIPp media port of the UAS (default 16000; the UAC's is
#                             P+1000): another SIPp on this host may hold 16000/17000
#   --auth USER:PASSWORD      digest credentials for the auth scenario
#   --users CSV               the register scenario's users (default register-users.csv
#                             next to this script, written by gen-register-users.sh)
#   --out DIR                 logs (default /tmp/trunkstore-load/NAME-SCENARIO-<time>)
#
# The proxy must route to 127.0.0.1:<uas port> and record-route. For the inbound
# scenario the ports must be the ones of benches/sipp/config (5060/5070/5090); for auth
# benches/sipp/config-auth and kamailio-auth.cfg use 5160/5170/5190; for register
# benches/sipp/config-register and kamailio-registrar.cfg listen on 5260 (UAC 5270; the
# UAS port is only checked to be free). Examples (repo root):
#   benches/sipp/load.sh --name trunkstore -- target/release/trunkstore serve \
#       --config benches/sipp/config/trunkstore.json
#   benches/sipp/load.sh --scenario auth --auth loadpbx:load-s3cret --proxy-port 5160 \
#       --uas-port 5190 --uac-port 5170 --name kamailio -- kamailio -DD -E -m 1024 -M 16 \
#       -x tlsf -X tlsf -f benches/sipp/kamailio-auth.cfg \
#       -A "DBURL=\"text://$PWD/benches/sipp/kamailio-db\""
#   benches/sipp/gen-register-users.sh
#   benches/sipp/load.sh --scenario register --rate 167 --calls 20000 --proxy-port 5260 \
#       --uac-port 5270 --uas-port 5290 --name kamailio -- kamailio -DD -E -m 1024 -M 16 \
#       -x tlsf -X tlsf -f benches/sipp/kamailio-registrar.cfg \
#       -A "DBURL=\"text://$PWD/benches/sipp/kamailio-db-register\"" -A CREDS_HTABLE
#
# Safety: 127.0.0.1 only; SIPp bounded by -m, -timeout and timeout(1); a port already
# bound by someone else stops the run before anything starts; only processes started
# here are signalled, by PID (and the proxy's descendants by PID + start time).
set -u

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SCENARIO=inbound; RATE=1000; CALLS=20000; NAME=""; OUT=""; AUTH=""; USERS=$HERE/register-users.csv
PROXY_PORT=5060; UAS_PORT=5090; UAC_PORT=5070; MEDIA_PORT=16000
IP=127.0.0.1

die() { echo "load.sh: $*" >&2; exit 2; }
log() { echo "[$(date +%T)] $*" >&2; }

while [ $# -gt 0 ]; do
	case "$1" in
	--scenario) SCENARIO=$2; shift 2 ;;
	--rate) RATE=$2; shift 2 ;;
	--calls) CALLS=$2; shift 2 ;;
	--name) NAME=$2; shift 2 ;;
	--proxy-port) PROXY_PORT=$2; shift 2 ;;
	--uas-port) UAS_PORT=$2; shift 2 ;;
	--uac-port) UAC_PORT=$2; shift 2 ;;
	--auth) AUTH=$2; shift 2 ;;
	--media-port) MEDIA_PORT=$2; shift 2 ;;
	--out) OUT=$2; shift 2 ;;
	--users) USERS=$2; shift 2 ;;
	-h|--help) sed -n '2,62p' "$0"; exit 0 ;;
	--) shift; break ;;
	*) die "unknown option $1 (the proxy command goes after --)" ;;
	esac
done
PROXY_CMD=("$@")
[ ${#PROXY_CMD[@]} -gt 0 ] || die "no proxy command (usage: load.sh [options] -- CMD ARGS...)"
NAME=${NAME:-$(basename "${PROXY_CMD[0]}")}
for v in "$RATE" "$CALLS" "$PROXY_PORT" "$UAS_PORT" "$UAC_PORT" "$MEDIA_PORT"; do
	[[ $v =~ ^[0-9]+$ ]] || die "'$v' is not a number"
done
[ "$RATE" -ge 1 ] && [ "$RATE" -le 20000 ] || die "rate must be 1..20000"
[ "$CALLS" -ge 1 ] && [ "$CALLS" -le 500000 ] || die "calls must be 1..500000"
command -v sipp >/dev/null || die "sipp not found (apt-get install sip-tester)"
command -v taskset >/dev/null || die "taskset not found (util-linux)"

OUT=${OUT:-/tmp/trunkstore-load/$NAME-$SCENARIO-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT" || die "cannot create $OUT"
OUT=$(cd "$OUT" && pwd)

UAC_ARGS=()
case "$SCENARIO" in
inbound)
	UAC_XML=$HERE/uac-inbound.xml
	{ echo SEQUENTIAL; for i in $(seq 0 999); do printf '+1415555%04d;\n' "$i"; done; } >"$OUT/calls.csv"
	;;
auth)
	UAC_XML=$HERE/uac-auth.xml
	[ -n "$AUTH" ] && [ "${AUTH#*:}" != "$AUTH" ] || die "the auth scenario needs --auth USER:PASSWORD"
	NUMBER=+12125550100
	printf 'SEQUENTIAL\n%s;\n' "$NUMBER" >"$OUT/calls.csv"
	# The credentials' uri = the Request-URI (SIPp's default is the proxy's address).
	UAC_ARGS=(-au "${AUTH%%:*}" -ap "${AUTH#*:}" -auth_uri "$NUMBER@$IP:$PROXY_PORT")
	;;
register)
	UAC_XML=$HERE/uac-register.xml
	[ -s "$USERS" ] || die "no users file $USERS (run $HERE/gen-register-users.sh first)"
	cp "$USERS" "$OUT/calls.csv" || die "cannot copy $USERS"
	# The credentials' uri = the Request-URI, the registrar itself. Every round's
	# response time goes to the rtt file (written every 1000 rounds).
	UAC_ARGS=(-auth_uri "$IP:$PROXY_PORT" -trace_rtt -rtt_freq 1000)
	;;
*) die "unknown scenario $SCENARIO (inbound, auth or register)" ;;
esac

# ---- /proc helpers
# "pid:starttime" of PID and every descendant.
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
# utime+stime (clock ticks, all threads) of PID's live process tree.
cpu_ticks() {
	local e pid total=0 s
	for e in $(tree "$1"); do
		pid=${e%%:*}
		s=$(awk '{ sub(/.*\) /, ""); print $12 + $13 }' "/proc/$pid/stat" 2>/dev/null) || continue
		total=$((total + ${s:-0}))
	done
	echo "$total"
}
udp_bound() { # PORT -> exit 0 if some UDP socket is bound on it
	local hex
	hex=$(printf ':%04X' "$1")
	awk -v h="$hex" 'FNR > 1 && substr($2, length($2) - 4) == h { found = 1 } END { exit !found }' \
		/proc/net/udp /proc/net/udp6 2>/dev/null
}

for p in "$PROXY_PORT" "$UAS_PORT" "$UAC_PORT"; do
	udp_bound "$p" && die "udp port $p is already in use (not by us): wait, or pick other ports"
done

ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
PROXY_PID=""; PROXY_TREE=""; UAS_PID=""

stop_uas() {
	[ -n "$UAS_PID" ] || return 0
	kill -TERM "$UAS_PID" 2>/dev/null
	local i
	for i in $(seq 1 30); do kill -0 "$UAS_PID" 2>/dev/null || break; sleep 0.1; done
	kill -KILL "$UAS_PID" 2>/dev/null
	wait "$UAS_PID" 2>/dev/null
	UAS_PID=""
}
stop_proxy() {
	[ -n "$PROXY_PID" ] || return 0
	PROXY_TREE="$PROXY_TREE $(tree "$PROXY_PID")"
	kill -TERM "$PROXY_PID" 2>/dev/null
	local i e pid st now
	for i in $(seq 1 50); do kill -0 "$PROXY_PID" 2>/dev/null || break; sleep 0.1; done
	# anything of ours still alive (same pid and same start time) gets SIGKILL
	for e in $PROXY_TREE; do
		pid=${e%%:*}; st=${e##*:}
		now=$(awk '{ sub(/.*\) /, ""); print $20 }' "/proc/$pid/stat" 2>/dev/null) || continue
		[ "$now" = "$st" ] && kill -KILL "$pid" 2>/dev/null
	done
	wait "$PROXY_PID" 2>/dev/null
	PROXY_PID=""
}
cleanup() { stop_uas; stop_proxy; }
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM

# ---- proxy (CPU 1)
taskset -c 1 "${PROXY_CMD[@]}" >"$OUT/proxy.log" 2>&1 </dev/null &
PROXY_PID=$!
for i in $(seq 1 100); do
	kill -0 "$PROXY_PID" 2>/dev/null || { cat "$OUT/proxy.log" >&2; die "proxy exited at start-up"; }
	udp_bound "$PROXY_PORT" && break
	[ "$i" = 100 ] && die "proxy did not bind udp $IP:$PROXY_PORT within 10 s ($OUT/proxy.log)"
	sleep 0.1
done
sleep 0.3 # let every worker come up
PROXY_TREE=$(tree "$PROXY_PID")

# ---- UAS (CPU 0); a registrar sends nothing onwards: no UAS
BOUND=$((CALLS / RATE + 30))
start_uas() {
	local i
	( cd "$OUT" && exec timeout -k 5 $((BOUND + 60)) taskset -c 0 sipp -sf "$HERE/uas.xml" \
		-i $IP -p "$UAS_PORT" -mp "$MEDIA_PORT" -nostdin -aa -timeout "$((BOUND + 45))s" \
		-recv_timeout 20000 -buff_size 4194304 -trace_stat -stf uas_stat.csv -fd 1 \
		-trace_err -max_log_size 1000000 >uas.out 2>&1 </dev/null ) &
	UAS_PID=$!
	for i in $(seq 1 50); do
		udp_bound "$UAS_PORT" && break
		kill -0 "$UAS_PID" 2>/dev/null || die "UAS exited at start-up ($OUT/uas.out)"
		[ "$i" = 50 ] && die "UAS did not bind udp $IP:$UAS_PORT"
		sleep 0.1
	done
	sleep 1
}
[ "$SCENARIO" = register ] || start_uas

# ---- UAC (CPU 0), measured
log "$NAME $SCENARIO: $CALLS calls at $RATE/s (logs: $OUT)"
c0=$(cpu_ticks "$PROXY_PID")
( cd "$OUT" && exec timeout -k 5 $((BOUND + 15)) taskset -c 0 sipp $IP:"$PROXY_PORT" \
	-sf "$UAC_XML" -inf "$OUT/calls.csv" -i $IP -p "$UAC_PORT" -mp $((MEDIA_PORT + 1000)) \
	-m "$CALLS" -r "$RATE" -rp 1000 -l $((RATE * 10 + 100)) -nostdin -aa \
	-recv_timeout 5000 -timeout "${BOUND}s" -buff_size 4194304 \
	-max_recv_loops 10000 -max_sched_loops 10000 "${UAC_ARGS[@]}" \
	-trace_stat -stf uac_stat.csv -fd 1 -trace_err -max_log_size 1000000 \
	>uac.out 2>&1 </dev/null )
rc=$?
c1=$(cpu_ticks "$PROXY_PID")
stop_uas
stop_proxy

# ---- summary: the UAC's last statistics line
counter() { # CSV NAME -> value in the last line
	awk -F';' -v n="$2" 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == n) c = i; next }
		NF > 1 { v = $c } END { print (c && v != "" ? v + 0 : "na") }' "$1" 2>/dev/null
}
OK=$(counter "$OUT/uac_stat.csv" "SuccessfulCall(C)")
FAILED=$(counter "$OUT/uac_stat.csv" "FailedCall(C)")
UAS_FAILED=$(counter "$OUT/uas_stat.csv" "FailedCall(C)")
# p-th percentile (nearest rank) of rtd 1 in the UAC's rtt file: "P50 P99", or "na na"
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
HZ=$(getconf CLK_TCK)
CPU_US=$(awk -v t=$((c1 - c0)) -v hz="$HZ" -v ok="$OK" \
	'BEGIN { if (ok + 0 > 0) printf "%.0f", t * 1e6 / hz / ok; else print "na" }')
if [ "$SCENARIO" = register ]; then
	read -r P50 P99 < <(percentiles)
	echo "proxy=$NAME scenario=$SCENARIO rate=$RATE calls=$CALLS ok=$OK failed=$FAILED" \
		"cpu_us_per_call=$CPU_US p50_ms=$P50 p99_ms=$P99 sipp_rc=$rc out=$OUT"
else
	echo "proxy=$NAME scenario=$SCENARIO rate=$RATE calls=$CALLS ok=$OK failed=$FAILED" \
		"uas_failed=$UAS_FAILED cpu_us_per_call=$CPU_US sipp_rc=$rc out=$OUT"
fi
