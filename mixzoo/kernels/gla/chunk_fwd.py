"""Chunkwise GLA forward in Triton: the scores + output kernel and the forward launcher.

Inside a chunk with b_t the chunk-local cumulative gate (non-increasing, b_0 at its first
row), every score factorises through the first row:

    A_ts = scale sum_k (q_tk e^(b_tk - b_0k)) (k_sk e^(b_0k - b_sk))        (s <= t)

The first factor is in [e^-spread, 1] times q, the second in [1, e^spread] times k, with
spread = max_k (b_0k - b_Ck) over the chunk. Where spread <= SAFE_SPREAD (40: both
factors stay far inside fp32's range, e^40 ~ 2e17, and a product's relative rounding does
not depend on its scale), the whole 64 x 64 score block of a K block is ONE tensor-core
dot of fp32 factors (tf32 for bf16/fp16 inputs, ieee for fp32), with 2 * 64 * BK
exponentials instead of 64 * 16 * BK pairwise ones. Gates of typical size take this path
(logsigmoid(x)/16 gives spreads of a few units). Where the chunk's spread is larger
(strong decay), the chunk takes the sub-chunk scheme: sub-chunk pairs (i > j) through the
first row r_i of sub-chunk i, A_ij = (q_i e^(b_i - r_i)) (k_j e^(r_i - b_j))^T, and the
diagonal sub-chunks pairwise, e^(-|b_t - b_s|) per key in fp32; no exponent there is ever
positive. The choice is per chunk (spread over all K, from gc's first and last rows of
the chunk), so each of the two K loops is straight-line code.

The kernel keeps A in registers for the output: o = (scale q e^b) h[n] + A v, A v with A
as hi + lo parts (chunk._dot_hl), the inter-chunk product accumulated in the same K loop;
A is stored once for the backward.

Forward: chunk._fwd_gc (gc) -> chunk._fwd_h (states) -> _fwd_Ao (scores, output).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from mixzoo.kernels._common import cdiv

from .chunk import (BC, BT, SAFE_SPREAD, _chunk_spread, _dot_hl, _dot_precision, _fwd_gc_kernel,
                    _fwd_h_kernel, autotuned, configs)


@triton.jit
def _o_inter(b_q, b_g, p_hc, o_k, m_k, o_v, m_v, scale, V: tl.constexpr, PREC: tl.constexpr):
    """One K block's share of the inter-chunk output (scale q e^b) h[n] ([BT, BV])."""
    b_h = tl.load(p_hc + o_k[:, None] * V + o_v[None, :], mask=m_k[:, None] & m_v[None, :],
                  other=0.)
    return tl.dot((b_q * tl.exp(b_g) * scale).to(b_h.dtype), b_h, input_precision=PREC)


# One program per chunk and V block (BV < V: the scores are formed once per V block, only
# the first stores A). sm_90 (bf16, K = V = 128): 254 / 184 / 223 / 254 registers, no
# spills (BK 32 at 4 warps or BV 128 at 16 warps spilled 16-144 bytes: the [64, BV] fp32
# output accumulator lives throughout)
@autotuned(configs((32, 128, 8, 2), (16, 128, 8, 2), (32, 64, 8, 2), (16, 64, 4, 2)),
           key=("K", "V", "BH_HINT"))
