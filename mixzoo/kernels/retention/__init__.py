"""Retention / scalar-decay linear attention: S_t = exp(g_t) S_{t-1} + k_t v_t^T.

g is per head [H] (RetNet's fixed decay) or per token [B,T,H] (data-dependent, as in
Mamba-2/SSD). Public entry point `retention`; `retention_recurrent_ref` /
`retention_chunk_ref` are the plain-PyTorch spec (reference.py). Math in README.md.
"""
from __future__ import annotations

import torch

from mixzoo.kernels._common import (check_dtype_float, check_rank, check_same_device,
                                    check_shape, resolve_backend, triton_available)
from mixzoo.kernels.gla import prepare_triton_inputs

from .reference import retention_chunk_ref, retention_recurrent_ref

__all__ = ["retention", "fused_recurrent_retention", "retention_recurrent_ref",
           "retention_chunk_ref"]

_HAS_TRITON = triton_available()


def _validate(q, k, v, g, initial_state) -> None:
    check_shape("q", q, (None, None, None, None), "[B,T,H,K]")
    B, T, H, K = q.shape
    check_shape("k", k, (B, T, H, K), "[B,T,H,K] (same as q)")
    check_shape("v", v, (B, T, H, None), "[B,T,H,V]")
    if not isinstance(g, torch.Tensor) or g.dim() not in (1, 3):
        check_rank("g", g, 3, "[H] (per-head log decay) or [B,T,H] (per-token log decay)")
    if g.dim() == 1:
        check_shape("g", g, (H,), "[H] (per-head log decay)")
    else:
        check_shape("g", g, (B, T, H), "[B,T,H] (per-token log decay)")
    for name, t in (("q", q), ("k", k), ("v", v), ("g", g)):
        check_dtype_float(name, t)
    if initial_state is not None:
        check_shape("initial_state", initial_state, (B, H, K, v.shape[-1]), "[B,H,K,V]")
        check_dtype_float("initial_state", initial_state)
    check_same_device(q=q, k=k, v=v, g=g, initial_state=initial_state)


def retention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, g: torch.Tensor, *,
    scale: float | None = None, initial_state: torch.Tensor | None = None,
    output_final_state: bool = False, backend: str = "auto",
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Linear attention with a scalar (per head) decay.

    q, k: [B,T,H,K]; v: [B,T,H,V]; g: log decay (<= 0, not checked) per head [H] or per
    token [B,T,H]. initial_state: [B,H,K,V]. scale multiplies q, default 1/sqrt(K).
    Returns (o [B,T,H,V] in q's dtype, final state [B,H,K,V] fp32 if output_final_state
    else None). backend: "auto" (Triton on CUDA, reference elsewhere) | "triton" | "reference".
    """
    _validate(q, k, v, g, initial_state)
    which = resolve_backend(backend, q, k, v, g, initial_state,
                            has_triton=_HAS_TRITON, algo="retention")
    if which == "reference":
        return retention_chunk_ref(q, k, v, g, scale=scale, initial_state=initial_state,
                                   output_final_state=output_final_state)
    from .ops import retention_chunk_fwd
    o, ht, *_ = retention_chunk_fwd(*prepare_triton_inputs(q, k, v, g, initial_state, scale))
    return o.to(q.dtype), (ht if output_final_state else None)


def fused_recurrent_retention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, g: torch.Tensor, *,
    scale: float | None = None, initial_state: torch.Tensor | None = None,
    output_final_state: bool = False, backend: str = "auto",
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """`retention` computed token by token with the state in registers: the decoding
    path. Same arguments and result as `retention`; runs GLA's recurrent kernel with
    the scalar decay broadcast over keys by a zero stride."""
    _validate(q, k, v, g, initial_state)
    which = resolve_backend(backend, q, k, v, g, initial_state,
                            has_triton=_HAS_TRITON, algo="retention")
    if which == "reference":
        return retention_recurrent_ref(q, k, v, g, scale=scale, initial_state=initial_state,
                                       output_final_state=output_final_state)
    from mixzoo.kernels.gla.ops import fused_recurrent_fwd
    o, ht = fused_recurrent_fwd(*prepare_triton_inputs(q, k, v, g, initial_state, scale))
    return o.to(q.dtype), (ht if output_final_state else None)
