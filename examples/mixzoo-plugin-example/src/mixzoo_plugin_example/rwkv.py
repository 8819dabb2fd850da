"""RWKV-4 time mixing (Peng et al. 2023, "RWKV: Reinventing RNNs for the Transformer Era")
as a mixzoo plugin mixer: token shift + the WKV recurrence with a per-channel decay and a
"bonus" for the current token.

Per channel d (dropped below), with x'_t = x_{t-1} (token shift; x'_0 from the state):

    r_t = W_r (mu_r x_t + (1 - mu_r) x'_t)        (and k_t, v_t with mu_k, mu_v, W_k, W_v)
    wkv_t = (sum_{i<t} e^{k_i - (t-1-i) w} v_i + e^{u + k_t} v_t)
          / (sum_{i<t} e^{k_i - (t-1-i) w}     + e^{u + k_t})
    y_t = W_o (sigmoid(r_t) * wkv_t)

w = exp(time_decay) > 0 is the decay per step, u = time_first the bonus of the current
token. The state is (x_{T-1}, a, b, p): the running numerator a and denominator b, both
scaled by e^{-p} so that nothing overflows (p tracks the largest exponent seen).

Two forms of the same math: `wkv_recurrent` is the definition (one step at a time, the
numerically stable update of the RWKV paper), `wkv_chunked` computes each chunk of C tokens
in parallel as a masked log-sum-exp over a [C, C] table and carries (a, b, p) across
chunks; they agree to fp32 rounding (tests/test_rwkv.py). causal=False runs a forward and
a reversed scan and adds them (mixzoo's `bidirectional`), for vision.
"""
from __future__ import annotations

from typing import Any, ClassVar, Literal

import torch
from pydantic import Field
from torch import nn

from mixzoo import Mixer, MixerConfig
from mixzoo.mixers.base import bidirectional

__all__ = ["RWKVTimeMix", "wkv_recurrent", "wkv_chunked"]

# "No history yet": e^{p} = 0. A finite stand-in for -inf keeps every exp() and its
# gradient finite (exp(-1e38 - x) underflows to an exact 0).
_NO_HISTORY = -1e38


def wkv_recurrent(k, v, w, u, state):
    """The definition. k, v: [B,T,D] fp32; w (decay > 0), u: [D];
    state (a, b, p): [B,D] each. Returns (wkv [B,T,D], (a, b, p))."""
    a, b, p = state
    out = []
    for t in range(k.shape[1]):
        kt, vt = k[:, t], v[:, t]                              # [B,D]
        ww = u + kt
        q = torch.maximum(p, ww)
        e1, e2 = torch.exp(p - q), torch.exp(ww - q)
        out.append((e1 * a + e2 * vt) / (e1 * b + e2))
        ww = p - w                                             # decay the history one step
        q = torch.maximum(ww, kt)
        e1, e2 = torch.exp(ww - q), torch.exp(kt - q)
        a, b, p = e1 * a + e2 * vt, e1 * b + e2, q
    return torch.stack(out, 1), (a, b, p)


def _wkv_chunk(k, v, w, u, state):
    """One chunk in parallel. k, v: [B,C,D]; logits L[t,i] = k_i - (t-1-i) w (i < t),
    u + k_t (i = t); the carried history enters as one more term with logit p - t w."""
    a0, b0, p0 = state                                         # [B,D]
    C = k.shape[1]
    t = torch.arange(C, device=k.device)
    dist = (t[:, None] - 1 - t[None, :]).to(k.dtype)           # [C,C] t-1-i
    L = k[:, None, :, :] - dist[None, :, :, None] * w          # [B,C(t),C(i),D]
    past = (t[None, :] < t[:, None])[None, :, :, None]         # i < t
    eye = torch.eye(C, dtype=torch.bool, device=k.device)[None, :, :, None]
    L = torch.where(past, L, torch.full_like(L, _NO_HISTORY))
    L = torch.where(eye, (u + k)[:, :, None, :], L)            # the bonus on the diagonal
    c = p0[:, None, :] - t[None, :, None].to(k.dtype) * w      # [B,C,D] history logit
    m = torch.maximum(L.amax(2), c)                            # [B,C,D]
    E = torch.exp(L - m[:, :, None, :])                        # [B,C,C,D]
    h = torch.exp(c - m)                                       # [B,C,D]
    num = torch.einsum("btid,bid->btd", E, v) + h * a0[:, None]
    den = E.sum(2) + h * b0[:, None]
    # State after the chunk: every token decayed to the chunk's end, plus the history.
    F = k - (C - 1 - t)[None, :, None].to(k.dtype) * w         # [B,C,D]
    ch = p0 - C * w                                            # [B,D]
    p1 = torch.maximum(F.amax(1), ch)
    eF = torch.exp(F - p1[:, None])
    a1 = (eF * v).sum(1) + torch.exp(ch - p1) * a0
    b1 = eF.sum(1) + torch.exp(ch - p1) * b0
    return num / den, (a1, b1, p1)


