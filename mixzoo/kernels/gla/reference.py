"""Gated linear attention (GLA), reference implementations (the spec).

Layout and recurrence (shared by every GLA backend):

    q, k, g : [B, T, H, K]     g = log forget gate, g <= 0 (a_t = exp(g_t) in (0, 1])
    v       : [B, T, H, V]
    state   : [B, H, K, V] fp32

    S_t = diag(exp(g_t)) S_{t-1} + k_t v_t^T
    o_t = S_t^T (scale * q_t)                      scale defaults to 1/sqrt(K)

Returns `(o [B,T,H,V] in q's dtype, final_state [B,H,K,V] fp32 or None)`.

`gla_recurrent_ref` is the definition, one step at a time. `gla_chunk_ref` is the same
map in chunks of `chunk_size` tokens; it only ever exponentiates non-positive numbers
(see README.md, "stable chunkwise form"), so strong decay cannot overflow, and it is
differentiable by autograd (gradients reach q, k, v, g and initial_state).
"""
from __future__ import annotations

import torch


def gla_recurrent_ref(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, g: torch.Tensor, *,
    scale: float | None = None, initial_state: torch.Tensor | None = None,
    output_final_state: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Step-by-step GLA recurrence in fp32 (the definition; slow, O(T) Python steps)."""
    B, T, H, K = q.shape
    V = v.shape[-1]
    scale = K ** -0.5 if scale is None else scale
    qf, kf, vf, gf = (x.float() for x in (q, k, v, g))
    S = (q.new_zeros(B, H, K, V, dtype=torch.float32) if initial_state is None
         else initial_state.float())                                  # [B,H,K,V]
    outs = []
    for t in range(T):
        S = gf[:, t, :, :, None].exp() * S + kf[:, t, :, :, None] * vf[:, t, :, None, :]
        outs.append(torch.einsum("bhk,bhkv->bhv", qf[:, t] * scale, S))  # [B,H,V]
    o = torch.stack(outs, dim=1) if T > 0 else vf.new_zeros(B, 0, H, V)  # [B,T,H,V]
    return o.to(q.dtype), (S if output_final_state else None)


def gla_chunk_ref(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, g: torch.Tensor, *,
    scale: float | None = None, initial_state: torch.Tensor | None = None,
    output_final_state: bool = False, chunk_size: int = 16,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Chunkwise GLA in fp32: same result as `gla_recurrent_ref`, T/chunk_size state steps.

    Inside a chunk, b_t = sum_{s<=t} g_s is the log gate relative to the chunk start
    (b_t <= 0). Every exponent used is a difference b_t - b_s with s <= t, or b_C - b_s,
    or b_t itself, all <= 0, so nothing overflows however strong the decay:
        inter:  o_t += (scale q_t * exp(b_t)) S_prev
        intra:  o_t += sum_{s<=t} [sum_k scale q_tk k_sk exp(b_tk - b_sk)] v_s
        state:  S   = exp(b_C) * S_prev + sum_s (k_s * exp(b_C - b_s)) v_s^T
    The intra term is formed pairwise ([C, C, K]), which is why chunks are short here.
    """
    B, T, H, K = q.shape
    V = v.shape[-1]
    C = chunk_size
    scale = K ** -0.5 if scale is None else scale
    N = (T + C - 1) // C
    pad = N * C - T
    qf, kf, vf, gf = (x.float() for x in (q, k, v, g))
    if pad:
        # zero q/k/v and zero log-gates (decay 1) in the padding leave S unchanged
        qf, kf, gf = (torch.nn.functional.pad(x, (0, 0, 0, 0, 0, pad)) for x in (qf, kf, gf))
        vf = torch.nn.functional.pad(vf, (0, 0, 0, 0, 0, pad))
    # [B,T,H,D] -> [B,H,N,C,D]
    qc, kc, gc = (x.view(B, N, C, H, K).permute(0, 3, 1, 2, 4) for x in (qf, kf, gf))
    vc = vf.view(B, N, C, H, V).permute(0, 3, 1, 2, 4)
    qc = qc * scale
    b = gc.cumsum(dim=3)                                   # [B,H,N,C,K], <= 0
    bC = b[:, :, :, -1:, :]                                # [B,H,N,1,K]
    causal = torch.ones(C, C, dtype=torch.bool, device=q.device).tril()  # [t, s], s <= t
    # pairwise log decay b_t - b_s, masked to -inf above the diagonal before exp
    diff = b[:, :, :, :, None, :] - b[:, :, :, None, :, :]   # [B,H,N,C(t),C(s),K]
    diff = diff.masked_fill(~causal[:, :, None], float("-inf"))
    A = torch.einsum("bhntk,bhnsk,bhntsk->bhnts", qc, kc, diff.exp())  # [B,H,N,C,C]
    o_intra = A @ vc                                        # [B,H,N,C,V]
    q_dec = qc * b.exp()                                    # [B,H,N,C,K]
    k_dec = kc * (bC - b).exp()                             # [B,H,N,C,K]
    S = (q.new_zeros(B, H, K, V, dtype=torch.float32) if initial_state is None
         else initial_state.float())                        # [B,H,K,V]
    o_inter = []
    for n in range(N):
        o_inter.append(q_dec[:, :, n] @ S)                  # [B,H,C,V]
        S = bC[:, :, n, 0, :, None].exp() * S + k_dec[:, :, n].transpose(-1, -2) @ vc[:, :, n]
    o = o_intra + (torch.stack(o_inter, dim=2) if N else o_intra)  # [B,H,N,C,V]
    o = o.permute(0, 2, 3, 1, 4).reshape(B, N * C, H, V)[:, :T]  # [B,T,H,V]
    return o.to(q.dtype), (S if output_final_state else None)
