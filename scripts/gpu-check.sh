#!/usr/bin/env bash
# One-shot check of isoclr on a GPU machine that has torch but no cargo and no network. Run from the
# repository root with gpu-bundle/ present (made on a development machine by scripts/gpu-bundle.sh):
#
#   scripts/gpu-check.sh                                   # on the GPU machine: < 8 minutes
#   ISOCLR_GPU_CHECK_DEVICE=cpu scripts/gpu-check.sh       # smoke test of this script on a CPU machine
#
# Prints one markdown table and writes it, with every raw log, to $OUT (if set) or ./gpu-check-out/:
#   (a) training throughput, isoclr vs the PyTorch eager reference (benches/reference.py) on the same
#       batch and starting weights, bf16 autocast, presets small and medium, every sequence 12,288 nt or
#       the realistic length mix (mix:12288) cut into length-aware passes by a position budget as
#       `isoclr train` cuts it (both sides run the same passes), one sequence per line or packed several to
#       a line (train.packing), with their ratio and each side's peak GPU memory; below the table, isoclr's
#       seq/s on the mix against fixed padding (issue 7's 2.5× goal); and `small` with a 3× larger batch,
#       isoclr with gradient caching (train.gradient_cache);
#   (b) the NCCL unit tests (core/src/dist/nccl.rs) at world size 1, the trainer on NCCL's device
#       collectives against one process (train::step::tests::nccl_on_the_device_trains_as_one_process),
#       plus the device:: tests (autocast, CUDA memory statistics);
#   (c) `isoclr train --workers 2` (two processes sharing the GPU, TCP ring) against `--workers 1` on the
#       tiny synthetic configuration: seq/s and the largest relative loss difference of a step;
#   (d) embedding throughput (`isoclr embed` / the probe runner) next to the training forward pass, `small`
#       preset, bf16 (benches/embed_throughput.rs), appended below the table as the bench prints it;
#   (f) one masked batch norm on the GPU, forward and backward, bf16, at `small`'s stage shapes of 2×64 ×
#       12,288 nt: the composite, ATen's batch-norm kernels, and cuDNN's batch_norm on the same tensor
#       (benches/masked_norm.rs), appended below the table; the throughput case flag `kernels` trains isoclr
#       with ATen's kernels (ISOCLR_CUDA_BATCH_NORM=kernels).
# Exit status 0 when every check passed. Every command runs under `timeout`, and all of them share one
# budget (ISOCLR_GPU_CHECK_BUDGET_S, default 450 s), so the script ends well inside a 10-minute limit.
#
# Environment: PYTHON (default /opt/torch/.venv/bin/python3; .venv/bin/python on CPU), TORCH_DIR (the torch
# package directory; default: found from PYTHON), ISOCLR_GPU_CHECK_QUICK=1 (tiny sizes; the default on CPU),
# ISOCLR_GPU_BUNDLE (default gpu-bundle), PEERS (the PyTorch peers of the throughput cases, as
# ISOCLR_BENCH_PEERS: default masked, the table as before; e.g. plain,compiled:max-autotune-no-cudagraphs,masked
# adds a row per peer), BENCH_CAP (seconds per throughput case, default 100; compiled peers need more), CASES
# (throughput cases separated by ';', each "preset pairs length [positions] [pack|gc|kernels]" as in the list below,
# instead of that list), SEARCH=1 (also search the largest batch that trains, benches/memory_search.rs, within
# SEARCH_CAP seconds, default 300; with CASES= set to one short case, a run of its own).
set -uo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
started=$SECONDS
device=${ISOCLR_GPU_CHECK_DEVICE:-cuda}
[[ "$device" == cpu || "$device" == cuda ]] || { echo "ISOCLR_GPU_CHECK_DEVICE must be cpu or cuda" >&2; exit 2; }
if [[ "$device" == cpu ]]; then
  quick=${ISOCLR_GPU_CHECK_QUICK:-1}
  PYTHON=${PYTHON:-$repo/.venv/bin/python}
else
  quick=${ISOCLR_GPU_CHECK_QUICK:-0}
  PYTHON=${PYTHON:-/opt/torch/.venv/bin/python3}
