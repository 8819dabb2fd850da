"""MQAR: multi-query associative recall (Zoology, Arora et al. 2023).

A sequence opens with N key-value pairs, then asks for every key again, in a random
order and at random places in the rest of the sequence:

    k3 v3  k1 v1  k7 v7 ...  | noise noise k7 v7 noise k3 v3 noise ... k1 v1 noise
    <------ context: 2N ---->  <------------- queries, seq_len - 2N ------------->

Keys come from the lower half of the vocabulary and values from the upper half. Each
query key is followed by its value (teacher forcing), and the target at the query key's
position is that value; every other position is -100. Accuracy is measured on the N query
positions. As in Zoology, query slots are drawn with a power law over their distance
from the context (p(slot i) ~ i^(a-1), a = `power_a`), so most queries come soon after
the context and a few come late; slots not used by queries carry random tokens.

What makes MQAR hard for a fixed-size state is N: recalling N pairs needs about N*d
numbers of memory, which is why DeltaNet's delta rule (which overwrites a key's old
value) beats purely additive linear attention (RetNet, GLA) at small widths.
"""
from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field, model_validator

from .base import IGNORE, Task, TaskConfig, distinct_tokens
from .registry import register_task


@register_task
class MQAR(Task):
    class Config(TaskConfig):
        type: Literal["mqar"] = "mqar"
        vocab_size: int = Field(256, gt=3)
        seq_len: int = Field(128, gt=3)
        num_kv_pairs: int = Field(8, gt=0)
        # Zoology's power-law exponent for query placement (small a = queries near the context).
        power_a: float = Field(0.01, gt=0, le=1)
        # Fill the unused slots with random tokens (True, as in Zoology) or token 0.
        random_non_queries: bool = True

        @model_validator(mode="after")
        def _fits(self):
            n, t = self.num_kv_pairs, self.seq_len
            if 4 * n > t:
                raise ValueError(f"seq_len={t} is too short for num_kv_pairs={n}: the context "
                                 f"takes 2N and the queries another 2N (need seq_len >= {4 * n})")
            if self.vocab_size // 2 < n:
                raise ValueError(f"vocab_size={self.vocab_size} gives {self.vocab_size // 2} "
                                 f"keys, fewer than num_kv_pairs={n}")
            return self

    def sample(self, batch: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        c = self.config
        n, t, v = c.num_kv_pairs, c.seq_len, c.vocab_size
        half = v // 2
        keys = distinct_tokens(batch, n, 0, half, generator)               # [B,N]
        values = torch.randint(half, v, (batch, n), generator=generator)    # [B,N]

        if c.random_non_queries:
            inputs = torch.randint(0, v, (batch, t), generator=generator)   # [B,T]
        else:
            inputs = torch.zeros(batch, t, dtype=torch.long)
        targets = torch.full((batch, t), IGNORE, dtype=torch.long)
        inputs[:, 0:2 * n:2] = keys                                         # context keys
        inputs[:, 1:2 * n:2] = values                                       # context values

        # Query slots: pairs (2N + 2s, 2N + 2s + 1), s in [0, S), N of them, power law in s.
        slots = (t - 2 * n) // 2
        weights = torch.arange(1, slots + 1, dtype=torch.float64) ** (c.power_a - 1)
        slot = torch.multinomial(weights.expand(batch, slots), n, replacement=False,
                                 generator=generator)                       # [B,N]
        order = torch.rand(batch, n, generator=generator).argsort(dim=1)    # [B,N] which key
        qpos = 2 * n + 2 * slot                                             # [B,N]
        qkeys = keys.gather(1, order)
        qvals = values.gather(1, order)
        inputs.scatter_(1, qpos, qkeys)
        inputs.scatter_(1, qpos + 1, qvals)
        targets.scatter_(1, qpos, qvals)
        return inputs, targets
