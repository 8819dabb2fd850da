"""Gated linear attention (GLA): S_t = diag(exp(g_t)) S_{t-1} + k_t v_t^T, o_t = S_t^T (scale q_t).

Public entry point `gla` (validates, then dispatches to Triton or the reference);
`gla_recurrent_ref` / `gla_chunk_ref` are the plain-PyTorch spec (reference.py).
The math, the chunkwise form and the backward pass are in README.md.
"""
from __future__ import annotations

import torch

from mixzoo.kernels._common import (check_dtype_float, check_same_device, check_shape,
                                    resolve_backend, triton_available)

from .reference import gla_chunk_ref, gla_recurrent_ref

__all__ = ["gla", "fused_recurrent_gla", "gla_recurrent_ref", "gla_chunk_ref"]

_HAS_TRITON = triton_available()
_KERNEL_DTYPES = (torch.float16, torch.bfloat16, torch.float32)


def prepare_triton_inputs(q, k, v, g, initial_state, scale):
    """Common dtype and contiguous layout for the kernels (autograd sees the casts)."""
    dt = q.dtype if q.dtype in _KERNEL_DTYPES else torch.float32
    q, k, v = (x.to(dt).contiguous() for x in (q, k, v))
    g = g.contiguous() if g.dtype in _KERNEL_DTYPES else g.float().contiguous()
    h0 = None if initial_state is None else initial_state.float().contiguous()
    scale = q.shape[-1] ** -0.5 if scale is None else float(scale)
    return q, k, v, g, h0, scale


def _validate(q, k, v, g, initial_state) -> None:
    check_shape("q", q, (None, None, None, None), "[B,T,H,K]")
    B, T, H, K = q.shape
    check_shape("k", k, (B, T, H, K), "[B,T,H,K] (same as q)")
    check_shape("v", v, (B, T, H, None), "[B,T,H,V]")
    check_shape("g", g, (B, T, H, K), "[B,T,H,K] (log forget gate, same as q)")
    for name, t in (("q", q), ("k", k), ("v", v), ("g", g)):
        check_dtype_float(name, t)
    if initial_state is not None:
        check_shape("initial_state", initial_state, (B, H, K, v.shape[-1]), "[B,H,K,V]")
        check_dtype_float("initial_state", initial_state)
    check_same_device(q=q, k=k, v=v, g=g, initial_state=initial_state)


def gla(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, g: torch.Tensor, *,
    scale: float | None = None, initial_state: torch.Tensor | None = None,
    output_final_state: bool = False, backend: str = "auto",
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Gated linear attention with a per-key data-dependent forget gate.

    q, k, g: [B,T,H,K]; v: [B,T,H,V]; g is the log forget gate (<= 0, not checked, since
    that would synchronise the device). initial_state: [B,H,K,V] (fp32 preferred).
    scale: multiplies q, default 1/sqrt(K).
    Returns (o [B,T,H,V] in q's dtype, final state [B,H,K,V] fp32 if output_final_state
    else None). backend: "auto" (Triton on CUDA, reference elsewhere) | "triton" | "reference".
    """
    _validate(q, k, v, g, initial_state)
    which = resolve_backend(backend, q, k, v, g, initial_state,
                            has_triton=_HAS_TRITON, algo="gla")
    if which == "reference":
        return gla_chunk_ref(q, k, v, g, scale=scale, initial_state=initial_state,
                             output_final_state=output_final_state)
    from .ops import gla_chunk_fwd
    o, ht, *_ = gla_chunk_fwd(*prepare_triton_inputs(q, k, v, g, initial_state, scale))
    return o.to(q.dtype), (ht if output_final_state else None)


def fused_recurrent_gla(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, g: torch.Tensor, *,
    scale: float | None = None, initial_state: torch.Tensor | None = None,
    output_final_state: bool = False, backend: str = "auto",
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """`gla` computed token by token with the state in registers: the decoding path
    (T = 1, or short T with a carried state). Same arguments and result as `gla`;
    the reference backend is the step recurrence."""
    _validate(q, k, v, g, initial_state)
    which = resolve_backend(backend, q, k, v, g, initial_state,
                            has_triton=_HAS_TRITON, algo="gla")
    if which == "reference":
        return gla_recurrent_ref(q, k, v, g, scale=scale, initial_state=initial_state,
                                 output_final_state=output_final_state)
    from .ops import fused_recurrent_fwd
    o, ht = fused_recurrent_fwd(*prepare_triton_inputs(q, k, v, g, initial_state, scale))
    return o.to(q.dtype), (ht if output_final_state else None)
