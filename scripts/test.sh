#!/usr/bin/env bash
# Sets everything up and runs the whole test suite (what CI runs): formatting, clippy, unit and
# integration tests, including the real example data and the Python reference.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
started=$(date +%s)
scripts/setup.sh
cargo fmt --all --check
cargo clippy --release --workspace --all-targets --quiet -- -D warnings
# The NCCL backend loads libnccl at run time, so it compiles and lints here without CUDA.
cargo clippy --release --workspace --all-targets --quiet --features nccl -- -D warnings
# The data layer must build and pass without libtorch (the coordinator and launcher use it that way).
cargo test --release --no-default-features --lib --quiet
cargo test --release --workspace
echo "all checks passed in $(( $(date +%s) - started )) s" >&2
