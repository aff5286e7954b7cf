#!/usr/bin/env bash
# Start the project's long real-data runs as background lanes, each single-threaded (two
# OpenMP threads per job on a shared 2-core machine make the jobs wait for each other: an epoch
# measured 8-9x slower). Every lane resumes from its checkpoints and skips finished cells, so
# this is safe to run at the start of every session. Logs: logs/<lane>.log.
#   scripts/lanes.sh                  start every lane that is not already running
#   scripts/lanes.sh start cmp sweeps start only these lanes (two lanes keep one core each busy;
#                                     a third shares them, and its cell is likelier to be cut off
#                                     unfinished when the session ends)
#   scripts/lanes.sh status           show what is running and each log's last line
#   scripts/lanes.sh until 10:50      from now on, lanes start only cells expected to finish
#                                     before 10:50 (`h2rec experiment run --until`; read at each
#                                     chain step, so it applies to running lanes too; a machine
#                                     whose processes end with the session loses a cell cut off)
#   scripts/lanes.sh until none       no deadline
# A cell cut off when the session ends loses only its unfinished epoch IF the next session finds
# runs/ again (checkpoints every epoch; this machine kept runs/ and artifacts/ between the two
# sessions of 2026-12-06): then run without a deadline, so cells longer than a session (CCFRec
# on Yelp, about 3.8 h) are trained over two sessions instead of never being started.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p logs
PY=.venv/bin/python
export OMP_NUM_THREADS=1

H=".venv/bin/h2rec"

# What every lane's cells read: the prepared dataset, its MiniLM embeddings and its RQ-VAE 4x128
# SIDs (artifacts/ is not committed, so a fresh checkout builds them; each step is skipped when
# its output exists). A lock per dataset lets two lanes start together: the second waits, then
# finds the artifacts built. The SIDs are seeded; `setup` checks their collision rate against the
# committed diagnostics so a cell never trains on codes that differ from the earlier cells'.
if [ "${1:-}" = until ]; then
  if [ "${2:-none}" = none ]; then rm -f logs/until; else date -d "$2" --iso-8601=seconds > logs/until; fi
  cat logs/until 2>/dev/null || echo "no deadline"
  exit 0
fi
if [ "${1:-}" = until-opt ]; then  # the option each chain step passes (empty without a deadline)
  [ -f logs/until ] && echo "--until $(cat logs/until)"
  exit 0
fi

if [ "${1:-}" = setup ]; then
  shift
  for d in "$@"; do
    (
      flock 9
      prep="artifacts/prepared/$d"
      $H -q prepare -c "data/$d"  # reuses its cache when the source files are unchanged
      [ -f "$prep/embeddings/st-all-minilm-l6-v2.json" ] || $H embed "$d" -c embed/minilm
      [ -f "$prep/sids/rqvae-4x128/meta.json" ] || $H tokenize "$d" -c tokenize/rqvae-4x128
      $PY - "$prep/sids/rqvae-4x128/diagnostics.json" "docs/results/sids/$d.rqvae-4x128.diagnostics.json" <<'PYEOF'
import json, sys
built, committed = (json.load(open(p)) for p in sys.argv[1:3])
def key(d):
    return d["collision"]["rate"], d["collision"]["n_unique_sids"], d["collision"]["largest_group"]
if key(built) != key(committed):
    sys.exit(f"{sys.argv[1]}: collisions {key(built)} differ from the committed {key(committed)}")
print(f"{sys.argv[1]}: collisions (rate, distinct SIDs, largest group) {key(built)} as committed")
PYEOF
    ) 9> "logs/setup-$d.lock"
  done
  exit 0
fi
# Each lane is a CHAIN run in order; every step skips what is finished (experiment cells, runs),
# and experiment cells are trained under per-cell locks, so chains may overlap: two lanes reaching
# the same experiment split its cells between them. Order = what the open issues need first.
declare -A LANES=(
  # issue 6, Table 2: every literature baseline at seed 42 first (Beauty, then Yelp: one run of
  # each model on real data shows early whether it trains there), then the other seeds; then
  # Table 3's seeds 43-44
  [cmp]="scripts/lanes.sh setup beauty yelp; \
$H experiment run experiments/table2 --dataset beauty --seed 42 --threads 1 \$(scripts/lanes.sh until-opt); \
$H experiment run experiments/table2 --seed 42 --threads 1 \$(scripts/lanes.sh until-opt); \
$H experiment run experiments/table2 --threads 1 \$(scripts/lanes.sh until-opt); \
$H experiment run experiments/table3 --threads 1 \$(scripts/lanes.sh until-opt)"
  # issue 6, the one-seed H2Rec tables on Yelp: Figure 3's last gamma, p, w, the backbones, the
  # check of Table 2's sampled LLM-ESR teacher against all 10 neighbours, MELT's first refresh
  # one epoch later; then Table 3, Table 2, and the check of Table 2's model selection on Yelp
  # (revisits left out of validation) once no Table 2 cell is left for this lane
  [sweeps]="scripts/lanes.sh setup yelp beauty; \
$H experiment run experiments/figure3 --threads 1 \$(scripts/lanes.sh until-opt); \
$H experiment run experiments/table4 --threads 1 \$(scripts/lanes.sh until-opt); \
$H experiment run experiments/table5 --threads 1 \$(scripts/lanes.sh until-opt); \
$H experiment run experiments/table7 --threads 1 \$(scripts/lanes.sh until-opt); \
$H experiment run experiments/llm-esr-teacher --threads 1 \$(scripts/lanes.sh until-opt); \
$H experiment run experiments/melt-refresh --threads 1 \$(scripts/lanes.sh until-opt); \
$H experiment run experiments/table3 --threads 1 \$(scripts/lanes.sh until-opt); \
$H experiment run experiments/table2 --threads 1 \$(scripts/lanes.sh until-opt); \
$H experiment run experiments/selection-new-targets --threads 1 \$(scripts/lanes.sh until-opt)"
  # a third lane for a machine with cores to spare (here it shares the two): Table 2 from the end
  [extra]="scripts/lanes.sh setup yelp beauty; \
$H experiment run experiments/table2 --lane 1/2 --threads 1 \$(scripts/lanes.sh until-opt); \
$H experiment run experiments/table2 --threads 1 \$(scripts/lanes.sh until-opt)"
)

if [ "${1:-start}" = status ]; then
  for lane in "${!LANES[@]}"; do
    pid=$(cat "logs/$lane.pid" 2>/dev/null || true)
    state=stopped; [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && state="running (pid $pid)"
    echo "$lane: $state; $(tail -n 1 "logs/$lane.log" 2>/dev/null || echo 'no log')"
  done
  exit 0
fi

selected=("${!LANES[@]}")
if [ "${1:-start}" = start ] && [ $# -gt 1 ]; then
  selected=("${@:2}")
fi
for lane in "${selected[@]}"; do
  if [ -z "${LANES[$lane]+set}" ]; then
    echo "unknown lane '$lane' (lanes: ${!LANES[*]})" >&2
    exit 2
  fi
  pid=$(cat "logs/$lane.pid" 2>/dev/null || true)
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    echo "$lane: already running (pid $pid)"
    continue
  fi
  nohup bash -c "${LANES[$lane]}" >> "logs/$lane.log" 2>&1 &
  echo $! > "logs/$lane.pid"
  echo "$lane: started (pid $!)"
done
