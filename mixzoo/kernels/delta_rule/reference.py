"""Plain-PyTorch specification of the delta rule (DeltaNet's token mixer).

Shapes (same layout as the public `delta_rule`):
    q, k          [B, T, H, K]
    v             [B, T, H, V]
    beta          [B, T, H]
    initial_state [B, H, K, V]  fp32 (or None = zeros)
    returns       o [B, T, H, V] in v's dtype, final state [B, H, K, V] fp32 (or None)

Recurrence (the definition), per batch b and head h, with state S in R^{K x V}:
    S_t = S_{t-1} + k_t beta_t (v_t - S_{t-1}^T k_t)^T      == (I - beta_t k_t k_t^T) S_{t-1} + beta_t k_t v_t^T
    o_t = S_t^T (scale * q_t)
scale=None means 1/sqrt(K). With use_qk_l2norm, q and k are first divided by
sqrt(sum(x^2) + 1e-6) over the head dim (the gradient flows through the normalisation).

`delta_rule_recurrent_ref` is the step loop (slow, obviously right); `delta_rule_chunk_ref`
is the chunkwise WY/UT form (fast on CPU, differentiable by autograd). Both compute in fp32.
"""
from __future__ import annotations

import math

import torch

L2NORM_EPS = 1e-6  # matches the usual DeltaNet l2norm; keeps the gradient finite at k = 0
CHUNK = 64


def l2norm(x: torch.Tensor, eps: float = L2NORM_EPS) -> torch.Tensor:
    """x / sqrt(sum(x^2) + eps) over the last dim, in x's dtype's math (callers pass fp32)."""
    return x * torch.rsqrt(x.pow(2).sum(-1, keepdim=True) + eps)


def _prepare(q, k, v, beta, scale, initial_state, use_qk_l2norm):
    """Cast to fp32, normalise q/k if asked, fold in the scale, and build the start state."""
    B, T, H, K = q.shape
    V = v.shape[-1]
    if scale is None:
        scale = 1.0 / math.sqrt(K)
    qf, kf, vf, bf = q.float(), k.float(), v.float(), beta.float()
    if use_qk_l2norm:
        qf, kf = l2norm(qf), l2norm(kf)
    qf = qf * scale
    if initial_state is None:
        S = q.new_zeros(B, H, K, V, dtype=torch.float32)
    else:
        S = initial_state.float()
    return qf, kf, vf, bf, S


def delta_rule_recurrent_ref(q, k, v, beta, *, scale=None, initial_state=None,
                             output_final_state=False, use_qk_l2norm=False):
    """Step-by-step recurrence (the definition). Shapes: see the module docstring."""
    qf, kf, vf, bf, S = _prepare(q, k, v, beta, scale, initial_state, use_qk_l2norm)
    T = q.shape[1]
    outs = []
    for t in range(T):
        k_t, v_t, b_t, q_t = kf[:, t], vf[:, t], bf[:, t], qf[:, t]     # [B,H,K] [B,H,V] [B,H] [B,H,K]
        pred = torch.einsum("bhkv,bhk->bhv", S, k_t)                    # S^T k   [B,H,V]
        delta = b_t[..., None] * (v_t - pred)                           # [B,H,V]
        S = S + k_t[..., :, None] * delta[..., None, :]                 # [B,H,K,V]
        outs.append(torch.einsum("bhkv,bhk->bhv", S, q_t))              # [B,H,V]
    o = torch.stack(outs, dim=1) if outs else vf.new_zeros(vf.shape)  # [B,T,H,V]
    return o.to(v.dtype), (S if output_final_state else None)


def delta_rule_chunk_ref(q, k, v, beta, *, scale=None, initial_state=None,
                         output_final_state=False, use_qk_l2norm=False, chunk_size: int = CHUNK):
    """Chunkwise WY/UT form. Shapes: see the module docstring.

    Inside a chunk of C rows (state S at its start):
        A  = StrictTril(diag(beta) K K^T)                       [C,C]
        Tm = (I + A)^{-1} diag(beta)                            (UT transform)
        W  = Tm K,  U = Tm V,  U' = U - W S                     (U'_i = beta_i (v_i - S_{i-1}^T k_i))
        O  = Q S + (Q K^T * causal mask incl. diagonal) U'
        S <- S + K^T U'
    """
    qf, kf, vf, bf, S = _prepare(q, k, v, beta, scale, initial_state, use_qk_l2norm)
    B, T, H, K = q.shape
    V = v.shape[-1]
    C = chunk_size
    # head-major for batched matmuls
    qf, kf, vf = (x.transpose(1, 2) for x in (qf, kf, vf))              # [B,H,T,*]
    bf = bf.transpose(1, 2)                                             # [B,H,T]
    outs = []
    for s in range(0, T, C):
        e = min(s + C, T)
        n = e - s
        qc, kc, vc, bc = qf[:, :, s:e], kf[:, :, s:e], vf[:, :, s:e], bf[:, :, s:e]
        kk = kc @ kc.transpose(-1, -2)                                  # [B,H,n,n]
        eye = torch.eye(n, dtype=kk.dtype, device=kk.device)
        strict = torch.tril(torch.ones(n, n, dtype=torch.bool, device=kk.device), -1)
        L = eye + (bc[..., :, None] * kk) * strict                      # I + A, unit lower  [B,H,n,n]
        bk = bc[..., None] * kc                                         # diag(beta) K  [B,H,n,K]
        bv = bc[..., None] * vc                                         # diag(beta) V  [B,H,n,V]
        W = torch.linalg.solve_triangular(L, bk, upper=False, unitriangular=True)  # [B,H,n,K]
        U = torch.linalg.solve_triangular(L, bv, upper=False, unitriangular=True)  # [B,H,n,V]
        Un = U - W @ S                                                  # U'  [B,H,n,V]
        qk = (qc @ kc.transpose(-1, -2)).tril()                         # [B,H,n,n] incl. diagonal
        outs.append(qc @ S + qk @ Un)                                   # [B,H,n,V]
        S = S + kc.transpose(-1, -2) @ Un                               # [B,H,K,V]
    o = torch.cat(outs, dim=2) if outs else vf.new_zeros(vf.shape)      # [B,H,T,V]
    o = o.transpose(1, 2)                                               # [B,T,H,V]
    return o.to(v.dtype), (S if output_final_state else None)
