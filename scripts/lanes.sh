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

H=".venv/bin/h2rec"
# Each lane is a CHAIN run in order; every step skips what is finished (experiment cells, runs),
# and experiment cells are trained under per-cell locks, so chains may overlap: two lanes reaching
# the same experiment split its cells between them. Order = what the open issues need first.
declare -A LANES=(
  # issue 5: Yelp seeds 43-44 of H2Rec / SASRec / SID-only / concat; then adopt those runs as
  # paper-table cells (refresh_results.sh); every Table 2 baseline once on real data (Beauty,
  # seed 42: the cheapest check that each trains there), Table 3's other seeds (H2Rec s43-44
  # are the adopted runs), Table 2
  [cmp]="$PY scripts/h2rec_comparison.py run --datasets beauty yelp --threads 1; \
scripts/refresh_results.sh; \
$H experiment run experiments/table2 --dataset beauty --seed 42 --threads 1; \
$H experiment run experiments/table3 --threads 1; \
$H experiment run experiments/table2 --threads 1"
  # issue 6, one seed on Yelp: the beta/gamma sweeps first (L_CA's weight is what decides
  # H2Rec vs SASRec in issue 5), codebook shapes, p, w; then Table 2
  [sweeps]="$H experiment run experiments/figure3 --threads 1; \
$H experiment run experiments/table8 --threads 1; \
$H experiment run experiments/table4 --threads 1; \
$H experiment run experiments/table5 --threads 1; \
$H experiment run experiments/table2 --threads 1"
  # issue 6: Table 3 seed 42 (43-44 come from the cmp lane), quantisers, backbones, the check
  # of Table 2's sampled LLM-ESR teacher against all 10 neighbours; Table 2
  [ablations]="$H experiment run experiments/table3 --seed 42 --threads 1; \
$H experiment run experiments/table6 --threads 1; \
$H experiment run experiments/table7 --threads 1; \
$H experiment run experiments/llm-esr-teacher --threads 1; \
$H experiment run experiments/table2 --threads 1"
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
