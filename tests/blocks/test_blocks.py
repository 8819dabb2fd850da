"""Block, Backbone and norms: the generic parts around every mixer."""
import pytest
import torch
from pydantic import ValidationError

from mixzoo import Backbone, Block, BlockConfig
from mixzoo.blocks import RMSNorm, SwiGLU

HYBRID = ["deltanet", {"type": "sliding_window", "window": 8}, "gla", "short_conv"]


def test_block_config_rejects_unknown_field():
    with pytest.raises(ValidationError, match="mlp_ration"):
        BlockConfig(mlp_ration=2.0)


def test_rmsnorm_matches_definition():
    x = torch.randn(2, 5, 16)
    n = RMSNorm(16)
    ref = x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6)
    torch.testing.assert_close(n(x), ref)


def test_swiglu_hidden_is_multiple_of_8():
    m = SwiGLU(48, 4.0)
    assert m.down.in_features % 8 == 0


def test_block_residual_and_layer_scale():
    blk = Block("short_conv", 16, 0, BlockConfig(layer_scale=1e-5))
    x = torch.randn(2, 7, 16)
    y, _ = blk(x)
    assert y.shape == x.shape
    # With a tiny layer scale the block is close to the identity.
    assert (y - x).abs().max() < 1e-2


def test_drop_path_ramp_and_eval_determinism():
    bb = Backbone(16, ["short_conv"] * 3, BlockConfig(drop_path=0.2))
    rates = [b.drop_path_rate for b in bb.blocks]
    assert rates == pytest.approx([0.0, 0.1, 0.2])
    bb.eval()
    x = torch.randn(2, 6, 16)
    torch.testing.assert_close(bb(x)[0], bb(x)[0])


def test_backbone_rejects_empty_and_bad_width():
    with pytest.raises(ValueError, match="at least one"):
        Backbone(16, [])
    bb = Backbone(16, ["short_conv"])
    with pytest.raises(ValueError, match=r"\[B,T,D\] with D=16"):
        bb(torch.randn(2, 5, 8))


def test_backbone_state_threading_matches_one_pass():
    torch.manual_seed(1)
    bb = Backbone(32, HYBRID).eval()
    x = torch.randn(2, 20, 32)
    full, _ = bb(x)
    states = bb.init_states(2)
    a, states = bb(x[:, :9], states)
    b, states = bb(x[:, 9:], states)
    torch.testing.assert_close(torch.cat([a, b], 1), full, rtol=1e-4, atol=1e-4)
    assert bb.state_size(64) > 0


def test_grad_checkpointing_same_gradients():
    torch.manual_seed(2)
    bb = Backbone(16, ["deltanet", "short_conv"])
    x = torch.randn(2, 9, 16)
    bb(x)[0].sum().backward()
    g1 = [p.grad.clone() for p in bb.parameters()]
    bb.zero_grad()
    bb.grad_checkpointing = True
    bb(x)[0].sum().backward()
    for a, p in zip(g1, bb.parameters()):
        torch.testing.assert_close(a, p.grad)
