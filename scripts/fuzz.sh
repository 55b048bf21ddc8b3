#!/bin/sh
# Run every libFuzzer target of fuzz/ for SECONDS each, one after the other
# (one job each: the machine is shared), and count one check per target:
# it fails on any finding (a crash, a sanitizer report, a leak, a timeout,
# an out-of-memory) or when it did not run.  Each target keeps its working
# corpus in BUILD/corpus/TARGET (grown from the seeds in fuzz/corpus/TARGET,
# which are only read) and writes findings to BUILD/artifacts/TARGET.
# Prints executions, corpus size and findings per target; totals go to
# BUILD/test-summary for scripts/summary.sh ("PASSED FAILED names").
set -u
BUILD=${1:?usage: fuzz.sh BUILD_DIR SECONDS}
SECONDS_EACH=${2:?usage: fuzz.sh BUILD_DIR SECONDS}
SEEDS=$(dirname "$0")/../fuzz/corpus
TARGETS="fuzz_validate fuzz_rfc3339 fuzz_frame fuzz_record fuzz_config"
passed=0
failed=0
failures=""

case $SECONDS_EACH in
''|*[!0-9]*|0) echo "fuzz: SECONDS must be a positive integer, not \"$SECONDS_EACH\"" >&2; exit 2 ;;
esac

# The largest input each target is given: a payload, a config file, a few frames.
max_len() {
	case $1 in
	fuzz_validate|fuzz_config) echo 8192 ;;
	*) echo 4096 ;;
	esac
}

for t in $TARGETS; do
	bin="$BUILD/$t"
	corpus="$BUILD/corpus/$t"
	artifacts="$BUILD/artifacts/$t"
	log="$BUILD/$t.log"
	if [ ! -x "$bin" ]; then
		echo "FAIL $t: $bin was not built: did not run"
		failed=$((failed + 1))
		failures="$failures $t"
		continue
	fi
	mkdir -p "$corpus" "$artifacts"
	# An earlier finding that still reproduces fails the check until it is fixed.
	stale=$(find "$artifacts" -type f | head -50)
	if [ -n "$stale" ]; then
		# shellcheck disable=SC2086
		if ! "$bin" -runs=1 $stale > "$BUILD/$t.replay.log" 2>&1; then
			echo "FAIL $t: an earlier finding in $artifacts still reproduces (log $BUILD/$t.replay.log)"
			failed=$((failed + 1))
			failures="$failures $t"
			continue
		fi
	fi
	before=$(find "$artifacts" -type f | wc -l)
	# -timeout: one input taking 10 s is a finding (a hang), not a slow machine.
	"$bin" -max_total_time="$SECONDS_EACH" -max_len="$(max_len "$t")" -timeout=10 \
	    -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$artifacts/" \
	    "$corpus" "$SEEDS/$t" > "$log" 2>&1
	rc=$?
	after=$(find "$artifacts" -type f | wc -l)
	runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
	size=$(find "$corpus" -type f | wc -l)
	found=$((after - before))
	echo "$t: ${runs:-0} executions in ${SECONDS_EACH}s, corpus $size inputs, $found findings (log $log)"
	if [ "$rc" -ne 0 ] || [ "$found" -ne 0 ] || [ -z "$runs" ]; then
		echo "FAIL $t: exit $rc, $found new findings in $artifacts:"
		grep -E '^(SUMMARY|fuzz_[a-z0-9]+:)|runtime error' "$log" | head -5 | sed 's/^/    /'
		failed=$((failed + 1))
		failures="$failures $t"
	else
		passed=$((passed + 1))
	fi
done
printf '%s %s%s\n' "$passed" "$failed" "$failures" > "$BUILD/test-summary"
echo "fuzz: $passed passed, $failed failed${failures:+ (failed:$failures)}"
[ "$failed" -eq 0 ]
