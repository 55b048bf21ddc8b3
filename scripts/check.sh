#!/bin/sh
# Run every test of one build (unit tests, then the integration suite
# against that build's alarm-supervisor) and record the totals in
# BUILD/test-summary for scripts/summary.sh.
set -u
BUILD=${1:?usage: check.sh BUILD_DIR}
passed=0
failed=0
failures=""

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
if "$BUILD/tests/itest" "$BUILD/alarm-supervisor" 2>&1 | tee "$BUILD/itest.log"; then
	passed=$((passed + 1))
else
	failed=$((failed + 1))
	failures="$failures integration"
fi

printf '%s %s%s\n' "$passed" "$failed" "$failures" > "$BUILD/test-summary"
echo "$BUILD: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
