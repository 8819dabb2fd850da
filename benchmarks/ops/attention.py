"""Benchmark op: causal global softmax attention, ours vs torch SDPA.

Anchors: torch `scaled_dot_product_attention(is_causal=True)` with the dispatcher's own
choice ("sdpa_default") and pinned to each backend that runs here (flash, cuDNN,
memory-efficient), so the table shows SDPA's best available backend. All take the same
[B,T,H,D] tensors (SDPA sees [B,H,T,D] transposed views).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from mixzoo.kernels.attention import attention, attention_chunked_ref

NAME = "attention"
DEFAULT_SHAPES = [dict(B=4, T=4096, H=16, D=128)]


def make_inputs(shape: dict, dtype, device) -> dict:
    B, T, H, D = shape["B"], shape["T"], shape["H"], shape["D"]
    return {n: torch.randn(B, T, H, D, device=device, dtype=dtype).requires_grad_(True)
            for n in "qkv"}


def _ours(x):
    return attention(x["q"], x["k"], x["v"], causal=True, backend="triton")


def _sdpa(x):
    q, k, v = (x[n].transpose(1, 2) for n in "qkv")  # [B,H,T,D]
    return F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2)


def _pinned(backend):
    from torch.nn.attention import sdpa_kernel

    def fn(x):
        with sdpa_kernel(backend):
            return _sdpa(x)
    return fn


def implementations(shape: dict) -> dict:
    impls = {"mixzoo": _ours, "sdpa_default": _sdpa}
    try:
        from torch.nn.attention import SDPBackend
        for name, be in (("sdpa_flash", SDPBackend.FLASH_ATTENTION),
                         ("sdpa_cudnn", SDPBackend.CUDNN_ATTENTION),
                         ("sdpa_efficient", SDPBackend.EFFICIENT_ATTENTION)):
            impls[name] = _pinned(be)  # a backend that cannot run reports its error row
    except ImportError as e:  # pragma: no cover - old torch
        print(f"# pinned SDPA backends left out: {e}")
    return impls


def reference(inputs: dict) -> torch.Tensor:
    """fp32 online-softmax reference (tested equal to the naive definition on CPU)."""
    return attention_chunked_ref(inputs["q"], inputs["k"], inputs["v"], causal=True)


def min_bytes(shape: dict, dtype, mode: str) -> int:
    """fwd reads q,k,v and writes o (+ fp32 lse); the backward reads q,k,v,o,do,lse and
    writes dq,dk,dv."""
    B, T, H, D = shape["B"], shape["T"], shape["H"], shape["D"]
    es = torch.empty((), dtype=dtype).element_size()
    n, lse = B * T * H * D * es, B * H * T * 4
    fwd = 4 * n + lse
    return fwd if mode == "fwd" else fwd + 8 * n + lse


def flops(shape: dict, mode: str) -> float:
    """Causal: 2 matmuls of 2*T*T*D/2 per head forward; the backward counts 2.5x that
    (the convention of the flash-attention papers)."""
    B, T, H, D = shape["B"], shape["T"], shape["H"], shape["D"]
    fwd = 4.0 * B * H * T * T * D / 2
    return fwd if mode == "fwd" else 3.5 * fwd
