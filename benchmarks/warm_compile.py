"""Compile (and autotune) every implementation of a benchmark op once, without timing.

    python benchmarks/warm_compile.py --op gla [--all-shapes] [--dtype bf16]

Run it on a fresh GPU machine, in parallel with other CPU-heavy work, so the Triton cache
(TRITON_CACHE_DIR) holds every kernel before the timed runs of bench_kernels.py; fla's
first call of an op otherwise spends minutes compiling its autotune configs inside a
timed script. Timings printed here are wall-clock compile+run times, NOT benchmarks.
"""
from __future__ import annotations

import argparse
import time

import torch

from bench_kernels import DTYPES, load_op, shape_str


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[1].strip())
    p.add_argument("--op", required=True)
    p.add_argument("--dtype", default="bf16", choices=sorted(DTYPES))
    p.add_argument("--all-shapes", action="store_true", help="warm every default shape")
    args = p.parse_args()
    op = load_op(args.op)
    shapes = op.DEFAULT_SHAPES if args.all_shapes else op.DEFAULT_SHAPES[:1]
    for shape in shapes:
        for name, fn in op.implementations(shape).items():
            t0 = time.time()
            try:
                inputs = op.make_inputs(shape, DTYPES[args.dtype], "cuda")
                out = fn(inputs)
                out.backward(torch.randn_like(out))
                torch.cuda.synchronize()
                status = "ok"
            except Exception as e:  # report and go on: warming is best-effort
                status = f"FAILED {type(e).__name__}: {str(e)[:200]}"
            print(f"warm {args.op} {shape_str(shape)} {name}: {time.time() - t0:.1f}s {status}",
                  flush=True)


if __name__ == "__main__":
    main()
