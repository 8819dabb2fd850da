"""Delta rule: the chunk reference against the step recurrence, input validation,
and (under TRITON_INTERPRET=1, fp32) the Triton kernels against the reference."""
import os

os.environ.setdefault("TRITON_INTERPRET", "1")  # before triton/mixzoo import

import pytest
import torch

from mixzoo.kernels._common import assert_close
from mixzoo.kernels.delta_rule import delta_rule, delta_rule_chunk_ref, delta_rule_recurrent_ref


def make_inputs(B, T, H, K, V, *, init=True, dtype=torch.float32, seed=0, l2=True):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(B, T, H, K, generator=g, dtype=dtype)
    k = torch.randn(B, T, H, K, generator=g, dtype=dtype)
    if l2:  # DeltaNet feeds unit-norm keys; beta*|k|^2 <= 2 keeps the recurrence stable
        k = torch.nn.functional.normalize(k, dim=-1)
    v = torch.randn(B, T, H, V, generator=g, dtype=dtype)
    beta = torch.rand(B, T, H, generator=g, dtype=dtype)
    h0 = torch.randn(B, H, K, V, generator=g) if init else None
    return q, k, v, beta, h0


def run_with_grads(fn, q, k, v, beta, h0, seed=1, **kw):
    """Run fn, back-propagate random cotangents into o and the final state; return all."""
    leaves = [t.detach().clone().requires_grad_(True) for t in (q, k, v, beta)]
    h0l = h0.detach().clone().requires_grad_(True) if h0 is not None else None
    o, ht = fn(*leaves, initial_state=h0l, output_final_state=True, **kw)
    g = torch.Generator().manual_seed(seed)
    do = torch.randn(o.shape, generator=g)
    dht = torch.randn(ht.shape, generator=g)
    ((o.float() * do).sum() + (ht * dht).sum()).backward()
    grads = [t.grad for t in leaves] + ([h0l.grad] if h0l is not None else [])
    return o.detach(), ht.detach(), grads


GRAD_NAMES = ["dq", "dk", "dv", "dbeta", "dh0"]


@pytest.mark.parametrize("T", [1, 7, 64, 100])
@pytest.mark.parametrize("K,V", [(16, 16), (32, 16)])
@pytest.mark.parametrize("l2", [False, True])
def test_chunk_ref_matches_recurrence(T, K, V, l2):
    q, k, v, beta, h0 = make_inputs(2, T, 2, K, V, l2=not l2)
    ref = run_with_grads(delta_rule_recurrent_ref, q, k, v, beta, h0, use_qk_l2norm=l2)
    out = run_with_grads(delta_rule_chunk_ref, q, k, v, beta, h0, use_qk_l2norm=l2)
    assert_close(ref[0], out[0], 1e-5, "o")
    assert_close(ref[1], out[1], 1e-5, "final state")
    for name, gr, go in zip(GRAD_NAMES, ref[2], out[2]):
        assert_close(gr, go, 1e-5, name)


def test_chunk_ref_small_chunk_and_scale():
    q, k, v, beta, h0 = make_inputs(1, 37, 3, 16, 32)
    o1, s1 = delta_rule_recurrent_ref(q, k, v, beta, scale=0.3, initial_state=h0,
                                      output_final_state=True)
    o2, s2 = delta_rule_chunk_ref(q, k, v, beta, scale=0.3, initial_state=h0,
                                  output_final_state=True, chunk_size=16)
    assert_close(o1, o2, 1e-5, "o")
    assert_close(s1, s2, 1e-5, "state")


