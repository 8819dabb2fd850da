"""The plugin's tests: the mixzoo contract suite (one line) plus the plugin's own math."""
import pytest
import torch

from mixzoo import build_model, list_mixers, load_recipe, register_mixer
from mixzoo.kernels._common import assert_close
from mixzoo.testing.pytest_plugin import contract_tests
from mixzoo_plugin_example import RWKVTimeMix, wkv_chunked, wkv_recurrent

if "rwkv_time_mix" not in list_mixers():      # running from a source tree, not installed
    register_mixer(RWKVTimeMix, source="plugin: mixzoo-plugin-example (source tree)")

# Every check of the mixzoo mixer contract, one test each.
test_contract = contract_tests({"type": "rwkv_time_mix", "chunk_size": 8}, d_model=32)


@pytest.mark.parametrize("T,chunk", [(1, 4), (7, 4), (16, 16), (23, 8)])
def test_chunked_equals_recurrence(T, chunk):
    """The parallel chunk form == the step-by-step definition: outputs, state, gradients."""
    g = torch.Generator().manual_seed(T)
    B, D = 2, 6
    k = (torch.randn(B, T, D, generator=g) * 3).requires_grad_()
    v = torch.randn(B, T, D, generator=g).requires_grad_()
    w = torch.rand(D, generator=g).mul(2).requires_grad_()
    u = torch.randn(D, generator=g).requires_grad_()
    a0, b0 = torch.randn(B, D, generator=g), torch.rand(B, D, generator=g) + 0.5
    p0 = torch.randn(B, D, generator=g)
    o1, s1 = wkv_recurrent(k, v, w, u, (a0, b0, p0))
    o2, s2 = wkv_chunked(k, v, w, u, (a0, b0, p0), chunk=chunk)
    assert_close(o1, o2, 1e-5, name="wkv")
    # The states differ in scale (p) only; compare what they represent: a * e^p, b * e^p.
    for x1, x2 in ((s1[0], s2[0]), (s1[1], s2[1])):
        assert_close(x1 * torch.exp(s1[2] - s2[2]), x2, 1e-5, name="state")
    dout = torch.randn(B, T, D, generator=g)
    # (With T = 1 the decay w acts on the state only, so it has no output gradient.)
    grads1 = torch.autograd.grad((o1 * dout).sum(), (k, v, w, u), allow_unused=True)
    grads2 = torch.autograd.grad((o2 * dout).sum(), (k, v, w, u), allow_unused=True)
    for name, g1, g2, x in zip("kvwu", grads1, grads2, (k, v, w, u)):
        if g1 is None or g2 is None:
            assert name == "w" and T == 1
            g1 = torch.zeros_like(x) if g1 is None else g1
            g2 = torch.zeros_like(x) if g2 is None else g2
            assert g1.abs().max() == 0 and g2.abs().max() == 0
            continue
        assert_close(g1, g2, 1e-4, name=f"d{name}")


def test_large_keys_do_not_overflow():
    """The log-sum-exp bookkeeping keeps e^{k} with k = 200 finite."""
    k = torch.full((1, 9, 3), 200.0)
    v = torch.randn(1, 9, 3)
    z = torch.zeros(1, 3)
    o, _ = wkv_chunked(k, v, torch.ones(3), torch.zeros(3), (z, z, torch.full_like(z, -1e38)),
                       chunk=4)
    assert torch.isfinite(o).all()


def test_in_a_recipe():
    """The plugin mixer in a mixzoo recipe: a hybrid with sliding-window attention."""
    recipe = load_recipe({"model": {
        "d_model": 32, "vocab_size": 64,
        "presets": {"rwkv": {"type": "rwkv_time_mix"},
                    "swa": {"type": "sliding_window", "num_heads": 2, "window": 8}},
        "pattern": ["rwkv", "swa"], "repeat": 1}})
    assert [c.type for c in recipe.model.layers] == ["rwkv_time_mix", "sliding_window"]
    model = build_model(recipe)
    ids = torch.randint(0, 64, (2, 12))
    out = model(ids, labels=ids)
    out.loss.backward()
    assert torch.isfinite(out.loss)
