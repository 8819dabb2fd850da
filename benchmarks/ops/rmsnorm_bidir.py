"""Benchmark op: vision DeltaNet's output norm, the two scan directions of a doubled batch
combined (u[b,t] = x[b,t] + x[B+b,T-1-t]) and RMS-normed per head, ours fused vs the plain
torch path it replaced (flip + add + mixzoo.blocks.norms.RMSNorm math).

Shapes are B,T,H,D: x is [2B,T,H,D] (vision DeltaNet ViT-S at 224 px: B128 T196 H6 D64).
Minimum bytes: forward reads both halves and writes y (3 x [B,T,H,D]); the backward reads
x and dy and writes dx (5 more).
"""
from __future__ import annotations

import torch

from mixzoo.kernels.rmsnorm import rms_norm, rms_norm_ref

NAME = "rmsnorm_bidir"
DEFAULT_SHAPES = [dict(B=128, T=196, H=6, D=64), dict(B=8, T=4096, H=6, D=64)]
EPS = 1e-5


def make_inputs(shape: dict, dtype, device) -> dict:
    x = torch.randn(2 * shape["B"], shape["T"], shape["H"], shape["D"], device=device,
                    dtype=dtype)
    w = 1 + 0.1 * torch.randn(shape["D"], device=device, dtype=torch.float32)
    return {"x": x.requires_grad_(True), "weight": w.requires_grad_(True)}


def _ours(inp):
    return rms_norm(inp["x"], inp["weight"], eps=EPS, combine_directions=True, backend="triton")


def _torch(inp):
    x = inp["x"]
    B = x.shape[0] // 2
    u = x[:B] + x[B:].flip(dims=[1])
    uf = u.float()
    y = uf * torch.rsqrt(uf.pow(2).mean(-1, keepdim=True) + EPS)
    return (y * inp["weight"].float()).to(x.dtype)


def implementations(shape: dict) -> dict:
    return {"mixzoo": _ours, "torch_flip_add_rmsnorm": _torch}


def reference(inputs: dict) -> torch.Tensor:
    return rms_norm_ref(inputs["x"].float(), inputs["weight"].float(), eps=EPS,
                        combine_directions=True)


def min_bytes(shape: dict, dtype, mode: str) -> int:
    n = shape["B"] * shape["T"] * shape["H"] * shape["D"]
    es = torch.empty((), dtype=dtype).element_size()
    return 3 * n * es if mode == "fwd" else 8 * n * es


def flops(shape: dict, mode: str) -> float:
    n = shape["B"] * shape["T"] * shape["H"] * shape["D"]
    return 5.0 * n if mode == "fwd" else 15.0 * n
