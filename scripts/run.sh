#!/bin/sh
# make run: make sure a JetStream nats-server is there, then run the
# supervisor in the foreground.
#
# - Nothing answers on the configured URL (local host): start nats-server -js
#   there, store in STATE_DIR/nats.
# - A server answers but has no JetStream (Debian's packaged nats-server.service
#   on 127.0.0.1:4222 runs without -js) and the config wants JetStream intake:
#   leave that server alone, start our own nats-server -js on a free loopback
#   port (store in STATE_DIR/nats), and run the supervisor with a generated
#   copy of the config, STATE_DIR/run.conf, that differs only in [nats]
#   servers.  The operator's file is never written.  A SIGHUP sent to this
#   script regenerates the copy from the operator's file and passes the
#   SIGHUP on, so a reload still reads the operator's edits.
# Whatever nats-server this script started, it stops when the supervisor exits.
set -eu
BIN=${1:?usage: run.sh BINARY CONF}
CONF=${2:?usage: run.sh BINARY CONF}

"$BIN" -t -c "$CONF" >/dev/null

# Value of a key in the file (first occurrence; no key is in two sections).
conf_value() {
	sed -n "s/^[[:space:]]*$1[[:space:]]*=[[:space:]]*//p" "$CONF" | head -n1 | sed 's/[[:space:]]*$//'
}

# First URL of [nats] servers; host and port.
url=$(conf_value servers | cut -d, -f1)
url=${url:-nats://127.0.0.1:4222}
hostport=${url#*://}
hostport=${hostport##*@}
host=${hostport%:*}
port=${hostport##*:}
state=$(conf_value state_dir)
state=${state:-./state}
intake=$(conf_value intake)
intake=${intake:-jetstream}

# The INFO line a NATS server greets every connection with ("" if none answers).
info() {
	timeout 2 bash -c "exec 3<>/dev/tcp/$1/$2 && head -n1 <&3" 2>/dev/null || true
}
answers() {
	info "$1" "$2" | grep -q '^INFO '
}

nats_pid=""
sup=""
cleanup() {
	if [ -n "$nats_pid" ]; then
		kill "$nats_pid" 2>/dev/null || true
		wait "$nats_pid" 2>/dev/null || true
		echo "run: stopped nats-server (pid $nats_pid)" >&2
	fi
}
trap cleanup EXIT INT TERM

NATS_SERVER=$(command -v nats-server || echo /usr/sbin/nats-server)

# start_nats PORT: nats-server -js on $host (PORT -1: one the server picks), store in $state/nats.
start_nats() {
	mkdir -p "$state/nats"
	rm -f "$state/nats"/nats-server_*.ports
	# Its own session: the terminal's ^C is for the supervisor, which drains
	# through this server before we stop it.
	setsid "$NATS_SERVER" -js -a "$host" -p "$1" -sd "$state/nats" -l "$state/nats/nats-server.log" \
	    --ports_file_dir "$state/nats" &
	nats_pid=$!
	ports="$state/nats/nats-server_$nats_pid.ports"
	for _ in $(seq 1 50); do
		[ -s "$ports" ] && break
		kill -0 "$nats_pid" 2>/dev/null || break
		sleep 0.1
	done
	# {"nats":["nats://127.0.0.1:PORT"],...}: the port it took.
	got=$(sed -n 's/.*"nats":\["[a-z]*:\/\/[^"]*:\([0-9][0-9]*\)".*/\1/p' "$ports" 2>/dev/null || true)
	if [ -z "$got" ] || ! answers "$host" "$got"; then
		echo "run: nats-server did not come up; see $state/nats/nats-server.log" >&2
		exit 1
	fi
	nats_port=$got
}

# $state/run.conf: the operator's config with only [nats] servers replaced.
gen_conf() {
	tmp="$state/run.conf.tmp"
	(umask 077 && awk -v url="nats://$host:$nats_port" '
		/^[[:space:]]*\[/ { if (sec == "nats" && !done) { print "servers = " url; done = 1 }
		                    sec = $0; gsub(/[][[:space:]]/, "", sec) }
		sec == "nats" && /^[[:space:]]*servers[[:space:]]*=/ { if (!done) print "servers = " url; done = 1; next }
		{ print }
		END { if (!done) { if (sec != "nats") print "[nats]"; print "servers = " url } }
	' "$CONF" > "$tmp") && mv "$tmp" "$state/run.conf"
	"$BIN" -t -c "$state/run.conf" >/dev/null
}

run_conf=$CONF
case "$host" in 127.*|localhost) local_host=1 ;; *) local_host=0 ;; esac
greeting=$(info "$host" "$port")
if [ -z "$greeting" ]; then
	if [ "$local_host" -eq 0 ]; then
		echo "run: NATS at $url does not answer and is not local; start it first" >&2
		exit 1
	fi
	echo "run: no NATS at $url; starting $NATS_SERVER -js on $host:$port, store in $state/nats" >&2
	start_nats "$port"
	echo "run: nats-server (pid $nats_pid) listens on $host:$nats_port" >&2
elif [ "$intake" != core ] && ! printf '%s' "$greeting" | grep -q '"jetstream":true'; then
	if [ "$local_host" -eq 0 ]; then
		echo "run: the NATS server at $url has no JetStream (intake = $intake needs it); enable it there (nats-server -js)" >&2
		exit 1
	fi
	echo "run: the NATS server at $url has no JetStream (e.g. Debian's nats-server.service);" \
	    "leaving it alone and starting our own $NATS_SERVER -js on a free port of $host, store in $state/nats" >&2
	start_nats -1
	gen_conf
	run_conf="$state/run.conf"
	echo "run: nats-server (pid $nats_pid) listens on $host:$nats_port; running with $run_conf" \
	    "($CONF with servers = nats://$host:$nats_port)" >&2
fi

# Not exec: the trap must stop our nats-server when the supervisor exits.
"$BIN" -c "$run_conf" &
sup=$!
# ^C reaches the supervisor directly (same process group); a TERM sent to
# this script is passed on, and so is a HUP (after regenerating the copy).
# Either way, wait until the supervisor is done.
trap ':' INT
trap 'kill -TERM $sup 2>/dev/null' TERM
if [ "$run_conf" = "$CONF" ]; then
	trap 'kill -HUP $sup 2>/dev/null' HUP
else
	trap 'if gen_conf; then kill -HUP $sup 2>/dev/null; else echo "run: $CONF is not valid; the service keeps its configuration" >&2; fi' HUP
fi
status=0
while kill -0 "$sup" 2>/dev/null; do
	wait "$sup" && status=0 || status=$?
done
exit "$status"