fi
budget_s=${ISOCLR_GPU_CHECK_BUDGET_S:-450}
bundle=${ISOCLR_GPU_BUNDLE:-$repo/gpu-bundle}
out=${OUT:-$repo/gpu-check-out}
logs="$out/logs"
mkdir -p "$logs"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# scripts/gpu-bundle.sh packs the binaries into one compressed archive: unpack it next to the run.
if [[ -f "$bundle/binaries.tar.xz" ]]; then
  timeout 120 "$PYTHON" - "$bundle/binaries.tar.xz" "$work/bundle" <<'PY' || { echo "gpu-check: cannot unpack $bundle/binaries.tar.xz" >&2; exit 2; }
import sys, tarfile
with tarfile.open(sys.argv[1]) as archive:
    archive.extractall(sys.argv[2], **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
PY
  cp "$bundle/BUILD" "$work/bundle/" 2>/dev/null
  bundle=$work/bundle
fi
for f in isoclr isoclr-torch isoclr-lib-tests core-lib-tests train_throughput masked_norm; do
  [[ -x "$bundle/$f" ]] || { echo "gpu-check: $bundle/$f missing: run scripts/gpu-bundle.sh on a build machine" >&2; exit 2; }
done

# The bundle's binaries carry an rpath to the build machine's libtorch; here they load this machine's torch
# (the same version, 2.11.0) through LD_LIBRARY_PATH, with NCCL from the same wheel set. core/src/dist/nccl.rs
# opens libnccl by absolute path (ISOCLR_NCCL_LIBRARY), not by cudarc's bare-name search, so no
# `libnccl.so` symlink is needed, and it is the very file libtorch_cuda loads (two copies corrupt each other).
torch_dir=${TORCH_DIR:-$(timeout 60 "$PYTHON" -c \
  'import importlib.util as u; print(u.find_spec("torch").submodule_search_locations[0])')} ||
  { echo "gpu-check: $PYTHON has no torch (set PYTHON or TORCH_DIR)" >&2; exit 2; }
nccl_lib=$(cd "$torch_dir/../nvidia/nccl/lib" 2>/dev/null && pwd) || nccl_lib=""
export LD_LIBRARY_PATH="$torch_dir/lib${nccl_lib:+:$nccl_lib}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export LIBTORCH="$torch_dir"
[[ -n "$nccl_lib" ]] && export ISOCLR_NCCL_LIBRARY="$nccl_lib/libnccl.so.2"
export ISOCLR_PYTHON="$PYTHON" ISOCLR_BENCH_REFERENCE="$repo/benches/reference.py"
export RUST_LOG=${RUST_LOG:-warn}
{
  echo "device=$device quick=$quick budget_s=$budget_s"
  echo "PYTHON=$PYTHON"
  echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
  echo "ISOCLR_NCCL_LIBRARY=${ISOCLR_NCCL_LIBRARY:-}"
  cat "$bundle/BUILD" 2>/dev/null
  [[ "$device" == cuda ]] && timeout 30 nvidia-smi
} >"$logs/environment.txt" 2>&1

# run CAP LOG COMMAND...: COMMAND under a timeout of CAP seconds, or less when the shared budget is nearly
# spent; stdout and stderr go to LOG. timeout signals the whole process group (workers included).
run() {
  local cap=$1 log=$2
  shift 2
  local left=$((budget_s - (SECONDS - started)))
  if ((left < 20)); then
    echo "gpu-check: skipped, the time budget (${budget_s} s) is spent" >"$log"
    return 124
  fi
  local limit=$((cap < left ? cap : left)) began=$SECONDS status
  echo "+ timeout $limit $*" >"$log"
  timeout -k 10 "$limit" "$@" >>"$log" 2>&1
  status=$?
  echo "+ exit $status after $((SECONDS - began)) s" >>"$log"
  return "$status"
}

if [[ "$device" == cuda ]]; then
  card=$(timeout 30 nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null |
    head -1 | awk -F', ' '{ printf "%s (%s, driver %s)", $1, $2, $3 }')
  card=${card:-"GPU (nvidia-smi gave no name)"}
else
  card="CPU smoke test: $(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -1), $(nproc) cores, no GPU"
fi
echo "gpu-check: $card; logs in $logs" >&2

# ---- (b) unit tests on the device ---------------------------------------------------------------------
if [[ "$device" == cuda ]]; then
  echo "gpu-check: NCCL and device unit tests" >&2
  run 60 "$logs/unit-tests.log" "$bundle/core-lib-tests" dist::nccl --test-threads=1
  core_status=$?
  run 90 "$logs/unit-tests-torch.log" "$bundle/isoclr-lib-tests" device:: nccl_on_the_device --test-threads=1
  torch_status=$?
  cat "$logs/unit-tests-torch.log" >>"$logs/unit-tests.log"
  echo "exit $((core_status != 0 ? core_status : torch_status))" >"$logs/unit-tests.status"
else
  run 60 "$logs/unit-tests.log" "$bundle/core-lib-tests" --list dist::nccl
  echo "exit $?" >"$logs/unit-tests.status"
fi

# ---- (c) two workers sharing the device over the TCP ring, against one --------------------------------
# The settings of tests/distributed.rs under which a distributed run computes the one-process mathematics
# (per-sample norm, no dropout, an Adam eps that damps summation-order noise in near-zero gradients).
if ((quick)); then dist_steps=6 dist_batch=12 dist_genes=80; else dist_steps=40 dist_batch=32 dist_genes=240; fi
cores=$(nproc)
dist_common=(train --config configs/tiny.toml --set "train.device=$device" --set model.norm=layer
  --set model.dropout=0.0 --set train.lr=0.001 --set train.eps=1e-6 --set train.log_every=1
  --set "train.steps=$dist_steps" --set "train.batch_size=$dist_batch" --set "data.synth_genes=$dist_genes")
for workers in 1 2; do
  echo "gpu-check: isoclr train --workers $workers" >&2
  threads=$((cores / workers > 0 ? cores / workers : 1))
  run 90 "$logs/train-workers-$workers.log" "$bundle/isoclr" "${dist_common[@]}" --set "train.threads=$threads" \
    --workers "$workers" --out "$work/workers-$workers"
  echo "exit $?" >"$logs/train-workers-$workers.status"
  cp "$work/workers-$workers/metrics.jsonl" "$logs/metrics-workers-$workers.jsonl" 2>/dev/null
done

# ---- (a) throughput: isoclr vs PyTorch eager, same batch and weights ----------------------------------
if ((quick)); then
  cases=("small 2 512" "small 2 mix:512 2048" "small 2 mix:512 2048 pack" "medium 2 512" "medium 2 mix:512 2048"
    "medium 2 mix:512 2048 pack" "small 4 256 1024 gc")
  bench_steps=2 bench_warmup=1
else
  # Pairs per step chosen so each case takes well under a minute and fits an 80 GB card (small at 2×64
  # sequences of 12,288 nt is the configuration measured in TOOLCHAIN.md; medium holds ~2.5× the
  # activations per sequence). A case that runs out of memory is retried once at half the batch.
  # Case: preset, pairs, length, then optionally the positions per length-aware pass (as
  # train.positions_per_pass: one view's worth of the fixed case, so a pass holds as many activations), then
  # `pack` for packed passes (train.packing, both sides) or `gc` for isoclr with gradient caching (the
  # reference keeps the whole batch's activations: at 2×192 sequences of 12,288 nt it needs about 3× the
  # memory of the 2×64 case), or `kernels` for isoclr's batch norm by ATen's batch-norm kernels.
  cases=("small 64 12288" "small 64 12288 kernels" "small 64 mix:12288 786432" "small 64 mix:12288 786432 pack"
    "medium 32 12288" "medium 32 mix:12288 393216" "medium 32 mix:12288 393216 pack" "small 192 12288 786432 gc")
  bench_steps=20 bench_warmup=3
fi
# CASES replaces the list, e.g. CASES="small 64 12288;medium 32 12288" for the compiled peers alone.
[[ -n "${CASES:-}" ]] && IFS=';' read -r -a cases <<<"$CASES"
rm -f "$logs/bench.jsonl"
for case in "${cases[@]}"; do
  read -r preset pairs len positions flag <<<"$case"
  [[ -n "$positions" && ! "$positions" =~ ^[0-9]+$ ]] && flag=$positions positions=""
  name="bench-$preset-${len/:/}${positions:+-p$positions}${flag:+-$flag}"
  unset ISOCLR_BENCH_POSITIONS ISOCLR_BENCH_GRADIENT_CACHE ISOCLR_BENCH_PACKING ISOCLR_CUDA_BATCH_NORM
  [[ -n "$positions" ]] && export ISOCLR_BENCH_POSITIONS=$positions
  [[ "$flag" == gc ]] && export ISOCLR_BENCH_GRADIENT_CACHE=1
  [[ "$flag" == pack ]] && export ISOCLR_BENCH_PACKING=1
  [[ "$flag" == kernels ]] && export ISOCLR_CUDA_BATCH_NORM=kernels
  # Only the masked reference runs packed passes: users of the plain model pad, and the lines below the
  # table set isoclr's packed seq/s against the plain peers' in the fixed-length case.
  case_peers=${PEERS:-masked}
  [[ "$flag" == pack ]] && case_peers=masked
  for attempt in 1 2; do
    echo "gpu-check: throughput $preset, $pairs pairs, length $len" >&2
    smi_pid=""
    if [[ "$device" == cuda ]]; then
      # Backup memory figure: what nvidia-smi sees per process (context and cache included), in case the
      # allocator statistics are unavailable; empty where the container hides other PIDs from nvidia-smi.
      timeout 120 nvidia-smi --query-compute-apps=process_name,used_memory --format=csv,noheader,nounits \
        -lms 250 >"$logs/$name.smi.csv" 2>/dev/null &
      smi_pid=$!
    fi
    ISOCLR_BENCH_DEVICE=$device ISOCLR_BENCH_PRESET=$preset ISOCLR_BENCH_BATCH=$pairs ISOCLR_BENCH_LEN=$len \
      ISOCLR_BENCH_STEPS=$bench_steps ISOCLR_BENCH_WARMUP=$bench_warmup ISOCLR_BENCH_JSON="$logs/bench.jsonl" \
      ISOCLR_BENCH_PEERS="$case_peers" run "${BENCH_CAP:-100}" "$logs/$name.log" "$bundle/train_throughput"
    status=$?
    [[ -n "$smi_pid" ]] && kill "$smi_pid" 2>/dev/null && wait "$smi_pid" 2>/dev/null
    echo "exit $status" >"$logs/$name.status"
    if ((status != 0 && attempt == 1 && pairs > 1)) && grep -qi "out of memory" "$logs/$name.log"; then
      mv "$logs/$name.log" "$logs/$name.oom-$pairs.log"
      pairs=$((pairs / 2))
      continue
    fi
    break
  done
done

# ---- the table --------------------------------------------------------------------------------------
timeout 60 "$PYTHON" - "$logs" "$device" "$card" "$dist_steps" "$dist_batch" "$((SECONDS - started))" \
  "${cases[@]}" >"$out/gpu-check.md" <<'PY'
import json, os, re, sys

logs, device, card, dist_steps, dist_batch, elapsed = sys.argv[1:7]
cases = sys.argv[7:]
cuda = device == "cuda"
failed = []


def read(name):
    try:
        with open(os.path.join(logs, name)) as f:
            return f.read()
    except OSError:
        return ""


def status(name):
    text = read(name + ".status").split()
    return int(text[-1]) if text else None


def rate(x):
    return f"{x:,.0f}" if x >= 100 else f"{x:.3g}"


def gib(b):
    return "n/a" if b is None else f"{b / 2**30:.2f}"


def smi_max(name):
    """Largest nvidia-smi used_memory (MiB) of the bench binary and of python, from the sampler's CSV."""
    peaks = {}
    for line in read(name + ".smi.csv").splitlines():
        parts = [p.strip() for p in line.rsplit(",", 1)]
        if len(parts) == 2 and parts[1].isdigit():
            side = "isoclr" if "train_throughput" in parts[0] else "python" if "python" in parts[0] else None
            if side:
                peaks[side] = max(peaks.get(side, 0), int(parts[1]))
    return peaks


rows = []
speeds = {}  # isoclr seq/s by (preset, length, flag)
peer_speeds = {}  # (peer, seq/s) of each PyTorch peer by (preset, length), for the fixed-length cases
bench = [json.loads(l) for l in read("bench.jsonl").splitlines() if l.strip()]
for case in cases:
    preset, pairs, length, positions, flag = (case.split() + ["", ""])[:5]
    if positions and not positions.isdigit():
        positions, flag = "", positions
    positions = int(positions) if positions else None
    gc, pack, kernels = flag == "gc", flag == "pack", flag == "kernels"
    name = f"bench-{preset}-{length.replace(':', '')}" + (f"-p{positions}" if positions else "") + (f"-{flag}" if flag else "")
    want = length.replace("mix:", "mix≤")
    found = [b for b in bench if b["preset"] == preset and b["length"] == want
             and b.get("positions_per_pass") == positions and b.get("gradient_cache", False) == gc
             and b.get("packing", False) == pack and b.get("cuda_batch_norm_kernels", False) == (kernels and cuda)]
    setting = (f"{preset}, {length}" + (f", passes ≤ {positions:,} positions" if positions else "")
               + (", isoclr gradient caching" if gc else "") + (", packed" if pack else "")
               + (", isoclr's batch norm by ATen's kernels" if kernels else ""))
    if not found or status(name) != 0:
        failed.append(name)
        rows.append(("throughput", setting, "—", "—", "—", "—", f"**FAILED** (exit {status(name)}, logs/{name}.log)"))
        continue
    b = found[-1]
    speeds[(preset, length, flag)] = b["isoclr_seq_s"]
    if not length.startswith("mix:") and not flag:
        peer_speeds[(preset, length)] = ([(p["peer"], p["seq_s"]) for p in b["peers"]] if b.get("peers")
                                         else [("the reference", b["torch_seq_s"])])
    if pack:
        count = len(b["padded"])
        lines = " + ".join(str(n) for n in b["lines"])
        passes = (f"{count} packed pass{'es' if count != 1 else ''} of ≤ {positions:,} positions, "
                  f"{lines} lines of {b['padded'][0]:,}")
    elif positions:
        count = len(b["padded"])
        passes = f"{count} length-aware pass{'es' if count != 1 else ''} of ≤ {positions:,} positions"
    else:
        passes = "a pass per view, padded to " + " / ".join(f"{p:,}" for p in b["padded"])
    setting = (f"{preset}, 2×{b['pairs']} seqs, {want} ({passes}, {100 * b['pad_fraction']:.0f} % padding)"
               + ("; isoclr with gradient caching, the reference without" if gc else "")
               + ("; isoclr's batch norm by ATen's batch-norm kernels" + ("" if cuda else " (CUDA only: no effect here)")
                  if kernels else ""))
    memory = f"{gib(b['isoclr_peak_bytes'])} / {gib(b['torch_peak_bytes'])} GiB" if cuda else "n/a (CPU)"
    smi = smi_max(name)
    if smi:
        memory += f" (nvidia-smi: {smi.get('isoclr', '?')} / {smi.get('python', '?')} MiB)"
    losses = b["isoclr_loss"] + b["torch_loss"]
    ok = all(x == x and abs(x) != float("inf") for x in losses)
    if not ok:
        failed.append(name)
    first_peer = b.get("peers", [{}])[0].get("peer")
    rows.append((
        "throughput" + (", bf16" if cuda else ", f32") + (f" against {first_peer}" if first_peer else ""),
        setting,
        f"{rate(b['isoclr_seq_s'])} seq/s ({b['isoclr_ms']:.1f} ms)",
        f"{rate(b['torch_seq_s'])} seq/s ({b['torch_ms']:.1f} ms)",
        f"{b['ratio']:.3f}",
        memory,
        "ok" if ok else "**FAILED**: a loss is not finite",
    ))
    # With several peers (PEERS), the first is in the row above; each further one gets a row of its own.
    for peer in b.get("peers", [])[1:]:
        rows.append((
            f"… against {peer['peer']}",
            setting,
            "as above",
            f"{rate(peer['seq_s'])} seq/s ({peer['ms']:.1f} ms)",
            f"{peer['ratio']:.3f}",
            f"{gib(peer['peak_bytes'])} GiB" if cuda else "n/a (CPU)",
            "ok" if all(x == x and abs(x) != float("inf") for x in peer["loss"]) else "**FAILED**: a loss is not finite",
        ))

unit = read("unit-tests.log")
unit_status = status("unit-tests")
if cuda:
    m = re.search(r"test result: (\w+)\. (\d+) passed; (\d+) failed", unit)
    result = f"{m.group(2)} passed, {m.group(3)} failed" if m else f"no result (exit {unit_status})"
    passed = bool(m) and m.group(1) == "ok" and unit_status == 0 and int(m.group(2)) > 0
    if not passed:
        failed.append("unit tests")
    rows.append(("NCCL unit tests, world size 1", "dist::nccl + device:: + the trainer on NCCL (core-lib-tests, isoclr-lib-tests)", result, "—", "—", "—",
                 "pass" if passed else "**FAILED** (logs/unit-tests.log)"))
else:
    listed = len(re.findall(r"^dist::nccl::\S+: test$", unit, re.M))
    passed = unit_status == 0 and listed > 0
    if not passed:
        failed.append("unit tests")
    rows.append(("NCCL unit tests", "dist::nccl", f"test binary starts, {listed} tests listed", "—", "—", "—",
                 "skipped on CPU (needs a GPU)" if passed else "**FAILED**: the test binary does not start"))


def metrics(workers):
    return [json.loads(l) for l in read(f"metrics-workers-{workers}.jsonl").splitlines() if l.strip()]


def seq_per_s(rows):
    # Steady state: from the 4th logged step on (the first steps carry CUDA and cuDNN start-up).
    a, b = (rows[3], rows[-1]) if len(rows) > 4 else (rows[0], rows[-1])
    span = b["elapsed_s"] - a["elapsed_s"]
    return (b["step"] - a["step"]) * 2 * int(dist_batch) / span if span > 0 else float("nan")


one, two = metrics(1), metrics(2)
setting = f"tiny, layer norm, no dropout, {dist_batch} pairs × {dist_steps} steps, train.device={device}"
# Tolerances. f32 on CPU: every step within 1e-5, as tests/distributed.rs. bf16 autocast on the GPU: the
# two runs round differently (each worker plans and pads its own shard, so the passes differ), and
# training amplifies rounding differences until the trajectories part (on an H100 the first 6 steps
# agreed within 2.3e-4 in each of three runs, later steps differed by up to 6.1e-2). So the equivalence is
# checked where it is defined, the first `early` steps, within 1e-3; every later step only within 0.1, a
# bound that catches a rank training on the wrong data or weights, not rounding.
early = 6
tol_early, tol_all = (1e-5, 1e-5) if not cuda else (1e-3, 1e-1)
if status("train-workers-1") == 0 and status("train-workers-2") == 0 and len(one) == len(two) == int(dist_steps):
    rel = [abs(a["loss"] - b["loss"]) / abs(b["loss"]) for a, b in zip(two, one)]
    with open(os.path.join(logs, "workers-loss-diff.txt"), "w") as f:
        f.write("step loss_1_worker loss_2_workers rel_diff\n")
        f.writelines(f"{a['step']} {b['loss']:.8g} {a['loss']:.8g} {r:.3e}\n" for a, b, r in zip(two, one, rel))
    passed = max(rel[:early]) <= tol_early and max(rel) <= tol_all
    if not passed:
        failed.append("workers")
    s1, s2 = seq_per_s(one), seq_per_s(two)
    rows.append((
        "2 workers sharing the " + ("GPU" if cuda else "CPU") + " (TCP ring) vs 1",
        setting,
        f"2 workers: {rate(s2)} seq/s",
        f"1 worker: {rate(s1)} seq/s",
        f"{s2 / s1:.2f}",
        "—",
        f"{'pass' if passed else '**FAILED**'}: rel. Δloss steps 0–{early - 1} max {max(rel[:early]):.1e} "
        f"(tolerance {tol_early:.0e}); all steps max {max(rel):.1e}, median {sorted(rel)[len(rel) // 2]:.1e} "
        f"(tolerance {tol_all:.0e})",
    ))
else:
    failed.append("workers")
    rows.append(("2 workers vs 1", setting, "—", "—", "—", "—",
                 f"**FAILED** (exit {status('train-workers-1')} / {status('train-workers-2')}, "
                 f"{len(one)} / {len(two)} metrics lines; logs/train-workers-*.log)"))

print(f"### isoclr GPU check: {card}")
print()
print(f"| check ({card.split(' (')[0]}) | setting | isoclr | reference | ratio | peak memory isoclr / PyTorch | result |")
print("|---|---|---|---|---|---|---|")
for r in rows:
    print("| " + " | ".join(r) + " |")
print()
# Issue 7's length-aware goal: isoclr's seq/s on the realistic mix against every sequence padded to the
# mix's maximum, both from the rows above (≥ 2.5× wanted).
for (preset, length, flag), speed in sorted(speeds.items()):
    fixed = speeds.get((preset, length.replace("mix:", ""), ""))
    if length.startswith("mix:") and fixed and flag in ("", "pack"):
        how = "packed passes" if flag == "pack" else "one sequence per line"
        print(f"- {preset}, mix ≤ {length[4:]}, {how}: {speed / fixed:.2f}× the seq/s of fixed {length[4:]} padding "
              f"(isoclr; goal 2.5×)")
        # Users' PyTorch loops pad every sequence to the maximum: a peer's seq/s in the fixed-length case
        # (same pairs per step) is its seq/s on the mix.
        for peer, peer_speed in peer_speeds.get((preset, length[4:]), []):
            print(f"  - against {peer} with every sequence padded to {length[4:]}: {speed / peer_speed:.2f}× "
                  f"(goal 3× eager, 2× compiled)")
print()
print(f"reference: PyTorch eager (benches/reference.py) for throughput; `--workers 1` for the 2-worker row. "
      f"ratio: isoclr ÷ reference seq/s (> 1: isoclr faster). Peak memory: libtorch caching allocator's peak "
      f"bytes allocated during a step (torch.cuda.max_memory_allocated), largest over the timed steps. "
      f"{elapsed} s in all; {'all checks passed' if not failed else 'FAILED: ' + ', '.join(failed)}.")
sys.exit(1 if failed else 0)
PY
table_status=$?

# ---- (d) embedding throughput next to the training forward pass ----------------------------------------
if [[ -x "$bundle/embed_throughput" ]]; then
  echo "gpu-check: embedding throughput" >&2
  if ((quick)); then embed_genes=60; else embed_genes=600; fi
  ISOCLR_BENCH_DEVICE=$device ISOCLR_BENCH_GENES=$embed_genes ISOCLR_BENCH_SCALE=1.0 \
    run 120 "$logs/embed.log" "$bundle/embed_throughput"
  embed_status=$?
  {
    echo
    echo "Embedding throughput ($device, benches/embed_throughput.rs, exit $embed_status):"
    echo
    grep -E '^(\||[0-9]+ transcripts|embed \(mean\))' "$logs/embed.log"
  } >>"$out/gpu-check.md"
  ((embed_status == 0)) || table_status=1
fi
# ---- (f) one masked batch norm: the composite, ATen's batch-norm kernels, cuDNN's batch_norm ------------
echo "gpu-check: one masked batch norm" >&2
if ((quick)); then norm_steps=3; else norm_steps=50; fi
ISOCLR_BENCH_DEVICE=$device ISOCLR_BENCH_STEPS=$norm_steps run 90 "$logs/masked-norm.log" "$bundle/masked_norm"
norm_status=$?
{
  echo
  echo "One masked batch norm ($device, benches/masked_norm.rs, exit $norm_status):"
  echo
  grep -E '^\||^forward' "$logs/masked-norm.log"
} >>"$out/gpu-check.md"
((norm_status == 0)) || table_status=1
# ---- (e) with SEARCH=1: the largest batch that trains, with and without gradient caching -----------------
if [[ "${SEARCH:-0}" == 1 && -x "$bundle/memory_search" ]]; then
  echo "gpu-check: memory search" >&2
  if ((quick)); then
    search=(ISOCLR_SEARCH_PRESETS=tiny ISOCLR_SEARCH_LEN=512 ISOCLR_SEARCH_START=2 ISOCLR_SEARCH_MAX=8 ISOCLR_SEARCH_STEPS=1)
  else
    search=()
  fi
  (
    export ISOCLR_BENCH_DEVICE=$device
    ((${#search[@]} == 0)) || export "${search[@]}"
    run "${SEARCH_CAP:-300}" "$logs/memory-search.log" "$bundle/memory_search"
  )
  search_status=$?
  {
    echo
    echo "Largest batch ($device, benches/memory_search.rs, exit $search_status):"
    echo
    grep -E '^\||^(Cpu|Cuda)' "$logs/memory-search.log"
  } >>"$out/gpu-check.md"
  ((search_status == 0)) || table_status=1
fi
cat "$out/gpu-check.md"
echo "gpu-check: table and logs in $out ($((SECONDS - started)) s)" >&2
exit "$table_status"
