#!/usr/bin/env bash
# A probe study across training seeds: pre-train one configuration at several seeds, probe each encoder on the
# same tasks (the random-weight baselines then also come at several seeds: seed + 1 of each run), and aggregate
# every comparison over the seeds (scripts/study_report.py: study.md and study.json in OUT).
#
#   scripts/probe-study.sh --config FILE --task TASK [--task TASK ...] [--seeds 0,1,2] [--out DIR] [--set K=V ...]
#                          [--no-baselines]
#   scripts/probe-study.sh --synthetic [--steps 400] [--seeds 0,1,2] [--out DIR]
#
# --synthetic is the study of docs/PROBES.md on the synthetic default: configs/default.toml on 2,000 genes,
# both planted label sets at the smallest training fractions, 20 draws, no from-scratch baseline.
# The real-data study of docs/PROBES.md:
#   scripts/fetch-human-data.sh data/human
#   scripts/probe-study.sh --config configs/human-cpu.toml --task configs/probes/human_half_life.toml \
#       --task configs/probes/human_essentiality.toml --out out/study-human
# --no-baselines probes the encoders alone: for a variant of a configuration whose baselines were already
# measured (they do not depend on the pre-training), compared with scripts/study_report.py OUT --against BASE.
# A run or report already in OUT is kept (delete it to redo it), so a stopped study continues where it was.
# Run nothing else meanwhile on a small machine (libtorch's threads collapse when they share the cores).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
isoclr="$repo/target/release/isoclr"
[[ -x "$isoclr" ]] || { echo "probe-study: no $isoclr; run scripts/setup.sh first" >&2; exit 1; }
python="$repo/.venv/bin/python"
[[ -x "$python" ]] || python=python3

config="" seeds="0,1,2" out="" synthetic=0 steps=400
tasks=() sets=() probe_args=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --config) config="$2"; shift 2 ;;
    --task) tasks+=("$2"); shift 2 ;;
    --seeds) seeds="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --set) sets+=(--set "$2"); shift 2 ;;
    --synthetic) synthetic=1; shift ;;
    --no-baselines) probe_args+=(--no-baselines); shift ;;
    --steps) steps="$2"; shift 2 ;;
    *) echo "probe-study: unknown argument $1 (see the header of $0)" >&2; exit 2 ;;
  esac
done

if [[ $synthetic == 1 ]]; then
  out=$(realpath -m "${out:-$repo/out/probe-study-synthetic-$steps}")
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
    tasks+=("$out/tasks/$labels.toml")
  done
  config="$repo/configs/default.toml"
  sets+=(--set data.synth_genes=2000 --set "train.steps=$steps" --set 'probe.tasks=[]')
fi
[[ -n "$config" && ${#tasks[@]} -gt 0 ]] || { echo "probe-study: give --config and at least one --task, or --synthetic" >&2; exit 2; }
out=$(realpath -m "${out:-$repo/out/probe-study}")
mkdir -p "$out"
task_args=()
for t in "${tasks[@]}"; do task_args+=(--task "$t"); done

IFS=, read -ra seed_list <<< "$seeds"
for seed in "${seed_list[@]}"; do
  run="$out/seed-$seed/run"
  if [[ ! -s "$run/model.safetensors" ]]; then
    echo "probe-study: pre-training, seed $seed" >&2
    "$isoclr" train --config "$config" "${sets[@]}" --set "train.seed=$seed" --set 'probe.tasks=[]' --out "$run"
  fi
  if [[ ! -s "$out/seed-$seed/report/report.json" ]]; then
    echo "probe-study: probing, seed $seed" >&2
    "$isoclr" probe --checkpoint "$run" "${task_args[@]}" "${probe_args[@]}" --out "$out/seed-$seed/report"
  fi
done
"$python" "$repo/scripts/study_report.py" "$out"
echo "study: $out/study.md" >&2
