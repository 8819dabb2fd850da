"""GLA kernels: the chunked reference and the Triton kernels against the step-by-step
recurrence (outputs, final state, every gradient), plus input validation."""
from __future__ import annotations

import os

os.environ.setdefault("TRITON_INTERPRET", "1")  # before triton / mixzoo are imported

import pytest
import torch

from mixzoo.kernels._common import assert_close, rel_rms
from mixzoo.kernels.gla import fused_recurrent_gla, gla, gla_chunk_ref, gla_recurrent_ref


def make_inputs(B, T, H, K, V, strength, with_h0, seed=0):
    """Random leaves; strength 'strong' draws log gates in [-5, 0], 'weak' in [-0.05, 0]."""
    gen = torch.Generator().manual_seed(seed)
    q, k = (torch.randn(B, T, H, K, generator=gen) for _ in range(2))
    v = torch.randn(B, T, H, V, generator=gen)
    lo = 5.0 if strength == "strong" else 0.05
    g = -lo * torch.rand(B, T, H, K, generator=gen)
    h0 = torch.randn(B, H, K, V, generator=gen) if with_h0 else None
    leaves = [q, k, v, g] + ([h0] if with_h0 else [])
    for x in leaves:
        x.requires_grad_(True)
    return q, k, v, g, h0


def run_with_grads(fn, q, k, v, g, h0, seed=1):
    """Forward with final state, backward of a random projection of both; returns all."""
    o, s = fn(q, k, v, g, initial_state=h0, output_final_state=True)
    gen = torch.Generator().manual_seed(seed)
    do, ds = torch.randn(o.shape, generator=gen), torch.randn(s.shape, generator=gen)
    leaves = [x for x in (q, k, v, g, h0) if x is not None]
    grads = torch.autograd.grad((o.float() * do).sum() + (s * ds).sum(), leaves)
    return [o, s, *grads]


NAMES = ["o", "final_state", "dq", "dk", "dv", "dg", "dh0"]
# fp32 vs fp32 with different summation orders; dg sums over every (t, s) pair (and over
# B and T for per-head gates), so it carries the most rounding.
TOL = dict(o=2e-5, final_state=2e-5, dq=2e-5, dk=2e-5, dv=2e-5, dg=1e-4, dh0=2e-5)


@pytest.mark.parametrize("T", [1, 7, 64, 100])
@pytest.mark.parametrize("D", [16, 32])
@pytest.mark.parametrize("strength", ["strong", "weak"])
def test_chunk_ref_matches_recurrence(T, D, strength):
    args = make_inputs(2, T, 2, D, D, strength, with_h0=True)
    ref = run_with_grads(gla_recurrent_ref, *args)
    out = run_with_grads(gla_chunk_ref, *args)
    for name, r, x in zip(NAMES, ref, out):
        assert_close(r, x, TOL[name], name)


def test_chunk_ref_no_initial_state_and_uneven_dims():
    q, k, v, g, _ = make_inputs(1, 37, 3, 16, 24, "strong", with_h0=False)
    o_ref, s_ref = gla_recurrent_ref(q, k, v, g, output_final_state=True)
    o, s = gla_chunk_ref(q, k, v, g, output_final_state=True, chunk_size=8)
    assert_close(o_ref, o, 2e-5, "o")
    assert_close(s_ref, s, 2e-5, "final_state")
    assert gla_chunk_ref(q, k, v, g)[1] is None


def test_extreme_decay_stays_finite():
    """Log gates of -60 per step: exp of a chunk's cumulative sum would underflow and its
    inverse overflow; the relative-to-chunk-start scheme must stay finite."""
    q, k, v, g, h0 = make_inputs(1, 64, 2, 16, 16, "strong", with_h0=True)
    g = (g.detach() * 12).requires_grad_(True)
    outs = run_with_grads(gla_chunk_ref, q, k, v, g, h0)
    ref = run_with_grads(gla_recurrent_ref, q, k, v, g, h0)
    for name, r, x in zip(NAMES, ref, outs):
        assert_close(r, x, TOL[name], name)


def test_public_reference_backend_and_dtype():
    q, k, v, g, h0 = make_inputs(1, 20, 2, 16, 16, "weak", with_h0=True)
    o, s = gla(q.bfloat16(), k.bfloat16(), v.bfloat16(), g, initial_state=h0,
               output_final_state=True, backend="reference")
    assert o.dtype == torch.bfloat16 and s.dtype == torch.float32
    assert o.shape == (1, 20, 2, 16) and s.shape == (1, 2, 16, 16)


