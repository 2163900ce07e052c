#!/usr/bin/env bash
# Runs every Fuzz target of the module for a bounded time, one at a time
# (make fuzz). A target fails the run when it writes a failing input under
# its package's testdata/fuzz/. Go's fuzzing engine also fails now and then
# with no input written ("context deadline exceeded" as -fuzztime ends while
# a worker is mid-input under CPU contention, golang/go#51484): such a
# target is run once more and fails the run only if it fails again.
set -u
go=${1:-go}
fuzztime=${2:-60s}
out=$(mktemp)
trap 'rm -f "$out"' EXIT
failed=0
run() { # pkg target
	"$go" test -run '^$' -fuzz "^$2\$" -fuzztime "$fuzztime" "$1" >"$out" 2>&1
}
while read -r f; do
	pkg=./$(dirname "${f#./}")
	for t in $(sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(.*/\1/p' "$f"); do
		echo "== $pkg $t ($fuzztime)"
		if run "$pkg" "$t"; then
			grep 'execs:' "$out" | tail -n 1
			continue
		fi
		if grep -q 'Failing input written to' "$out" || ! grep -q 'context deadline exceeded\|fuzzing process hung or terminated' "$out"; then
			tail -n 40 "$out"
			failed=1
			continue
		fi
		echo "   the fuzzing engine failed with no failing input (golang/go#51484): once more"
		grep -v '^fuzz: elapsed' "$out" | tail -n 5 | sed 's/^/   /'
		if run "$pkg" "$t"; then
			grep 'execs:' "$out" | tail -n 1
		else
			tail -n 40 "$out"
			failed=1
		fi
	done
done < <(grep -rl --include='*_test.go' '^func Fuzz' . | sort)
exit $failed
