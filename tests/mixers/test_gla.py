"""GLA mixer: faithful to the paper (checked against a by-hand recurrence) and its gates."""
import pytest
import torch
import torch.nn.functional as F

from mixzoo.kernels._common import assert_close
from mixzoo.registry import build_mixer
from mixzoo.testing import check_mixer_contract


def gla_by_hand(m, x, head_group_norm_by_hand):
    """S_t = diag(alpha_t) S_{t-1} + k_t v_t^T, alpha = sigmoid(W2 W1 x + b)^(1/tau) (fp64)."""
    c = m.config
    B, T, D = x.shape
    H, K, V = m.H, m.K, m.V
    x = x.double()
    lin = lambda layer, t: t @ layer.weight.double().T + (  # noqa: E731
        layer.bias.double() if layer.bias is not None else 0)
    q = lin(m.q_proj, x).reshape(B, T, H, K) / K ** 0.5
    k = lin(m.k_proj, x).reshape(B, T, H, K)
    v = lin(m.v_proj, x).reshape(B, T, H, V)
    alpha = torch.sigmoid(lin(m.gk_proj[1], lin(m.gk_proj[0], x))) ** (1 / c.gate_logit_normalizer)
    alpha = alpha.reshape(B, T, H, K)
    S = torch.zeros(B, H, K, V, dtype=torch.float64)
    o = []
    for t in range(T):
        S = alpha[:, t, :, :, None] * S + k[:, t, :, :, None] * v[:, t, :, None, :]
        o.append(torch.einsum("bhkv,bhk->bhv", S, q[:, t]))
    o = head_group_norm_by_hand(torch.stack(o, 1), m.o_norm.weight.double(),
                                m.o_norm.bias.double(), c.norm_eps)  # [B,T,H*V]
    if c.use_output_gate:
        o = o * F.silu(lin(m.g_proj, x))
    return o @ m.o_proj.weight.double().T


@pytest.mark.parametrize("opts", [{}, {"use_output_gate": False, "num_heads": 2,
                                       "gate_low_rank_dim": 4, "gate_logit_normalizer": 1.0}])
def test_matches_the_paper_by_hand(opts, head_group_norm_by_hand):
    torch.manual_seed(0)
    m = build_mixer({"type": "gla", **opts}, 16)
    with torch.no_grad():
        m.o_norm.weight.uniform_(0.5, 1.5)
        m.o_norm.bias.uniform_(-0.5, 0.5)
    x = torch.randn(2, 11, 16)
    assert_close(gla_by_hand(m, x, head_group_norm_by_hand).float(), m(x)[0], 1e-4)


def test_paper_shapes_and_gate_range():
    m = build_mixer("gla", 32)
    assert (m.K, m.V, m.H) == (4, 8, 4)  # key width d/2, value width d, 4 heads
    assert m.gk_proj[0].out_features == 16  # the rank-16 gate
    x = torch.randn(2, 5, 32)
    g = F.logsigmoid(m.gk_proj(x)) / m.config.gate_logit_normalizer
    assert (g <= 0).all() and (g > -1).all()  # alpha near 1 at init: long memory


def test_contract_with_options():
    check_mixer_contract({"type": "gla", "use_output_gate": False, "num_heads": 2},
                         d_model=16, seq_len=13)


def test_bidirectional_is_flip_equivariant():
    torch.manual_seed(0)
    m = build_mixer({"type": "gla", "causal": False}, 16)
    x = torch.randn(2, 10, 16)
    with torch.no_grad():
        assert_close(m(x)[0].flip(1), m(x.flip(1))[0], 1e-5)


def test_validation():
    with pytest.raises(ValueError, match="gate_logit_normalizer"):
        build_mixer({"type": "gla", "gate_logit_normalizer": 0}, 16)
    with pytest.raises(ValueError, match="expand_k"):
        build_mixer({"type": "gla", "expand_k": 0.3}, 16)
