"""Attention kernels on a CUDA GPU (run on an H100): bf16 at real sizes vs an fp32
reference, with torch SDPA's error on the same inputs printed beside ours. Every test
carries the gpu mark."""
import pytest
import torch

from mixzoo.kernels._common import rel_rms
from mixzoo.kernels.attention import attention, attention_sdpa
from mixzoo.kernels.attention.ops import attention_triton_lse
from mixzoo.kernels.attention.reference import attention_chunked_lse_ref

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]
BF16_TOL = 1e-2


def _inputs(B, Tq, Tk, H, Hkv, D, dtype=torch.bfloat16, seed=0):
    g = torch.Generator(device="cuda").manual_seed(seed)
    q = torch.randn(B, Tq, H, D, device="cuda", generator=g)
    k = torch.randn(B, Tk, Hkv, D, device="cuda", generator=g)
    v = torch.randn(B, Tk, Hkv, D, device="cuda", generator=g)
    return [t.to(dtype) for t in (q, k, v)]


def _run(fn, xs, do, **kw):
    leaves = [x.detach().clone().requires_grad_(True) for x in xs]
    o = fn(*leaves, **kw)
    o.backward(do)
    return [o.detach()] + [t.grad for t in leaves]


@pytest.mark.parametrize("B,Tq,Tk,H,Hkv,D,causal,window", [
    (2, 2048, 2048, 8, 8, 128, True, None),
    (2, 1000, 1000, 8, 8, 64, False, None),
    (2, 2048, 2048, 8, 8, 128, True, 256),
    (2, 1500, 1500, 8, 2, 64, True, 700),     # GQA, window not a tile multiple
    (1, 512, 512, 4, 4, 256, True, None),
    (2, 300, 2048, 8, 8, 128, True, None),    # Tq < Tk, tiled path
])
def test_bf16_vs_fp32_reference(B, Tq, Tk, H, Hkv, D, causal, window):
    xs = _inputs(B, Tq, Tk, H, Hkv, D)
    do = torch.randn(B, Tq, H, D, device="cuda", dtype=torch.bfloat16)
    ref_o, ref_lse = attention_chunked_lse_ref(*[x.float() for x in xs], causal=causal,
                                               window=window)
    ref = _run(lambda *a, **k: attention_chunked_lse_ref(*a, **k)[0],
               [x.float() for x in xs], do.float(), causal=causal, window=window)
    ours = _run(attention, xs, do, causal=causal, window=window, backend="triton")
    sdpa = _run(attention_sdpa, xs, do, causal=causal, window=window)
    _, lse = attention_triton_lse(*xs, causal=causal, window=window)
    names = ("o", "dq", "dk", "dv")
    e_ours = {n: rel_rms(r, o) for n, r, o in zip(names, ref, ours)}
    e_sdpa = {n: rel_rms(r, o) for n, r, o in zip(names, ref, sdpa)}
    e_lse = rel_rms(ref_lse, lse)
    print(f"\n{(B, Tq, Tk, H, Hkv, D, causal, window)} ours "
          + " ".join(f"{n}={e:.1e}" for n, e in e_ours.items()) + f" lse={e_lse:.1e} | sdpa "
          + " ".join(f"{n}={e:.1e}" for n, e in e_sdpa.items()))
    assert e_lse < 1e-3
    for n, e in e_ours.items():
        assert e < BF16_TOL, f"{n}: {e:.2e}"
        assert e < 2 * e_sdpa[n] + 1e-3, f"{n}: ours {e:.2e} vs sdpa {e_sdpa[n]:.2e}"


@pytest.mark.parametrize("B,Tq,Tk,H,Hkv,D,window", [
    (4, 1, 4096, 16, 4, 128, None), (4, 1, 4096, 16, 16, 128, 512), (2, 4, 3000, 8, 2, 64, None)])
def test_decode_matches_full_and_reference(B, Tq, Tk, H, Hkv, D, window):
    xs = _inputs(B, Tq, Tk, H, Hkv, D, seed=1)
    with torch.no_grad():
        ref = attention_chunked_lse_ref(*[x.float() for x in xs], window=window)[0]
        out = attention(*xs, window=window, backend="triton")
        # the same queries as the tail of a full-length pass through the tiled kernel
        qfull = torch.randn(B, Tk, H, D, device="cuda", dtype=torch.bfloat16)
        qfull[:, Tk - Tq:] = xs[0]
        full = attention(qfull, xs[1], xs[2], window=window, backend="triton")[:, Tk - Tq:]
    e_ref, e_full = rel_rms(ref, out), rel_rms(full.float(), out.float())
    print(f"\ndecode {(B, Tq, Tk, H, Hkv, D, window)}: vs fp32 {e_ref:.1e}, vs tiled {e_full:.1e}")
    assert e_ref < BF16_TOL and e_full < BF16_TOL


def test_fp16_and_compile():
    xs = _inputs(2, 1024, 1024, 8, 8, 64, dtype=torch.float16)
    f = torch.compile(lambda q, k, v: attention(q, k, v, window=128, backend="triton"),
                      fullgraph=True)
    out = f(*xs)
    ref = attention_chunked_lse_ref(*[x.float() for x in xs], window=128)[0]
    assert rel_rms(ref, out) < BF16_TOL


# every kernel variant at least once; two shapes only (each pair compiles its own kernels,
# and the benchmark's --check covers the causal and sliding-window benchmark shapes)
@pytest.mark.parametrize("fwd_variant,bwd_variant", [
    ("base", "split2"), ("tune2_fold", "dqdelta2"), ("tma", "dqdelta"), ("base_fold", "atomic"),
    ("tma_fold", "split_tma"), ("tma", "atomic_tmared"), ("tune2", "dqdelta_tma")])
@pytest.mark.parametrize("B,Tq,Tk,H,Hkv,D,causal,window", [
    (2, 2048, 2048, 8, 8, 128, True, 256),
    (2, 1500, 1500, 8, 2, 64, True, 700),     # GQA, window and T not tile multiples
])
def test_variants_bf16_vs_fp32_reference(B, Tq, Tk, H, Hkv, D, causal, window, fwd_variant,
                                         bwd_variant):
    """Every selectable kernel variant, first call included (the autotuner times each
    candidate on these very buffers: the atomic dq must be re-zeroed before the real run)."""
    xs = _inputs(B, Tq, Tk, H, Hkv, D, seed=2)
    do = torch.randn(B, Tq, H, D, device="cuda", dtype=torch.bfloat16)
    ref = _run(lambda *a, **k: attention_chunked_lse_ref(*a, **k)[0],
               [x.float() for x in xs], do.float(), causal=causal, window=window)
    ours = _run(lambda *a, **k: attention_triton_lse(*a, **k)[0], xs, do, causal=causal,
                window=window, fwd_variant=fwd_variant, bwd_variant=bwd_variant)
    errs = {n: rel_rms(r, o) for n, r, o in zip(("o", "dq", "dk", "dv"), ref, ours)}
    print(f"\n{(B, Tq, Tk, H, Hkv, D, causal, window)} {fwd_variant}/{bwd_variant} "
          + " ".join(f"{n}={e:.1e}" for n, e in errs.items()))
    for n, e in errs.items():
        assert e < BF16_TOL, f"{n}: {e:.2e}"
