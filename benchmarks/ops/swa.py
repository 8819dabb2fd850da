"""Benchmark op: causal sliding-window attention, ours vs FlexAttention.

Each query sees its W most recent keys, itself included. Anchor: torch FlexAttention
(torch.compile'd) with the equivalent causal+window block mask, built once per shape.
Shapes carry W; from the command line `--shapes B,T,H,D` uses W=512.
"""
from __future__ import annotations


import torch

from mixzoo.kernels.attention import attention, attention_chunked_ref

NAME = "swa"
DEFAULT_SHAPES = [dict(B=4, T=4096, H=16, D=128, W=512), dict(B=1, T=16384, H=16, D=128, W=2048)]
DEFAULT_W = 512

try:
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention
    _flex = torch.compile(flex_attention, dynamic=False)
    _FLEX_WHY = None
except Exception as e:  # noqa: BLE001 - the anchor is optional
    _flex = None
    _FLEX_WHY = f"{type(e).__name__}: {e}"


def _w(shape: dict) -> int:
    return shape.get("W", DEFAULT_W)


def make_inputs(shape: dict, dtype, device) -> dict:
    B, T, H, D = shape["B"], shape["T"], shape["H"], shape["D"]
    x = {n: torch.randn(B, T, H, D, device=device, dtype=dtype).requires_grad_(True)
         for n in "qkv"}
    x["window"] = _w(shape)  # not a tensor: carried to the implementations
    return x


def _ours(x):
    return attention(x["q"], x["k"], x["v"], causal=True, window=x["window"], backend="triton")


def _flex_impl(shape: dict):
    W, T = _w(shape), shape["T"]

    def mask_mod(b, h, q_idx, kv_idx):
        return (q_idx >= kv_idx) & (q_idx - kv_idx < W)

    block_mask = create_block_mask(mask_mod, None, None, T, T, device="cuda")

    def fn(x):
        q, k, v = (x[n].transpose(1, 2) for n in "qkv")  # [B,H,T,D]
        return _flex(q, k, v, block_mask=block_mask).transpose(1, 2)
    return fn


def _variant_rows() -> dict:
    """Ours with other kernel variants: the attention op's rows (benchmarks/ops/attention.py,
    MIXZOO_BENCH_VARIANTS), which take the window from the inputs."""
    from bench_kernels import load_op
    return load_op("attention").variant_rows()


def implementations(shape: dict) -> dict:
    impls = {"mixzoo": _ours}
    if _flex is not None:
        impls["flex_attention"] = _flex_impl(shape)
    else:
        print(f"# FlexAttention left out: {_FLEX_WHY}")
    impls.update(_variant_rows())
    return impls


def reference(inputs: dict, block: int = 1024) -> torch.Tensor:
    """fp32 reference by query blocks: each block attends (bottom-right aligned) to the
    key slab [start - W + 1, end), so memory grows with T*W, not T^2."""
    q, k, v, W = inputs["q"], inputs["k"], inputs["v"], inputs["window"]
    T = q.shape[1]
    outs = []
    for start in range(0, T, block):
        end = min(start + block, T)
        lo = max(0, start - W + 1)
        outs.append(attention_chunked_ref(q[:, start:end], k[:, lo:end], v[:, lo:end],
                                          causal=True, window=W))
    return torch.cat(outs, dim=1)  # [B,T,H,D]


def _pairs(T: int, W: int) -> float:
    """Visible (query, key) pairs: sum_i min(i+1, W)."""
    W = min(W, T)
    return W * (W + 1) / 2 + (T - W) * W


def min_bytes(shape: dict, dtype, mode: str) -> int:
    B, T, H, D = shape["B"], shape["T"], shape["H"], shape["D"]
    es = torch.empty((), dtype=dtype).element_size()
    n, lse = B * T * H * D * es, B * H * T * 4
    fwd = 4 * n + lse
    return fwd if mode == "fwd" else fwd + 8 * n + lse


def flops(shape: dict, mode: str) -> float:
    """4*D FLOPs per visible pair forward; backward 2.5x."""
    B, H, D = shape["B"], shape["H"], shape["D"]
    fwd = 4.0 * B * H * D * _pairs(shape["T"], _w(shape))
    return fwd if mode == "fwd" else 3.5 * fwd
