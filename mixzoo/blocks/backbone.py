"""Backbone: a stack of Blocks built from a per-layer list of mixer specs, plus a final norm."""
from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from .block import Block, BlockConfig
from .norms import build_norm


class Backbone(nn.Module):
    """x[B,T,D] -> y[B,T,D] through `len(layers)` Blocks.

    layers: one mixer spec per layer (a registry name, a dict with `type`, or a Config).
    States: `forward(x, states)` takes and returns a list with one state per layer
    (None entries start fresh), so incremental decoding threads them through.
    """

    def __init__(self, d_model: int, layers: Sequence[Any], block: BlockConfig | None = None):
        super().__init__()
        if not layers:
            raise ValueError("layers: expected at least one mixer spec, got an empty list")
        block = block or BlockConfig()
        self.d_model = d_model
        self.block_config = block
        n = len(layers)
        rates = [block.drop_path * i / max(n - 1, 1) for i in range(n)]
        self.blocks = nn.ModuleList(
            Block(spec, d_model, i, block, rates[i]) for i, spec in enumerate(layers))
        self.norm = build_norm(block.norm, d_model, block.norm_eps)
        self.grad_checkpointing = False

    def init_states(self, batch: int, device=None, dtype=torch.float32) -> list[Any]:
        return [b.mixer.init_state(batch, device, dtype) for b in self.blocks]

    def state_size(self, seq_len: int) -> int:
        """Inference-state elements per sequence after `seq_len` tokens, all layers."""
        return sum(b.mixer.state_size(seq_len) for b in self.blocks)

    def forward(self, x: torch.Tensor, states: list[Any] | None = None
                ) -> tuple[torch.Tensor, list[Any] | None]:
        if x.dim() != 3 or x.shape[-1] != self.d_model:
            raise ValueError(f"Backbone: expected x of shape [B,T,D] with D={self.d_model}, "
                             f"got {tuple(x.shape)}")
        if states is not None and len(states) != len(self.blocks):
            raise ValueError(f"states: expected a list of {len(self.blocks)} per-layer states, "
                             f"got {len(states)}")
        new_states = [] if states is not None else None
        for i, blk in enumerate(self.blocks):
            st = states[i] if states is not None else None
            if self.grad_checkpointing and self.training and st is None:
                x, ns = checkpoint(blk, x, None, use_reentrant=False)
            else:
                x, ns = blk(x, st)
            if new_states is not None:
                new_states.append(ns)
        return self.norm(x), new_states
