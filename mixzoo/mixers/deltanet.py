"""DeltaNet (Yang, Wang, Zhang, Shen, Kim 2024): linear attention with the delta rule.

    S_t = S_{t-1} + beta_t k_t (v_t - S_{t-1}^T k_t)^T,   o_t = S_t^T q_t / sqrt(K)

Per layer, as in the paper: q/k/v projections, a depthwise causal short conv (kernel 4) with
SiLU on q, k and v, L2-normalised q and k (inside the kernel, `use_qk_l2norm`), a per-head
write strength beta = sigmoid(W_b x), the delta-rule scan, a per-head output RMSNorm
(optionally gated by SiLU(W_g x)) and an output projection.

State (carried exactly across calls): {"S": [B,H,K,V] fp32, "conv": [B,C,W-1] fp32 or None},
where C = 2*H*K + H*V are the q|k|v channels of the short conv (one depthwise conv over the
concatenated channels equals three separate ones).

causal=False (vision): the convs and the scan run once forwards and once over the reversed
sequence, sharing weights; the two outputs are summed before the output norm. Both directions
run as one doubled batch [2B,T] (`_bidirectional_scan`): the short conv reads the q|k|v
projection once and writes q, k, v for both directions as separate contiguous tensors, and
the fused output norm sums the directions, so no flipped copy, concatenation or split copy
of the activations is made.
"""
from __future__ import annotations

from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from mixzoo.blocks.norms import RMSNorm
from mixzoo.kernels.conv1d import short_conv, short_conv_bidirectional
from mixzoo.kernels.delta_rule import delta_rule
from mixzoo.kernels.rmsnorm import rms_norm
from mixzoo.registry import register_mixer

from ._util import check_state, conv_weight, head_dims
from .base import Mixer, MixerConfig


