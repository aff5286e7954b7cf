#!/usr/bin/env bash
# Correctness anchors on real data (issue 3): resumable; a finished run (summary in its run folder
# or in docs/results/anchors/) is skipped, an interrupted one continues from its last checkpoint. Each finished run's summary and result
# JSONs are copied to docs/results/anchors/ (small files, committed).
# Usage: scripts/anchors.sh [config ...]   (default: all anchor configs, in order)
# THREADS=1 when another job shares the 2 cores (a run may resume under another thread count).
set -euo pipefail
cd "$(dirname "$0")/.."
H2REC=${H2REC:-.venv/bin/h2rec}
configs=("$@")
[ ${#configs[@]} -gt 0 ] || configs=(mostpop-beauty sasrec-beauty-ce sasrec-beauty-bce mostpop-yelp sasrec-yelp-ce gru4rec-beauty bert4rec-beauty)
$H2REC -q prepare -c data/beauty
$H2REC -q prepare -c data/yelp
mkdir -p docs/results/anchors
for c in "${configs[@]}"; do
  run="runs/$c"
  # finished in an earlier session: its committed summary is the record (the run folder may be gone)
  [ -f "docs/results/anchors/$c.summary.json" ] && [ ! -f "$run/summary.json" ] && continue
  if [ ! -f "$run/summary.json" ]; then
    if [ -d "$run/checkpoints/last" ]; then
      $H2REC train "train/$c" threads=${THREADS:-2} --resume
    else
      $H2REC train "train/$c" threads=${THREADS:-2} --overwrite
    fi
  fi
  cp "$run/summary.json" "docs/results/anchors/$c.summary.json"
  for f in "$run"/results/*.json; do cp "$f" "docs/results/anchors/$c.$(basename "$f")"; done
  cp "$run/metrics.jsonl" "docs/results/anchors/$c.metrics.jsonl" 2>/dev/null || true
done
