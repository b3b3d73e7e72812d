#!/usr/bin/env bash
# The main job on the embedded default: set up, synthesise a transcriptome, prepare it, pre-train an encoder.
# Usage: scripts/demo.sh [OUT_DIR]   (default: out/demo)
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out=${1:-$repo/out/demo}
"$repo/scripts/setup.sh" ${ISOCLR_SETUP_ARGS:-}
"$repo/target/release/isoclr" train --config "$repo/configs/default.toml" --out "$out"
echo
echo "outputs are in $out"
