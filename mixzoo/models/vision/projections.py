"""Where a mixer keeps its q/k/v/o projections, so a timm attention can hand them over.

timm's `Attention` has one fused `qkv: Linear(D, 3*A)` (rows: q | k | v, each head-major
[H, head_dim]) and an output `proj: Linear(A, D)`. Mixers lay out the same projections in
their own ways (DeltaNet fuses q|k|v into `in_proj`, GLA keeps `q_proj`/`k_proj`/`v_proj`,
attention fuses k|v into `kv_proj`). A *projection map* says, for one mixer instance, which
Linear holds which rows:

    {"q": (linear, start, stop), "k": (...), "v": (...), "o": (linear, None, None)}

Two things use it:
- `add_biases` honours timm's `qkv_bias=True` / `proj_bias=True` by giving those Linears a
  (zero-initialised) bias, so the q/k/v/o projections have biases as timm asked (a fused
  Linear gets one bias over all its rows: DeltaNet's `in_proj` also holds the beta logits,
  whose bias then starts at zero too);
- `init_from_attention` copies a timm Attention's `qkv` / `proj` weights (and biases) into
  the mixer, so a pretrained ViT can be converted and fine-tuned.

Maps for the built-in mixers are registered below; a plugin mixer registers its own with
`@register_projection_map("my_mixer")`. Mixers without one (e.g. short_conv, which has no
q/k/v) still work as timm attention layers, but cannot take biases or attention weights.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

Slot = tuple[nn.Linear, "int | None", "int | None"]
ProjectionMap = dict[str, Slot]

_MAPS: dict[str, Callable[[nn.Module], ProjectionMap]] = {}


def register_projection_map(mixer_type: str, *, override: bool = False):
    """Decorator: `fn(mixer) -> ProjectionMap` for mixers whose Config.type is `mixer_type`."""
    def deco(fn: Callable[[nn.Module], ProjectionMap]):
        if mixer_type in _MAPS and not override:
            raise ValueError(f"a projection map for {mixer_type!r} is already registered; "
                             f"pass override=True to replace it")
        _MAPS[mixer_type] = fn
        return fn
    return deco


def projection_map(mixer: nn.Module) -> ProjectionMap | None:
    """The mixer's projection map, or None if its type has none registered."""
    fn = _MAPS.get(mixer.config.type)
    return fn(mixer) if fn is not None else None


def _fused(linear: nn.Linear, widths: dict[str, int]) -> ProjectionMap:
    """Consecutive row blocks of one Linear, in the order given."""
    out, start = {}, 0
    for name, width in widths.items():
        out[name] = (linear, start, start + width)
        start += width
    return out


@register_projection_map("deltanet")
def _deltanet(m) -> ProjectionMap:
    HK, HV = m.H * m.K, m.H * m.V
    return {**_fused(m.in_proj, {"q": HK, "k": HK, "v": HV}), "o": (m.o_proj, None, None)}


@register_projection_map("retnet")
def _retnet(m) -> ProjectionMap:
    HK, HV = m.H * m.K, m.H * m.V
    return {**_fused(m.qkv_proj, {"q": HK, "k": HK, "v": HV}), "o": (m.o_proj, None, None)}


@register_projection_map("gla")
def _gla(m) -> ProjectionMap:
    return {"q": (m.q_proj, None, None), "k": (m.k_proj, None, None),
            "v": (m.v_proj, None, None), "o": (m.o_proj, None, None)}


@register_projection_map("attention")
@register_projection_map("sliding_window")
def _attention(m) -> ProjectionMap:
    if hasattr(m, "kv_proj"):               # fused layout: kv_proj rows k | v, each [Hkv, D]
        kv = m.Hkv * m.D
        kv_slots = _fused(m.kv_proj, {"k": kv, "v": kv})
    else:
        kv_slots = {"k": (m.k_proj, None, None), "v": (m.v_proj, None, None)}
    return {"q": (m.q_proj, None, None), **kv_slots, "o": (m.o_proj, None, None)}


