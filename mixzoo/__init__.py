"""mixzoo: a zoo of interchangeable sequence mixers behind one registry.

    >>> import mixzoo
    >>> mixzoo.list_mixers()
    ['attention', 'deltanet', 'gla', 'retnet', 'short_conv', 'sliding_window']
    >>> lm = mixzoo.CausalLM(vocab_size=256, d_model=64,
    ...                      layers=["deltanet", {"type": "sliding_window", "window": 64}])
"""
__version__ = "0.1.0"

from mixzoo.registry import build_mixer, get_mixer, list_mixers, register_mixer
from mixzoo.mixers.base import Mixer, MixerConfig
from mixzoo.blocks import Backbone, Block, BlockConfig
from mixzoo.models import CausalLM, SequenceModel
from mixzoo.recipes import Recipe, RecipeError, build_model, list_recipes, load_recipe

__all__ = ["list_mixers", "get_mixer", "build_mixer", "register_mixer", "Mixer",
           "MixerConfig", "Block", "BlockConfig", "Backbone", "CausalLM", "SequenceModel",
           "load_recipe", "build_model", "list_recipes", "Recipe", "RecipeError"]

# Vision (timm) lives in mixzoo.models.vision, the only place that imports timm, and loads
# lazily: `mixzoo.timm_attn` / `mixzoo.swap_mixers` / `mixzoo.build_vision_model` resolve on
# first use (PEP 562), and the hook registers the mixzoo_* timm models when timm is imported
# (at once if it already is) without importing timm here.
_VISION_NAMES = ("timm_attn", "swap_mixers", "build_vision_model")


def __getattr__(name: str):
    if name in _VISION_NAMES:
        from mixzoo.models import vision
        return getattr(vision, name)
    raise AttributeError(f"module 'mixzoo' has no attribute {name!r}")


from mixzoo.models.vision._hook import install as _install_timm_hook  # noqa: E402

_install_timm_hook()
