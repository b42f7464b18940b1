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
# (the register scenario has no UAS, and adds p50_ms= p99_ms=: its round's response time;
# the media scenario adds p50_ms= p99_ms= (INVITE -> 200), rtpengine_calls_left=
# rtpengine_cpu_us_per_call=, see below)
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
#   media    the inbound scenario (uac-inbound.xml, SDP offer in the INVITE, answer in
#            the 200) with a real rtpengine (sipwise, user space: --table=-1, no kernel
#            module) that load.sh starts first, pinned to CPU 0 with the SIPps, and
#            stops by PID at the end: NG on 127.0.0.1:22322 (--rtpengine-ng), media on
#            127.0.0.2 (--rtp-ip: an address of its own, so a rewritten c=/o= line is
#            told from SIPp's 127.0.0.1) ports 6000-7999 (--rtp-ports: below tests/e2e's
#            10000-19999, baresip's 20000-29999 and Linux's ephemeral 32768+; 4 ports a
#            call). The proxy anchors (or, for the bypass twin, does not anchor) every
#            call's media there. Ports default to 5360/5370/5390, SIPp media 16390/17390.
#            Right after the UAC run, before the proxy is stopped (a proxy that deletes
#            its sessions at shutdown would hide leaks), rtpengine is asked (NG `list`,
#            ng.py) how many calls it still holds: rtpengine_calls_left=, 0 when every
#            call's media session was deleted. rtpengine_cpu_us_per_call= is
#            rtpengine's CPU (on CPU 0, not in cpu_us_per_call) per completed call.
#            --trace also writes every SIP message (sipp -trace_msg) and rtpengine's
#            debug log (NG requests in full), and counts the SDPs each SIPp received
#            whose c= and o= name rtpengine's address: sdp_via_rtpengine_uas=A/B (the
#            offer the PBX got) sdp_via_rtpengine_uac=C/D (the answer the carrier got);
#            anchored: all of them, bypass: none. For checking only, not for measuring
#   trunks   the inbound scenario to an account with a trunk limit (10,000, far above
#            the calls up at once), on its own ports 5460/5470/5490 (SIPp media
#            16460/17460), adding p50_ms= p99_ms= (INVITE -> 200). Single node:
#            config-trunks; cluster mode: config-cluster (the same document, a
#            `cluster` section naming Redis on 127.0.0.1:6479) with --redis 6479, so
#            every call takes its hold in Redis (one script) and gives it back (ZREM)
#
# Options:
#   --scenario inbound|auth|register|media   (default inbound)
#   --rate R                  calls/s (default 1000)
#   --calls N                 calls in all (default 20000: 20 s at 1000/s)
#   --name NAME               label (default: the command's basename)
#   --proxy-port P            where the proxy listens (default 5060; media: 5360)
#   --uas-port P              where the UAS listens, the proxy's target (default 5090;
#                             media: 5390)
#   --uac-port P              the UAC's source port (default 5070; media: 5370)
#   --media-port P            SIPp media port of the UAS (default 16000, media: 16390;
#                             the UAC's is P+1000): another SIPp on this host may hold
#                             16000/17000
#   --auth USER:PASSWORD      digest credentials for the auth scenario
#   --users CSV               the register scenario's users (default register-users.csv
#                             next to this script, written by gen-register-users.sh)
#   --rtpengine-ng P          media: rtpengine's NG port on 127.0.0.1 (default 22322)
#   --rtp-ip IP               media: rtpengine's media address (default 127.0.0.2)
#   --rtp-ports MIN-MAX       media: rtpengine's port range (default 6000-7999)
#   --trace                   media: SIP message traces and rtpengine debug log, see above
#   --redis P                 start a redis-server on 127.0.0.1:P (no persistence) before
#                             the proxy, pinned to CPU 0 with the SIPps, stopped by PID at
#                             the end; adds redis_scripts= (EVAL/EVALSHA it ran: one per
#                             trunk-limited call), redis_holds_left= (members left in the
#                             bench account's holds, read 1 s after the run with the proxy
#                             up: 0 when every hold was given back) and
#                             redis_cpu_us_per_call= (Redis's CPU, not in cpu_us_per_call)
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
# Trunk-limited calls, single node then cluster mode (same rate, same session):
#   benches/sipp/load.sh --scenario trunks --name single -- target/release/trunkstore \
#       serve --config benches/sipp/config-trunks/trunkstore.json
#   benches/sipp/load.sh --scenario trunks --redis 6479 --name cluster -- \
#       target/release/trunkstore serve --config benches/sipp/config-cluster/trunkstore.json
# Media (settings + documents on 5360/5370/5390 with the rtpengine above: config-media
# anchors every call, config-media-bypass is the same but media_handling bypass;
# kamailio-media.cfg anchors with Kamailio's rtpengine module), one command each:
#   benches/sipp/load.sh --scenario media --name trunkstore-anchored -- \
#       target/release/trunkstore serve --config benches/sipp/config-media/trunkstore.json
#   benches/sipp/load.sh --scenario media --name trunkstore-bypass -- target/release/trunkstore \
#       serve --config benches/sipp/config-media-bypass/trunkstore.json
#   benches/sipp/load.sh --scenario media --name kamailio-rtpengine -- kamailio -DD -E \
#       -m 1024 -M 16 -x tlsf -X tlsf -f benches/sipp/kamailio-media.cfg \
#       -A "DBURL=\"text://$PWD/benches/sipp/kamailio-db-media\""
#
# Safety: 127.0.0.1 only (rtpengine's media: --rtp-ip, 127.0.0.2; Redis: --bind 127.0.0.1); SIPp bounded by -m, -timeout and timeout(1); a port already
# bound by someone else stops the run before anything starts; only processes started
# here are signalled, by PID (and the proxy's descendants by PID + start time).
set -u

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SCENARIO=inbound; RATE=1000; CALLS=20000; NAME=""; OUT=""; AUTH=""; USERS=$HERE/register-users.csv
PROXY_PORT=""; UAS_PORT=""; UAC_PORT=""; MEDIA_PORT=""
RTPENGINE_NG=22322; RTP_IP=127.0.0.2; RTP_PORTS=6000-7999; TRACE=""; REDIS_PORT=""
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
	--rtpengine-ng) RTPENGINE_NG=$2; shift 2 ;;
	--rtp-ip) RTP_IP=$2; shift 2 ;;
	--rtp-ports) RTP_PORTS=$2; shift 2 ;;
	--trace) TRACE=1; shift ;;
	--redis) REDIS_PORT=$2; shift 2 ;;
	--out) OUT=$2; shift 2 ;;
	--users) USERS=$2; shift 2 ;;
	-h|--help) sed -n '2,/^set -u$/p' "$0" | sed '$d'; exit 0 ;;
	--) shift; break ;;
	*) die "unknown option $1 (the proxy command goes after --)" ;;
	esac
