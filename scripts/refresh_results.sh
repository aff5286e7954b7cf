#!/usr/bin/env bash
# Bring the committed results up to date with what the lanes (scripts/lanes.sh) have finished,
# without training anything: adopt finished comparison/ablation runs into the paper-table store,
# then regenerate the issue-5 comparison tables and every experiment's report block in
# docs/results.md (experiments with no finished cell are left out). Safe to run at any time.
#   scripts/refresh_results.sh && git add docs && git commit -m "results: ..."
set -euo pipefail
cd "$(dirname "$0")/.."
H=.venv/bin/h2rec
PY=.venv/bin/python

shopt -s nullglob
cmp_runs=(runs/cmp-*)
abl_runs=(runs/abl-*)
if [ ${#cmp_runs[@]} -gt 0 ]; then
  $H experiment adopt experiments/table2 "${cmp_runs[@]}"
fi
if [ $((${#cmp_runs[@]} + ${#abl_runs[@]})) -gt 0 ]; then
  $H experiment adopt experiments/table3 "${cmp_runs[@]}" "${abl_runs[@]}"
fi

$PY scripts/h2rec_comparison.py report --datasets beauty yelp --write docs/results.md > /dev/null

for name in table2 table3 table4 table5 table6 table7 table8 figure3 figure4 llm-esr-teacher melt-refresh; do
  state=$($H experiment status "experiments/$name")  # whole output first: grep -q + pipefail
  if grep -q '^ *done ' <<< "$state"; then
    $H experiment report "experiments/$name" --write docs/results.md > /dev/null
    echo "report: experiments/$name"
  fi
done
