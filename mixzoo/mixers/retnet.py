"""RetNet multi-scale retention (Sun et al. 2023, "Retentive Network").

    S_t = gamma_h S_{t-1} + k_t v_t^T,   o_t = S_t^T q_t / sqrt(K),   gamma_h = 1 - 2^(-5-h)

Each head h has its own fixed decay gamma_h (head 0 forgets fastest), so the heads see
different time scales. As in the paper: q/k/v projections (value width 2 * d_model), the
relative-position rotation Theta on q and k (implemented as RoPE; the paper's xPos adds a
length-extrapolation scale zeta on top, which we skip since the decay already
down-weights far tokens), GroupNorm with one group per head, a swish gate and an output
projection: y = W_o (swish(W_g x) * GroupNorm(retention(q, k, v))).
The paper's extra normalisations of the retention scores are omitted: GroupNorm is
scale-invariant per head, so they change nothing but numerical range (the kernel runs in
fp32).

State (carried exactly): {"S": [B,H,K,V] fp32, "pos": int} (pos drives the rotation).
causal=False (vision): the scan runs forwards and over the reversed sequence with shared
weights; the outputs are summed before the group norm.
"""
from __future__ import annotations

from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from mixzoo.kernels.retention import retention
from mixzoo.registry import register_mixer

from .attention import apply_rotary
from .base import Mixer, MixerConfig, bidirectional
from ._util import check_state, head_dims
from .gla import head_group_norm


def retnet_log_decays(num_heads: int, device=None) -> torch.Tensor:
    """log gamma_h = log(1 - 2^(-5-h)), h = 0..H-1, fp32 [H] (the kernel takes log decays).

    Computed on `device` each call rather than kept as a buffer: `model.to(bfloat16)` would
    round a buffer (gamma = 1 - 2^-12 needs fp32 to stay distinct from its neighbours)."""
    h = torch.arange(num_heads, device=device, dtype=torch.float32)
    return torch.log1p(-torch.exp2(-5.0 - h))


@register_mixer
class RetNetMixer(Mixer):
    """RetNet retention token mixer. x[B,T,D] -> y[B,T,D]; see the module docstring."""

    state_grows_with_seq: ClassVar[bool] = False

    class Config(MixerConfig):
        type: Literal["retnet"] = "retnet"
        # The paper uses head dim 256 (d_model / 256 heads); 4 suits small models.
        num_heads: int = Field(4, ge=1)
        expand_k: float = Field(1.0, gt=0)
        # The paper doubles the value width (W_V: d -> 2d) to match a Transformer's
        # parameter count with the MLP shrunk accordingly.
        expand_v: float = Field(2.0, gt=0)
        # The paper's Theta (relative position rotation); off = pure decay retention.
        rotary: bool = True
        rope_theta: float = Field(10000.0, gt=0)
        norm_eps: float = Field(1e-5, gt=0)

    def __init__(self, config: Config, d_model: int, layer_idx: int = 0):
        super().__init__(config, d_model, layer_idx)
        c = config
        H = c.num_heads
        self.K, self.V = head_dims(d_model, H, c.expand_k, c.expand_v, "retnet")
        if c.rotary and self.K % 2:
            raise ValueError(f"retnet: rotary needs an even key head dim, got {self.K}")
        self.H = H
        self.qkv_proj = nn.Linear(d_model, H * (2 * self.K + self.V), bias=False)
        self.g_proj = nn.Linear(d_model, H * self.V, bias=False)
        self.o_norm = nn.GroupNorm(H, H * self.V, eps=c.norm_eps)
        self.o_proj = nn.Linear(H * self.V, d_model, bias=False)

    def _scan(self, h: torch.Tensor, state: dict | None, want_state: bool):
        """h [B,T,H(2K+V)] = q|k|v -> (o [B,T,H,V], new state)."""
        c = self.config
        B, T, _ = h.shape
        HK, HV = self.H * self.K, self.H * self.V
        q, k, v = h.split([HK, HK, HV], dim=-1)  # [B,T,HK], [B,T,HK], [B,T,HV]
        q = q.reshape(B, T, self.H, self.K)  # [B,T,H,K]
        k = k.reshape(B, T, self.H, self.K)  # [B,T,H,K]
        v = v.reshape(B, T, self.H, self.V)  # [B,T,H,V]
        pos = 0 if state is None else state["pos"]
        if c.rotary:
            q, k = apply_rotary(q, pos, c.rope_theta), apply_rotary(k, pos, c.rope_theta)
        o, S = retention(q, k, v, retnet_log_decays(self.H, h.device),  # fixed, not learned
                         initial_state=None if state is None else state["S"],
                         output_final_state=want_state, backend=c.backend)
        return o, ({"S": S, "pos": pos + T} if want_state else None)

    def _forward(self, x: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]:
        if state is not None:
            check_state(state, ("S", "pos"), "retnet")
        h = self.qkv_proj(x)  # [B,T,H(2K+V)]
        if self.config.causal:
            o, new_state = self._scan(h, state, want_state=True)  # [B,T,H,V]
        else:
            o, new_state = bidirectional(lambda hh: self._scan(hh, None, False)[0], h), None
        o = head_group_norm(self.o_norm, o) * F.silu(self.g_proj(x))  # [B,T,H*V]
        return self.o_proj(o), new_state  # [B,T,D]

    def init_state(self, batch: int, device=None, dtype: torch.dtype = torch.float32) -> dict:
        """Zero state; always fp32 (the kernels accumulate the state in fp32)."""
        return {"S": torch.zeros(batch, self.H, self.K, self.V, device=device,
                                 dtype=torch.float32), "pos": 0}

    def state_size(self, seq_len: int) -> int:
        return self.H * self.K * self.V
