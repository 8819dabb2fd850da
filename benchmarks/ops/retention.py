"""Benchmark op: retention / scalar-decay linear attention, ours vs fla 0.6
`chunk_simple_gla` (same data-dependent gates) and SDPA.

Anchors: fla `chunk_simple_gla` (when importable) with the same per-token log decay
g [B,T,H] (logsigmoid(x)/16), and torch SDPA causal attention at the same B,T,H,D as a
reference point (a different function: --check skips it). All take [B,T,H,D].
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from mixzoo.kernels.retention import retention, retention_chunk_ref

NAME = "retention"
DEFAULT_SHAPES = [dict(B=4, T=4096, H=16, D=128), dict(B=1, T=16384, H=16, D=128),
                  dict(B=16, T=1024, H=16, D=128), dict(B=8, T=2048, H=16, D=64)]
NOT_COMPARABLE = {"torch_sdpa_causal"}
CHUNK = 64

try:
    from fla.ops.simple_gla import chunk_simple_gla
    _FLA_WHY = None
except Exception as e:  # noqa: BLE001 - the anchor is optional
    chunk_simple_gla = None
    _FLA_WHY = f"{type(e).__name__}: {e}"
_told = False


def make_inputs(shape: dict, dtype, device) -> dict:
    B, T, H, D = shape["B"], shape["T"], shape["H"], shape["D"]
    q, k, v = (torch.randn(B, T, H, D, device=device, dtype=dtype) for _ in range(3))
    g = F.logsigmoid(torch.randn(B, T, H, device=device, dtype=torch.float32)) / 16
    return {n: t.requires_grad_(True) for n, t in dict(q=q, k=k, v=v, g=g).items()}


def _ours(x):
    return retention(x["q"], x["k"], x["v"], x["g"], backend="triton")[0]


def _fla_chunk(x):
    return chunk_simple_gla(x["q"], x["k"], x["v"], g=x["g"])[0]


def _fla_chunk_forced(x):
    """fla's chunk_simple_gla with its Triton-version guard (#640: Triton 3.4-3.7.0 on Hopper
    gives wrong gated dq/dk/dg) switched off, so its speed can still be measured there. Its
    errors against the fp32 reference are printed by --check like everyone else's: read the
    ratio as a speed anchor only."""
    import fla.ops.common.chunk_o as fla_chunk_o
    before = fla_chunk_o.TRITON_ABOVE_3_7_1
    fla_chunk_o.TRITON_ABOVE_3_7_1 = True
    try:
        out = _fla_chunk(x)
    finally:
        fla_chunk_o.TRITON_ABOVE_3_7_1 = before
    return _GuardOff.apply(out)


class _GuardOff(torch.autograd.Function):
    """Identity that switches fla's guard off during the backward too (the guard sits in the
    backward's chunk_bwd_dqkwg)."""

    @staticmethod
    def forward(ctx, out):
        return out.view_as(out)

    @staticmethod
    def backward(ctx, grad):
        import fla.ops.common.chunk_o as fla_chunk_o
        fla_chunk_o.TRITON_ABOVE_3_7_1 = True       # set back by the next forward's finally
        return grad


def _sdpa(x):
    q, k, v = (x[n].transpose(1, 2) for n in "qkv")                 # [B,H,T,D]
    return F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2)


def implementations(shape: dict) -> dict:
    global _told
    impls = {"mixzoo": _ours}
    if chunk_simple_gla is not None:
        impls["fla_chunk_simple_gla"] = _fla_chunk
        impls["fla_chunk_simple_gla_guard_off"] = _fla_chunk_forced
    elif not _told:
        print(f"# fla anchor left out: {_FLA_WHY}")
        _told = True
    impls["torch_sdpa_causal"] = _sdpa
    return impls


def reference(inputs: dict) -> torch.Tensor:
    """fp32 chunked reference (tested equal to the step recurrence to 2e-5 on CPU)."""
    return retention_chunk_ref(inputs["q"], inputs["k"], inputs["v"], inputs["g"])[0]


def min_bytes(shape: dict, dtype, mode: str) -> int:
    """fwd reads q,k,v (dtype) and g (fp32), writes o; the backward reads q,k,v,g,do and
    writes dq,dk,dv (dtype) and dg (fp32)."""
    B, T, H, D = shape["B"], shape["T"], shape["H"], shape["D"]
    es = torch.empty((), dtype=dtype).element_size()
    fwd = 4 * B * T * H * D * es + 4 * B * T * H
    return fwd if mode == "fwd" else fwd + 7 * B * T * H * D * es + 8 * B * T * H


def flops(shape: dict, mode: str) -> float:
    """Chunkwise scalar-decay attention per token-head, forward: 4*d^2 + 4*C*d (as GLA);
    the backward about twice the forward."""
    B, T, H, d = shape["B"], shape["T"], shape["H"], shape["D"]
    fwd = B * T * H * (4 * d * d + 4 * CHUNK * d)
    return fwd if mode == "fwd" else 3 * fwd


def _breakdown(shape: dict) -> None:
    """Per-kernel CUDA times of our forward + backward (torch.profiler), for tuning notes."""
    x = make_inputs(shape, torch.bfloat16, "cuda")
    do = torch.randn_like(x["v"])
    for _ in range(3):                                    # autotune + compile outside
        _ours(x).backward(do)
    torch.cuda.synchronize()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        for _ in range(5):
            _ours(x).backward(do)
        torch.cuda.synchronize()
    print(f"breakdown {NAME} {shape} (5 fwd+bwd):")
    print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=14))


if __name__ == "__main__":
    import sys
    for arg in sys.argv[1:] or ["4,4096,16,128"]:
        _breakdown(dict(zip("BTHD", (int(a) for a in arg.split(",")))))
