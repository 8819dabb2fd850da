"""Chunkwise retention (scalar decay per head and token) in Triton: jit kernels, then
their host launchers.

Notation (README.md has the derivation). Chunks of BT=64 tokens. gc = chunk-local
cumulative log decay b_t (<= 0), one scalar per (b, t, h). h[n] = state before chunk n,
dh[n] = gradient of the state after chunk n. The decay between query t and key s of
one chunk is D_ts = e^(b_t - b_s) (s <= t): a [BT, BT] matrix, exponent <= 0, so no
sub-chunks are needed, unlike GLA.

Forward : _fwd_h (gc, h, final state) -> _fwd_o.
Backward: _bwd_dh (dh, dh0) -> _bwd_dqk (dq, dk, dg per K block) -> _bwd_dv.
Gates are read through strides, so a per-head g [H] is never expanded in memory.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from mixzoo.kernels._common import cdiv, next_power_of_2
from mixzoo.kernels.gla.chunk import STATE_CONFIGS, TILE_CONFIGS, autotuned, configs

BT = 64   # chunk length


def _dot_precision(dtype: torch.dtype) -> str:
    # fp32 inputs: full-precision products (tests compare to 1e-5); else native bf16/fp16
    return "ieee" if dtype == torch.float32 else "tf32"


# ----------------------------------------------------------------------------- forward
@autotuned(STATE_CONFIGS)
@triton.jit
def _fwd_h_kernel(
    k, v,               # [B,T,H,K], [B,T,H,V]
    g, sgb, sgt, sgh,   # log decay and its strides over (b, t, h) (0 for a per-head g)
    gc,                 # [B,T,H] fp32 out: chunk-local cumsum of g
    h,                  # [B,N,H,K,V] out: state before each chunk
    h0, ht,             # [B,H,K,V] fp32 initial state in / final state out
    T, H: tl.constexpr, K: tl.constexpr, V: tl.constexpr,
    BT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
    HAS_H0: tl.constexpr, PREC: tl.constexpr,
):
    """S <- e^(b_C) S + (k e^(b_C - b))^T v per chunk; stores S before each chunk."""
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
    gc += base
    p_hs = o_k[:, None] * V + o_v[None, :]
    b_h = tl.zeros([BK, BV], dtype=tl.float32)
    if HAS_H0:
        b_h += tl.load(h0 + i_bh.to(tl.int64) * K * V + p_hs, mask=m_kv, other=0.)
    for n in range(N):
        p_h = h + ((i_b * N + n) * H + i_h).to(tl.int64) * K * V
        tl.store(p_h + p_hs, b_h.to(h.dtype.element_ty), mask=m_kv)
        t = n * BT + o_t
        m_t = t < T
        b_g = tl.load(g + i_b.to(tl.int64) * sgb + t * sgt + i_h * sgh, mask=m_t, other=0.)
        b_gc = tl.cumsum(b_g.to(tl.float32), axis=0)                # [BT], padding g = 0
        if (i_k == 0) & (i_v == 0):
            tl.store(gc + t * H, b_gc, mask=m_t)
        b_last = tl.sum(tl.where(o_t == BT - 1, b_gc, 0.), axis=0)
        p_kT = t[None, :] * (H * K) + o_k[:, None]           # [BK,BT]
        b_k = tl.load(k + p_kT, mask=m_k[:, None] & m_t[None, :], other=0.).to(tl.float32)
        b_kd = (b_k * tl.exp(b_last - b_gc)[None, :]).to(k.dtype.element_ty)
        p_v = t[:, None] * (H * V) + o_v[None, :]
        b_v = tl.load(v + p_v, mask=m_t[:, None] & (o_v[None, :] < V), other=0.)
        b_h = b_h * tl.exp(b_last) + tl.dot(b_kd, b_v, input_precision=PREC)
    tl.store(ht + i_bh.to(tl.int64) * K * V + p_hs, b_h, mask=m_kv)


@autotuned(configs((64, 64, 8, 2), (64, 128, 8, 2)))
@triton.jit
def _fwd_o_kernel(
    q, k, v, gc, h,     # inputs as above
    o,                  # [B,T,H,V] out
    scale, T, H: tl.constexpr, K: tl.constexpr, V: tl.constexpr,
    BT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr, PREC: tl.constexpr,
):
    """o = scale e^b (q h[n]) + ((scale q k^T) * D) v for one chunk and one V block."""
    i_v, i_n, i_bh = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    i_b, i_h = i_bh // H, i_bh % H
    N = tl.cdiv(T, BT)
    base = (i_b * T * H + i_h).to(tl.int64)
    # pointers to token 0 of this (b, h): in-sequence offsets below stay int32
    q += base * K
    k += base * K
    v += base * V
    gc += base
    o += base * V
    o_t = tl.arange(0, BT)
    t = i_n * BT + o_t
    m_t = t < T
    o_v = i_v * BV + tl.arange(0, BV)
    m_v = o_v < V
    p_h = h + ((i_b * N + i_n) * H + i_h).to(tl.int64) * K * V
    b_o = tl.zeros([BT, BV], dtype=tl.float32)
    b_s = tl.zeros([BT, BT], dtype=tl.float32)
    for i_k in range(0, tl.cdiv(K, BK)):
        o_k = i_k * BK + tl.arange(0, BK)
        m_k = o_k < K
        b_q = tl.load(q + t[:, None] * (H * K) + o_k[None, :],
                      mask=m_t[:, None] & m_k[None, :], other=0.)
        b_kT = tl.load(k + t[None, :] * (H * K) + o_k[:, None],
                       mask=m_k[:, None] & m_t[None, :], other=0.)
        b_h = tl.load(p_h + o_k[:, None] * V + o_v[None, :], mask=m_k[:, None] & m_v[None, :],
                      other=0.)
        b_o += tl.dot(b_q, b_h.to(q.dtype.element_ty), input_precision=PREC)
        b_s += tl.dot(b_q, b_kT, input_precision=PREC)
    b_g = tl.load(gc + t * H, mask=m_t, other=0.)
    b_o = b_o * (tl.exp(b_g) * scale)[:, None]
    b_D = tl.exp(tl.minimum(b_g[:, None] - b_g[None, :], 0.))
    b_s = tl.where(o_t[:, None] >= o_t[None, :], b_s * b_D * scale, 0.)
    p_v = t[:, None] * (H * V) + o_v[None, :]
    m_tv = m_t[:, None] & m_v[None, :]
    b_v = tl.load(v + p_v, mask=m_tv, other=0.)
    b_o += tl.dot(b_s.to(v.dtype.element_ty), b_v, input_precision=PREC)
    tl.store(o + p_v, b_o.to(o.dtype.element_ty), mask=m_tv)


# ----------------------------------------------------------------------------- backward
@autotuned(STATE_CONFIGS)
@triton.jit
def _bwd_dh_kernel(
    q, do, gc,          # [B,T,H,K], [B,T,H,V], [B,T,H] fp32
    dht,                # [B,H,K,V] fp32 gradient of the final state (if HAS_DHT)
    dh,                 # [B,N,H,K,V] out: gradient of the state after each chunk
    dh0,                # [B,H,K,V] fp32 out: gradient of the initial state
    scale, T, H: tl.constexpr, K: tl.constexpr, V: tl.constexpr,
    BT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
    HAS_DHT: tl.constexpr, PREC: tl.constexpr,
):
    """Reverse pass: dS <- e^(b_C) dS + (scale q e^b)^T do, from the last chunk down."""
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
    q += base * K
    do += base * V
    gc += base
    p_hs = o_k[:, None] * V + o_v[None, :]
    b_dh = tl.zeros([BK, BV], dtype=tl.float32)
    if HAS_DHT:
        b_dh += tl.load(dht + i_bh.to(tl.int64) * K * V + p_hs, mask=m_kv, other=0.)
    for i in range(N):
        n = N - 1 - i
        p_dh = dh + ((i_b * N + n) * H + i_h).to(tl.int64) * K * V
        tl.store(p_dh + p_hs, b_dh.to(dh.dtype.element_ty), mask=m_kv)
        t = n * BT + o_t
        m_t = t < T
        b_g = tl.load(gc + t * H, mask=m_t, other=0.)
        b_last = tl.load(gc + (tl.minimum(n * BT + BT, T) - 1) * H)
        b_q = tl.load(q + t[None, :] * (H * K) + o_k[:, None],
                      mask=m_k[:, None] & m_t[None, :], other=0.).to(tl.float32)
        b_qd = (b_q * (tl.exp(b_g) * scale)[None, :]).to(q.dtype.element_ty)
        b_do = tl.load(do + t[:, None] * (H * V) + o_v[None, :],
                       mask=m_t[:, None] & (o_v[None, :] < V), other=0.)
        b_dh = b_dh * tl.exp(b_last) + tl.dot(b_qd, b_do.to(q.dtype.element_ty),
                                              input_precision=PREC)
    tl.store(dh0 + i_bh.to(tl.int64) * K * V + p_hs, b_dh, mask=m_kv)


@autotuned(configs((64, 8, 2), (128, 8, 1), names=("BV",)))
@triton.jit
def _bwd_dqk_kernel(
    q, k, v, gc, h, do, dh,     # inputs (see above)
    ht,                         # [B,H,K,V] fp32 final state (the state after the last chunk)
    dq, dk,                     # [B,T,H,K] out
    dgl,                        # [NK,B,T,H] fp32 out: this K block's share of dg
    scale, T, H: tl.constexpr, K: tl.constexpr, V: tl.constexpr,
    BT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr, PREC: tl.constexpr,
):
    """dq = scale e^b (do h[n]^T) + (dA*D) k,  dk = e^(b_C - b) (v dh[n]^T) + (dA*D)^T q,
    with dA = scale do v^T (causal); one chunk and one K block.
    dg_t = sum_{u>=t in chunk} sum_k (q dq - k dk)_u + <dh[n], S_end>: a suffix sum inside
    the chunk only (S_end = h[n+1], or the final state for the last chunk)."""
    i_k, i_n, i_bh = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    i_b, i_h = i_bh // H, i_bh % H
    N = tl.cdiv(T, BT)
    base = (i_b * T * H + i_h).to(tl.int64)
    # pointers to token 0 of this (b, h): in-sequence offsets below stay int32
    q += base * K
    k += base * K
    v += base * V
    gc += base
    do += base * V
    dq += base * K
    dk += base * K
    dgl += base
    o_t = tl.arange(0, BT)
    t = i_n * BT + o_t
    m_t = t < T
    o_k = i_k * BK + tl.arange(0, BK)
    m_k = o_k < K
    m_tk = m_t[:, None] & m_k[None, :]
    p_h = ((i_b * N + i_n) * H + i_h).to(tl.int64) * K * V
    b_dq = tl.zeros([BT, BK], dtype=tl.float32)
    b_dk = tl.zeros([BT, BK], dtype=tl.float32)
    b_dA = tl.zeros([BT, BT], dtype=tl.float32)
    b_st = tl.zeros([BK], dtype=tl.float32)                     # <dh[n], S_end> over this K block
    not_last = (o_k * 0 + i_n) < N - 1
    for i_v in range(0, tl.cdiv(V, BV)):
        o_v = i_v * BV + tl.arange(0, BV)
        m_v = o_v < V
        p_v = t[:, None] * (H * V) + o_v[None, :]
        b_do = tl.load(do + p_v, mask=m_t[:, None] & m_v[None, :], other=0.)
        b_do = b_do.to(q.dtype.element_ty)
        b_v = tl.load(v + p_v, mask=m_t[:, None] & m_v[None, :], other=0.)
        p_hT = p_h + o_k[None, :] * V + o_v[:, None]             # [BV,BK]
        m_vk = m_v[:, None] & m_k[None, :]
        b_hT = tl.load(h + p_hT, mask=m_vk, other=0.).to(q.dtype.element_ty)
        b_dhT = tl.load(dh + p_hT, mask=m_vk, other=0.).to(q.dtype.element_ty)
        b_hnT = tl.load(h + p_hT + H * K * V, mask=m_vk & not_last[None, :], other=0.)
        b_hnT = b_hnT.to(tl.float32) + tl.load(
            ht + i_bh.to(tl.int64) * K * V + o_k[None, :] * V + o_v[:, None],
            mask=m_vk & (not_last == 0)[None, :], other=0.)
        b_st += tl.sum(b_dhT.to(tl.float32) * b_hnT, axis=0)
        b_dA += tl.dot(b_do, tl.trans(b_v), input_precision=PREC)
        b_dq += tl.dot(b_do, b_hT, input_precision=PREC)
        b_dk += tl.dot(b_v, b_dhT, input_precision=PREC)
    b_g = tl.load(gc + t * H, mask=m_t, other=0.)
    b_last = tl.load(gc + (tl.minimum(i_n * BT + BT, T) - 1) * H)
    b_D = tl.exp(tl.minimum(b_g[:, None] - b_g[None, :], 0.))
    b_dA = b_dA * b_D * scale
    # the diagonal (s == t) adds dA_tt k_t to dq_t and dA_tt q_t to dk_t: it cancels
    # exactly in q.dq - k.dk, so it is kept out of the dg terms (no rounding noise there)
    b_dAd = tl.sum(tl.where(o_t[:, None] == o_t[None, :], b_dA, 0.), axis=1)       # [BT]
    b_dA = tl.where(o_t[:, None] > o_t[None, :], b_dA, 0.).to(q.dtype.element_ty)
    p_k = t[:, None] * (H * K) + o_k[None, :]
    b_q = tl.load(q + p_k, mask=m_tk, other=0.).to(tl.float32)
    b_k = tl.load(k + p_k, mask=m_tk, other=0.).to(tl.float32)
    b_dq = b_dq * (tl.exp(b_g) * scale)[:, None] + tl.dot(b_dA, b_k.to(q.dtype.element_ty),
                                                         input_precision=PREC)
    b_dk = b_dk * tl.exp(b_last - b_g)[:, None] + tl.dot(tl.trans(b_dA), b_q.to(q.dtype.element_ty),
                                                        input_precision=PREC)
    b_dk = tl.where(m_tk, b_dk, 0.)
    b_x = tl.sum(b_q * b_dq - b_k * b_dk, axis=1)                 # [BT]
    b_dgl = tl.sum(b_x, axis=0) - tl.cumsum(b_x, axis=0) + b_x + tl.sum(b_st, axis=0)
    tl.store(dq + p_k, (b_dq + b_dAd[:, None] * b_k).to(dq.dtype.element_ty), mask=m_tk)
    tl.store(dk + p_k, (b_dk + b_dAd[:, None] * b_q).to(dk.dtype.element_ty), mask=m_tk)
    tl.store(dgl + i_k.to(tl.int64) * (tl.num_programs(2) // H) * T * H + t * H,
             b_dgl, mask=m_t)


@autotuned(configs((64, 64, 8, 2), (64, 128, 8, 1)))
@triton.jit
def _bwd_dv_kernel(
    q, k, gc, do, dh,   # inputs (see above)
    dv,                 # [B,T,H,V] out
    scale, T, H: tl.constexpr, K: tl.constexpr, V: tl.constexpr,
    BT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr, PREC: tl.constexpr,
):
    """dv = ((scale q k^T) * D)^T do + (k e^(b_C - b)) dh[n] for one chunk and V block."""
    i_v, i_n, i_bh = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    i_b, i_h = i_bh // H, i_bh % H
    N = tl.cdiv(T, BT)
    base = (i_b * T * H + i_h).to(tl.int64)
    # pointers to token 0 of this (b, h): in-sequence offsets below stay int32
    q += base * K
    k += base * K
    gc += base
    do += base * V
    dv += base * V
    o_t = tl.arange(0, BT)
    t = i_n * BT + o_t
    m_t = t < T
    o_v = i_v * BV + tl.arange(0, BV)
    m_v = o_v < V
    p_dh = dh + ((i_b * N + i_n) * H + i_h).to(tl.int64) * K * V
    b_g = tl.load(gc + t * H, mask=m_t, other=0.)
    b_last = tl.load(gc + (tl.minimum(i_n * BT + BT, T) - 1) * H)
    b_kdec = tl.exp(b_last - b_g)                                   # [BT], <= 1
    b_dv = tl.zeros([BT, BV], dtype=tl.float32)
    b_sT = tl.zeros([BT, BT], dtype=tl.float32)                     # [s, t] = k_s . q_t
    for i_k in range(0, tl.cdiv(K, BK)):
        o_k = i_k * BK + tl.arange(0, BK)
        m_k = o_k < K
        b_k = tl.load(k + t[:, None] * (H * K) + o_k[None, :],
                      mask=m_t[:, None] & m_k[None, :], other=0.)
        b_qT = tl.load(q + t[None, :] * (H * K) + o_k[:, None],
                       mask=m_k[:, None] & m_t[None, :], other=0.)
        b_dh = tl.load(p_dh + o_k[:, None] * V + o_v[None, :], mask=m_k[:, None] & m_v[None, :],
                       other=0.)
        b_sT += tl.dot(b_k, b_qT, input_precision=PREC)
        b_kd = (b_k.to(tl.float32) * b_kdec[:, None]).to(k.dtype.element_ty)
        b_dv += tl.dot(b_kd, b_dh.to(k.dtype.element_ty), input_precision=PREC)
    b_DT = tl.exp(tl.minimum(b_g[None, :] - b_g[:, None], 0.))     # [s, t]: e^(b_t - b_s)
    b_sT = tl.where(o_t[:, None] <= o_t[None, :], b_sT * b_DT * scale, 0.)
    p_v = t[:, None] * (H * V) + o_v[None, :]
    m_tv = m_t[:, None] & m_v[None, :]
    b_do = tl.load(do + p_v, mask=m_tv, other=0.).to(k.dtype.element_ty)
    b_dv += tl.dot(b_sT.to(k.dtype.element_ty), b_do, input_precision=PREC)
    tl.store(dv + p_v, b_dv.to(dv.dtype.element_ty), mask=m_tv)


# ----------------------------------------------------------------------------- launchers
def _gate_strides(g: torch.Tensor, H: int) -> tuple[int, int, int]:
    """(b, t, h) strides of the log decay: [H] per head or [B,T,H] per token."""
    if g.dim() == 1:
        return 0, 0, g.stride(0)
    return g.stride(0), g.stride(1), g.stride(2)


def retention_chunk_fwd(q, k, v, g, h0, scale: float):
    """Returns (o, final_state fp32, gc fp32 [B,T,H], h); q/k/v contiguous [B,T,H,*]."""
    B, T, H, K = q.shape
    V = v.shape[-1]
    N = cdiv(T, BT)
    prec = _dot_precision(q.dtype)
    gc = torch.empty(B, T, H, device=q.device, dtype=torch.float32)
    h = torch.empty(B, N, H, K, V, device=q.device, dtype=q.dtype)
    ht = torch.empty(B, H, K, V, device=q.device, dtype=torch.float32)
    _fwd_h_kernel[lambda m: (cdiv(K, m["BK"]), cdiv(V, m["BV"]), B * H)](
        k, v, g, *_gate_strides(g, H), gc, h, h0, ht, T, H, K, V, BT=BT,
        HAS_H0=h0 is not None, PREC=prec)
    o = torch.empty_like(v)
    _fwd_o_kernel[lambda m: (cdiv(V, m["BV"]), N, B * H)](
        q, k, v, gc, h, o, scale, T, H, K, V, BT=BT, PREC=prec)
    return o, ht, gc, h


def retention_chunk_bwd(q, k, v, gc, h, do, dht, ht, scale: float):
    """Returns (dq, dk, dv, dg per token [B,T,H] fp32, dh0 fp32)."""
    B, T, H, K = q.shape
    V = v.shape[-1]
    N = cdiv(T, BT)
    BK = min(64, max(16, next_power_of_2(K)))   # fixed: dgl holds one slice per K block
    NK = cdiv(K, BK)
    prec = _dot_precision(q.dtype)
    dh = torch.empty(B, N, H, K, V, device=q.device, dtype=q.dtype)
    dh0 = torch.empty(B, H, K, V, device=q.device, dtype=torch.float32)
    _bwd_dh_kernel[lambda m: (cdiv(K, m["BK"]), cdiv(V, m["BV"]), B * H)](
        q, do, gc, dht, dh, dh0, scale, T, H, K, V, BT=BT, HAS_DHT=dht is not None, PREC=prec)
    dq, dk = torch.empty_like(q), torch.empty_like(k)
    dgl = torch.empty(NK, B, T, H, device=q.device, dtype=torch.float32)
    _bwd_dqk_kernel[(NK, N, B * H)](
        q, k, v, gc, h, do, dh, ht, dq, dk, dgl, scale, T, H, K, V,
        BT=BT, BK=BK, PREC=prec)
    dv = torch.empty_like(v)
    _bwd_dv_kernel[lambda m: (cdiv(V, m["BV"]), N, B * H)](
        q, k, gc, do, dh, dv, scale, T, H, K, V, BT=BT, PREC=prec)
    dg = dgl.sum(0) if NK > 1 else dgl[0]                            # [B,T,H]
    return dq, dk, dv, dg, dh0
