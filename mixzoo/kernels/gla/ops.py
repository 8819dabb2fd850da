"""torch.library registration of the GLA Triton kernels: custom ops with fake (meta)
implementations and autograd, so torch.compile traces them without graph breaks.

    mixzoo::gla_chunk_fwd / gla_chunk_bwd            chunkwise kernels (chunk_fwd.py,
                                                      chunk_bwd.py)
    mixzoo::fused_recurrent_fwd / fused_recurrent_bwd recurrent kernels (recurrent.py),
        shared with retention: the gate may be [B,T,H,K], [B,T,H] or [H].

The forward ops also return what the backward reuses (chunk-local cumulative gates,
intra-chunk scores, per-chunk states), so nothing is recomputed.

Kernel variant of the chunk ops: `VARIANT`, from the environment variable
MIXZOO_GLA_VARIANT: "v13" (default; GPU call 17, H100, B4 T4096 H16 D128: fwd 0.710 /
fwd+bwd 2.199 ms against fla's 0.831 / 3.521, errors at or below fla's) or "v14"
(the same with the backward's one-dot intra-chunk dots on bf16 hi + lo parts instead of
tf32; README "Kernel variants"). The forward reads it when called and the backward uses
the forward's choice, so a benchmark can time both in one process by setting
`ops.VARIANT` around its calls.
"""
from __future__ import annotations

import os
from functools import partial
from typing import Optional

import torch
from torch import Tensor

from mixzoo.kernels._common import EagerOp, cdiv

from . import chunk_bwd as _bwd
from . import chunk_fwd as _fwd
from . import recurrent as _rec
from .chunk import BT

# variant -> (forward, backward)
_CHUNK_VARIANTS = {
    "v13": (_fwd.gla_chunk_fwd, _bwd.gla_chunk_bwd),
    "v14": (_fwd.gla_chunk_fwd, partial(_bwd.gla_chunk_bwd, split=True)),
}
VARIANT = os.environ.get("MIXZOO_GLA_VARIANT", "v13")


def _variant(name: str) -> tuple:
    if name not in _CHUNK_VARIANTS:
        raise ValueError(f"MIXZOO_GLA_VARIANT={name!r}: expected one of "
                         f"{sorted(_CHUNK_VARIANTS)}")
    return _CHUNK_VARIANTS[name]


# ----------------------------------------------------------------------------- chunk
@torch.library.custom_op("mixzoo::gla_chunk_fwd", mutates_args=())
def gla_chunk_fwd_op(q: Tensor, k: Tensor, v: Tensor, g: Tensor, h0: Optional[Tensor],
                     scale: float) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """-> (o, final state fp32, gc fp32 [B,T,H,K], A fp32 [B,T,H,BT], h [B,N,H,K,V])."""
    return _variant(VARIANT)[0](q, k, v, g, h0, scale)


@gla_chunk_fwd_op.register_fake
def _(q, k, v, g, h0, scale):
    B, T, H, K = q.shape
    V = v.shape[-1]
    f32 = dict(device=q.device, dtype=torch.float32)
    return (torch.empty_like(v), q.new_empty(B, H, K, V, **f32), q.new_empty(B, T, H, K, **f32),
            q.new_empty(B, T, H, BT, **f32), q.new_empty(B, cdiv(T, BT), H, K, V))


@torch.library.custom_op("mixzoo::gla_chunk_bwd", mutates_args=())
def gla_chunk_bwd_op(q: Tensor, k: Tensor, v: Tensor, gc: Tensor, A: Tensor, h: Tensor,
                     do: Tensor, dht: Optional[Tensor], ht: Tensor,
                     scale: float, variant: str) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """-> (dq, dk, dv, dg fp32, dh0 fp32); variant: the forward's kernel variant."""
    return _variant(variant)[1](q, k, v, gc, A, h, do, dht, ht, scale, torch.float32)


