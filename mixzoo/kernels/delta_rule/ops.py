"""Autograd layer for the delta-rule Triton kernels, registered with torch.library
(custom_op + register_fake + register_autograd) so torch.compile traces it without a graph
break. Two ops, each with its own backward op:
    mixzoo::delta_rule_chunk_fwd / _bwd       chunkwise WY/UT kernels (chunk.py)
    mixzoo::delta_rule_recurrent_fwd / _bwd   fused recurrent kernels (fused_recurrent.py)
Extra outputs of the forward ops are what the backward needs (W, Tm, chunk states; or delta
and the final state); they are marked non-differentiable. Callers use the `EagerOp` wrappers
`chunk_fwd` / `recurrent_fwd` (eager calls skip the dispatcher: _common/eager.py).
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from .._common import EagerOp, cdiv
from . import chunk as _chunk
from . import fused_recurrent as _rec
from .chunk import CHUNK


# ----------------------------------------------------------------------------- chunk
@torch.library.custom_op("mixzoo::delta_rule_chunk_fwd", mutates_args=())
def chunk_fwd_op(q: Tensor, k: Tensor, v: Tensor, beta: Tensor, initial_state: Optional[Tensor],
                 scale: float, output_final_state: bool, use_l2: bool, save_for_bwd: bool
                 ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    return _chunk.chunk_fwd(q, k, v, beta, scale, initial_state, output_final_state, use_l2,
                            save_for_bwd)


@chunk_fwd_op.register_fake
def _(q, k, v, beta, initial_state, scale, output_final_state, use_l2, save_for_bwd):
    B, T, H, K = q.shape
    V = v.shape[-1]
    NT = cdiv(T, CHUNK)
    f32 = torch.float32
    return (torch.empty_like(v),
            q.new_empty((B, H, K, V) if output_final_state else (0,), dtype=f32),
            torch.empty_like(v) if save_for_bwd else v.new_empty((0,)),
            q.new_empty((B, H, NT, CHUNK, CHUNK) if save_for_bwd else (0,), dtype=f32),
            q.new_empty((B, H, NT, K, V) if save_for_bwd else (0,)))


@torch.library.custom_op("mixzoo::delta_rule_chunk_bwd", mutates_args=())
def chunk_bwd_op(q: Tensor, k: Tensor, v: Tensor, beta: Tensor, initial_state: Optional[Tensor],
                 vn: Tensor, tinv: Tensor, hbuf: Tensor, do: Tensor, dht: Optional[Tensor],
                 scale: float, use_l2: bool) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    return _chunk.chunk_bwd(q, k, v, beta, scale, initial_state, use_l2, vn, tinv, hbuf, do,
                            dht)


@chunk_bwd_op.register_fake
def _(q, k, v, beta, initial_state, vn, tinv, hbuf, do, dht, scale, use_l2):
    dh0 = (torch.empty_like(initial_state) if initial_state is not None
           else q.new_empty((0,), dtype=torch.float32))
    return (torch.empty_like(q), torch.empty_like(k), torch.empty_like(v),
            torch.empty_like(beta), dh0)


def _chunk_setup(ctx, inputs, output):
    q, k, v, beta, h0, scale, _, use_l2, save = inputs
    _, _, vn, tinv, hbuf = output
    ctx.mark_non_differentiable(vn, tinv, hbuf)
    ctx.save_for_backward(q, k, v, beta, h0, vn, tinv, hbuf)
    ctx.scale, ctx.use_l2, ctx.saved_ok = scale, use_l2, save


def _chunk_backward(ctx, do, dht, _dvn, _dtinv, _dh):
    if not ctx.saved_ok:
        raise RuntimeError("delta_rule: backward through a forward run with save_for_bwd=False")
    q, k, v, beta, h0, vn, tinv, hbuf = ctx.saved_tensors
    if dht is not None and dht.numel() == 0:
        dht = None
    dq, dk, dv, db, dh0 = chunk_bwd(q, k, v, beta, h0, vn, tinv, hbuf, do, dht,
                                    ctx.scale, ctx.use_l2)
    return dq, dk, dv, db, (dh0 if h0 is not None else None), None, None, None, None


chunk_bwd = EagerOp(chunk_bwd_op)
chunk_fwd = EagerOp(chunk_fwd_op, _chunk_backward, _chunk_setup)


# ----------------------------------------------------------------------------- recurrent
@torch.library.custom_op("mixzoo::delta_rule_recurrent_fwd", mutates_args=())
def recurrent_fwd_op(q: Tensor, k: Tensor, v: Tensor, beta: Tensor,
                     initial_state: Optional[Tensor], scale: float, use_l2: bool,
                     save_for_bwd: bool) -> tuple[Tensor, Tensor, Tensor]:
    return _rec.recurrent_fwd(q, k, v, beta, scale, initial_state, use_l2, save_for_bwd)


@recurrent_fwd_op.register_fake
def _(q, k, v, beta, initial_state, scale, use_l2, save_for_bwd):
    B, T, H, K = q.shape
    V = v.shape[-1]
    f32 = torch.float32
    return (torch.empty_like(v), q.new_empty((B, H, K, V), dtype=f32),
            q.new_empty((B, T, H, V) if save_for_bwd else (0,), dtype=f32))


@torch.library.custom_op("mixzoo::delta_rule_recurrent_bwd", mutates_args=())
def recurrent_bwd_op(q: Tensor, k: Tensor, v: Tensor, beta: Tensor,
                     initial_state: Optional[Tensor], delta: Tensor, ht: Tensor, do: Tensor,
                     dht: Optional[Tensor], scale: float, use_l2: bool
                     ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    return _rec.recurrent_bwd(q, k, v, beta, scale, initial_state, use_l2, delta, ht, do, dht)


@recurrent_bwd_op.register_fake
def _(q, k, v, beta, initial_state, delta, ht, do, dht, scale, use_l2):
    dh0 = (torch.empty_like(initial_state) if initial_state is not None
           else q.new_empty((0,), dtype=torch.float32))
    return (torch.empty_like(q), torch.empty_like(k), torch.empty_like(v),
            torch.empty_like(beta), dh0)


def _recurrent_setup(ctx, inputs, output):
    q, k, v, beta, h0, scale, use_l2, save = inputs
    _, ht, delta = output
    ctx.mark_non_differentiable(delta)
    ctx.save_for_backward(q, k, v, beta, h0, delta, ht)
    ctx.scale, ctx.use_l2, ctx.saved_ok = scale, use_l2, save


def _recurrent_backward(ctx, do, dht, _ddelta):
    if not ctx.saved_ok:
        raise RuntimeError("delta_rule: backward through a forward run with save_for_bwd=False")
    q, k, v, beta, h0, delta, ht = ctx.saved_tensors
    dq, dk, dv, db, dh0 = recurrent_bwd(q, k, v, beta, h0, delta, ht, do, dht,
                                        ctx.scale, ctx.use_l2)
    return dq, dk, dv, db, (dh0 if h0 is not None else None), None, None, None


recurrent_bwd = EagerOp(recurrent_bwd_op)
recurrent_fwd = EagerOp(recurrent_fwd_op, _recurrent_backward, _recurrent_setup)
