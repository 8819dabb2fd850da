"""MAD memorization (Poli et al. 2024): a fixed key -> value map shared by every sequence,
so the model must store it in its weights (no in-context information helps).

    k17 v3  k92 v40  k5 v11 ...       target at every key: its value under the fixed map

The map is drawn once from `map_seed` (part of the config, so it is the same for the
training and the held-out data and across runs). Keys are the lower half of the
vocabulary, values the upper half.
"""
from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from .base import IGNORE, Task, TaskConfig
from .registry import register_task


@register_task
class Memorization(Task):
    class Config(TaskConfig):
        type: Literal["memorization"] = "memorization"
        vocab_size: int = Field(256, ge=4)           # MAD: 256 tokens, 32 positions
        seq_len: int = Field(32, ge=2)
        map_seed: int = 0

    def __init__(self, config: Config):
        super().__init__(config)
        half = config.vocab_size // 2
        g = torch.Generator().manual_seed(config.map_seed)
        self.table = torch.randint(half, config.vocab_size, (half,), generator=g)   # [K]

    def sample(self, batch, generator):
        c = self.config
        half = c.vocab_size // 2
        p = c.seq_len // 2
        keys = torch.randint(0, half, (batch, p), generator=generator)              # [B,P]
        values = self.table[keys]                                                   # [B,P]
        inputs = torch.zeros(batch, c.seq_len, dtype=torch.long)
        inputs[:, 0:2 * p:2] = keys
        inputs[:, 1:2 * p:2] = values
        targets = torch.full((batch, c.seq_len), IGNORE, dtype=torch.long)
        targets[:, 0:2 * p:2] = values
        return inputs, targets