def test_recurrence_definition_by_hand():
    # one head, two steps, K=V=1: S1 = b1 k1 v1; S2 = S1 + k2 b2 (v2 - S1 k2)
    q = torch.tensor([1.0, 2.0]).view(1, 2, 1, 1)
    k = torch.tensor([0.5, 1.0]).view(1, 2, 1, 1)
    v = torch.tensor([3.0, -1.0]).view(1, 2, 1, 1)
    beta = torch.tensor([0.5, 0.25]).view(1, 2, 1)
    s1 = 0.5 * 0.5 * 3.0
    s2 = s1 + 1.0 * 0.25 * (-1.0 - s1 * 1.0)
    o, s = delta_rule_recurrent_ref(q, k, v, beta, scale=1.0, output_final_state=True)
    torch.testing.assert_close(o.flatten(), torch.tensor([s1 * 1.0, s2 * 2.0]))
    torch.testing.assert_close(s.flatten(), torch.tensor([s2]))


def test_output_dtype_and_state_dtype():
    q, k, v, beta, _ = make_inputs(1, 5, 2, 16, 16, dtype=torch.bfloat16)
    o, s = delta_rule(q, k, v, beta, output_final_state=True, backend="reference")
    assert o.dtype == torch.bfloat16 and o.shape == v.shape
    assert s.dtype == torch.float32 and s.shape == (1, 2, 16, 16)
    o, s = delta_rule(q, k, v, beta, backend="reference")
    assert s is None


def test_two_pieces_equal_one_pass():
    q, k, v, beta, h0 = make_inputs(2, 90, 2, 16, 16)
    o, s = delta_rule(q, k, v, beta, initial_state=h0, output_final_state=True, backend="reference")
    oa, sa = delta_rule(q[:, :40], k[:, :40], v[:, :40], beta[:, :40], initial_state=h0,
                        output_final_state=True, backend="reference")
    ob, sb = delta_rule(q[:, 40:], k[:, 40:], v[:, 40:], beta[:, 40:], initial_state=sa,
                        output_final_state=True, backend="reference")
    assert_close(o, torch.cat([oa, ob], 1), 1e-5, "o")
    assert_close(s, sb, 1e-5, "state")


@pytest.mark.parametrize("bad,match", [
    (dict(q=torch.zeros(2, 8, 2)), r"q: expected shape \[B,T,H,K\]"),
    (dict(k=torch.zeros(2, 8, 2, 8)), r"k: expected shape \[B,T,H,K\]"),
    (dict(v=torch.zeros(2, 7, 2, 16)), r"v: expected shape \[B,T,H,V\]"),
    (dict(beta=torch.zeros(2, 8, 2, 1)), r"beta: expected shape \[B,T,H\]"),
    (dict(initial_state=torch.zeros(2, 2, 16, 8)), r"initial_state: expected shape \[B,H,K,V\]"),
])
def test_validation_errors(bad, match):
    args = dict(q=torch.zeros(2, 8, 2, 16), k=torch.zeros(2, 8, 2, 16), v=torch.zeros(2, 8, 2, 16),
                beta=torch.zeros(2, 8, 2), initial_state=None)
    args.update(bad)
    with pytest.raises(ValueError, match=match):
        delta_rule(args["q"], args["k"], args["v"], args["beta"],
                   initial_state=args["initial_state"], backend="reference")


def test_validation_dtype_and_backend():
    q, k, v, beta, h0 = make_inputs(1, 4, 1, 16, 16)
    with pytest.raises(TypeError, match="initial_state"):
        delta_rule(q, k, v, beta, initial_state=h0.double(), backend="reference")
    with pytest.raises(TypeError, match="q"):
        delta_rule(q.int(), k, v, beta, backend="reference")
    with pytest.raises(ValueError, match="backend"):
        delta_rule(q, k, v, beta, backend="cuda")


# ----------------------------------------------------------------------------- Triton kernels
from mixzoo.kernels.delta_rule import delta_rule_triton  # noqa: E402


def _triton(algo):
    def fn(*a, **kw):
        return delta_rule_triton(*a, algo=algo, **kw)
    return fn


