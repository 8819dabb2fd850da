"""Benchmark op: gated linear attention (GLA), ours vs fla 0.6 `chunk_gla` and SDPA.

Anchors: fla `chunk_gla` (when importable) on the same tensors and gates, and torch SDPA
causal attention at the same B,T,H,D as a reference point (a different function:
--check skips it). All take [B,T,H,D]; the log forget gate g [B,T,H,D] is
logsigmoid(x)/16 as in the GLA paper (typical values -0.04, down to about -0.4).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from mixzoo.kernels.gla import gla, gla_chunk_ref

NAME = "gla"
DEFAULT_SHAPES = [dict(B=4, T=4096, H=16, D=128), dict(B=1, T=16384, H=16, D=128),
                  dict(B=16, T=1024, H=16, D=128), dict(B=8, T=2048, H=16, D=64)]
NOT_COMPARABLE = {"torch_sdpa_causal"}
CHUNK = 64

try:
    from fla.ops.gla import chunk_gla
    _FLA_WHY = None
except Exception as e:  # noqa: BLE001 - the anchor is optional
    chunk_gla = None
    _FLA_WHY = f"{type(e).__name__}: {e}"
_told = False


def make_inputs(shape: dict, dtype, device) -> dict:
    B, T, H, D = shape["B"], shape["T"], shape["H"], shape["D"]
    q, k, v = (torch.randn(B, T, H, D, device=device, dtype=dtype) for _ in range(3))
    g = (F.logsigmoid(torch.randn(B, T, H, D, device=device, dtype=torch.float32)) / 16).to(dtype)
    return {n: t.requires_grad_(True) for n, t in dict(q=q, k=k, v=v, g=g).items()}


def _ours(x):
    return gla(x["q"], x["k"], x["v"], x["g"], backend="triton")[0]


def _variant(name: str):
    """Ours with the chunk kernel variant `name` (ops.VARIANT, read by the forward; the
    backward follows the forward's choice), whatever MIXZOO_GLA_VARIANT says."""
    from mixzoo.kernels.gla import ops

    def run(x):
        old, ops.VARIANT = ops.VARIANT, name
        try:
            return _ours(x)
        finally:
            ops.VARIANT = old
    return run


# chunk variants timed side by side as mixzoo_<variant> (README "Kernel variants")
VARIANTS = ("v13", "v14")


def _fla_chunk(x):
    return chunk_gla(x["q"], x["k"], x["v"], x["g"])[0]


def _sdpa(x):
    q, k, v = (x[n].transpose(1, 2) for n in "qkv")                 # [B,H,T,D]
    return F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2)


def implementations(shape: dict) -> dict:
    global _told
    from mixzoo.kernels.gla import ops
    impls = {"mixzoo": _ours}                          # the default (MIXZOO_GLA_VARIANT or v13)
    impls.update({f"mixzoo_{v}": _variant(v) for v in VARIANTS if v != ops.VARIANT})
    if chunk_gla is not None:
        impls["fla_chunk_gla"] = _fla_chunk
    elif not _told:
        print(f"# fla anchor left out: {_FLA_WHY}")
        _told = True
    impls["torch_sdpa_causal"] = _sdpa
    return impls


def reference(inputs: dict) -> torch.Tensor:
    """fp32 chunked reference (tested equal to the step recurrence to 2e-5 on CPU)."""
    return gla_chunk_ref(inputs["q"], inputs["k"], inputs["v"], inputs["g"])[0]


def min_bytes(shape: dict, dtype, mode: str) -> int:
    """Each input read once, each output written once: fwd reads q,k,v,g, writes o;
    the backward reads q,k,v,g,do and writes dq,dk,dv,dg."""
    B, T, H, D = shape["B"], shape["T"], shape["H"], shape["D"]
    es = torch.empty((), dtype=dtype).element_size()
    fwd = 5 * B * T * H * D * es
    return fwd if mode == "fwd" else fwd + 9 * B * T * H * D * es


def flops(shape: dict, mode: str) -> float:
    """Chunkwise GLA per token-head, forward: state update and inter-chunk output
    2*d^2 each, intra-chunk scores and their product with v 2*C*d each (full C x C
    tiles): 4*d^2 + 4*C*d. The backward does about twice the forward's matrix work."""
    B, T, H, d = shape["B"], shape["T"], shape["H"], shape["D"]
    fwd = B * T * H * (4 * d * d + 4 * CHUNK * d)
    return fwd if mode == "fwd" else 3 * fwd