@gla_chunk_bwd_op.register_fake
def _(q, k, v, gc, A, h, do, dht, ht, scale, variant):
    return (torch.empty_like(q), torch.empty_like(k), torch.empty_like(v),
            torch.empty_like(gc), torch.empty_like(ht))


def _chunk_setup(ctx, inputs, output):
    q, k, v, g, h0, scale = inputs
    _, ht, gc, A, h = output
    ctx.save_for_backward(q, k, v, gc, A, h, ht)
    ctx.scale, ctx.has_h0, ctx.g_dtype = scale, h0 is not None, g.dtype
    ctx.variant = VARIANT                                # the forward just ran with it


def _chunk_backward(ctx, do, dht, _dgc, _dA, _dh):
    q, k, v, gc, A, h, ht = ctx.saved_tensors
    dq, dk, dv, dg, dh0 = gla_chunk_bwd(q, k, v, gc, A, h, do.contiguous(),
                                        None if dht is None else dht.contiguous(),
                                        ht, ctx.scale, ctx.variant)
    return dq, dk, dv, dg.to(ctx.g_dtype), (dh0 if ctx.has_h0 else None), None


gla_chunk_bwd = EagerOp(gla_chunk_bwd_op)
gla_chunk_fwd = EagerOp(gla_chunk_fwd_op, _chunk_backward, _chunk_setup)


# ----------------------------------------------------------------------------- recurrent
@torch.library.custom_op("mixzoo::fused_recurrent_fwd", mutates_args=())
def fused_recurrent_fwd_op(q: Tensor, k: Tensor, v: Tensor, g: Tensor, h0: Optional[Tensor],
                           scale: float) -> tuple[Tensor, Tensor]:
    """-> (o, final state fp32). g: [B,T,H,K] per key, [B,T,H] per token or [H] per head."""
    return _rec.fused_recurrent_fwd(q, k, v, g, h0, scale)


@fused_recurrent_fwd_op.register_fake
def _(q, k, v, g, h0, scale):
    B, T, H, K = q.shape
    return torch.empty_like(v), q.new_empty(B, H, K, v.shape[-1], dtype=torch.float32)


@torch.library.custom_op("mixzoo::fused_recurrent_bwd", mutates_args=())
def fused_recurrent_bwd_op(q: Tensor, k: Tensor, v: Tensor, g: Tensor, h0: Optional[Tensor],
                           do: Tensor, dht: Optional[Tensor], ht: Tensor,
                           scale: float) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """-> (dq, dk, dv, dg fp32 shaped like g, dh0 fp32)."""
    dq, dk, dv, dg, dh0 = _rec.fused_recurrent_bwd(q, k, v, g, h0, do, dht, ht, scale)
    if g.dim() < 4:
        dg = dg.sum(-1)                                  # scalar gate: sum over keys
    if g.dim() == 1:
        dg = dg.sum((0, 1))                              # per-head gate: over B and T
    return dq, dk, dv, dg, dh0


@fused_recurrent_bwd_op.register_fake
def _(q, k, v, g, h0, do, dht, ht, scale):
    return (torch.empty_like(q), torch.empty_like(k), torch.empty_like(v),
            g.new_empty(g.shape, dtype=torch.float32), torch.empty_like(ht))


def _rec_setup(ctx, inputs, output):
    q, k, v, g, h0, scale = inputs
    ctx.save_for_backward(q, k, v, g, h0, output[1])
    ctx.scale = scale


def _rec_backward(ctx, do, dht):
    q, k, v, g, h0, ht = ctx.saved_tensors
    dq, dk, dv, dg, dh0 = fused_recurrent_bwd(q, k, v, g, h0, do.contiguous(),
                                              None if dht is None else dht.contiguous(),
                                              ht, ctx.scale)
    return dq, dk, dv, dg.to(g.dtype), (dh0 if h0 is not None else None), None


fused_recurrent_bwd = EagerOp(fused_recurrent_bwd_op)
fused_recurrent_fwd = EagerOp(fused_recurrent_fwd_op, _rec_backward, _rec_setup)
