"""Launch-parameter sweep of the delta-rule chunk kernels at one shape (bf16, GPU).

    python benchmarks/delta_sweep.py [B,T,H,D ...]      (default: 256,196,6,64, the
                                                        DeltaNet ViT-S scan at 224 px)

For each kernel, the launcher's own time (CUDA events, triton.testing.do_bench) with the
kernel's warps / stages / block forced through a proxy: the prep kernel (`prep`), the W
kernel, the state kernels (MIXZOO_DELTA_STATE_WARPS / _STAGES), and every autotune candidate
of the fused backward (`chunk_bwd`, the other backward kernels at their defaults). The
first row of each block is the current default. Informs the defaults in
`kernels/delta_rule/params.py` and the autotune lists of `chunk.py`.
"""
from __future__ import annotations

import os
import sys

import torch
from triton.testing import do_bench

import mixzoo.kernels.delta_rule.chunk as C


class _Forced:
    """Stands in for a kernel: `proxy[grid](*a, **kw)` launches `fn` with `extra` forced."""

    def __init__(self, kernel, extra: dict):
        self.kernel, self.extra = kernel, extra

    def __getitem__(self, grid):
        return lambda *a, **kw: self.kernel[grid](*a, **{**kw, **self.extra})


def _forced(name: str, fn, extra: dict, bench):
    orig = getattr(C, name)
    setattr(C, name, _Forced(fn, extra))
    try:
        return bench()
    except Exception as e:                  # a config that does not build or run
        return f"failed: {type(e).__name__}: {str(e)[:80]}"
    finally:
        setattr(C, name, orig)


def sweep(B: int, T: int, H: int, D: int) -> None:
    dev, dt = "cuda", torch.bfloat16
    g = torch.Generator(device=dev).manual_seed(0)
    q = torch.randn(B, T, H, D, device=dev, generator=g).to(dt)
    k = torch.nn.functional.normalize(torch.randn(B, T, H, D, device=dev, generator=g), dim=-1)
    k = k.to(dt)
    v = torch.randn(B, T, H, D, device=dev, generator=g).to(dt)
    beta = torch.rand(B, T, H, device=dev, generator=g).to(dt)
    do = torch.randn_like(v)
    s = D ** -0.5
    o, _, vn, tinv, hbuf = C.chunk_fwd(q, k, v, beta, s, None, False, False, True)
    ms = lambda f: f"{do_bench(f, warmup=10, rep=50):.4f}"      # noqa: E731
    fwd = lambda: C.chunk_fwd(q, k, v, beta, s, None, False, False, True)   # noqa: E731
    bwd = lambda: C.chunk_bwd(q, k, v, beta, s, None, False, vn, tinv, hbuf, do, None)  # noqa
    print(f"\n## B{B} T{T} H{H} D{D}: chunk_fwd {ms(fwd)} ms, chunk_bwd {ms(bwd)} ms (defaults)")
    print(f"prep alone (default): {ms(lambda: C.prep(k, v, beta, False, True))} ms")
    for nw in (4, 2, 8):
        for ns in (1, 2, 3):
            r = _forced("_prep_fwd_kernel", C._prep_fwd_kernel,
                        dict(num_warps=nw, num_stages=ns),
                        lambda: ms(lambda: C.prep(k, v, beta, False, True)))
            print(f"prep warps={nw} stages={ns}: {r}")
    w = torch.empty_like(k)
    for nw in (4, 2, 8):
        r = _forced("_w_kernel", C._w_kernel, dict(num_warps=nw), lambda: ms(
            lambda: C._w_kernel[(C.cdiv(T, 64), B * H)](
                k, beta, tinv, w, T, 0, H=H, K=D, BK=D, USE_L2=False, PREC="tf32", BMODE=0,
                num_warps=4)))
        print(f"w_kernel warps={nw}: {r}")
    for nw in (None, "4", "8"):
        for st in (None, "2", "3"):
            for var, val in (("MIXZOO_DELTA_STATE_WARPS", nw), ("MIXZOO_DELTA_STATE_STAGES", st)):
                if val is None:
                    os.environ.pop(var, None)
                else:
                    os.environ[var] = val
            print(f"state warps={nw or 'default'} stages={st or 'default'}: "
                  f"chunk_fwd {ms(fwd)} ms, chunk_bwd {ms(bwd)} ms")
    os.environ.pop("MIXZOO_DELTA_STATE_WARPS", None)
    os.environ.pop("MIXZOO_DELTA_STATE_STAGES", None)
    for cfg in C._fused_bwd_kernel.configs:
        extra = dict(cfg.kwargs, num_warps=cfg.num_warps, num_stages=cfg.num_stages)
        r = _forced("_fused_bwd_kernel", C._fused_bwd_kernel.fn, extra, lambda: ms(bwd))
        print(f"fused_bwd {extra}: chunk_bwd {r}")


if __name__ == "__main__":
    for arg in sys.argv[1:] or ["256,196,6,64"]:
        sweep(*(int(a) for a in arg.split(",")))
