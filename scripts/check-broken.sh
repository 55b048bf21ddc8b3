#!/bin/sh
# Proof that the fault suite catches a lost update (make check-broken).
# BUILD holds a service built with -DALARM_FAULT_ACK_EARLY: its workers
# report a batch durable before committing it, so a kill -9 loses updates
# the broker has already been told to forget.  This succeeds only when the
# fault suite's worker_kill9 fails, and fails for that reason: its window
# check reports acked updates LOST.
set -u
BUILD=${1:?usage: check-broken.sh BUILD_DIR}
log="$BUILD/faulttest-broken.log"

echo "broken build (must fail): $BUILD/tests/faulttest $BUILD/alarm-supervisor worker_kill9"
FAULT_ONLY='' "$BUILD/tests/faulttest" "$BUILD/alarm-supervisor" worker_kill9 > "$log" 2>&1
status=$?
grep -E '^not ok|^# worker_kill9: [0-9]+ faults|^faulttest:' "$log"
if [ "$status" -ne 0 ] &&
    grep -q '^not ok [0-9]* - worker_kill9/window_updates_checked: LOST: ' "$log"; then
	echo "PASS check-broken: the fault suite caught the acked updates the broken build lost"
	exit 0
fi
echo "FAIL check-broken: faulttest exited $status without reporting lost window updates;" \
    "the suite no longer proves \"0 lost\" (full output: $log)"
exit 1
