"""mixzoo mixers inside timm vision models.

    timm_attn(spec, causal=False, scan="row")   a timm `attn_layer=` class running a mixer
    swap_mixers(model, spec, layers="all", init_from_attention=False)
                                                replace attention in an existing timm ViT
    build_vision_model(model_spec)              recipe kind `vision` -> a timm model
    VisionSpec                                  the `model.vision` recipe section
    bind_layout(model)                          tell adapters the prefix/grid layout
    register_projection_map(type)               q/k/v/o layout of a plugin mixer
    MODEL_NAMES                                 the registered timm models (mixzoo_*)
    ContiguousPatchEmbed                        timm's PatchEmbed with a contiguous output
                                                (for ViTs without a class token)

This package is the only part of mixzoo that imports timm, and it does so lazily: names are
resolved on first use (PEP 562), and `config.py`, `adapter.py`, `swap.py`, `scan.py` and
`projections.py` never import timm. `_timm.py` holds the import (with the torchvision
workaround) and `_hook.py` registers the timm models when timm gets imported.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

_LAZY = {
    "VisionSpec": "config",
    "MixerAttention": "adapter", "timm_attn": "adapter", "bind_layout": "adapter",
    "swap_mixers": "swap", "attention_slots": "swap",
    "register_projection_map": "projections",
    "SCAN_ORDERS": "scan",
    "build_vision_model": "build",
    "MODEL_NAMES": "mixzoo_vit", "ContiguousPatchEmbed": "mixzoo_vit",
    "import_timm": "_timm",
}

__all__ = sorted(_LAZY)

if TYPE_CHECKING:
    from ._timm import import_timm
    from .adapter import MixerAttention, bind_layout, timm_attn
    from .build import build_vision_model
    from .config import VisionSpec
    from .mixzoo_vit import MODEL_NAMES, ContiguousPatchEmbed
    from .projections import register_projection_map
    from .scan import SCAN_ORDERS
    from .swap import attention_slots, swap_mixers


def __getattr__(name: str):
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{mod}"), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
