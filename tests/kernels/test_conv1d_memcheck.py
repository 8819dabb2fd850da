"""Memory check of the vision path's kernels under the interpreter: every address a kernel
loads from or stores to with its mask on must lie inside a tensor passed to that launch
(masked-off lanes may point anywhere, as on the GPU). Covers the streaming conv backward
(loads two rows ahead, several row chunks per sequence, strided x, q|k|v groups) and the
RMSNorm with the direction combine (partner rows in the reversed half). The check wraps the
interpreter's load/store builders; a kernel reading one element past its tensor fails it
(test_checker_catches_an_overrun)."""
import os

os.environ.setdefault("TRITON_INTERPRET", "1")  # before triton/mixzoo are imported

import numpy as np
import pytest
import torch
import triton
import triton.language as tl

from mixzoo.kernels._common import is_interpreting
from mixzoo.kernels.conv1d import short_conv, short_conv_bidirectional
from mixzoo.kernels.rmsnorm import rms_norm

pytestmark = pytest.mark.skipif(not is_interpreting(), reason="wraps the Triton interpreter")


@pytest.fixture
def memcheck(monkeypatch):
    import triton.runtime.interpreter as I
    ranges = []
    init = I.GridExecutor._init_args_hst

    def _init(self, args_dev, kwargs):
        ranges.clear()
        for a in list(args_dev) + list(kwargs.values()):
            if hasattr(a, "untyped_storage"):
                s = a.untyped_storage()
                ranges.append((s.data_ptr(), s.data_ptr() + s.nbytes()))
        return init(self, args_dev, kwargs)

    def check(ptrs, mask):
        p = np.asarray(ptrs.data).astype(np.int64)
        size = max(1, getattr(ptrs.get_element_ty(), "primitive_bitwidth", 8) // 8)
        act = p if mask is None else p[np.asarray(mask.data).astype(bool)]
        ok = np.zeros(act.shape, bool)
        for lo, hi in ranges:
            ok |= (act >= lo) & (act + size <= hi)
        assert ok.all(), f"{int((~ok).sum())} unmasked addresses outside the launch's tensors"

    B = I.InterpreterBuilder
    ml, ms, ld, st = B.create_masked_load, B.create_masked_store, B.create_load, B.create_store
    monkeypatch.setattr(I.GridExecutor, "_init_args_hst", _init)
    monkeypatch.setattr(B, "create_masked_load",
                        lambda self, p, m, *a: (check(p, m), ml(self, p, m, *a))[1])
    monkeypatch.setattr(B, "create_masked_store",
                        lambda self, p, v, m, *a: (check(p, m), ms(self, p, v, m, *a))[1])
    monkeypatch.setattr(B, "create_load", lambda self, p, *a: (check(p, None), ld(self, p, *a))[1])
    monkeypatch.setattr(B, "create_store",
                        lambda self, p, v, *a: (check(p, None), st(self, p, v, *a))[1])


@triton.jit
def _overrun(x, y, N, BLOCK: tl.constexpr):
    o = tl.arange(0, BLOCK)
    tl.store(y + o, tl.load(x + o, mask=o < N + 1), mask=o < N)


def test_checker_catches_an_overrun(memcheck):
    with pytest.raises(Exception, match="outside the launch"):
        _overrun[(1,)](torch.randn(8), torch.empty(8), 8, BLOCK=16)


@pytest.mark.parametrize("variant,T,chunk", [("v1", 70, None), ("v2", 38, 16)])
def test_conv_bidirectional_and_causal_stay_in_bounds(memcheck, variant, T, chunk):
    """v1: 3 row chunks of 32 (its launcher's choice at T=70). v2: 16-row chunks (the last
    one 6 rows) with its deeper prefetch, loads 8 rows ahead (DEPTH 2 forced, as the
    interpreter runs only the first autotune config); fewer rows for CPU time."""
    from mixzoo.kernels.conv1d import triton_stream as S
    from mixzoo.kernels.conv1d.ops import use_variant
    kernels = (S._conv_fwd_stream_kernel, S._conv_bwd_stream_kernel)
    old = [k.configs for k in kernels]
    try:
        for k in kernels:
            k.configs = [triton.Config({"DEPTH": 2}, num_warps=1)]
        with use_variant(variant, chunk, chunk):
            _conv_bidirectional_and_causal(T)
    finally:
        for k, c in zip(kernels, old):
            k.configs = c


def _conv_bidirectional_and_causal(T):
    g = torch.Generator().manual_seed(0)
    B, D = 2, 384                             # q|k|v groups of 128
    x = torch.randn(B, T, D + 8, generator=g)[..., :D].requires_grad_()   # row stride D+8
    w = torch.randn(D, 4, generator=g).requires_grad_()
    b = torch.randn(D, generator=g).requires_grad_()
    ys = short_conv_bidirectional(x, w, b, activation="silu", splits=[128, 128, 128],
                                  backend="triton")
    sum((y * torch.randn(y.shape, generator=g)).sum() for y in ys).backward()
    y, _ = short_conv(x, w, b, activation="silu", backend="triton")
    y.sum().backward()


def test_rmsnorm_combine_stays_in_bounds(memcheck):
    g = torch.Generator().manual_seed(1)
    o = torch.randn(4, 37, 3, 64, generator=g).requires_grad_()   # doubled batch [2B,T,H,V]
    w = torch.randn(64, generator=g).requires_grad_()
    rms_norm(o, w, eps=1e-6, combine_directions=True, backend="triton").sum().backward()
