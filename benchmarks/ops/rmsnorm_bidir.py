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


def _sm90_report(dtype: str = "bf16", V: int = 64) -> int:
    """Registers and spills of the RMSNorm kernels built for sm_90 on this host (no GPU:
    benchmarks/sm90.py), with the launcher's block sizes for head width V. Run with
    TRITON_INTERPRET unset. Returns #failures."""
    from sm90 import report

    import mixzoo.kernels.rmsnorm.triton_rmsnorm as R
    br, bv = R._blocks(V)
    P, F, I = "*" + dtype, "*fp32", "i32"
    ints = dict(R=I, T=I, M=I, NB_HALF=I, V=I)
    fails = 0
    for combine in (True, False):
        c = dict(COMBINE=combine, BLOCK_R=br, BLOCK_V=bv)
        fails += report(f"fwd c={int(combine)}", R._rmsnorm_fwd_kernel,
                        dict(x_ptr=P, w_ptr=F, y_ptr=P, rstd_ptr=F, eps="fp32", **ints), c,
                        div16={"V"})
        fails += report(f"bwd c={int(combine)}", R._rmsnorm_bwd_kernel,
                        dict(x_ptr=P, w_ptr=F, rstd_ptr=F, dy_ptr=P, dx_ptr=P, dwp_ptr=F,
                             **ints), c, div16={"V"})
    return fails


if __name__ == "__main__":
    import pathlib
    import sys
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))   # sm90
    if sys.argv[1:2] == ["--sm90-report"]:
        # python benchmarks/ops/rmsnorm_bidir.py --sm90-report [bf16] [64]
        a = sys.argv[2:] + ["bf16", "64"][len(sys.argv[2:]):]
        sys.exit(_sm90_report(a[0], int(a[1])))
    print("usage: python benchmarks/ops/rmsnorm_bidir.py --sm90-report [dtype] [V]; "
          "timings: python benchmarks/bench_kernels.py --op rmsnorm_bidir --check")
