#!/usr/bin/env bash
# The GPU check: the GPU-marked tests with REFIMPL_REQUIRE_GPU=1 (a missing
# CUDA device fails them instead of skipping), then `refimpl bench gpu`
# (TinyNet step with each convolution algorithm, the training step eager and
# replayed from a CUDA graph, and the four losses, CuPy vs torch CUDA). About
# 6-7 minutes on one H100/H200.
#
#   bash scripts/gpu_check.sh [RESULTS_DIR]     (default: gpu-check/)
#
# Run from the repository root, with refimpl importable (pip install -e
# ".[test,gpu,torch]", or PYTHONPATH=. where CuPy, torch, pytest, hypothesis and
# array-api-strict are installed already). Wheels found in .whl/ are
# installed into a temporary folder first, for machines without a package
# index. Writes pytest.log, bench_gpu.log and bench_gpu.json into RESULTS_DIR.
set -uo pipefail
cd "$(dirname "$0")/.."
results=${1:-gpu-check}
mkdir -p "$results"
if compgen -G ".whl/*.whl" > /dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/refimpl-site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/refimpl-site:${PYTHONPATH:-}
fi
export PYTHONPATH=$PWD:${PYTHONPATH:-} PYTHONUNBUFFERED=1 REFIMPL_REQUIRE_GPU=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
python3 -m refimpl info
per_test=()
python3 -c "import pytest_timeout" 2>/dev/null && per_test=(--timeout=120)

start=$SECONDS
timeout 300 python3 -m pytest tests -m gpu -q -p no:cacheprovider --tb=short -rfE "${per_test[@]}" \
    2>&1 | tee "$results/pytest.log"
tests_rc=${PIPESTATUS[0]}
echo "GPU tests: exit $tests_rc in $((SECONDS - start)) s"

start=$SECONDS
timeout 360 python3 -m refimpl bench gpu --json "$results/bench_gpu.json" 2>&1 | tee "$results/bench_gpu.log"
bench_rc=${PIPESTATUS[0]}
echo "GPU benchmark: exit $bench_rc in $((SECONDS - start)) s"
exit $(( tests_rc != 0 || bench_rc != 0 ))
