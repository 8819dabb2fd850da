"""GLA Triton kernels on the GPU: bf16/fp16 at real sizes against the fp32 reference
(and fla 0.6 `chunk_gla` on the same inputs, when importable). Run on an H100 with
`pytest -m gpu -s tests/kernels/test_gla_gpu.py`; the -s output is the error table."""
from __future__ import annotations

import os

import pytest
import torch
import torch.nn.functional as F

from mixzoo.kernels._common import rel_rms
from mixzoo.kernels.gla import fused_recurrent_gla, gla, gla_chunk_ref

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]

try:  # MIXZOO_GPU_FLA=0 skips the comparison (fla's first call autotunes for minutes)
    if os.environ.get("MIXZOO_GPU_FLA", "1") == "0":
        raise ImportError("MIXZOO_GPU_FLA=0")
    from fla.ops.gla import chunk_gla
except Exception:  # noqa: BLE001 - fla is an optional anchor
    chunk_gla = None

NAMES = ["o", "final_state", "dq", "dk", "dv", "dg", "dh0"]


def _inputs(B, T, H, K, V, gate, dtype, seed=0):
    gen = torch.Generator(device="cuda").manual_seed(seed)
    q, k = (torch.randn(B, T, H, K, device="cuda", generator=gen) for _ in range(2))
    v = torch.randn(B, T, H, V, device="cuda", generator=gen)
    x = torch.randn(B, T, H, K, device="cuda", generator=gen)
    g = F.logsigmoid(x) / 16 if gate == "weak" else -5 * torch.rand_like(x)
    h0 = torch.randn(B, H, K, V, device="cuda", generator=gen)
    return [t.to(dtype) for t in (q, k, v)] + [g, h0]


def _run(fn, q, k, v, g, h0, do, dht):
    leaves = [t.detach().clone().requires_grad_(True) for t in (q, k, v, g, h0)]
    o, s = fn(*leaves[:4], initial_state=leaves[4], output_final_state=True)
    ((o.float() * do).sum() + (s.float() * dht).sum()).backward()
    return [o, s] + [t.grad for t in leaves]


def _errors(case, args, use_fla=True):
    """Errors of ours (and fla) against the fp32 reference on the same inputs."""
    q, k, v, g, h0 = args
    gen = torch.Generator(device="cuda").manual_seed(1)
    do = torch.randn(v.shape, device="cuda", generator=gen)
    dht = torch.randn(h0.shape, device="cuda", generator=gen)
    ref = _run(gla_chunk_ref, *(t.float() for t in args), do, dht)
    ours = _run(lambda *a, **kw: gla(*a, **kw, backend="triton"), *args, do, dht)
    fla = (_run(lambda *a, **kw: chunk_gla(*a, **kw), *args, do, dht)
           if chunk_gla is not None and use_fla else None)
    rows = {}
    for i, name in enumerate(NAMES):
        e_ours = rel_rms(ref[i], ours[i])
        e_fla = rel_rms(ref[i], fla[i]) if fla else float("nan")
        assert torch.isfinite(ours[i]).all(), f"{case} {name}: NaN/Inf"
        rows[name] = (e_ours, e_fla)
        print(f"gpu-check gla {case:<28} {name:<12} ours={e_ours:.2e} fla={e_fla:.2e}")
    return rows


@pytest.mark.parametrize("gate", ["weak", "strong"])
def test_bf16_real_size_vs_fp32_reference_and_fla(gate):
    rows = _errors(f"bf16 B2 T2048 H8 D128 {gate}",
                   _inputs(2, 2048, 8, 128, 128, gate, torch.bfloat16))
    for name, (e_ours, e_fla) in rows.items():
        assert e_ours < 1e-2, f"{name}: {e_ours:.2e}"
        if e_fla == e_fla:   # fla ran: ours no worse (10% + 1e-4 slack for noise)
            assert e_ours <= 1.1 * e_fla + 1e-4, f"{name}: ours {e_ours:.2e} > fla {e_fla:.2e}"


@pytest.mark.parametrize("K, V, dtype", [(16, 16, torch.float16), (64, 96, torch.bfloat16),
                                         (256, 256, torch.bfloat16)])
def test_head_dims_and_dtypes(K, V, dtype):
    rows = _errors(f"{str(dtype)[6:]} B2 T1000 H2 K{K} V{V}",
                   _inputs(2, 1000, 2, K, V, "weak", dtype, seed=K), use_fla=False)
    for name, (e_ours, _) in rows.items():
        assert e_ours < 1e-2, f"{name}: {e_ours:.2e}"


def test_fp32_inputs_are_exact():
    args = _inputs(1, 300, 2, 64, 64, "strong", torch.float32)
    for name, (e_ours, _) in _errors("fp32 B1 T300 H2 D64 strong", args, use_fla=False).items():
        assert e_ours < 1e-5, f"{name}: {e_ours:.2e}"


def test_long_sequence_strong_decay_is_finite():
    q, k, v, g, h0 = (t.requires_grad_(True) for t in
                      _inputs(1, 65536, 2, 128, 128, "strong", torch.bfloat16))
    o, s = gla(q, k, v, g, initial_state=h0, output_final_state=True, backend="triton")
    (o.float().square().mean() + s.square().mean()).backward()
    for name, t in zip(NAMES, (o, s, q.grad, k.grad, v.grad, g.grad, h0.grad)):
        assert torch.isfinite(t).all(), f"T=65536 {name}: NaN/Inf"


def test_fused_recurrent_decoding_matches_chunk():
    """Prefill with the chunk kernel, then decode 8 tokens one at a time with the
    recurrent kernel: equal to one chunk pass over all tokens (bf16 tolerance)."""
    q, k, v, g, h0 = _inputs(2, 520, 4, 128, 128, "weak", torch.bfloat16)
    o_all, s_all = gla(q, k, v, g, initial_state=h0, output_final_state=True)
    o_pre, s = gla(q[:, :512], k[:, :512], v[:, :512], g[:, :512], initial_state=h0,
                   output_final_state=True)
    outs = [o_pre]
    for t in range(512, 520):
        o_t, s = fused_recurrent_gla(q[:, t:t + 1], k[:, t:t + 1], v[:, t:t + 1],
                                     g[:, t:t + 1], initial_state=s, output_final_state=True)
        outs.append(o_t)
    assert rel_rms(o_all, torch.cat(outs, 1)) < 1e-2
    assert rel_rms(s_all, s) < 1e-2


def test_fused_recurrent_grads_vs_reference():
    args = _inputs(2, 256, 4, 64, 64, "strong", torch.bfloat16)
    gen = torch.Generator(device="cuda").manual_seed(1)
    do = torch.randn(args[2].shape, device="cuda", generator=gen)
    dht = torch.randn(args[4].shape, device="cuda", generator=gen)
    ref = _run(gla_chunk_ref, *(t.float() for t in args), do, dht)
    out = _run(lambda *a, **kw: fused_recurrent_gla(*a, **kw, backend="triton"), *args, do, dht)
    for name, r, x in zip(NAMES, ref, out):
        e = rel_rms(r, x)
        print(f"gpu-check gla {'recurrent bf16 T256 strong':<28} {name:<12} ours={e:.2e}")
        assert e < 1e-2, f"{name}: {e:.2e}"
