"""Chunkwise GLA in Triton, variants "v5" / "v6": small sub-chunk programs for the
intra-chunk work, whole-chunk programs for the inter-chunk work.

Measured on the H100 (call 10, B4 T4096 H16 D128): v2's whole-chunk `_bwd_dqk` (one
heavy program per chunk and K block: 248 registers, one CTA per SM, 16 dependent
gather steps) left the backward latency-bound (about 2.1 ms inferred), and v2's
whole-chunk `_fwd_A` about 0.55 ms. Here the intra-chunk parts run as many light
programs (one per 16-row sub-chunk, [16, BK] tiles, a few dozen registers, many CTAs
per SM), and their partner rows are single [BK] vectors instead of [64, BK] gathers:

* `_fwd_A_v5`: one program per sub-chunk i: A_ij for j < i through i's first row
  (as chunk.py), the diagonal block column by column (row j of k as a vector, the
  pairwise decay e^(-|b_t - b_j|) as a [16, BK] tile), zeros above;
* `_bwd_intra_v5`: one program per sub-chunk and K block: the dq / dk terms of the
  other sub-chunks through i's first / last row, and of the diagonal block (without
  the s == t terms), scaled, to fp32 scratch `dqi`, `dki`;
* `_bwd_inter_v5`: one program per chunk and K block: the inter-chunk products as
  [64, BV] x [BV, BK] dots, plus `dqi`/`dki`, then dg (suffix sum inside the chunk,
  seeded as in chunk_v2: e^(b_C) sum_v dh h + sum_s k_s dk_inter_s), then the s == t
  terms.

v5's forward is gc -> state pass -> `_fwd_A_v5` -> output pass; v6's forward is v4's
(chunk_v2: gc -> state pass -> scores and output in one kernel); v7's is v4's with the
diagonal blocks one sub-chunk at a time (`_diag_scores`, also used by `_fwd_A_v5`). All
three use this backward.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from mixzoo.kernels._common import cdiv

from .chunk import (BC, BT, SAFE_SPREAD, _bwd_dh_kernel, _bwd_dv_kernel, _chunk_spread,
                    _dot_precision, _fwd_h_kernel, autotuned, configs)
from .chunk_v12 import V12_STATE_CONFIGS
from .chunk_v2 import (V2_STATE_CONFIGS, _bwd_dh_v2_kernel, _bwd_dv_v2_kernel,
                       _diag_scores, _fwd_A_v2_kernel, _fwd_gc_kernel, _fwd_h_v2_kernel,
                       _fwd_o_v2_kernel, _pow2, gla_chunk_fwd_v2, gla_chunk_fwd_v4)


# ----------------------------------------------------------------------------- forward
# sm_90 registers: 107 / 148 / 128 / 174, no spills (BK 64 at 2 warps spilled)
@autotuned(configs((64, 8, 2), (64, 4, 2), (32, 4, 1), (128, 8, 2), names=("BK",)), key=("K",))
@triton.jit
def _fwd_A_v5_kernel(
    q, k, gc,           # [B,T,H,K] q, k and the chunk-local cumulative gate (fp32)
    A,                  # [B,T,H,BT] fp32 out: A[t, s] = scale sum_k q_tk k_sk e^(b_tk - b_sk), s<=t
    scale, T, H: tl.constexpr, K: tl.constexpr,
    BT: tl.constexpr, BC: tl.constexpr, BK: tl.constexpr, PREC: tl.constexpr,
):
    """Rows of sub-chunk i: A_ij = (q_i e^(b_i - r)) (k_j e^(r - b_j))^T for j < i (r = b
    at the first row of i), A_ii[:, j] = sum_k q_i k_j e^(-|b_i - b_j|) masked to t >= j,
    zeros for j > i."""
    i_c, i_bh = tl.program_id(0), tl.program_id(1)
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
    A += base * BT
    o_c = tl.arange(0, BC)
    t_i = t0 + o_c
    m_i = t_i < T
    p_A = A + t_i[:, None] * (H * BT) + o_c[None, :]    # + j * BC: block j
    for j in range(0, i_i):
        b_A = tl.zeros([BC, BC], dtype=tl.float32)
        t_j = i_n * BT + j * BC + o_c                    # all < t0 < T
        for i_k in range(0, tl.cdiv(K, BK)):
            o_k = i_k * BK + tl.arange(0, BK)
            m_k = o_k < K
            m_ik = m_i[:, None] & m_k[None, :]
            p_i = t_i[:, None] * (H * K) + o_k[None, :]
            p_j = t_j[:, None] * (H * K) + o_k[None, :]
            b_r = tl.load(gc + t0 * (H * K) + o_k, mask=m_k, other=0.)
            b_q = tl.load(q + p_i, mask=m_ik, other=0.).to(tl.float32)
            b_gi = tl.load(gc + p_i, mask=m_ik, other=0.)
            b_k = tl.load(k + p_j, mask=m_k[None, :], other=0.).to(tl.float32)
            b_gj = tl.load(gc + p_j, mask=m_k[None, :], other=0.)
            b_qd = b_q * tl.exp(tl.minimum(b_gi - b_r[None, :], 0.)) * scale
            b_kd = b_k * tl.exp(b_r[None, :] - b_gj)
            b_A += tl.dot(b_qd.to(q.dtype.element_ty), tl.trans(b_kd.to(k.dtype.element_ty)),
                          input_precision=PREC)
        tl.store(p_A + j * BC, b_A, mask=m_i[:, None])
    # diagonal block, column j from row t0 + j of k: [BC(t), BK] decays e^(-|b_t - b_j|)
    _diag_scores(q, k, gc, p_A + i_i * BC, t0, T, scale, H, K, BC, BK)
    # sub-chunks j > i are above the diagonal: zeros, so A may start uninitialised
    for j in range(i_i + 1, NS):
        tl.store(p_A + j * BC, tl.zeros([BC, BC], dtype=tl.float32), mask=m_i[:, None])


# ----------------------------------------------------------------------------- backward
@triton.jit
def _intra_dqk(
    q, k, gc, dA,       # pointers to token 0 of this (b, h) (dA: [B,T,H,BT] fp32)
    b_q, b_k, b_g,      # [BC, BK] fp32 rows of sub-chunk i (q, k, gc), zero where masked
    t0, i_n, i_i, o_k, m_k, T,
    H: tl.constexpr, K: tl.constexpr, BT: tl.constexpr, BC: tl.constexpr, BK: tl.constexpr,
    PREC: tl.constexpr, HI_PREC: tl.constexpr,
):
    """Unscaled intra-chunk (dq, dk) of sub-chunk i (first row t0) for one K block,
    without the s == t terms: earlier sub-chunks through r = b at row t0, later ones
    through r2 = b at the last row of i (exponents <= 0), the diagonal block pairwise
    with row j of i as [BK] vectors and e^(-|b_t - b_j|) for both sides.
    HI_PREC: the sub-chunk-pair dots take their fp32 factors (tf32 for bf16/fp16 inputs)
    instead of factors rounded to the input dtype."""
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
        if HI_PREC:
            b_dq += tl.dot(b_dAij, b_kd, input_precision=PREC)
        else:
            b_dq += tl.dot(b_dAij.to(k.dtype.element_ty), b_kd.to(k.dtype.element_ty),
                           input_precision=PREC)
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
        if HI_PREC:
            b_dk += tl.dot(tl.trans(b_dAji), b_qd, input_precision=PREC)
        else:
            b_dk += tl.dot(tl.trans(b_dAji.to(q.dtype.element_ty)),
                           b_qd.to(q.dtype.element_ty), input_precision=PREC)
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


# sm_90 registers: 80 / 88 / 140 / 172, no spills: several CTAs per SM
@autotuned(configs((32, 4, 2), (64, 8, 2), (64, 4, 2), (128, 8, 2), names=("BK",)),
           key=("K", "HI_PREC", "FUSE_SAFE"))
@triton.jit
def _bwd_intra_v5_kernel(
    q, k, gc,           # [B,T,H,K] q, k and the chunk-local cumulative gate (fp32)
    dA,                 # [B,T,H,BT] fp32 dA[t, s] = do_t . v_s (s <= t)
    dqi, dki,           # [B,T,H,K] fp32 out: intra-chunk dq, dk without the s == t terms
    scale, T, H: tl.constexpr, K: tl.constexpr,
    BT: tl.constexpr, BC: tl.constexpr, BK: tl.constexpr, PREC: tl.constexpr,
    HI_PREC: tl.constexpr = False, FUSE_SAFE: tl.constexpr = False, SPREAD: tl.constexpr = 0.,
):
    """Intra-chunk dq, dk of sub-chunk i (BC rows), one K block (HI_PREC: _intra_dqk).
    FUSE_SAFE (variant v13): chunks whose decay spread (_chunk_spread, over all K) is
    <= SPREAD are left to _bwd_inter_v5, which then forms their intra terms itself.
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
    if FUSE_SAFE:
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
                            H, K, BT, BC, BK, PREC, HI_PREC)
    tl.store(dqi + p_i, b_dq * scale, mask=m_ik)
    tl.store(dki + p_i, b_dk * scale, mask=m_ik)