def wkv_chunked(k, v, w, u, state, chunk: int = 64):
    """Same signature and result as `wkv_recurrent`; O(T*C*D) work, C = chunk."""
    out = []
    for s in range(0, k.shape[1], chunk):
        o, state = _wkv_chunk(k[:, s:s + chunk], v[:, s:s + chunk], w, u, state)
        out.append(o)
    return torch.cat(out, 1), state


class RWKVTimeMix(Mixer):
    """RWKV-4 time mixing. x[B,T,D] -> y[B,T,D]; see the module docstring."""

    state_grows_with_seq: ClassVar[bool] = False

    class Config(MixerConfig):
        type: Literal["rwkv_time_mix"] = "rwkv_time_mix"
        # Tokens per parallel chunk: the [C,C,D] table per sequence bounds the memory.
        chunk_size: int = Field(64, ge=1)
        # Position of this layer in the stack, 0..1; RWKV-4 initialises deeper layers with
        # longer-range decays and less token shift. None = layer_idx / 12 capped at 1.
        depth_ratio: float | None = Field(None, ge=0, le=1)

    def __init__(self, config: Config, d_model: int, layer_idx: int = 0):
        super().__init__(config, d_model, layer_idx)
        if config.backend == "triton":
            raise ValueError("rwkv_time_mix has no Triton kernels; use backend 'auto' or "
                             "'reference' (both run the PyTorch code)")
        D = d_model
        r1 = config.depth_ratio if config.depth_ratio is not None else min(layer_idx / 12, 1.0)
        j = torch.arange(D, dtype=torch.float32)
        # RWKV-4 init: decays spread from fast (-5) to slow (+3) over the channels, a zigzag
        # bonus around log(0.3), token-shift mixes that fade with depth.
        self.time_decay = nn.Parameter(-5 + 8 * (j / max(D - 1, 1)) ** (0.7 + 1.3 * r1))
        zigzag = ((j + 1) % 3 - 1) * 0.5
        self.time_first = nn.Parameter(torch.full((D,), float(torch.log(torch.tensor(0.3))))
                                       + zigzag)
        ramp = j / D
        self.mix_k = nn.Parameter(ramp ** (1 - r1 * 0.9))
        self.mix_v = nn.Parameter(ramp ** (1 - r1 * 0.9) + 0.3 * r1)
        self.mix_r = nn.Parameter(ramp ** (0.5 * (1 - r1 * 0.9)))
        self.key = nn.Linear(D, D, bias=False)
        self.value = nn.Linear(D, D, bias=False)
        self.receptance = nn.Linear(D, D, bias=False)
        self.output = nn.Linear(D, D, bias=False)

    def _causal(self, x: torch.Tensor, state: dict | None) -> tuple[torch.Tensor, dict]:
        B, T, D = x.shape
        if state is None:
            state = self.init_state(B, x.device)
        prev = torch.cat([state["shift"][:, None, :].to(x.dtype), x[:, :-1]], 1)  # x_{t-1}
        xk = prev + self.mix_k * (x - prev)                              # [B,T,D]
        xv = prev + self.mix_v * (x - prev)
        xr = prev + self.mix_r * (x - prev)
        k = self.key(xk).float()                                         # [B,T,D] fp32
        v = self.value(xv).float()
        r = torch.sigmoid(self.receptance(xr).float())
        w = torch.exp(self.time_decay.float())                           # [D] > 0
        wkv, (a, b, p) = wkv_chunked(k, v, w, self.time_first.float(),
                                     (state["a"], state["b"], state["p"]),
                                     self.config.chunk_size)
        y = self.output((r * wkv).to(self.output.weight.dtype)).to(x.dtype)
        return y, {"shift": x[:, -1].float(), "a": a, "b": b, "p": p}

    def _forward(self, x: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]:
        if not self.config.causal:
            return bidirectional(lambda z: self._causal(z, None)[0], x), None
        return self._causal(x, state)

    def init_state(self, batch: int, device=None, dtype: torch.dtype = torch.float32) -> dict:
        """Zero shift and history, fp32 (the recurrence runs in fp32 for any input dtype)."""
        z = torch.zeros(batch, self.d_model, device=device, dtype=torch.float32)
        return {"shift": z, "a": z.clone(), "b": z.clone(),
                "p": torch.full_like(z, _NO_HISTORY)}

    def state_size(self, seq_len: int) -> int:
        return 4 * self.d_model          # shift, a, b, p: constant in T
