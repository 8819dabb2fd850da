"""Causal language model: embedding -> Backbone -> tied LM head, with carried state."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from mixzoo.blocks import Backbone, BlockConfig


@dataclass
class CausalLMOutput:
    logits: torch.Tensor                 # [B,T,V]
    loss: torch.Tensor | None            # mean next-token cross-entropy when labels given
    states: list[Any] | None             # per-layer states when states were passed in


class CausalLM(nn.Module):
    """Token ids[B,T] -> logits[B,T,V].

    labels[B,T] (optional) are the targets aligned with the inputs (position t predicts
    labels[:, t]); -100 entries are ignored. Pass `states=model.init_states(B)` to decode
    incrementally: feed a prompt, then one token at a time with the returned states.
    """

    def __init__(self, vocab_size: int, d_model: int, layers: Sequence[Any],
                 block: BlockConfig | None = None, tie_embeddings: bool = True):
        super().__init__()
        if vocab_size <= 1:
            raise ValueError(f"vocab_size: expected > 1, got {vocab_size}")
        self.vocab_size = vocab_size
        self.embed = nn.Embedding(vocab_size, d_model)
        self.backbone = Backbone(d_model, layers, block)
        self.head = nn.Linear(d_model, vocab_size, bias=False)
        if tie_embeddings:
            self.head.weight = self.embed.weight
        # Small init (GPT-2 style) keeps the initial loss near log(V).
        nn.init.normal_(self.embed.weight, std=0.02)
        if not tie_embeddings:
            nn.init.normal_(self.head.weight, std=0.02)

    def init_states(self, batch: int, device=None, dtype=torch.float32) -> list[Any]:
        return self.backbone.init_states(batch, device, dtype)

    def forward(self, input_ids: torch.Tensor, labels: torch.Tensor | None = None,
                states: list[Any] | None = None) -> CausalLMOutput:
        if input_ids.dim() != 2 or input_ids.dtype not in (torch.long, torch.int32):
            raise ValueError(f"input_ids: expected integer tensor [B,T], got "
                             f"{tuple(input_ids.shape)} {input_ids.dtype}")
        x = self.embed(input_ids)                       # [B,T,D]
        h, states = self.backbone(x, states)            # [B,T,D]
        logits = self.head(h)                           # [B,T,V]
        loss = None
        if labels is not None:
            if labels.shape != input_ids.shape:
                raise ValueError(f"labels: expected shape {tuple(input_ids.shape)}, "
                                 f"got {tuple(labels.shape)}")
            loss = F.cross_entropy(logits.float().reshape(-1, self.vocab_size),
                                   labels.reshape(-1), ignore_index=-100)
        return CausalLMOutput(logits=logits, loss=loss, states=states)

    @torch.no_grad()
    def generate(self, input_ids: torch.Tensor, max_new_tokens: int) -> torch.Tensor:
        """Greedy decoding with carried state: the prompt once, then one token per step."""
        states = self.init_states(input_ids.shape[0], input_ids.device)
        out = self(input_ids, states=states)
        tokens = [input_ids]
        nxt = out.logits[:, -1:].argmax(-1)             # [B,1]
        for _ in range(max_new_tokens):
            tokens.append(nxt)
            out = self(nxt, states=out.states)
            nxt = out.logits[:, -1:].argmax(-1)
        return torch.cat(tokens, dim=1)