def check_against_reference(algo, B, T, H, K, V, init, l2, seed=0):
    q, k, v, beta, h0 = make_inputs(B, T, H, K, V, init=init, l2=not l2, seed=seed)
    ref = run_with_grads(delta_rule_recurrent_ref, q, k, v, beta, h0, use_qk_l2norm=l2)
    out = run_with_grads(_triton(algo), q, k, v, beta, h0, use_qk_l2norm=l2)
    tol = 1e-5 if algo == "chunk" else 2e-5
    assert_close(ref[0], out[0], tol, "o")
    assert_close(ref[1], out[1], tol, "final state")
    assert len(ref[2]) == len(out[2])
    for name, gr, go in zip(GRAD_NAMES, ref[2], out[2]):
        assert_close(gr, go, tol, name)


# every T with both head-dim pairs; the initial state alternates so both settings meet every
# dim pair and both sides of the chunk boundary (keeps the interpreter time down).
_CHUNK_CASES = [
    (1, 16, 32, True), (1, 32, 16, False), (15, 16, 32, False), (15, 32, 16, True),
    (64, 16, 32, True), (64, 32, 16, False), (65, 16, 32, False), (65, 32, 16, True),
    (130, 16, 32, True), (130, 32, 16, False)]


@pytest.mark.parametrize("T,K,V,init", _CHUNK_CASES)
def test_chunk_kernel_matches_reference(T, K, V, init):
    check_against_reference("chunk", 1, T, 2, K, V, init, l2=False)


def _prep_outputs(k, v, beta, use_l2):
    from mixzoo.kernels.delta_rule import chunk
    w, _, tinv = chunk.prep(k, v, beta, use_l2, True)
    # U = Tm diag(beta) V is checked through Tm, and end to end through o
    return w, tinv


@pytest.mark.parametrize("inv", ["stacked", "blocks"])     # MIXZOO_DELTA_INV
@pytest.mark.parametrize("T,K,V,similar,l2", [
    (130, 32, 16, False, False),   # full chunk, partial chunk of 2 rows (identity padding)
    (64, 24, 40, True, True),      # near-parallel keys, beta up to 1.5: large Tm entries
    (50, 16, 16, False, True)])
def test_prep_equals_exact_inverse(T, K, V, similar, l2, inv, monkeypatch):
    """Tm = (I + StrictTril(diag(beta) K K^T))^{-1} and W = Tm diag(beta) K per chunk,
    against fp64 torch.linalg.inv; the padded rows of a partial chunk hold the identity."""
    monkeypatch.setenv("MIXZOO_DELTA_INV", inv)
    g = torch.Generator().manual_seed(7)
    H = 2
    k = torch.randn(1, T, H, K, generator=g)
    if similar:
        k = k[:, :1] + 0.05 * k
    k = k if l2 else torch.nn.functional.normalize(k, dim=-1)
    v = torch.randn(1, T, H, V, generator=g)
    beta = torch.rand(1, T, H, generator=g) * (1.5 if similar else 1.0)
    w, tinv = _prep_outputs(k, v, beta, l2)
    kn = k.double()
    if l2:  # in-kernel normalisation, with its eps: x / sqrt(sum x^2 + 1e-6)
        kn = kn * torch.rsqrt(kn.square().sum(-1, keepdim=True) + 1e-6)
    for h in range(H):
        for c in range(tinv.shape[2]):
            kc, bc = kn[0, c * 64:(c + 1) * 64, h], beta[0, c * 64:(c + 1) * 64, h].double()
            n = kc.shape[0]
            ref = torch.eye(64, dtype=torch.float64)
            ref[:n, :n] = torch.linalg.inv(torch.eye(n, dtype=torch.float64)
                                           + torch.tril(bc[:, None] * (kc @ kc.T), -1))
            assert_close(ref, tinv[0, h, c].double(), 1e-5, f"Tm chunk {c} head {h}")
            assert_close(ref[:n, :n] @ (bc[:, None] * kc), w[0, c * 64:c * 64 + n, h].double(),
                         1e-5, f"W chunk {c} head {h}")


@pytest.mark.parametrize("T,K,V,init", [
    (1, 16, 32, True), (1, 32, 16, False), (15, 16, 32, False), (15, 32, 16, True),
    (40, 16, 32, True)])
