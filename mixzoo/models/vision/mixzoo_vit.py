"""mixzoo ViTs registered with timm: `timm.create_model("mixzoo_deltanet_vit_small_patch16_224")`.

Each is timm's own `VisionTransformer` (so `features_only=True` with `out_indices`,
`set_grad_checkpointing`, `forward_features` / `forward_head`, `no_weight_decay`,
`reset_classifier`, timm's training scripts and optimizers all work unchanged) whose blocks
get a mixzoo mixer instead of softmax attention. The mixers repeat a short per-layer
pattern over the depth, so a depth override keeps the hybrid's rhythm:

    mixzoo_deltanet_vit_tiny_patch16_224       DeltaNet in every block, ViT-Ti/16 widths
    mixzoo_deltanet_vit_small_patch16_224      DeltaNet in every block, ViT-S/16 widths
    mixzoo_gla_vit_small_patch16_224           GLA in every block
    mixzoo_deltanet_swa_vit_small_patch16_224  DeltaNet / sliding-window attention alternating
                                               (the seed paper's hybrid)

Defaults that differ from timm's ViT, and why:
- bidirectional mixers (causal=False): an image has no time direction;
- class_token=False, global_pool="avg": average pooling is the robust default for linear
  mixers (a class token would rely on the reversed scan to see the patches; pass
  class_token=True, global_pool="token" to get that instead, it is supported and tested);
- qkv_bias=False: the mixers' own projections carry no bias (proj_bias stays True: timm
  also uses it for the MLP biases);
- embed_layer=ContiguousPatchEmbed: without a class token, timm's patch embedding would
  leave the residual stream in a strided layout (see the class).
Extra keyword arguments of the entrypoints: `scan` (an order or a list of orders cycled over
the layers, see scan.py) and `causal`; everything else goes to timm's VisionTransformer.

There are no pretrained weights; to start from a pretrained ViT instead, convert it:
`swap_mixers(timm.create_model("vit_small_patch16_224", pretrained=True), "deltanet",
init_from_attention=True)`.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

from ._timm import import_timm
from .adapter import timm_attn
from .scan import check_order

timm = import_timm()
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD  # noqa: E402
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model  # noqa: E402
from timm.layers import PatchEmbed  # noqa: E402
from timm.models.vision_transformer import (  # noqa: E402
    Block, VisionTransformer, checkpoint_filter_fn)

# SWA width for the vision hybrid: 128 tokens is about +-4 patch rows at 224 px (14x14
# patches) and +-1 row at 1024 px, so those layers stay local and cost O(T*W), while the
# DeltaNet layers carry the global context (as in the seed paper's DeltaNet+SWA hybrid).
SWA_WINDOW = 128

MODEL_NAMES = (
    "mixzoo_deltanet_vit_tiny_patch16_224",
    "mixzoo_deltanet_vit_small_patch16_224",
    "mixzoo_gla_vit_small_patch16_224",
    "mixzoo_deltanet_swa_vit_small_patch16_224",
)


def _cfg(**kwargs) -> dict[str, Any]:
    return {
        "url": "", "num_classes": 1000, "input_size": (3, 224, 224), "pool_size": None,
        "crop_pct": 0.9, "interpolation": "bicubic", "fixed_input_size": True,
        "mean": IMAGENET_DEFAULT_MEAN, "std": IMAGENET_DEFAULT_STD,
        "first_conv": "patch_embed.proj", "classifier": "head", "license": "apache-2.0",
        **kwargs,
    }


default_cfgs = generate_default_cfgs({name: _cfg() for name in MODEL_NAMES})


class ContiguousPatchEmbed(PatchEmbed):
    """timm's PatchEmbed with a contiguous output (same parameters and state_dict keys).

    PatchEmbed flattens the conv output [B,C,h,w] into a transposed *view* [B,N,C] (strides
    (C*N, 1, N)). timm's ViT makes it contiguous when it prepends the class token (torch.cat),
    but without one (our default) the transposed layout flows on: elementwise ops keep their
    input's layout, so the whole residual stream stays strided and the casts and adds of
    every block run PyTorch's slow strided kernels. H100, session 5 call 24 (DeltaNet ViT-S,
    224 px, batch 128): 48 strided [128,196,384] copies and 24 strided adds per training
    step, ~4.5 ms of its 40 ms of GPU work."""

    def forward(self, x):
        return super().forward(x).contiguous()


def _prefix_and_grid(args: dict[str, Any]) -> tuple[int, tuple[int, int]]:
    """Number of prefix tokens and the patch grid a VisionTransformer will get from args."""
    prefix = int(args.get("class_token", True)) + int(args.get("reg_tokens", 0))
    img, patch = args.get("img_size", 224), args.get("patch_size", 16)
    img = (img, img) if isinstance(img, int) else tuple(img)
    patch = (patch, patch) if isinstance(patch, int) else tuple(patch)
    return prefix, (img[0] // patch[0], img[1] // patch[1])


def _block_fn(attn_layers: Sequence[type]):
    """A timm `block_fn` giving block i the attention class attn_layers[i % len]."""
    def make_block(*, depth: int, attn_layer, **block_args) -> Block:
        # block_args are exactly what VisionTransformer passes to its Block (dim, num_heads,
        # mlp_ratio, norm_layer, ...); Block's own signature checks them.
        del attn_layer  # replaced by the per-layer class
        return Block(attn_layer=attn_layers[depth % len(attn_layers)], depth=depth,
                     **block_args)
    return make_block


def create_mixzoo_vit(variant: str, mixers: Sequence[Any], pretrained: bool = False, *,
                      scan: str | Sequence[str] = "row", causal: bool = False,
                      **kwargs) -> VisionTransformer:
    """Build a registered mixzoo ViT: `mixers` is the per-layer pattern (cycled over depth).

    kwargs are VisionTransformer arguments (after the variant's defaults), checked by timm."""
    orders = [scan] if isinstance(scan, str) else list(scan)
    for order in orders:
        check_order(order)
    args = dict(class_token=False, global_pool="avg", qkv_bias=False,
                embed_layer=ContiguousPatchEmbed)
    args.update(kwargs)
    prefix, grid = _prefix_and_grid(args)
    n = math.lcm(len(mixers), len(orders))           # period of the (mixer, order) pattern
    attn_layers = [timm_attn(mixers[i % len(mixers)], causal=causal,
                             scan=orders[i % len(orders)], num_prefix_tokens=prefix,
                             grid_size=grid) for i in range(n)]
    out_indices = args.pop("out_indices", 3)
    return build_model_with_cfg(
        VisionTransformer, variant, pretrained,
        pretrained_filter_fn=checkpoint_filter_fn,
        feature_cfg=dict(out_indices=out_indices, feature_cls="getter"),
        block_fn=_block_fn(attn_layers), **args)


@register_model
def mixzoo_deltanet_vit_tiny_patch16_224(pretrained: bool = False, **kwargs) -> VisionTransformer:
    """DeltaNet ViT-Ti/16: every block's attention is a bidirectional DeltaNet."""
    args = dict(patch_size=16, embed_dim=192, depth=12, num_heads=3)
    return create_mixzoo_vit("mixzoo_deltanet_vit_tiny_patch16_224", ["deltanet"],
                             pretrained, **dict(args, **kwargs))


@register_model
def mixzoo_deltanet_vit_small_patch16_224(pretrained: bool = False, **kwargs) -> VisionTransformer:
    """DeltaNet ViT-S/16: every block's attention is a bidirectional DeltaNet."""
    args = dict(patch_size=16, embed_dim=384, depth=12, num_heads=6)
    return create_mixzoo_vit("mixzoo_deltanet_vit_small_patch16_224", ["deltanet"],
                             pretrained, **dict(args, **kwargs))


@register_model
def mixzoo_gla_vit_small_patch16_224(pretrained: bool = False, **kwargs) -> VisionTransformer:
    """GLA ViT-S/16: every block's attention is a bidirectional GLA."""
    args = dict(patch_size=16, embed_dim=384, depth=12, num_heads=6)
    return create_mixzoo_vit("mixzoo_gla_vit_small_patch16_224", ["gla"],
                             pretrained, **dict(args, **kwargs))


@register_model
def mixzoo_deltanet_swa_vit_small_patch16_224(pretrained: bool = False,
                                              **kwargs) -> VisionTransformer:
    """DeltaNet + sliding-window attention ViT-S/16, alternating (DeltaNet first)."""
    args = dict(patch_size=16, embed_dim=384, depth=12, num_heads=6)
    mixers = ["deltanet", {"type": "sliding_window", "window": SWA_WINDOW}]
    return create_mixzoo_vit("mixzoo_deltanet_swa_vit_small_patch16_224", mixers,
                             pretrained, **dict(args, **kwargs))
