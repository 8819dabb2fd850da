"""RMSNorm kernels (forward, backward) with the optional combine of a doubled batch's two
scan directions, and their launchers.

Rows are the `[.., V]` vectors of x viewed as `[NB, T, M, V]` (M = product of the middle
dims, e.g. heads). Output row r = (b*T + t)*M + m reads x row r, and with COMBINE also x row
r2 = ((B + b)*T + T-1-t)*M + m (B = NB/2):
    u = x[r] (+ x[r2]),   rstd = 1/sqrt(mean(u^2) + eps),   y = u * rstd * w
Backward, with xh = u * rstd and g = dy * w:
    du = rstd * (g - xh * mean(g * xh)),   dw = sum_rows dy * xh
du goes to dx[r] (and dx[r2]); each program writes its [V] partial of dw (fp32), summed by
the launcher. rstd is saved by the forward ([rows] fp32); u is re-read from x.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from .._common import cdiv, launch


@triton.jit
def _rows(r, T, M, NB_HALF, COMBINE: tl.constexpr):
    """x rows of output rows r: (r, partner row in the reversed half or r)."""
    if COMBINE:
        m = r % M
        bt = r // M
        t = bt % T
        b = bt // T
        return r, ((NB_HALF + b) * T + (T - 1 - t)) * M + m
    return r, r


@triton.jit
def _rmsnorm_fwd_kernel(
    x_ptr,                    # x [NB,T,M,V] contiguous
    w_ptr,                    # weight [V]
    y_ptr,                    # y [rows, V] contiguous (rows = NB/2*T*M with COMBINE)
    rstd_ptr,                 # rstd [rows] fp32
    R, T, M, NB_HALF, V, eps,
    COMBINE: tl.constexpr,    # add the reversed-half partner row before the norm
    BLOCK_R: tl.constexpr, BLOCK_V: tl.constexpr,
):
    r = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)
    cols = tl.arange(0, BLOCK_V)
    rm = r < R
    cm = cols < V
    mask = rm[:, None] & cm[None, :]
    r1, r2 = _rows(r, T, M, NB_HALF, COMBINE)
    u = tl.load(x_ptr + r1.to(tl.int64)[:, None] * V + cols[None, :], mask=mask,
                other=0.0).to(tl.float32)
    if COMBINE:
        u += tl.load(x_ptr + r2.to(tl.int64)[:, None] * V + cols[None, :], mask=mask,
                     other=0.0).to(tl.float32)
    rstd = 1.0 / tl.sqrt(tl.sum(u * u, axis=1) / V + eps)  # [BLOCK_R]
    w = tl.load(w_ptr + cols, mask=cm, other=0.0).to(tl.float32)
    y = u * rstd[:, None] * w[None, :]
    tl.store(y_ptr + r.to(tl.int64)[:, None] * V + cols[None, :],
             y.to(y_ptr.dtype.element_ty), mask=mask)
    tl.store(rstd_ptr + r, rstd, mask=rm)


@triton.jit
def _rmsnorm_bwd_kernel(
    x_ptr, w_ptr, rstd_ptr,   # as in the forward
    dy_ptr,                   # dy [rows, V] contiguous
    dx_ptr,                   # dx [NB,T,M,V] contiguous
    dwp_ptr,                  # dw partials [programs, V] fp32
    R, T, M, NB_HALF, V,
    COMBINE: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_V: tl.constexpr,
):
    pid = tl.program_id(0)
    r = pid * BLOCK_R + tl.arange(0, BLOCK_R)
    cols = tl.arange(0, BLOCK_V)
    rm = r < R
    cm = cols < V
    mask = rm[:, None] & cm[None, :]
    r1, r2 = _rows(r, T, M, NB_HALF, COMBINE)
    o1 = r1.to(tl.int64)[:, None] * V + cols[None, :]
    o2 = r2.to(tl.int64)[:, None] * V + cols[None, :]
    u = tl.load(x_ptr + o1, mask=mask, other=0.0).to(tl.float32)
    if COMBINE:
        u += tl.load(x_ptr + o2, mask=mask, other=0.0).to(tl.float32)
    rstd = tl.load(rstd_ptr + r, mask=rm, other=0.0)
    dy = tl.load(dy_ptr + r.to(tl.int64)[:, None] * V + cols[None, :], mask=mask,
                 other=0.0).to(tl.float32)
    w = tl.load(w_ptr + cols, mask=cm, other=0.0).to(tl.float32)
    xh = u * rstd[:, None]
    g = dy * w[None, :]
    c = tl.sum(g * xh, axis=1) / V
    du = (rstd[:, None] * (g - xh * c[:, None])).to(dx_ptr.dtype.element_ty)
    tl.store(dx_ptr + o1, du, mask=mask)
    if COMBINE:
        tl.store(dx_ptr + o2, du, mask=mask)
    tl.store(dwp_ptr + pid.to(tl.int64) * V + cols, tl.sum(dy * xh, axis=0), mask=cm)


# ----------------------------------------------------------------------------- launchers

def _layout(x: torch.Tensor, combine: bool):
    """(x contiguous (the kernels read it as [NB,T,M,V]), out shape, rows, T, M, NB/2).
    No view ops: each is host time, twice per layer."""
    shape = x.shape
    NB, T, V = shape[0], shape[1], shape[-1]
    M = x.numel() // (NB * T * V) if T > 0 and NB > 0 else 1   # (no x[0, 0] view op)
    nb_out = NB // 2 if combine else NB
    return x.contiguous(), (nb_out,) + tuple(shape[1:]), nb_out * T * M, T, M, NB // 2


_BLOCKS: dict[int, tuple[int, int]] = {}


def _blocks(V: int) -> tuple[int, int]:
    """(rows per program, BLOCK_V), cached per V (host time: two launches per layer)."""
    blocks = _BLOCKS.get(V)
    if blocks is None:
        bv = 1 << max(0, V - 1).bit_length()             # next power of two >= V
        blocks = _BLOCKS[V] = (max(1, 4096 // bv), bv)
    return blocks


def rmsnorm_fwd(x, weight, eps: float, combine: bool):
    """(y, rstd [rows] fp32)."""
    xc, shape, R, T, M, half = _layout(x, combine)
    V = x.shape[-1]
    y = torch.empty(shape, device=x.device, dtype=x.dtype)
    rstd = torch.empty(R, device=x.device, dtype=torch.float32)
    if R == 0:
        return y, rstd
    br, bv = _blocks(V)
    launch(_rmsnorm_fwd_kernel, (cdiv(R, br),),
        xc, weight.contiguous(), y, rstd, R, T, M, half, V, eps,
        COMBINE=combine, BLOCK_R=br, BLOCK_V=bv, num_warps=4)
    return y, rstd


def rmsnorm_bwd(dy, x, weight, rstd, combine: bool):
    """(dx in x's layout and dtype, dw in weight's dtype)."""
    xc, shape, R, T, M, half = _layout(x, combine)
    V = x.shape[-1]
    dx = torch.empty_like(xc)
    br, bv = _blocks(V)
    n = cdiv(R, br)
    dwp = torch.empty(max(n, 1), V, device=x.device, dtype=torch.float32)
    if R == 0:
        return dx.zero_(), torch.zeros_like(weight)
    launch(_rmsnorm_bwd_kernel, (n,),
        xc, weight.contiguous(), rstd, dy.contiguous(), dx, dwp, R, T, M, half, V,
        COMBINE=combine, BLOCK_R=br, BLOCK_V=bv, num_warps=4)
    return dx, dwp.sum(0).to(weight.dtype)