def test_recurrent_kernel_matches_reference(T, K, V, init):
    check_against_reference("recurrent", 1, T, 2, K, V, init, l2=False)


@pytest.mark.parametrize("algo,T", [("chunk", 130), ("recurrent", 15)])
def test_kernels_in_kernel_l2norm(algo, T):
    check_against_reference(algo, 1, T, 2, 32, 16, init=True, l2=True, seed=3)


def test_odd_head_dims_and_batch():
    # K=24, V=40: not powers of two (masked tiles); B=2 checks the batch offsets
    check_against_reference("chunk", 2, 70, 1, 24, 40, init=True, l2=False, seed=5)


def test_auto_dispatch_t1_uses_recurrent_and_matches_chunk():
    q, k, v, beta, h0 = make_inputs(2, 1, 2, 16, 16)
    o1, s1 = delta_rule(q, k, v, beta, initial_state=h0, output_final_state=True, backend="triton")
    o2, s2 = delta_rule_triton(q, k, v, beta, initial_state=h0, output_final_state=True,
                               algo="chunk")
    assert_close(o2, o1, 1e-5, "o")
    assert_close(s2, s1, 1e-5, "state")


def test_no_grad_forward_and_state_only_grad():
    q, k, v, beta, h0 = make_inputs(1, 20, 1, 16, 16)
    with torch.no_grad():
        o, s = delta_rule_triton(q, k, v, beta, initial_state=h0, output_final_state=False)
    assert s is None
    assert_close(delta_rule_chunk_ref(q, k, v, beta, initial_state=h0)[0], o, 1e-5, "o")
    # gradient through the final state only (o unused)
    h0r = h0.clone().requires_grad_(True)
    _, s = delta_rule_triton(q, k, v, beta, initial_state=h0r, output_final_state=True)
    s.sum().backward()
    h0f = h0.clone().requires_grad_(True)
    _, sf = delta_rule_recurrent_ref(q, k, v, beta, initial_state=h0f, output_final_state=True)
    sf.sum().backward()
    assert_close(h0f.grad, h0r.grad, 1e-5, "dh0")


def test_torch_compile_reference_path_fullgraph():
    q, k, v, beta, h0 = make_inputs(1, 40, 2, 16, 16)

    def f(q, k, v, beta, h0):
        return delta_rule(q, k, v, beta, initial_state=h0, output_final_state=True,
                          use_qk_l2norm=True, backend="reference")

    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")
    o1, s1 = compiled(q, k, v, beta, h0)
    o2, s2 = f(q, k, v, beta, h0)
    assert_close(o2, o1, 1e-5, "o")
    assert_close(s2, s1, 1e-5, "state")


def test_custom_op_traces_without_graph_break():
    # the Triton op under torch.compile: fake tensors propagate shapes, fullgraph=True means
    # any graph break fails; aot_eager then runs the real (interpreted) kernels
    q, k, v, beta, h0 = make_inputs(1, 20, 1, 16, 16)
    leaves = [t.clone().requires_grad_(True) for t in (q, k, v, beta)]

    def f(q, k, v, beta):
        o, s = delta_rule_triton(q, k, v, beta, initial_state=h0, output_final_state=True)
        return o.sum() + s.sum()

    torch.compile(f, fullgraph=True, backend="aot_eager")(*leaves).backward()
    ref = [t.clone().requires_grad_(True) for t in (q, k, v, beta)]
    o, s = delta_rule_recurrent_ref(*ref, initial_state=h0, output_final_state=True)
    (o.sum() + s.sum()).backward()
    for name, a, b in zip(GRAD_NAMES, ref, leaves):
        assert_close(a.grad, b.grad, 1e-5, name)


