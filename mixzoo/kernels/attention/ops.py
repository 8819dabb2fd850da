"""Autograd layer for the attention kernels, registered with torch.library so that
torch.compile traces through it without graph breaks.

    mixzoo::attention_fwd(q, k, v, causal, window, scale, fwd_variant="", bwd_variant="")
        -> (o, lse)
    mixzoo::attention_bwd(do, q, k, v, o, lse, causal, window, scale, variant="")
        -> (dq, dk, dv)

window <= 0 means no window. fwd_variant / bwd_variant pick a kernel variant by name
("" = the module default, set by MIXZOO_ATTN_FWD_VARIANT / MIXZOO_ATTN_BWD_VARIANT; the
names are listed in triton_fwd.FWD_VARIANTS and triton_bwd.BWD_VARIANTS). The forward
picks the decode kernel for few queries against a longer KV cache (`use_decode`, tested
equal to the tiled forward); the backward always recomputes the probabilities from the
saved lse (nothing [T,T] is stored).
"""
from __future__ import annotations

import torch

from mixzoo.kernels._common import EagerOp

from .triton_bwd import attn_bwd
from .triton_fwd import attn_decode, attn_fwd, scale_or_default, use_decode


@torch.library.custom_op("mixzoo::attention_fwd", mutates_args=())
def attention_fwd_op(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool,
                     window: int, scale: float, fwd_variant: str = "",
                     bwd_variant: str = "") -> tuple[torch.Tensor, torch.Tensor]:
    if use_decode(q, k):
        return attn_decode(q, k, v, causal, window, scale)
    return attn_fwd(q, k, v, causal, window, scale, variant=fwd_variant or None)


@attention_fwd_op.register_fake
def _(q, k, v, causal, window, scale, fwd_variant="", bwd_variant=""):
    B, Tq, H, _ = q.shape
    return (torch.empty_like(q, memory_format=torch.contiguous_format),
            q.new_empty(B, H, Tq, dtype=torch.float32))


@torch.library.custom_op("mixzoo::attention_bwd", mutates_args=())
def attention_bwd_op(do: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                     o: torch.Tensor, lse: torch.Tensor, causal: bool, window: int,
                     scale: float, variant: str = "") -> tuple[torch.Tensor, torch.Tensor,
                                                               torch.Tensor]:
    return attn_bwd(do, q, k, v, o, lse, causal, window, scale, variant=variant or None)


@attention_bwd_op.register_fake
def _(do, q, k, v, o, lse, causal, window, scale, variant=""):
    return (torch.empty(q.shape, dtype=q.dtype, device=q.device),
            torch.empty(k.shape, dtype=k.dtype, device=k.device),
            torch.empty(v.shape, dtype=v.dtype, device=v.device))


def _setup_context(ctx, inputs, output):
    q, k, v, causal, window, scale, _, bwd_variant = inputs
    o, lse = output
    ctx.save_for_backward(q, k, v, o, lse)
    ctx.causal, ctx.window, ctx.scale, ctx.bwd_variant = causal, window, scale, bwd_variant


def _backward(ctx, do, dlse):
    q, k, v, o, lse = ctx.saved_tensors
    # lse is an auxiliary output; gradients through it are not supported (it is only
    # returned by `attention_triton_lse` for tests)
    dq, dk, dv = attention_bwd(do, q, k, v, o, lse, ctx.causal, ctx.window, ctx.scale,
                               ctx.bwd_variant)
    return dq, dk, dv, None, None, None, None, None


attention_bwd = EagerOp(attention_bwd_op)
attention_fwd = EagerOp(attention_fwd_op, _backward, _setup_context)


def attention_triton_lse(q, k, v, *, causal=True, window=None, scale=None, fwd_variant="",
                         bwd_variant=""):
    """Triton attention returning (o [B,Tq,H,D], lse [B,H,Tq] fp32, natural log).
    The variants ("" = module default) exist for benchmarks and tests."""
    if k.stride() != v.stride():
        # The kernels address a key tile and its value tile with one set of offsets
        # (k's strides), so k and v must share a layout (e.g. v sliced from a fused kv).
        k, v = k.contiguous(), v.contiguous()
    return attention_fwd(q, k, v, bool(causal), int(window or 0),
                         scale_or_default(scale, q.shape[-1]), fwd_variant, bwd_variant)


def attention_triton(q, k, v, *, causal=True, window=None, scale=None):
    """Triton attention; same contract as `mixzoo.kernels.attention.attention`."""
    return attention_triton_lse(q, k, v, causal=causal, window=window, scale=scale)[0]
