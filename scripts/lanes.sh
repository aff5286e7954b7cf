#!/usr/bin/env bash
# Start the project's long real-data runs as background lanes, each single-threaded (two
# OpenMP threads per job on a shared 2-core machine make the jobs wait for each other: an epoch
# measured 8-9x slower). Every lane resumes from its checkpoints and skips finished cells, so
# this is safe to run at the start of every session. Logs: logs/<lane>.log.
#   scripts/lanes.sh            start every lane that is not already running
#   scripts/lanes.sh status     show what is running and each log's last line
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p logs
PY=.venv/bin/python
export OMP_NUM_THREADS=1

declare -A LANES=(
  # Finished and removed, all on 2026-11-23: anchors (gru4rec-beauty), bert (bert4rec-beauty) and
  # abl-yelp ("H2Rec w/o L_CA", Yelp seed 42). Re-adding a finished lane is harmless: every
  # runner skips finished runs.
  [cmp]="$PY scripts/h2rec_comparison.py run --datasets beauty yelp --threads 1"
  [table8]=".venv/bin/h2rec experiment run experiments/table8 --threads 1"
  # seed 42 only: seeds 43-44 of H2Rec itself come from the cmp lane (adopted), not twice
  [table3]=".venv/bin/h2rec experiment run experiments/table3 --seed 42 --threads 1"
)

if [ "${1:-start}" = status ]; then
  for lane in "${!LANES[@]}"; do
    pid=$(cat "logs/$lane.pid" 2>/dev/null || true)
    state=stopped; [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && state="running (pid $pid)"
    echo "$lane: $state; $(tail -n 1 "logs/$lane.log" 2>/dev/null || echo 'no log')"
  done
  exit 0
fi

for lane in "${!LANES[@]}"; do
  pid=$(cat "logs/$lane.pid" 2>/dev/null || true)
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    echo "$lane: already running (pid $pid)"
    continue
  fi
  nohup bash -c "${LANES[$lane]}" >> "logs/$lane.log" 2>&1 &
  echo $! > "logs/$lane.pid"
  echo "$lane: started (pid $!)"
done
