#!/bin/sh
# Proof that the fault suite catches a lost update (make check-broken).
# BUILD holds a service built with -DALARM_FAULT_ACK_EARLY: its workers
# report a batch durable before committing it, so a kill -9 loses updates
# the broker has already been told to forget.  This succeeds only when the
# fault suite's worker_kill9 fails, and fails for that reason: its window
# check reports acked updates LOST.
# It writes BUILD/test-summary ("1 0" or "0 1 check-broken") for
# scripts/summary.sh, so make test counts it as one check.
set -u
BUILD=${1:?usage: check-broken.sh BUILD_DIR}
log="$BUILD/faulttest-broken.log"
# The run must be the full scenario whatever the caller's environment says.
unset FAULT_ONLY FAULT_SCALE FAULT_TIMEOUT

echo "broken build (must fail): $BUILD/tests/faulttest $BUILD/alarm-supervisor worker_kill9"
"$BUILD/tests/faulttest" "$BUILD/alarm-supervisor" worker_kill9 > "$log" 2>&1
status=$?
grep -E '^not ok|^# worker_kill9: [0-9]+ faults|^faulttest:' "$log"
if [ "$status" -ne 0 ] &&
    grep -q '^not ok [0-9]* - worker_kill9/window_updates_checked: LOST: ' "$log"; then
	echo "PASS check-broken: the fault suite caught the acked updates the broken build lost"
	echo "1 0" > "$BUILD/test-summary"
	echo "$BUILD: 1 passed, 0 failed"
	exit 0
fi
echo "FAIL check-broken: faulttest exited $status without reporting lost window updates;" \
    "the suite no longer proves \"0 lost\" (full output: $log)"
echo "0 1 check-broken" > "$BUILD/test-summary"
echo "$BUILD: 0 passed, 1 failed"
exit 1
