"""Global attention mixer: softmax attention by hand (GQA, rotary, causal or not), KV cache."""
import pytest
import torch

from mixzoo.kernels._common import assert_close
from mixzoo.mixers.attention import apply_rotary
from mixzoo.registry import build_mixer
from mixzoo.testing import check_mixer_contract


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("opts", [{}, {"num_kv_heads": 2}, {"num_kv_heads": 1, "rotary": False},
                                  {"backend": "sdpa", "num_kv_heads": 2, "rope_theta": 100.0}])
def test_matches_softmax_attention_by_hand(opts, causal, rope_by_hand, attention_by_hand):
    torch.manual_seed(0)
    m = build_mixer({"type": "attention", "causal": causal, **opts}, 32)
    x = torch.randn(2, 11, 32)
    mask = torch.ones(11, 11, dtype=torch.bool)
    if causal:
        mask = mask.tril()
    assert_close(attention_by_hand(m, x, rope_by_hand, mask).float(), m(x)[0], 1e-5)


def test_gqa_shapes_and_kv_cache():
    m = build_mixer({"type": "attention", "num_heads": 4, "num_kv_heads": 2}, 32)
    assert m.k_proj.out_features == m.v_proj.out_features == 2 * 8  # 2 kv heads of dim 8
    _, s = m(torch.randn(3, 7, 32), m.init_state(3))
    assert s["k"].shape == s["v"].shape == (3, 7, 2, 8) and s["pos"] == 7
    _, s = m(torch.randn(3, 2, 32), s)
    assert s["k"].shape == (3, 9, 2, 8) and s["pos"] == 9
    assert m.state_size(9) == 2 * 9 * 2 * 8
    assert m.init_state(1, dtype=torch.bfloat16)["k"].dtype == torch.bfloat16


def test_validation():
    with pytest.raises(ValueError, match="num_kv_heads=3"):
        build_mixer({"type": "attention", "num_kv_heads": 3}, 32)
    with pytest.raises(ValueError, match="num_heads=5"):
        build_mixer({"type": "attention", "num_heads": 5}, 32)
    with pytest.raises(ValueError, match="even"):
        build_mixer({"type": "attention", "num_heads": 4}, 12)  # head_dim 3 with rotary
    build_mixer({"type": "attention", "num_heads": 4, "rotary": False}, 12)
    with pytest.raises(ValueError, match="backend"):
        build_mixer({"type": "attention", "backend": "flash"}, 32)


def test_contract_gqa_sdpa():
    check_mixer_contract({"type": "attention", "num_kv_heads": 1, "backend": "sdpa"},
                         d_model=16, seq_len=13)


def test_rotary_matches_complex_rotation_and_is_relative(rope_by_hand):
    x = torch.randn(2, 6, 3, 8)
    assert_close(rope_by_hand(x, 5, 500.0), apply_rotary(x, 5, 500.0), 1e-6)
    q, k = torch.randn(1, 1, 1, 8), torch.randn(1, 1, 1, 8)
    dots = [(apply_rotary(q, m, 1e4) * apply_rotary(k, n, 1e4)).sum()
            for m, n in ((3, 1), (10, 8), (102, 100))]
    assert torch.allclose(torch.stack(dots), dots[0].expand(3), atol=1e-5)  # depends on m-n


def test_bidirectional_without_rotary_is_flip_equivariant():
    m = build_mixer({"type": "attention", "causal": False, "rotary": False}, 16)
    x = torch.randn(2, 9, 16)
    with torch.no_grad():
        assert_close(m(x)[0].flip(1), m(x.flip(1))[0], 1e-5)
