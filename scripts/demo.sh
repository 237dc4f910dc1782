#!/usr/bin/env bash
# Quick-start demo: a real dump and restore of the bundled counter program (test/programs/counter.c),
# which appends 1, 2, 3, ... to a file once a second. It is dumped (and stops), then restored, and
# carries on from the number it had reached. Run as root after `bash scripts/setup.sh`.
# Cleans up by PID: the counter it started, and the restored counter.
set -euo pipefail
cd "$(dirname "$0")/.."
make -s -C test/programs
work=$(mktemp -d /tmp/crr-demo.XXXXXX)
out="$work/counter.out"
restored=""
cleanup() {
  for pid in ${counter:-} $restored; do kill -KILL "$pid" 2>/dev/null || true; done
  # A restored -d tree is init's child; this VM's init reaps slowly, so wait (bounded) for it.
  for _ in $(seq 1 300); do
    [ -n "$restored" ] && [ -e "/proc/$restored" ] || break
    sleep 0.1
  done
}
trap cleanup EXIT

echo "== start the counter"
setsid test/programs/build/counter "$work/result" "$out" </dev/null >/dev/null 2>&1 &
counter=$!
sleep 3.5
echo "   counter pid $counter has written: $(tr '\n' ' ' <"$out")"

echo "== crr dump -t $counter -D $work/images"
node bin/crr.js dump -t "$counter" -D "$work/images"
wait "$counter" 2>/dev/null || true
counter=""
before=$(tail -n1 "$out")
sleep 2
echo "   dumped and stopped: the file still ends at $(tail -n1 "$out") (was $before)"

echo "== crr restore -D $work/images -d"
node bin/crr.js restore -D "$work/images" -d --pidfile "$work/restored.pid"
restored=$(cat "$work/restored.pid")
sleep 3.5
echo "   restored pid $restored carries on: $(tail -n 6 "$out" | tr '\n' ' ')"
kill -USR1 "$restored"
sleep 0.5
echo "   its own check of the file (1..N, no gap, no repeat): $(cat "$work/result" 2>/dev/null || echo 'no answer')"
