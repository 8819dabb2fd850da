"""Autograd layer for the short-convolution kernels, registered with torch.library so that
torch.compile traces through it without graph breaks.

    mixzoo::short_conv_fwd(x, weight, bias, h0, act, causal, variant) -> y
    mixzoo::short_conv_bwd(dy, x, weight, bias, h0, act, causal, variant) -> (dx, dw, db, dh0)
    mixzoo::short_conv_update(x_t, state, weight, bias, act) -> (y_t, new_state)
    mixzoo::short_conv_bidir_fwd(x, weight, bias, act, splits, variant) -> [y_0, y_1, ...]
    mixzoo::short_conv_bidir_bwd(dys, x, weight, bias, act, variant) -> (dx, dw, db)

`variant` picks the kernels: "v1" (triton_conv.py: tiled forward, streaming backward), "v2"
(triton_stream.py: streaming forward, backward unrolled by 4 rows), or "v2fwd" / "v2bwd"
(v2 for one pass only, to time the passes apart). Defaults: v2 for `short_conv` (H100 call
10, B8 T4096 D4096 k=4 SiLU, same process: fwd+bwd 0.534 ms against v1's 0.704, errors
equal), v1 for `short_conv_bidirectional` (its v2 not yet timed or checked on a GPU). The
environment variable MIXZOO_CONV1D_VARIANT sets both; `use_variant` switches both for a
block of code (benchmarks time the variants side by side). The forward's choice is saved
for its backward.

The final state (the last W-1 inputs of [h0, x]) is a slice taken with ordinary torch
ops outside the op, so its gradient reaches x and h0 through autograd. Missing optional
gradients come back as empty tensors (custom ops return tensors only).
"""
from __future__ import annotations

import contextlib
import os

import torch

from . import triton_stream
from mixzoo.kernels._common import EagerOp

from .triton_conv import ACT_CODES, conv_bwd, conv_fwd, head_state_grad
from .triton_stream import conv_bwd_stream, conv_fwd_stream
from .triton_update import conv_update

VARIANTS = ("v1", "v2", "v2fwd", "v2bwd")


def _check_variant(name: str) -> str:
    if name not in VARIANTS:
        raise ValueError(f"MIXZOO_CONV1D_VARIANT / variant: expected one of {VARIANTS}, "
                         f"got {name!r}")
    return name


DEFAULTS = {"causal": "v2", "bidirectional": "v1"}   # by public function (docstring above)
_env = os.environ.get("MIXZOO_CONV1D_VARIANT")
_VARIANT = [_check_variant(_env) if _env else None]   # None: DEFAULTS


def current_variant(kind: str = "causal") -> str:
    """The variant `short_conv` (kind "causal") or `short_conv_bidirectional` (kind
    "bidirectional") runs now."""
    return _VARIANT[0] or DEFAULTS[kind]


@contextlib.contextmanager
def use_variant(name: str, fwd_chunk: int | None = None, bwd_chunk: int | None = None):
    """Run the block with kernel variant `name` (and, for v2, fixed rows per program)."""
    old = (_VARIANT[0], dict(triton_stream.CHUNK_OVERRIDE))
    _VARIANT[0] = _check_variant(name)
    triton_stream.CHUNK_OVERRIDE.update(fwd=fwd_chunk, bwd=bwd_chunk)
    try:
        yield
    finally:
        _VARIANT[0] = old[0]
        triton_stream.CHUNK_OVERRIDE.update(old[1])


def _fwd_impl(variant: str):
    return conv_fwd_stream if variant in ("v2", "v2fwd") else conv_fwd


def _bwd_impl(variant: str):
    return conv_bwd_stream if variant in ("v2", "v2bwd") else conv_bwd


@torch.library.custom_op("mixzoo::short_conv_fwd", mutates_args=())
def short_conv_fwd_op(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                      h0: torch.Tensor | None, act: int, causal: bool,
                      variant: str) -> torch.Tensor:
    return _fwd_impl(variant)(x, weight, bias, h0, act, causal)


@short_conv_fwd_op.register_fake
def _(x, weight, bias, h0, act, causal, variant):
    return torch.empty(x.shape, dtype=x.dtype, device=x.device)


@torch.library.custom_op("mixzoo::short_conv_bwd", mutates_args=())
def short_conv_bwd_op(dy: torch.Tensor, x: torch.Tensor, weight: torch.Tensor,
                      bias: torch.Tensor | None, h0: torch.Tensor | None, act: int,
                      causal: bool, variant: str) -> tuple[torch.Tensor, torch.Tensor,
                                                           torch.Tensor, torch.Tensor]:
    dx, dw, db = _bwd_impl(variant)(dy, x, weight, bias, h0, act, causal)
    dh0 = (head_state_grad(dy, x, weight, bias, h0, act) if h0 is not None
           else x.new_empty(0))
    return dx, dw, db if db is not None else x.new_empty(0), dh0


@short_conv_bwd_op.register_fake
def _(dy, x, weight, bias, h0, act, causal, variant):
    return (torch.empty(x.shape, dtype=x.dtype, device=x.device),
            torch.empty(weight.shape, dtype=weight.dtype, device=x.device),
            (torch.empty(bias.shape, dtype=bias.dtype, device=x.device) if bias is not None
             else x.new_empty(0)),
            (torch.empty(h0.shape, dtype=h0.dtype, device=x.device) if h0 is not None
             else x.new_empty(0)))


