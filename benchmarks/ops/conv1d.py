"""Benchmark op: depthwise causal short convolution (k=4, SiLU), ours vs fla.

Shapes are B,T,H,D with C = H*D channels (the harness's shape format); W = 4, no bias
(fla ShortConvolution's default). Anchors: fla `causal_conv1d(..., backend="triton")`
(what fla's ShortConvolution runs) where importable; torch's grouped conv1d (cuDNN);
and "copy_bw", a pure memory op moving exactly this op's minimum bytes (forward: read x,
write y; backward: read dy and x, write dx), so its GB/s column is the measured copy
bandwidth and "ours speedup" against it is the fraction of copy bandwidth we reach.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from mixzoo.kernels.conv1d import short_conv, short_conv_vec_ref

NAME = "conv1d"
DEFAULT_SHAPES = [dict(B=8, T=4096, H=1, D=4096)]
W = 4
NOT_COMPARABLE = {"copy_bw"}

try:
    from fla.modules.causal_conv1d import causal_conv1d as fla_causal_conv1d
    _FLA_WHY = None
except Exception as e:  # noqa: BLE001 - the anchor is optional
    fla_causal_conv1d = None
    _FLA_WHY = f"{type(e).__name__}: {e}"
_told = False


def make_inputs(shape: dict, dtype, device) -> dict:
    B, T, C = shape["B"], shape["T"], shape["H"] * shape["D"]
    x = torch.randn(B, T, C, device=device, dtype=dtype)
    w = torch.randn(C, W, device=device, dtype=dtype) / W ** 0.5
    return {"x": x.requires_grad_(True), "weight": w.requires_grad_(True)}


def _ours(x):
    return short_conv(x["x"], x["weight"], activation="silu", backend="triton")[0]


def _fla(x):
    return fla_causal_conv1d(x["x"], x["weight"], activation="silu", backend="triton")[0]


def _torch_conv(x):
    xt = F.pad(x["x"].transpose(1, 2), (W - 1, 0))  # [B,C,T+W-1]
    y = F.conv1d(xt, x["weight"][:, None, :], groups=xt.shape[1])
    return F.silu(y).transpose(1, 2)


class _CopyBW(torch.autograd.Function):
    """Forward y = copy(x) (read 1, write 1); backward dx = dy + x (read 2, write 1)."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x.clone()

    @staticmethod
    def backward(ctx, dy):
        (x,) = ctx.saved_tensors
        return dy + x


def _copy(x):
    return _CopyBW.apply(x["x"])


def implementations(shape: dict) -> dict:
    global _told
    impls = {"mixzoo": _ours}
    if fla_causal_conv1d is not None:
        impls["fla_triton"] = _fla
    elif not _told:
        print(f"# fla anchor left out: {_FLA_WHY}")
        _told = True
    impls["torch_conv1d"] = _torch_conv
    impls["copy_bw"] = _copy
    return impls


def reference(inputs: dict) -> torch.Tensor:
    return short_conv_vec_ref(inputs["x"], inputs["weight"], activation="silu")[0]


def min_bytes(shape: dict, dtype, mode: str) -> int:
    """fwd reads x, writes y; the backward reads x and dy, writes dx (weights negligible)."""
    n = shape["B"] * shape["T"] * shape["H"] * shape["D"]
    es = torch.empty((), dtype=dtype).element_size()
    return 2 * n * es if mode == "fwd" else 5 * n * es


def flops(shape: dict, mode: str) -> float:
    n = shape["B"] * shape["T"] * shape["H"] * shape["D"]
    fwd = 2.0 * W * n
    return fwd if mode == "fwd" else 3 * fwd
