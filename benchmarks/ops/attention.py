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


def _breakdown(shape: dict, window: int | None = None) -> None:
    """Per-kernel times of our forward and backward launches and the autotuned configs."""
    from triton.testing import do_bench

    from mixzoo.kernels.attention import triton_bwd, triton_fwd
    x = make_inputs(shape, torch.bfloat16, "cuda")
    q, k, v = (x[n].detach() for n in "qkv")
    s, w = shape["D"] ** -0.5, window or 0
    o, lse = triton_fwd.attn_fwd(q, k, v, True, w, s)
    do = torch.randn_like(o)
    t_fwd = do_bench(lambda: triton_fwd.attn_fwd(q, k, v, True, w, s), return_mode="median")
    t_bwd = do_bench(lambda: triton_bwd.attn_bwd(do, q, k, v, o, lse, True, w, s),
                     return_mode="median")
    print(f"breakdown {shape} window={window}: fwd={t_fwd:.3f}ms bwd={t_bwd:.3f}ms | configs: "
          f"fwd {triton_fwd.attn_fwd_tuned.best_config}, "
          f"dkdv {triton_bwd.dkdv_tuned.best_config}, dq {triton_bwd.dq_tuned.best_config}")
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        for _ in range(3):
            triton_bwd.attn_bwd(do, q, k, v, o, lse, True, w, s)
        torch.cuda.synchronize()
    print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=6))


if __name__ == "__main__":
    import sys
    for arg in sys.argv[1:] or ["4,4096,16,128"]:
        vals = [int(a) for a in arg.split(",")]
        _breakdown(dict(zip("BTHD", vals[:4])), vals[4] if len(vals) > 4 else None)
