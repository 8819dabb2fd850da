"""Carried states are validated at the mixer boundary: a malformed state raises ValueError
(naming what was expected) instead of being silently misread."""
import pytest
import torch

from mixzoo.registry import build_mixer

BUILTINS = ["deltanet", "gla", "retnet", "attention", "sliding_window", "short_conv"]


@pytest.mark.parametrize("name", BUILTINS)
def test_state_of_another_batch_size_is_rejected(name):
    m = build_mixer(name, 16)
    with pytest.raises(ValueError, match="state"):
        m(torch.randn(2, 3, 16), m.init_state(3))


@pytest.mark.parametrize("name", ["deltanet", "gla", "retnet", "attention", "sliding_window"])
def test_state_with_wrong_keys_is_rejected(name):
    m = build_mixer(name, 16)
    with pytest.raises(ValueError, match="init_state"):
        m(torch.randn(2, 3, 16), {"junk": torch.zeros(1)})
    with pytest.raises(ValueError, match="init_state"):
        m(torch.randn(2, 3, 16), (torch.zeros(1),))


def test_deltanet_conv_state_must_match_the_config():
    with_conv = build_mixer("deltanet", 16)
    without = build_mixer({"type": "deltanet", "use_short_conv": False}, 16)
    x = torch.randn(2, 3, 16)
    with pytest.raises(ValueError, match="use_short_conv=True"):
        with_conv(x, without.init_state(2))
    with pytest.raises(ValueError, match="use_short_conv=False"):
        without(x, with_conv.init_state(2))


def test_attention_cache_of_other_heads_is_rejected():
    m = build_mixer({"type": "attention", "num_kv_heads": 2}, 16)
    other = build_mixer("attention", 16)
    with pytest.raises(ValueError, match=r"\[B,L,Hkv,D\]"):
        m(torch.randn(2, 3, 16), other(torch.randn(2, 4, 16), other.init_state(2))[1])