# sm_90 registers: 208 / 219 / 254 / 255, no spills (64x64 at 4 warps spilled 200 bytes)
@autotuned(configs((32, 64, 8, 2), (32, 128, 4, 2), (64, 64, 8, 2), (32, 64, 4, 2)),
           key=("K", "V", "FUSE_SAFE"))
@triton.jit
def _bwd_inter_v5_kernel(
    q, k, v, gc, h, do, dh, dA,     # inputs (chunk.py)
    dqi, dki,                       # [B,T,H,K] fp32 intra-chunk parts (_bwd_intra_v5)
    dq, dk, dg,                     # [B,T,H,K] out
    scale, T, H: tl.constexpr, K: tl.constexpr, V: tl.constexpr,
    BT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr, PREC: tl.constexpr,
    FUSE_SAFE: tl.constexpr = False, SPREAD: tl.constexpr = 0.,
):
    """dq = scale e^b (do h[n]^T) + dqi,  dk = e^(b_C - b) (v dh[n]^T) + dki, then
    dg_t = sum_{u>=t in chunk} (q dq - k dk)_u + e^(b_C) sum_v dh[n] h[n] + sum_s k_s dk_inter_s,
    then the s == t terms dA_tt k_t, dA_tt q_t (they cancel in q dq - k dk).
    FUSE_SAFE (variant v13): where the chunk's decay spread is <= SPREAD, the intra terms
    (without s == t) are formed here through the chunk's first row b_0 instead of read:
        dqi = scale e^(b - b_0) * (dA_strict (k e^(b_0 - b))),
        dki = scale e^(b_0 - b) * (dA_strict^T (q e^(b - b_0)))
    (two tf32 dots; every factor within e^(+-SPREAD))."""
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
    if FUSE_SAFE:
        if _chunk_spread(gc, i_n * BT, t_last, H, K, BK) <= SPREAD:
            b_0 = tl.load(gc + i_n * BT * (H * K) + o_k, mask=m_k, other=0.)
            b_eq = tl.exp(tl.minimum(b_g - b_0[None, :], 0.))          # padded rows: finite
            b_ek = tl.exp(tl.minimum(b_0[None, :] - b_g, SPREAD))
            b_dAs = tl.load(dA + t[:, None] * (H * BT) + o_t[None, :],
                            mask=m_t[:, None] & (o_t[:, None] > o_t[None, :]), other=0.)
            b_dq += tl.dot(b_dAs, b_k * b_ek, input_precision=PREC) * b_eq * scale
            b_dk += tl.dot(tl.trans(b_dAs), b_q * b_eq, input_precision=PREC) * b_ek * scale
        else:
            b_dq += tl.load(dqi + p_tk, mask=m_tk, other=0.)
            b_dk += tl.load(dki + p_tk, mask=m_tk, other=0.)
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


