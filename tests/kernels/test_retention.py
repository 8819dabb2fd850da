"""Retention kernels: the chunked reference and the Triton kernels against the
step-by-step recurrence (outputs, final state, every gradient, g included), for
per-head [H] and per-token [B,T,H] decays, plus input validation."""
from __future__ import annotations

import os

os.environ.setdefault("TRITON_INTERPRET", "1")  # before triton / mixzoo are imported

import pytest
import torch

from mixzoo.kernels._common import assert_close
from mixzoo.kernels.retention import (fused_recurrent_retention, retention, retention_chunk_ref,
                                       retention_recurrent_ref)


def make_inputs(B, T, H, K, V, strength, gate, with_h0, seed=0):
    """Random leaves; 'strong' log decays lie in [-5, 0], 'weak' in [-0.05, 0].
    gate 'head' gives g [H] (RetNet), 'token' gives g [B,T,H]."""
    gen = torch.Generator().manual_seed(seed)
    q, k = (torch.randn(B, T, H, K, generator=gen) for _ in range(2))
    v = torch.randn(B, T, H, V, generator=gen)
    lo = 5.0 if strength == "strong" else 0.05
    gshape = (H,) if gate == "head" else (B, T, H)
    g = -lo * torch.rand(gshape, generator=gen)
    h0 = torch.randn(B, H, K, V, generator=gen) if with_h0 else None
    for x in (q, k, v, g, h0):
        if x is not None:
            x.requires_grad_(True)
    return q, k, v, g, h0


def run_with_grads(fn, q, k, v, g, h0, seed=1):
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
@pytest.mark.parametrize("gate", ["head", "token"])
def test_chunk_ref_matches_recurrence(T, D, strength, gate):
    args = make_inputs(2, T, 2, D, D, strength, gate, with_h0=True)
    ref = run_with_grads(retention_recurrent_ref, *args)
    out = run_with_grads(retention_chunk_ref, *args)
    for name, r, x in zip(NAMES, ref, out):
        assert_close(r, x, TOL[name], name)


def test_chunk_ref_no_initial_state_uneven_dims_and_extreme_decay():
    q, k, v, g, _ = make_inputs(1, 53, 3, 16, 24, "strong", "token", with_h0=False)
    g = (g.detach() * 12).requires_grad_(True)   # down to -60 per step
    o_ref, s_ref = retention_recurrent_ref(q, k, v, g, output_final_state=True)
    o, s = retention_chunk_ref(q, k, v, g, output_final_state=True, chunk_size=16)
    assert_close(o_ref, o, 2e-5, "o")
    assert_close(s_ref, s, 2e-5, "final_state")
    assert retention_chunk_ref(q, k, v, g)[1] is None


def test_public_reference_backend_and_dtype():
    q, k, v, g, h0 = make_inputs(1, 20, 2, 16, 16, "weak", "head", with_h0=True)
    o, s = retention(q.half(), k.half(), v.half(), g, initial_state=h0,
                     output_final_state=True, backend="reference")
    assert o.dtype == torch.float16 and s.dtype == torch.float32
    assert o.shape == (1, 20, 2, 16) and s.shape == (1, 2, 16, 16)


@pytest.mark.parametrize("bad, match", [
    (dict(q=(2, 8, 2)), r"q: expected shape \[B,T,H,K\]"),
    (dict(k=(2, 8, 3, 16)), r"k: expected shape \[B,T,H,K\]"),
    (dict(v=(1, 8, 2, 16)), r"v: expected shape \[B,T,H,V\]"),
    (dict(g=(3,)), r"g: expected shape \[H\]"),
    (dict(g=(2, 7, 2)), r"g: expected shape \[B,T,H\]"),
    (dict(g=(2, 8)), r"g: expected shape \[H\] .* or \[B,T,H\]"),
    (dict(h0=(2, 16, 16)), r"initial_state: expected shape \[B,H,K,V\]"),
])
def test_validation_errors(bad, match):
    shapes = dict(q=(2, 8, 2, 16), k=(2, 8, 2, 16), v=(2, 8, 2, 16), g=(2,),
                  h0=(2, 2, 16, 16))
    shapes.update(bad)
    t = {n: torch.zeros(s) for n, s in shapes.items()}
    with pytest.raises(ValueError, match=match):
        retention(t["q"], t["k"], t["v"], t["g"], initial_state=t["h0"])


