"""Benchmark op: causal global softmax attention, ours vs torch SDPA.

Anchors: torch `scaled_dot_product_attention(is_causal=True)` with the dispatcher's own
choice ("sdpa_default") and pinned to each backend that runs here (flash, cuDNN,
memory-efficient), so the table shows SDPA's best available backend. All take the same
[B,T,H,D] tensors (SDPA sees [B,H,T,D] transposed views).
"""
from __future__ import annotations

import os

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


def _variant(fwd: str, bwd: str):
    """Ours with a named forward/backward kernel variant (see triton_fwd.FWD_VARIANTS,
    triton_bwd.BWD_VARIANTS); the default one is the "mixzoo" row. The window comes from
    the inputs when they carry one (the swa op reuses these rows)."""
    from mixzoo.kernels.attention.ops import attention_triton_lse

    def fn(x):
        return attention_triton_lse(x["q"], x["k"], x["v"], causal=True,
                                    window=x.get("window"), fwd_variant=fwd,
                                    bwd_variant=bwd)[0]
    return fn


# extra rows of ours after the anchors: (name, forward variant, backward variant); "mixzoo"
# is the default (triton_fwd.DEFAULT_FWD / triton_bwd.DEFAULT_BWD, by window). Each variant
# autotunes 4-8 candidates on its first call, so the default rows are the most telling ones;
# MIXZOO_BENCH_VARIANTS=all adds the rest (atomic and TMA backward forms: slower in GPU
# call 10), MIXZOO_BENCH_VARIANTS=name,name,... keeps only those rows ("" = none).
VARIANTS = [("mixzoo_old_default", "base", "split"), ("mixzoo_bwd_split", "tma_fold", "split"),
            ("mixzoo_fwd_tune2_fold", "tune2_fold", "dqdelta"),
            ("mixzoo_bwd_dqdelta2", "tma_fold", "dqdelta2")]
MORE_VARIANTS = [("mixzoo_bwd_split2", "tma_fold", "split2"),
                 ("mixzoo_tune2_fold_dqdelta2", "tune2_fold", "dqdelta2"),
                 ("mixzoo_tma_atomicred", "tma", "atomic_tmared"),
                 ("mixzoo_tma_atomic", "tma", "atomic_tma"),
                 ("mixzoo_bwd_atomic", "base", "atomic"), ("mixzoo_fwd_tma", "tma", "split"),
                 ("mixzoo_tma_split", "tma", "split_tma"),
                 ("mixzoo_tma_dqdelta", "tma", "dqdelta_tma"),
                 ("mixzoo_fwd_tune2", "tune2", "split")]


def variant_rows() -> dict:
    """Name -> fn of the variant rows MIXZOO_BENCH_VARIANTS selects (comment above)."""
    keep = os.environ.get("MIXZOO_BENCH_VARIANTS")
    rows = VARIANTS + MORE_VARIANTS if keep is not None else VARIANTS
    names = (None if keep is None or keep == "all"
             else {n.strip() for n in keep.split(",") if n.strip()})
    return {name: _variant(f, b) for name, f, b in rows if names is None or name in names}


def implementations(shape: dict) -> dict:
    impls = {"mixzoo": _ours}
    impls["sdpa_default"] = _sdpa
    try:
        from torch.nn.attention import SDPBackend
        for name, be in (("sdpa_flash", SDPBackend.FLASH_ATTENTION),
                         ("sdpa_cudnn", SDPBackend.CUDNN_ATTENTION),
                         ("sdpa_efficient", SDPBackend.EFFICIENT_ATTENTION)):
            impls[name] = _pinned(be)  # a backend that cannot run reports its error row
    except ImportError as e:  # pragma: no cover - old torch
        print(f"# pinned SDPA backends left out: {e}")
    impls.update(variant_rows())
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


def _tuning(name: str, tuner) -> str:
    """The autotuner's pick and every candidate's time (ms) after it has run."""
    best = getattr(tuner, "best_config", None)
    if best is None:
        return f"{name}: not run"
    tim = getattr(tuner, "configs_timings", None) or {}
    cands = ", ".join(f"{c.kwargs}/w{c.num_warps}/s{c.num_stages}"
                      f"{f'/r{c.maxnreg}' if c.maxnreg else ''}="
                      f"{(t[0] if isinstance(t, (list, tuple)) else t):.3f}"
                      for c, t in tim.items())
    return (f"{name}: best {best.kwargs}/w{best.num_warps}/s{best.num_stages}"
            f"{f'/r{best.maxnreg}' if best.maxnreg else ''} | {cands}")