def _breakdown(shape: dict) -> None:
    """Per-kernel CUDA times of our forward + backward and of fla's (torch.profiler)."""
    from bench_kernels import kernel_table
    x = make_inputs(shape, torch.bfloat16, "cuda")
    do = torch.randn_like(x["v"])
    for v in VARIANTS:
        print(f"breakdown {NAME} {shape}, ours variant {v}, 5 fwd+bwd:\n"
              + kernel_table(_variant(v), x, do, iters=5))
    if chunk_gla is not None:
        print("fla chunk_gla, 5 fwd+bwd:\n" + kernel_table(_fla_chunk, x, do, iters=5))


def _sm90_report(dtype: str = "bf16", K: int = 128, V: int = 128) -> int:
    """Build every autotune config of the gla and retention chunk kernels for sm_90 on
    any host (no GPU needed: Triton's bundled ptxas) and print registers and stack
    (spill) bytes from cuobjdump (benchmarks/sm90.py). Run with TRITON_INTERPRET unset.
    Returns #failures."""
    import triton
    from sm90 import report

    import mixzoo.kernels.gla.chunk as G
    import mixzoo.kernels.gla.chunk_bwd as GB
    import mixzoo.kernels.gla.chunk_fwd as GF
    import mixzoo.kernels.retention.chunk as RC
    P, F, I = "*" + dtype, "*fp32", "i32"
    base = dict(H=16, K=K, V=V, BT=64, PREC="ieee" if dtype == "fp32" else "tf32")
    io = dict(T=I, scale="fp32")
    kernels = [
        ("gla fwd_gc", G._fwd_gc_kernel, dict(g=P, gc=F, T=I), dict(H=16, K=K, BT=64)),
        ("gla fwd_h", G._fwd_h_kernel, dict(k=P, v=P, gc=F, h=P, h0=F, ht=F, T=I),
         dict(base, HAS_H0=True, BH_HINT=64)),
        ("gla fwd_Ao", GF._fwd_Ao_kernel, dict(q=P, k=P, v=P, gc=F, h=P, A=F, o=P, **io),
         dict(H=16, K=K, V=V, BT=64, BC=16, PREC=base["PREC"], SPREAD=G.SAFE_SPREAD)),
        ("gla bwd_dh", G._bwd_dh_kernel, dict(q=P, do=P, gc=F, dht=F, dh=P, dh0=F, **io),
         dict(base, HAS_DHT=True, BH_HINT=64)),
        ("gla bwd_dv", G._bwd_dv_kernel,
         dict(k=P, v=P, gc=F, A=F, do=P, dh=P, dA=F, dv=P, T=I), base),
        ("gla bwd_intra", GB._bwd_intra_kernel, dict(q=P, k=P, gc=F, dA=F, dqi=F, dki=F, **io),
         dict(H=16, K=K, BT=64, BC=16, PREC=base["PREC"], SPREAD=G.SAFE_SPREAD)),
        *[(f"gla bwd_inter{' v14' if split else ''}", GB._bwd_inter_kernel,
           dict(q=P, k=P, v=P, gc=F, h=P, do=P, dh=P, dA=F, dqi=F, dki=F, dq=P, dk=P, dg=F,
                **io), dict(base, SPREAD=G.SAFE_SPREAD, SPLIT=split)) for split in (False, True)],
        ("ret fwd_h", RC._fwd_h_kernel, dict(k=P, v=P, g=F, sgb=I, sgt=I, sgh=I, gc=F, h=P,
                                             h0=F, ht=F, **io), dict(base, HAS_H0=True)),
        ("ret fwd_o", RC._fwd_o_kernel, dict(q=P, k=P, v=P, gc=F, h=P, o=P, **io), base),
        ("ret bwd_dh", RC._bwd_dh_kernel, dict(q=P, do=P, gc=F, dht=F, dh=P, dh0=F, **io),
         dict(base, HAS_DHT=True)),
        ("ret bwd_dqk", RC._bwd_dqk_kernel, dict(q=P, k=P, v=P, gc=F, h=P, do=P, dh=P, ht=F,
                                                 dq=P, dk=P, dgl=F, **io),
         dict(base, BK=min(64, max(16, triton.next_power_of_2(K))))),
        ("ret bwd_dv", RC._bwd_dv_kernel, dict(q=P, k=P, gc=F, do=P, dh=P, dv=P, **io), base),
    ]
    return sum(report(name, kernel, types, consts) for name, kernel, types, consts in kernels)


if __name__ == "__main__":
    import pathlib
    import sys
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))   # bench_kernels, sm90
    if sys.argv[1:2] == ["--sm90-report"]:
        # e.g. python benchmarks/ops/gla.py --sm90-report bf16 128 128
        a = sys.argv[2:] + ["bf16", "128", "128"][len(sys.argv[2:]):]
        sys.exit(_sm90_report(a[0], int(a[1]), int(a[2])))
    for arg in sys.argv[1:] or ["4,4096,16,128"]:
        _breakdown(dict(zip("BTHD", (int(a) for a in arg.split(",")))))
