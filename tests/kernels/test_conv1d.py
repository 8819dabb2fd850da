"""Short convolution: the two reference forms agree (outputs, grads, final state),
input checks, and (under TRITON_INTERPRET=1, fp32) the Triton kernels match."""
import contextlib
import os

os.environ.setdefault("TRITON_INTERPRET", "1")  # before triton/mixzoo are imported

import pytest
import torch
import triton

from mixzoo.kernels._common import assert_close
from mixzoo.kernels.conv1d import short_conv, short_conv_ref, short_conv_vec_ref


def _inputs(B, T, D, W, bias=True, state=True, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, T, D, generator=g, dtype=dtype).requires_grad_()
    w = torch.randn(D, W, generator=g, dtype=dtype).requires_grad_()
    b = torch.randn(D, generator=g, dtype=dtype).requires_grad_() if bias else None
    h0 = torch.randn(B, D, W - 1, generator=g, dtype=dtype).requires_grad_() if state else None
    return x, w, b, h0


def _run(fn, x, w, b, h0, dy, dh, **kw):
    """Output, final state and every input grad (final-state grad included)."""
    leaves = [t for t in (x, w, b, h0) if t is not None]
    for t in leaves:
        t.grad = None
    y, hT = fn(x, w, b, initial_state=h0, **kw)
    loss = (y * dy).sum() + ((hT * dh).sum() if hT is not None else 0)
    loss.backward()
    return [y.detach(), None if hT is None else hT.detach()] + [t.grad.clone() for t in leaves]


@pytest.mark.parametrize("T", [1, 7, 64, 100])
@pytest.mark.parametrize("W,activation,bias,state", [
    (4, "silu", True, True), (2, None, False, False), (8, "silu", False, True),
    (3, None, True, True)])
def test_reference_forms_agree_causal(T, W, activation, bias, state):
    x, w, b, h0 = _inputs(2, T, 6, W, bias, state)
    dy = torch.randn(2, T, 6, dtype=torch.float64)
    dh = torch.randn(2, 6, W - 1, dtype=torch.float64)
    kw = dict(activation=activation, output_final_state=True)
    a = _run(short_conv_ref, x, w, b, h0, dy, dh, **kw)
    c = _run(short_conv_vec_ref, x, w, b, h0, dy, dh, **kw)
    for i, (p, r) in enumerate(zip(a, c)):
        assert_close(p, r, 1e-12, f"item {i}")


@pytest.mark.parametrize("T", [1, 7, 64, 100])
@pytest.mark.parametrize("W", [2, 3, 4, 7])
def test_reference_forms_agree_noncausal(T, W):
    x, w, b, _ = _inputs(2, T, 5, W, state=False)
    dy = torch.randn(2, T, 5, dtype=torch.float64)
    kw = dict(activation="silu", causal=False)
    a = _run(short_conv_ref, x, w, b, None, dy, None, **kw)
    c = _run(short_conv_vec_ref, x, w, b, None, dy, None, **kw)
    assert a[1] is None and c[1] is None
    for i, (p, r) in enumerate(zip(a, c)):
        if p is not None:
            assert_close(p, r, 1e-12, f"item {i}")


@pytest.mark.filterwarnings("ignore:Using padding='same'")
def test_noncausal_matches_torch_same_padding():
    x, w, b, _ = _inputs(1, 11, 3, 4, state=False)
    y, _ = short_conv_ref(x, w, b, causal=False)
    want = torch.nn.functional.conv1d(x.transpose(1, 2), w[:, None], b, padding="same",
                                      groups=3).transpose(1, 2)
    assert_close(want, y, 1e-12)


@pytest.mark.parametrize("split", [1, 2, 5])
def test_state_carry_and_short_pieces(split):
    """Pieces with carried state == one pass; pieces shorter than W-1 included."""
    x, w, b, h0 = _inputs(2, 12, 4, 5)
    full, hT = short_conv_vec_ref(x, w, b, activation="silu", initial_state=h0,
                                  output_final_state=True)
    ys, h = [], h0
    for start in range(0, 12, split):
        y, h = short_conv_ref(x[:, start:start + split], w, b, activation="silu",
                              initial_state=h, output_final_state=True)
        ys.append(y)
    assert_close(full, torch.cat(ys, 1), 1e-12)
    assert_close(hT, h, 1e-12)


def test_final_state_keeps_initial_columns_when_T_short():
    x, w, _, h0 = _inputs(1, 2, 3, 6, bias=False)
    _, hT = short_conv_ref(x, w, initial_state=h0, output_final_state=True)
    assert_close(h0[:, :, 2:].detach(), hT[:, :, :3], 0)
    assert_close(x.detach().transpose(1, 2), hT[:, :, 3:], 0)
    assert hT.dtype == torch.float32 or hT.dtype == torch.float64


