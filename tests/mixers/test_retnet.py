"""RetNet mixer: fixed decays 1 - 2^(-5-h), faithful retention (by-hand recurrence)."""
import math

import pytest
import torch
import torch.nn.functional as F

import mixzoo.mixers.retnet as retnet_mod
from mixzoo.kernels._common import assert_close
from mixzoo.mixers.retnet import retnet_log_decays
from mixzoo.registry import build_mixer
from mixzoo.testing import check_mixer_contract


def test_decays_are_the_papers():
    log_gamma = retnet_log_decays(8)
    assert log_gamma.dtype == torch.float32
    want = torch.tensor([math.log(1 - 2.0 ** (-5 - h)) for h in range(8)], dtype=torch.float64)
    assert torch.allclose(log_gamma.double(), want, rtol=1e-6, atol=0)
    assert log_gamma.exp()[0].item() == pytest.approx(1 - 1 / 32)  # head 0: shortest memory


def test_the_mixer_feeds_those_decays_to_the_kernel(monkeypatch):
    seen = []

    def spy(q, k, v, g, **kw):
        seen.append(g)
        return real(q, k, v, g, **kw)

    real = retnet_mod.retention
    monkeypatch.setattr(retnet_mod, "retention", spy)
    m = build_mixer({"type": "retnet", "num_heads": 8}, 32).to(torch.bfloat16)
    m(torch.randn(1, 3, 32, dtype=torch.bfloat16))
    assert seen[0].dtype == torch.float32 and torch.equal(seen[0], retnet_log_decays(8))
    assert not any("decay" in n for n, _ in m.named_parameters())  # fixed, not learned


def retnet_by_hand(m, x, rope, gn):
    c = m.config
    B, T, D = x.shape
    H, K, V = m.H, m.K, m.V
    x = x.double()
    q, k, v = (x @ m.qkv_proj.weight.double().T).split([H * K, H * K, H * V], -1)
    q, k, v = q.reshape(B, T, H, K), k.reshape(B, T, H, K), v.reshape(B, T, H, V)
    if c.rotary:
        q, k = rope(q, 0, c.rope_theta), rope(k, 0, c.rope_theta)
    gamma = torch.tensor([1 - 2.0 ** (-5 - h) for h in range(H)], dtype=torch.float64)
    S = torch.zeros(B, H, K, V, dtype=torch.float64)
    o = []
    for t in range(T):
        S = gamma[:, None, None] * S + k[:, t, :, :, None] * v[:, t, :, None, :]
        o.append(torch.einsum("bhkv,bhk->bhv", S, q[:, t]) / K ** 0.5)
    o = gn(torch.stack(o, 1), m.o_norm.weight.double(), m.o_norm.bias.double(), c.norm_eps)
    o = o * F.silu(x @ m.g_proj.weight.double().T)
    return o @ m.o_proj.weight.double().T


@pytest.mark.parametrize("opts", [{}, {"rotary": False, "num_heads": 2, "expand_v": 1.0}])
def test_matches_the_paper_by_hand(opts, rope_by_hand, head_group_norm_by_hand):
    torch.manual_seed(0)
    m = build_mixer({"type": "retnet", **opts}, 16)
    with torch.no_grad():
        m.o_norm.weight.uniform_(0.5, 1.5)
        m.o_norm.bias.uniform_(-0.5, 0.5)
    x = torch.randn(2, 11, 16)
    ref = retnet_by_hand(m, x, rope_by_hand, head_group_norm_by_hand)
    assert_close(ref.float(), m(x)[0], 1e-4)


def test_contract_without_rotary():
    check_mixer_contract({"type": "retnet", "rotary": False, "num_heads": 2},
                         d_model=16, seq_len=13)


def test_bidirectional_is_flip_equivariant():
    torch.manual_seed(0)
    m = build_mixer({"type": "retnet", "causal": False}, 16)
    x = torch.randn(2, 10, 16)
    with torch.no_grad():
        assert_close(m(x)[0].flip(1), m(x.flip(1))[0], 1e-5)


def test_value_width_and_state():
    m = build_mixer("retnet", 32)
    assert (m.H, m.K, m.V) == (4, 8, 16)  # values twice as wide as keys (paper)
    s = m.init_state(2)
    assert s["S"].shape == (2, 4, 8, 16) and s["pos"] == 0
    with pytest.raises(ValueError, match="even"):
        build_mixer({"type": "retnet", "num_heads": 2, "expand_k": 0.25}, 24)  # K = 3