def _rows(slot: Slot) -> slice:
    linear, start, stop = slot
    return slice(0 if start is None else start, linear.out_features if stop is None else stop)


def add_biases(mixer: nn.Module, qkv: bool, proj: bool) -> None:
    """Give the Linears holding q/k/v (if `qkv`) and o (if `proj`) a zero bias.

    Raises ValueError if asked for a bias the mixer cannot take (no projection map)."""
    if not (qkv or proj):
        return
    pmap = projection_map(mixer)
    if pmap is None:
        wanted = " and ".join(n for n, f in (("qkv_bias=True", qkv), ("proj_bias=True", proj)) if f)
        raise ValueError(
            f"mixer {mixer.config.type!r} has no q/k/v/o projection map, so the timm adapter "
            f"cannot honour {wanted}; pass qkv_bias=False, proj_bias=False to the timm model "
            f"(or register one with mixzoo.models.vision.register_projection_map)")
    names = (["q", "k", "v"] if qkv else []) + (["o"] if proj else [])
    for name in names:
        linear = pmap[name][0]
        if linear.bias is None:
            linear.bias = nn.Parameter(torch.zeros(linear.out_features, device=linear.weight.device,
                                                   dtype=linear.weight.dtype))


@torch.no_grad()
def init_from_attention(mixer: nn.Module, attn: nn.Module) -> None:
    """Copy a timm Attention's `qkv` and `proj` (weights and biases) into the mixer.

    Shapes must match exactly (the mixer's q/k/v widths equal timm's attention width, e.g.
    DeltaNet/RetNet with expand_k = expand_v = 1, GLA with expand_k = 1, attention with
    num_kv_heads = None). A bias that timm has and the mixer lacks is added to the mixer.
    """
    pmap = projection_map(mixer)
    if pmap is None:
        raise ValueError(f"init_from_attention: mixer {mixer.config.type!r} has no registered "
                         f"projection map (see mixzoo.models.vision.register_projection_map)")
    qkv, proj = getattr(attn, "qkv", None), getattr(attn, "proj", None)
    if not isinstance(qkv, nn.Linear) or not isinstance(proj, nn.Linear):
        raise ValueError(f"init_from_attention: {type(attn).__name__} has no `qkv`/`proj` "
                         f"Linear layers (a timm Attention has both)")
    A = qkv.out_features // 3                  # timm attention width num_heads * head_dim
    add_biases(mixer, qkv=qkv.bias is not None, proj=proj.bias is not None)
    for i, name in enumerate(("q", "k", "v")):
        linear = pmap[name][0]
        rows = _rows(pmap[name])
        if rows.stop - rows.start != A or linear.in_features != qkv.in_features:
            raise ValueError(
                f"init_from_attention: mixer {mixer.config.type!r} {name} projection is "
                f"[{rows.stop - rows.start}, {linear.in_features}] but the attention's is "
                f"[{A}, {qkv.in_features}]; choose mixer widths equal to the attention width "
                f"(e.g. expand_k=1.0, expand_v=1.0)")
        linear.weight[rows].copy_(qkv.weight[i * A:(i + 1) * A])
        if qkv.bias is not None:
            linear.bias[rows].copy_(qkv.bias[i * A:(i + 1) * A])
        elif linear.bias is not None:
            linear.bias[rows].zero_()
    linear = pmap["o"][0]
    if linear.weight.shape != proj.weight.shape:
        raise ValueError(f"init_from_attention: mixer {mixer.config.type!r} output projection "
                         f"is {list(linear.weight.shape)}, the attention's proj is "
                         f"{list(proj.weight.shape)}")
    linear.weight.copy_(proj.weight)
    if proj.bias is not None:
        linear.bias.copy_(proj.bias)
    elif linear.bias is not None:
        linear.bias.zero_()
