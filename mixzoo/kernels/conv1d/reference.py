"""Depthwise short convolution, the spec (plain PyTorch, fp32 math; fp64 stays fp64).

    short_conv(x, weight, bias=None, *, activation=None, causal=True,
               initial_state=None, output_final_state=False) -> (y, final_state | None)

x `[B,T,D]`, weight `[D,W]` (W in 2..8), bias `[D]`, activation None | "silu".

causal=True: channel d at time t sees the W most recent inputs, itself included,
    y[t,d] = act( sum_{j=0}^{W-1} w[d,j] * x[t-W+1+j, d] + b[d] )
  where the W-1 inputs before t=0 come from `initial_state` `[B,D,W-1]` (oldest first;
  zeros when None). The final state is the last W-1 inputs of the stream
  cat(initial_state, x) along time, fp32 `[B,D,W-1]`, so it still holds initial_state
  columns when T < W-1. Running a sequence in pieces with the state carried along
  equals one pass.
causal=False ("same" padding, centred, for vision): L = (W-1)//2 zeros on the left and
  W-1-L on the right (the split torch's padding="same" uses), i.e.
    y[t,d] = act( sum_j w[d,j] * x[t-L+j, d] + b[d] ),  x outside [0,T) = 0.
  For odd W the window is symmetric; for even W it reaches one step further into the
  future than the past. There is no state: initial_state / output_final_state raise.

y has x's dtype; the state is fp32.

Two forms with the same signature:
- `short_conv_ref`: the definition -- a step-by-step recurrence over a [B,D,W] window
  buffer (causal) or an explicit sum over taps (non-causal).
- `short_conv_vec_ref`: one vectorised grouped F.conv1d over the padded stream.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def _act(y: torch.Tensor, activation: str | None) -> torch.Tensor:
    return F.silu(y) if activation == "silu" else y


def _up(t: torch.Tensor) -> torch.Tensor:
    """fp32 math for half inputs; fp64 inputs stay fp64 (for tight reference checks)."""
    return t.to(torch.promote_types(t.dtype, torch.float32))


def noncausal_left_pad(W: int) -> int:
    """Zeros on the left in the non-causal (centred) variant."""
    return (W - 1) // 2


def short_conv_ref(x, weight, bias=None, *, activation=None, causal=True,
                   initial_state=None, output_final_state=False):
    """The definition (recurrence for causal, explicit tap sum for non-causal)."""
    B, T, D = x.shape
    W = weight.shape[1]
    wf = _up(weight)  # [D,W]
    xf = _up(x)
    if not causal:
        L = noncausal_left_pad(W)
        y = xf.new_zeros(B, T, D)
        for j in range(W):
            shift = j - L  # tap j reads x[t + shift]
            lo, hi = max(0, -shift), min(T, T - shift)
            if lo < hi:
                y[:, lo:hi] += wf[:, j] * xf[:, lo + shift:hi + shift]
        if bias is not None:
            y = y + _up(bias)
        return _act(y, activation).to(x.dtype), None
    state = (xf.new_zeros(B, D, W - 1) if initial_state is None
             else _up(initial_state))  # [B,D,W-1], oldest first
    ys = []
    for t in range(T):
        win = torch.cat([state, xf[:, t, :, None]], dim=2)  # [B,D,W]
        y_t = (win * wf).sum(-1)  # [B,D]
        if bias is not None:
            y_t = y_t + _up(bias)
        ys.append(_act(y_t, activation))
        state = win[:, :, 1:]
    y = torch.stack(ys, dim=1) if ys else xf.new_zeros(B, 0, D)  # [B,T,D]
    return y.to(x.dtype), (state if output_final_state else None)


def short_conv_vec_ref(x, weight, bias=None, *, activation=None, causal=True,
                       initial_state=None, output_final_state=False):
    """Vectorised form: one grouped conv1d over the (state-)padded stream."""
    B, T, D = x.shape
    W = weight.shape[1]
    xt = _up(x).transpose(1, 2)  # [B,D,T]
    if causal:
        head = (xt.new_zeros(B, D, W - 1) if initial_state is None
                else _up(initial_state))  # [B,D,W-1]
        xp = torch.cat([head, xt], dim=2)  # [B,D,W-1+T]
    else:
        L = noncausal_left_pad(W)
        xp = F.pad(xt, (L, W - 1 - L))  # [B,D,T+W-1]
    b = None if bias is None else _up(bias)
    y = F.conv1d(xp, _up(weight)[:, None, :], b, groups=D)  # [B,D,T]
    y = _act(y, activation).transpose(1, 2).to(x.dtype)  # [B,T,D]
    final = xp[:, :, xp.shape[2] - (W - 1):] if (causal and output_final_state) else None
    return y, final


def short_conv_bidirectional_ref(x, weight, bias=None, *, activation=None, splits=None):
    """The definition of `short_conv_bidirectional`: the causal conv of the doubled batch
    cat([x, flip_T(x)]) (no state), split along channels into `splits` (default [D]).
    Returns a tuple of contiguous [2B,T,s] tensors."""
    both = torch.cat([x, x.flip(dims=[1])], dim=0)  # [2B,T,D]
    y, _ = short_conv_vec_ref(both, weight, bias, activation=activation)
    return tuple(t.contiguous() for t in y.split(list(splits or [x.shape[-1]]), dim=-1))
