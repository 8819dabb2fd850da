"""RetNet mixer: fixed decays 1 - 2^(-5-h), faithful retention (by-hand recurrence)."""
import math

import pytest
import torch
import torch.nn.functional as F

from mixzoo.kernels._common import assert_close
from mixzoo.mixers.retnet import retnet_log_decays
from mixzoo.registry import build_mixer
from mixzoo.testing import check_mixer_contract


def test_decays_are_the_papers():
    m = build_mixer({"type": "retnet", "num_heads": 8}, 32)
    gamma = m.log_decay.double().exp()
    want = torch.tensor([1 - 2.0 ** (-5 - h) for h in range(8)], dtype=torch.float64)
    assert torch.allclose(gamma, want, rtol=0, atol=1e-7)
    assert gamma[0] == pytest.approx(1 - 1 / 32, abs=1e-7)  # head 0: shortest memory
    assert not any(n == "log_decay" for n, _ in m.named_parameters())  # fixed, not learned
    assert retnet_log_decays(3).tolist() == pytest.approx(
        [math.log(1 - 2.0 ** (-5 - h)) for h in range(3)])


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
