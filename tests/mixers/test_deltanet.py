"""DeltaNet mixer: faithful to the paper (checked against a by-hand recurrence), options,
and the beta range with allow_neg_eigval."""
import pytest
import torch
import torch.nn.functional as F

import mixzoo.mixers.deltanet as deltanet_mod
from mixzoo.kernels._common import assert_close
from mixzoo.registry import build_mixer
from mixzoo.testing import check_mixer_contract


def deltanet_by_hand(m, x):
    """The paper's layer, written as a plain loop (fp64)."""
    c = m.config
    B, T, D = x.shape
    H, K, V = m.H, m.K, m.V
    x = x.double()
    qkv, b_logit = (x @ m.in_proj.weight.double().T).split([m.qkv_dim, H], -1)  # [B,T,C]
    if c.use_short_conv:
        W = c.conv_size
        w = m.conv_weight.double()  # [C,W]
        pad = F.pad(qkv, (0, 0, W - 1, 0))  # [B,T+W-1,C]
        qkv = sum(w[:, j] * pad[:, j:j + T] for j in range(W))
    qkv = F.silu(qkv)
    q, k, v = qkv.split([H * K, H * K, H * V], -1)
    q = F.normalize(q.reshape(B, T, H, K), dim=-1) / K ** 0.5
    k = F.normalize(k.reshape(B, T, H, K), dim=-1)
    v = v.reshape(B, T, H, V)
    beta = torch.sigmoid(b_logit)  # [B,T,H]
    if c.allow_neg_eigval:
        beta = 2 * beta
    S = torch.zeros(B, H, K, V, dtype=torch.float64)
    o = []
    for t in range(T):
        kt, vt, bt = k[:, t], v[:, t], beta[:, t, :, None]
        S = S + kt[..., None] * (bt * (vt - torch.einsum("bhkv,bhk->bhv", S, kt)))[..., None, :]
        o.append(torch.einsum("bhkv,bhk->bhv", S, q[:, t]))
    o = torch.stack(o, 1)  # [B,T,H,V]
    o = o * torch.rsqrt(o.pow(2).mean(-1, keepdim=True) + c.norm_eps) * m.o_norm.weight.double()
    if c.use_output_gate:
        o = o * F.silu(x @ m.g_proj.weight.double().T).reshape(B, T, H, V)
    return o.reshape(B, T, H * V) @ m.o_proj.weight.double().T


@pytest.mark.parametrize("opts", [
    {},
    {"use_short_conv": False, "use_output_gate": True, "allow_neg_eigval": True},
    {"num_heads": 2, "expand_v": 2.0, "conv_size": 2},
])
def test_matches_the_paper_by_hand(opts):
    torch.manual_seed(0)
    m = build_mixer({"type": "deltanet", **opts}, 16)
    with torch.no_grad():
        m.o_norm.weight.uniform_(0.5, 1.5)
    x = torch.randn(2, 11, 16)
    y, _ = m(x)
    assert_close(deltanet_by_hand(m, x).float(), y, 1e-4)


@pytest.mark.parametrize("opts", [
    {"use_short_conv": False, "use_output_gate": True, "allow_neg_eigval": True},
    {"num_heads": 2, "expand_k": 0.5, "conv_size": 3},
])
def test_contract_with_options(opts):
    check_mixer_contract({"type": "deltanet", **opts}, d_model=16, seq_len=13)


@pytest.mark.parametrize("neg", [False, True])
def test_beta_range(monkeypatch, neg):
    seen = []

    def spy(q, k, v, beta, **kw):
        seen.append(beta.detach())
        return real(q, k, v, beta, **kw)

    real = deltanet_mod.delta_rule
    monkeypatch.setattr(deltanet_mod, "delta_rule", spy)
    torch.manual_seed(0)
    m = build_mixer({"type": "deltanet", "allow_neg_eigval": neg}, 16)
    with torch.no_grad():
        m.in_proj.weight[m.qkv_dim:].mul_(20)  # push the beta logits far into both tails
    m(torch.randn(2, 9, 16))
    beta = seen[0]
    hi = 2.0 if neg else 1.0
    assert beta.min() >= 0 and beta.max() <= hi
    assert beta.max() > 0.9 * hi and beta.min() < 0.1 * hi  # really spans (0, hi)
    if neg:
        assert (beta > 1).any()  # negative eigenvalues of I - beta k k^T are reachable


def test_state_layout_and_head_validation():
    m = build_mixer({"type": "deltanet", "num_heads": 2}, 16)
    s = m.init_state(3)
    assert s["S"].shape == (3, 2, 8, 8) and s["S"].dtype == torch.float32
    assert s["conv"].shape == (3, 2 * 16 + 16, 3)
    assert m.init_state(1, dtype=torch.bfloat16)["S"].dtype == torch.float32
    no_conv = build_mixer({"type": "deltanet", "use_short_conv": False}, 16)
    assert no_conv.init_state(1)["conv"] is None and no_conv.state_size(5) == 4 * 4 * 4
    with pytest.raises(ValueError, match="num_heads=3"):
        build_mixer({"type": "deltanet", "num_heads": 3}, 16)
    with pytest.raises(ValueError, match="conv_size"):
        build_mixer({"type": "deltanet", "conv_size": 9}, 16)


def test_bidirectional_is_flip_equivariant():
    torch.manual_seed(0)
    m = build_mixer({"type": "deltanet", "causal": False}, 16)
    x = torch.randn(2, 10, 16)
    with torch.no_grad():
        assert_close(m(x)[0].flip(1), m(x.flip(1))[0], 1e-5)
