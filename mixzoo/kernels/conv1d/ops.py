"""Autograd layer for the short-convolution kernels, registered with torch.library so that
torch.compile traces through it without graph breaks.

    mixzoo::short_conv_fwd(x, weight, bias, h0, act, causal) -> y
    mixzoo::short_conv_bwd(dy, x, weight, bias, h0, act, causal) -> (dx, dw, db, dh0)
    mixzoo::short_conv_update(x_t, state, weight, bias, act) -> (y_t, new_state)
    mixzoo::short_conv_bidir_fwd(x, weight, bias, act, splits) -> [y_0, y_1, ...]
    mixzoo::short_conv_bidir_bwd(dys, x, weight, bias, act) -> (dx, dw, db)

The final state (the last W-1 inputs of [h0, x]) is a slice taken with ordinary torch
ops outside the op, so its gradient reaches x and h0 through autograd. Missing optional
gradients come back as empty tensors (custom ops return tensors only).
"""
from __future__ import annotations

import torch

from .triton_conv import ACT_CODES, conv_bwd, conv_fwd, head_state_grad
from .triton_update import conv_update


@torch.library.custom_op("mixzoo::short_conv_fwd", mutates_args=())
def short_conv_fwd_op(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                      h0: torch.Tensor | None, act: int, causal: bool) -> torch.Tensor:
    return conv_fwd(x, weight, bias, h0, act, causal)


@short_conv_fwd_op.register_fake
def _(x, weight, bias, h0, act, causal):
    return torch.empty(x.shape, dtype=x.dtype, device=x.device)


@torch.library.custom_op("mixzoo::short_conv_bwd", mutates_args=())
def short_conv_bwd_op(dy: torch.Tensor, x: torch.Tensor, weight: torch.Tensor,
                      bias: torch.Tensor | None, h0: torch.Tensor | None, act: int,
                      causal: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor,
                                             torch.Tensor]:
    dx, dw, db = conv_bwd(dy, x, weight, bias, h0, act, causal)
    dh0 = (head_state_grad(dy, x, weight, bias, h0, act) if h0 is not None
           else x.new_empty(0))
    return dx, dw, db if db is not None else x.new_empty(0), dh0


@short_conv_bwd_op.register_fake
def _(dy, x, weight, bias, h0, act, causal):
    return (torch.empty(x.shape, dtype=x.dtype, device=x.device),
            torch.empty(weight.shape, dtype=weight.dtype, device=x.device),
            (torch.empty(bias.shape, dtype=bias.dtype, device=x.device) if bias is not None
             else x.new_empty(0)),
            (torch.empty(h0.shape, dtype=h0.dtype, device=x.device) if h0 is not None
             else x.new_empty(0)))


def _setup_context(ctx, inputs, output):
    x, weight, bias, h0, act, causal = inputs
    ctx.save_for_backward(x, weight, bias, h0)
    ctx.act, ctx.causal = act, causal


def _backward(ctx, dy):
    x, weight, bias, h0 = ctx.saved_tensors
    dx, dw, db, dh0 = short_conv_bwd_op(dy, x, weight, bias, h0, ctx.act, ctx.causal)
    return (dx, dw, db if bias is not None else None, dh0 if h0 is not None else None,
            None, None)


short_conv_fwd_op.register_autograd(_backward, setup_context=_setup_context)


@torch.library.custom_op("mixzoo::short_conv_update", mutates_args=())
def short_conv_update_op(x_t: torch.Tensor, state: torch.Tensor, weight: torch.Tensor,
                         bias: torch.Tensor | None, act: int
                         ) -> tuple[torch.Tensor, torch.Tensor]:
    return conv_update(x_t, state, weight, bias, act)


@short_conv_update_op.register_fake
def _(x_t, state, weight, bias, act):
    return (torch.empty(x_t.shape, dtype=x_t.dtype, device=x_t.device),
            torch.empty(state.shape, dtype=torch.float32, device=x_t.device))


@torch.library.custom_op("mixzoo::short_conv_bidir_fwd", mutates_args=())
def short_conv_bidir_fwd_op(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                            act: int, splits: list[int]) -> list[torch.Tensor]:
    return conv_fwd(x, weight, bias, None, act, True, bidir=True, splits=splits)


@short_conv_bidir_fwd_op.register_fake
def _(x, weight, bias, act, splits):
    B, T, _ = x.shape
    return [torch.empty(2 * B, T, s, dtype=x.dtype, device=x.device) for s in splits]


@torch.library.custom_op("mixzoo::short_conv_bidir_bwd", mutates_args=())
def short_conv_bidir_bwd_op(dys: list[torch.Tensor], x: torch.Tensor, weight: torch.Tensor,
                            bias: torch.Tensor | None, act: int
                            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    dx, dw, db = conv_bwd(dys, x, weight, bias, None, act, True, bidir=True)
    return dx, dw, db if db is not None else x.new_empty(0)


@short_conv_bidir_bwd_op.register_fake
def _(dys, x, weight, bias, act):
    return (torch.empty(x.shape, dtype=x.dtype, device=x.device),
            torch.empty(weight.shape, dtype=weight.dtype, device=x.device),
            (torch.empty(bias.shape, dtype=bias.dtype, device=x.device) if bias is not None
             else x.new_empty(0)))


def _bidir_setup_context(ctx, inputs, output):
    x, weight, bias, act, splits = inputs
    ctx.save_for_backward(x, weight, bias)
    ctx.act = act


def _bidir_backward(ctx, dys):
    x, weight, bias = ctx.saved_tensors
    dx, dw, db = short_conv_bidir_bwd_op(list(dys), x, weight, bias, ctx.act)
    return dx, dw, db if bias is not None else None, None, None


short_conv_bidir_fwd_op.register_autograd(_bidir_backward, setup_context=_bidir_setup_context)


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
        y, new_state = short_conv_update_op(x[:, 0], state, weight, bias, act)
        return y[:, None], (new_state if output_final_state else None)
    y = short_conv_fwd_op(x, weight, bias, initial_state, act, causal)
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