# v8: inter and intra in one light per-sub-chunk program (inter at M = 16), dg after
@autotuned(configs((64, 64, 4, 2), (32, 64, 4, 2), (64, 128, 8, 2)))
@triton.jit
def _bwd_dqk_v8_kernel(
    q, k, v, gc, h, do, dh, dA,     # inputs (chunk.py)
    dq, dk,                         # [B,T,H,K] out
    x,                              # [B,T,H,K] fp32 out: q dq - k dk without the s == t terms
    cpart,                          # [B,N,NS,H,K] fp32 out: this sub-chunk's part of dg's seed
    scale, T, H: tl.constexpr, K: tl.constexpr, V: tl.constexpr,
    BT: tl.constexpr, BC: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr, PREC: tl.constexpr,
):
    """dq, dk of sub-chunk i (BC rows) and one K block: inter-chunk products for its own
    rows ([BC, BV] x [BV, BK] dots), intra-chunk terms (_intra_dqk), the s == t terms.
    dg needs sums over the whole chunk, so this program leaves x = q dq - k dk and its
    part of the seed, sum_s k_s dk_inter_s (+ e^(b_C) sum_v dh h for i = 0), to _bwd_dg_v8."""
    i_k, i_c, i_bh = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    i_b, i_h = i_bh // H, i_bh % H
    NS: tl.constexpr = BT // BC
    i_n, i_i = i_c // NS, i_c % NS
    N = tl.cdiv(T, BT)
    t0 = i_n * BT + i_i * BC
    if t0 >= T:
        return
    base = (i_b * T * H + i_h).to(tl.int64)
    # pointers to token 0 of this (b, h): in-sequence offsets below stay int32
    q += base * K
    k += base * K
    v += base * V
    gc += base * K
    do += base * V
    dA += base * BT
    dq += base * K
    dk += base * K
    x += base * K
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
    b_last = tl.load(gc + (tl.minimum(i_n * BT + BT, T) - 1) * (H * K) + o_k, mask=m_k, other=0.)
    p_h = ((i_b * N + i_n) * H + i_h).to(tl.int64) * K * V
    b_dq = tl.zeros([BC, BK], dtype=tl.float32)
    b_dk = tl.zeros([BC, BK], dtype=tl.float32)
    b_hh = tl.zeros([BK], dtype=tl.float32)
    for i_v in range(0, tl.cdiv(V, BV)):
        o_v = i_v * BV + tl.arange(0, BV)
        m_v = o_v < V
        p_v = t_i[:, None] * (H * V) + o_v[None, :]
        m_iv = m_i[:, None] & m_v[None, :]
        b_do = tl.load(do + p_v, mask=m_iv, other=0.)
        b_v = tl.load(v + p_v, mask=m_iv, other=0.)
        p_T = o_k[None, :] * V + o_v[:, None]               # [BV,BK] (transposed state)
        m_vk = m_v[:, None] & m_k[None, :]
        b_hT = tl.load(h + p_h + p_T, mask=m_vk, other=0.)
        b_dhT = tl.load(dh + p_h + p_T, mask=m_vk, other=0.)
        b_dq += tl.dot(b_do.to(q.dtype.element_ty), b_hT.to(q.dtype.element_ty),
                       input_precision=PREC)
        b_dk += tl.dot(b_v.to(q.dtype.element_ty), b_dhT.to(q.dtype.element_ty),
                       input_precision=PREC)
        b_hh += tl.sum(b_dhT.to(tl.float32) * b_hT.to(tl.float32), axis=0)
    b_dq = b_dq * tl.exp(b_g) * scale
    b_dk = b_dk * tl.exp(tl.minimum(b_last[None, :] - b_g, 0.))
    b_c = tl.sum(b_k * b_dk, axis=0) + tl.where(i_i == 0, b_hh * tl.exp(b_last), 0.)
    tl.store(cpart + (((i_b * N + i_n) * NS + i_i) * H + i_h).to(tl.int64) * K + o_k, b_c,
             mask=m_k)
    b_dqi, b_dki = _intra_dqk(q, k, gc, dA, b_q, b_k, b_g, t0, i_n, i_i, o_k, m_k, T,
                              H, K, BT, BC, BK, PREC, False)
    b_dq += b_dqi * scale
    b_dk += b_dki * scale
    tl.store(x + p_i, tl.where(m_ik, b_q * b_dq - b_k * b_dk, 0.), mask=m_ik)
    b_dAd = tl.load(dA + t_i * (H * BT) + i_i * BC + o_c, mask=m_i, other=0.) * scale  # dA[t, t]
    tl.store(dq + p_i, (b_dq + b_dAd[:, None] * b_k).to(dq.dtype.element_ty), mask=m_ik)
    tl.store(dk + p_i, (b_dk + b_dAd[:, None] * b_q).to(dk.dtype.element_ty), mask=m_ik)


