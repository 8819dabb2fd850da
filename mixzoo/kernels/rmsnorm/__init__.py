"""RMSNorm over the last dim, optionally fused with the combine of a bidirectional mixer's
two scan directions.

    rms_norm(x, weight, *, eps, combine_directions=False, backend="auto") -> y

x `[N, T, ..., V]`, weight `[V]`; y = u / sqrt(mean(u^2) + eps) * weight with u = x, or, with
combine_directions=True, x a doubled batch `[2B, T, ..., V]` and u[b,t] = x[b,t] +
x[B+b, T-1-t] (the forward scan plus the reversed-sequence scan in original time order),
y `[B, T, ..., V]`. fp32 math, y in x's dtype. `reference.py` is the spec; README.md has
the backward. Bidirectional mixers use it for their per-head output norm: one read of both
halves, one write, and a backward that writes both halves' gradients directly (plain torch
needs a flip, an add and ~15 elementwise kernels for the norm and its backward).
"""
from __future__ import annotations

import torch

from .._common import check_dtype_float, check_same_device, resolve_backend, triton_available
from .reference import rms_norm_ref

_HAS_TRITON = triton_available()
if _HAS_TRITON:
    from .ops import rms_norm_triton

__all__ = ["rms_norm", "rms_norm_ref"]


def rms_norm(x: torch.Tensor, weight: torch.Tensor, *, eps: float,
             combine_directions: bool = False, backend: str = "auto") -> torch.Tensor:
    """See the module docstring."""
    if x.dim() < 2 or weight.shape != (x.shape[-1],):
        raise ValueError(f"rms_norm: expected x [N,T,...,V] and weight [V], got "
                         f"{tuple(x.shape)} and {tuple(weight.shape)}")
    if combine_directions and x.shape[0] % 2:
        raise ValueError(f"rms_norm: combine_directions needs a doubled batch, got "
                         f"{x.shape[0]} rows")
    check_dtype_float("x", x)
    check_dtype_float("weight", weight)
    check_same_device(x=x, weight=weight)
    which = resolve_backend(backend, x, weight, has_triton=_HAS_TRITON, algo="rms_norm")
    if which == "triton" and x.dtype != torch.float64:
        return rms_norm_triton(x, weight, float(eps), combine_directions)
    return rms_norm_ref(x, weight, eps=eps, combine_directions=combine_directions)
