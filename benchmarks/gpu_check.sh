#!/usr/bin/env bash
# The GPU check: one script to run on a machine with a CUDA device.
#
#   1. the gpu-marked tests (CUDA against CPU), then
#   2. benchmarks/grad_cost.py on cuda (10^6 points, K = $N_FLOWS),
#   3. benchmarks/df_quality.py and
#   4. benchmarks/potential_quality.py on cuda at the paper's sizes (2^17
#      stars, 2^15 points for Φ), with K = $N_FLOWS flows trained for at most
#      $DF_SECONDS seconds each (or 24 epochs, whichever comes first).
#
# Each benchmark prints one JSON object; copies land in $OUT. Planned to take
# about 8 minutes on one H100-class GPU (not yet measured); lower N_FLOWS or
# DF_SECONDS to fit a shorter slot. Usage, from anywhere:
#
#   benchmarks/gpu_check.sh
#   PYTHON=python3 N_FLOWS=32 DF_SECONDS=60 benchmarks/gpu_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-.venv/bin/python}
OUT=${OUT:-bench_output/gpu}
N_FLOWS=${N_FLOWS:-64}
DF_SECONDS=${DF_SECONDS:-120}
mkdir -p "$OUT"

"$PYTHON" - <<'PY'
import torch
if not torch.cuda.is_available():
    raise SystemExit("gpu_check.sh: torch sees no CUDA device (torch " + torch.__version__ + ")")
print("device:", torch.cuda.get_device_name(0), "torch", torch.__version__, flush=True)
PY

echo "== gpu tests" >&2
"$PYTHON" -m pytest -m gpu -q -p no:cacheprovider tests/test_gpu.py tests/test_df.py \
    | tee "$OUT/gpu_tests.txt"

echo "== grad_log_prob cost at 10^6 points" >&2
"$PYTHON" benchmarks/grad_cost.py --device cuda --n-flows "$N_FLOWS" --repeats 2 \
    | tee "$OUT/grad_cost.json"

echo "== DF quality, 2^17 stars" >&2
"$PYTHON" benchmarks/df_quality.py --device cuda --n-stars 131072 \
    --n-flows "$N_FLOWS" --epochs 24 --time-limit "$DF_SECONDS" \
    | tee "$OUT/df_quality.json"

echo "== potential quality, 2^17 stars, 2^15 Φ points" >&2
"$PYTHON" benchmarks/potential_quality.py --device cuda --n-stars 131072 \
    --n-phi 32768 --n-flows "$N_FLOWS" --df-epochs 24 --df-seconds "$DF_SECONDS" \
    | tee "$OUT/potential_quality.json"
