#!/usr/bin/env bash
# The GPU checks of issue "The GPU path, verified", as one command for the GPU machine.
#
# A session is lent a GPU rarely, for 15 minutes of device time in all (starts included), on a machine with
# no network whose python3 already holds torch, torchdiffeq, scipy, pandas, xarray, matplotlib, pytest and
# scikit-learn/-image, but not torchcfm or POT (the training benchmark's baseline). So:
#
#   here, once (needs the package registry):  bash scripts/gpu_check.sh --wheels   # -> .gpu/wheels/ (ignored)
#   then with the device tool:   run  command="bash scripts/gpu_check.sh"  carry=[".gpu"]  timeout_s=600
#
# Steps, most important first, each under its own time limit so that a slow one cannot starve the rest and
# the whole stays under the device tool's 600 s per command; everything lands in $OUT as five files (the
# tool brings back at most 8): log.txt (the device, then every step's output), summary.txt (one line a
# step) and one benchmark record file per group, bench_<group>.json (run.py writes a group's records only
# when the group completes, so each group is a step of its own).
#   1. tests   the CUDA tests: tests/test_devices.py (bf16 + channels_last training resumed from a checkpoint
#              written on the GPU, samplers and likelihood in float32 on the GPU against float64 on the CPU,
#              the paper U-Net under inductor with and without fullgraph) and the bases on CUDA
#   2. bench   benchmarks/run.py groups cuda (paper U-Net training images/s: fp32, bf16, compile,
#              bf16 + compile), throughput (gdmkit's step next to torchcfm's, k = 1 and k = 4 DCT), sampling
#   3. (alone, as a second command)  bash scripts/gpu_check.sh --notebook notebooks/NN_x.py [PROFILE]
#              one notebook at the gpu profile (default) through scripts/run_notebook.py, its output folder as
#              $OUT/<stem>.<profile>.tgz; the Jupyter stack it needs (papermill, ipykernel, ...) comes from
#              .gpu/wheels too. A gpu-profile notebook takes about ten minutes: one per lent session.
set -uo pipefail
cd "$(dirname "$0")/.."

# what the GPU machine's image lacks (read off its package list, 2026-11): the training benchmark's baseline,
# and the Jupyter stack that scripts/run_notebook.py executes notebooks with
BASELINE="pot==0.9.5 torchcfm==1.0.7"
JUPYTER="papermill jupytext nbval nbclient nbformat ipykernel ipython ipython-pygments-lexers jupyter-client
  jupyter-core pyzmq tornado traitlets comm debugpy entrypoints fastjsonschema jsonschema
  jsonschema-specifications referencing rpds-py jedi parso pexpect ptyprocess prompt-toolkit wcwidth pure-eval
  stack-data executing asttokens matplotlib-inline mdit-py-plugins nest-asyncio2 platformdirs tenacity tzdata"
if [ "${1:-}" = "--wheels" ]; then  # the device's python3 is CPython 3.12 on x86-64 Linux
  mkdir -p .gpu/wheels
  # shellcheck disable=SC2086
  exec python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --abi cp312 --abi abi3 --abi none --platform manylinux2014_x86_64 --platform manylinux_2_28_x86_64 \
    --platform any $BASELINE $JUPYTER -d .gpu/wheels
fi

OUT=${OUT:-/tmp/gpu_check}
mkdir -p "$OUT"
export PYTHONPATH="$PWD/src" PYTHONDONTWRITEBYTECODE=1
if ! python3 -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "gpu_check: no CUDA device is visible here; run it on the GPU machine (the device tool), with .gpu carried" >&2
  exit 3
fi
{ nvidia-smi; python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"; } \
  > "$OUT/log.txt" 2>&1
if ls .gpu/wheels/*.whl > /dev/null 2>&1; then
  python3 -m pip install -q --no-deps --no-index .gpu/wheels/*.whl >> "$OUT/log.txt" 2>&1
else
  echo "gpu_check: no .gpu/wheels (run 'bash scripts/gpu_check.sh --wheels' here and carry .gpu):" \
       "the torchcfm baseline will be missing" | tee -a "$OUT/log.txt"
fi

step() {  # step NAME SECONDS CMD...: run CMD under a time limit, output into log.txt, one line in summary.txt
  local name=$1 limit=$2 t0=$SECONDS rc
  shift 2
  echo "===== $name: $*" >> "$OUT/log.txt"
  timeout "$limit" "$@" > "$OUT/step.log" 2>&1
  rc=$?
  cat "$OUT/step.log" >> "$OUT/log.txt"
  tail -n 12 "$OUT/step.log"
  rm -f "$OUT/step.log"
  echo "$name: exit $rc after $((SECONDS - t0)) s (limit $limit s)" | tee -a "$OUT/summary.txt"
}

if [ "${1:-}" = "--notebook" ]; then
  nb=${2:?usage: gpu_check.sh --notebook notebooks/NN_x.py [profile]}
  profile=${3:-gpu}
  stem=$(basename "$nb" .py)
  step "notebook_$stem" 590 python3 scripts/run_notebook.py "$nb" --profile "$profile" --out "/tmp/gpu_nb/$stem"
  tar czf "$OUT/$stem.$profile.tgz" -C /tmp/gpu_nb "$stem" 2>> "$OUT/log.txt"
  cat "$OUT/summary.txt"
  exit 0
fi
step tests 240 python3 -m pytest -q -p no:cacheprovider -rs tests/test_devices.py "tests/test_bases.py::test_cuda_matches_cpu"
step bench_cuda 200 python3 benchmarks/run.py --only cuda --out "$OUT/bench_cuda.json"
step bench_throughput 100 python3 benchmarks/run.py --only throughput --out "$OUT/bench_throughput.json"
step bench_sampling 40 python3 benchmarks/run.py --only sampling --out "$OUT/bench_sampling.json"
cat "$OUT/summary.txt"
