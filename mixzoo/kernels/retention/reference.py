"""Retention / scalar-decay linear attention, reference implementations (the spec).

Layout and recurrence (shared by every retention backend):

    q, k : [B, T, H, K]
    v    : [B, T, H, V]
    g    : log decay, g <= 0, either per head [H] (RetNet: fixed gamma_h = exp(g_h))
           or per token [B, T, H] (data-dependent, Mamba-2 / SSD style)
    state: [B, H, K, V] fp32

    S_t = exp(g_t) S_{t-1} + k_t v_t^T
    o_t = S_t^T (scale * q_t)                      scale defaults to 1/sqrt(K)

Returns `(o [B,T,H,V] in q's dtype, final_state [B,H,K,V] fp32 or None)`.

`retention_recurrent_ref` is the definition; `retention_chunk_ref` is the chunkwise
form, which only exponentiates non-positive numbers (differences of within-chunk
cumulative log decays), so strong decay cannot overflow; it is differentiable by
autograd, g included.
"""
from __future__ import annotations

import torch


def expand_gates(g: torch.Tensor, B: int, T: int, H: int) -> torch.Tensor:
    """Per-head [H] or per-token [B,T,H] log decay -> fp32 [B,T,H]."""
    gf = g.float()
    return gf.view(1, 1, H).expand(B, T, H) if gf.dim() == 1 else gf


def retention_recurrent_ref(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, g: torch.Tensor, *,
    scale: float | None = None, initial_state: torch.Tensor | None = None,
    output_final_state: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Step-by-step scalar-decay recurrence in fp32 (the definition)."""
    B, T, H, K = q.shape
    V = v.shape[-1]
    scale = K ** -0.5 if scale is None else scale
    qf, kf, vf = (x.float() for x in (q, k, v))
    gf = expand_gates(g, B, T, H)                                     # [B,T,H]
    S = (q.new_zeros(B, H, K, V, dtype=torch.float32) if initial_state is None
         else initial_state.float())                                  # [B,H,K,V]
    outs = []
    for t in range(T):
        S = gf[:, t, :, None, None].exp() * S + kf[:, t, :, :, None] * vf[:, t, :, None, :]
        outs.append(torch.einsum("bhk,bhkv->bhv", qf[:, t] * scale, S))  # [B,H,V]
    o = torch.stack(outs, dim=1) if T > 0 else vf.new_zeros(B, 0, H, V)  # [B,T,H,V]
    return o.to(q.dtype), (S if output_final_state else None)


def retention_chunk_ref(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, g: torch.Tensor, *,
    scale: float | None = None, initial_state: torch.Tensor | None = None,
    output_final_state: bool = False, chunk_size: int = 64,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Chunkwise scalar-decay linear attention in fp32, equal to the recurrence.

    With b_t = sum_{s<=t} g_s inside a chunk (b_t <= 0):
        o_t = exp(b_t) (scale q_t) S_prev + sum_{s<=t} exp(b_t - b_s) (scale q_t . k_s) v_s
        S   = exp(b_C) S_prev + sum_s exp(b_C - b_s) k_s v_s^T
    The decay is one scalar per (t, s) pair, so the [C, C] decay matrix is cheap and
    chunks can be long.
    """
    B, T, H, K = q.shape
    V = v.shape[-1]
    C = chunk_size
    scale = K ** -0.5 if scale is None else scale
    N = (T + C - 1) // C
    pad = N * C - T
    qf, kf, vf = (x.float() for x in (q, k, v))
    gf = expand_gates(g, B, T, H)                                     # [B,T,H]
    if pad:
        # zero q/k/v and zero log decay (gamma 1) in the padding leave S unchanged
        qf, kf, vf = (torch.nn.functional.pad(x, (0, 0, 0, 0, 0, pad)) for x in (qf, kf, vf))
        gf = torch.nn.functional.pad(gf, (0, 0, 0, pad))
    qc = qf.view(B, N, C, H, K).permute(0, 3, 1, 2, 4) * scale        # [B,H,N,C,K]
    kc = kf.view(B, N, C, H, K).permute(0, 3, 1, 2, 4)                # [B,H,N,C,K]
    vc = vf.view(B, N, C, H, V).permute(0, 3, 1, 2, 4)                # [B,H,N,C,V]
    b = gf.view(B, N, C, H).permute(0, 3, 1, 2).cumsum(dim=-1)        # [B,H,N,C], <= 0
    bC = b[..., -1:]                                                  # [B,H,N,1]
    causal = torch.ones(C, C, dtype=torch.bool, device=q.device).tril()
    diff = (b[..., :, None] - b[..., None, :]).masked_fill(~causal, float("-inf"))
    A = (qc @ kc.transpose(-1, -2)) * diff.exp()                      # [B,H,N,C,C]
    o_intra = A @ vc                                                  # [B,H,N,C,V]
    q_dec = qc * b.exp()[..., None]                                   # [B,H,N,C,K]
    k_dec = kc * (bC - b).exp()[..., None]                            # [B,H,N,C,K]
    S = (q.new_zeros(B, H, K, V, dtype=torch.float32) if initial_state is None
         else initial_state.float())                                  # [B,H,K,V]
    o_inter = []
    for n in range(N):
        o_inter.append(q_dec[:, :, n] @ S)                            # [B,H,C,V]
        S = bC[:, :, n, :, None].exp() * S + k_dec[:, :, n].transpose(-1, -2) @ vc[:, :, n]
    o = o_intra + (torch.stack(o_inter, dim=2) if N else o_intra)  # [B,H,N,C,V]
    o = o.permute(0, 2, 3, 1, 4).reshape(B, N * C, H, V)[:, :T]       # [B,T,H,V]
    return o.to(q.dtype), (S if output_final_state else None)
