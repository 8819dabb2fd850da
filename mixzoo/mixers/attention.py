"""Global softmax attention (Vaswani et al. 2017) with GQA and rotary positions.

    y = W_o softmax(q k^T / sqrt(D) + causal mask) v,   q, k rotated by RoPE (Su et al. 2021)

Grouped-query attention (Ainslie et al. 2023): `num_kv_heads` key/value heads shared by
groups of num_heads / num_kv_heads query heads (None = plain multi-head attention).

State (carried exactly): the KV cache {"k": [B,L,Hkv,D], "v": [B,L,Hkv,D], "pos": int} in the
activations' dtype, with the keys stored already rotated; `pos` = tokens seen so far. New
queries attend to cache + new keys, aligned to the end of the keys (kernel semantics).
The state grows with T: 2 * T * Hkv * D elements per sequence.

causal=False (vision): the mask is dropped, every token sees every token; no state.
"""
from __future__ import annotations

from typing import Any, ClassVar, Literal

import torch
from pydantic import Field
from torch import nn

from mixzoo.kernels._common import check_shape
from mixzoo.kernels.attention import attention
from mixzoo.registry import register_mixer

from .base import Mixer, MixerConfig
from ._util import check_state


def apply_rotary(x: torch.Tensor, offset: int, theta: float) -> torch.Tensor:
    """Rotary position embedding, rotate-half convention, positions offset..offset+T-1.

    x [B,T,H,D] with D even -> same shape and dtype (the rotation is computed in fp32).
    Channel i < D/2 is paired with channel i + D/2 and rotated by angle pos * theta^(-2i/D).
    """
    B, T, H, D = x.shape
    half = D // 2
    inv_freq = theta ** (-torch.arange(half, device=x.device, dtype=torch.float32) / half)
    pos = torch.arange(offset, offset + T, device=x.device, dtype=torch.float32)
    ang = pos[:, None] * inv_freq[None, :]  # [T,D/2]
    cos, sin = ang.cos()[None, :, None, :], ang.sin()[None, :, None, :]  # [1,T,1,D/2]
    x1, x2 = x.float().split(half, dim=-1)  # [B,T,H,D/2] each
    out = torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)  # [B,T,H,D]
    return out.to(x.dtype)


@register_mixer
class AttentionMixer(Mixer):
    """Global softmax attention token mixer. x[B,T,D] -> y[B,T,D]; see the module docstring."""

    state_grows_with_seq: ClassVar[bool] = True

    class Config(MixerConfig):
        type: Literal["attention"] = "attention"
        # head_dim = d_model / num_heads.
        num_heads: int = Field(4, ge=1)
        # None = num_heads (MHA); fewer kv heads shrink the KV cache by num_heads/num_kv_heads.
        num_kv_heads: int | None = Field(None, ge=1)
        rotary: bool = True
        # 10000 is the RoPE paper's base; raise it for contexts far beyond training length.
        rope_theta: float = Field(10000.0, gt=0)
        # "sdpa" routes through torch's scaled_dot_product_attention (same math).
        backend: Literal["auto", "triton", "reference", "sdpa"] = "auto"

    def __init__(self, config: Config, d_model: int, layer_idx: int = 0):
        super().__init__(config, d_model, layer_idx)
        c = config
        H = c.num_heads
        Hkv = c.num_kv_heads or H
        if d_model % H:
            raise ValueError(f"{c.type}: d_model={d_model} must be a multiple of "
                             f"num_heads={H}")
        if H % Hkv:
            raise ValueError(f"{c.type}: num_kv_heads={Hkv} must divide num_heads={H}")
        self.H, self.Hkv, self.D = H, Hkv, d_model // H
        if c.rotary and self.D % 2:
            raise ValueError(f"{c.type}: rotary needs an even head_dim, got "
                             f"d_model/num_heads = {self.D}")
        self.q_proj = nn.Linear(d_model, H * self.D, bias=False)
        # Separate k and v projections: each output is a contiguous [B,T,Hkv,D] (no strided
        # views of a fused kv tensor).
        self.k_proj = nn.Linear(d_model, Hkv * self.D, bias=False)
        self.v_proj = nn.Linear(d_model, Hkv * self.D, bias=False)
        self.o_proj = nn.Linear(H * self.D, d_model, bias=False)

    # Sliding-window attention overrides these two.
    def _window(self) -> int | None:
        return None

    def _keep(self) -> int | None:
        """How many most recent keys the cache keeps (None = all)."""
        return None

    def _attend(self, q, k, v):
        """Bidirectional attention q [B,T,H,D], k/v [B,T,Hkv,D] -> o [B,T,H,D]."""
        return attention(q, k, v, causal=False, backend=self.config.backend)

    def _forward(self, x: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]:
        c = self.config
        B, T, _ = x.shape
        q = self.q_proj(x).reshape(B, T, self.H, self.D)  # [B,T,H,D]
        k = self.k_proj(x).reshape(B, T, self.Hkv, self.D)  # [B,T,Hkv,D]
        v = self.v_proj(x).reshape(B, T, self.Hkv, self.D)  # [B,T,Hkv,D]
        if state is not None:
            check_state(state, ("k", "v", "pos"), c.type)
            check_shape("state['k']", state["k"], (B, None, self.Hkv, self.D), "[B,L,Hkv,D]")
            check_shape("state['v']", state["v"], tuple(state["k"].shape), "[B,L,Hkv,D]")
        pos = 0 if state is None else state["pos"]
        if c.rotary:
            q, k = apply_rotary(q, pos, c.rope_theta), apply_rotary(k, pos, c.rope_theta)
        if not c.causal:
            o = self._attend(q, k, v)  # [B,T,H,D]
            return self.o_proj(o.reshape(B, T, self.H * self.D)), None  # [B,T,H*D] -> [B,T,D]
        if state is not None:
            k = torch.cat([state["k"].to(k.dtype), k], dim=1)  # [B,L+T,Hkv,D]
            v = torch.cat([state["v"].to(v.dtype), v], dim=1)  # [B,L+T,Hkv,D]
        # Queries are the last T positions of the keys (end-aligned causal mask).
        o = attention(q, k, v, causal=True, window=self._window(), backend=c.backend)
        keep = self._keep()
        if keep is not None:
            k, v = k[:, max(k.shape[1] - keep, 0):], v[:, max(v.shape[1] - keep, 0):]
        new_state = {"k": k, "v": v, "pos": pos + T}
        return self.o_proj(o.reshape(B, T, self.H * self.D)), new_state  # [B,T,D]

    def init_state(self, batch: int, device=None, dtype: torch.dtype = torch.float32) -> dict:
        """An empty KV cache (0 tokens) in the activations' dtype."""
        empty = torch.zeros(batch, 0, self.Hkv, self.D, device=device, dtype=dtype)
        return {"k": empty, "v": empty.clone(), "pos": 0}

    def state_size(self, seq_len: int) -> int:
        keep = self._keep()
        cached = seq_len if keep is None else min(seq_len, keep)
        return 2 * cached * self.Hkv * self.D