done
PROXY_CMD=("$@")
[ ${#PROXY_CMD[@]} -gt 0 ] || die "no proxy command (usage: load.sh [options] -- CMD ARGS...)"
NAME=${NAME:-$(basename "${PROXY_CMD[0]}")}
# ports not given: the scenario's own (media: its own block, so a media run never meets
# another scenario's proxy)
if [ "$SCENARIO" = media ]; then
	PROXY_PORT=${PROXY_PORT:-5360}; UAS_PORT=${UAS_PORT:-5390}; UAC_PORT=${UAC_PORT:-5370}
	MEDIA_PORT=${MEDIA_PORT:-16390}
elif [ "$SCENARIO" = trunks ]; then
	PROXY_PORT=${PROXY_PORT:-5460}; UAS_PORT=${UAS_PORT:-5490}; UAC_PORT=${UAC_PORT:-5470}
	MEDIA_PORT=${MEDIA_PORT:-16460}
else
	PROXY_PORT=${PROXY_PORT:-5060}; UAS_PORT=${UAS_PORT:-5090}; UAC_PORT=${UAC_PORT:-5070}
	MEDIA_PORT=${MEDIA_PORT:-16000}
fi
RTP_MIN=${RTP_PORTS%-*}; RTP_MAX=${RTP_PORTS#*-}
for v in "$RATE" "$CALLS" "$PROXY_PORT" "$UAS_PORT" "$UAC_PORT" "$MEDIA_PORT" "$RTPENGINE_NG" \
	"$RTP_MIN" "$RTP_MAX" ${REDIS_PORT:+"$REDIS_PORT"}; do
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
inbound|media|trunks)
	UAC_XML=$HERE/uac-inbound.xml
	{ echo SEQUENTIAL; for i in $(seq 0 999); do printf '+1415555%04d;\n' "$i"; done; } >"$OUT/calls.csv"
	# media, trunks: call set-up time (rtd 1, INVITE -> 200) too: anchoring adds NG
	# round trips, a cluster's trunk hold one Redis round trip.
	[ "$SCENARIO" = inbound ] || UAC_ARGS=(-trace_rtt -rtt_freq 1000)
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
*) die "unknown scenario $SCENARIO (inbound, auth, register, media or trunks)" ;;
esac
if [ "$SCENARIO" = media ]; then
	command -v rtpengine >/dev/null || die "rtpengine not found (apt-get install rtpengine-daemon)"
	command -v python3 >/dev/null || die "python3 not found (ng.py asks rtpengine over NG)"
	[ "$RTP_MIN" -ge 1024 ] && [ "$RTP_MIN" -lt "$RTP_MAX" ] && [ "$RTP_MAX" -le 65535 ] ||
		die "--rtp-ports MIN-MAX: 1024 <= MIN < MAX <= 65535"
	[[ $RTP_IP =~ ^127\.[0-9]+\.[0-9]+\.[0-9]+$ ]] || die "--rtp-ip must be a loopback address"
elif [ -n "$TRACE" ]; then
	die "--trace is for the media scenario"
fi
if [ -n "$REDIS_PORT" ]; then
	command -v redis-server >/dev/null || die "redis-server not found (apt-get install redis-server)"
	command -v redis-cli >/dev/null || die "redis-cli not found (apt-get install redis-tools)"
fi
# SIPp's logs: a trace of 1,000 calls is ~5 MB a side
LOG_MAX=1000000; TRACE_ARGS=()
[ -n "$TRACE" ] && { LOG_MAX=200000000; TRACE_ARGS=(-trace_msg); }

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

tcp_listening() { # PORT -> exit 0 if some TCP socket listens on it
	local hex
	hex=$(printf ':%04X' "$1")
	awk -v h="$hex" 'FNR > 1 && $4 == "0A" && substr($2, length($2) - 4) == h { found = 1 }
		END { exit !found }' /proc/net/tcp /proc/net/tcp6 2>/dev/null
}

PORTS=("$PROXY_PORT" "$UAS_PORT" "$UAC_PORT")
[ "$SCENARIO" = media ] && PORTS+=("$RTPENGINE_NG")
for p in "${PORTS[@]}"; do
	udp_bound "$p" && die "udp port $p is already in use (not by us): wait, or pick other ports"
done
[ -n "$REDIS_PORT" ] && tcp_listening "$REDIS_PORT" &&
	die "tcp port $REDIS_PORT is already in use (not by us): wait, or pick another --redis"

ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
PROXY_PID=""; PROXY_TREE=""; UAS_PID=""; RTPENGINE_PID=""; REDIS_PID=""

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
stop_rtpengine() { # its timeout(1) passes TERM on to rtpengine
	[ -n "$RTPENGINE_PID" ] || return 0
	kill -TERM "$RTPENGINE_PID" 2>/dev/null
	local i
	for i in $(seq 1 50); do kill -0 "$RTPENGINE_PID" 2>/dev/null || break; sleep 0.1; done
	kill -KILL "$RTPENGINE_PID" 2>/dev/null
	wait "$RTPENGINE_PID" 2>/dev/null
	RTPENGINE_PID=""
}
stop_redis() { # its timeout(1) passes TERM on to redis-server
	[ -n "$REDIS_PID" ] || return 0
	kill -TERM "$REDIS_PID" 2>/dev/null
	local i
	for i in $(seq 1 50); do kill -0 "$REDIS_PID" 2>/dev/null || break; sleep 0.1; done
	kill -KILL "$REDIS_PID" 2>/dev/null
	wait "$REDIS_PID" 2>/dev/null
	REDIS_PID=""
}
cleanup() { stop_uas; stop_proxy; stop_rtpengine; stop_redis; }
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM

# ---- rtpengine (CPU 0, with the SIPps), before the proxy, which may ask it at start-up
BOUND=$((CALLS / RATE + 30))
NG=(python3 "$HERE/ng.py" "127.0.0.1:$RTPENGINE_NG")
start_rtpengine() {
	local i level=4 busy=0 p
	[ -n "$TRACE" ] && level=7
	# rtpengine skips ports it cannot bind; many taken ones would mean a crowded range
	for p in $(seq "$RTP_MIN" 50 "$RTP_MAX"); do udp_bound "$p" && busy=$((busy + 1)); done
	[ "$busy" = 0 ] || log "warning: $busy of the sampled ports in $RTP_PORTS are bound already"
	# --config-file=none: not /etc/rtpengine's settings; --table=-1: no kernel module;
	# --delete-delay=0: a deleted call leaves `list` at once (30 s by default)
	( cd "$OUT" && exec timeout -k 5 $((BOUND + 120)) taskset -c 0 rtpengine \
		--config-file=none --foreground --log-stderr --log-level=$level --table=-1 \
		--interface="$RTP_IP" --listen-ng="127.0.0.1:$RTPENGINE_NG" \
		--port-min="$RTP_MIN" --port-max="$RTP_MAX" --delete-delay=0 --num-threads=2 \
		>rtpengine.out 2>&1 </dev/null ) &
	RTPENGINE_PID=$!
	for i in $(seq 1 50); do
		kill -0 "$RTPENGINE_PID" 2>/dev/null || die "rtpengine exited at start-up ($OUT/rtpengine.out)"
		[ "$("${NG[@]}" ping 2>/dev/null)" = pong ] && return 0
		sleep 0.2
	done
	die "rtpengine did not answer ping on 127.0.0.1:$RTPENGINE_NG within 10 s ($OUT/rtpengine.out)"
}
[ "$SCENARIO" = media ] && start_rtpengine

# ---- Redis (CPU 0, with the SIPps), before the proxy, which connects at start-up
REDIS=(redis-cli -h 127.0.0.1 -p "$REDIS_PORT")
start_redis() {
	local i
	( cd "$OUT" && exec timeout -k 5 $((BOUND + 120)) taskset -c 0 redis-server \
		--port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no --dir "$OUT" \
		>redis.out 2>&1 </dev/null ) &
	REDIS_PID=$!
	for i in $(seq 1 50); do
		kill -0 "$REDIS_PID" 2>/dev/null || die "redis-server exited at start-up ($OUT/redis.out)"
		[ "$("${REDIS[@]}" ping 2>/dev/null)" = PONG ] && return 0
		sleep 0.2
	done
	die "redis-server did not answer PING on 127.0.0.1:$REDIS_PORT within 10 s ($OUT/redis.out)"
}
# Scripts Redis ran so far (EVAL + EVALSHA calls, INFO commandstats).
redis_scripts() {
	"${REDIS[@]}" info commandstats 2>/dev/null | tr -d '\r' | awk -F'[:=,]' '
		$1 == "cmdstat_eval" || $1 == "cmdstat_evalsha" { n += $3 } END { print n + 0 }'
}
[ -n "$REDIS_PORT" ] && start_redis

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
start_uas() {
	local i
	( cd "$OUT" && exec timeout -k 5 $((BOUND + 60)) taskset -c 0 sipp -sf "$HERE/uas.xml" \
		-i $IP -p "$UAS_PORT" -mp "$MEDIA_PORT" -nostdin -aa -timeout "$((BOUND + 45))s" \
		-recv_timeout 20000 -buff_size 4194304 -trace_stat -stf uas_stat.csv -fd 1 \
		-trace_err -max_log_size "$LOG_MAX" "${TRACE_ARGS[@]}" >uas.out 2>&1 </dev/null ) &
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
[ -n "$RTPENGINE_PID" ] && r0=$(cpu_ticks "$RTPENGINE_PID")
[ -n "$REDIS_PID" ] && { d0=$(cpu_ticks "$REDIS_PID"); s0=$(redis_scripts); }
( cd "$OUT" && exec timeout -k 5 $((BOUND + 15)) taskset -c 0 sipp $IP:"$PROXY_PORT" \
	-sf "$UAC_XML" -inf "$OUT/calls.csv" -i $IP -p "$UAC_PORT" -mp $((MEDIA_PORT + 1000)) \
	-m "$CALLS" -r "$RATE" -rp 1000 -l $((RATE * 10 + 100)) -nostdin -aa \
	-recv_timeout 5000 -timeout "${BOUND}s" -buff_size 4194304 \
	-max_recv_loops 10000 -max_sched_loops 10000 "${UAC_ARGS[@]}" \
	-trace_stat -stf uac_stat.csv -fd 1 -trace_err -max_log_size "$LOG_MAX" "${TRACE_ARGS[@]}" \
	>uac.out 2>&1 </dev/null )
rc=$?
c1=$(cpu_ticks "$PROXY_PID")
if [ -n "$RTPENGINE_PID" ]; then
	r1=$(cpu_ticks "$RTPENGINE_PID")
	# the last BYE's delete may still be on its way; then ask with the proxy still up
	sleep 1
	LEFT=$("${NG[@]}" count 2>"$OUT/ng-count.err") || LEFT=na
fi
REDIS_FIELDS=""
if [ -n "$REDIS_PID" ]; then
	d1=$(cpu_ticks "$REDIS_PID")
	s1=$(redis_scripts)
	# the last calls' releases may still be on their way; then count with the proxy up
	sleep 1
	HOLDS_LEFT=$("${REDIS[@]}" zcard trunkstore:trunks:bench 2>/dev/null) || HOLDS_LEFT=na
	REDIS_FIELDS="redis_scripts=$((s1 - s0)) redis_holds_left=$HOLDS_LEFT"
fi
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
# SDPs a SIPp received (its -trace_msg log; SIDE uas or uac) whose c= and o= lines both
# name rtpengine's address: "REWRITTEN/ALL"
sdp_via_rtpengine() {
	local f
	f=$(ls "$OUT"/uas_*_messages.log 2>/dev/null | head -n 1)
	[ "$1" = uac ] && f=$(ls "$OUT"/uac-inbound_*_messages.log 2>/dev/null | head -n 1)
	[ -n "$f" ] || { echo na; return; }
	awk -v ip="$RTP_IP" '
		function done_msg() { if (sdp) { all++; if (c && o) ok++ } sdp = c = o = 0 }
		/message received/ { done_msg(); inmsg = 1; next }
		/message sent/ { done_msg(); inmsg = 0; next }
		!inmsg { next }
		{ sub(/\r$/, "") }
		/^v=0$/ { sdp = 1 }
		/^c=IN IP4 / && $3 == ip { c = 1 }
		/^o=/ && $6 == ip { o = 1 }
		END { done_msg(); printf "%d/%d", ok, all }' "$f"
}
HZ=$(getconf CLK_TCK)
CPU_US=$(awk -v t=$((c1 - c0)) -v hz="$HZ" -v ok="$OK" \
	'BEGIN { if (ok + 0 > 0) printf "%.0f", t * 1e6 / hz / ok; else print "na" }')
if [ "$SCENARIO" = register ]; then
	read -r P50 P99 < <(percentiles)
	echo "proxy=$NAME scenario=$SCENARIO rate=$RATE calls=$CALLS ok=$OK failed=$FAILED" \
		"cpu_us_per_call=$CPU_US p50_ms=$P50 p99_ms=$P99 sipp_rc=$rc out=$OUT"
elif [ "$SCENARIO" = media ]; then
	RTPE_US=$(awk -v t=$((r1 - r0)) -v hz="$HZ" -v ok="$OK" \
		'BEGIN { if (ok + 0 > 0) printf "%.0f", t * 1e6 / hz / ok; else print "na" }')
	SDP=""
	[ -n "$TRACE" ] && SDP="sdp_via_rtpengine_uas=$(sdp_via_rtpengine uas)" &&
		SDP="$SDP sdp_via_rtpengine_uac=$(sdp_via_rtpengine uac) "
	read -r P50 P99 < <(percentiles)
	echo "proxy=$NAME scenario=$SCENARIO rate=$RATE calls=$CALLS ok=$OK failed=$FAILED" \
		"uas_failed=$UAS_FAILED cpu_us_per_call=$CPU_US p50_ms=$P50 p99_ms=$P99" \
		"rtpengine_calls_left=$LEFT" \
		"rtpengine_cpu_us_per_call=$RTPE_US ${SDP}sipp_rc=$rc out=$OUT"
elif [ "$SCENARIO" = trunks ]; then
	read -r P50 P99 < <(percentiles)
	[ -n "$REDIS_FIELDS" ] && REDIS_FIELDS="$REDIS_FIELDS redis_cpu_us_per_call=$(awk \
		-v t=$((d1 - d0)) -v hz="$HZ" -v ok="$OK" \
		'BEGIN { if (ok + 0 > 0) printf "%.0f", t * 1e6 / hz / ok; else print "na" }') "
	echo "proxy=$NAME scenario=$SCENARIO rate=$RATE calls=$CALLS ok=$OK failed=$FAILED" \
		"uas_failed=$UAS_FAILED cpu_us_per_call=$CPU_US p50_ms=$P50 p99_ms=$P99" \
		"${REDIS_FIELDS}sipp_rc=$rc out=$OUT"
else
	echo "proxy=$NAME scenario=$SCENARIO rate=$RATE calls=$CALLS ok=$OK failed=$FAILED" \
		"uas_failed=$UAS_FAILED cpu_us_per_call=$CPU_US ${REDIS_FIELDS:+$REDIS_FIELDS }sipp_rc=$rc out=$OUT"
fi