@register_mixer
class DeltaNetMixer(Mixer):
    """DeltaNet token mixer. x[B,T,D] -> y[B,T,D]; see the module docstring."""

    state_grows_with_seq: ClassVar[bool] = False

    class Config(MixerConfig):
        type: Literal["deltanet"] = "deltanet"
        # The paper's models use head dim 128 (d_model / 128 heads); 4 suits small models.
        num_heads: int = Field(4, ge=1)
        # Key and value widths as multiples of d_model (the paper uses 1.0 for both).
        expand_k: float = Field(1.0, gt=0)
        expand_v: float = Field(1.0, gt=0)
        # The paper finds the short conv essential for recall tasks; on by default.
        use_short_conv: bool = True
        # Kernel 4 is the paper's (and H3/Mamba's) choice: cheap local token shift.
        conv_size: int = Field(4, ge=2, le=8)
        # beta in (0,2) lets I - beta k k^T have negative eigenvalues (Grazzi et al. 2024),
        # which helps state tracking; off by default to match the original DeltaNet.
        allow_neg_eigval: bool = False
        # The original DeltaNet has a plain output norm; the gate (SiLU(W_g x)) is optional.
        use_output_gate: bool = False
        norm_eps: float = Field(1e-5, gt=0)

    def __init__(self, config: Config, d_model: int, layer_idx: int = 0):
        super().__init__(config, d_model, layer_idx)
        c = config
        H = c.num_heads
        self.K, self.V = head_dims(d_model, H, c.expand_k, c.expand_v, "deltanet")
        self.H = H
        self.qkv_dim = H * (2 * self.K + self.V)  # conv channels: q | k | v
        # One GEMM for q | k | v | beta logits (rows in that order).
        self.in_proj = nn.Linear(d_model, self.qkv_dim + H, bias=False)
        self.conv_weight = conv_weight(self.qkv_dim, c.conv_size) if c.use_short_conv else None
        self.g_proj = nn.Linear(d_model, H * self.V, bias=False) if c.use_output_gate else None
        self.o_norm = RMSNorm(self.V, eps=c.norm_eps)  # per head, weight shared by heads
        self.o_proj = nn.Linear(H * self.V, d_model, bias=False)

    # -- the scan over one direction -------------------------------------------------------
    def _scan(self, h: torch.Tensor, state: dict | None, want_state: bool):
        """h [B,T,qkv_dim+H] = projected q|k|v|beta-logits -> (o [B,T,H,V], new state)."""
        c = self.config
        B, T, _ = h.shape
        qkv, b_logit = h.split([self.qkv_dim, self.H], dim=-1)  # [B,T,qkv_dim], [B,T,H]
        conv_state = None
        if self.conv_weight is not None:
            qkv, conv_state = short_conv(
                qkv, self.conv_weight, None, activation="silu",
                initial_state=None if state is None else state["conv"],
                output_final_state=want_state, backend=c.backend)
        else:
            qkv = F.silu(qkv)
        HK, HV = self.H * self.K, self.H * self.V
        q, k, v = qkv.split([HK, HK, HV], dim=-1)  # [B,T,HK], [B,T,HK], [B,T,HV]
        q = q.reshape(B, T, self.H, self.K)  # [B,T,H,K]
        k = k.reshape(B, T, self.H, self.K)  # [B,T,H,K]
        v = v.reshape(B, T, self.H, self.V)  # [B,T,H,V]
        beta = torch.sigmoid(b_logit)  # [B,T,H] in (0,1)
        if c.allow_neg_eigval:
            beta = 2.0 * beta  # (0,2): eigenvalue 1 - beta of I - beta k k^T reaches (-1,1)
        o, S = delta_rule(q, k, v, beta, initial_state=None if state is None else state["S"],
                          output_final_state=want_state, use_qk_l2norm=True,
                          backend=c.backend)
        new_state = {"S": S, "conv": conv_state} if want_state else None
        return o, new_state

    def _bidirectional_scan(self, x: torch.Tensor) -> torch.Tensor:
        """x [B,T,D] -> o_norm(o) [B,T,H,V]: the scan over in_proj(x) plus the scan over the
        reversed sequence, computed as one doubled batch [2B,T] (rows B.. hold the reversed
        sequence), summed in original time order and normed in one fused op. Equals
        o_norm(bidirectional(scan, in_proj(x))) (tested)."""
        c = self.config
        B, T, _ = x.shape
        HK, HV = self.H * self.K, self.H * self.V
        # in_proj as two GEMMs over a split of its weight (same parameters): the q|k|v
        # output gets rows of qkv_dim elements (16-byte aligned for the conv and the GEMMs;
        # qkv_dim + H is not), and its gradient needs no concatenation with beta's. (A split,
        # not two slices: the weight grad is one cat, not two zero-filled copies and an add.)
        w_qkv, w_b = self.in_proj.weight.split([self.qkv_dim, self.H])
        b_qkv, b_b = (None, None) if self.in_proj.bias is None else \
            self.in_proj.bias.split([self.qkv_dim, self.H])
        qkv = F.linear(x, w_qkv, b_qkv)  # [B,T,qkv_dim]
        b_logit = F.linear(x, w_b, b_b)  # [B,T,H]
        if self.conv_weight is not None:
            q, k, v = short_conv_bidirectional(qkv, self.conv_weight, activation="silu",
                                               splits=[HK, HK, HV], backend=c.backend)
        else:
            both = F.silu(torch.cat([qkv, qkv.flip(dims=[1])], dim=0))  # [2B,T,qkv_dim]
            q, k, v = both.split([HK, HK, HV], dim=-1)
        beta = torch.sigmoid(torch.cat([b_logit, b_logit.flip(dims=[1])], dim=0))  # [2B,T,H]
        if c.allow_neg_eigval:
            beta = 2.0 * beta
        o, _ = delta_rule(q.reshape(2 * B, T, self.H, self.K),  # [2B,T,H,K]
                          k.reshape(2 * B, T, self.H, self.K),  # [2B,T,H,K]
                          v.reshape(2 * B, T, self.H, self.V),  # [2B,T,H,V]
                          beta, use_qk_l2norm=True, backend=c.backend)
        return rms_norm(o, self.o_norm.weight, eps=self.o_norm.eps, combine_directions=True,
                        backend=c.backend)  # [B,T,H,V]

    def _forward(self, x: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]:
        B, T, _ = x.shape
        if state is not None:
            check_state(state, ("S", "conv"), "deltanet")
            if (state["conv"] is None) != (self.conv_weight is None):
                raise ValueError(f"deltanet: state['conv'] must be "
                                 f"{'None' if self.conv_weight is None else '[B,C,W-1]'} "
                                 f"with use_short_conv={self.config.use_short_conv}")
        if self.config.causal:
            h = self.in_proj(x)  # [B,T,qkv_dim+H]
            o, new_state = self._scan(h, state, want_state=True)  # [B,T,H,V]
            o = self.o_norm(o)  # [B,T,H,V]
        else:
            o, new_state = self._bidirectional_scan(x), None  # [B,T,H,V], normed
        if self.g_proj is not None:
            o = o * F.silu(self.g_proj(x)).reshape(B, T, self.H, self.V)  # [B,T,H,V]
        return self.o_proj(o.reshape(B, T, self.H * self.V)), new_state  # [B,T,D]

    # -- inference state -------------------------------------------------------------------
    def init_state(self, batch: int, device=None, dtype: torch.dtype = torch.float32) -> dict:
        """Zero state; always fp32 (the kernels accumulate the state in fp32)."""
        S = torch.zeros(batch, self.H, self.K, self.V, device=device, dtype=torch.float32)
        conv = None
        if self.conv_weight is not None:
            conv = torch.zeros(batch, self.qkv_dim, self.config.conv_size - 1,
                               device=device, dtype=torch.float32)
        return {"S": S, "conv": conv}

    def state_size(self, seq_len: int) -> int:
        conv = self.qkv_dim * (self.config.conv_size - 1) if self.conv_weight is not None else 0
        return self.H * self.K * self.V + conv