def test_state_is_fp32_for_low_precision_inputs():
    x = torch.randn(1, 5, 4, dtype=torch.bfloat16)
    w = torch.randn(4, 3, dtype=torch.bfloat16)
    y, hT = short_conv(x, w, output_final_state=True, backend="reference")
    assert y.dtype == torch.bfloat16 and hT.dtype == torch.float32 and hT.shape == (1, 4, 2)


@pytest.mark.parametrize("bad,match", [
    (dict(x=torch.randn(2, 4)), r"x: expected shape \[B,T,D\]"),
    (dict(weight=torch.randn(6, 4)), r"weight: expected shape \[D,W\]"),
    (dict(weight=torch.randn(5, 9)), "2..8"),
    (dict(weight=torch.randn(5, 1)), "2..8"),
    (dict(bias=torch.randn(4)), r"bias: expected shape \[D\]"),
    (dict(activation="relu"), "activation"),
    (dict(initial_state=torch.randn(2, 5, 4)), r"initial_state: expected shape \[B,D,W-1\]"),
    (dict(causal=False, output_final_state=True), "no carried state"),
    (dict(causal=False, initial_state=torch.randn(2, 5, 3)), "no carried state"),
    (dict(backend="cuda"), "backend="),
])
def test_validation_errors(bad, match):
    args = dict(x=torch.randn(2, 7, 5), weight=torch.randn(5, 4))
    kw = {}
    for key, val in bad.items():
        (args if key in args else kw)[key] = val
    with pytest.raises(ValueError, match=match):
        short_conv(args["x"], args["weight"], **kw)


# ----------------------------------------------------------------------------- Triton (interpreter, fp32)

from mixzoo.kernels.conv1d.ops import use_variant  # noqa: E402
from mixzoo.kernels.conv1d.triton_conv import conv_fwd  # noqa: E402
from mixzoo.kernels.conv1d.triton_update import conv_update  # noqa: E402

# every kernel variant (ops.VARIANTS; v2 = triton_stream.py) with its rows per program (None:
# the launcher's choice; v2 at 32 rows, so several chunks and the unrolled loop's tail are
# crossed at these T) and, for v2, the prefetch depth: the interpreter runs only the first
# autotune config (DEPTH 1, which test_v2_launcher_chunks_match_reference runs), so DEPTH 2
# is forced here through kernel_variant
VARIANTS = [("v1", None, None), ("v2", 32, 2)]


@contextlib.contextmanager
def kernel_variant(variant, chunk, depth):
    """use_variant, plus v2's autotune candidates replaced by one with this DEPTH."""
    from mixzoo.kernels.conv1d import triton_stream as S
    kernels = (S._conv_fwd_stream_kernel, S._conv_bwd_stream_kernel)
    old = [k.configs for k in kernels]
    try:
        if depth is not None:
            for k in kernels:
                k.configs = [triton.Config({"DEPTH": depth}, num_warps=1)]
        with use_variant(variant, chunk, chunk):
            yield
    finally:
        for k, c in zip(kernels, old):
            k.configs = c

TRITON_CASES = [  # (B, T, D, W, activation, causal, bias, state)
    (2, 1, 16, 4, "silu", True, True, True),
    (2, 15, 40, 4, "silu", True, True, True),
    (1, 64, 24, 4, None, True, False, False),
    (2, 65, 16, 3, "silu", True, True, False),
    (1, 130, 32, 2, None, True, True, True),
    (1, 15, 20, 8, "silu", True, True, True),
    (1, 2, 8, 6, None, True, True, True),      # T < W-1: the state keeps h0 columns
    (1, 65, 24, 4, "silu", False, True, False),
    (2, 130, 16, 3, None, False, False, False),
    (1, 15, 8, 8, "silu", False, True, False),
    (1, 1, 8, 5, None, False, True, False),
]


@pytest.mark.parametrize("variant,chunk,depth", VARIANTS)
@pytest.mark.parametrize("B,T,D,W,activation,causal,bias,state", TRITON_CASES)
def test_triton_matches_reference(B, T, D, W, activation, causal, bias, state, variant, chunk,
                                  depth):
    x, w, b, h0 = (t.float().detach().requires_grad_() if t is not None else None
                   for t in _inputs(B, T, D, W, bias, state, seed=T + W))
    dy = torch.randn(B, T, D)
    dh = torch.randn(B, D, W - 1)
    kw = dict(activation=activation, causal=causal, output_final_state=causal)
    with kernel_variant(variant, chunk, depth):
        got = _run(lambda *a, **k: short_conv(*a, backend="triton", **k), x, w, b, h0, dy,
                   dh if causal else None, **kw)
    x64, w64, b64, h064 = (t.double().detach().requires_grad_() if t is not None else None
                           for t in (x, w, b, h0))
    want = _run(short_conv_ref, x64, w64, b64, h064, dy.double(), dh.double() if causal else None,
                **kw)
    for i, (r, g) in enumerate(zip(want, got)):
        if r is None:
            assert g is None
        else:
            assert_close(r, g, 1e-5, f"item {i}")


