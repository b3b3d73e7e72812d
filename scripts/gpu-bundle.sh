#!/usr/bin/env bash
# Builds what scripts/gpu-check.sh runs on a GPU machine that has torch but no cargo and no network, into
# gpu-bundle/ (git-ignored; carry it next to a copy of the working tree):
#   isoclr            the command (no libtorch; hands train, worker, embed and probe to isoclr-torch)
#   isoclr-torch      the commands that run libtorch, with the NCCL backend (`--features nccl`)
#   train_throughput  the isoclr-vs-PyTorch training benchmark (benches/train_throughput.rs)
#   embed_throughput  embedding vs the training forward pass (benches/embed_throughput.rs)
#   memory_search     the largest batch that trains (benches/memory_search.rs)
#   masked_norm       one masked batch norm against libtorch's (benches/masked_norm.rs)
#   isoclr-lib-tests  the isoclr library's unit tests (device, model, train), with `--features nccl`
#   core-lib-tests    the isoclr-core library's unit tests, with `--features nccl` (core/src/dist/nccl.rs)
#   BUILD             commit, toolchain and libtorch they were built against
# All release builds, stripped of debug info (the unstripped isoclr is ~145 MB) and packed into one
# xz-compressed archive, gpu-bundle/binaries.tar.xz (~90 MiB of binaries in ~25 MiB), so that the bundle
# travels with the tree (64 MiB in all); gpu-check.sh unpacks it with Python's tarfile. The binaries keep their rpath to this machine's .venv/libtorch, which
# does not exist on the GPU machine: gpu-check.sh puts that machine's torch/lib on LD_LIBRARY_PATH instead.
#
#   scripts/gpu-bundle.sh          (CARGO_TARGET_DIR is honoured; default target/)
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
bundle="$repo/gpu-bundle"
limit_mib=60

[[ -e .venv/libtorch ]] || scripts/setup.sh

# Prints the executable(s) of target kind $1 (bin, lib, bench) that a cargo invocation with
# --message-format=json produced (cargo bench also reports the package's binaries, which benches may run).
executables() {
  python3 -c '
import json, sys
for line in sys.stdin:
    if line.startswith("{"):
        m = json.loads(line)
        if m.get("reason") == "compiler-artifact" and m.get("executable") and sys.argv[1] in m["target"]["kind"]:
            print(m["executable"])
' "$1"
}

# One feature set for all three, so the library compiles once per mode. `cargo bench` always uses the
# bench profile, which inherits the release profile.
build=(--features nccl --message-format=json-render-diagnostics)
echo "gpu-bundle: building (release, --features nccl)" >&2
isoclr=$(cargo build --release "${build[@]}" --bin isoclr | executables bin)
torch=$(cargo build --release "${build[@]}" --bin isoclr-torch | executables bin)
tests=$(cargo test --release "${build[@]}" -p isoclr --lib --no-run | executables lib)
core_tests=$(cargo test --release "${build[@]}" -p isoclr-core --lib --no-run | executables lib)
bench=$(cargo bench "${build[@]}" --bench train_throughput --no-run | executables bench)
embed=$(cargo bench "${build[@]}" --bench embed_throughput --no-run | executables bench)
search=$(cargo bench "${build[@]}" --bench memory_search --no-run | executables bench)
norm=$(cargo bench "${build[@]}" --bench masked_norm --no-run | executables bench)
for f in "$isoclr" "$torch" "$tests" "$core_tests" "$bench" "$embed" "$search" "$norm"; do
  [[ -n "$f" && -x "$f" && "$f" != *$'\n'* ]] || { echo "gpu-bundle: expected one executable, got '$f'" >&2; exit 1; }
done

rm -rf "$bundle"
mkdir -p "$bundle"
objcopy --strip-debug "$isoclr" "$bundle/isoclr"
objcopy --strip-debug "$torch" "$bundle/isoclr-torch"
objcopy --strip-debug "$tests" "$bundle/isoclr-lib-tests"
objcopy --strip-debug "$core_tests" "$bundle/core-lib-tests"
objcopy --strip-debug "$bench" "$bundle/train_throughput"
objcopy --strip-debug "$embed" "$bundle/embed_throughput"
objcopy --strip-debug "$search" "$bundle/memory_search"
objcopy --strip-debug "$norm" "$bundle/masked_norm"
{
  echo "commit $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src core benches build.rs Cargo.toml Cargo.lock || echo ' (with uncommitted changes)')"
  echo "built $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(uname -n)"
  rustc --version
  echo "libtorch $(readlink -f .venv/libtorch) ($(.venv/bin/python -c 'import importlib.metadata as m; print(m.version("torch"))' 2>/dev/null || echo '?'))"
} >"$bundle/BUILD"

echo "gpu-bundle: $bundle" >&2
binaries=(isoclr isoclr-torch isoclr-lib-tests core-lib-tests train_throughput embed_throughput memory_search masked_norm)
for f in "${binaries[@]}"; do
  awk -v f="$f" -v b="$(stat -c %s "$bundle/$f")" 'BEGIN { printf "%-18s %6.1f MiB\n", f, b / 1048576 }'
done
echo "gpu-bundle: compressing" >&2
python3 - "$bundle" "${binaries[@]}" <<'PY'
import os, sys, tarfile
bundle, names = sys.argv[1], sys.argv[2:]
with tarfile.open(os.path.join(bundle, "binaries.tar.xz"), "w:xz", preset=6) as archive:
    for name in names:
        archive.add(os.path.join(bundle, name), arcname=name)
PY
(cd "$bundle" && rm -f "${binaries[@]}")
total=$(stat -c %s "$bundle/binaries.tar.xz")
awk -v b="$total" -v l="$limit_mib" 'BEGIN { printf "%-18s %6.1f MiB (limit %d MiB)\n", "binaries.tar.xz", b / 1048576, l }'
if ((total > limit_mib * 1048576)); then
  echo "gpu-bundle: the bundle exceeds $limit_mib MiB" >&2
  exit 1
fi