# variants timed by the breakdown (MIXZOO_BREAKDOWN_VARIANTS=all: every one)
BREAKDOWN_FWD = ("base", "tma_fold", "tune2_fold")
BREAKDOWN_BWD = ("split", "dqdelta", "split2", "dqdelta2")


def _breakdown(shape: dict, window: int | None = None) -> None:
    """Per-kernel times of our forward and backward launches for the BREAKDOWN_* variants
    (each times its kernels alone: no autograd, no allocation of the inputs), and each
    autotuner's candidates (the numbers behind its choice)."""
    from triton.testing import do_bench

    from mixzoo.kernels.attention import triton_bwd, triton_fwd
    x = make_inputs(shape, torch.bfloat16, "cuda")
    q, k, v = (x[n].detach() for n in "qkv")
    s, w = shape["D"] ** -0.5, window or 0
    o, lse = triton_fwd.attn_fwd(q, k, v, True, w, s)
    do = torch.randn_like(o)
    every = os.environ.get("MIXZOO_BREAKDOWN_VARIANTS") == "all"
    for fv in triton_fwd.FWD_VARIANTS if every else BREAKDOWN_FWD:
        t = do_bench(lambda: triton_fwd.attn_fwd(q, k, v, True, w, s, variant=fv),
                     return_mode="median")
        print(f"breakdown {shape} window={window}: fwd[{fv}] {t:.3f} ms", flush=True)
    for bv in triton_bwd.BWD_VARIANTS if every else BREAKDOWN_BWD:
        t = do_bench(lambda: triton_bwd.attn_bwd(do, q, k, v, o, lse, True, w, s, variant=bv),
                     return_mode="median")
        print(f"breakdown {shape} window={window}: bwd[{bv}] {t:.3f} ms", flush=True)
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
            for _ in range(3):
                triton_bwd.attn_bwd(do, q, k, v, o, lse, True, w, s, variant=bv)
            torch.cuda.synchronize()
        print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=6))
    tuners = [("fwd " + n, t) for n, t in triton_fwd.FWD_TUNERS.items()]
    tuners += [(n, t) for n, t in vars(triton_bwd).items() if n.endswith("_tuned")]
    for name, tuner in tuners:
        print(_tuning(name, tuner), flush=True)


