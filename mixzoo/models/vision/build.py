"""build_vision_model: a recipe's `model` section of kind `vision` -> a timm model.

The model is timm's own (`timm.create_model(vision.base, ...)`) with mixer i in block i's
attention slot, so every timm feature and script keeps working. Mapping of recipe fields:

    model.layers          one mixer per block (depth = len(layers))
    model.d_model         embed_dim (None = the base's width)
    model.layers[i].*     the mixer exactly as configured (its num_heads included: unlike
                          `timm_attn`/`swap_mixers`, a recipe never takes timm's head count)
    model.block.*         only the fields the recipe sets; the others keep the timm base's
                          block (a ViT: LayerNorm eps 1e-6, GELU MLP ratio 4, no drop path),
                          so pretrained weights fit (recipe dumps keep which fields were set,
                          so a dumped recipe rebuilds the same model):
        norm, norm_eps    norm_layer (timm LayerNorm / RmsNorm)
        mlp               "mlp" = timm Mlp (GELU); "swiglu" = timm SwiGLU with SiLU and
                          hidden = 2/3 * mlp_ratio * D per branch (mixzoo's convention: the
                          same parameters as a GELU MLP of the same ratio, up to timm's
                          biases); "none" is refused
        mlp_ratio         mlp_ratio
        drop_path         drop_path_rate (timm ramps it linearly over depth, as mixzoo does)
        layer_scale       init_values
    model.vision.*        see config.VisionSpec
"""
from __future__ import annotations

import functools
from typing import Any

from torch import nn

from ._timm import import_timm
from .config import VisionSpec
from .swap import swap_mixers


def _block_args(block: Any) -> dict[str, Any]:
    """timm VisionTransformer arguments for the BlockConfig fields the recipe set."""
    import_timm()
    from timm.layers import LayerNorm, RmsNorm, SwiGLU
    given = set(block.model_fields_set)
    args: dict[str, Any] = {}
    if given & {"norm", "norm_eps"}:
        norm = RmsNorm if block.norm == "rmsnorm" else LayerNorm
        args["norm_layer"] = functools.partial(norm, eps=block.norm_eps)
    if "mlp" in given and block.mlp == "none":
        raise ValueError("model.block.mlp: 'none' is not available for vision models (a timm "
                         "ViT block always has an MLP)")
    if "mlp" in given and block.mlp == "swiglu":
        args.update(mlp_layer=SwiGLU, act_layer=nn.SiLU, mlp_ratio=block.mlp_ratio * 2 / 3)
    elif "mlp_ratio" in given:
        args["mlp_ratio"] = block.mlp_ratio                 # timm's GELU Mlp
    if "drop_path" in given:
        args["drop_path_rate"] = block.drop_path
    if "layer_scale" in given:
        args["init_values"] = block.layer_scale
    return args


def _with_causal(cfg: Any, causal: bool) -> Any:
    """cfg with `causal` replaced and every field explicit.

    Explicit fields make the recipe authoritative: the adapter then never substitutes the
    timm base's num_heads for the mixer's, so a recipe dumped and reloaded builds the same
    model (a dump sets every field)."""
    return type(cfg).model_validate({**cfg.model_dump(), "causal": causal})


def build_vision_model(model_spec: Any) -> nn.Module:
    """A timm model for a recipe's `model` section of kind `vision`.

    model_spec needs `.layers` (validated mixer Configs), `.d_model` (or None), `.block`
    (a BlockConfig) and `.vision` (a VisionSpec or a dict for one)."""
    vision = model_spec.vision
    if not isinstance(vision, VisionSpec):
        vision = VisionSpec.model_validate(vision)
    layers = [_with_causal(c, vision.causal) for c in model_spec.layers]
    if not layers:
        raise ValueError("model.layers: a vision model needs at least one layer")
    pool, class_token = vision.resolve_pool([c.type for c in layers])
    args: dict[str, Any] = dict(num_classes=vision.num_classes, in_chans=vision.in_chans,
                                depth=len(layers), global_pool=pool, class_token=class_token,
                                drop_rate=vision.drop_rate)
    for key in ("img_size", "patch_size", "num_heads"):
        if getattr(vision, key) is not None:
            args[key] = getattr(vision, key)
    if model_spec.d_model is not None:
        args["embed_dim"] = model_spec.d_model
        # timm builds its own attention first (then swapped out): its head count must
        # divide the new width; the first layer's head count does when it has one.
        if vision.num_heads is None:
            args["num_heads"] = getattr(layers[0], "num_heads", 1)
    args.update(_block_args(model_spec.block))
    blk = model_spec.block
    if vision.pretrained and ((("norm" in blk.model_fields_set) and blk.norm != "layernorm")
                              or (("mlp" in blk.model_fields_set) and blk.mlp != "mlp")):
        raise ValueError("model.vision.pretrained: a pretrained ViT's weights need its own block "
                         "layout; leave model.block.norm / model.block.mlp unset")
    timm = import_timm()
    if not timm.is_model(vision.base):
        close = timm.list_models(f"*{vision.base.split('_')[0]}*")[:5]
        raise ValueError(f"model.vision.base: unknown timm model {vision.base!r}"
                         + (f"; similar: {close}" if close else ""))
    model = timm.create_model(vision.base, pretrained=vision.pretrained, **args)
    return swap_mixers(model, layers, "all", init_from_attention=vision.init_from_attention,
                       causal=vision.causal, scan=list(vision.scan))
