#!/bin/sh
# The suite's closing line, over every build that ran: checks passed and
# failed (scripts/check.sh counts them).  A build without a summary did not
# run its tests: that is a failure too.
set -u
passed=0
failed=0
for b in "$@"; do
	p="" f="" rest=""
	[ -r "$b/test-summary" ] && read -r p f rest < "$b/test-summary"
	case "$p:$f" in
	:*|*:|*[!0-9:]*)
		echo "$b: did not run (no valid $b/test-summary)"
		failed=$((failed + 1))
		continue
		;;
	esac
	echo "$b: $p passed, $f failed${rest:+ (failed:$rest)}"
	passed=$((passed + p))
	failed=$((failed + f))
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
