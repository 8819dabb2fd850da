"""Benchmark op: depthwise causal short convolution (k=4, SiLU), ours vs fla.

Ours: "mixzoo" is the default kernel variant (v2 since H100 call 10: the streaming forward
+ unrolled backward of triton_stream.py, 64 rows per program here; MIXZOO_CONV1D_VARIANT
overrides), "mixzoo_v1" the previous kernels (triton_conv.py), "mixzoo_v2_c128" v2 at 128
rows per program. At exit the autotuner's choice for every conv kernel is printed
("# autotune ...").

Shapes are B,T,H,D with C = H*D channels (the harness's shape format); W = 4, no bias
(fla ShortConvolution's default). Anchors: fla `causal_conv1d(..., backend="triton")`
(what fla's ShortConvolution runs) where importable; torch's grouped conv1d (cuDNN);
and "copy_bw", a pure memory op moving exactly this op's minimum bytes (forward: read x,
write y; backward: read dy and x, write dx), so its GB/s column is the measured copy
bandwidth and "ours speedup" against it is the fraction of copy bandwidth we reach.
"""
from __future__ import annotations

import atexit

import torch
import torch.nn.functional as F

from mixzoo.kernels.conv1d import short_conv, short_conv_vec_ref
from mixzoo.kernels.conv1d import ops as conv_ops
from mixzoo.kernels.conv1d import triton_conv, triton_stream

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


def _variant(name, chunk=None):
    def run(x):
        with conv_ops.use_variant(name, chunk, chunk):
            return _ours(x)
    return run


def print_autotune_choices():
    """One line per autotuned conv kernel: {autotune key: chosen config}."""
    for mod, names in ((triton_conv, ("_conv_fwd_kernel", "_conv_bwd_kernel")),
                       (triton_stream, ("_conv_fwd_stream_kernel", "_conv_bwd_stream_kernel"))):
        for n in names:
            cache = getattr(getattr(mod, n), "cache", {})
            if cache:
                print(f"# autotune {n}: " + "; ".join(f"{k} -> {v}" for k, v in cache.items()),
                      flush=True)


atexit.register(print_autotune_choices)


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
    # ours (default variant) first, then v1, the anchors, and the chunk comparison last
    impls = {"mixzoo": _ours, "mixzoo_v1": _variant("v1")}
    if fla_causal_conv1d is not None:
        impls["fla_triton"] = _fla
    elif not _told:
        print(f"# fla anchor left out: {_FLA_WHY}")
        _told = True
    impls["copy_bw"] = _copy
    impls["mixzoo_v2_c128"] = _variant("v2", 128)
    impls["torch_conv1d"] = _torch_conv
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


def _sm90_report() -> int:
    """Registers and spills of every autotune config of the v1 and v2 conv kernels at the
    benchmark case (W=4, SiLU, no bias; causal one group, and bidirectional q|k|v), built
    for sm_90 on this host with the launch-time alignment specialization
    (benchmarks/sm90.py; no GPU). Returns the number of failed builds."""
    from sm90 import report
    P, F, I = "*bf16", "*fp32", "i32"
    ints = dict(sxb=I, sxt=I, B=I, T=I, D=I, S1=I, S2=I)
    div16 = ("sxb", "sxt", "T", "D", "S1", "S2", "n_chunks", "CHUNK")
    fwd_t = dict(x_ptr=P, w_ptr=P, b_ptr=P, h0_ptr=P, y0_ptr=P, y1_ptr=P, y2_ptr=P, **ints)
    bwd_t = dict(x_ptr=P, w_ptr=P, b_ptr=P, h0_ptr=P, dy0_ptr=P, dy1_ptr=P, dy2_ptr=P,
                 dx_ptr=P, dwp_ptr=F, dbp_ptr=F, n_chunks=I, **ints)
    fails = 0
    for bidir, ng, bd in ((False, 1, 256), (True, 3, 128)):
        c = dict(W=W, LEFT=W - 1, HAS_BIAS=False, HAS_H0=False, ACT=2, BIDIR=bidir, NG=ng)
        tag = "bidir " if bidir else ""
        fails += report(f"{tag}v1 fwd", triton_conv._conv_fwd_kernel, fwd_t,
                        dict(c, BLOCK_D=min(bd, 128)), div16)
        fails += report(f"{tag}v1 bwd", triton_conv._conv_bwd_kernel, bwd_t,
                        dict(c, BLOCK_D=bd, CHUNK=64), div16)
        fails += report(f"{tag}v2 fwd", triton_stream._conv_fwd_stream_kernel,
                        dict(fwd_t, CHUNK=I),
                        dict(c, BLOCK_D=bd, FIRST=0, LAST=W - 1 if bidir else 0), div16)
        fails += report(f"{tag}v2 bwd", triton_stream._conv_bwd_stream_kernel,
                        dict(bwd_t, CHUNK=I), dict(c, BLOCK_D=bd), div16)
    return fails


if __name__ == "__main__":
    import pathlib
    import sys
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))   # sm90
    if sys.argv[1:2] == ["--sm90-report"]:     # python benchmarks/ops/conv1d.py --sm90-report
        sys.exit(_sm90_report())
    sys.exit("usage: python benchmarks/ops/conv1d.py --sm90-report "
             "(timings: benchmarks/bench_kernels.py --op conv1d)")
