#!/usr/bin/env bash
# The GPU measured, in one go (under 5 minutes on one H200): the CUDA-marked tests, then
# the engine benchmarks on CUDA (MLP N = 1k..100k, LeNet and ResNet-20 N = 256..4k, fp32
# and bf16: node-steps/s, % of the device's matmul, the naive loop at small N) and whole
# D-PSGD rounds against training alone (MLP N = 1k..100k), then a CLI run on the GPU.
#
# Usage: benchmarks/gpu_check.sh [OUT_DIR]      (default: runs/gpu_check)
# Python: $PYTHON if set, else .venv/bin/python if present, else python3; gossamer must be
# importable by it (make install, or PYTHONPATH=src). Each part runs on its own: one that
# fails or runs past its time limit does not stop the others; the exit status is the
# number of parts that failed. Logs and JSON land in OUT_DIR.
set -u
cd "$(dirname "$0")/.."
out=${1:-runs/gpu_check}
mkdir -p "$out"
if [ -n "${PYTHON:-}" ]; then py=$PYTHON
elif [ -x .venv/bin/python ]; then py=.venv/bin/python
else py=python3; fi
export PYTHONUNBUFFERED=1
failed=0

part() {  # part NAME SECONDS COMMAND...: run one part with a time limit, log to OUT_DIR
    local name=$1 seconds=$2
    shift 2
    echo "== $name (limit ${seconds} s): $*"
    local start=$SECONDS
    timeout "$seconds" "$@" > "$out/$name.log" 2>&1
    local status=$?
    tail -n 60 "$out/$name.log"
    echo "== $name: exit $status after $((SECONDS - start)) s"
    [ "$status" -eq 0 ] || failed=$((failed + 1))
}

{
    nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
    "$py" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda,
        "cudnn", torch.backends.cudnn.version(), torch.cuda.get_device_name(0))'
} > "$out/environment.log" 2>&1
cat "$out/environment.log"

part tests 60 "$py" -m pytest -q -m cuda -p no:cacheprovider tests/test_cuda.py
part engine 180 "$py" benchmarks/engine.py --gpu --seconds 0.5 --json "$out/engine.json"
part round 80 "$py" benchmarks/round.py --device cuda --nodes 1000 10000 100000 --rounds 3 \
    --json "$out/round.json"
part cli 30 "$py" -m gossamer run --set device=cuda --out "$out/demo" --force --progress off
exit "$failed"
