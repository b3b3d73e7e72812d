#!/usr/bin/env bash
# Distributed overhead: steps/s of `isoclr train --workers 2` against one process on the same global batch,
# measured back to back in one invocation. Each configuration uses all cores of this machine: one process
# with NPROC libtorch threads, or 2 workers with NPROC/2 threads each.
#   scripts/bench-distributed.sh [STEPS] [BATCH]
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
steps=${1:-40}
batch=${2:-32}
cores=$(nproc)
isoclr="$repo/target/release/isoclr"
[[ -x "$isoclr" ]] || "$repo/scripts/setup.sh"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
common=(--config "$repo/configs/tiny.toml" --set "train.steps=$steps" --set "train.batch_size=$batch"
        --set train.log_every=1 --set model.norm=layer --set model.dropout=0.0)

# Steady-state steps per second from a metrics.jsonl: the first 3 steps (warm-up) are left out.
rate() {
  python3 - "$1" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
a, b = rows[3], rows[-1]
print(f"{(b['step'] - a['step']) / (b['elapsed_s'] - a['elapsed_s']):.3f}")
PY
}

"$isoclr" train "${common[@]}" --set "train.threads=$cores" --out "$work/one" >/dev/null 2>&1
"$isoclr" train "${common[@]}" --set "train.threads=$(( cores / 2 > 0 ? cores / 2 : 1 ))" --workers 2 \
  --out "$work/two" >/dev/null 2>&1
one=$(rate "$work/one/metrics.jsonl")
two=$(rate "$work/two/metrics.jsonl")
echo "| configuration | steps/s |"
echo "|---|---|"
echo "| 1 process, $cores threads | $one |"
echo "| 2 workers, $(( cores / 2 > 0 ? cores / 2 : 1 )) threads each | $two |"
python3 -c "print(f'ratio (2 workers / 1 process): {$two / $one:.2f}')"
