"""Sliding-window softmax attention (local attention, as in Longformer / Mistral), with GQA
and rotary positions: the global `attention` mixer with each query restricted to the
`window` most recent keys, itself included.

State (carried exactly): a rolling KV cache of the last window-1 tokens
{"k": [B,L,Hkv,D], "v": [B,L,Hkv,D], "pos": int}, L = min(tokens seen, window-1), keys stored
already rotated. Its size is constant once T >= window-1 (2 (W-1) Hkv D elements).

causal=False (vision): a symmetric band. Query i sees keys i-r..i+r with r = window // 2,
clipped at the sequence ends: at most `window` keys for odd window, window+1 for even (about
the cost of the causal window; r >= 1, so every query mixes with its neighbours). The band is
computed exactly with the end-aligned causal-window kernel in at most three calls: the head
queries (i + r < T), the queries that see every key, and the tail queries on the
time-reversed sequence (see `_attend`).
"""
from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from mixzoo.kernels.attention import attention
from mixzoo.registry import register_mixer

from .attention import AttentionMixer


@register_mixer
class SlidingWindowMixer(AttentionMixer):
    """Sliding-window attention token mixer. x[B,T,D] -> y[B,T,D]."""

    # The rolling cache stops growing at window-1 tokens.
    state_grows_with_seq = False

    class Config(AttentionMixer.Config):
        type: Literal["sliding_window"] = "sliding_window"
        # 512 keys: enough for local structure at a fraction of global attention's cost; in a
        # DeltaNet/SWA hybrid (SWA every other layer) the linear layers carry the long range.
        # >= 2: a window of 1 would attend only to the token itself (no mixing).
        window: int = Field(512, ge=2)

    def _window(self) -> int | None:
        return self.config.window

    def _keep(self) -> int | None:
        return self.config.window - 1

    def _attend(self, q, k, v):
        """Symmetric band q [B,T,H,D], k/v [B,T,Hkv,D] -> o [B,T,H,D] (module docstring)."""
        be = self.config.backend
        T = q.shape[1]
        r = self.config.window // 2
        band = 2 * r + 1
        a = max(T - r, 0)            # head queries [0,a): key i+r exists
        e = min(max(a, r), T)        # queries [a,e) see every key (i-r <= 0, i+r >= T-1)
        c = T - e                    # tail queries [e,T): i+r >= T, i-r > 0
        parts = []
        if a > 0:
            # Tq=a, Tk=T: query i sits at key position T-a+i = i+r, so the causal window
            # of 2r+1 keys ending there is exactly i-r..i+r.
            parts.append(attention(q[:, :a], k, v, causal=True, window=band, backend=be))
        if e > a:
            parts.append(attention(q[:, a:e], k, v, causal=False, backend=be))
        if c > 0:
            # Reverse time: tail query i becomes i' = T-1-i in [0,c) and must see reversed
            # keys 0..i'+r; with Tk = c+r (<= T since e >= r) it sits at position i'+r.
            qr = q[:, e:].flip(1)                               # [B,c,H,D]
            kr, vr = k.flip(1)[:, :c + r], v.flip(1)[:, :c + r]  # [B,c+r,Hkv,D]
            parts.append(attention(qr, kr, vr, causal=True, backend=be).flip(1))
        return torch.cat(parts, dim=1)  # [B,T,H,D]
