#!/bin/bash
# Worker import alone: start `pulse-tui worker` on a fresh database and import folder, rename a
# CSV into <import dir>/events/, wait for the job to end, print its import time (the job's
# completed_at - started_at) and the events stored. No other writer runs.
#
# Usage (repository root, venv active, needs the sqlite3 CLI):
#   bash bench/worker_import.sh bench/.cache/events_1000000.csv
set -euo pipefail
csv=$(realpath "$1")
work=$(mktemp -d /tmp/pulse-worker-bench-XXXXXX)
mkdir -p "$work/in/events"
pulse-tui --db "$work/db.sqlite" --import-dir "$work/in" worker > "$work/worker.log" 2>&1 &
pid=$!
trap 'kill -TERM $pid 2>/dev/null || true; wait $pid 2>/dev/null || true; rm -rf "$work"' EXIT
sleep 2
cp "$csv" "$work/in/events/.incoming.tmp"
mv "$work/in/events/.incoming.tmp" "$work/in/events/$(basename "$csv")"
status=""
while [ "$status" != "completed" ] && [ "$status" != "failed" ]; do
  sleep 0.5
  status=$(sqlite3 "$work/db.sqlite" "SELECT status FROM import_jobs" 2>/dev/null || true)
done
sqlite3 "$work/db.sqlite" "SELECT 'job ' || status || ': ' || processed_records || ' rows in ' || \
  round((completed_at - started_at) / 1000.0, 1) || ' s = ' || \
  cast(processed_records * 1000.0 / (completed_at - started_at) AS INTEGER) || ' rows/s' \
  FROM import_jobs"
