"""YAML recipes: a validated description of a model (and optionally its training).

    >>> import mixzoo
    >>> mixzoo.list_recipes("deltanet*")[:2]
    ['deltanet-2attn-340m', 'deltanet-2attn-tiny']
    >>> recipe = mixzoo.load_recipe("deltanet-swa-tiny", ["model.d_model=128"])
    >>> model = mixzoo.build_model(recipe)

See `schema.py` for the three layer layouts and `loader.py` for overrides.
"""
from .errors import Issue, RecipeError
from .loader import build_model, list_recipes, load_recipe, recipe_path
from .schema import ModelSpec, Recipe, mixer_union

__all__ = ["Recipe", "ModelSpec", "RecipeError", "Issue", "load_recipe", "build_model",
           "list_recipes", "recipe_path", "mixer_union"]