def test_opcheck_custom_ops():
    # schema, fake (meta) impls, autograd registration and AOT tracing of both Triton ops
    from mixzoo.kernels.delta_rule import ops
    q, k, v, beta, h0 = make_inputs(1, 20, 1, 16, 16)
    leaves = [t.requires_grad_(True) for t in (q, k, v, beta)]
    torch.library.opcheck(ops.chunk_fwd_op, (*leaves, h0.requires_grad_(True), 0.25, True, False,
                                             True))
    short = [t.detach()[:, :3].clone().requires_grad_(True) for t in (q, k, v, beta)]
    torch.library.opcheck(ops.recurrent_fwd_op, (*short, h0.detach(), 0.25, True, True))


@pytest.mark.parametrize("bv,mode", [(64, "auto"), (32, "auto"), (32, "load"), (64, "rebuild")])
def test_state_backward_every_w_source(bv, mode, monkeypatch):
    """The state backward's W source (params.state_w_mode: W loaded, or W rebuilt
    from Tm) at both V blocks; the block follows the head count, so force it here."""
    from mixzoo.kernels.delta_rule import chunk
    monkeypatch.setattr(chunk.params, "state_bv",
                        lambda BH, BVfull, backward=False, half=True: min(bv, BVfull))
    monkeypatch.setenv("MIXZOO_DELTA_STATE_W", mode)
    check_against_reference("chunk", 1, 130, 2, 32, 64, True, l2=False)


def test_state_w_mode_rejects_unknown(monkeypatch):
    from mixzoo.kernels.delta_rule import params
    monkeypatch.setenv("MIXZOO_DELTA_STATE_W", "fast")
    with pytest.raises(ValueError, match="MIXZOO_DELTA_STATE_W='fast'"):
        params.state_w_mode(32)


def test_fused_backward_candidates_pruned_for_fp32_and_wide_heads():
    """fp32 inputs and head dims over 128 keep only the first fused-backward candidate (the
    one checked right on the H100 there); bf16 at 128 keeps all but the key-dim-<=64 ones,
    bf16 at 64 keeps them all."""
    import triton
    from mixzoo.kernels.delta_rule import chunk
    cfgs = [triton.Config({"BV": bv}, num_warps=nw, num_stages=ns)
            for bv, nw, ns in ((32, 8, 2), (16, 8, 1)) + chunk._SMALL_K]
    f32, b16 = torch.empty(1, dtype=torch.float32), torch.empty(1, dtype=torch.bfloat16)
    # as Triton calls it: positional arguments by name, keyword arguments (K) as keywords
    assert chunk._fused_bwd_prune(cfgs, {"q": f32}, K=64) == cfgs[:1]
    assert chunk._fused_bwd_prune(cfgs, {"q": b16}, K=256) == cfgs[:1]
    assert chunk._fused_bwd_prune(cfgs, {"q": b16}, K=128) == cfgs[:2]
    assert chunk._fused_bwd_prune(cfgs, {"q": b16}, K=64) == cfgs


def test_fused_backward_prune_through_the_autotuner(monkeypatch):
    """The prune hook called the way this Triton's Autotuner calls it (a KeyError here once
    broke every GPU backward)."""
    from mixzoo.kernels.delta_rule import chunk
    tuner = chunk._fused_bwd_kernel
    monkeypatch.setattr(tuner, "nargs", {"q": torch.empty(1, dtype=torch.float32)}, raising=False)
    assert len(tuner.prune_configs({"K": 64, "H": 2, "V": 64})) == 1


def test_chunk_fits_the_h100_limits():
    """On CUDA, delta_rule runs the chunk kernels only where they were checked on the H100
    (half precision up to head dim 128); beyond, the fused recurrent kernels."""
    from mixzoo.kernels.delta_rule import params
    assert params.chunk_fits(torch.bfloat16, 128, 128)
    assert not params.chunk_fits(torch.bfloat16, 256, 64)
    assert params.chunk_fits(torch.float16, 64, 128)
    assert not params.chunk_fits(torch.float32, 64, 64)
    assert params.state_bv(16, 128, backward=True, half=False) == 32
    assert params.state_bv(16, 128, backward=True) == 64
