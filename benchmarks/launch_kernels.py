"""Small Triton kernels for the launch tests and `launch_overhead.py`: an argument list
like the chunk kernels' (pointers, ints, a float, constexprs with and without defaults),
plain and autotuned (two configs, one with a callable grid's block size)."""
from __future__ import annotations

import triton
import triton.language as tl

from mixzoo.kernels._common import pick_configs


@triton.jit
def axpb_kernel(x, y, out, n, stride, s,            # out[i*stride] = s * x[i] + y[i] (+ 1)
                ADD_ONE: tl.constexpr, BLOCK: tl.constexpr, UNUSED: tl.constexpr = 3):
    i = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    m = i < n
    r = s * tl.load(x + i, mask=m, other=0.).to(tl.float32) + tl.load(y + i, mask=m, other=0.)
    if ADD_ONE:
        r += 1.0
    tl.store(out + i * stride, r.to(out.dtype.element_ty), mask=m)


axpb_tuned = triton.autotune(
    configs=pick_configs([triton.Config({"BLOCK": b}, num_warps=w)
                          for b, w in ((64, 2), (128, 4))]),
    key=["n"])(axpb_kernel)