@pytest.mark.parametrize("bad, match", [
    (dict(q=(2, 8, 2)), r"q: expected shape \[B,T,H,K\]"),
    (dict(k=(2, 8, 2, 8)), r"k: expected shape \[B,T,H,K\]"),
    (dict(v=(2, 9, 2, 16)), r"v: expected shape \[B,T,H,V\]"),
    (dict(g=(2, 8, 2)), r"g: expected shape \[B,T,H,K\]"),
    (dict(h0=(2, 2, 16, 15)), r"initial_state: expected shape \[B,H,K,V\]"),
])
def test_validation_errors(bad, match):
    shapes = dict(q=(2, 8, 2, 16), k=(2, 8, 2, 16), v=(2, 8, 2, 16), g=(2, 8, 2, 16),
                  h0=(2, 2, 16, 16))
    shapes.update(bad)
    t = {n: torch.zeros(s) for n, s in shapes.items()}
    with pytest.raises(ValueError, match=match):
        gla(t["q"], t["k"], t["v"], t["g"], initial_state=t["h0"])


def test_unknown_backend_rejected():
    q = torch.zeros(1, 4, 1, 16)
    with pytest.raises(ValueError, match="backend"):
        gla(q, q, q, q, backend="cuda")


# ------------------------------------------------------------------ Triton (interpreter)
# Small heads keep the interpreter fast; T covers one token, a partial chunk, exactly one
# chunk, one token past it, a second chunk that ends inside its third sub-chunk (later
# sub-chunks with padded rows), and three chunks. Initial state alternates with T.
TRITON_CASES = [(1, True), (15, False), (64, True), (65, False), (100, False), (130, True)]
TRITON_TOL = dict(o=1e-5, final_state=1e-5, dq=1e-5, dk=1e-5, dv=1e-5, dg=1e-4, dh0=1e-5)


def _public(fn, backend):
    return lambda q, k, v, g, initial_state, output_final_state: fn(
        q, k, v, g, initial_state=initial_state, output_final_state=output_final_state,
        backend=backend)


@pytest.mark.parametrize("T, with_h0", TRITON_CASES)
@pytest.mark.parametrize("strength", ["strong", "weak"])
def test_triton_chunk_matches_recurrence(T, with_h0, strength):
    """Weak gates take the one-dot intra-chunk paths, strong gates the sub-chunk ones."""
    args = make_inputs(1, T, 1, 16, 32, strength, with_h0=with_h0, seed=T)
    ref = run_with_grads(gla_recurrent_ref, *args)
    out = run_with_grads(_public(gla, "triton"), *args)
    names = NAMES if with_h0 else NAMES[:-1]
    for name, r, x in zip(names, ref, out):
        assert_close(r, x, TRITON_TOL[name], name)


def test_triton_chunk_odd_head_dims_and_multiple_blocks():
    """K=80 spans two K blocks with a ragged edge, V=24 is not a power of two."""
    args = make_inputs(1, 70, 1, 80, 24, "strong", with_h0=True, seed=3)
    ref = run_with_grads(gla_recurrent_ref, *args)
    out = run_with_grads(_public(gla, "triton"), *args)
    for name, r, x in zip(NAMES, ref, out):
        assert_close(r, x, TRITON_TOL[name], name)


def test_triton_chunk_extreme_decay_finite_and_exact():
    """Log gates down to -60 per step: every factor the kernels exponentiate (masked
    rows and padding included) stays finite, and the result still matches the recurrence."""
    q, k, v, g, h0 = make_inputs(1, 100, 1, 16, 16, "strong", with_h0=True, seed=5)
    g = (g.detach() * 12).requires_grad_(True)
    ref = run_with_grads(gla_recurrent_ref, q, k, v, g, h0)
    out = run_with_grads(_public(gla, "triton"), q, k, v, g, h0)
    for name, r, x in zip(NAMES, ref, out):
        assert torch.isfinite(x).all(), name
        assert_close(r, x, TRITON_TOL[name], name)


@pytest.mark.parametrize("variant", ["v13", "v14"])
def test_triton_chunk_mixed_spread(variant, monkeypatch):
    """The kernels score a chunk with one dot where its decay spread is small and with the
    sub-chunk scheme where it is large: a first chunk of weak gates, a second chunk
    (ending inside its third sub-chunk) with strong gates on keys 0-39 only (the spread is
    taken over all keys; K=80 spans K blocks with a ragged edge). V=136 spans two V
    blocks of the output kernel (each forms the scores, the first stores A)."""
    from mixzoo.kernels.gla import ops
    monkeypatch.setattr(ops, "VARIANT", variant)      # v14: the backward's SPLIT flag
    q, k, v, g, h0 = make_inputs(1, 100, 1, 80, 136, "weak", with_h0=True, seed=7)
    strong = torch.zeros_like(g)
    gen = torch.Generator().manual_seed(8)
    strong[:, 64:, :, :40] = -5.0 * torch.rand(1, 36, 1, 40, generator=gen)
    g = (g.detach() + strong).requires_grad_(True)
    ref = run_with_grads(gla_recurrent_ref, q, k, v, g, h0)
    out = run_with_grads(_public(gla, "triton"), q, k, v, g, h0)
    for name, r, x in zip(NAMES, ref, out):
        assert_close(r, x, TRITON_TOL[name], name)


