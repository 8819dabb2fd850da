"""The one Block for every mixer: x + mixer(norm(x)), then x + mlp(norm(x)).

There are never per-mixer Block classes: the mixer is built from the registry.
"""
from __future__ import annotations

from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from mixzoo.registry import build_mixer

from .mlp import build_mlp
from .norms import build_norm


class BlockConfig(BaseModel):
    """Options shared by every Block of a Backbone."""
    model_config = ConfigDict(frozen=True, extra="forbid")

    norm: Literal["rmsnorm", "layernorm"] = "rmsnorm"
    norm_eps: float = Field(1e-6, gt=0)
    mlp: Literal["swiglu", "mlp", "none"] = "swiglu"
    mlp_ratio: float = Field(4.0, gt=0)
    # Stochastic depth rate of the LAST block; earlier blocks get a linear ramp from 0.
    drop_path: float = Field(0.0, ge=0, lt=1)
    # Initial value of per-channel residual scales (CaiT); None = no layer scale.
    layer_scale: float | None = Field(None, gt=0)


def drop_path(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Drop the whole residual branch per sample with probability p (stochastic depth)."""
    if p == 0.0 or not training:
        return x
    keep = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(1 - p)
    return x * keep / (1 - p)


class Block(nn.Module):
    """Pre-norm residual block around any registered mixer and a channel MLP."""

    def __init__(self, mixer_spec: Any, d_model: int, layer_idx: int = 0,
                 config: BlockConfig | None = None, drop_path_rate: float = 0.0):
        super().__init__()
        config = config or BlockConfig()
        self.config = config
        self.drop_path_rate = drop_path_rate
        self.norm1 = build_norm(config.norm, d_model, config.norm_eps)
        self.mixer = build_mixer(mixer_spec, d_model, layer_idx)
        self.mlp = build_mlp(config.mlp, d_model, config.mlp_ratio)
        self.norm2 = build_norm(config.norm, d_model, config.norm_eps) if self.mlp else None
        ls = config.layer_scale
        self.gamma1 = nn.Parameter(torch.full((d_model,), ls)) if ls is not None else None
        self.gamma2 = (nn.Parameter(torch.full((d_model,), ls))
                       if ls is not None and self.mlp is not None else None)

    def forward(self, x: torch.Tensor, state: Any = None) -> tuple[torch.Tensor, Any]:
        h, new_state = self.mixer(self.norm1(x), state)          # [B,T,D]
        if self.gamma1 is not None:
            h = h * self.gamma1
        x = x + drop_path(h, self.drop_path_rate, self.training)
        if self.mlp is not None:
            h = self.mlp(self.norm2(x))
            if self.gamma2 is not None:
                h = h * self.gamma2
            x = x + drop_path(h, self.drop_path_rate, self.training)
        return x, new_state