def _setup_context(ctx, inputs, output):
    x, weight, bias, h0, act, causal, variant = inputs
    ctx.save_for_backward(x, weight, bias, h0)
    ctx.act, ctx.causal, ctx.variant = act, causal, variant


def _backward(ctx, dy):
    x, weight, bias, h0 = ctx.saved_tensors
    dx, dw, db, dh0 = short_conv_bwd(dy, x, weight, bias, h0, ctx.act, ctx.causal,
                                     ctx.variant)
    return (dx, dw, db if bias is not None else None, dh0 if h0 is not None else None,
            None, None, None)


short_conv_bwd = EagerOp(short_conv_bwd_op)
short_conv_fwd = EagerOp(short_conv_fwd_op, _backward, _setup_context)


@torch.library.custom_op("mixzoo::short_conv_update", mutates_args=())
def short_conv_update_op(x_t: torch.Tensor, state: torch.Tensor, weight: torch.Tensor,
                         bias: torch.Tensor | None, act: int
                         ) -> tuple[torch.Tensor, torch.Tensor]:
    return conv_update(x_t, state, weight, bias, act)


@short_conv_update_op.register_fake
def _(x_t, state, weight, bias, act):
    return (torch.empty(x_t.shape, dtype=x_t.dtype, device=x_t.device),
            torch.empty(state.shape, dtype=torch.float32, device=x_t.device))


short_conv_update = EagerOp(short_conv_update_op)


@torch.library.custom_op("mixzoo::short_conv_bidir_fwd", mutates_args=())
def short_conv_bidir_fwd_op(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                            act: int, splits: list[int], variant: str) -> list[torch.Tensor]:
    return _fwd_impl(variant)(x, weight, bias, None, act, True, bidir=True, splits=splits)


@short_conv_bidir_fwd_op.register_fake
def _(x, weight, bias, act, splits, variant):
    B, T, _ = x.shape
    return [torch.empty(2 * B, T, s, dtype=x.dtype, device=x.device) for s in splits]


@torch.library.custom_op("mixzoo::short_conv_bidir_bwd", mutates_args=())
def short_conv_bidir_bwd_op(dys: list[torch.Tensor], x: torch.Tensor, weight: torch.Tensor,
                            bias: torch.Tensor | None, act: int, variant: str
                            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    dx, dw, db = _bwd_impl(variant)(dys, x, weight, bias, None, act, True, bidir=True)
    return dx, dw, db if db is not None else x.new_empty(0)


@short_conv_bidir_bwd_op.register_fake
def _(dys, x, weight, bias, act, variant):
    return (torch.empty(x.shape, dtype=x.dtype, device=x.device),
            torch.empty(weight.shape, dtype=weight.dtype, device=x.device),
            (torch.empty(bias.shape, dtype=bias.dtype, device=x.device) if bias is not None
             else x.new_empty(0)))


def _bidir_setup_context(ctx, inputs, output):
    x, weight, bias, act, splits, variant = inputs
    ctx.save_for_backward(x, weight, bias)
    ctx.act, ctx.variant = act, variant


def _bidir_backward(ctx, dys):
    x, weight, bias = ctx.saved_tensors
    dx, dw, db = short_conv_bidir_bwd(list(dys), x, weight, bias, ctx.act, ctx.variant)
    return dx, dw, db if bias is not None else None, None, None, None


short_conv_bidir_bwd = EagerOp(short_conv_bidir_bwd_op)
short_conv_bidir_fwd = EagerOp(short_conv_bidir_fwd_op, _bidir_backward, _bidir_setup_context)


def _needs_grad(*ts) -> bool:
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in ts)


def short_conv_triton(x, weight, bias=None, *, activation=None, causal=True,
                      initial_state=None, output_final_state=False):
    """Triton short conv; same contract as `mixzoo.kernels.conv1d.short_conv`.
    A single causal token without gradients goes through the update kernel (tested
    equal to the full kernel)."""
    B, T, D = x.shape
    W = weight.shape[1]
    act = ACT_CODES[activation]
    if (causal and T == 1
            and not _needs_grad(x, weight, bias, initial_state)):
        state = (initial_state if initial_state is not None
                 else x.new_zeros(B, D, W - 1, dtype=torch.float32))
        y, new_state = short_conv_update(x[:, 0], state, weight, bias, act)
        return y[:, None], (new_state if output_final_state else None)
    y = short_conv_fwd(x, weight, bias, initial_state, act, causal, current_variant())
    final = None
    if output_final_state:
        xt = x.transpose(1, 2).float()  # [B,D,T]
        if T >= W - 1:
            final = xt[:, :, T - (W - 1):]
        else:
            head = (initial_state.float() if initial_state is not None
                    else x.new_zeros(B, D, W - 1, dtype=torch.float32))
            final = torch.cat([head, xt], dim=2)[:, :, T:]
        final = final.contiguous()  # [B,D,W-1] fp32
    return y, final