def test_v2_launcher_chunks_match_reference():
    """v2 at the launcher's own rows per program and first autotune config (DEPTH 1): T=81
    splits into 3 chunks of 28 rows (not a power of two; the last chunk 25 rows), causal with
    state, centred, and bidirectional."""
    from mixzoo.kernels.conv1d.triton_stream import chunk_for
    assert chunk_for(1, 81, 64, 128, "fwd") == 28 == chunk_for(1, 81, 64, 128, "bwd")
    for causal in (True, False):
        x, w, b, h0 = (t.float().detach().requires_grad_() if t is not None else None
                       for t in _inputs(1, 81, 64, 4, True, causal, seed=3))
        dy, dh = torch.randn(1, 81, 64), torch.randn(1, 64, 3)
        kw = dict(activation="silu", causal=causal, output_final_state=causal)
        with use_variant("v2"):
            got = _run(lambda *a, **k: short_conv(*a, backend="triton", **k), x, w, b, h0, dy,
                       dh if causal else None, **kw)
        want = _run(short_conv_ref, *(t.double().detach().requires_grad_() if t is not None
                                      else None for t in (x, w, b, h0)),
                    dy.double(), dh.double() if causal else None, **kw)
        for i, (r, g) in enumerate(zip(want, got)):
            if r is not None:
                assert_close(r, g, 1e-5, f"causal={causal} item {i}")
    # and the bidirectional q|k|v path (both directions in one walk)
    x, w, b, _ = (t.float().detach().requires_grad_() if t is not None else None
                  for t in _inputs(1, 81, 48, 4, True, False, seed=4))
    dys = [torch.randn(2, 81, 16) for _ in range(3)]
    with use_variant("v2"):
        got = short_conv_bidirectional(x, w, b, activation="silu", splits=[16, 16, 16],
                                       backend="triton")
        gg = torch.autograd.grad(sum((y * d).sum() for y, d in zip(got, dys)), (x, w, b))
    l64 = [t.detach().double().requires_grad_() for t in (x, w, b)]
    want = short_conv_bidirectional_ref(*l64, activation="silu", splits=[16, 16, 16])
    gw = torch.autograd.grad(sum((y * d.double()).sum() for y, d in zip(want, dys)), l64)
    for i, (r, o) in enumerate(zip(list(want) + list(gw), list(got) + list(gg))):
        assert_close(r, o, 1e-5, f"bidirectional item {i}")


@pytest.mark.parametrize("W,activation,bias", [(4, "silu", True), (2, None, False),
                                               (8, "silu", False)])
def test_update_kernel_equals_full_kernel(W, activation, bias):
    """Token-by-token decoding with the update kernel == one pass of the full kernel."""
    x, w, b, h0 = (t.float().detach() if t is not None else None
                   for t in _inputs(2, 9, 24, W, bias, True, seed=W))
    act = {None: 0, "silu": 1}[activation]
    full = conv_fwd(x, w, b, h0, act, True)
    state, ys = h0, []
    for t in range(9):
        y, state = conv_update(x[:, t], state, w, b, act)
        ys.append(y)
    assert_close(full, torch.stack(ys, 1), 1e-6)
    assert_close(x[:, 9 - (W - 1):].transpose(1, 2), state, 0)
    # and the public function routes one causal token without grad to it
    with torch.no_grad():
        y1, s1 = short_conv(x[:, :1], w, b, activation=activation, initial_state=h0,
                            output_final_state=True, backend="triton")
    assert_close(full[:, :1], y1, 1e-6)
    assert s1.dtype == torch.float32 and s1.shape == (2, 24, W - 1)


@pytest.mark.parametrize("variant", ["v1", "v2"])
def test_custom_ops_opcheck(variant):
    x, w, b, h0 = (t.float().detach().requires_grad_() for t in _inputs(1, 10, 8, 4))
    torch.library.opcheck(torch.ops.mixzoo.short_conv_fwd.default,
                          (x, w, b, h0, 1, True, variant),
                          test_utils=("test_schema", "test_faketensor",
                                      "test_autograd_registration"))
    dy = torch.randn(1, 10, 8)
    torch.library.opcheck(torch.ops.mixzoo.short_conv_bwd.default,
                          (dy, x.detach(), w.detach(), b.detach(), h0.detach(), 1, True, variant),
                          test_utils=("test_schema", "test_faketensor"))


