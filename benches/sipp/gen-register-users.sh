#!/usr/bin/env bash
# gen-register-users.sh -- the user set of load.sh --scenario register, generated at run
# time (10,000 users are not worth committing):
#
#   benches/sipp/gen-register-users.sh [--users N] [--realm REALM]
#
# Writes, next to this script (all git-ignored):
#   register-users.csv                 SIPp injection file (-inf), SEQUENTIAL,
#                                      field0 = user, field1 = password,
#                                      field2 = realm, field3 = SIPp's
#                                      [authentication ...] keyword for them
#   kamailio-db-register/subscriber    db_text table for kamailio-registrar.cfg
#   kamailio-db-register/version         (username, domain = REALM, password in clear)
#   kamailio-db-register/htable        the same credentials as an htable table (key =
#                                      user, value = password) for kamailio-registrar.cfg
#                                      started with -A CREDS_HTABLE
#   config-register/connectivity/bench-register/pbxs.json
#                                      one trunkstore connectivity document: account
#                                      auth_realm = REALM and N password servers
#                                      without ip (auth_user = the user)
# Users are pbx00000 .. pbx(N-1) (5 digits), default N = 10000 (at most 100000).
# Passwords are derived from the user number (reg-<n>-<checksum>): the same in all three
# files, so the SIPp side, Kamailio and trunkstore always agree.
set -eu

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
USERS=10000
REALM=reg.bench.trunkstore.local

die() { echo "gen-register-users.sh: $*" >&2; exit 2; }
while [ $# -gt 0 ]; do
	case "$1" in
	--users) USERS=$2; shift 2 ;;
	--realm) REALM=$2; shift 2 ;;
	-h|--help) sed -n '2,20p' "$0"; exit 0 ;;
	*) die "unknown option $1" ;;
	esac
done
[[ $USERS =~ ^[0-9]+$ ]] && [ "$USERS" -ge 1 ] && [ "$USERS" -le 100000 ] ||
	die "--users must be 1..100000"
[[ $REALM =~ ^[A-Za-z0-9._-]+$ ]] || die "--realm must be a domain name"

CSV=$HERE/register-users.csv
KDB=$HERE/kamailio-db-register
DOC_DIR=$HERE/config-register/connectivity/bench-register
mkdir -p "$KDB" "$DOC_DIR"

# One awk pass writes the three files: same users, same passwords. Each is written to a
# temporary name first and renamed, so a reader never sees half a file.
awk -v n="$USERS" -v realm="$REALM" -v csv="$CSV.tmp" -v sub_="$KDB/subscriber.tmp" \
	-v ht="$KDB/htable.tmp" -v doc="$DOC_DIR/.pbxs.json.tmp" '
	function password(i) { return sprintf("reg-%05d-%04x", i, (i * 7919 + 40503) % 65536) }
	BEGIN {
		print "SEQUENTIAL" > csv
		print "id(int,auto) username(str) domain(str) password(str)" > sub_
		print "id(int,auto) key_name(str) key_type(int) value_type(int) key_value(str) expires(int)" > ht
		print "{" > doc
		print "  \"name\": \"SIPp registration load: " n " password PBXs without ip\"," > doc
		print "  \"account\": {\"auth_realm\": \"" realm "\"}," > doc
		print "  \"servers\": [" > doc
		for (i = 0; i < n; i++) {
			user = sprintf("pbx%05d", i); pw = password(i)
			print user ";" pw ";" realm ";[authentication username=" user " password=" pw "];" > csv
			print (i + 1) ":" user ":" realm ":" pw > sub_
			print (i + 1) ":" user ":0:0:" pw ":0" > ht
			printf "    {\"name\": \"%s\", \"auth\": {\"auth_method\": \"password\", \"auth_user\": \"%s\", \"auth_password\": \"%s\"}}%s\n", \
				user, user, pw, (i < n - 1 ? "," : "") > doc
		}
		print "  ]" > doc
		print "}" > doc
	}'
printf 'table_name(str) table_version(int)\nsubscriber:7\nhtable:2\n' >"$KDB/version"
mv "$CSV.tmp" "$CSV"
mv "$KDB/subscriber.tmp" "$KDB/subscriber"
mv "$KDB/htable.tmp" "$KDB/htable"
mv "$DOC_DIR/.pbxs.json.tmp" "$DOC_DIR/pbxs.json"
echo "gen-register-users.sh: $USERS users pbx00000.. realm $REALM -> $CSV, $KDB/, $DOC_DIR/pbxs.json"
