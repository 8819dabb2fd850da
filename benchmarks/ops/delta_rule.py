"""Benchmark op: the delta rule (DeltaNet's token mixer), ours vs fla 0.6 and SDPA.

Anchors: fla `chunk_delta_rule` (when importable), fla `fused_recurrent_delta_rule` at
T <= 2048 only (it is ~10x slower), and torch SDPA causal attention at the same B,T,H,D as
the reference point (a different function: --check skips it). All take [B,T,H,D] tensors;
keys are L2-normalised (as DeltaNet feeds them), beta in (0, 1).
"""
from __future__ import annotations

import os

import torch
import torch.nn.functional as F

from mixzoo.kernels.delta_rule import delta_rule, delta_rule_chunk_ref

NAME = "delta_rule"
DEFAULT_SHAPES = [dict(B=4, T=4096, H=16, D=128), dict(B=8, T=2048, H=16, D=64),
                  dict(B=1, T=16384, H=16, D=128), dict(B=16, T=1024, H=16, D=128)]
NOT_COMPARABLE = {"torch_sdpa_causal"}
CHUNK = 64

try:
    from fla.ops.delta_rule import chunk_delta_rule, fused_recurrent_delta_rule
    _FLA_WHY = None
except Exception as e:  # noqa: BLE001 - the anchor is optional
    chunk_delta_rule = fused_recurrent_delta_rule = None
    _FLA_WHY = f"{type(e).__name__}: {e}"
_told = False


def make_inputs(shape: dict, dtype, device) -> dict:
    B, T, H, D = shape["B"], shape["T"], shape["H"], shape["D"]
    q = torch.randn(B, T, H, D, device=device, dtype=dtype)
    k = F.normalize(torch.randn(B, T, H, D, device=device, dtype=torch.float32), dim=-1).to(dtype)
    v = torch.randn(B, T, H, D, device=device, dtype=dtype)
    beta = torch.rand(B, T, H, device=device, dtype=dtype)
    return {n: t.requires_grad_(True) for n, t in dict(q=q, k=k, v=v, beta=beta).items()}


def _ours(x):
    return delta_rule(x["q"], x["k"], x["v"], x["beta"], backend="triton")[0]


def _other_inverse():
    """(row name, fn): ours with the chunk inverse that is not the default
    (MIXZOO_DELTA_INV, read by the forward at every call; the backward reuses the saved Tm)."""
    from mixzoo.kernels.delta_rule.params import stacked_inverse
    other = "blocks" if stacked_inverse() else "stacked"

    def fn(x):
        old = os.environ.get("MIXZOO_DELTA_INV")
        os.environ["MIXZOO_DELTA_INV"] = other
        try:
            return _ours(x)
        finally:
            if old is None:
                del os.environ["MIXZOO_DELTA_INV"]
            else:
                os.environ["MIXZOO_DELTA_INV"] = old
    return f"mixzoo_inv_{other}", fn


def _fla_chunk(x):
    return chunk_delta_rule(x["q"], x["k"], x["v"], x["beta"])[0]


def _fla_recurrent(x):
    return fused_recurrent_delta_rule(x["q"], x["k"], x["v"], x["beta"])[0]


def _sdpa(x):
    q, k, v = (x[n].transpose(1, 2) for n in "qkv")                 # [B,H,T,D]
    return F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2)


def implementations(shape: dict) -> dict:
    global _told
    impls = {"mixzoo": _ours}
    name, fn = _other_inverse()
    impls[name] = fn
    if chunk_delta_rule is not None:
        impls["fla_chunk"] = _fla_chunk
        if shape["T"] <= 2048:
            impls["fla_fused_recurrent"] = _fla_recurrent
    elif not _told:
        print(f"# fla anchors left out: {_FLA_WHY}")
        _told = True
    impls["torch_sdpa_causal"] = _sdpa
    return impls


def reference(inputs: dict) -> torch.Tensor:
    """fp32 chunkwise reference (tested equal to the step recurrence to 1e-5 on CPU)."""
    return delta_rule_chunk_ref(inputs["q"], inputs["k"], inputs["v"], inputs["beta"])[0]


def min_bytes(shape: dict, dtype, mode: str) -> int:
    """Each input read once, each output written once: fwd reads q,k,v,beta and writes o;
    the backward reads q,k,v,beta,do and writes dq,dk,dv,dbeta."""
    B, T, H, D = shape["B"], shape["T"], shape["H"], shape["D"]
    es = torch.empty((), dtype=dtype).element_size()
    fwd = (4 * B * T * H * D + B * T * H) * es
    if mode == "fwd":
        return fwd
    return fwd + (7 * B * T * H * D + 2 * B * T * H) * es