def test_variant_validation_and_env_default():
    from mixzoo.kernels.conv1d import ops
    with pytest.raises(ValueError, match="MIXZOO_CONV1D_VARIANT"):
        with use_variant("v3"):
            pass
    env = os.environ.get("MIXZOO_CONV1D_VARIANT")
    for kind in ("causal", "bidirectional"):
        assert ops.current_variant(kind) == (env or ops.DEFAULTS[kind])
        with use_variant("v2fwd"):
            assert ops.current_variant(kind) == "v2fwd"
        assert ops.current_variant(kind) == (env or ops.DEFAULTS[kind])


# ----------------------------------------------------------------------------- bidirectional

from mixzoo.kernels.conv1d import (short_conv_bidirectional,  # noqa: E402
                                   short_conv_bidirectional_ref)


def test_bidirectional_reference_is_the_doubled_batch_definition():
    x, w, b, _ = _inputs(2, 9, 6, 4, state=False)
    ys = short_conv_bidirectional_ref(x, w, b, activation="silu", splits=[2, 4])
    both = torch.cat([x, x.flip(1)], 0)
    want, _ = short_conv_ref(both, w, b, activation="silu")
    assert [t.shape for t in ys] == [(4, 9, 2), (4, 9, 4)]
    assert_close(want, torch.cat(ys, -1), 1e-12)


BIDIR_CASES = [  # (B, T, D, W, activation, bias, splits, row padding of x)
    (2, 15, 48, 4, "silu", True, [16, 16, 16], 3),   # q|k|v groups, strided rows
    (1, 65, 64, 4, None, False, [32, 32], 0),
    (2, 7, 40, 3, "silu", True, None, 1),
    (1, 3, 48, 8, "silu", False, [16, 32], 0),        # T < W-1
    (1, 70, 24, 4, "silu", True, [8, 8, 8], 6),       # groups too narrow: split fallback
    (2, 1, 16, 2, None, True, [16], 0),
]


@pytest.mark.parametrize("variant,chunk,depth", VARIANTS)
@pytest.mark.parametrize("B,T,D,W,activation,bias,splits,pad", BIDIR_CASES)
def test_triton_bidirectional_matches_reference(B, T, D, W, activation, bias, splits, pad,
                                                variant, chunk, depth):
    """Outputs (contiguous, per split) and the grads of x, weight and bias, vs fp64."""
    g = torch.Generator().manual_seed(T * 10 + W)
    x = torch.randn(B, T, D + pad, generator=g)[..., :D].requires_grad_()  # row stride D+pad
    w = torch.randn(D, W, generator=g).requires_grad_()
    b = torch.randn(D, generator=g).requires_grad_() if bias else None
    dys = [torch.randn(2 * B, T, s, generator=g) for s in (splits or [D])]
    leaves = [t for t in (x, w, b) if t is not None]
    with kernel_variant(variant, chunk, depth):
        got = short_conv_bidirectional(x, w, b, activation=activation, splits=splits,
                                       backend="triton")
        gg = torch.autograd.grad(sum((y * d).sum() for y, d in zip(got, dys)), leaves)
    assert all(t.is_contiguous() for t in got)
    l64 = [t.detach().double().requires_grad_() for t in leaves]
    want = short_conv_bidirectional_ref(l64[0], l64[1], l64[2] if bias else None,
                                        activation=activation, splits=splits)
    gw = torch.autograd.grad(sum((y * d.double()).sum() for y, d in zip(want, dys)), l64)
    for i, (r, o) in enumerate(zip(list(want) + list(gw), list(got) + list(gg))):
        assert_close(r, o, 1e-5, f"item {i}")


def test_bidirectional_split_validation():
    x, w = torch.randn(1, 4, 8), torch.randn(8, 4)
    with pytest.raises(ValueError, match="splits"):
        short_conv_bidirectional(x, w, splits=[4, 3])


@pytest.mark.parametrize("variant", ["v1"])   # the schema is the same for every variant
def test_bidirectional_custom_ops_opcheck(variant):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 10, 48, generator=g).requires_grad_()
    w = torch.randn(48, 4, generator=g).requires_grad_()
    torch.library.opcheck(torch.ops.mixzoo.short_conv_bidir_fwd.default,
                          (x, w, None, 1, [16, 16, 16], variant),
                          test_utils=("test_schema", "test_faketensor",
                                      "test_autograd_registration"))
    dys = [torch.randn(4, 10, 16, generator=g) for _ in range(3)]
    torch.library.opcheck(torch.ops.mixzoo.short_conv_bidir_bwd.default,
                          (dys, x.detach(), w.detach(), None, 1, variant),
                          test_utils=("test_schema", "test_faketensor"))