def _sm90_report(D: int = 128) -> int:
    """Registers and spill bytes of every autotune config of the forward and backward
    kernels (all variants), built for sm_90 on this host without a GPU. Pointer and
    stride arguments carry the runtime's divisibility-by-16 specialisation (without it
    the loads are not pipelined and every config looks different). Run with
    TRITON_INTERPRET unset. Returns the number of failed builds."""
    import inspect
    import os
    import subprocess
    import tempfile

    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from mixzoo.kernels.attention import triton_bwd as TB
    from mixzoo.kernels.attention import triton_fwd as TF
    cuobj = os.path.join(os.path.dirname(triton.__file__), "backends/nvidia/bin/cuobjdump")
    bd = max(16, triton.next_power_of_2(D))
    flags = dict(CAUSAL=True, HAS_WINDOW=False, HEAD_DIM=D, BLOCK_D=bd, DOT_PREC="tf32")
    jobs = [("fwd base", TF.attn_fwd_tuned, {}), ("fwd tune2", TF.attn_fwd_tune2, {}),
            ("fwd tma", TF.attn_fwd_tma, dict(USE_TMA=True)),
            ("fwd tma fold", TF.attn_fwd_tma, dict(USE_TMA=True, FOLD=True)),
            ("dkdv", TB.dkdv_tuned, {}), ("dkdv atomic", TB.dkdv_atomic_tuned,
                                          dict(ATOMIC_DQ=True)),
            ("dq", TB.dq_tuned, {}), ("dq dqdelta", TB.dq_delta_tuned, dict(FUSE_DELTA=True)),
            ("dkdv tma", TB.dkdv_tma_tuned, dict(USE_TMA=True)),
            ("dkdv atom tma", TB.dkdv_atomic_tma_tuned, dict(ATOMIC_DQ=True, USE_TMA=True)),
            ("dkdv tmared", TB.dkdv_atomic_tmared_tuned,
             dict(ATOMIC_DQ=True, USE_TMA=True, DQ_TMA_REDUCE=True)),
            ("dq tma", TB.dq_tma_tuned, dict(USE_TMA=True)),
            ("dkdv2", TB.dkdv2_tuned, {}), ("dq2", TB.dq2_tuned, {}),
            ("dq dqdelta2", TB.dq_delta2_tuned, dict(FUSE_DELTA=True))]
    fails = 0
    for name, kernel, extra in jobs:
        fn = kernel.fn
        for cfg in kernel.configs:
            defaults = {pa.name: pa.default for pa in fn.params
                        if pa.is_constexpr and pa.default is not inspect.Parameter.empty}
            consts = {**defaults, **flags, **extra, **cfg.kwargs}
            sig, attrs = {}, {}
            for i, a in enumerate(fn.arg_names):
                if a in consts:
                    sig[a] = "constexpr"
                elif a.endswith("_desc"):
                    if not extra.get("USE_TMA"):
                        sig[a], consts[a] = "constexpr", None
                        continue
                    if a == "dqa_desc" and not extra.get("DQ_TMA_REDUCE"):
                        sig[a], consts[a] = "constexpr", None
                        continue
                    rows = consts["BLOCK_N" if a in ("k_desc", "v_desc") else "BLOCK_M"]
                    dt = "fp32" if a == "dqa_desc" else "bf16"
                    sig[a] = f"tensordesc<{dt}[1,{rows},1,{bd}]>"
                elif a.endswith("_ptr"):
                    sig[a] = "*fp32" if a in ("lse_ptr", "delta_ptr", "dqa_ptr") else "*bf16"
                    attrs[(i,)] = [["tt.divisibility", 16]]
                elif a in ("qk_scale", "sm_scale"):
                    sig[a] = "fp32"
                else:
                    sig[a] = "i32"
                    if a.startswith("s") and a[-1] in "bth" and a != "split_len":
                        attrs[(i,)] = [["tt.divisibility", 16]]  # strides: multiples of 16
            if "FUSE_DELTA" in fn.arg_names and not extra.get("FUSE_DELTA"):
                # the dq kernel without FUSE_DELTA: o_ptr=None and its strides stay defaults
                for a in ("o_ptr", "sob", "sot", "soh"):
                    if a in sig:
                        sig[a] = "constexpr"
                        consts[a] = None if a == "o_ptr" else 0
                        attrs.pop((fn.arg_names.index(a),), None)
            try:
                ck = triton.compile(
                    ASTSource(fn=fn, signature=sig, attrs=attrs, constexprs={
                        (fn.arg_names.index(n),): x for n, x in consts.items()
                        if n in fn.arg_names}),
                    target=GPUTarget("cuda", 90, 32),
                    options={"num_warps": cfg.num_warps, "num_stages": cfg.num_stages,
                             **({"maxnreg": cfg.maxnreg} if cfg.maxnreg else {})})
                with tempfile.NamedTemporaryFile("wb", suffix=".cubin", delete=False) as fh:
                    fh.write(ck.asm["cubin"])
                out = subprocess.run([cuobj, "-res-usage", fh.name], capture_output=True,
                                     text=True).stdout
                os.unlink(fh.name)
                res = " ".join(ln.strip().split(" SHARED")[0] for ln in out.splitlines()
                               if "REG" in ln)
                mr = f" maxnreg{cfg.maxnreg}" if cfg.maxnreg else ""
                print(f"{name:<13} {cfg.kwargs} w{cfg.num_warps} s{cfg.num_stages}{mr}: {res} "
                      f"SMEM:{ck.metadata.shared}", flush=True)
            except Exception as e:  # noqa: BLE001 - report every config, then count
                fails += 1
                print(f"{name:<12} {cfg.kwargs}: FAILED {type(e).__name__}: {str(e)[:300]}")
    return fails


if __name__ == "__main__":
    import sys
    if sys.argv[1:2] == ["--sm90-report"]:  # e.g. ... --sm90-report 128 (head dim)
        sys.exit(_sm90_report(*(int(a) for a in sys.argv[2:3])))
    for arg in sys.argv[1:] or ["4,4096,16,128"]:
        vals = [int(a) for a in arg.split(",")]
        _breakdown(dict(zip("BTHD", vals[:4])), vals[4] if len(vals) > 4 else None)
