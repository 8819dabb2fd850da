"""Autograd layer for the RMSNorm kernels, registered with torch.library (torch.compile
traces through it without graph breaks).

    mixzoo::rms_norm_fwd(x, weight, eps, combine) -> (y, rstd)
    mixzoo::rms_norm_bwd(dy, x, weight, rstd, combine) -> (dx, dw)

`rms_norm_triton` is the entry point. MIXZOO_RMSNORM_DISPATCH (read at every call) picks
the eager-mode layer: "op" (default) calls the custom op through `EagerOp` (as every other
kernel package does since session 4: eager calls run the op's own implementation, setup and
backward as an autograd.Function, skipping the dispatcher; torch.compile keeps the op);
"function" calls the same two launchers through this module's own autograd.Function (the
pre-EagerOp fast path, kept selectable). Under torch.compile the custom op is always used.
"""
from __future__ import annotations

import os

import torch

from .._common import EagerOp
from .triton_rmsnorm import rmsnorm_bwd, rmsnorm_fwd


@torch.library.custom_op("mixzoo::rms_norm_fwd", mutates_args=())
def rms_norm_fwd_op(x: torch.Tensor, weight: torch.Tensor, eps: float,
                    combine: bool) -> tuple[torch.Tensor, torch.Tensor]:
    return rmsnorm_fwd(x, weight, eps, combine)


@rms_norm_fwd_op.register_fake
def _(x, weight, eps, combine):
    shape = ((x.shape[0] // 2) if combine else x.shape[0],) + tuple(x.shape[1:])
    rows = (x.numel() // x.shape[-1] // (2 if combine else 1)) if x.numel() else 0
    return (torch.empty(shape, dtype=x.dtype, device=x.device),
            torch.empty(rows, dtype=torch.float32, device=x.device))


@torch.library.custom_op("mixzoo::rms_norm_bwd", mutates_args=())
def rms_norm_bwd_op(dy: torch.Tensor, x: torch.Tensor, weight: torch.Tensor,
                    rstd: torch.Tensor, combine: bool) -> tuple[torch.Tensor, torch.Tensor]:
    return rmsnorm_bwd(dy, x, weight, rstd, combine)


@rms_norm_bwd_op.register_fake
def _(dy, x, weight, rstd, combine):
    return (torch.empty(x.shape, dtype=x.dtype, device=x.device),
            torch.empty(weight.shape, dtype=weight.dtype, device=x.device))


def _setup_context(ctx, inputs, output):
    x, weight, eps, combine = inputs
    ctx.save_for_backward(x, weight, output[1])
    ctx.combine = combine


def _backward(ctx, dy, _drstd):
    x, weight, rstd = ctx.saved_tensors
    dx, dw = rms_norm_bwd(dy, x, weight, rstd, ctx.combine)
    return dx, dw, None, None


rms_norm_bwd = EagerOp(rms_norm_bwd_op)
rms_norm_fwd = EagerOp(rms_norm_fwd_op, _backward, _setup_context)   # registers the autograd


class _RMSNormFunction(torch.autograd.Function):
    """The custom op's forward and backward (same launchers), without custom_op dispatch."""

    @staticmethod
    def forward(ctx, x, weight, eps: float, combine: bool):
        y, rstd = rmsnorm_fwd(x, weight, eps, combine)
        ctx.save_for_backward(x, weight, rstd)
        ctx.combine = combine
        return y

    @staticmethod
    def backward(ctx, dy):
        x, weight, rstd = ctx.saved_tensors
        dx, dw = rmsnorm_bwd(dy, x, weight, rstd, ctx.combine)
        return dx, dw, None, None


DISPATCH_ENV = "MIXZOO_RMSNORM_DISPATCH"
DISPATCH_MODES = ("op", "function")


def dispatch_mode() -> str:
    mode = os.environ.get(DISPATCH_ENV, "op")
    if mode not in DISPATCH_MODES:
        raise ValueError(f"{DISPATCH_ENV}={mode!r}: expected one of {list(DISPATCH_MODES)}")
    return mode


def rms_norm_triton(x: torch.Tensor, weight: torch.Tensor, eps: float,
                    combine: bool) -> torch.Tensor:
    """y = rms_norm(x, weight) (see the package docstring) through the Triton kernels."""
    if dispatch_mode() == "function" and not torch.compiler.is_compiling():
        return _RMSNormFunction.apply(x, weight, eps, combine)
    return rms_norm_fwd(x, weight, eps, combine)[0]