@triton.jit
def _fwd_Ao_kernel(
    q, k, v, gc,        # [B,T,H,K] q, k; [B,T,H,V] v; [B,T,H,K] fp32 chunk-local cumulative gate
    h,                  # [B,N,H,K,V] state before each chunk
    A,                  # [B,T,H,BT] fp32 out: A[t, s] = scale sum_k q_tk k_sk e^(b_tk - b_sk), s<=t
    o,                  # [B,T,H,V] out
    scale, T, H: tl.constexpr, K: tl.constexpr, V: tl.constexpr,
    BT: tl.constexpr, BC: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
    PREC: tl.constexpr, SPREAD: tl.constexpr,
    BH_HINT: tl.constexpr,      # autotune key only: B*H rounded up to a power of 2
):
    """Scores and output of one chunk and V block: the one-dot scores if the chunk's
    spread (over all K) is <= SPREAD, else the sub-chunk scheme (off-diagonal sub-chunk
    pairs through reference rows into b_A, diagonal blocks pairwise into b_D)."""
    i_v, i_n, i_bh = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    i_b, i_h = i_bh // H, i_bh % H
    NS: tl.constexpr = BT // BC
    N = tl.cdiv(T, BT)
    base = (i_b * T * H + i_h).to(tl.int64)
    # pointers to token 0 of this (b, h): in-sequence offsets below stay int32
    q += base * K
    k += base * K
    v += base * V
    gc += base * K
    A += base * BT
    o += base * V
    o_t = tl.arange(0, BT)
    o_c = tl.arange(0, BC)
    t = i_n * BT + o_t
    m_t = t < T
    t0 = i_n * BT
    t_last = tl.minimum(t0 + BT, T) - 1
    o_blk = o_t // BC                                   # sub-chunk of each row
    t_ref = t0 + o_blk * BC                             # first row of that sub-chunk
    o_v = i_v * BV + tl.arange(0, BV)
    m_v = o_v < V
    p_hc = h + ((i_b * N + i_n) * H + i_h).to(tl.int64) * K * V
    b_o = tl.zeros([BT, BV], dtype=tl.float32)
    b_A = tl.zeros([BT, BT], dtype=tl.float32)          # scaled scores (lower part used)
    # one decision per chunk (over all K), so each K loop below is straight-line code
    if _chunk_spread(gc, t0, t_last, H, K, BK) <= SPREAD:
        for i_k in range(0, tl.cdiv(K, BK)):
            o_k = i_k * BK + tl.arange(0, BK)
            m_k = o_k < K
            m_tk = m_t[:, None] & m_k[None, :]
            p_tk = t[:, None] * (H * K) + o_k[None, :]
            b_q = tl.load(q + p_tk, mask=m_tk, other=0.).to(tl.float32)
            b_k = tl.load(k + p_tk, mask=m_tk, other=0.).to(tl.float32)
            b_g = tl.load(gc + p_tk, mask=m_tk, other=0.)
            b_o += _o_inter(b_q, b_g, p_hc, o_k, m_k, o_v, m_v, scale, V, PREC)
            b_0 = tl.load(gc + t0 * (H * K) + o_k, mask=m_k, other=0.)      # [BK] first row
            # padded rows: q = k = 0; the clamps keep their exponents finite
            b_qf = b_q * tl.exp(tl.minimum(b_g - b_0[None, :], 0.)) * scale
            b_kf = b_k * tl.exp(tl.minimum(b_0[None, :] - b_g, SPREAD))
            b_A += tl.dot(b_qf, tl.trans(b_kf), input_precision=PREC)
    else:
        b_D = tl.zeros([BT, BC], dtype=tl.float32)      # A[t, start(t) + j] / scale
        for i_k in range(0, tl.cdiv(K, BK)):
            o_k = i_k * BK + tl.arange(0, BK)
            m_k = o_k < K
            m_tk = m_t[:, None] & m_k[None, :]
            p_tk = t[:, None] * (H * K) + o_k[None, :]
            b_q = tl.load(q + p_tk, mask=m_tk, other=0.).to(tl.float32)
            b_k = tl.load(k + p_tk, mask=m_tk, other=0.).to(tl.float32)
            b_g = tl.load(gc + p_tk, mask=m_tk, other=0.)
            b_o += _o_inter(b_q, b_g, p_hc, o_k, m_k, o_v, m_v, scale, V, PREC)
            b_R = tl.load(gc + t_ref[:, None] * (H * K) + o_k[None, :], mask=m_tk, other=0.)
            b_qd = b_q * tl.exp(tl.minimum(b_g - b_R, 0.)) * scale
            for i in range(1, NS):
                t_i = tl.minimum(t0 + i * BC, T - 1)      # past T: its rows are 0 anyway
                b_ri = tl.load(gc + t_i * (H * K) + o_k, mask=m_k, other=0.)
                b_kd = tl.where((o_t < i * BC)[:, None],
                                b_k * tl.exp(tl.minimum(b_ri[None, :] - b_g, 0.)), 0.)
                b_qi = tl.where((o_blk == i)[:, None], b_qd, 0.)
                b_A += tl.dot(b_qi, tl.trans(b_kd), input_precision=PREC)
            for j in range(0, BC):
                s = t_ref + j                            # partner row of each row
                m_sk = (s < T)[:, None] & m_k[None, :]
                p_s = s[:, None] * (H * K) + o_k[None, :]
                b_ks = tl.load(k + p_s, mask=m_sk, other=0.).to(tl.float32)
                b_gs = tl.load(gc + p_s, mask=m_sk, other=0.)
                b_a = tl.sum(b_q * b_ks * tl.exp(-tl.abs(b_g - b_gs)), axis=1)    # [BT]
                b_D += tl.where(o_c[None, :] == j, b_a[:, None], 0.)
        # the diagonal blocks into the [t, s] layout: A[t, start(t) + j] += scale D[t, j]
        for j in range(0, BC):
            b_dj = tl.sum(tl.where(o_c[None, :] == j, b_D, 0.), axis=1) * scale     # [BT]
            b_A += tl.where(o_t[None, :] == (o_blk * BC + j)[:, None], b_dj[:, None], 0.)
    b_A = tl.where((o_t[:, None] >= o_t[None, :]) & m_t[:, None], b_A, 0.)
    if i_v == 0:
        tl.store(A + t[:, None] * (H * BT) + o_t[None, :], b_A, mask=m_t[:, None])
    p_v = t[:, None] * (H * V) + o_v[None, :]
    m_tv = m_t[:, None] & m_v[None, :]
    b_v = tl.load(v + p_v, mask=m_tv, other=0.)
    b_o += _dot_hl(b_A, b_v, PREC)
    tl.store(o + p_v, b_o.to(o.dtype.element_ty), mask=m_tv)


