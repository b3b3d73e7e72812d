#!/usr/bin/env bash
# Installs what isoclr needs and builds it. Safe to re-run: with everything in place it takes seconds.
#
#   scripts/setup.sh          full torch 2.11.0 wheel set (CUDA on GPU machines; Python reference works) and
#                             pyarrow (the Parquet cross-checks)
#   scripts/setup.sh --cpu    light variant: libtorch only, about half the download; CPU-only binaries
#
# libtorch comes from the Python registry into a project-local venv (.venv); binaries get an rpath to it,
# so they run with no environment variables. Prints nothing but progress and errors.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv="$repo/.venv"
torch_version=2.11.0
pyarrow_version=26.0.1
variant=full
[[ "${1:-}" == "--cpu" || "${ISOCLR_TORCH:-}" == "cpu" ]] && variant=cpu

python=${ISOCLR_SETUP_PYTHON:-}
if [[ -z "$python" ]]; then
  for candidate in python3.11 python3; do
    if command -v "$candidate" >/dev/null; then python=$candidate; break; fi
  done
fi
[[ -n "$python" ]] || { echo "setup: no python3 found (Python 3.11 is expected)" >&2; exit 1; }

# A full install satisfies a CPU request too; a CPU-only install is upgraded when the full set is asked for.
if [[ ! -f "$venv/.torch-full-$torch_version" && ! ( "$variant" == cpu && -f "$venv/.torch-cpu-$torch_version" ) ]]; then
  echo "setup: installing torch $torch_version ($variant) into $venv" >&2
  [[ -x "$venv/bin/python" ]] || "$python" -m venv "$venv"
  pip=("$venv/bin/python" -m pip install --quiet --disable-pip-version-check)
  if [[ "$variant" == full ]]; then
    "${pip[@]}" "torch==$torch_version"
  else
    # libtorch links libcudart and libcupti even in CPU code paths: these two wheels are all it needs.
    "${pip[@]}" --no-deps "torch==$torch_version"
    "${pip[@]}" "cuda-toolkit[cudart,cupti]==13.0.2"
  fi
  touch "$venv/.torch-$variant-$torch_version"
fi
# pyarrow: the Parquet cross-checks (tests/probe.rs) write tables with it and read isoclr's output back.
if [[ "$variant" == full && ! -f "$venv/.pyarrow-$pyarrow_version" ]]; then
  echo "setup: installing pyarrow $pyarrow_version into $venv" >&2
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "pyarrow==$pyarrow_version"
  touch "$venv/.pyarrow-$pyarrow_version"
fi

torch_dir=$("$venv/bin/python" - <<'PY'
import importlib.util, os
spec = importlib.util.find_spec("torch")
print(os.path.dirname(spec.origin))
PY
)
ln -sfn "$torch_dir" "$venv/libtorch"

cd "$repo"
cargo build --release --workspace --bins --quiet
echo "setup: ready (binaries in $repo/target/release)" >&2
