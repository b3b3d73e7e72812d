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
# The tensor-free crate, and the launcher built on it, must not depend on libtorch (tests/without_libtorch.rs
# runs the light isoclr binary with libtorch hidden).
for package in isoclr-core launcher; do
  if cargo tree --quiet -p "$package" -e normal,build | grep -qE '(^|[^a-z-])(tch|torch-sys) v'; then
    echo "test.sh: $package depends on tch" >&2
    exit 1
  fi
done
cargo test --release --workspace
echo "all checks passed in $(( $(date +%s) - started )) s" >&2
