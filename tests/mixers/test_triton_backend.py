"""Every built-in mixer on backend="triton" (the Triton kernels, in the interpreter on CPU)
equals backend="reference": outputs, parameter gradients, and the carried state. This is the
mixer <-> kernel seam: strided views from fused projections, GQA, KV caches, conv states."""
import os

import pytest
import torch

from mixzoo.kernels._common import assert_close
from mixzoo.registry import build_mixer
from mixzoo.testing import state_tensors

pytestmark = pytest.mark.skipif(
    os.environ.get("TRITON_INTERPRET") != "1" and not torch.cuda.is_available(),
    reason="the Triton kernels need CUDA or TRITON_INTERPRET=1")

SPECS = [
    {"type": "deltanet", "use_output_gate": True, "num_heads": 2},
    {"type": "gla", "num_heads": 2},
    {"type": "retnet"},
    {"type": "attention", "num_kv_heads": 2},
    {"type": "sliding_window", "window": 4, "num_kv_heads": 2},
    {"type": "short_conv", "activation": "silu"},
    # The bidirectional linear mixers run the same kernels on flipped copies; the attention
    # ones take different kernel paths (no mask; the band's three calls).
    {"type": "attention", "causal": False},
    {"type": "sliding_window", "window": 4, "causal": False},
]


def _pair(spec, d_model=16):
    out = []
    for backend in ("reference", "triton"):
        torch.manual_seed(0)
        out.append(build_mixer({**spec, "backend": backend}, d_model))
    return out


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s["type"] + ("" if s.get("causal", True)
                                                                    else "-bidirectional"))
def test_triton_equals_reference(spec):
    ref, tri = _pair(spec)
    x = torch.randn(2, 9, 16)
    w = torch.randn(2, 9, 16)
    ys = []
    for m in (ref, tri):
        y, _ = m(x)
        (y * w).sum().backward()
        ys.append(y.detach())
    assert_close(ys[0], ys[1], 1e-4, name="output")
    for (n, p), (_, q) in zip(ref.named_parameters(), tri.named_parameters()):
        assert_close(p.grad, q.grad, 1e-4, name=f"grad {n}")


@pytest.mark.parametrize("spec", [s for s in SPECS if s.get("causal", True)],
                         ids=lambda s: s["type"])
def test_triton_carried_state_equals_reference(spec):
    ref, tri = _pair(spec)
    x = torch.randn(2, 9, 16)
    with torch.no_grad():
        y_ref, s_ref = ref(x, ref.init_state(2))
        _, s = tri(x[:, :5], tri.init_state(2))
        y2, s = tri(x[:, 5:6], s)   # one-token decode step
        y3, s = tri(x[:, 6:], s)
    assert_close(y_ref[:, 5:6], y2, 1e-4, name="decode step")
    assert_close(y_ref[:, 6:], y3, 1e-4, name="last piece")
    for (p, a), (_, b) in zip(state_tensors(s_ref), state_tensors(s)):
        if isinstance(a, torch.Tensor):
            assert_close(a.float(), b.float(), 1e-4, name=p)
        else:
            assert a == b, p
