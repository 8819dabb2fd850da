"""Benchmark op: the bidirectional short conv of vision DeltaNet (k=4, SiLU), i.e. the causal
conv of the doubled batch cat([x, flip_T(x)]), ours in one kernel vs building the doubled
batch first.

Shapes are B,T,H,D with C = H*D channels (vision DeltaNet ViT-S at 224 px: B128 T196,
q|k|v = 3 x 384 channels -> H=3, D=384). Implementations:
    mixzoo            short_conv_bidirectional: reads x once, writes [2B,T,C]; the backward
                      returns one dx with both directions summed
    mixzoo_v2         the same with kernel variant v2 (triton_stream.py; see ops/conv1d.py)
    mixzoo_cat_flip   the previous vision path: short_conv(cat([x, flip(x)])) (flip, cat and
                      autograd's flip-back and add included)
    fla_cat_flip      fla's causal_conv1d (Triton) on the same doubled batch, where importable
Minimum bytes: forward reads x and writes y (3 tensors of [B,T,C]); the backward reads x and
dy and writes dx (4 more).
"""
from __future__ import annotations

import torch

from mixzoo.kernels.conv1d import short_conv, short_conv_bidirectional, short_conv_bidirectional_ref
from mixzoo.kernels.conv1d import ops as conv_ops

NAME = "conv1d_bidir"
DEFAULT_SHAPES = [dict(B=128, T=196, H=3, D=384), dict(B=8, T=4096, H=3, D=384)]
W = 4

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
    w = torch.randn(C, W, device=device, dtype=torch.float32) / W ** 0.5
    return {"x": x.requires_grad_(True), "weight": w.requires_grad_(True)}


def _doubled(x):
    return torch.cat([x, x.flip(dims=[1])], dim=0)  # [2B,T,C]


def _ours(inp):
    return short_conv_bidirectional(inp["x"], inp["weight"], activation="silu",
                                    backend="triton")[0]


def _ours_v2(inp):
    with conv_ops.use_variant("v2"):
        return _ours(inp)


def _cat_flip(inp):
    return short_conv(_doubled(inp["x"]), inp["weight"], activation="silu", backend="triton")[0]


def _fla(inp):
    return fla_causal_conv1d(_doubled(inp["x"]), inp["weight"].to(inp["x"].dtype),
                             activation="silu", backend="triton")[0]


def implementations(shape: dict) -> dict:
    global _told
    impls = {"mixzoo": _ours, "mixzoo_v2": _ours_v2, "mixzoo_cat_flip": _cat_flip}
    if fla_causal_conv1d is not None:
        impls["fla_cat_flip"] = _fla
    elif not _told:
        print(f"# fla anchor left out: {_FLA_WHY}")
        _told = True
    return impls


def reference(inputs: dict) -> torch.Tensor:
    return short_conv_bidirectional_ref(inputs["x"].float(), inputs["weight"].float(),
                                        activation="silu")[0]


def min_bytes(shape: dict, dtype, mode: str) -> int:
    n = shape["B"] * shape["T"] * shape["H"] * shape["D"]
    es = torch.empty((), dtype=dtype).element_size()
    return 3 * n * es if mode == "fwd" else 7 * n * es


def flops(shape: dict, mode: str) -> float:
    n = shape["B"] * shape["T"] * shape["H"] * shape["D"]
    fwd = 2.0 * W * 2 * n  # both directions
    return fwd if mode == "fwd" else 3 * fwd
