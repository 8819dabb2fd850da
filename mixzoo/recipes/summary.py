"""What a recipe builds, layer by layer: mixer, settings, parameters, inference-state size,
and the backend each layer will run on. Backs `mixzoo show` (text and `--json`).

    info = model_summary(load_recipe("deltanet-swa-340m"), seq_len=2048)
    info["totals"]["params"]          # 335448576

The model is built on the meta device (no memory, no init cost), so a 340M recipe is
summarised in a fraction of a second.
"""
from __future__ import annotations

import importlib
import os
import sys
from typing import Any

import torch
from torch import nn

from mixzoo.mixers.base import Mixer

from .loader import build_model
from .schema import Recipe

__all__ = ["model_summary", "layer_backend", "human"]

# Settings shown for a layer even when they keep their default (the ones people read first).
_KEY_FIELDS = ("num_heads", "num_kv_heads", "window", "kernel_size")


def human(n: float) -> str:
    """1234567 -> '1.23M'."""
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.2f}{unit}"
    return str(int(n))


def _kernels_of(cls: type) -> list[str]:
    """Kernel packages (`mixzoo.kernels.<algo>`) whose functions a mixer class's modules use."""
    algos = set()
    for klass in cls.__mro__:
        mod = sys.modules.get(klass.__module__)
        for value in vars(mod).values() if mod is not None else ():
            name = getattr(value, "__module__", None) or ""
            if callable(value) and name.startswith("mixzoo.kernels.") \
                    and not name.startswith("mixzoo.kernels._common"):
                algos.add(name.split(".")[2])
    return sorted(algos)


def _has_triton(algo: str) -> bool:
    return bool(getattr(importlib.import_module(f"mixzoo.kernels.{algo}"), "_HAS_TRITON", False))


def layer_backend(mixer: Mixer, device_type: str) -> str:
    """The backend the mixer's kernels will use for tensors on `device_type`."""
    env = os.environ.get("MIXZOO_BACKEND")
    requested = env or getattr(mixer.config, "backend", "auto")
    algos = _kernels_of(type(mixer))
    if not algos:
        return "pytorch"                   # a mixer that does not call mixzoo's kernels
    if requested != "auto":
        return f"{requested} (MIXZOO_BACKEND)" if env else requested
    if device_type != "cuda":
        return "reference"
    with_triton = [a for a in algos if _has_triton(a)]
    if len(with_triton) == len(algos):
        return "triton"
    if not with_triton:
        return "reference"
    return "triton: " + ",".join(with_triton) + "; reference: " + ",".join(
        a for a in algos if a not in with_triton)


def _settings(config: Any) -> dict[str, Any]:
    shown = config.model_dump(mode="json", exclude_defaults=True, exclude={"type"})
    for key in _KEY_FIELDS:
        if key in type(config).model_fields and key not in shown \
                and getattr(config, key) is not None:
            shown[key] = getattr(config, key)
    order = list(type(config).model_fields)
    return {k: shown[k] for k in sorted(shown, key=order.index)}


def _count(module: nn.Module | None) -> int | None:
    return None if module is None else sum(p.numel() for p in module.parameters())


def _build_meta(recipe: Recipe) -> nn.Module:
    try:
        with torch.device("meta"):
            return build_model(recipe)
    except (RuntimeError, NotImplementedError):   # a mixer that needs real values at init
        return build_model(recipe)


def model_summary(recipe: Recipe, seq_len: int = 2048, device: str | None = None,
                  name: str | None = None) -> dict[str, Any]:
    """A JSON-ready description of the model a recipe builds (see `mixzoo show --json`)."""
    if device is None or device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    device_type = torch.device(device).type
    model = _build_meta(recipe)
    mixers = [m for m in model.modules() if isinstance(m, Mixer)]
    blocks = getattr(getattr(model, "backbone", model), "blocks", None)
    if blocks is None or len(blocks) != len(mixers):
        blocks = [None] * len(mixers)
    layers = []
    for i, (mixer, block) in enumerate(zip(mixers, blocks)):
        layers.append({
            "index": i,
            "type": mixer.config.type,
            "settings": _settings(mixer.config),
            "config": mixer.config.model_dump(mode="json"),
            "mixer_params": _count(mixer),
            "block_params": _count(block),
            # A bidirectional mixer (vision) sees the whole input at once: no carried state.
            "state_size": int(mixer.state_size(seq_len)) if mixer.config.causal else None,
            "backend": layer_backend(mixer, device_type),
        })
    total = _count(model)
    embed = getattr(model, "embed", None)
    embedding = _count(embed) if isinstance(embed, nn.Module) else None
    m = recipe.model
    return {
        "recipe": name,
        "description": recipe.description,
        "kind": m.kind,
        "d_model": m.d_model,
        "vocab_size": m.vocab_size,
        "num_layers": len(layers),
        "seq_len": seq_len,
        "device": device,
        "layers": layers,
        "totals": {
            "params": total,
            "embedding_params": embedding,
            "non_embedding_params": total - embedding if embedding is not None else None,
            "state_size": sum(r["state_size"] or 0 for r in layers),
        },
        "recipe_data": recipe.model_dump(mode="json"),
    }