@autotuned(configs((64, 4, 1), (32, 4, 1), names=("BK",)), key=("K",))
@triton.jit
def _bwd_dg_v8_kernel(
    x,                  # [B,T,H,K] fp32 q dq - k dk (without the s == t terms)
    cpart,              # [B,N,NS,H,K] fp32 per-sub-chunk parts of the chunk's seed
    dg,                 # [B,T,H,K] out
    T, H: tl.constexpr, K: tl.constexpr, BT: tl.constexpr, BC: tl.constexpr, BK: tl.constexpr,
):
    """dg_t = seed + sum_{u>=t in chunk} x_u, seed = the sum of the chunk's parts."""
    i_k, i_n, i_bh = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    i_b, i_h = i_bh // H, i_bh % H
    NS: tl.constexpr = BT // BC
    N = tl.cdiv(T, BT)
    base = (i_b * T * H + i_h).to(tl.int64)
    t = i_n * BT + tl.arange(0, BT)
    o_k = i_k * BK + tl.arange(0, BK)
    m_k = o_k < K
    m_tk = (t[:, None] < T) & m_k[None, :]
    p = base * K + t[:, None] * (H * K) + o_k[None, :]
    b_x = tl.load(x + p, mask=m_tk, other=0.)
    b_c = tl.zeros([BK], dtype=tl.float32)
    for i in range(0, NS):                              # sub-chunks past T wrote nothing
        m_c = m_k & ((o_k * 0 + i_n * BT + i * BC) < T)
        b_c += tl.load(cpart + (((i_b * N + i_n) * NS + i) * H + i_h).to(tl.int64) * K + o_k,
                       mask=m_c, other=0.)
    b_dg = b_c[None, :] + tl.sum(b_x, axis=0)[None, :] - tl.cumsum(b_x, axis=0) + b_x
    tl.store(dg + p, b_dg.to(dg.dtype.element_ty), mask=m_tk)


