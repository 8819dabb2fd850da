"""Sliding-window attention mixer: causal window and symmetric band by hand, rolling cache."""
import pytest
import torch

from mixzoo.kernels._common import assert_close
from mixzoo.registry import build_mixer
from mixzoo.testing import check_mixer_contract


@pytest.mark.parametrize("window", [2, 3, 5, 16])
def test_causal_window_by_hand(window, rope_by_hand, attention_by_hand):
    torch.manual_seed(0)
    m = build_mixer({"type": "sliding_window", "window": window, "num_kv_heads": 2}, 32)
    x = torch.randn(2, 13, 32)
    d = torch.arange(13)[:, None] - torch.arange(13)[None, :]  # i - j
    mask = (d >= 0) & (d < window)
    assert_close(attention_by_hand(m, x, rope_by_hand, mask).float(), m(x)[0], 1e-5)


@pytest.mark.parametrize("window", [2, 3, 4, 5, 7, 9])
@pytest.mark.parametrize("T", [1, 2, 3, 4, 5, 6, 7, 9, 13])
def test_bidirectional_band_by_hand(window, T, rope_by_hand, attention_by_hand):
    torch.manual_seed(T)
    m = build_mixer({"type": "sliding_window", "window": window, "causal": False}, 16)
    x = torch.randn(1, T, 16)
    r = window // 2
    mask = (torch.arange(T)[:, None] - torch.arange(T)[None, :]).abs() <= r
    assert_close(attention_by_hand(m, x, rope_by_hand, mask).float(), m(x)[0], 1e-5)


def test_rolling_cache_is_bounded():
    m = build_mixer({"type": "sliding_window", "window": 4, "num_kv_heads": 1}, 16)
    s = m.init_state(2)
    for t in range(6):
        _, s = m(torch.randn(2, 1, 16), s)
        assert s["k"].shape[1] == min(t + 1, 3) and s["pos"] == t + 1
    _, s = m(torch.randn(2, 9, 16), s)
    assert s["k"].shape == (2, 3, 1, 4) and s["pos"] == 15
    assert m.state_size(3) == m.state_size(10 ** 6) == 2 * 3 * 1 * 4
    assert m.state_size(2) == 2 * 2 * 1 * 4


@pytest.mark.parametrize("window", [2, 5])
def test_contract_with_small_window(window):
    # seq_len > window, so decoding really rolls the cache
    check_mixer_contract({"type": "sliding_window", "window": window, "num_kv_heads": 2},
                         d_model=16, seq_len=13)


def test_window_validation():
    for bad in (0, 1):
        with pytest.raises(ValueError, match="window"):
            build_mixer({"type": "sliding_window", "window": bad}, 16)
