"""VisionSpec: the `model.vision` section of a recipe of kind `vision` (no timm import here).

    model:
      kind: vision
      layers: [deltanet, {type: sliding_window, window: 128}]   # or presets/pattern/repeat
      vision:
        base: vit_small_patch16_224     # any timm ViT-family model name
        img_size: 224
        num_classes: 1000
        scan: [row, col]                # cycled over the layers

`build_vision_model` creates `base` with timm (depth = the number of layers, embed_dim =
model.d_model if given) and puts mixer i into block i's attention slot (`swap_mixers`).

Causality is chosen once for the whole model (`causal`, default False = bidirectional):
an image has no time axis, and mixer configs default to causal=True for language, so
their own `causal` field is replaced by this one in a vision model.

Class token and pooling (`pool`, `class_token`):
- "auto" (default): average pooling without a class token when any layer is not global
  attention; the class token (timm's "token" pooling) when every layer is attention.
- "avg": mean of the patch tokens (robust for linear mixers).
- "token": a class token in front of the patches. With bidirectional mixers the reversed
  scan reads it after every patch, so it sees the whole image; with causal=True it would
  see only itself, which is rejected.
"""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from .scan import ScanOrder


class VisionSpec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    # A timm ViT-family model name (blocks with a timm `Attention` at `.attn`).
    base: str = "vit_small_patch16_224"
    # None = the base's own value. num_heads is timm's (its attention is built, then
    # swapped out); the mixers' head counts are their own config's.
    img_size: int | None = Field(None, gt=0)
    patch_size: int | None = Field(None, gt=0)
    num_heads: int | None = Field(None, gt=0)
    in_chans: int = Field(3, gt=0)
    num_classes: int = Field(1000, ge=0)
    causal: bool = False
    pool: Literal["auto", "avg", "token"] = "auto"
    # None = follow the pooling (a class token only for "token" pooling).
    class_token: bool | None = None
    # Scan order of each layer, cycled over the layers (see mixzoo.models.vision.scan).
    scan: list[ScanOrder] = Field(default_factory=lambda: ["row"], min_length=1)
    # Dropout before the classifier head (timm's drop_rate).
    drop_rate: float = Field(0.0, ge=0, lt=1)
    # Load the base's pretrained weights (needs network/cache) before swapping mixers in,
    # and optionally start the mixers' q/k/v/o from the replaced attention's qkv/proj.
    pretrained: bool = False
    init_from_attention: bool = False

    @model_validator(mode="after")
    def _consistent(self) -> "VisionSpec":
        if self.init_from_attention and not self.pretrained:
            raise ValueError("init_from_attention=True copies the base's pretrained attention "
                             "weights, so it needs pretrained=True")
        if self.pool == "token" and self.class_token is False:
            raise ValueError("pool='token' needs a class token (class_token: true or unset)")
        if self.pool == "token" and self.causal:
            raise ValueError("pool='token' with causal=True: the class token sits in front "
                             "of the patches and a causal scan never shows it a patch; use "
                             "pool='avg' or causal=False")
        return self

    def resolve_pool(self, layer_types: list[str]) -> tuple[str, bool]:
        """(timm global_pool, class_token) for a model with these mixer types."""
        pool = self.pool
        if pool == "auto":
            pool = "token" if all(t == "attention" for t in layer_types) else "avg"
            if self.causal or self.class_token is False:
                pool = "avg"
        class_token = self.class_token if self.class_token is not None else pool == "token"
        return pool, class_token
