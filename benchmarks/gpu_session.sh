#!/usr/bin/env bash
# One-call GPU session: correctness on the GPU, then timed benchmarks; logs in $OUT.
# Usage on the device machine, from the repository root (fla-core etc. on PYTHONPATH):
#   OUT=/some/dir bash benchmarks/gpu_session.sh [phase-A seconds] [phase-B budget seconds]
# Phase A (parallel, correctness only): the GPU tests with one autotune config per kernel
# (MIXZOO_SINGLE_CONFIG=1: compiling every candidate per new shape costs minutes) and no fla
# comparisons (MIXZOO_GPU_FLA=0: fla autotunes for minutes per shape; the benchmarks'
# --check rows compare errors with fla instead), every delta-rule autotune candidate checked
# on its own (benchmarks/check_delta_configs.py), and the Triton cache warmed for phase B.
# Phase B (sequential, nothing else on the GPU): the timed benchmarks, each with its own
# limit so one slow step cannot starve the rest. Files under $OUT: gpu.txt, tests.txt,
# diag.txt, bench.txt (at most 8 files come back from the device tool).
set -u
A=${1:-170}
B=${2:-380}
OUT=${OUT:?set OUT to a writable folder}
export TRITON_INTERPRET=0 PYTHONUNBUFFERED=1
T0=$(date +%s)
el() { echo $(( $(date +%s) - T0 )); }
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader > "$OUT/gpu.txt"

# -- phase A ------------------------------------------------------------------------------
timeout "$A" python benchmarks/check_delta_configs.py 2,2048,8,128 > "$OUT/diag.txt" 2>&1 &
for op in delta_rule gla retention conv1d; do
  timeout "$A" python benchmarks/warm_compile.py --op "$op" > "$OUT/warm_$op.log" 2>&1 &
done
MIXZOO_GPU_FLA=0 MIXZOO_SINGLE_CONFIG=1 timeout "$A" python -m pytest -m gpu -q -rf -s \
  -p no:cacheprovider tests/kernels/test_delta_rule_gpu.py tests/models/test_train_gpu.py \
  tests/kernels/test_gla_gpu.py tests/kernels/test_retention_gpu.py \
  tests/kernels/test_conv1d_gpu.py tests/kernels/test_rmsnorm_gpu.py \
  tests/kernels/test_attention_gpu.py tests/models/test_vision.py > "$OUT/tests.txt" 2>&1
echo "gpu tests exit $? at $(el) s" >> "$OUT/tests.txt"
wait
cat "$OUT"/warm_*.log >> "$OUT/tests.txt"; rm -f "$OUT"/warm_*.log

# -- phase B ------------------------------------------------------------------------------
bench() {  # bench SECONDS OP [args...]
  local t=$1; shift
  timeout "$t" python benchmarks/bench_kernels.py --check "$@" >> "$OUT/bench.txt" 2>&1
  echo "bench $* exit $? at $(el) s" >> "$OUT/bench.txt"
}
bench 150 --op delta_rule --isolate --time-budget 140
bench 60 --op gla --shapes 4,4096,16,128
bench 60 --op retention --shapes 4,4096,16,128
bench 30 --op conv1d
left=$(( A + B - $(el) ))
if [ "$left" -gt 40 ]; then   # training images/s, timm SDPA ViT vs mixzoo DeltaNet ViT
  timeout $(( left - 5 )) python benchmarks/bench_vision.py --sizes 224 1024 512 \
    --out "$OUT/vision.md" --warmup 2 --iters 5 >> "$OUT/bench.txt" 2>&1
  echo "vision exit $? at $(el) s" >> "$OUT/bench.txt"
  cat "$OUT/vision.md" >> "$OUT/bench.txt" 2>/dev/null; rm -f "$OUT/vision.md"
fi
grep -h -E "^\| |exit|^config|w_kernel" "$OUT"/bench.txt "$OUT"/diag.txt
grep -E "passed|failed|exit" "$OUT/tests.txt" | tail -5
