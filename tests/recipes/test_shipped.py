"""Round trips of every shipped recipe: load, build, parameter count, forward (tiny ones)."""
import re

import pytest
import torch

from mixzoo import build_model, list_recipes, load_recipe
from mixzoo.recipes import Recipe

SHIPPED = list_recipes()
FAMILIES = ["transformer", "deltanet", "gla", "retnet", "deltanet-swa", "deltanet-2attn",
            "gla-swa"]


def test_every_family_ships_tiny_and_340m():
    assert sorted(SHIPPED) == sorted(f"{f}-{s}" for f in FAMILIES for s in ("tiny", "340m"))


def _params_on_meta(recipe) -> int:
    with torch.device("meta"):
        model = build_model(recipe)
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", [n for n in SHIPPED if n.endswith("-340m")])
def test_340m_parameter_count(name):
    recipe = load_recipe(name)
    n = _params_on_meta(recipe)
    assert abs(n - 340e6) / 340e6 < 0.05, f"{name}: {n / 1e6:.1f}M parameters"
    assert recipe.description


@pytest.mark.parametrize("name", [n for n in SHIPPED if n.endswith("-tiny")])
def test_tiny_round_trip_and_forward(name):
    recipe = load_recipe(name)
    # The dump is the explicit layer list; it loads back to the same recipe.
    again = load_recipe(recipe.model_dump(mode="json"))
    assert again == recipe and isinstance(again, Recipe)
    assert recipe.train is not None and recipe.train.task.type == "mqar"
    assert recipe.model.vocab_size == recipe.train.task.vocab_size
    model = build_model(recipe)
    n = sum(p.numel() for p in model.parameters())
    assert n == _params_on_meta(recipe) and 50_000 < n < 1_000_000
    T = recipe.train.task.seq_len
    ids = torch.randint(0, recipe.model.vocab_size, (2, T))
    out = model(ids, labels=ids)
    assert out.logits.shape == (2, T, recipe.model.vocab_size)
    assert torch.isfinite(out.loss)


@pytest.mark.parametrize("family", FAMILIES)
def test_tiny_and_340m_share_the_layout(family):
    """The tiny recipe is the paper-sized one scaled down: same mixer sequence pattern."""
    small = [c.type for c in load_recipe(f"{family}-tiny").model.layers]
    big = [c.type for c in load_recipe(f"{family}-340m").model.layers]
    assert set(small) == set(big)
    if family == "deltanet-swa" or family == "gla-swa":
        assert big[1::2] == ["sliding_window"] * 12 and small[1::2] == ["sliding_window"] * 2
    if family == "deltanet-2attn":
        assert [i for i, t in enumerate(big) if t == "attention"] == [1, 12]


def test_names_match_files():
    for name in SHIPPED:
        assert re.fullmatch(r"[a-z0-9-]+-(tiny|340m)", name)
