"""RMSNorm over the last dim, optionally after combining the two scan directions of a
doubled batch (the spec: plain PyTorch, fp32 math; fp64 stays fp64).

    rms_norm(x, weight, *, eps, combine_directions=False) -> y

x `[N, T, ..., V]`, weight `[V]`. With combine_directions=False:
    y = x / sqrt(mean(x^2, -1) + eps) * weight
With combine_directions=True, x is a doubled batch `[2B, T, ..., V]` (rows B.. hold the
scan over the reversed sequence) and the norm is applied to
    u[b, t] = x[b, t] + x[B + b, T-1-t]          (`combine_directions` in mixers.base)
so y is `[B, T, ..., V]`. y has x's dtype.
"""
from __future__ import annotations

import torch


def _up(t: torch.Tensor) -> torch.Tensor:
    return t.to(torch.promote_types(t.dtype, torch.float32))


def rms_norm_ref(x: torch.Tensor, weight: torch.Tensor, *, eps: float,
                 combine_directions: bool = False) -> torch.Tensor:
    u = _up(x)
    if combine_directions:
        B = x.shape[0] // 2
        u = u[:B] + u[B:].flip(dims=[1])  # [B,T,...,V]
    y = u * torch.rsqrt(u.pow(2).mean(-1, keepdim=True) + eps) * _up(weight)
    return y.to(x.dtype)