# errors of the fp16 case below with every factor rounded once to fp16 before its dot
# (session 4's variant v6, measured with this test) and with hi + lo parts (the kernels)
FP16_ONCE = dict(o=5.1e-4, final_state=3.5e-4, dq=4.8e-4, dk=4.6e-4, dv=5.0e-4, dg=4.7e-4,
                 dh0=3.6e-4)
FP16_HI_LO = dict(o=4.3e-4, final_state=2.8e-4, dq=4.3e-4, dk=4.1e-4, dv=4.3e-4, dg=3.9e-4,
                  dh0=2.9e-4)


def test_triton_chunk_fp16_hi_lo_parts():
    """fp16 inputs (the interpreter's fp16 dot is right, unlike its bf16 one) run the
    low-precision branch of _dot_hl (hi + lo parts) and the tf32 pair dots: against the
    fp32 recurrence on the same fp16 values, each output must stay below the midpoint
    between rounding every factor once (FP16_ONCE) and the hi + lo result (FP16_HI_LO)."""
    q, k, v, g, h0 = make_inputs(1, 130, 2, 32, 32, "weak", with_h0=True, seed=3)
    q, k, v = (x.detach().half().requires_grad_(True) for x in (q, k, v))
    ref = run_with_grads(gla_recurrent_ref, *(x.detach().float().requires_grad_(True)
                                              for x in (q, k, v)), g, h0)
    out = run_with_grads(_public(gla, "triton"), q, k, v, g, h0)
    for name, r, x in zip(NAMES, ref, out):
        e = rel_rms(r, x)
        assert e < (FP16_ONCE[name] + FP16_HI_LO[name]) / 2, f"{name}: {e:.2e}"


@pytest.mark.parametrize("T, with_h0", [(1, True), (15, False), (33, True)])
def test_triton_fused_recurrent_matches_recurrence(T, with_h0):
    args = make_inputs(2, T, 2, 16, 24, "strong", with_h0=with_h0, seed=T + 1)
    ref = run_with_grads(gla_recurrent_ref, *args)
    out = run_with_grads(_public(fused_recurrent_gla, "triton"), *args)
    names = NAMES if with_h0 else NAMES[:-1]
    for name, r, x in zip(names, ref, out):
        assert_close(r, x, TRITON_TOL[name], name)


def test_triton_without_final_state_and_state_carry():
    """No final state requested: o alone back-propagates; two halves with the state
    carried give the one-pass output."""
    q, k, v, g, h0 = make_inputs(1, 40, 2, 16, 16, "weak", with_h0=True)
    o, s = gla(q, k, v, g, initial_state=h0, backend="triton")
    assert s is None
    o.sum().backward()
    assert all(x.grad is not None and torch.isfinite(x.grad).all() for x in (q, k, v, g, h0))
    with torch.no_grad():
        o1, s1 = gla(q[:, :23], k[:, :23], v[:, :23], g[:, :23], initial_state=h0,
                     output_final_state=True, backend="triton")
        o2, _ = fused_recurrent_gla(q[:, 23:], k[:, 23:], v[:, 23:], g[:, 23:],
                                    initial_state=s1, backend="triton")
    assert_close(o.detach(), torch.cat([o1, o2], dim=1), 1e-5, "carried state")


def test_triton_fake_tensor_shapes():
    """register_fake gives the real op's shapes and dtypes (what torch.compile sees)."""
    from torch._subclasses.fake_tensor import FakeTensorMode
    from mixzoo.kernels.gla.ops import gla_chunk_fwd_op
    q, k, v, g, h0 = make_inputs(1, 70, 2, 16, 24, "weak", with_h0=True)
    real = gla_chunk_fwd_op(q.detach(), k.detach(), v.detach(), g.detach(), h0.detach(), 0.25)
    plain = [x.detach() for x in (q, k, v, g, h0)]
    with FakeTensorMode() as mode:
        fake = gla_chunk_fwd_op(*(mode.from_tensor(x) for x in plain), 0.25)
    for r, f in zip(real, fake):
        assert r.shape == f.shape and r.dtype == f.dtype


def test_triton_torch_compile_fullgraph():
    """The custom op traces under torch.compile without graph breaks, gradients included."""
    q, k, v, g, h0 = make_inputs(1, 20, 2, 16, 16, "weak", with_h0=True)

    def f(q, k, v, g, h0):
        o, s = gla(q, k, v, g, initial_state=h0, output_final_state=True, backend="triton")
        return (o * o).sum() + s.sum()

    leaves = (q, k, v, g, h0)
    eager = torch.autograd.grad(f(*leaves), leaves)
    compiled = torch.compile(f, backend="aot_eager", fullgraph=True)
    got = torch.autograd.grad(compiled(*leaves), leaves)
    for name, r, x in zip(["dq", "dk", "dv", "dg", "dh0"], eager, got):
        assert_close(r, x, 1e-6, name)
