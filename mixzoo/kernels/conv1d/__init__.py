"""Depthwise short convolution over time (the "short conv" of DeltaNet and friends).

    short_conv(x, weight, bias=None, *, activation=None, causal=True,
               initial_state=None, output_final_state=False, backend="auto")
        -> (y [B,T,D] in x.dtype, final_state [B,D,W-1] fp32 or None)

x `[B,T,D]`, weight `[D,W]` with W in 2..8, bias `[D]`, activation None | "silu".
causal=True: y_t = act(sum_j w[:,j] x_{t-W+1+j} + b), the W-1 inputs before t=0 taken
from initial_state (oldest first, zeros when None); the final state is the last W-1
inputs. causal=False: centred "same" padding, (W-1)//2 zeros left and the rest right;
no state (initial_state / output_final_state raise). backend: "auto" | "triton" |
"reference". The math is in README.md; `reference.py` is the spec.

    short_conv_bidirectional(x, weight, bias=None, *, activation=None, splits=None,
                             backend="auto") -> tuple of [2B,T,s] tensors

the causal conv (no state) of the doubled batch cat([x, flip_T(x)]) -- a forward and a
reversed scan's inputs in one batch, as bidirectional (vision) mixers run them -- split along
channels into contiguous pieces of widths `splits` (default [D]; e.g. q | k | v). The Triton
path reads x once (any row stride) and never builds the flipped copy, the concatenation or
the split copies; its backward returns one dx [B,T,D] with both directions summed.
"""
from __future__ import annotations

import torch

from .._common import (check_dtype_float, check_rank, check_same_device, check_shape,
                       resolve_backend, triton_available)
from .reference import (noncausal_left_pad, short_conv_bidirectional_ref, short_conv_ref,
                        short_conv_vec_ref)

_HAS_TRITON = triton_available()
if _HAS_TRITON:
    from .ops import current_variant, short_conv_bidir_fwd, short_conv_triton
    from .triton_conv import ACT_CODES, group_block_d

ACTIVATIONS = (None, "silu")
MAX_WIDTH = 8

__all__ = ["short_conv", "short_conv_ref", "short_conv_vec_ref", "check_short_conv_inputs",
           "short_conv_bidirectional", "short_conv_bidirectional_ref",
           "noncausal_left_pad", "ACTIVATIONS", "MAX_WIDTH"]


def check_short_conv_inputs(x, weight, bias, activation, causal, initial_state,
                            output_final_state) -> None:
    """Raise ValueError/TypeError naming the argument when the inputs break the contract."""
    check_rank("x", x, 3, "[B,T,D]")
    B, T, D = x.shape
    check_rank("weight", weight, 2, "[D,W]")
    W = weight.shape[1]
    check_shape("weight", weight, (D, None), "[D,W]")
    if not 2 <= W <= MAX_WIDTH:
        raise ValueError(f"weight: kernel width W = weight.shape[1] must be in 2..{MAX_WIDTH}, "
                         f"got {W}")
    if bias is not None:
        check_shape("bias", bias, (D,), "[D]")
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation: expected one of {ACTIVATIONS}, got {activation!r}")
    if not causal and (initial_state is not None or output_final_state):
        raise ValueError("initial_state/output_final_state: the non-causal (centred) conv "
                         "has no carried state; use causal=True for streaming")
    if initial_state is not None:
        check_shape("initial_state", initial_state, (B, D, W - 1), "[B,D,W-1]")
    for name, t in (("x", x), ("weight", weight), ("bias", bias),
                    ("initial_state", initial_state)):
        if t is not None:
            check_dtype_float(name, t)
    check_same_device(x=x, weight=weight, bias=bias, initial_state=initial_state)


def short_conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, *,
               activation: str | None = None, causal: bool = True,
               initial_state: torch.Tensor | None = None, output_final_state: bool = False,
               backend: str = "auto") -> tuple[torch.Tensor, torch.Tensor | None]:
    """Depthwise short convolution; see the module docstring for shapes and semantics."""
    check_short_conv_inputs(x, weight, bias, activation, causal, initial_state,
                            output_final_state)
    which = resolve_backend(backend, x, weight, bias, initial_state, has_triton=_HAS_TRITON,
                            algo="short_conv")
    if which == "triton":
        return short_conv_triton(x, weight, bias, activation=activation, causal=causal,
                                 initial_state=initial_state,
                                 output_final_state=output_final_state)
    return short_conv_vec_ref(x, weight, bias, activation=activation, causal=causal,
                              initial_state=initial_state,
                              output_final_state=output_final_state)


def short_conv_bidirectional(x: torch.Tensor, weight: torch.Tensor,
                             bias: torch.Tensor | None = None, *, activation: str | None = None,
                             splits: list[int] | None = None,
                             backend: str = "auto") -> tuple[torch.Tensor, ...]:
    """Causal conv of cat([x, flip_T(x)]) split into `splits`; see the module docstring."""
    check_short_conv_inputs(x, weight, bias, activation, True, None, False)
    D = x.shape[-1]
    splits = [D] if splits is None else [int(s) for s in splits]
    if any(s <= 0 for s in splits) or sum(splits) != D:
        raise ValueError(f"splits: expected positive widths summing to D={D}, got {splits}")
    which = resolve_backend(backend, x, weight, bias, has_triton=_HAS_TRITON,
                            algo="short_conv")
    if which == "triton" and x.shape[1] > 0 and x.dtype != torch.float64:
        if group_block_d(splits, D):
            return tuple(short_conv_bidir_fwd(x, weight, bias, ACT_CODES[activation],
                                                 splits, current_variant("bidirectional")))
        (y,) = short_conv_bidir_fwd(x, weight, bias, ACT_CODES[activation], [D],
                                       current_variant("bidirectional"))
        return tuple(t.contiguous() for t in y.split(splits, dim=-1))
    return short_conv_bidirectional_ref(x, weight, bias, activation=activation, splits=splits)
