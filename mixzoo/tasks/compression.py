"""MAD compression (Poli et al. 2024): squeeze a random sequence into the output at one
position, then rebuild the whole sequence from that vector alone with a small MLP.

    x1 x2 ... x_{T-1} [C]   ->   h = backbone output at [C]   ->   MLP(h) -> x1 .. x_{T-1}

The model sees everything causally; only its last hidden state reaches the decoder, so the
score measures how much of the sequence the mixer stack packs into one token. The decoder
(2-layer MLP, hidden 4*d_model, one softmax per position) is trained with the model; it
reads the CausalLM's `embed` and `backbone`. Content tokens are [0, vocab_size-1), the
compression token is vocab_size-1. Accuracy is per reconstructed token.
"""
from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from .base import IGNORE, Task, TaskConfig
from .registry import register_task


class _Decoder(nn.Module):
    def __init__(self, d_model: int, seq_len: int, vocab_size: int):
        super().__init__()
        self.seq_len, self.vocab_size = seq_len, vocab_size
        self.net = nn.Sequential(nn.Linear(d_model, 4 * d_model), nn.GELU(),
                                 nn.Linear(4 * d_model, seq_len * vocab_size))

    def forward(self, h: torch.Tensor) -> torch.Tensor:         # h [B,D]
        return self.net(h).view(h.shape[0], self.seq_len, self.vocab_size)   # [B,T,V]


@register_task
class Compression(Task):
    class Config(TaskConfig):
        type: Literal["compression"] = "compression"
        vocab_size: int = Field(16, ge=3)           # MAD: 16 tokens, 32 positions
        seq_len: int = Field(32, ge=2)

    def sample(self, batch, generator):
        c = self.config
        inputs = torch.randint(0, c.vocab_size - 1, (batch, c.seq_len), generator=generator)
        inputs[:, -1] = c.vocab_size - 1                       # the compression token
        targets = inputs.clone()
        targets[:, -1] = IGNORE
        return inputs, targets

    def make_head(self, model: nn.Module) -> nn.Module:
        if not (hasattr(model, "embed") and hasattr(model, "backbone")):
            raise TypeError("compression reads the hidden state of a CausalLM "
                            "(`model.embed`, `model.backbone`); got "
                            f"{type(model).__name__}")
        self.head = _Decoder(model.embed.embedding_dim, self.config.seq_len,
                             self.config.vocab_size)
        return self.head

    def logits_and_loss(self, model, inputs, targets):
        head = getattr(self, "head", None)
        if head is None:
            raise RuntimeError("compression: call make_head(model) first (train() does)")
        x = model.embed(inputs)                                 # [B,T,D]
        h, _ = model.backbone(x)                                # [B,T,D]
        logits = head(h[:, -1])                                 # [B,T,V] from one vector
        loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]),
                               targets.reshape(-1), ignore_index=IGNORE)
        return logits, loss