def gla_chunk_fwd(q, k, v, g, h0, scale: float):
    """Returns (o, final_state fp32, gc fp32, A fp32, h); all inputs contiguous [B,T,H,*]."""
    B, T, H, K = q.shape
    V = v.shape[-1]
    N = cdiv(T, BT)
    prec = _dot_precision(q.dtype)
    gc = torch.empty(B, T, H, K, device=q.device, dtype=torch.float32)
    h = torch.empty(B, N, H, K, V, device=q.device, dtype=q.dtype)
    ht = torch.empty(B, H, K, V, device=q.device, dtype=torch.float32)
    _fwd_gc_kernel[lambda m: (cdiv(K, m["BK"]), N, B * H)](g, gc, T, H, K, BT=BT)
    _fwd_h_kernel[lambda m: (cdiv(K, m["BK"]), cdiv(V, m["BV"]), B * H)](
        k, v, gc, h, h0, ht, T, H, K, V, BT=BT, HAS_H0=h0 is not None, PREC=prec,
        BH_HINT=triton.next_power_of_2(B * H))
    A = torch.empty(B, T, H, BT, device=q.device, dtype=torch.float32)
    o = torch.empty_like(v)
    _fwd_Ao_kernel[lambda m: (cdiv(V, m["BV"]), N, B * H)](
        q, k, v, gc, h, A, o, scale, T, H, K, V, BT=BT, BC=BC, PREC=prec, SPREAD=SAFE_SPREAD,
        BH_HINT=triton.next_power_of_2(B * H))
    return o, ht, gc, A, h
