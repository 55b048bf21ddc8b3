#!/bin/sh
# The suite's closing line, over every build that ran.
set -u
passed=0
failed=0
for b in "$@"; do
	read -r p f rest < "$b/test-summary" || { echo "missing $b/test-summary"; exit 1; }
	passed=$((passed + p))
	failed=$((failed + f))
	[ -n "${rest:-}" ] && echo "failed in $b:$rest"
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
