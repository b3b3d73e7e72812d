#!/usr/bin/env bash
# The main job on the embedded default: set up, synthesise a transcriptome, prepare it, pre-train an encoder,
# then run the linear probes of configs/default.toml on it (report in OUT_DIR/probes/report.md).
# Usage: scripts/demo.sh [OUT_DIR]   (default: out/demo)
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out=$(realpath -m "${1:-$repo/out/demo}")
# The [probe] task paths in configs/default.toml are relative to the repository root.
cd "$repo"
"$repo/scripts/setup.sh" ${ISOCLR_SETUP_ARGS:-}
"$repo/target/release/isoclr" train --config "$repo/configs/default.toml" --out "$out"
echo
echo "outputs are in $out; the probe report is $out/probes/report.md"
