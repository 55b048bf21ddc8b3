#!/bin/sh
# Run every test of one build: unit tests, the integration suite and the
# fault-injection suite against that build's alarm-supervisor.  Totals go
# to BUILD/test-summary for scripts/summary.sh.
set -u
BUILD=${1:?usage: check.sh BUILD_DIR}
passed=0
failed=0
failures=""

# Run a program with its output to the terminal and to a log; the
# program's own exit status decides (a pipe into tee would hide it).
run_logged() {
	name=$1
	log=$2
	shift 2
	status_file="$log.status"
	{ "$@"; echo $? > "$status_file"; } 2>&1 | tee "$log"
	status=$(cat "$status_file" 2>/dev/null || echo 1)
	rm -f "$status_file"
	if [ "$status" -eq 0 ]; then
		passed=$((passed + 1))
	else
		failed=$((failed + 1))
		failures="$failures $name"
		echo "FAIL $name (exit $status)"
	fi
}

for t in "$BUILD"/tests/test_*; do
	[ -x "$t" ] || continue
	name=$(basename "$t")
	if "$t" > "$BUILD/$name.log" 2>&1; then
		passed=$((passed + 1))
		echo "PASS unit/$name ($(grep -c '\[       OK \]' "$BUILD/$name.log") cases)"
	else
		failed=$((failed + 1))
		failures="$failures unit/$name"
		echo "FAIL unit/$name"
		cat "$BUILD/$name.log"
	fi
done

echo "integration: $BUILD/tests/itest $BUILD/alarm-supervisor"
run_logged integration "$BUILD/itest.log" "$BUILD/tests/itest" "$BUILD/alarm-supervisor"
echo "fault injection: $BUILD/tests/faulttest $BUILD/alarm-supervisor"
run_logged fault "$BUILD/faulttest.log" "$BUILD/tests/faulttest" "$BUILD/alarm-supervisor"

printf '%s %s%s\n' "$passed" "$failed" "$failures" > "$BUILD/test-summary"
echo "$BUILD: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
