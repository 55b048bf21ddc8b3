#!/bin/sh
# make run: start a local JetStream nats-server if the configured one does
# not answer, then run the supervisor in the foreground.
set -eu
BIN=${1:?usage: run.sh BINARY CONF}
CONF=${2:?usage: run.sh BINARY CONF}

"$BIN" -t -c "$CONF" >/dev/null

# First URL of [nats] servers; host and port.
url=$(sed -n 's/^[[:space:]]*servers[[:space:]]*=[[:space:]]*//p' "$CONF" | head -n1 | cut -d, -f1)
url=${url:-nats://127.0.0.1:4222}
hostport=${url#*://}
hostport=${hostport##*@}
host=${hostport%:*}
port=${hostport##*:}
state=$(sed -n 's/^[[:space:]]*state_dir[[:space:]]*=[[:space:]]*//p' "$CONF" | head -n1)
state=${state:-./state}

answers() {
	# A NATS server greets with INFO as soon as the TCP connection opens.
	timeout 2 bash -c "exec 3<>/dev/tcp/$host/$port && head -c 4 <&3" 2>/dev/null | grep -q INFO
}

nats_pid=""
cleanup() {
	if [ -n "$nats_pid" ]; then
		kill "$nats_pid" 2>/dev/null || true
		wait "$nats_pid" 2>/dev/null || true
	fi
}
trap cleanup EXIT INT TERM

if ! answers; then
	case "$host" in
	127.*|localhost) ;;
	*) echo "run: NATS at $url does not answer and is not local; start it first" >&2; exit 1 ;;
	esac
	mkdir -p "$state/nats"
	NATS_SERVER=$(command -v nats-server || echo /usr/sbin/nats-server)
	echo "run: no NATS at $url; starting $NATS_SERVER -js on $host:$port, store in $state/nats" >&2
	# Its own session: the terminal's ^C is for the supervisor, which drains
	# through this server before we stop it.
	setsid "$NATS_SERVER" -js -a "$host" -p "$port" -sd "$state/nats" -l "$state/nats/nats-server.log" &
	nats_pid=$!
	for _ in $(seq 1 50); do answers && break; sleep 0.1; done
	answers || { echo "run: nats-server did not come up; see $state/nats/nats-server.log" >&2; exit 1; }
fi

# Not exec: the trap must stop our nats-server when the supervisor exits.
"$BIN" -c "$CONF" &
sup=$!
# ^C reaches the supervisor directly (same process group); a TERM sent to
# this script is passed on.  Either way, wait until the supervisor is done.
trap ':' INT
trap 'kill -TERM $sup 2>/dev/null' TERM
status=0
while kill -0 "$sup" 2>/dev/null; do
	wait "$sup" && status=0 || status=$?
done
exit "$status"
