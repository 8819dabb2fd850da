"""MAD selective copying (Poli et al. 2024; Gu & Dao 2023): copy the content tokens
scattered among blanks, in order, after a delimiter.

    _ a _ _ b _ c _ _ _ d _ | a b c d          (| = delimiter, _ = blank)
                            ^ targets a b c d, one per position (teacher forcing)

Token 0 is the blank, token 1 the delimiter, content tokens come from [2, vocab_size).
The content positions are random, so the model must select by content, not by position.
"""
from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field, model_validator

from .base import IGNORE, Task, TaskConfig
from .registry import register_task

BLANK, DELIM = 0, 1


@register_task
class SelectiveCopy(Task):
    class Config(TaskConfig):
        type: Literal["selective_copy"] = "selective_copy"
        vocab_size: int = Field(16, ge=3)           # MAD: 16 tokens, 256 positions, copy 16
        seq_len: int = Field(256, ge=4)
        num_tokens_to_copy: int = Field(16, ge=1)

        @model_validator(mode="after")
        def _fits(self):
            n = self.num_tokens_to_copy
            if self.seq_len < 2 * n + 1:
                raise ValueError(f"seq_len={self.seq_len} is too short to hide and then copy "
                                 f"num_tokens_to_copy={n} tokens (need >= {2 * n + 1})")
            return self

    def sample(self, batch, generator):
        c = self.config
        n, t = c.num_tokens_to_copy, c.seq_len
        ctx = t - n - 1                                          # positions before the delimiter
        content = torch.randint(2, c.vocab_size, (batch, n), generator=generator)      # [B,n]
        where = torch.rand(batch, ctx, generator=generator).argsort(1)[:, :n]
        where = where.sort(1).values                                                     # [B,n]
        inputs = torch.full((batch, t), BLANK, dtype=torch.long)
        inputs.scatter_(1, where, content)
        inputs[:, ctx] = DELIM
        inputs[:, ctx + 1:] = content                            # teacher forcing the copy
        targets = torch.full((batch, t), IGNORE, dtype=torch.long)
        targets[:, ctx:ctx + n] = content                        # delimiter predicts the 1st
        return inputs, targets
