"""MAD recall tasks (Poli et al. 2024, "Mechanistic Design and Scaling of Hybrid
Architectures"): in-context recall, noisy in-context recall, fuzzy in-context recall.

Each sequence draws its own random key -> value map and then lists key-value pairs from it,
so a key seen earlier in the sequence predicts its value:

    k2 v7  k5 v1  k2 v7  k0 v3  k5 v1 ...       target at each repeated key: its value

Keys come from the lower half of the (non-noise) vocabulary, values from the upper half.
Only keys that already appeared are scored (a first occurrence cannot be predicted).
Noisy recall inserts noise tokens (their own vocabulary) between pairs; fuzzy recall
uses multi-token keys and values ("motifs") and scores every value token of a repeated pair.
"""
from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from pydantic import Field, model_validator

from .base import IGNORE, Task, TaskConfig
from .registry import register_task


def _seen_before(keys: torch.Tensor, num_keys: int) -> torch.Tensor:
    """keys [B,P] -> bool [B,P]: True where the key occurred at an earlier pair."""
    onehot = torch.nn.functional.one_hot(keys, num_keys)         # [B,P,K]
    before = onehot.cumsum(1) - onehot                           # counts strictly before
    return before.gather(2, keys[..., None]).squeeze(2) > 0      # [B,P]


def _pairs(batch: int, num_pairs: int, num_keys: int, num_values: int,
           generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(keys [B,P] in [0,K), values [B,P] in [0,Vv), scored [B,P]) for a random per-sequence
    map key -> value."""
    table = torch.randint(0, num_values, (batch, num_keys), generator=generator)   # [B,K]
    keys = torch.randint(0, num_keys, (batch, num_pairs), generator=generator)     # [B,P]
    values = table.gather(1, keys)                                                 # [B,P]
    return keys, values, _seen_before(keys, num_keys)


@register_task
class InContextRecall(Task):
    class Config(TaskConfig):
        type: Literal["in_context_recall"] = "in_context_recall"
        vocab_size: int = Field(16, ge=4)        # MAD: 16 tokens, 128 positions
        seq_len: int = Field(128, ge=4)

    def sample(self, batch, generator):
        c = self.config
        half = c.vocab_size // 2
        p = c.seq_len // 2
        keys, values, scored = _pairs(batch, p, half, c.vocab_size - half, generator)
        inputs = torch.zeros(batch, c.seq_len, dtype=torch.long)
        inputs[:, 0:2 * p:2] = keys
        inputs[:, 1:2 * p:2] = values + half
        targets = torch.full((batch, c.seq_len), IGNORE, dtype=torch.long)
        targets[:, 0:2 * p:2] = torch.where(scored, values + half, IGNORE)
        return inputs, targets


@register_task
class NoisyRecall(Task):
    class Config(TaskConfig):
        type: Literal["noisy_recall"] = "noisy_recall"
        # Total vocabulary: keys and values share vocab_size - noise_vocab_size tokens.
        vocab_size: int = Field(32, ge=6)
        seq_len: int = Field(128, ge=4)
        noise_vocab_size: int = Field(16, ge=1)
        # Fraction of the positions that are noise tokens.
        frac_noise: float = Field(0.2, ge=0, lt=1)

        @model_validator(mode="after")
        def _fits(self):
            if self.vocab_size - self.noise_vocab_size < 4:
                raise ValueError(f"vocab_size={self.vocab_size} leaves fewer than 4 key/value "
                                 f"tokens beside noise_vocab_size={self.noise_vocab_size}")
            return self

    def sample(self, batch, generator):
        c = self.config
        kv = c.vocab_size - c.noise_vocab_size
        half = kv // 2
        n_noise = int(round(c.frac_noise * c.seq_len))
        p = (c.seq_len - n_noise) // 2
        n_noise = c.seq_len - 2 * p                             # fill exactly seq_len
        keys, values, scored = _pairs(batch, p, half, kv - half, generator)
        # Units in a random order per sequence: p pairs (2 tokens) and n_noise noise tokens.
        units = p + n_noise
        is_pair = torch.rand(batch, units, generator=generator).argsort(1) < p    # [B,U]
        length = 1 + is_pair.long()
        start = length.cumsum(1) - length                                         # [B,U]
        pair_start = start[is_pair].view(batch, p)                                # [B,P] ordered
        noise_start = start[~is_pair].view(batch, n_noise)                        # [B,N]
        inputs = torch.empty(batch, c.seq_len, dtype=torch.long)
        inputs.scatter_(1, pair_start, keys)
        inputs.scatter_(1, pair_start + 1, values + half)
        noise = torch.randint(kv, c.vocab_size, (batch, n_noise), generator=generator)
        inputs.scatter_(1, noise_start, noise)
        targets = torch.full((batch, c.seq_len), IGNORE, dtype=torch.long)
        targets.scatter_(1, pair_start, torch.where(scored, values + half, IGNORE))
        return inputs, targets


@register_task
class FuzzyRecall(Task):
    class Config(TaskConfig):
        type: Literal["fuzzy_recall"] = "fuzzy_recall"
        vocab_size: int = Field(16, ge=4)
        seq_len: int = Field(128, ge=8)
        # Keys and values are motifs of 1..k_motif_size / 1..v_motif_size tokens (MAD: 3).
        k_motif_size: int = Field(3, ge=1)
        v_motif_size: int = Field(3, ge=1)
        # Distinct key motifs in each sequence's map.
        num_keys: int = Field(8, ge=1)

        @model_validator(mode="after")
        def _fits(self):
            half = self.vocab_size // 2
            possible = sum(half ** n for n in range(1, self.k_motif_size + 1))
            if self.num_keys > possible:
                raise ValueError(f"num_keys={self.num_keys} exceeds the {possible} distinct key "
                                 f"motifs of length <= {self.k_motif_size} over {half} tokens")
            return self

    def sample(self, batch, generator):
        c = self.config
        half = c.vocab_size // 2
        # Python-level generation (variable-length motifs), seeded from the torch generator.
        rng = np.random.default_rng(int(torch.randint(0, 2**62, (1,), generator=generator)))
        inputs = np.zeros((batch, c.seq_len), dtype=np.int64)
        targets = np.full((batch, c.seq_len), IGNORE, dtype=np.int64)
        for b in range(batch):
            keys: list[tuple[int, ...]] = []
            while len(keys) < c.num_keys:
                m = tuple(rng.integers(0, half, rng.integers(1, c.k_motif_size + 1)).tolist())
                if m not in keys:
                    keys.append(m)
            vals = [tuple((rng.integers(half, c.vocab_size, rng.integers(1, c.v_motif_size + 1))
                           ).tolist()) for _ in keys]
            seen: set[int] = set()
            t = 0
            while t < c.seq_len:
                i = int(rng.integers(0, len(keys)))
                k, v = keys[i], vals[i]
                for j, tok in enumerate(k + v):
                    pos = t + j
                    if pos >= c.seq_len:
                        break
                    inputs[b, pos] = tok
                    # scored: the next token is a value token of a pair already seen
                    if i in seen and len(k) - 1 <= j < len(k) + len(v) - 1 \
                            and pos + 1 < c.seq_len:
                        targets[b, pos] = (k + v)[j + 1]
                seen.add(i)
                t += len(k) + len(v)
        return torch.from_numpy(inputs), torch.from_numpy(targets)
