#!/usr/bin/env bash
# One-call GPU session: correctness on the GPU, then timed kernel benchmarks, logs in $OUT.
# Usage on the device machine, from the repository root (fla-core etc. on PYTHONPATH):
#   OUT=/some/dir bash benchmarks/gpu_session.sh [phase-A seconds] [phase-B seconds]
# Phase A (parallel): fill the Triton cache (fla's first call of an op autotunes for
# minutes) while the `gpu`-marked tests run. Phase B (sequential, nothing else on the GPU):
# the timed benchmarks. Each step has its own time limit so one slow step cannot starve
# the others.
set -u
A=${1:-150}
OUT=${OUT:?set OUT to a writable folder}
export TRITON_INTERPRET=0 PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv,noheader | tee "$OUT/gpu.txt"

# -- phase A: warm caches in the background, GPU tests in the foreground --------------
for op in gla retention delta_rule conv1d; do
  timeout "$A" python benchmarks/warm_compile.py --op "$op" > "$OUT/warm_$op.txt" 2>&1 &
done
timeout "$A" python -m pytest -m gpu -q -s -rf -p no:cacheprovider \
  tests/models/test_train_gpu.py tests/kernels/test_delta_rule_gpu.py tests/kernels/test_gla_gpu.py \
  tests/kernels/test_retention_gpu.py tests/kernels/test_conv1d_gpu.py \
  tests/kernels/test_attention_gpu.py tests/models/test_vision.py > "$OUT/gpu_tests.txt" 2>&1
echo "gpu tests exit $?" >> "$OUT/gpu_tests.txt"
wait
tail -3 "$OUT"/warm_*.txt

# -- phase B: timed benchmarks, one op at a time ---------------------------------------
bench() {  # bench SECONDS OP [args...]
  local t=$1 op=$2; shift 2
  timeout "$t" python benchmarks/bench_kernels.py --op "$op" --check "$@" \
    > "$OUT/bench_$op.txt" 2>&1
  echo "bench $op exit $?" >> "$OUT/bench_$op.txt"
}
bench 130 delta_rule --isolate --time-budget 120
bench 60 gla --shapes 4,4096,16,128
bench 60 retention --shapes 4,4096,16,128
bench 40 conv1d
# the vision benchmark (training images/s, timm SDPA ViT vs mixzoo DeltaNet ViT)
timeout 70 python benchmarks/bench_vision.py --out "$OUT/vision.md" --json "$OUT/vision.json" \
  --warmup 2 --iters 6 \
  > "$OUT/vision_log.txt" 2>&1; echo "bench vision exit $?" >> "$OUT/vision_log.txt"
cat "$OUT/vision.md" 2>/dev/null
grep -h -E "^\| |exit" "$OUT"/bench_*.txt
grep -E "passed|failed|exit" "$OUT/gpu_tests.txt" | tail -5
