"""Gated Linear Attention (Yang, Wang, Shen, Panda, Kim 2023).

    S_t = diag(alpha_t) S_{t-1} + k_t v_t^T,   o_t = S_t^T q_t / sqrt(K)
    alpha_t = sigmoid(W_a2 W_a1 x_t + b_a) ^ (1/tau)     (per key channel, data-dependent)

As in the paper: q/k/v projections with key width d_model/2 and value width d_model
(expand_k=0.5, expand_v=1), a low-rank (rank 16) forget-gate projection, the log gate
g = logsigmoid(.) / tau with tau = 16 (the kernel takes log alpha), a per-head group norm
of the output (the paper's per-head LayerNorm), a swish output gate r = swish(W_r x + b_r),
and an output projection: y = W_o (GroupNorm(o) * r).

State (carried exactly): {"S": [B,H,K,V] fp32}.
causal=False (vision): the scan runs forwards and over the reversed sequence with shared
weights; the outputs are summed before the group norm.
"""
from __future__ import annotations

from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from mixzoo.kernels.gla import gla
from mixzoo.registry import register_mixer

from .base import Mixer, MixerConfig, bidirectional
from ._util import check_state, head_dims


def head_group_norm(norm: nn.GroupNorm, o: torch.Tensor) -> torch.Tensor:
    """GroupNorm with one group per head: o [B,T,H,V] -> [B,T,H*V] (stats in fp32)."""
    B, T, H, V = o.shape
    flat = o.reshape(B * T, H * V).float()  # [B*T, H*V]: group h = channels h*V..h*V+V-1
    y = F.group_norm(flat, H, norm.weight.float(), norm.bias.float(), norm.eps)
    return y.to(o.dtype).reshape(B, T, H * V)  # [B,T,H*V]


@register_mixer
class GLAMixer(Mixer):
    """GLA token mixer. x[B,T,D] -> y[B,T,D]; see the module docstring."""

    state_grows_with_seq: ClassVar[bool] = False

    class Config(MixerConfig):
        type: Literal["gla"] = "gla"
        # The paper's 340M/1.3B models use 4 heads.
        num_heads: int = Field(4, ge=1)
        # Half-width keys keep the state (K x V per head) and the gate cheap (paper, sec. 4).
        expand_k: float = Field(0.5, gt=0)
        expand_v: float = Field(1.0, gt=0)
        # Rank of the forget-gate projection W_a2 W_a1 (paper: 16), few parameters per layer.
        gate_low_rank_dim: int = Field(16, ge=1)
        # tau: alpha = sigmoid(.)^(1/tau) keeps the forget gates close to 1 at init, so the
        # state remembers long (paper: 16).
        gate_logit_normalizer: float = Field(16.0, gt=0)
        use_output_gate: bool = True
        norm_eps: float = Field(1e-5, gt=0)

    def __init__(self, config: Config, d_model: int, layer_idx: int = 0):
        super().__init__(config, d_model, layer_idx)
        c = config
        H = c.num_heads
        self.K, self.V = head_dims(d_model, H, c.expand_k, c.expand_v, "gla")
        self.H = H
        self.q_proj = nn.Linear(d_model, H * self.K, bias=False)
        self.k_proj = nn.Linear(d_model, H * self.K, bias=False)
        self.v_proj = nn.Linear(d_model, H * self.V, bias=False)
        self.gk_proj = nn.Sequential(nn.Linear(d_model, c.gate_low_rank_dim, bias=False),
                                     nn.Linear(c.gate_low_rank_dim, H * self.K, bias=True))
        self.g_proj = nn.Linear(d_model, H * self.V, bias=True) if c.use_output_gate else None
        self.o_norm = nn.GroupNorm(H, H * self.V, eps=c.norm_eps)
        self.o_proj = nn.Linear(H * self.V, d_model, bias=False)

    def _scan(self, q, k, v, g, state: dict | None, want_state: bool):
        """q, k, g [B,T,H*K], v [B,T,H*V] -> (o [B,T,H,V], new state)."""
        B, T, _ = q.shape
        o, S = gla(q.reshape(B, T, self.H, self.K),  # [B,T,H,K]
                   k.reshape(B, T, self.H, self.K),  # [B,T,H,K]
                   v.reshape(B, T, self.H, self.V),  # [B,T,H,V]
                   g.reshape(B, T, self.H, self.K),  # [B,T,H,K], <= 0
                   initial_state=None if state is None else state["S"],
                   output_final_state=want_state, backend=self.config.backend)
        return o, ({"S": S} if want_state else None)

    def _forward(self, x: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]:
        B, T, _ = x.shape
        if state is not None:
            check_state(state, ("S",), "gla")
        g = F.logsigmoid(self.gk_proj(x)) / self.config.gate_logit_normalizer  # [B,T,H*K]
        q, k, v = self.q_proj(x), self.k_proj(x), self.v_proj(x)  # [B,T,HK] [B,T,HK] [B,T,HV]
        if self.config.causal:
            o, new_state = self._scan(q, k, v, g, state, want_state=True)  # [B,T,H,V]
        else:
            # Packed into one tensor so that one flip serves all four inputs.
            HK, HV = self.H * self.K, self.H * self.V
            run = lambda h: self._scan(*h.split([HK, HK, HV, HK], -1), None, False)[0]  # noqa: E731
            o, new_state = bidirectional(run, torch.cat([q, k, v, g], -1)), None  # [B,T,H,V]
        o = head_group_norm(self.o_norm, o)  # [B,T,H*V]
        if self.g_proj is not None:
            o = o * F.silu(self.g_proj(x))  # swish output gate, [B,T,H*V]
        return self.o_proj(o), new_state  # [B,T,D]

    def init_state(self, batch: int, device=None, dtype: torch.dtype = torch.float32) -> dict:
        """Zero state; always fp32 (the kernels accumulate the state in fp32)."""
        return {"S": torch.zeros(batch, self.H, self.K, self.V, device=device,
                                 dtype=torch.float32)}

    def state_size(self, seq_len: int) -> int:
        return self.H * self.K * self.V
