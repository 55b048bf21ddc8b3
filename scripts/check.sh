#!/bin/sh
# Run every test of one build: unit tests, the integration suite and the
# fault-injection suite against that build's alarm-supervisor, and the
# packaging suite (man pages, make install, make deb).  Counts
# checks, not programs: unit cases (cmocka) plus itest and faulttest checks
# (TAP).  A program fails when it fails a check, runs fewer checks than it
# plans (cmocka: its table, "Running N test(s)"; TAP: its "1..N" line), runs
# none, or exits non-zero; each planned check that did not run counts as
# failed, and so does a program that did not run at all.  Totals go to
# BUILD/test-summary for scripts/summary.sh.
#
# Variables that select or shrink what the programs run (ITEST_ONLY,
# ITEST_SCALE, FAULT_ONLY, FAULT_SCALE, the watchdog timeouts, cmocka's
# output format) are ignored when inherited from the environment, with a
# note: make check and make test always run every check.  Run a program
# directly to select (tests/integration/README.md, tests/fault/README.md).
# Seeds (ITEST_SEED, FAULT_SEED) replay a run and KEEP variables only keep
# temp dirs: those stay.
set -u
BUILD=${1:?usage: check.sh BUILD_DIR}
UNIT_SRC=$(dirname "$0")/../tests/unit
passed=0
failed=0
failures=""

for v in ITEST_ONLY ITEST_SCALE ITEST_TIMEOUT FAULT_ONLY FAULT_SCALE FAULT_TIMEOUT \
    CMOCKA_MESSAGE_OUTPUT CMOCKA_XML_FILE CMOCKA_TEST_ABORT; do
	eval "isset=\${$v+x} value=\${$v-}"
	if [ -n "$isset" ]; then
		echo "check: ignoring $v=$value from the environment: make check runs every check"
		unset "$v"
	fi
done

# One program's result: NAME PASSED FAILED WHY (WHY empty when it passed).
tally() {
	passed=$((passed + $2))
	failed=$((failed + $3))
	if [ -n "$4" ]; then
		failures="$failures $1"
		echo "FAIL $1: $2 passed, $3 failed ($4)"
	else
		echo "PASS $1: $2 passed"
	fi
}

# Sum of the numbers a sed script extracts from a log, one per line.
sum_of() {
	sed -n "$1" "$2" | { s=0; while read -r n; do s=$((s + n)); done; echo "$s"; }
}

# A cmocka program: the cases of its table that did not pass are failed.
run_unit() {
	name=$1
	t="$BUILD/tests/$name"
	log="$BUILD/$name.log"
	if [ ! -x "$t" ]; then
		tally "unit/$name" 0 1 "$t was not built: did not run"
		return
	fi
	"$t" > "$log" 2>&1
	status=$?
	planned=$(sum_of 's/^\[==========\] Running \([0-9][0-9]*\) test(s)\.$/\1/p' "$log")
	ran=$(sum_of 's/^\[==========\] \([0-9][0-9]*\) test(s) run\.$/\1/p' "$log")
	ended=$(grep -c '^\[==========\] [0-9][0-9]* test(s) run\.$' "$log")
	ok=$(grep -c '^\[       OK \]' "$log")
	bad=$((planned - ok))
	why=""
	if [ "$planned" -eq 0 ]; then
		bad=1
		why="ran no case"
	elif [ "$ended" -eq 0 ]; then
		why="$ok of $planned cases passed, then it stopped before cmocka's summary"
	elif [ "$ran" -lt "$planned" ]; then
		why="ran $ran of $planned cases"
	elif [ "$bad" -ne 0 ]; then
		why="$bad of $planned cases did not pass"
	fi
	if [ "$bad" -lt 0 ]; then
		bad=1
		why="$ok cases passed of $planned planned"
	fi
	if [ "$status" -ne 0 ]; then
		[ "$bad" -eq 0 ] && bad=1
		why="${why:+$why, }exit $status"
	fi
	tally "unit/$name" "$ok" "$bad" "$why"
	[ -n "$why" ] && cat "$log"
}

# A TAP program, its output to the terminal and to a log; the program's own
# exit status counts too (a pipe into tee would hide it).
run_tap() {
	name=$1
	log=$2
	shift 2
	status_file="$log.status"
	{ "$@"; echo $? > "$status_file"; } 2>&1 | tee "$log"
	status=$(cat "$status_file" 2>/dev/null || echo 1)
	rm -f "$status_file"
	planned=$(sed -n 's/^1\.\.\([0-9][0-9]*\)$/\1/p' "$log" | head -n 1)
	ok=$(grep -c '^ok [0-9]' "$log")
	notok=$(grep -c '^not ok [0-9]' "$log")
	bad=$notok
	why=""
	[ "$notok" -gt 0 ] && why="$notok checks failed"
	if [ -z "$planned" ]; then
		bad=$((bad + 1))
		why="${why:+$why, }no plan: did not run"
	elif [ "$planned" -eq 0 ]; then
		bad=$((bad + 1))
		why="${why:+$why, }planned no check"
	elif [ $((ok + notok)) -lt "$planned" ]; then
		bad=$((bad + planned - ok - notok))
		why="${why:+$why, }$((planned - ok - notok)) of $planned planned checks did not run"
	elif [ $((ok + notok)) -gt "$planned" ]; then
		why="${why:+$why, }$((ok + notok - planned)) checks more than the $planned planned"
	fi
	if [ "$status" -ne 0 ]; then
		why="${why:+$why, }exit $status"
	fi
	[ -n "$why" ] && [ "$bad" -eq 0 ] && bad=1
	tally "$name" "$ok" "$bad" "$why"
}

for src in "$UNIT_SRC"/test_*.c; do
	[ -e "$src" ] || { tally unit 0 1 "no unit test sources in $UNIT_SRC"; break; }
	run_unit "$(basename "$src" .c)"
done

echo "integration: $BUILD/tests/itest $BUILD/alarm-supervisor"
run_tap integration "$BUILD/itest.log" "$BUILD/tests/itest" "$BUILD/alarm-supervisor"
echo "fault injection: $BUILD/tests/faulttest $BUILD/alarm-supervisor"
run_tap fault "$BUILD/faulttest.log" "$BUILD/tests/faulttest" "$BUILD/alarm-supervisor"
if [ "${CHECK_PKG:-yes}" = yes ]; then
	echo "packaging: tests/pkg/check.sh $BUILD"
	run_tap pkg "$BUILD/pkg.log" "$(dirname "$0")/../tests/pkg/check.sh" "$BUILD"
else
	echo "packaging: not in a sanitized build (the package's binaries are built plain; the plain check runs it)"
fi

printf '%s %s%s\n' "$passed" "$failed" "$failures" > "$BUILD/test-summary"
echo "$BUILD: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