# ----------------------------------------------------------------------------- launchers
def gla_chunk_fwd_v5(q, k, v, g, h0, scale: float):
    """As chunk.gla_chunk_fwd: (o, final_state fp32, gc fp32, A fp32, h)."""
    B, T, H, K = q.shape
    V = v.shape[-1]
    N = cdiv(T, BT)
    prec = _dot_precision(q.dtype)
    gc = torch.empty(B, T, H, K, device=q.device, dtype=torch.float32)
    h = torch.empty(B, N, H, K, V, device=q.device, dtype=q.dtype)
    ht = torch.empty(B, H, K, V, device=q.device, dtype=torch.float32)
    _fwd_gc_kernel[lambda m: (cdiv(K, m["BK"]), N, B * H)](g, gc, T, H, K, BT=BT)
    _fwd_h_v2_kernel[lambda m: (cdiv(K, m["BK"]), cdiv(V, m["BV"]), B * H)](
        k, v, gc, h, h0, ht, T, H, K, V, BT=BT, HAS_H0=h0 is not None, PREC=prec)
    A = torch.empty(B, T, H, BT, device=q.device, dtype=torch.float32)
    _fwd_A_v5_kernel[(N * (BT // BC), B * H)](q, k, gc, A, scale, T, H, K, BT=BT, BC=BC,
                                              PREC=prec)
    o = torch.empty_like(v)
    _fwd_o_v2_kernel[lambda m: (cdiv(V, m["BV"]), N, B * H)](
        q, v, gc, A, h, o, scale, T, H, K, V, BT=BT, PREC=prec)
    return o, ht, gc, A, h


def gla_chunk_fwd_v6(q, k, v, g, h0, scale: float):
    """v4's forward (chunk_v2: scores and output in one kernel), paired with v5's backward."""
    return gla_chunk_fwd_v4(q, k, v, g, h0, scale)


def gla_chunk_fwd_v7(q, k, v, g, h0, scale: float):
    """v4's fused scores + output kernel with the diagonal blocks one sub-chunk at a time."""
    return gla_chunk_fwd_v2(q, k, v, g, h0, scale, fuse_o=True, diag_sub=True)


def gla_chunk_bwd_v5(q, k, v, gc, A, h, do, dht, ht, scale: float, g_dtype: torch.dtype,
                     hi_prec: bool = False, fuse_safe: bool = False):
    """As chunk.gla_chunk_bwd: (dq, dk, dv, dg, dh0 fp32). (dv / dA: v1's kernel and
    configs, as measured in call 13; v8 offers it the spill-free configs too.)
    hi_prec (variant v11): the dh pass, A^T do and the intra sub-chunk-pair dots keep
    more bits (README "Numerics"). fuse_safe (variant v13): the intra terms of chunks
    with a small decay spread are formed in the inter kernel (_bwd_inter_v5, FUSE_SAFE)."""
    B, T, H, K = q.shape
    V = v.shape[-1]
    N = cdiv(T, BT)
    prec = _dot_precision(q.dtype)
    dh = torch.empty(B, N, H, K, V, device=q.device, dtype=q.dtype)
    dh0 = torch.empty(B, H, K, V, device=q.device, dtype=torch.float32)
    # v13 (fuse_safe): its own tuners for the dh and dv passes (more configs)
    dh_kernel, dv_kernel = ((_bwd_dh_v13_kernel, _bwd_dv_v13_kernel) if fuse_safe
                            else (_bwd_dh_v2_kernel, _bwd_dv_kernel))
    hint = dict(BH_HINT=triton.next_power_of_2(B * H)) if fuse_safe else {}
    dh_kernel[lambda m: (cdiv(K, m["BK"]), cdiv(V, m["BV"]), B * H)](
        q, do, gc, dht, dh, dh0, scale, T, H, K, V, BT=BT, HAS_DHT=dht is not None, PREC=prec,
        HI_PREC=hi_prec, **hint)
    dA = torch.empty(B, T, H, BT, device=q.device, dtype=torch.float32)
    dv = torch.empty_like(v)
    dv_kernel[(N, B * H)](k, v, gc, A, do, dh, dA, dv, T, H, K, V, BT=BT, PREC=prec,
                          HI_PREC=hi_prec)
    dqi = torch.empty(B, T, H, K, device=q.device, dtype=torch.float32)
    dki = torch.empty_like(dqi)
    _bwd_intra_v5_kernel[lambda m: (cdiv(K, m["BK"]), N * (BT // BC), B * H)](
        q, k, gc, dA, dqi, dki, scale, T, H, K, BT=BT, BC=BC, PREC=prec, HI_PREC=hi_prec,
        FUSE_SAFE=fuse_safe, SPREAD=SAFE_SPREAD)
    dq, dk = torch.empty_like(q), torch.empty_like(k)
    dg = torch.empty(B, T, H, K, device=q.device, dtype=g_dtype)
    inter = _bwd_inter_v13_kernel if fuse_safe else _bwd_inter_v5_kernel
    inter[lambda m: (cdiv(K, m["BK"]), N, B * H)](
        q, k, v, gc, h, do, dh, dA, dqi, dki, dq, dk, dg, scale, T, H, K, V, BT=BT, PREC=prec,
        FUSE_SAFE=fuse_safe, SPREAD=SAFE_SPREAD)
    return dq, dk, dv, dg, dh0


def gla_chunk_bwd_v8(q, k, v, gc, A, h, do, dht, ht, scale: float, g_dtype: torch.dtype):
    """As chunk.gla_chunk_bwd, with dq/dk in one per-sub-chunk kernel and dg after it."""
    B, T, H, K = q.shape
    V = v.shape[-1]
    N = cdiv(T, BT)
    NS = BT // BC
    prec = _dot_precision(q.dtype)
    dh = torch.empty(B, N, H, K, V, device=q.device, dtype=q.dtype)
    dh0 = torch.empty(B, H, K, V, device=q.device, dtype=torch.float32)
    _bwd_dh_v2_kernel[lambda m: (cdiv(K, m["BK"]), cdiv(V, m["BV"]), B * H)](
        q, do, gc, dht, dh, dh0, scale, T, H, K, V, BT=BT, HAS_DHT=dht is not None, PREC=prec)
    dA = torch.empty(B, T, H, BT, device=q.device, dtype=torch.float32)
    dv = torch.empty_like(v)
    _bwd_dv_v2_kernel[(N, B * H)](k, v, gc, A, do, dh, dA, dv, T, H, K, V, BT=BT, PREC=prec)
    dq, dk = torch.empty_like(q), torch.empty_like(k)
    x = torch.empty(B, T, H, K, device=q.device, dtype=torch.float32)
    cpart = torch.empty(B, N, NS, H, K, device=q.device, dtype=torch.float32)
    _bwd_dqk_v8_kernel[lambda m: (cdiv(K, m["BK"]), N * NS, B * H)](
        q, k, v, gc, h, do, dh, dA, dq, dk, x, cpart, scale, T, H, K, V, BT=BT, BC=BC, PREC=prec)
    dg = torch.empty(B, T, H, K, device=q.device, dtype=g_dtype)
    _bwd_dg_v8_kernel[lambda m: (cdiv(K, m["BK"]), N, B * H)](x, cpart, dg, T, H, K, BT=BT, BC=BC)
    return dq, dk, dv, dg, dh0


# v1's state pass (it forms gc itself on every step) offered the v2 state configs
_fwd_h_gc_kernel = autotuned(V2_STATE_CONFIGS)(_fwd_h_kernel.fn)
# v4's fused scores + output kernel offered 16-warp and BK 16 tiles too (sm_90, WITH_O:
# 113 / 127 / 184 / 161 registers besides v4's three; no spills)
_fwd_Ao_v10_kernel = autotuned(
    configs((64, 8, 2), (32, 8, 1), (32, 16, 1), (64, 16, 2), (32, 8, 2), (16, 8, 2),
            names=("BK",)), key=("K", "V", "WITH_O", "DIAG_SUB", "HI_PREC"))(_fwd_A_v2_kernel.fn)


def gla_chunk_fwd_v10(q, k, v, g, h0, scale: float):
    """v4's forward without the separate cumsum pass: the state pass makes gc (v1's
    kernel, v2's configs), then v4's fused scores + output kernel (more configs)."""
    B, T, H, K = q.shape
    V = v.shape[-1]
    N = cdiv(T, BT)
    prec = _dot_precision(q.dtype)
    gc = torch.empty(B, T, H, K, device=q.device, dtype=torch.float32)
    h = torch.empty(B, N, H, K, V, device=q.device, dtype=q.dtype)
    ht = torch.empty(B, H, K, V, device=q.device, dtype=torch.float32)
    _fwd_h_gc_kernel[lambda m: (cdiv(K, m["BK"]), cdiv(V, m["BV"]), B * H)](
        k, v, g, gc, h, h0, ht, T, H, K, V, BT=BT, HAS_H0=h0 is not None, PREC=prec)
    A = torch.empty(B, T, H, BT, device=q.device, dtype=torch.float32)
    o = torch.empty_like(v)
    _fwd_Ao_v10_kernel[(N, B * H)](q, k, gc, A, v, h, o, scale, T, H, K, V, BT=BT, BC=BC,
                                   BV=min(128, _pow2(V)), PREC=prec, WITH_O=True, DIAG_SUB=False)
    return o, ht, gc, A, h


def gla_chunk_fwd_v11(q, k, v, g, h0, scale: float):
    """v6's forward keeping more bits: tf32 sub-chunk-pair scores, A v and the state
    update with hi + lo factors (README "Numerics")."""
    return gla_chunk_fwd_v2(q, k, v, g, h0, scale, fuse_o=True, hi_prec=True)


def gla_chunk_bwd_v11(q, k, v, gc, A, h, do, dht, ht, scale: float, g_dtype: torch.dtype):
    """v5's backward keeping more bits (gla_chunk_bwd_v5 with hi_prec)."""
    return gla_chunk_bwd_v5(q, k, v, gc, A, h, do, dht, ht, scale, g_dtype, hi_prec=True)


# v13's own tuners. The reverse state pass: v12's state configs per B*H bucket (sm_90:
# 110-244 registers, no spills). The dv / dA pass with HI_PREC: v1's first tile (spills 24
# bytes) and two spill-free ones (231 / 240 registers; 16-warp and 4-warp tiles spilled).
# The inter kernel (FUSE_SAFE: + the [64, 64] dA tile and two dots) with smaller K tiles:
# 254 / 238 / 250 / 111 / 128 registers, no spills.
_bwd_dh_v13_kernel = autotuned(V12_STATE_CONFIGS, key=("K", "V", "HI_PREC", "BH_HINT"))(
    _bwd_dh_kernel.fn)
_bwd_dv_v13_kernel = autotuned(configs((64, 64, 8, 2), (32, 64, 8, 2), (32, 128, 8, 2)),
                               key=("K", "V", "HI_PREC"))(_bwd_dv_kernel.fn)
_bwd_inter_v13_kernel = autotuned(
    configs((32, 64, 8, 2), (16, 64, 8, 2), (16, 64, 4, 2), (32, 64, 16, 2), (16, 128, 8, 2)),
    key=("K", "V", "FUSE_SAFE"))(_bwd_inter_v5_kernel.fn)


def gla_chunk_bwd_v13(q, k, v, gc, A, h, do, dht, ht, scale: float, g_dtype: torch.dtype):
    """v11's backward with the intra terms of small-spread chunks in the inter kernel."""
    return gla_chunk_bwd_v5(q, k, v, gc, A, h, do, dht, ht, scale, g_dtype, hi_prec=True,
                            fuse_safe=True)
