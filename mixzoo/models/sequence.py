"""SequenceModel: continuous inputs[B,T,C] -> in-projection -> Backbone -> head."""
from __future__ import annotations

from typing import Any, Literal, Sequence

import torch
from torch import nn

from mixzoo.blocks import Backbone, BlockConfig

Pooling = Literal["mean", "last", "none"]


class SequenceModel(nn.Module):
    """x[B,T,input_dim] -> y[B,output_dim] (pooling "mean" | "last") or
    y[B,T,output_dim] (pooling "none", per-token classification or regression)."""

    def __init__(self, input_dim: int, output_dim: int, d_model: int, layers: Sequence[Any],
                 block: BlockConfig | None = None, pooling: Pooling = "mean"):
        super().__init__()
        if pooling not in ("mean", "last", "none"):
            raise ValueError(f"pooling: expected 'mean', 'last' or 'none', got {pooling!r}")
        self.input_dim = input_dim
        self.pooling = pooling
        self.in_proj = nn.Linear(input_dim, d_model)
        self.backbone = Backbone(d_model, layers, block)
        self.head = nn.Linear(d_model, output_dim)

    def init_states(self, batch: int, device=None, dtype=torch.float32) -> list[Any]:
        return self.backbone.init_states(batch, device, dtype)

    def forward(self, x: torch.Tensor, states: list[Any] | None = None) -> torch.Tensor:
        if x.dim() != 3 or x.shape[-1] != self.input_dim:
            raise ValueError(f"x: expected shape [B,T,{self.input_dim}], got {tuple(x.shape)}")
        h, _ = self.backbone(self.in_proj(x), states)  # [B,T,D]
        if self.pooling == "mean":
            h = h.mean(dim=1)                           # [B,D]
        elif self.pooling == "last":
            h = h[:, -1]                                # [B,D]
        return self.head(h)
