"""Host-side cost of an op's fwd+bwd: is its timing bound by Python/launch work or by the GPU?

    python benchmarks/host_profile.py --op conv1d [--shape B,T,H,D] [--impls NAME ...]
                                      [--iters 30] [--top 20] [--device cuda]

For each implementation of benchmarks/ops/<OP>.py (all of them, or --impls), after three
synchronised warm-up calls:
    step ms   wall time per fwd+bwd, measured over --iters calls with one sync at the end
    host ms   time per fwd+bwd until the call returns to Python, without any sync (the
              GPU queue absorbs the launches), i.e. the Python + dispatch + launch cost
When host ms is close to step ms, the timing is host-bound: the GPU waits for launches.
Then a cProfile of --iters more calls lists the --top functions by own time.
`--device cpu` (with TRITON_INTERPRET=1) only checks that the script runs.
"""
from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
import time

import torch

from bench_kernels import DTYPES, fwdbwd_step, load_op, parse_shape, select_impls, shape_str


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def measure(fn, inputs: dict, do: torch.Tensor, iters: int, device: str) -> tuple[float, float]:
    """-> (step ms, host ms) per fwd+bwd call."""
    once = fwdbwd_step(fn, inputs, do)
    for _ in range(3):
        once()
    _sync(device)
    host = []
    t0 = time.perf_counter()
    for _ in range(iters):
        t = time.perf_counter()
        once()
        host.append(time.perf_counter() - t)
    _sync(device)
    step = (time.perf_counter() - t0) / iters
    host.sort()
    return step * 1e3, host[len(host) // 2] * 1e3


def profile(fn, inputs: dict, do: torch.Tensor, iters: int, top: int, device: str) -> str:
    once = fwdbwd_step(fn, inputs, do)
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(iters):
        once()
    _sync(device)
    prof.disable()
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(top)
    # keep the table, drop pstats' preamble of file names
    lines = out.getvalue().splitlines()
    start = next((i for i, ln in enumerate(lines) if "ncalls" in ln), 0)
    return "\n".join(lines[start:start + top + 1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--op", required=True)
    ap.add_argument("--shape", type=parse_shape, default=None,
                    help="B,T,H,D (default: the op's first)")
    ap.add_argument("--impls", nargs="+", default=None)
    ap.add_argument("--iters", type=int, default=30)
    ap.add_argument("--top", type=int, default=20)
    ap.add_argument("--dtype", default="bf16", choices=sorted(DTYPES))
    ap.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    ap.add_argument("--no-cprofile", action="store_true", help="only the step / host table")
    args = ap.parse_args(argv)
    if args.iters < 1:
        raise SystemExit(f"--iters {args.iters}: expected >= 1")
    mod = load_op(args.op)
    shape = args.shape or mod.DEFAULT_SHAPES[0]
    dtype = DTYPES[args.dtype] if args.device == "cuda" else torch.float32
    torch.manual_seed(0)
    impls = select_impls(mod.implementations(shape), args.impls)
    inputs = mod.make_inputs(shape, dtype, args.device)
    do = torch.randn_like(next(iter(impls.values()))(inputs))
    print(f"# host profile {args.op} {shape_str(shape)} {args.dtype}, {args.iters} iters")
    rows = []
    for name, fn in impls.items():
        try:
            step, host = measure(fn, inputs, do, args.iters, args.device)
        except Exception as e:  # noqa: BLE001 - one failing anchor must not hide the rest
            print(f"# {name}: {type(e).__name__}: {str(e)[:200]}")
            continue
        rows.append(f"| {name} | {step:.3f} | {host:.3f} | {host / step:.2f} |")
        print(f"# {name}: step {step:.3f} ms, host {host:.3f} ms", flush=True)
        if not args.no_cprofile:
            print(profile(fn, inputs, do, args.iters, args.top, args.device), flush=True)
    print("\n| impl | step ms | host ms | host/step |\n|---|---|---|---|")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
