"""Chunkwise GLA in Triton, variant "v2": whole-chunk tiles for the intra-chunk work.

Same math, inputs and outputs as chunk.py (README.md has the derivation); only the
intra-chunk score kernel `_fwd_A` and the dq/dk/dg kernel `_bwd_dqk` differ. In v1 those
walk the chunk sub-chunk by sub-chunk (16-row tiles, [16, 16, BK] pairwise tensors, and
in the backward the inter-chunk products repeated per sub-chunk at M=16). Here one
program owns all BT=64 rows of a chunk (and one K block):

* inter-chunk products are single [64, BV] x [BV, BK] dots (tensor-core sized M);
* sub-chunk pairs i > j go through one dot per i over the whole chunk: the rows of i are
  kept (the others masked to 0) and factorised through i's reference row, exactly the
  v1 scheme (every exponent <= 0), so 3 dots of 64 rows instead of 6 of 16;
* the diagonal sub-chunks (pairwise decays, fp32 on CUDA cores) run as a loop over the
  16 in-block offsets j: row t meets row s = start(t) + j of its own sub-chunk, one
  [64, BK] gather per step, no 3-D tensors. e^(-|b_t - b_s|) serves both s <= t (dq, A)
  and s >= t (dk) because b is non-increasing inside a chunk.

The forward state pass reads gc from a separate parallel cumsum kernel (_fwd_gc) instead
of forming it on every sequential step. Selected with MIXZOO_GLA_VARIANT=v2 (ops.py);
_fwd_o, _bwd_dh and _bwd_dv are v1's kernels (the first two offered more autotune configs).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from mixzoo.kernels._common import cdiv

from .chunk import (BC, BT, _bwd_dh_kernel, _bwd_dv_kernel, _dot_hl, _dot_precision,
                    _fwd_o_kernel, autotuned, configs)


# ----------------------------------------------------------------------------- forward
@autotuned(configs((64, 8, 1), (32, 4, 1), names=("BK",)), key=("K",))
@triton.jit
def _fwd_gc_kernel(
    g,                  # [B,T,H,K] log gate (any float dtype)
    gc,                 # [B,T,H,K] fp32 out: chunk-local cumsum of g
    T, H: tl.constexpr, K: tl.constexpr, BT: tl.constexpr, BK: tl.constexpr,
):
    """gc_t = g_1 + ... + g_t inside each chunk of BT tokens, accumulated in fp32."""
    i_k, i_n, i_bh = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    i_b, i_h = i_bh // H, i_bh % H
    base = (i_b * T * H + i_h).to(tl.int64)
    t = i_n * BT + tl.arange(0, BT)
    o_k = i_k * BK + tl.arange(0, BK)
    m_tk = (t[:, None] < T) & (o_k[None, :] < K)
    p = base * K + t[:, None] * (H * K) + o_k[None, :]
    b_g = tl.load(g + p, mask=m_tk, other=0.).to(tl.float32)
    tl.store(gc + p, tl.cumsum(b_g, axis=0), mask=m_tk)


# state passes: v1's two 8-warp configs plus 32x32 at 4 warps (4x the programs: 1024 at
# B4 H16 D128, several per SM) and 3 stages; none spills on sm_90
V2_STATE_CONFIGS = configs((64, 64, 8, 2), (32, 64, 8, 2), (32, 32, 4, 2), (64, 64, 8, 3))
# v1's reverse state pass, offered the same configs
_bwd_dh_v2_kernel = autotuned(V2_STATE_CONFIGS, key=("K", "V", "HI_PREC"))(_bwd_dh_kernel.fn)
# v1's dv / dA pass for v8's backward (opt-in, unmeasured with it): v1's two configs
# spill 16-24 bytes on sm_90; also offered three spill-free ones (249 / 236 / 128 regs)
_bwd_dv_v2_kernel = autotuned(configs((64, 64, 8, 2), (64, 128, 8, 1), (64, 64, 8, 1),
                                      (32, 128, 8, 1), (32, 128, 16, 1)))(_bwd_dv_kernel.fn)
# v1's output pass (memory-bound), also offered two smaller spill-free tiles
_fwd_o_v2_kernel = autotuned(configs((64, 64, 8, 2), (64, 128, 8, 1), (32, 64, 4, 2),
                                     (32, 128, 8, 2)))(_fwd_o_kernel.fn)


# The state pass reads gc made by _fwd_gc (v1 makes it inside the pass: a [BK, BT]
# cumsum on every sequential step). Measured in session 2 (call 5): 0.172 ms + 0.072 ms
# for _fwd_gc, against 0.416 ms for v1's pass, B4 T4096 H16 D128.
@autotuned(V2_STATE_CONFIGS, key=("K", "V", "HI_PREC"))
@triton.jit
def _fwd_h_v2_kernel(
    k, v, gc,           # [B,T,H,K], [B,T,H,V] inputs, [B,T,H,K] fp32 chunk-local cumulative gate
    h,                  # [B,N,H,K,V] out: state before each chunk
    h0, ht,             # [B,H,K,V] fp32 initial state in / final state out
    T, H: tl.constexpr, K: tl.constexpr, V: tl.constexpr,
    BT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
    HAS_H0: tl.constexpr, PREC: tl.constexpr, HI_PREC: tl.constexpr = False,
    BH_HINT: tl.constexpr = 0,      # autotune key only (v12): B*H rounded up to a power of 2
):
    """S <- exp(b_C) * S + (k * exp(b_C - b))^T v per chunk; stores S before each chunk.
    HI_PREC: k * exp(b_C - b) enters the dot as hi + lo parts (_dot_hl)."""
    i_k, i_v, i_bh = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    i_b, i_h = i_bh // H, i_bh % H
    N = tl.cdiv(T, BT)
    o_k = i_k * BK + tl.arange(0, BK)
    o_v = i_v * BV + tl.arange(0, BV)
    o_t = tl.arange(0, BT)
    m_k = o_k < K
    m_kv = m_k[:, None] & (o_v[None, :] < V)
    base = (i_b * T * H + i_h).to(tl.int64)
    # pointers to token 0 of this (b, h): in-sequence offsets below stay int32
    k += base * K
    v += base * V
    gc += base * K
    p_hs = o_k[:, None] * V + o_v[None, :]           # [BK,BV] offsets inside one state
    b_h = tl.zeros([BK, BV], dtype=tl.float32)
    if HAS_H0:
        b_h += tl.load(h0 + i_bh.to(tl.int64) * K * V + p_hs, mask=m_kv, other=0.)
    for n in range(N):
        p_h = h + ((i_b * N + n) * H + i_h).to(tl.int64) * K * V
        tl.store(p_h + p_hs, b_h.to(h.dtype.element_ty), mask=m_kv)
        t = n * BT + o_t
        m_kt = m_k[:, None] & (t[None, :] < T)
        p_kT = t[None, :] * (H * K) + o_k[:, None]          # [BK,BT] (transposed)
        t_last = tl.minimum(n * BT + BT, T) - 1
        b_last = tl.load(gc + t_last * (H * K) + o_k, mask=m_k, other=0.)     # [BK]
        b_gc = tl.load(gc + p_kT, mask=m_kt, other=0.)
        b_k = tl.load(k + p_kT, mask=m_kt, other=0.).to(tl.float32)
        # padded columns: k = 0, and the clamp keeps their exponent finite
        b_kd = b_k * tl.exp(tl.minimum(b_last[:, None] - b_gc, 0.))
        p_v = t[:, None] * (H * V) + o_v[None, :]
        b_v = tl.load(v + p_v, mask=(t[:, None] < T) & (o_v[None, :] < V), other=0.)
        if HI_PREC:
            b_h = b_h * tl.exp(b_last)[:, None] + _dot_hl(b_kd, b_v, PREC)
        else:
            b_h = b_h * tl.exp(b_last)[:, None] + tl.dot(b_kd.to(k.dtype.element_ty), b_v,
                                                         input_precision=PREC)
    tl.store(ht + i_bh.to(tl.int64) * K * V + p_hs, b_h, mask=m_kv)


@triton.jit
def _diag_scores(
    q, k, gc,           # pointers to token 0 of this (b, h) in [B,T,H,K] q, k, gc
    p_A,                # [BC, BC] pointers: the diagonal block of A to write
    t0, T, scale, H: tl.constexpr, K: tl.constexpr, BC: tl.constexpr, BK: tl.constexpr,
):
    """One diagonal sub-chunk block of A (rows t0..t0+BC-1), column by column: row j of
    k is one [BK] vector, the decay e^(-|b_t - b_j|) a [BC, BK] tile (exponent <= 0);
    masked to s <= t, zeros above. No [rows, BK] gather of partner rows."""
    o_c = tl.arange(0, BC)
    t_i = t0 + o_c
    m_i = t_i < T
    b_A = tl.zeros([BC, BC], dtype=tl.float32)
    for i_k in range(0, tl.cdiv(K, BK)):
        o_k = i_k * BK + tl.arange(0, BK)
        m_k = o_k < K
        m_ik = m_i[:, None] & m_k[None, :]
        p_i = t_i[:, None] * (H * K) + o_k[None, :]
        b_q = tl.load(q + p_i, mask=m_ik, other=0.).to(tl.float32)
        b_g = tl.load(gc + p_i, mask=m_ik, other=0.)
        b_A += _diag_part(k, gc, b_q, b_g, t0, o_k, m_k, T, H, K, BC)
    b_A = tl.where(o_c[:, None] >= o_c[None, :], b_A * scale, 0.)
    tl.store(p_A, b_A, mask=m_i[:, None])


@triton.jit
def _diag_part(
    k, gc,              # pointers to token 0 of this (b, h) in [B,T,H,K] k, gc
    b_q, b_g,           # [BC, BK] fp32 q and gc of the block's rows for one K block
    t0, o_k, m_k, T, H: tl.constexpr, K: tl.constexpr, BC: tl.constexpr,
):
    """One K block's share of a diagonal block, unscaled and unmasked: column j is
    sum_k q_t k_(t0+j) e^(-|b_t - b_(t0+j)|), row t0 + j of k and gc read as vectors."""
    o_c = tl.arange(0, BC)
    b_A = tl.zeros([BC, BC], dtype=tl.float32)
    for j in range(0, BC):
        m_j = m_k & ((o_k * 0 + t0 + j) < T)
        b_kj = tl.load(k + (t0 + j) * (H * K) + o_k, mask=m_j, other=0.).to(tl.float32)
        b_gj = tl.load(gc + (t0 + j) * (H * K) + o_k, mask=m_j, other=0.)
        b_a = tl.sum(b_q * b_kj[None, :] * tl.exp(-tl.abs(b_g - b_gj[None, :])), axis=1)
        b_A += tl.where(o_c[None, :] == j, b_a[:, None], 0.)
    return b_A


# [64,64] fp32 score tile + [64,BK] q/k/gc tiles; sm_90 report in the README
@autotuned(configs((32, 4, 2), (64, 8, 2), (32, 8, 1), names=("BK",)),
           key=("K", "V", "WITH_O", "DIAG_SUB", "HI_PREC"))   # each variant tunes apart
@triton.jit
def _fwd_A_v2_kernel(
    q, k, gc,           # [B,T,H,K] q, k and the chunk-local cumulative gate (fp32)
    A,                  # [B,T,H,BT] fp32 out: A[t, s] = scale sum_k q_tk k_sk e^(b_tk - b_sk), s<=t
    v, h, o,            # WITH_O only: [B,T,H,V] v, [B,N,H,K,V] states, [B,T,H,V] output
    scale, T, H: tl.constexpr, K: tl.constexpr, V: tl.constexpr,
    BT: tl.constexpr, BC: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
    PREC: tl.constexpr, WITH_O: tl.constexpr, DIAG_SUB: tl.constexpr,
    HI_PREC: tl.constexpr = False,
):
    """All intra scores of one chunk. Off-diagonal sub-chunk blocks (i > j), with r_i = b
    at the first row of sub-chunk i:  A_ij = (q_i e^(b_i - r_i)) (k_j e^(r_i - b_j))^T.
    Diagonal blocks: A[t, start(t) + j] = sum_k q_t k_s e^(b_t - b_s), looped over j.
    WITH_O (variant v4): then o = (scale q e^b) h[n] + A v as in chunk._fwd_o, with A
    read back from the rows this program just stored (after a CTA barrier).
    DIAG_SUB (variant v7): the diagonal blocks one sub-chunk at a time (_diag_scores)
    instead of the [64, BK] partner-row gathers.
    HI_PREC (variant v11): the off-diagonal dots take their fp32 factors (tf32 on tensor
    cores for bf16/fp16 inputs, not rounded to the input dtype), and A v takes A as
    hi + lo parts (_dot_hl)."""
    i_n, i_bh = tl.program_id(0), tl.program_id(1)
    i_b, i_h = i_bh // H, i_bh % H
    NS: tl.constexpr = BT // BC
    base = (i_b * T * H + i_h).to(tl.int64)
    # pointers to token 0 of this (b, h): in-sequence offsets below stay int32
    q += base * K
    k += base * K
    gc += base * K
    A += base * BT
    o_t = tl.arange(0, BT)
    o_c = tl.arange(0, BC)
    t = i_n * BT + o_t
    m_t = t < T
    o_blk = o_t // BC                                   # sub-chunk of each row
    o_r = o_t % BC                                      # row inside its sub-chunk
    t_ref = i_n * BT + o_blk * BC                       # first row of that sub-chunk
    b_A = tl.zeros([BT, BT], dtype=tl.float32)          # off-diagonal blocks
    b_D = tl.zeros([BT, BC], dtype=tl.float32)          # b_D[t, j] = A[t, start(t) + j]
    for i_k in range(0, tl.cdiv(K, BK)):
        o_k = i_k * BK + tl.arange(0, BK)
        m_k = o_k < K
        m_tk = m_t[:, None] & m_k[None, :]
        p_tk = t[:, None] * (H * K) + o_k[None, :]
        b_q = tl.load(q + p_tk, mask=m_tk, other=0.).to(tl.float32)
        b_k = tl.load(k + p_tk, mask=m_tk, other=0.).to(tl.float32)
        b_g = tl.load(gc + p_tk, mask=m_tk, other=0.)
        b_R = tl.load(gc + t_ref[:, None] * (H * K) + o_k[None, :], mask=m_tk, other=0.)
        b_qd = b_q * tl.exp(tl.minimum(b_g - b_R, 0.)) * scale
        for i in range(1, NS):
            t_i = tl.minimum(i_n * BT + i * BC, T - 1)     # past T: its rows are 0 anyway
            b_ri = tl.load(gc + t_i * (H * K) + o_k, mask=m_k, other=0.)
            b_kd = tl.where((o_t < i * BC)[:, None],
                            b_k * tl.exp(tl.minimum(b_ri[None, :] - b_g, 0.)), 0.)
            b_qi = tl.where((o_blk == i)[:, None], b_qd, 0.)
            if HI_PREC:
                b_A += tl.dot(b_qi, tl.trans(b_kd), input_precision=PREC)
            else:
                b_A += tl.dot(b_qi.to(q.dtype.element_ty), tl.trans(b_kd.to(k.dtype.element_ty)),
                              input_precision=PREC)
        if not DIAG_SUB:
            for j in range(0, BC):
                s = t_ref + j                            # partner row of each row
                m_sk = (s < T)[:, None] & m_k[None, :]
                p_s = s[:, None] * (H * K) + o_k[None, :]
                b_ks = tl.load(k + p_s, mask=m_sk, other=0.).to(tl.float32)
                b_gs = tl.load(gc + p_s, mask=m_sk, other=0.)
                b_a = tl.sum(b_q * b_ks * tl.exp(-tl.abs(b_g - b_gs)), axis=1)    # [BT]
                b_D += tl.where(o_c[None, :] == j, b_a[:, None], 0.)
    # disjoint stores: everything but the diagonal blocks (zeros above them), then those
    m_off = m_t[:, None] & (o_blk[:, None] != (o_t // BC)[None, :])
    tl.store(A + t[:, None] * (H * BT) + o_t[None, :], b_A, mask=m_off)
    if DIAG_SUB:
        for i in range(0, NS):
            t_d = i_n * BT + i * BC
            if t_d < T:
                _diag_scores(q, k, gc, A + (t_d + o_c)[:, None] * (H * BT) + i * BC + o_c[None, :],
                             t_d, T, scale, H, K, BC, BK)
    else:
        b_D = tl.where(o_c[None, :] <= o_r[:, None], b_D * scale, 0.)
        tl.store(A + t[:, None] * (H * BT) + (o_blk * BC)[:, None] + o_c[None, :], b_D,
                 mask=m_t[:, None])
    if WITH_O:
        tl.debug_barrier()          # every thread's A stores before any thread's reload
        v += base * V
        o += base * V
        N = tl.cdiv(T, BT)
        p_hc = h + ((i_b * N + i_n) * H + i_h).to(tl.int64) * K * V
        b_Af = tl.load(A + t[:, None] * (H * BT) + o_t[None, :], mask=m_t[:, None], other=0.)
        for i_v in range(0, tl.cdiv(V, BV)):
            o_v = i_v * BV + tl.arange(0, BV)
            m_v = o_v < V
            b_o = tl.zeros([BT, BV], dtype=tl.float32)
            for i_k in range(0, tl.cdiv(K, BK)):
                o_k = i_k * BK + tl.arange(0, BK)
                m_tk = m_t[:, None] & (o_k[None, :] < K)
                p_tk = t[:, None] * (H * K) + o_k[None, :]
                b_q = tl.load(q + p_tk, mask=m_tk, other=0.).to(tl.float32)
                b_g = tl.load(gc + p_tk, mask=m_tk, other=0.)
                b_qd = (b_q * tl.exp(b_g) * scale).to(q.dtype.element_ty)
                b_h = tl.load(p_hc + o_k[:, None] * V + o_v[None, :],
                              mask=(o_k[:, None] < K) & m_v[None, :], other=0.)
                b_o += tl.dot(b_qd, b_h.to(q.dtype.element_ty), input_precision=PREC)
            p_v = t[:, None] * (H * V) + o_v[None, :]
            m_tv = m_t[:, None] & m_v[None, :]
            b_v = tl.load(v + p_v, mask=m_tv, other=0.)
            if HI_PREC:
                b_o += _dot_hl(b_Af, b_v, PREC)
            else:
                b_o += tl.dot(b_Af.to(v.dtype.element_ty), b_v, input_precision=PREC)
            tl.store(o + p_v, b_o.to(o.dtype.element_ty), mask=m_tv)


# ----------------------------------------------------------------------------- backward
# no spills in the sm_90 report: 248 / 254 / 128 (16 warps: 16 warps per SM) / 218
# registers; BK 32 at 4 warps and BK 64 at 8 or 16 warps spilled 150-340 bytes
@autotuned(configs((32, 64, 8, 2), (16, 64, 4, 2), (32, 64, 16, 1), (16, 64, 8, 2)))
@triton.jit
def _bwd_dqk_v2_kernel(
    q, k, v, gc, h, do, dh, dA,     # inputs (chunk.py)
    dq, dk, dg,                     # [B,T,H,K] out
    scale, T, H: tl.constexpr, K: tl.constexpr, V: tl.constexpr,
    BT: tl.constexpr, BC: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
    PREC: tl.constexpr,
):
    """dq, dk, dg for one whole chunk and one K block.

    inter: dq = scale e^b (do h[n]^T),  dk = e^(b_C - b) (v dh[n]^T)        (64-row dots)
    intra, sub-chunk pairs: dq rows of i through r_i = b at the first row of i (one dot
    per i = 1..3); dk rows of i through r2_i = b at the last row of i (i = 0..2).
    intra, diagonal sub-chunks: pairwise, looped over the in-block offset j.
    gate: dg_t = sum_{u>=t in chunk} (q dq - k dk)_u + sum_v dh[n] * S_end, with the
    s == t terms (which cancel exactly in q dq - k dk) added to dq, dk after dg. S_end
    is not read: S_end = e^(b_C) h[n] + sum_s (k_s e^(b_C - b_s)) v_s^T gives
    sum_v dh[n] * S_end = e^(b_C) sum_v dh[n] * h[n] + sum_s k_s * dk_inter_s."""
    i_k, i_n, i_bh = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    i_b, i_h = i_bh // H, i_bh % H
    NS: tl.constexpr = BT // BC
    N = tl.cdiv(T, BT)
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
    dg += base * K
    o_t = tl.arange(0, BT)
    t = i_n * BT + o_t
    m_t = t < T
    o_blk = o_t // BC
    o_r = o_t % BC
    o_k = i_k * BK + tl.arange(0, BK)
    m_k = o_k < K
    m_tk = m_t[:, None] & m_k[None, :]
    p_tk = t[:, None] * (H * K) + o_k[None, :]
    t_last = tl.minimum(i_n * BT + BT, T) - 1
    b_last = tl.load(gc + t_last * (H * K) + o_k, mask=m_k, other=0.)
    # ---- inter-chunk terms, and d/d(b_C) of the state after the chunk (b_carry)
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
    p_dA = dA + t[:, None] * (H * BT) + o_t[None, :]        # [BT(t), BT(s)]
    # ---- dq from earlier sub-chunks: rows of i, through r_i (first row of i)
    t_ref = i_n * BT + o_blk * BC
    b_acc = tl.zeros([BT, BK], dtype=tl.float32)
    for i in range(1, NS):
        t_i = tl.minimum(i_n * BT + i * BC, T - 1)         # past T: its rows are 0 anyway
        b_ri = tl.load(gc + t_i * (H * K) + o_k, mask=m_k, other=0.)
        b_kd = tl.where((o_t < i * BC)[:, None],
                        b_k * tl.exp(tl.minimum(b_ri[None, :] - b_g, 0.)), 0.)
        b_dAi = tl.load(p_dA, mask=(m_t & (o_blk == i))[:, None] & (o_t < i * BC)[None, :],
                        other=0.)
        b_acc += tl.dot(b_dAi.to(k.dtype.element_ty), b_kd.to(k.dtype.element_ty),
                        input_precision=PREC)
    b_R = tl.load(gc + t_ref[:, None] * (H * K) + o_k[None, :], mask=m_tk, other=0.)
    b_dq += b_acc * tl.exp(tl.minimum(b_g - b_R, 0.)) * scale
    # ---- dk from later sub-chunks: rows of i, through r2_i (last row of i; if a later
    # row exists, i is full and r2_i is real, else nothing is kept)
    b_acc = tl.zeros([BT, BK], dtype=tl.float32)
    for i in range(0, NS - 1):
        t_r2 = tl.minimum(i_n * BT + i * BC + BC - 1, T - 1)
        b_r2 = tl.load(gc + t_r2 * (H * K) + o_k, mask=m_k, other=0.)
        b_qd = tl.where((o_t >= (i + 1) * BC)[:, None],
                        b_q * tl.exp(tl.minimum(b_g - b_r2[None, :], 0.)), 0.)
        b_dAi = tl.load(p_dA, mask=(m_t & (o_t >= (i + 1) * BC))[:, None] & (o_blk == i)[None, :],
                        other=0.)                           # [t, s]: s in sub-chunk i
        b_acc += tl.dot(tl.trans(b_dAi.to(q.dtype.element_ty)), b_qd.to(q.dtype.element_ty),
                        input_precision=PREC)
    t_ref2 = tl.minimum(t_ref + BC - 1, T - 1)
    b_R2 = tl.load(gc + t_ref2[:, None] * (H * K) + o_k[None, :], mask=m_tk, other=0.)
    b_dk += b_acc * tl.exp(tl.minimum(b_R2 - b_g, 0.)) * scale
    # ---- diagonal sub-chunks, pairwise: row t and s = start(t) + j, s < t for dq, s > t for dk
    # (own accumulators in the loads' layout: adding into the dot results' layout on
    # every step could cost a layout conversion per step)
    b_dqd = tl.zeros([BT, BK], dtype=tl.float32)
    b_dkd = tl.zeros([BT, BK], dtype=tl.float32)
    for j in range(0, BC):
        s = t_ref + j
        m_s = s < T
        m_sk = m_s[:, None] & m_k[None, :]
        p_s = s[:, None] * (H * K) + o_k[None, :]
        b_ks = tl.load(k + p_s, mask=m_sk, other=0.).to(tl.float32)
        b_qs = tl.load(q + p_s, mask=m_sk, other=0.).to(tl.float32)
        b_gs = tl.load(gc + p_s, mask=m_sk, other=0.)
        b_e = tl.exp(-tl.abs(b_g - b_gs))
        b_ats = tl.load(dA + t * (H * BT) + o_blk * BC + j, mask=m_t, other=0.)   # dA[t, s]
        b_ast = tl.load(dA + s * (H * BT) + o_t, mask=m_s, other=0.)               # dA[s, t]
        b_dqd += tl.where((o_r > j)[:, None], b_ats[:, None] * b_ks * b_e, 0.)
        b_dkd += tl.where((o_r < j)[:, None], b_ast[:, None] * b_qs * b_e, 0.)
    b_dq += b_dqd * scale
    b_dk += b_dkd * scale
    # ---- gate gradient: suffix sum inside the chunk, seeded with the state term
    b_x = tl.where(m_tk, b_q * b_dq - b_k * b_dk, 0.)
    b_dg = b_carry[None, :] + tl.sum(b_x, axis=0)[None, :] - tl.cumsum(b_x, axis=0) + b_x
    tl.store(dg + p_tk, b_dg.to(dg.dtype.element_ty), mask=m_tk)
    b_dAd = tl.load(dA + t * (H * BT) + o_t, mask=m_t, other=0.) * scale   # dA[t, t]
    b_dq += b_dAd[:, None] * b_k
    b_dk += b_dAd[:, None] * b_q
    tl.store(dq + p_tk, b_dq.to(dq.dtype.element_ty), mask=m_tk)
    tl.store(dk + p_tk, b_dk.to(dk.dtype.element_ty), mask=m_tk)


# ----------------------------------------------------------------------------- launchers
def gla_chunk_fwd_v2(q, k, v, g, h0, scale: float, fuse_o: bool = False,
                     diag_sub: bool = False, hi_prec: bool = False):
    """As chunk.gla_chunk_fwd: (o, final_state fp32, gc fp32, A fp32, h). hi_prec: the
    state pass and the fused scores + output kernel keep more bits (variant v11)."""
    B, T, H, K = q.shape
    V = v.shape[-1]
    N = cdiv(T, BT)
    prec = _dot_precision(q.dtype)
    gc = torch.empty(B, T, H, K, device=q.device, dtype=torch.float32)
    h = torch.empty(B, N, H, K, V, device=q.device, dtype=q.dtype)
    ht = torch.empty(B, H, K, V, device=q.device, dtype=torch.float32)
    _fwd_gc_kernel[lambda m: (cdiv(K, m["BK"]), N, B * H)](g, gc, T, H, K, BT=BT)
    _fwd_h_v2_kernel[lambda m: (cdiv(K, m["BK"]), cdiv(V, m["BV"]), B * H)](
        k, v, gc, h, h0, ht, T, H, K, V, BT=BT, HAS_H0=h0 is not None, PREC=prec,
        HI_PREC=hi_prec)
    A = torch.empty(B, T, H, BT, device=q.device, dtype=torch.float32)
    o = torch.empty_like(v)
    if fuse_o:
        _fwd_A_v2_kernel[(N, B * H)](q, k, gc, A, v, h, o, scale, T, H, K, V, BT=BT, BC=BC,
                                     BV=min(128, _pow2(V)), PREC=prec, WITH_O=True,
                                     DIAG_SUB=diag_sub, HI_PREC=hi_prec)
        return o, ht, gc, A, h
    _fwd_A_v2_kernel[(N, B * H)](q, k, gc, A, q, h, q, scale, T, H, K, K, BT=BT, BC=BC,
                                 BV=16, PREC=prec, WITH_O=False, DIAG_SUB=diag_sub)
    _fwd_o_v2_kernel[lambda m: (cdiv(V, m["BV"]), N, B * H)](
        q, v, gc, A, h, o, scale, T, H, K, V, BT=BT, PREC=prec)
    return o, ht, gc, A, h


def gla_chunk_fwd_v4(q, k, v, g, h0, scale: float):
    """v2 with the output computed by the score kernel (WITH_O): no A read-back pass."""
    return gla_chunk_fwd_v2(q, k, v, g, h0, scale, fuse_o=True)


def _pow2(n: int) -> int:
    return max(16, triton.next_power_of_2(n))


def gla_chunk_bwd_v2(q, k, v, gc, A, h, do, dht, ht, scale: float, g_dtype: torch.dtype):
    """As chunk.gla_chunk_bwd: (dq, dk, dv, dg, dh0 fp32)."""
    B, T, H, K = q.shape
    V = v.shape[-1]
    N = cdiv(T, BT)
    prec = _dot_precision(q.dtype)
    dh = torch.empty(B, N, H, K, V, device=q.device, dtype=q.dtype)
    dh0 = torch.empty(B, H, K, V, device=q.device, dtype=torch.float32)
    _bwd_dh_v2_kernel[lambda m: (cdiv(K, m["BK"]), cdiv(V, m["BV"]), B * H)](
        q, do, gc, dht, dh, dh0, scale, T, H, K, V, BT=BT, HAS_DHT=dht is not None, PREC=prec)
    dA = torch.empty(B, T, H, BT, device=q.device, dtype=torch.float32)
    dv = torch.empty_like(v)
    _bwd_dv_kernel[(N, B * H)](k, v, gc, A, do, dh, dA, dv, T, H, K, V, BT=BT, PREC=prec)
    dq, dk = torch.empty_like(q), torch.empty_like(k)
    dg = torch.empty(B, T, H, K, device=q.device, dtype=g_dtype)
    _bwd_dqk_v2_kernel[lambda m: (cdiv(K, m["BK"]), N, B * H)](
        q, k, v, gc, h, do, dh, dA, dq, dk, dg, scale, T, H, K, V, BT=BT, BC=BC, PREC=prec)
    return dq, dk, dv, dg, dh0
