"""Eager fast path of the bidirectional (vision) DeltaNet layer, taken by the timm adapter
with MIXZOO_VISION_PATH=fused (adapter.py; imported only then, as it needs Triton).

At ViT sizes (196 tokens, batch 128) one DeltaNet layer's GPU work is a few hundred
microseconds per kernel, and a training step's host side (Python, dispatch, launches) is
as long as its GPU side: on the H100 host the DeltaNet ViT-S step took exactly its host time
at 224 and 1024 px (session 3 calls 12-13: 72.9 ms host for a 72.8 ms step at 224 px, while
its kernels add up to ~55 ms at 1024 px), and timm's own ViT-S step was host-bound at 224 px
too (call 11: 38.2 ms host for a 38.1 ms step). The mixer's default path calls
three custom ops per layer (`short_conv_bidir_fwd`, `delta_rule_chunk_fwd`, `rms_norm_fwd`,
each with a backward op); torch.library's eager dispatch (schema defaults, pytree, the
autograd wrapper, redispatch, dynamo-disable wrappers) costs ~0.1-0.2 ms of host time per op
call on a slow host, ~1 ms per layer per step. This path runs the same launchers, with the
same arguments and the same saved tensors, through ONE torch.autograd.Function per layer:

    forward:  conv (q|k|v of both scan directions, one launch) -> delta-rule chunk forward
              (prep + state pass) -> output RMSNorm combining the two directions
    backward: RMSNorm backward -> delta-rule chunk backward -> conv backward

so it computes the same values as the mixer (tested equal: output and every gradient). beta
for both directions (sigmoid, flip, concatenation) is built inside the Function too; the
projections and the output gate stay plain torch ops, as in the mixer.

It applies only where the mixer itself would run exactly these kernels: a bidirectional
DeltaNet (causal=False) with its short conv, the Triton backend, no carried state, half or
fp32 inputs, q|k|v channel groups the grouped conv kernel takes. Everything else, and
everything under torch.compile (which needs the custom ops), takes the mixer's own path.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from mixzoo.kernels._common import resolve_backend
from mixzoo.kernels.conv1d import ops as conv_ops
from mixzoo.kernels.conv1d.triton_conv import ACT_CODES, group_block_d
from mixzoo.kernels.delta_rule import MAX_HEAD_DIM
from mixzoo.kernels.delta_rule.chunk import chunk_bwd, chunk_fwd
from mixzoo.kernels.rmsnorm.triton_rmsnorm import rmsnorm_bwd, rmsnorm_fwd
from mixzoo.mixers.deltanet import DeltaNetMixer

_SILU = ACT_CODES["silu"]


class _BidirScan(torch.autograd.Function):
    """qkv [B,T,2HK+HV], beta logits [B,T,H] -> o_norm(scan(fwd) + flip(scan(rev)))
    [B,T,H,V]; see the module docstring. conv_w [2HK+HV, W], norm_w [V]. beta =
    sigmoid(logits) (times 2 with neg_eig) is built here for both directions ([2B,T,H], rows
    B.. reversed in time), so its flip, concatenation and sigmoid add no autograd nodes."""

    @staticmethod
    def forward(ctx, qkv, conv_w, b_logit, norm_w, heads: int, k_dim: int, v_dim: int,
                eps: float, neg_eig: bool):
        B, T, _ = qkv.shape
        H, K, V = heads, k_dim, v_dim
        save = any(ctx.needs_input_grad[:4])
        sig = torch.sigmoid(torch.cat([b_logit, b_logit.flip(dims=[1])], dim=0))  # [2B,T,H]
        beta = 2.0 * sig if neg_eig else sig
        variant = conv_ops.current_variant("bidirectional")
        q, k, v = conv_ops._fwd_impl(variant)(qkv, conv_w, None, None, _SILU, True,
                                              bidir=True, splits=[H * K, H * K, H * V])
        q = q.view(2 * B, T, H, K)  # [2B,T,H,K], rows B.. = reversed sequence
        k = k.view(2 * B, T, H, K)  # [2B,T,H,K]
        v = v.view(2 * B, T, H, V)  # [2B,T,H,V]
        scale = K ** -0.5
        o, _, vn, tinv, hbuf = chunk_fwd(q, k, v, beta, scale, None, False, True, save)
        y, rstd = rmsnorm_fwd(o, norm_w, eps, True)  # [B,T,H,V]
        if save:
            ctx.save_for_backward(qkv, conv_w, q, k, v, sig, beta, vn, tinv, hbuf, o, norm_w,
                                  rstd)
            ctx.variant, ctx.scale, ctx.neg_eig = variant, scale, neg_eig
        return y

    @staticmethod
    def backward(ctx, dy):
        qkv, conv_w, q, k, v, sig, beta, vn, tinv, hbuf, o, norm_w, rstd = ctx.saved_tensors
        do, dnorm_w = rmsnorm_bwd(dy, o, norm_w, rstd, True)  # [2B,T,H,V], [V]
        dq, dk, dv, dbeta, _ = chunk_bwd(q, k, v, beta, ctx.scale, None, True, vn, tinv,
                                         hbuf, do, None)
        B2, T = q.shape[:2]
        dys = [dq.view(B2, T, -1), dk.view(B2, T, -1), dv.view(B2, T, -1)]  # [2B,T,*]
        dqkv, dconv_w, _ = conv_ops._bwd_impl(ctx.variant)(dys, qkv, conv_w, None, None,
                                                           _SILU, True, bidir=True)
        if ctx.neg_eig:
            dbeta = 2.0 * dbeta
        dz = torch.ops.aten.sigmoid_backward(dbeta, sig)  # [2B,T,H]
        db_logit = dz[:B2 // 2] + dz[B2 // 2:].flip(dims=[1])  # [B,T,H], both directions
        return dqkv, dconv_w, db_logit, dnorm_w, None, None, None, None, None


def fused_mixer(m) -> bool:
    """The part of `fused_applies` fixed by the mixer's config and widths (callers may cache
    it per mixer)."""
    return (isinstance(m, DeltaNetMixer) and not m.config.causal
            and m.conv_weight is not None and max(m.K, m.V) <= MAX_HEAD_DIM
            and bool(group_block_d([m.H * m.K, m.H * m.K, m.H * m.V], m.qkv_dim)))


def fused_applies(m, x: torch.Tensor, mixer_ok: bool | None = None) -> bool:
    """Whether `fused_forward(m, x)` runs exactly the kernels `m(x)` would (module docstring).
    mixer_ok: a cached `fused_mixer(m)`."""
    if not (fused_mixer(m) if mixer_ok is None else mixer_ok):
        return False
    if torch.compiler.is_compiling() or x.dtype == torch.float64 or x.shape[1] == 0:
        return False
    try:
        return resolve_backend(m.config.backend, x, has_triton=True, algo="delta_rule") == "triton"
    except NotImplementedError:     # backend="triton" asked for where Triton cannot run
        return False


def fused_forward(m: DeltaNetMixer, x: torch.Tensor) -> torch.Tensor:
    """y [B,T,D] = m(x)[0] for a bidirectional DeltaNet, through `_BidirScan`."""
    B, T, _ = x.shape
    w_qkv, w_b = m.in_proj.weight.split([m.qkv_dim, m.H])
    b_qkv, b_b = (None, None) if m.in_proj.bias is None else m.in_proj.bias.split(
        [m.qkv_dim, m.H])
    qkv = F.linear(x, w_qkv, b_qkv)  # [B,T,qkv_dim]
    b_logit = F.linear(x, w_b, b_b)  # [B,T,H]
    o = _BidirScan.apply(qkv, m.conv_weight, b_logit, m.o_norm.weight, m.H, m.K, m.V,
                         float(m.o_norm.eps), m.config.allow_neg_eigval)  # [B,T,H,V]
    if m.g_proj is not None:
        o = o * F.silu(m.g_proj(x)).reshape(B, T, m.H, m.V)  # [B,T,H,V]
    return F.linear(o.reshape(B, T, m.H * m.V), m.o_proj.weight, m.o_proj.bias)  # [B,T,D]
