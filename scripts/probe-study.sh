#!/usr/bin/env bash
# The measurement behind docs/PROBES.md: pre-train the default configuration on 2,000 synthetic genes for
# STEPS steps, then probe both synthetic label sets at the smallest training fractions with 20 draws each,
# against random weights and k-mers (no from-scratch baseline, to keep it to minutes on a CPU).
# Usage: scripts/probe-study.sh [STEPS] [OUT_DIR] [PRESET]
#   (defaults: 400, out/probe-study-STEPS[-PRESET], tiny as in configs/default.toml)
# About 5 minutes at 400 steps and 9 at 1,000 on 2 cores with `tiny`; 24 minutes at 400 steps with `small`.
# Run nothing else meanwhile (libtorch's threads collapse when they share the cores).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
steps=${1:-400}
preset=${3:-tiny}
suffix=$([[ "$preset" == tiny ]] || echo "-$preset")
out=$(realpath -m "${2:-$repo/out/probe-study-$steps$suffix}")
isoclr="$repo/target/release/isoclr"
[[ -x "$isoclr" ]] || { echo "probe-study: no $isoclr; run scripts/setup.sh first" >&2; exit 1; }
mkdir -p "$out/tasks"
for labels in half_life ribosome_load; do
  cat > "$out/tasks/$labels.toml" <<TOML
name = "synthetic_$labels"
kind = "regression"
transform = "log2"
[input]
synthetic = "$labels"
[low_data]
fractions = [0.005, 0.01, 0.03]
counts = [30]
draws = 20
seed = 0
[baselines]
supervised = false
TOML
done
"$isoclr" train --config "$repo/configs/default.toml" --set data.synth_genes=2000 --set "train.steps=$steps" \
  --set "model.preset=$preset" --set 'probe.tasks=[]' --out "$out/run"
"$isoclr" probe --checkpoint "$out/run" --task "$out/tasks/half_life.toml" \
  --task "$out/tasks/ribosome_load.toml" --out "$out/report"
echo "report: $out/report/report.md"