def flops(shape: dict, mode: str) -> float:
    """Chunkwise delta rule, per token-head forward: 10*C*d + 6*d^2 + C^2/3 (DESIGN.md);
    the backward about 3.7x the forward."""
    B, T, H, d = shape["B"], shape["T"], shape["H"], shape["D"]
    fwd = B * T * H * (10 * CHUNK * d + 6 * d * d + CHUNK * CHUNK / 3)
    return fwd if mode == "fwd" else fwd * 4.7


def _breakdown(shape: dict) -> None:
    """Per-launch times of our kernels (forward with saving, backward), for tuning notes."""
    from triton.testing import do_bench

    from mixzoo.kernels.delta_rule import chunk as ck
    from mixzoo.kernels.delta_rule.chunk import chunk_bwd, chunk_fwd
    x = make_inputs(shape, torch.bfloat16, "cuda")
    q, k, v, beta = (x[n].detach() for n in ("q", "k", "v", "beta"))
    s = q.shape[-1] ** -0.5
    o, ht, vn, tinv, hbuf = chunk_fwd(q, k, v, beta, s, None, False, False, True)
    do = torch.randn_like(o)
    t = {"fwd (save)": do_bench(lambda: chunk_fwd(q, k, v, beta, s, None, False, False, True),
                                return_mode="median"),
         "fwd (no save)": do_bench(lambda: chunk_fwd(q, k, v, beta, s, None, False, False, False),
                                   return_mode="median"),
         "bwd": do_bench(lambda: chunk_bwd(q, k, v, beta, s, None, False, vn, tinv, hbuf, do, None),
                         return_mode="median")}
    import os
    for inv in ("blocks", "stacked"):             # the two inversions of the prep kernel
        os.environ["MIXZOO_DELTA_INV"] = inv
        t[f"fwd (save, inv {inv})"] = do_bench(
            lambda: chunk_fwd(q, k, v, beta, s, None, False, False, True), return_mode="median")
    del os.environ["MIXZOO_DELTA_INV"]
    print(f"breakdown {shape}: " + " ".join(f"{n}={ms:.3f}ms" for n, ms in t.items())
          + f" | fused_bwd best config: {ck._fused_bwd_kernel.best_config}"
          + f" | prep best: {getattr(ck._prep_fwd_kernel, 'best_config', None)}")
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        for _ in range(3):
            o, ht, vn, tinv, hbuf = chunk_fwd(q, k, v, beta, s, None, False, False, True)
            chunk_bwd(q, k, v, beta, s, None, False, vn, tinv, hbuf, do, None)
        torch.cuda.synchronize()
    print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=10))
    if chunk_delta_rule is not None:          # fla's kernels at the same shape, for comparison
        from bench_kernels import kernel_table
        xf = {n: t.detach().requires_grad_(True) for n, t in x.items()}
        print("fla chunk_delta_rule, 3 fwd+bwd:\n" + kernel_table(_fla_chunk, xf, do))


def _sm90_report(K: int = 128, V: int = 128) -> int:
    """Registers and spills of every autotune config of the chunk kernels, built for sm_90
    on this host (benchmarks/sm90.py; no GPU needed). Returns the number of failed builds."""
    from sm90 import report

    import mixzoo.kernels.delta_rule.chunk as C
    P, F, I = "*bf16", "*fp32", "i32"
    base = dict(H=16, K=K, V=V, BK=max(16, 1 << (K - 1).bit_length()), USE_L2=False, PREC="tf32")
    bv = max(16, 1 << (V - 1).bit_length())
    rows = dict(w=P, u=P, tinv=F, T=I, k=P, v=P, beta=P)
    fails = sum(report(f"prep stacked={st}", C._prep_fwd_kernel, rows,
                       dict(base, BV=bv, SAVE_T=True, STACKED=st)) for st in (True, False))
    fails += report("fused_bwd", C._fused_bwd_kernel,
                    dict(q=P, k=P, v=P, beta=P, vn=P, tinv=F, hbuf=P, dhbuf=P, do=P, dq=P, dk=P,
                         dv=P, dbeta=P, scale="fp32", T=I), base)
    return fails


if __name__ == "__main__":
    import pathlib
    import sys
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))   # bench_kernels, sm90
    if sys.argv[1:2] == ["--sm90-report"]:        # e.g. ... --sm90-report 128 128
        sys.exit(_sm90_report(*(int(a) for a in sys.argv[2:4])))
    for arg in sys.argv[1:] or ["4,4096,16,128"]:
        _breakdown(dict(zip("BTHD", (int(a) for a in arg.split(",")))))
