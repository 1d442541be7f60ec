#!/usr/bin/env bash
# The real-GPU check (issue 29): on a machine with a GPU, the kernel and layer tests on it, the
# bundled examples, and the benches side by side with PyTorch, in one run, one table at the end.
#
#   bash bench/gpu.sh [DEVICE]      # DEVICE as `layerloom --device` takes it; default: the
#                                   # first GPU `layerloom --list-devices` shows
#   GPU_SH_DRY=1 bash bench/gpu.sh cpu   # a dry run on the CPU device (a short subset)
#
# Needs the repository's venv (.venv, with torch for the PyTorch columns). Everything it
# writes goes to bench/results/gpu/ (the logs and JSON); nothing else is touched.
set -u
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
OUT=bench/results/gpu
mkdir -p "$OUT"
DEVICE=${1:-}
if [ -z "$DEVICE" ]; then
  DEVICE=$($PY -m layerloom.cli --list-devices 2>/dev/null \
           | sed -nE 's/^[* ]+([0-9]+:[0-9]+) .*\(gpu, .*/\1/p' | head -1)
fi
if [ -z "$DEVICE" ]; then
  echo "bench/gpu.sh: no GPU device found (layerloom --list-devices); give one, or 'cpu' for a dry run"
  exit 2
fi
DRY=${GPU_SH_DRY:-}
declare -a ROWS

step() {  # step NAME COMMAND...: runs it, its output in $OUT/NAME.log, a row for the table
  local name=$1; shift
  local t0=$(date +%s)
  "$@" > "$OUT/$name.log" 2>&1
  local rc=$?
  local secs=$(( $(date +%s) - t0 ))
  local last=$(grep -E "passed|failed|error|Test:|ratio|cases" "$OUT/$name.log" | tail -1 | cut -c1-90)
  ROWS+=("$(printf '%-14s %-5s %5ss  %s' "$name" "$([ $rc = 0 ] && echo ok || echo FAIL)" "$secs" "$last")")
}

export LAYERLOOM_DEVICE="$DEVICE"
if [ -n "$DRY" ]; then
  step kernels timeout 900 $PY -m pytest -q tests/test_kernels.py -k "gemm_local or softmax"
  step layers timeout 900 $PY -m pytest -q tests/test_layers.py -k "Dense or Conv2D or MultiHeadAttention"
  step example timeout 900 $PY -m layerloom.cli --run assets/examples/spirals.loom --device "$DEVICE" --epochs 3 --out "$OUT/spirals"
  step models timeout 900 $PY -m bench.models --only resnet --steps 2 --device "$DEVICE" --json "$OUT/models.json"
else
  step kernels timeout 1800 $PY -m pytest -q tests/test_kernels.py tests/test_losses_optimizers.py
  step layers timeout 1800 $PY -m pytest -q tests/test_layers.py tests/test_model.py
  for ex in spirals sine multitask wine_csv shapes_folder; do
    step "$ex" timeout 900 $PY -m layerloom.cli --run "assets/examples/$ex.loom" --device "$DEVICE" --out "$OUT/$ex"
  done
  step train timeout 1800 $PY bench/train.py --device "$DEVICE" --json "$OUT/train.json"
  step models timeout 1800 $PY -m bench.models --device "$DEVICE" --json "$OUT/models.json"
  step sweep timeout 1800 $PY -m bench.layer_sweep --device "$DEVICE" --json "$OUT/layer_sweep.json"
fi
echo "device: $DEVICE"
printf '%s\n' "${ROWS[@]}"
echo "logs and JSON: $OUT/"
