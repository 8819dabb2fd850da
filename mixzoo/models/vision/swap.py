"""swap_mixers: put mixzoo mixers into the attention slots of an existing timm ViT, in place.

    >>> vit = timm.create_model("vit_tiny_patch16_224", pretrained=True)
    >>> mixzoo.swap_mixers(vit, "deltanet", layers="all", init_from_attention=True)

Every `attn` module that looks like timm's `Attention` (a `qkv` and a `proj` Linear: ViT,
DeiT, DeiT-3, the CLIP/SigLIP image towers, ...) or is already a `MixerAttention` is a slot;
slots are numbered in module order (block order). `layers` picks them:

    "all"                    every slot
    [0, 2, -1]               slot indices (negative counts from the end)
    "blocks.[0-5].attn"      an fnmatch pattern over the slots' module names

`spec` is one mixer spec for all chosen slots, or a list with one spec per chosen slot (for
hybrids, e.g. ["deltanet", "sliding_window"] * 6). Each new layer takes the replaced
attention's width, head count, qkv/proj biases and proj dropout. With
`init_from_attention=True` its q/k/v/o projections start from the attention's `qkv`/`proj`
weights (see `projections.py`), so a pretrained ViT can be converted and fine-tuned.

Parameter names are stable: slot i's mixer lives at `<slot name>.mixer.*`, e.g.
`blocks.3.attn.mixer.in_proj.weight`, so a state_dict saved after a swap reloads into a model
built the same way.
"""
from __future__ import annotations

import fnmatch
from typing import Any, Sequence

from torch import nn

from .adapter import MixerAttention, bind_layout, timm_attn
from .projections import init_from_attention as _init_from_attention


def _is_slot(module: nn.Module) -> bool:
    if isinstance(module, MixerAttention):
        return True
    return (isinstance(getattr(module, "qkv", None), nn.Linear)
            and isinstance(getattr(module, "proj", None), nn.Linear)
            and hasattr(module, "num_heads"))


def attention_slots(model: nn.Module) -> list[str]:
    """Module names of the swappable attention layers, in block order."""
    return [name for name, m in model.named_modules()
            if name.split(".")[-1] == "attn" and _is_slot(m)]


def _choose(slots: list[str], layers: Any) -> list[str]:
    if isinstance(layers, str):
        if layers == "all":
            return list(slots)
        chosen = [s for s in slots if fnmatch.fnmatchcase(s, layers)]
        if not chosen:
            raise ValueError(f"swap_mixers: pattern {layers!r} matches no attention layer; "
                             f"the layers are {slots}")
        return chosen
    if isinstance(layers, Sequence) and all(isinstance(i, int) for i in layers):
        n, out = len(slots), []
        for i in layers:
            if not -n <= i < n:
                raise IndexError(f"swap_mixers: layer index {i} out of range for {n} "
                                 f"attention layers")
            out.append(slots[i % n])
        if len(set(out)) != len(out):
            raise ValueError(f"swap_mixers: layer indices {list(layers)} name a layer twice")
        return sorted(out, key=slots.index)
    raise TypeError(f"swap_mixers: layers must be 'all', a list of ints or an fnmatch "
                    f"pattern, got {layers!r}")


def _unsupported(old: nn.Module) -> str | None:
    """Why the new layer could not reproduce timm arguments of `old`, or None."""
    for attr in ("q_norm", "k_norm", "norm"):
        if not isinstance(getattr(old, attr, nn.Identity()), nn.Identity):
            return f"it uses {attr} (qk_norm / scale_norm)"
    if getattr(old, "gate", None) is not None:
        return "it is gated"
    drop = getattr(getattr(old, "attn_drop", None), "p", 0.0)
    if drop:
        return f"it uses attn_drop={drop}"
    return None


def swap_mixers(model: nn.Module, spec: Any, layers: Any = "all", *,
                init_from_attention: bool = False, causal: bool = False,
                scan: str | Sequence[str] = "row") -> nn.Module:
    """Replace the attention of the chosen blocks of a timm ViT with mixzoo mixers, in place.

    spec: one mixer spec (name, dict with `type`, Config) or a list, one per chosen layer.
    layers: "all" | list of slot indices | fnmatch pattern over slot names (module docstring).
    init_from_attention: copy q/k/v/o weights and biases from the replaced `qkv`/`proj`.
    causal: False = bidirectional mixers (the vision default).
    scan: a scan order for every chosen layer, or a list cycled over them (e.g. ["row", "col"]).
    Returns the model."""
    slots = attention_slots(model)
    if not slots:
        raise ValueError(f"swap_mixers: {type(model).__name__} has no timm attention layers "
                         f"(modules named `attn` with `qkv` and `proj`)")
    chosen = _choose(slots, layers)
    specs = list(spec) if isinstance(spec, (list, tuple)) else [spec] * len(chosen)
    if len(specs) != len(chosen):
        raise ValueError(f"swap_mixers: {len(specs)} mixer specs for {len(chosen)} chosen layers")
    orders = [scan] if isinstance(scan, str) else list(scan)
    if not orders:
        raise ValueError("swap_mixers: scan must name at least one order")
    for j, (name, s) in enumerate(zip(chosen, specs)):
        old = model.get_submodule(name)
        idx = slots.index(name)
        cls = timm_attn(s, causal=causal, scan=orders[j % len(orders)])
        if isinstance(old, MixerAttention):
            dim, heads = old.dim, old.num_heads
            qkv_bias, proj_bias, proj_drop = old.qkv_bias, old.proj_bias, old.proj_drop.p
        else:
            why = _unsupported(old)
            if why is not None:
                raise ValueError(f"swap_mixers: cannot replace {name} faithfully: {why}")
            dim, heads = old.qkv.in_features, old.num_heads
            qkv_bias, proj_bias = old.qkv.bias is not None, old.proj.bias is not None
            proj_drop = getattr(getattr(old, "proj_drop", None), "p", 0.0)
        ref = next(old.parameters())
        new = cls(dim, num_heads=heads, qkv_bias=qkv_bias, proj_bias=proj_bias,
                  proj_drop=proj_drop, device=ref.device, dtype=ref.dtype, layer_idx=idx)
        if init_from_attention:
            if isinstance(old, MixerAttention):
                raise ValueError(f"swap_mixers: {name} is already a mixzoo mixer; "
                                 f"init_from_attention needs a timm Attention")
            _init_from_attention(new.mixer, old)
        new.train(old.training)
        parent_name, _, attr = name.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, attr, new)
    return bind_layout(model)

