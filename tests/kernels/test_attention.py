"""Attention kernels: the two reference forms agree, input checks, and (under
TRITON_INTERPRET=1, fp32) the Triton kernels match the reference."""
import os

os.environ.setdefault("TRITON_INTERPRET", "1")  # before triton/mixzoo are imported

import pytest
import torch

from mixzoo.kernels._common import assert_close, is_interpreting
from mixzoo.kernels.attention import attention, attention_chunked_ref, attention_ref
from mixzoo.kernels.attention.reference import attention_chunked_lse_ref, attention_lse_ref


def _inputs(B, Tq, Tk, H, Hkv, D, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(B, Tq, H, D, generator=g, dtype=dtype).requires_grad_()
    k = torch.randn(B, Tk, Hkv, D, generator=g, dtype=dtype).requires_grad_()
    v = torch.randn(B, Tk, Hkv, D, generator=g, dtype=dtype).requires_grad_()
    return q, k, v


def _grads(fn, q, k, v, do, **kw):
    q.grad = k.grad = v.grad = None
    o = fn(q, k, v, **kw)
    o.backward(do)
    return o.detach(), q.grad.clone(), k.grad.clone(), v.grad.clone()


REF_CASES = [  # (Tq, Tk, H, Hkv, causal, window)
    (1, 1, 2, 2, True, None),
    (7, 7, 2, 1, True, None),
    (64, 64, 4, 2, True, None),
    (100, 100, 2, 2, True, None),
    (100, 100, 4, 1, False, None),
    (7, 7, 2, 2, False, None),
    (64, 64, 2, 1, True, 16),    # window < T
    (100, 100, 2, 2, True, 1),   # window of one: only itself
    (7, 7, 2, 2, True, 32),      # window > T == global causal
    (3, 100, 4, 2, True, None),  # decode-style, bottom-right alignment
    (1, 64, 2, 1, True, 8),      # one query against a cache, windowed
    (5, 100, 2, 2, False, None),
]


@pytest.mark.parametrize("Tq,Tk,H,Hkv,causal,window", REF_CASES)
def test_reference_forms_agree(Tq, Tk, H, Hkv, causal, window):
    q, k, v = _inputs(2, Tq, Tk, H, Hkv, 16, dtype=torch.float64)
    do = torch.randn(2, Tq, H, 16, dtype=torch.float64)
    kw = dict(causal=causal, window=window)
    a = _grads(attention_ref, q, k, v, do, **kw)
    b = _grads(attention_chunked_ref, q, k, v, do, **kw)
    for name, x, y in zip(("o", "dq", "dk", "dv"), a, b):
        assert_close(x, y, 1e-10, name)
    _, lse_a = attention_lse_ref(q, k, v, **kw)
    _, lse_b = attention_chunked_lse_ref(q, k, v, chunk_size=16, **kw)
    assert_close(lse_a, lse_b, 1e-10, "lse")


def test_window_larger_than_T_is_causal_and_window_one_is_v():
    q, k, v = _inputs(1, 20, 20, 2, 2, 8, dtype=torch.float64)
    assert_close(attention_ref(q, k, v), attention_ref(q, k, v, window=50), 1e-12)
    assert_close(v.detach(), attention_ref(q, k, v, window=1).detach(), 1e-12)


def test_bottom_right_alignment_equals_last_rows_of_full():
    q, k, v = _inputs(2, 30, 30, 4, 2, 8, dtype=torch.float64)
    for window in (None, 5):
        full = attention_ref(q, k, v, window=window)
        tail = attention_ref(q[:, -4:], k, v, window=window)
        assert_close(full[:, -4:], tail, 1e-12)


def test_gqa_equals_repeated_kv():
    q, k, v = _inputs(2, 9, 9, 4, 2, 8, dtype=torch.float64)
    rep = dict(k=k.repeat_interleave(2, 2), v=v.repeat_interleave(2, 2))
    assert_close(attention_ref(q, rep["k"], rep["v"]), attention_ref(q, k, v), 1e-12)


@pytest.mark.parametrize("causal,window,Tq", [(True, None, 33), (False, None, 33),
                                              (True, 7, 33), (True, None, 5), (True, 4, 3)])
def test_sdpa_backend_matches_reference(causal, window, Tq):
    q, k, v = _inputs(2, Tq, 33, 4, 2, 16, dtype=torch.float64)
    ref = attention_ref(q, k, v, causal=causal, window=window)
    out = attention(q, k, v, causal=causal, window=window, backend="sdpa")
    assert_close(ref, out, 1e-10)


def test_reference_backend_dispatch():
    q, k, v = _inputs(1, 10, 10, 2, 1, 8)
    out = attention(q, k, v, window=3, backend="reference")
    assert_close(attention_ref(q, k, v, window=3), out, 1e-5)
    assert out.dtype == q.dtype and out.shape == q.shape


@pytest.mark.parametrize("bad,match", [
    (dict(q=torch.randn(2, 4, 2, 8, 1)), r"q: expected shape \[B,Tq,H,D\]"),
    (dict(k=torch.randn(2, 4, 3, 8), v=torch.randn(2, 4, 3, 8)), "must divide"),
    (dict(v=torch.randn(2, 5, 2, 8)), "same shape"),
    (dict(k=torch.randn(2, 4, 2, 4), v=torch.randn(2, 4, 2, 4)), r"k: expected shape"),
    (dict(causal=False, window=4), "needs causal=True"),
    (dict(window=0), "int >= 1"),
    (dict(q=torch.randn(2, 6, 4, 8)), "Tq <= Tk"),
    (dict(backend="cuda"), "backend="),
])
def test_validation_errors(bad, match):
    args = dict(q=torch.randn(2, 4, 4, 8), k=torch.randn(2, 4, 2, 8), v=torch.randn(2, 4, 2, 8))
    kw = {}
    for key, val in bad.items():
        (args if key in args else kw)[key] = val
    with pytest.raises(ValueError, match=match):
        attention(args["q"], args["k"], args["v"], **kw)


def test_dtype_mismatch_raises():
    q = torch.randn(1, 4, 2, 8)
    k = torch.randn(1, 4, 2, 8, dtype=torch.float64)
    with pytest.raises(TypeError, match="one dtype"):
        attention(q, k, k)


# ----------------------------------------------------------------------------- Triton (interpreter, fp32)

from mixzoo.kernels.attention.ops import attention_triton_lse  # noqa: E402
from mixzoo.kernels.attention.triton_fwd import attn_decode, attn_fwd, use_decode  # noqa: E402

TRITON_CASES = [  # (B, Tq, Tk, H, Hkv, D, causal, window)
    (1, 1, 1, 2, 1, 32, True, None),
    (2, 15, 15, 4, 2, 32, True, None),
    (1, 64, 64, 2, 2, 64, True, None),
    (1, 65, 65, 4, 1, 32, True, None),
    (1, 130, 130, 2, 1, 32, True, None),
    (1, 15, 15, 2, 2, 32, False, None),
    (1, 65, 65, 2, 1, 64, False, None),
    (1, 130, 130, 2, 2, 32, False, None),
    (1, 130, 130, 2, 1, 32, True, 40),    # window < T, not a tile multiple
    (1, 130, 130, 2, 2, 32, True, 5),     # window far below the tile sizes
    (1, 65, 65, 2, 1, 32, True, 64),      # window == tile
    (1, 15, 15, 2, 2, 32, True, 100),     # window > T
    (1, 1, 1, 2, 2, 32, True, 1),
    (1, 70, 130, 2, 1, 32, True, None),   # Tq < Tk through the tiled kernel
    (1, 3, 100, 4, 2, 32, True, 30),      # forward through the decode kernel, then backward
    (1, 70, 130, 2, 2, 32, True, 33),
    (1, 40, 100, 2, 1, 32, False, None),
    (1, 65, 65, 2, 1, 24, True, None),    # odd head dim (padded to 32)
    (1, 64, 64, 1, 1, 128, True, 17),
    (1, 20, 20, 1, 1, 256, True, None),   # head dim 256: its own (smaller) tilings
]


@pytest.mark.parametrize("B,Tq,Tk,H,Hkv,D,causal,window", TRITON_CASES)
def test_triton_matches_reference(B, Tq, Tk, H, Hkv, D, causal, window):
    q, k, v = _inputs(B, Tq, Tk, H, Hkv, D, seed=Tq + Tk + D)
    do = torch.randn(B, Tq, H, D)
    o, lse = attention_triton_lse(q, k, v, causal=causal, window=window)
    grads = torch.autograd.grad(o, (q, k, v), do)
    ro, rlse = attention_lse_ref(q.double(), k.double(), v.double(), causal=causal, window=window)
    rgrads = torch.autograd.grad(ro, (q, k, v), do.double())
    assert_close(ro, o, 1e-5, "o")
    assert_close(rlse, lse, 1e-5, "lse")
    for name, r, g in zip(("dq", "dk", "dv"), rgrads, grads):
        assert_close(r, g, 1e-5, name)


def test_triton_scale_and_public_dispatch():
    q, k, v = _inputs(1, 33, 33, 2, 1, 32)
    out = attention(q, k, v, window=9, scale=0.3, backend="triton")
    assert_close(attention_ref(q, k, v, window=9, scale=0.3), out, 1e-5)


@pytest.mark.parametrize("Tq,Tk,H,Hkv,window", [
    (1, 130, 4, 1, None), (1, 130, 2, 2, 50), (3, 200, 4, 2, None), (2, 97, 8, 2, 16),
    (1, 1, 2, 1, None)])
def test_decode_equals_full_forward(Tq, Tk, H, Hkv, window):
    """The decode kernel (split keys, GQA rows packed) == the tiled forward, o and lse."""
    q, k, v = _inputs(2, Tq, Tk, H, Hkv, 32, seed=Tk)
    w = window or 0
    o1, l1 = attn_decode(q, k, v, True, w, 32 ** -0.5)
    o2, l2 = attn_fwd(q, k, v, True, w, 32 ** -0.5)
    assert_close(o2, o1, 1e-5, "o")
    assert_close(l2, l1, 1e-5, "lse")
    if Tq < Tk:
        assert use_decode(q, k)
    # and token-by-token decoding against a growing cache == one full pass
    if Tq == 1 and Tk > 1:
        qs = torch.randn(2, Tk, H, 32)
        full = attention(qs, k, v, window=window, backend="triton")
        for t in (0, 5, Tk - 1):
            step = attention(qs[:, t:t + 1], k[:, :t + 1], v[:, :t + 1], window=window,
                             backend="triton")
            assert_close(full[:, t:t + 1].detach(), step.detach(), 1e-5, f"step {t}")


def test_custom_ops_opcheck():
    q, k, v = _inputs(1, 20, 20, 2, 1, 16)
    torch.library.opcheck(torch.ops.mixzoo.attention_fwd.default, (q, k, v, True, 7, 0.25),
                          test_utils=("test_schema", "test_faketensor",
                                      "test_autograd_registration"))


def test_triton_k_and_v_with_different_layouts():
    """v sliced out of a fused [.., 2D] projection has other strides than a contiguous k."""
    torch.manual_seed(3)
    B, T, H, D = 1, 37, 2, 16
    q = torch.randn(B, T, H, D, requires_grad=True)
    kv = torch.randn(B, T, H, 2 * D + 3, requires_grad=True)
    k = kv[..., :D].contiguous()
    v = kv[..., D + 3:]                                  # strided: time stride 2D+3
    ref = attention(q, k, v, causal=True, backend="reference")
    out = attention(q, k, v, causal=True, backend="triton")
    assert_close(ref, out, 1e-5, "o")
    gr = torch.autograd.grad(ref.sum(), (q, kv))
    go = torch.autograd.grad(out.sum(), (q, kv))
    for name, a, b in zip(("dq", "dkv"), gr, go):
        assert_close(a, b, 1e-5, name)


VARIANT_CASES = [  # (B, Tq, Tk, H, Hkv, D, causal, window): masked/full runs, GQA, Tq < Tk
    (2, 15, 15, 4, 2, 32, True, None),
    (1, 130, 130, 2, 1, 32, True, None),
    (1, 130, 130, 2, 2, 32, False, None),
    (1, 130, 130, 2, 1, 32, True, 40),
    (1, 70, 130, 2, 2, 32, True, 33),
    (1, 65, 65, 2, 1, 24, True, None),
]


@pytest.mark.parametrize("fwd_variant,bwd_variant", [
    ("base", "split"), ("tune2", "dqdelta"), ("base_fold", "atomic"), ("tma", "split_tma"),
    ("tma_fold", "dqdelta_tma"), ("tune2_fold", "atomic_tma"), ("base", "split2"),
    ("tune2_fold", "dqdelta2"),
    pytest.param("tma", "atomic_tmared", marks=pytest.mark.skipif(
        is_interpreting(), reason="the interpreter has no descriptor reduce (gpu test covers)"))])
@pytest.mark.parametrize("B,Tq,Tk,H,Hkv,D,causal,window", VARIANT_CASES)
def test_triton_variants_match_reference(B, Tq, Tk, H, Hkv, D, causal, window, fwd_variant,
                                         bwd_variant):
    """Every selectable forward/backward variant (MIXZOO_ATTN_*_VARIANT) == the reference."""
    q, k, v = _inputs(B, Tq, Tk, H, Hkv, D, seed=Tq + Tk + D)
    do = torch.randn(B, Tq, H, D)
    o, lse = attention_triton_lse(q, k, v, causal=causal, window=window,
                                  fwd_variant=fwd_variant, bwd_variant=bwd_variant)
    grads = torch.autograd.grad(o, (q, k, v), do)
    ro, rlse = attention_lse_ref(q.double(), k.double(), v.double(), causal=causal, window=window)
    rgrads = torch.autograd.grad(ro, (q, k, v), do.double())
    assert_close(ro, o, 1e-5, "o")
    assert_close(rlse, lse, 1e-5, "lse")
    for name, r, g in zip(("dq", "dk", "dv"), rgrads, grads):
        assert_close(r, g, 1e-5, name)


def test_fold_variant_with_negative_scale():
    q, k, v = _inputs(1, 40, 40, 2, 1, 16)
    ref = attention_ref(q, k, v, window=9, scale=-0.3)
    out = attention_triton_lse(q, k, v, window=9, scale=-0.3, fwd_variant="tma_fold")[0]
    assert_close(ref, out, 1e-5)


def test_unknown_variant_raises():
    q, k, v = _inputs(1, 8, 8, 2, 2, 16)
    with pytest.raises(ValueError, match="backward variant"):
        o = attention_triton_lse(q, k, v, bwd_variant="nope")[0]
        o.sum().backward()
    with pytest.raises(ValueError, match="forward variant"):
        attention_triton_lse(q, k, v, fwd_variant="nope")


def test_tma_variants_with_broadcast_gradient():
    """A gradient broadcast over time has time stride 0: no TMA descriptor is built on
    it (TMA needs positive strides) and the gradients stay right."""
    from mixzoo.kernels.attention.triton_fwd import tma_ok
    q, k, v = _inputs(1, 33, 33, 2, 1, 16)
    do = torch.randn(1, 1, 2, 16).expand(1, 33, 2, 16)  # strides (32, 0, 16, 1)
    assert tma_ok(q) and not tma_ok(do)
    o = attention_triton_lse(q, k, v, fwd_variant="tma", bwd_variant="split_tma")[0]
    grads = torch.autograd.grad(o, (q, k, v), do)
    ro = attention_ref(q.double(), k.double(), v.double())
    rgrads = torch.autograd.grad(ro, (q, k, v), do.double())
    for name, r, g in zip(("dq", "dk", "dv"), rgrads, grads):
        assert_close(r, g, 1e-5, name)