# ------------------------------------------------------------------ Triton (interpreter)
# T covers one token, a partial chunk, exactly one chunk, one past it, and three chunks;
# initial state alternates with T; both gate layouts and both decay strengths.
TRITON_CASES = [(1, True), (15, False), (64, True), (65, False), (130, True)]
TRITON_TOL = dict(o=1e-5, final_state=1e-5, dq=1e-5, dk=1e-5, dv=1e-5, dg=1e-4, dh0=1e-5)


def _public(fn, backend):
    return lambda q, k, v, g, initial_state, output_final_state: fn(
        q, k, v, g, initial_state=initial_state, output_final_state=output_final_state,
        backend=backend)


def _check(fn, args, with_h0, gate):
    ref = run_with_grads(retention_recurrent_ref, *args)
    out = run_with_grads(_public(fn, "triton"), *args)
    names = NAMES if with_h0 else NAMES[:-1]
    tol = dict(TRITON_TOL)
    if gate == "head":
        # dg of a per-head decay sums B*T per-token terms much larger than their total
        # at strong decay, so fp32 rounding shows (~1.3e-4 at T=130, g=-3.2)
        tol["dg"] = 5e-4
    for name, r, x in zip(names, ref, out):
        assert_close(r, x, tol[name], name)


@pytest.mark.parametrize("T, with_h0", TRITON_CASES)
@pytest.mark.parametrize("strength", ["strong", "weak"])
@pytest.mark.parametrize("gate", ["head", "token"])
def test_triton_chunk_matches_recurrence(T, with_h0, strength, gate):
    args = make_inputs(1, T, 1, 16, 32, strength, gate, with_h0=with_h0, seed=T)
    _check(retention, args, with_h0, gate)


def test_triton_chunk_odd_head_dims_and_multiple_blocks():
    """K=80 spans two K blocks with a ragged edge, V=72 two V blocks, ragged too."""
    args = make_inputs(2, 70, 1, 80, 72, "strong", "token", with_h0=True, seed=3)
    _check(retention, args, True, "token")


@pytest.mark.parametrize("T, with_h0, gate", [(1, True, "head"), (15, False, "token"),
                                              (33, True, "token")])
def test_triton_fused_recurrent_matches_recurrence(T, with_h0, gate):
    args = make_inputs(2, T, 2, 16, 24, "strong", gate, with_h0=with_h0, seed=T + 1)
    _check(fused_recurrent_retention, args, with_h0, gate)


def test_triton_state_carry_chunk_then_recurrent():
    q, k, v, g, h0 = make_inputs(1, 40, 2, 16, 16, "weak", "token", with_h0=True)
    with torch.no_grad():
        o, _ = retention(q, k, v, g, initial_state=h0, backend="triton")
        o1, s1 = retention(q[:, :29], k[:, :29], v[:, :29], g[:, :29], initial_state=h0,
                           output_final_state=True, backend="triton")
        o2, _ = fused_recurrent_retention(q[:, 29:], k[:, 29:], v[:, 29:], g[:, 29:],
                                          initial_state=s1, backend="triton")
    assert_close(o, torch.cat([o1, o2], dim=1), 1e-5, "carried state")


def test_triton_fake_tensor_shapes():
    from torch._subclasses.fake_tensor import FakeTensorMode
    from mixzoo.kernels.retention.ops import retention_chunk_fwd_op
    for gate in ("head", "token"):
        plain = [x.detach() for x in make_inputs(1, 70, 2, 16, 24, "weak", gate, with_h0=True)]
        real = retention_chunk_fwd_op(*plain, 0.25)
        with FakeTensorMode() as mode:
            fake = retention_chunk_fwd_op(*(mode.from_tensor(x) for x in plain), 0.25)
        for r, f in zip(real, fake):
            assert r.shape == f.shape and r.dtype == f.dtype


@pytest.mark.parametrize("gate", ["head", "token"])
def test_triton_torch_compile_fullgraph(gate):
    """The custom op traces under torch.compile without graph breaks, gradients included."""
    q, k, v, g, h0 = make_inputs(1, 20, 2, 16, 16, "weak", gate, with_h0=True)

    def f(q, k, v, g, h0):
        o, s = retention(q, k, v, g, initial_state=h0, output_final_state=True,
                         backend="triton")
        return (o * o).sum() + s.sum()

    leaves = (q, k, v, g, h0)
    eager = torch.autograd.grad(f(*leaves), leaves)
    compiled = torch.compile(f, backend="aot_eager", fullgraph=True)
    got = torch.autograd.grad(compiled(*leaves), leaves)
    for name, r, x in zip(["dq", "dk", "dv", "dg", "dh0"], eager, got):
        assert_close(r, x, 1e-6, name)
