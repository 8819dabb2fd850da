"""Attention kernels: the two reference forms agree, input checks, and (under
TRITON_INTERPRET=1, fp32) the Triton kernels match the reference."""
import os

os.environ.setdefault("TRITON_INTERPRET", "1")  # before triton/mixzoo are imported

import pytest
import torch

from mixzoo.kernels._common import assert_close
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
