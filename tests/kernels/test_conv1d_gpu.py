"""Short-conv kernels on a CUDA GPU (run on an H100): bf16 at real sizes vs an fp32
reference (outputs, final state, every gradient). Every test carries the gpu mark."""
import pytest
import torch

from mixzoo.kernels._common import rel_rms
from mixzoo.kernels.conv1d import short_conv, short_conv_vec_ref
from mixzoo.kernels.conv1d.ops import use_variant

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]
BF16_TOL = 1e-2


def _run(fn, x, w, b, h0, dy, dh, **kw):
    leaves = [t.detach().clone().requires_grad_(True) if t is not None else None
              for t in (x, w, b, h0)]
    y, hT = fn(*leaves[:3], initial_state=leaves[3], **kw)
    loss = (y.float() * dy).sum() + ((hT * dh).sum() if hT is not None else 0)
    loss.backward()
    return [y, hT] + [t.grad if t is not None else None for t in leaves]


@pytest.mark.parametrize("variant", ["v1", "v2"])
@pytest.mark.parametrize("B,T,D,W,act,causal,bias,state", [
    (4, 2048, 1024, 4, "silu", True, True, True),
    (2, 4097, 768, 3, None, True, False, False),
    (2, 1000, 512, 8, "silu", True, True, True),
    (2, 2048, 1024, 4, "silu", False, True, False),
    (1, 3, 256, 6, "silu", True, True, True),
])
def test_bf16_vs_fp32_reference(B, T, D, W, act, causal, bias, state, variant):
    g = torch.Generator(device="cuda").manual_seed(T)
    x = torch.randn(B, T, D, device="cuda", generator=g).bfloat16()
    w = (torch.randn(D, W, device="cuda", generator=g) / W ** 0.5).bfloat16()
    b = torch.randn(D, device="cuda", generator=g).bfloat16() if bias else None
    h0 = torch.randn(B, D, W - 1, device="cuda", generator=g) if state else None
    dy = torch.randn(B, T, D, device="cuda", generator=g)
    dh = torch.randn(B, D, W - 1, device="cuda", generator=g) if causal else None
    kw = dict(activation=act, causal=causal, output_final_state=causal)
    ref = _run(short_conv_vec_ref, x.float(), w.float(), b.float() if bias else None, h0,
               dy, dh, **kw)
    with use_variant(variant):
        ours = _run(lambda *a, **k: short_conv(*a, backend="triton", **k), x, w, b, h0, dy, dh,
                    **kw)
    names = ("y", "final", "dx", "dw", "db", "dh0")
    errs = {n: rel_rms(r, o) for n, r, o in zip(names, ref, ours) if r is not None}
    print(f"\n{variant} {(B, T, D, W, act, causal, bias, state)} "
          + " ".join(f"{n}={e:.1e}" for n, e in errs.items()))
    for n, e in errs.items():
        assert e < BF16_TOL, f"{n}: {e:.2e}"


def test_update_kernel_decoding():
    B, D, W = 8, 2048, 4
    x = torch.randn(B, 64, D, device="cuda").bfloat16()
    w = torch.randn(D, W, device="cuda").bfloat16()
    b = torch.randn(D, device="cuda").bfloat16()
    with torch.no_grad():
        full, _ = short_conv(x, w, b, activation="silu", backend="triton")
        state, ys = None, []
        for t in range(64):
            y, state = short_conv(x[:, t:t + 1], w, b, activation="silu", initial_state=state,
                                  output_final_state=True, backend="triton")
            ys.append(y)
    assert rel_rms(full.float(), torch.cat(ys, 1).float()) < 1e-2


@pytest.mark.parametrize("variant", ["v1", "v2"])
@pytest.mark.parametrize("B,T,D,splits", [
    (32, 197, 1152, [384, 384, 384]),   # vision DeltaNet q|k|v, ViT-S 224 px
    (2, 1024, 1152, [384, 384, 384]),   # 1024 tokens: many row chunks per sequence
    (4, 300, 512, None),                # one group (BLOCK_D 256), chunk boundaries mid-sequence
])
def test_bidirectional_bf16_vs_fp32_reference(B, T, D, splits, variant):
    from mixzoo.kernels.conv1d import short_conv_bidirectional, short_conv_bidirectional_ref
    g = torch.Generator(device="cuda").manual_seed(T)
    x = torch.randn(B, T, D, device="cuda", generator=g).bfloat16()
    w = (torch.randn(D, 4, device="cuda", generator=g) / 2).float()   # fp32 master weight
    dys = [torch.randn(2 * B, T, s, device="cuda", generator=g) for s in (splits or [D])]

    def run(fn, xx, ww):
        xx, ww = xx.detach().clone().requires_grad_(), ww.detach().clone().requires_grad_()
        ys = fn(xx, ww, activation="silu", splits=splits)
        sum((y.float() * d).sum() for y, d in zip(ys, dys)).backward()
        return torch.cat([y.float() for y in ys], -1), xx.grad, ww.grad

    ref = run(short_conv_bidirectional_ref, x.float(), w)
    with use_variant(variant):
        ours = run(lambda *a, **k: short_conv_bidirectional(*a, backend="triton", **k), x, w)
    errs = {n: rel_rms(r, o) for n, r, o in zip(("y", "dx", "dw"), ref, ours)}
    print(f"\nbidir {variant} {(B, T, D, splits)} " + " ".join(f"{n}={e:.1e}" for n, e in errs.items()))
    for n, e in errs.items():
        assert e < BF16_TOL, f"{n}: {e:.2e}"
