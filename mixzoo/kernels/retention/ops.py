"""torch.library registration of the retention Triton kernels: custom ops with fake
(meta) implementations and autograd, so torch.compile traces them without graph breaks.

    mixzoo::retention_chunk_fwd / retention_chunk_bwd   chunkwise kernels (chunk.py)

The recurrent (decoding) kernels are GLA's, which take a scalar gate through a zero
key stride: `mixzoo.kernels.gla.ops.fused_recurrent_fwd` (an `EagerOp`: eager calls skip
the dispatcher, _common/eager.py).
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from mixzoo.kernels._common import EagerOp, cdiv

from . import chunk as _chunk
from .chunk import BT


@torch.library.custom_op("mixzoo::retention_chunk_fwd", mutates_args=())
def retention_chunk_fwd_op(q: Tensor, k: Tensor, v: Tensor, g: Tensor, h0: Optional[Tensor],
                           scale: float) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """g: [H] or [B,T,H]. -> (o, final state fp32, gc fp32 [B,T,H], h [B,N,H,K,V])."""
    return _chunk.retention_chunk_fwd(q, k, v, g, h0, scale)


@retention_chunk_fwd_op.register_fake
def _(q, k, v, g, h0, scale):
    B, T, H, K = q.shape
    V = v.shape[-1]
    return (torch.empty_like(v), q.new_empty(B, H, K, V, dtype=torch.float32),
            q.new_empty(B, T, H, dtype=torch.float32), q.new_empty(B, cdiv(T, BT), H, K, V))


@torch.library.custom_op("mixzoo::retention_chunk_bwd", mutates_args=())
def retention_chunk_bwd_op(q: Tensor, k: Tensor, v: Tensor, g: Tensor, gc: Tensor, h: Tensor,
                           do: Tensor, dht: Optional[Tensor], ht: Tensor,
                           scale: float) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """-> (dq, dk, dv, dg fp32 shaped like g, dh0 fp32)."""
    dq, dk, dv, dg, dh0 = _chunk.retention_chunk_bwd(q, k, v, gc, h, do, dht, ht, scale)
    if g.dim() == 1:
        dg = dg.sum((0, 1))                      # per-head decay: summed over B and T
    return dq, dk, dv, dg, dh0


@retention_chunk_bwd_op.register_fake
def _(q, k, v, g, gc, h, do, dht, ht, scale):
    return (torch.empty_like(q), torch.empty_like(k), torch.empty_like(v),
            g.new_empty(g.shape, dtype=torch.float32), torch.empty_like(ht))


def _setup(ctx, inputs, output):
    q, k, v, g, h0, scale = inputs
    _, ht, gc, h = output
    ctx.save_for_backward(q, k, v, g, gc, h, ht)
    ctx.scale, ctx.has_h0 = scale, h0 is not None


def _backward(ctx, do, dht, _dgc, _dh):
    q, k, v, g, gc, h, ht = ctx.saved_tensors
    dq, dk, dv, dg, dh0 = retention_chunk_bwd(q, k, v, g, gc, h, do.contiguous(),
                                              None if dht is None else dht.contiguous(),
                                              ht, ctx.scale)
    return dq, dk, dv, dg.to(g.dtype), (dh0 if ctx.has_h0 else None), None


retention_chunk_bwd = EagerOp(retention_chunk_bwd_op)
retention_chunk_fwd = EagerOp(retention_chunk_fwd_op, _backward, _setup)
