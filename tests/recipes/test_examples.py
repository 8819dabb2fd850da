"""The example recipe in examples/ loads, expands as documented, builds and runs."""
import pathlib

import torch

import mixzoo

EXAMPLE = pathlib.Path(__file__).resolve().parents[2] / "examples" / "custom_recipe.yaml"


def test_custom_recipe_example():
    recipe = mixzoo.load_recipe(str(EXAMPLE))
    types = [layer.type for layer in recipe.model.layers]
    assert types == ["deltanet", "gla", "sliding_window", "deltanet", "deltanet", "attention"]
    model = mixzoo.build_model(recipe)
    ids = torch.randint(0, 64, (2, 16))
    out = model(ids, labels=ids)
    assert out.logits.shape == (2, 16, 64) and torch.isfinite(out.loss)
