"""Chunkwise GLA backward in Triton: the dq / dk / dg kernels and the backward launcher.

Backward: chunk._bwd_dh (dh, dh0) -> chunk._bwd_dv (dv, dA) -> _bwd_intra (intra-chunk dq,
dk of strong-decay chunks, per sub-chunk) -> _bwd_inter (inter-chunk dq, dk; intra terms
of the other chunks; dg).

Intra-chunk terms, without the s == t ones (which cancel in dg's q dq - k dk):
    dq_t = scale sum_{s<t} dA_ts k_s e^(b_t - b_s),  dk_s = scale sum_{t>s} dA_ts q_t e^(b_t - b_s).
Where the chunk's decay spread is <= SAFE_SPREAD they factorise through its first row, as
the forward's scores (chunk_fwd.py), and _bwd_inter forms them with two dots. Otherwise
_bwd_intra runs one light program per 16-row sub-chunk and K block: earlier sub-chunks
through the sub-chunk's first row, later ones through its last row (exponents <= 0), the
diagonal block pairwise, into fp32 scratch dqi / dki.

dg (README "Backward"): inside chunk n, dg_t = sum_{u>=t in chunk} (q dq - k dk)_u plus
the chunk's state term sum_v dh[n] * S_end, which needs no h[n+1]:
    sum_v dh[n] * S_end = e^(b_C) sum_v dh[n] h[n] + sum_s k_s * dk_inter_s.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from mixzoo.kernels._common import cdiv

from .chunk import (BC, BT, SAFE_SPREAD, _bwd_dh_kernel, _bwd_dv_kernel, _chunk_spread,
                    _dot_precision, _dot_split, autotuned, configs)


# ----------------------------------------------------------------------------- kernels
@triton.jit
def _intra_dqk(
    q, k, gc, dA,       # pointers to token 0 of this (b, h) (dA: [B,T,H,BT] fp32)
    b_q, b_k, b_g,      # [BC, BK] fp32 rows of sub-chunk i (q, k, gc), zero where masked
    t0, i_n, i_i, o_k, m_k, T,
    H: tl.constexpr, K: tl.constexpr, BT: tl.constexpr, BC: tl.constexpr, BK: tl.constexpr,
    PREC: tl.constexpr,
):
    """Unscaled intra-chunk (dq, dk) of sub-chunk i (first row t0) for one K block,
    without the s == t terms: earlier sub-chunks through r = b at row t0, later ones
    through r2 = b at the last row of i (exponents <= 0), the diagonal block pairwise
    with row j of i as [BK] vectors and e^(-|b_t - b_j|) for both sides. The sub-chunk-pair
    dots take their fp32 factors (tf32 for bf16/fp16 inputs), not factors rounded to bf16."""
    NS: tl.constexpr = BT // BC
    o_c = tl.arange(0, BC)
    t_i = t0 + o_c
    m_i = t_i < T
    # dq from earlier sub-chunks, through r = b at row t0
    b_r = tl.load(gc + t0 * (H * K) + o_k, mask=m_k, other=0.)
    b_dq = tl.zeros([BC, BK], dtype=tl.float32)
    for j in range(0, i_i):
        t_j = i_n * BT + j * BC + o_c                    # all < t0 < T
        p_j = t_j[:, None] * (H * K) + o_k[None, :]
        b_kj = tl.load(k + p_j, mask=m_k[None, :], other=0.).to(tl.float32)
        b_gj = tl.load(gc + p_j, mask=m_k[None, :], other=0.)
        b_kd = b_kj * tl.exp(b_r[None, :] - b_gj)
        b_dAij = tl.load(dA + t_i[:, None] * (H * BT) + j * BC + o_c[None, :], mask=m_i[:, None],
                         other=0.)
        b_dq += tl.dot(b_dAij, b_kd, input_precision=PREC)
    b_dq = b_dq * tl.exp(tl.minimum(b_g - b_r[None, :], 0.))
    # dk from later sub-chunks, through r2 = b at the last row of i (if a later row
    # exists, i is full and r2 is real; else the loop is empty)
    b_r2 = tl.load(gc + (tl.minimum(t0 + BC, T) - 1) * (H * K) + o_k, mask=m_k, other=0.)
    b_dk = tl.zeros([BC, BK], dtype=tl.float32)
    for j in range(i_i + 1, NS):
        t_j = i_n * BT + j * BC + o_c
        m_j = t_j < T
        p_j = t_j[:, None] * (H * K) + o_k[None, :]
        m_jk = m_j[:, None] & m_k[None, :]
        b_qj = tl.load(q + p_j, mask=m_jk, other=0.).to(tl.float32)
        b_gj = tl.load(gc + p_j, mask=m_jk, other=0.)
        b_qd = b_qj * tl.exp(tl.minimum(b_gj - b_r2[None, :], 0.))
        b_dAji = tl.load(dA + t_j[:, None] * (H * BT) + i_i * BC + o_c[None, :],
                         mask=m_j[:, None], other=0.)    # [t in j, s in i]
        b_dk += tl.dot(tl.trans(b_dAji), b_qd, input_precision=PREC)
    b_dk = b_dk * tl.exp(tl.minimum(b_r2[None, :] - b_g, 0.))
    # diagonal block, strictly: row j of i as vectors, e^(-|b_t - b_j|) for both sides
    b_dqd = tl.zeros([BC, BK], dtype=tl.float32)
    b_dkd = tl.zeros([BC, BK], dtype=tl.float32)
    for j in range(0, BC):
        tj = t0 + j
        m_j = m_k & ((o_k * 0 + tj) < T)
        b_kj = tl.load(k + tj * (H * K) + o_k, mask=m_j, other=0.).to(tl.float32)
        b_qj = tl.load(q + tj * (H * K) + o_k, mask=m_j, other=0.).to(tl.float32)
        b_gj = tl.load(gc + tj * (H * K) + o_k, mask=m_j, other=0.)
        b_e = tl.exp(-tl.abs(b_g - b_gj[None, :]))
        b_ac = tl.load(dA + t_i * (H * BT) + i_i * BC + j, mask=m_i, other=0.)     # dA[t, tj]
        b_ar = tl.load(dA + tj * (H * BT) + i_i * BC + o_c,
                       mask=(o_c * 0 + tj) < T, other=0.)                         # dA[tj, s]
        b_dqd += tl.where((o_c > j)[:, None], b_ac[:, None] * b_kj[None, :] * b_e, 0.)
        b_dkd += tl.where((o_c < j)[:, None], b_ar[:, None] * b_qj[None, :] * b_e, 0.)
    return b_dq + b_dqd, b_dk + b_dkd


# sm_90 registers: 86 / 86 / 143 / 172, no spills: several CTAs per SM
@autotuned(configs((32, 4, 2), (64, 8, 2), (64, 4, 2), (128, 8, 2), names=("BK",)),
           key=("K", "BH_HINT"))
@triton.jit
def _bwd_intra_kernel(
    q, k, gc,           # [B,T,H,K] q, k and the chunk-local cumulative gate (fp32)
    dA,                 # [B,T,H,BT] fp32 dA[t, s] = do_t . v_s (s <= t)
    dqi, dki,           # [B,T,H,K] fp32 out: intra-chunk dq, dk without the s == t terms
    scale, T, H: tl.constexpr, K: tl.constexpr,
    BT: tl.constexpr, BC: tl.constexpr, BK: tl.constexpr, PREC: tl.constexpr,
    SPREAD: tl.constexpr,
    BH_HINT: tl.constexpr,      # autotune key only: B*H rounded up to a power of 2
):
    """Intra-chunk dq, dk of sub-chunk i (BC rows), one K block, for chunks whose decay
    spread (_chunk_spread, over all K) exceeds SPREAD; the others are left to _bwd_inter,
    which forms their intra terms through the chunk's first row.
    dq_t = scale sum_{s<t} dA_ts k_s e^(b_t - b_s), dk_s = scale sum_{t>s} dA_ts q_t e^(b_t - b_s).
    Earlier sub-chunks through r = b at the first row of i, later ones through r2 = b at
    the last row of i (both exponents <= 0); the diagonal block pairwise, row by row."""
    i_k, i_c, i_bh = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    i_b, i_h = i_bh // H, i_bh % H
    NS: tl.constexpr = BT // BC
    i_n, i_i = i_c // NS, i_c % NS
    t0 = i_n * BT + i_i * BC
    if t0 >= T:
        return
    base = (i_b * T * H + i_h).to(tl.int64)
    # pointers to token 0 of this (b, h): in-sequence offsets below stay int32
    q += base * K
    k += base * K
    gc += base * K
    dA += base * BT
    dqi += base * K
    dki += base * K
    if _chunk_spread(gc, i_n * BT, tl.minimum(i_n * BT + BT, T) - 1, H, K, BK) <= SPREAD:
        return
    o_c = tl.arange(0, BC)
    o_k = i_k * BK + tl.arange(0, BK)
    m_k = o_k < K
    t_i = t0 + o_c
    m_i = t_i < T
    m_ik = m_i[:, None] & m_k[None, :]
    p_i = t_i[:, None] * (H * K) + o_k[None, :]
    b_q = tl.load(q + p_i, mask=m_ik, other=0.).to(tl.float32)
    b_k = tl.load(k + p_i, mask=m_ik, other=0.).to(tl.float32)
    b_g = tl.load(gc + p_i, mask=m_ik, other=0.)
    b_dq, b_dk = _intra_dqk(q, k, gc, dA, b_q, b_k, b_g, t0, i_n, i_i, o_k, m_k, T,
                            H, K, BT, BC, BK, PREC)
    tl.store(dqi + p_i, b_dq * scale, mask=m_ik)
    tl.store(dki + p_i, b_dk * scale, mask=m_ik)


# sm_90 registers: 254 / 238 / 250 / 111 / 128, no spills (BK 32 at 4 warps, 64 x 64
# tiles spilled 104-280 bytes)
@autotuned(configs((32, 64, 8, 2), (16, 64, 8, 2), (16, 64, 4, 2), (32, 64, 16, 2),
                   (16, 128, 8, 2)), key=("K", "V", "SPLIT", "BH_HINT"))
@triton.jit
def _bwd_inter_kernel(
    q, k, v, gc, h, do, dh, dA,     # inputs (chunk.py)
    dqi, dki,                       # [B,T,H,K] fp32 intra-chunk parts (_bwd_intra)
    dq, dk, dg,                     # [B,T,H,K] out
    scale, T, H: tl.constexpr, K: tl.constexpr, V: tl.constexpr,
    BT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr, PREC: tl.constexpr,
    SPREAD: tl.constexpr, SPLIT: tl.constexpr,
    BH_HINT: tl.constexpr,      # autotune key only: B*H rounded up to a power of 2
):
    """dq = scale e^b (do h[n]^T) + dqi,  dk = e^(b_C - b) (v dh[n]^T) + dki, then
    dg_t = sum_{u>=t in chunk} (q dq - k dk)_u + e^(b_C) sum_v dh[n] h[n] + sum_s k_s dk_inter_s,
    then the s == t terms dA_tt k_t, dA_tt q_t (they cancel in q dq - k dk).
    Where the chunk's decay spread is <= SPREAD, the intra terms (without s == t) are
    formed here through the chunk's first row b_0 instead of read from dqi, dki:
        dqi = scale e^(b - b_0) * (dA_strict (k e^(b_0 - b))),
        dki = scale e^(b_0 - b) * (dA_strict^T (q e^(b - b_0)))
    (two tf32 dots, or with SPLIT (variant v14) bf16 hi + lo parts of both operands,
    _dot_split; every factor within e^(+-SPREAD))."""
    i_k, i_n, i_bh = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    i_b, i_h = i_bh // H, i_bh % H
    N = tl.cdiv(T, BT)
    base = (i_b * T * H + i_h).to(tl.int64)
    # pointers to token 0 of this (b, h): in-sequence offsets below stay int32
    q += base * K
    k += base * K
    v += base * V
    gc += base * K
    do += base * V
    dA += base * BT
    dqi += base * K
    dki += base * K
    dq += base * K
    dk += base * K
    dg += base * K
    o_t = tl.arange(0, BT)
    t = i_n * BT + o_t
    m_t = t < T
    o_k = i_k * BK + tl.arange(0, BK)
    m_k = o_k < K
    m_tk = m_t[:, None] & m_k[None, :]
    p_tk = t[:, None] * (H * K) + o_k[None, :]
    t_last = tl.minimum(i_n * BT + BT, T) - 1
    b_last = tl.load(gc + t_last * (H * K) + o_k, mask=m_k, other=0.)
    p_h = ((i_b * N + i_n) * H + i_h).to(tl.int64) * K * V
    b_dq = tl.zeros([BT, BK], dtype=tl.float32)
    b_dk = tl.zeros([BT, BK], dtype=tl.float32)
    b_carry = tl.zeros([BK], dtype=tl.float32)
    for i_v in range(0, tl.cdiv(V, BV)):
        o_v = i_v * BV + tl.arange(0, BV)
        m_v = o_v < V
        p_v = t[:, None] * (H * V) + o_v[None, :]
        m_tv = m_t[:, None] & m_v[None, :]
        b_do = tl.load(do + p_v, mask=m_tv, other=0.)
        b_v = tl.load(v + p_v, mask=m_tv, other=0.)
        p_T = o_k[None, :] * V + o_v[:, None]               # [BV,BK] (transposed state)
        m_vk = m_v[:, None] & m_k[None, :]
        b_hT = tl.load(h + p_h + p_T, mask=m_vk, other=0.)
        b_dhT = tl.load(dh + p_h + p_T, mask=m_vk, other=0.)
        b_dq += tl.dot(b_do.to(q.dtype.element_ty), b_hT.to(q.dtype.element_ty),
                       input_precision=PREC)
        b_dk += tl.dot(b_v.to(q.dtype.element_ty), b_dhT.to(q.dtype.element_ty),
                       input_precision=PREC)
        b_carry += tl.sum(b_dhT.to(tl.float32) * b_hT.to(tl.float32), axis=0)
    b_q = tl.load(q + p_tk, mask=m_tk, other=0.).to(tl.float32)
    b_k = tl.load(k + p_tk, mask=m_tk, other=0.).to(tl.float32)
    b_g = tl.load(gc + p_tk, mask=m_tk, other=0.)
    b_dq = b_dq * tl.exp(b_g) * scale
    b_dk = b_dk * tl.exp(tl.minimum(b_last[None, :] - b_g, 0.))
    b_carry = b_carry * tl.exp(b_last) + tl.sum(b_k * b_dk, axis=0)
    if _chunk_spread(gc, i_n * BT, t_last, H, K, BK) <= SPREAD:
        b_0 = tl.load(gc + i_n * BT * (H * K) + o_k, mask=m_k, other=0.)
        b_eq = tl.exp(tl.minimum(b_g - b_0[None, :], 0.))          # padded rows: finite
        b_ek = tl.exp(tl.minimum(b_0[None, :] - b_g, SPREAD))
        b_dAs = tl.load(dA + t[:, None] * (H * BT) + o_t[None, :],
                        mask=m_t[:, None] & (o_t[:, None] > o_t[None, :]), other=0.)
        if SPLIT:
            b_dq += _dot_split(b_dAs, b_k * b_ek, PREC) * b_eq * scale
            b_dk += _dot_split(tl.trans(b_dAs), b_q * b_eq, PREC) * b_ek * scale
        else:
            b_dq += tl.dot(b_dAs, b_k * b_ek, input_precision=PREC) * b_eq * scale
            b_dk += tl.dot(tl.trans(b_dAs), b_q * b_eq, input_precision=PREC) * b_ek * scale
    else:
        b_dq += tl.load(dqi + p_tk, mask=m_tk, other=0.)
        b_dk += tl.load(dki + p_tk, mask=m_tk, other=0.)
    b_x = tl.where(m_tk, b_q * b_dq - b_k * b_dk, 0.)
    b_dg = b_carry[None, :] + tl.sum(b_x, axis=0)[None, :] - tl.cumsum(b_x, axis=0) + b_x
    tl.store(dg + p_tk, b_dg.to(dg.dtype.element_ty), mask=m_tk)
    b_dAd = tl.load(dA + t * (H * BT) + o_t, mask=m_t, other=0.) * scale   # dA[t, t]
    b_dq += b_dAd[:, None] * b_k
    b_dk += b_dAd[:, None] * b_q
    tl.store(dq + p_tk, b_dq.to(dq.dtype.element_ty), mask=m_tk)
    tl.store(dk + p_tk, b_dk.to(dk.dtype.element_ty), mask=m_tk)

# ----------------------------------------------------------------------------- launcher
def gla_chunk_bwd(q, k, v, gc, A, h, do, dht, ht, scale: float, g_dtype: torch.dtype,
                  split: bool = False):
    """Returns (dq, dk, dv, dg, dh0 fp32). dht: final-state gradient or None; ht (the final
    state) is not read (dg's state term comes from dh and h[n]). split: the one-dot intra
    terms with hi + lo parts of both operands (variant v14) instead of tf32."""
    B, T, H, K = q.shape
    V = v.shape[-1]
    N = cdiv(T, BT)
    prec = _dot_precision(q.dtype)
    # autotune key of the tile kernels too: configs tuned at one B*H were 1.6x slower at
    # another (session 4 call 19 vs session 5 call 26, B16 T1024 H16 D128 backward 3.56 vs
    # 2.20 ms depending on which shape came first in the process)
    bh_hint = triton.next_power_of_2(B * H)
    dh = torch.empty(B, N, H, K, V, device=q.device, dtype=q.dtype)
    dh0 = torch.empty(B, H, K, V, device=q.device, dtype=torch.float32)
    _bwd_dh_kernel[lambda m: (cdiv(K, m["BK"]), cdiv(V, m["BV"]), B * H)](
        q, do, gc, dht, dh, dh0, scale, T, H, K, V, BT=BT, HAS_DHT=dht is not None, PREC=prec,
        BH_HINT=bh_hint)
    dA = torch.empty(B, T, H, BT, device=q.device, dtype=torch.float32)
    dv = torch.empty_like(v)
    _bwd_dv_kernel[(N, B * H)](k, v, gc, A, do, dh, dA, dv, T, H, K, V, BT=BT, PREC=prec)
    dqi = torch.empty(B, T, H, K, device=q.device, dtype=torch.float32)
    dki = torch.empty_like(dqi)
    _bwd_intra_kernel[lambda m: (cdiv(K, m["BK"]), N * (BT // BC), B * H)](
        q, k, gc, dA, dqi, dki, scale, T, H, K, BT=BT, BC=BC, PREC=prec, SPREAD=SAFE_SPREAD,
        BH_HINT=bh_hint)
    dq, dk = torch.empty_like(q), torch.empty_like(k)
    dg = torch.empty(B, T, H, K, device=q.device, dtype=g_dtype)
    _bwd_inter_kernel[lambda m: (cdiv(K, m["BK"]), N, B * H)](
        q, k, v, gc, h, do, dh, dA, dqi, dki, dq, dk, dg, scale, T, H, K, V, BT=BT, PREC=prec,
        SPREAD=SAFE_SPREAD, SPLIT=split, BH_HINT=bh_hint)
    return dq, dk, dv, dg, dh0
