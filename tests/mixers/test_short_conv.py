"""Short-conv mixer: kernel size validation, conv by hand (causal and centred), state."""
import pytest
import torch
import torch.nn.functional as F

from mixzoo.kernels._common import assert_close
from mixzoo.registry import build_mixer
from mixzoo.testing import check_mixer_contract


@pytest.mark.parametrize("bad", [0, 1, 9])
def test_kernel_size_range(bad):
    with pytest.raises(ValueError, match="kernel_size"):
        build_mixer({"type": "short_conv", "kernel_size": bad}, 8)


def test_activation_choices():
    with pytest.raises(ValueError, match="activation"):
        build_mixer({"type": "short_conv", "activation": "relu"}, 8)


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("W, act, bias", [(2, None, True), (3, "silu", False), (4, None, True),
                                          (8, "silu", True)])
def test_conv_by_hand(W, act, bias, causal):
    torch.manual_seed(W)
    m = build_mixer({"type": "short_conv", "kernel_size": W, "activation": act, "bias": bias,
                     "causal": causal}, 8)
    if m.bias is not None:
        with torch.no_grad():
            m.bias.uniform_(-1, 1)
    x = torch.randn(2, 11, 8)
    left = W - 1 if causal else (W - 1) // 2
    xp = F.pad(x.transpose(1, 2), (left, W - 1 - left))  # [B,D,T+W-1]
    y = F.conv1d(xp, m.weight[:, None, :], m.bias, groups=8).transpose(1, 2)
    if act == "silu":
        y = F.silu(y)
    assert_close(y, m(x)[0], 1e-6)


def test_state_is_the_last_inputs():
    m = build_mixer({"type": "short_conv", "kernel_size": 5}, 8)
    x = torch.randn(2, 9, 8)
    _, s = m(x, m.init_state(2))
    assert s.dtype == torch.float32 and torch.equal(s, x[:, -4:].transpose(1, 2))
    assert m.state_size(1) == m.state_size(1000) == 8 * 4


@pytest.mark.parametrize("opts", [{"kernel_size": 2}, {"kernel_size": 8, "activation": "silu",
                                                       "bias": False}])
def test_contract_with_options(opts):
    check_mixer_contract({"type": "short_conv", **opts}, d_model=16, seq_len=13)
