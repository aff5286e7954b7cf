#!/usr/bin/env bash
# Real-data SID measurements (issue 4, section 7): MiniLM embeddings of Yelp and Beauty, then every
# tokenizer config and the published LETTER codes, each with its diagnostics. Resumable: finished
# steps are skipped. Diagnostics and embedding stamps are copied to docs/results/sids/.
# Usage: scripts/sid_measurements.sh [dataset ...]   (default: yelp beauty)
set -euo pipefail
cd "$(dirname "$0")/.."
H2REC=${H2REC:-.venv/bin/h2rec}
datasets=("$@")
[ ${#datasets[@]} -gt 0 ] || datasets=(yelp beauty)
configs=(rqvae-4x128 rqkmeans-4x128 pq-4x128 vq-512 rqvae-3x256)
out=docs/results/sids
mkdir -p "$out"
for d in "${datasets[@]}"; do
  $H2REC -q prepare -c "data/$d"
  prep="artifacts/prepared/$d"
  emb="$prep/embeddings/st-all-minilm-l6-v2"
  [ -f "$emb.json" ] || $H2REC embed "$d" -c embed/minilm
  cp "$emb.json" "$out/$d.embeddings.json"
  [ -f "$prep/sids/published/diagnostics.json" ] || $H2REC tokenize "$d" --published
  cp "$prep/sids/published/diagnostics.json" "$out/$d.published.diagnostics.json"
  for c in "${configs[@]}"; do
    name=$c
    [ -f "$prep/sids/$name/meta.json" ] || $H2REC tokenize "$d" -c "tokenize/$c"
    cp "$prep/sids/$name/diagnostics.json" "$out/$d.$name.diagnostics.json"
  done
done
