"""Host cost of one Triton launch, and of the small torch ops our launchers issue.

    python benchmarks/launch_overhead.py [--iters 2000]

Prints microseconds of host time per call (median of 5 repeats of --iters calls, the GPU
synchronized only around each repeat): Triton's own launch path (`kernel[grid](...)`,
plain and autotuned) against `mixzoo.kernels._common.launch` (cached direct launch), and
torch.empty / empty_like / flip / sigmoid / cat / a tiny linear. The kernels are tiny, so
the GPU never holds the host back; this is the per-call cost a host-bound training step
pays (module docstring of `_common/fastlaunch.py`).
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from launch_kernels import axpb_kernel, axpb_tuned
from mixzoo.kernels._common import launch


def per_call_us(fn, iters: int) -> float:
    fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(iters):
            fn()
        times.append((time.perf_counter() - t0) / iters * 1e6)
        torch.cuda.synchronize()
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--iters", type=int, default=2000)
    a = ap.parse_args()
    dev = "cuda"
    x = torch.randn(4096, device=dev, dtype=torch.bfloat16)
    y = torch.randn(4096, device=dev)
    out = torch.empty_like(x)
    n = 4096
    big = torch.randn(128, 196, 6, device=dev, dtype=torch.bfloat16)
    lin_x, lin_w = torch.randn(8, 16, device=dev), torch.randn(16, 16, device=dev)
    rows = {
        "triton kernel[grid](...)": lambda: axpb_kernel[(n // 256,)](
            x, y, out, n, 1, 0.5, ADD_ONE=True, BLOCK=256),
        "mixzoo launch(kernel, ...)": lambda: launch(
            axpb_kernel, (n // 256,), x, y, out, n, 1, 0.5, ADD_ONE=True, BLOCK=256),
        "triton autotuned[grid](...)": lambda: axpb_tuned[lambda m: (n // m["BLOCK"],)](
            x, y, out, n, 1, 0.5, ADD_ONE=True),
        "mixzoo launch(autotuned, ...)": lambda: launch(
            axpb_tuned, lambda m: (n // m["BLOCK"],), x, y, out, n, 1, 0.5, ADD_ONE=True),
        "torch.empty([256,196,6,64])": lambda: torch.empty(256, 196, 6, 64, device=dev),
        "torch.empty_like": lambda: torch.empty_like(big),
        "x.flip(1) [128,196,6]": lambda: big.flip(1),
        "torch.sigmoid [128,196,6]": lambda: torch.sigmoid(big),
        "torch.cat 2 x [128,196,6]": lambda: torch.cat([big, big]),
        "F.linear [8,16]x[16,16]": lambda: F.linear(lin_x, lin_w),
    }
    print(f"# host us per call, {torch.cuda.get_device_name()}, torch {torch.__version__}")
    print("| call | host us |\n|---|---|")
    for name, fn in rows.items():
        print(f"| {name} | {per_call_us(fn, a.iters):.1f} |", flush=True)


if __name__ == "__main__":
    main()
