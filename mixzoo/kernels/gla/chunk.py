"""Chunkwise GLA in Triton: jit kernels, then their host launchers.

Notation (README.md has the derivation). Chunks of BT=64 tokens, sub-chunks of BC=16.
gc = chunk-local cumulative log gate (b_t = sum of g from the chunk start to t, <= 0).
h[n] = state before chunk n, dh[n] = gradient of the state after chunk n.

Forward : _fwd_gc (gc) -> _fwd_h (h, final state) -> _fwd_Ao (intra-chunk scores A, o).
Backward: _bwd_dh (dh, dh0) -> _bwd_dv (dA, dv) -> _bwd_intra (intra-chunk dq, dk, fp32)
          -> _bwd_dqk (dq, dk, dg).
Every exponent the kernels take is <= 0 up to rounding (see README "stability").
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from mixzoo.kernels._common import cdiv, pick_configs

BT = 64   # chunk length: the state is materialised once per BT tokens
BC = 16   # sub-chunk length: the smallest tl.dot tile; pairwise decays only inside its halves


def configs(*specs, names=("BK", "BV")) -> list:
    """Autotune configs from (tile sizes..., num_warps, num_stages) tuples; one when
    interpreting."""
    return pick_configs([triton.Config(dict(zip(names, sp[:-2])), num_warps=sp[-2],
                                       num_stages=sp[-1]) for sp in specs])


def _fits(configs, nargs, **_):
    """Drop configs whose tiles exceed the head dims (padding only wastes work)."""
    dims = {"BK": nargs.get("K"), "BV": nargs.get("V"), "BD": nargs.get("D")}
    ok = [c for c in configs
          if all(dims.get(n) is None or c.kwargs[n] <= max(16, triton.next_power_of_2(dims[n]))
                 for n in c.kwargs)]
    return ok or configs[:1]


def autotuned(cfgs: list, key=("K", "V")):
    """@triton.autotune over `cfgs`, keyed on the head dims, pruned by `_fits`."""
    return triton.autotune(configs=cfgs, key=list(key),
                           prune_configs_by={"early_config_prune": _fits})


# Warps and stages were chosen offline from the sm_90 resource report (cuobjdump
# -res-usage, Triton 3.6 and 3.9): with 4 warps the 64-row tiles hit 255 registers and
# spill. Each list is short on purpose: every config is compiled and timed on first use.
# state passes (sequential over chunks): parallelism is (K/BK)(V/BV)BH programs; at
# BH = 64 the 64x64 tiles give 256 programs of ~160 registers (one per SM, two waves on
# 132 SMs), so smaller tiles that fit 2-3 programs per SM, and 3 stages (loads two chunks
# ahead), are offered too
STATE_CONFIGS = configs((64, 64, 8, 2), (32, 64, 8, 2), (32, 32, 4, 2), (64, 64, 8, 3))
# one-chunk tiles (_bwd_dv): the first two spill 16-24 bytes with Triton 3.9, none with 3.6
TILE_CONFIGS = configs((64, 64, 8, 2), (64, 128, 8, 1), (32, 128, 8, 1))


def _dot_precision(dtype: torch.dtype) -> str:
    # fp32 inputs: full-precision products (tests compare to 1e-5); else native bf16/fp16
    return "ieee" if dtype == torch.float32 else "tf32"


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


@autotuned(STATE_CONFIGS)
@triton.jit
def _fwd_h_kernel(
    k, v, gc,           # [B,T,H,K], [B,T,H,V] inputs, [B,T,H,K] fp32 chunk-local cumulative gate
    h,                  # [B,N,H,K,V] out: state before each chunk
    h0, ht,             # [B,H,K,V] fp32 initial state in / final state out
    T, H: tl.constexpr, K: tl.constexpr, V: tl.constexpr,
    BT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
    HAS_H0: tl.constexpr, PREC: tl.constexpr,
):
    """S <- exp(b_C) * S + (k * exp(b_C - b))^T v per chunk; stores S before each chunk."""
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
        b_kd = (b_k * tl.exp(tl.minimum(b_last[:, None] - b_gc, 0.))).to(k.dtype.element_ty)
        p_v = t[:, None] * (H * V) + o_v[None, :]
        b_v = tl.load(v + p_v, mask=(t[:, None] < T) & (o_v[None, :] < V), other=0.)
        b_h = b_h * tl.exp(b_last)[:, None] + tl.dot(b_kd, b_v, input_precision=PREC)
    tl.store(ht + i_bh.to(tl.int64) * K * V + p_hs, b_h, mask=m_kv)


# the pairwise [2, BC/2, BC/2, BK] tensor and the [BC, V] output set the registers:
# 107-153 with Triton 3.6 (BK 64 at 16 warps: half the K steps, one program per SM)
@autotuned(configs((32, 8, 2), (16, 4, 2), (64, 16, 2), names=("BK",)), key=("K", "V"))
@triton.jit
def _fwd_Ao_kernel(
    q, k, v, gc, h,     # [B,T,H,K] q, k; [B,T,H,V] v; fp32 cumulative gate; [B,N,H,K,V] states
    A,                  # [B,T,H,BT] fp32 out: A[t, s] = scale sum_k q_tk k_sk e^(b_tk - b_sk), s<=t
    o,                  # [B,T,H,V] out
    scale, T, H: tl.constexpr, K: tl.constexpr, V: tl.constexpr,
    BT: tl.constexpr, BC: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
    PREC: tl.constexpr,
):
    """Row block i (BC rows) of one chunk: its intra scores (all BT columns) and its output
    o_i = (scale q_i e^(b_i)) h[n] + A_i v.

    Earlier sub-chunks: with r = b at the first row of sub-chunk i, one dot
        A_i,<i = (q_i e^(b_i - r)) (k e^(r - b))^T,
    k e^(r - b) kept only on the rows before sub-chunk i (there the exponent is <= 0),
    so the columns of sub-chunk i and after come out 0. Diagonal block: pairwise
    e^(b_t - b_s) as one [BC, BC, BK] tensor, in fp32. BV covers all of V."""
    i_i, i_n, i_bh = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    i_b, i_h = i_bh // H, i_bh % H
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
    A += base * BT
    o += base * V
    p_h = h + ((i_b * N + i_n) * H + i_h).to(tl.int64) * K * V
    o_c = tl.arange(0, BC)
    o_t = tl.arange(0, BT)
    o_v = tl.arange(0, BV)
    m_v = o_v < V
    t_i = t0 + o_c
    m_i = t_i < T
    t_c = i_n * BT + o_t                                    # every row of the chunk
    m_e = o_t < i_i * BC                                    # rows before sub-chunk i (< T)
    BC2: tl.constexpr = BC // 2
    r8 = tl.minimum(t0 + BC2, T - 1)        # if the second half is padding, any real row
    b_A = tl.zeros([BC, BT], dtype=tl.float32)
    o_a = tl.arange(0, 2)
    b_Ax = tl.zeros([BC2, BC2], dtype=tl.float32)
    b_A3 = tl.zeros([2, BC2, BC2], dtype=tl.float32)
    b_o = tl.zeros([BC, BV], dtype=tl.float32)
    for i_k in range(0, tl.cdiv(K, BK)):
        o_k = i_k * BK + tl.arange(0, BK)
        m_k = o_k < K
        m_ik = m_i[:, None] & m_k[None, :]
        p_i = t_i[:, None] * (H * K) + o_k[None, :]
        b_q = tl.load(q + p_i, mask=m_ik, other=0.).to(tl.float32)
        b_k = tl.load(k + p_i, mask=m_ik, other=0.).to(tl.float32)
        b_gi = tl.load(gc + p_i, mask=m_ik, other=0.)
        # inter-chunk output: (scale q e^b) h[n]
        b_h = tl.load(p_h + o_k[:, None] * V + o_v[None, :], mask=m_k[:, None] & m_v[None, :],
                      other=0.)
        b_o += tl.dot((b_q * tl.exp(b_gi) * scale).to(q.dtype.element_ty),
                      b_h.to(q.dtype.element_ty), input_precision=PREC)
        # earlier sub-chunks (none for i = 0: then every row is masked; no branch, so the
        # loop pipeliner can prefetch these loads too)
        b_r = tl.load(gc + t0 * (H * K) + o_k, mask=m_k, other=0.)
        p_c = t_c[:, None] * (H * K) + o_k[None, :]
        m_ek = m_e[:, None] & m_k[None, :]
        b_kc = tl.load(k + p_c, mask=m_ek, other=0.).to(tl.float32)
        b_gc = tl.load(gc + p_c, mask=m_ek, other=0.)
        # masked rows: k = 0; min() only absorbs rounding on the kept rows
        b_kd = b_kc * tl.exp(tl.minimum(b_r[None, :] - b_gc, 0.))
        b_qd = b_q * tl.exp(tl.minimum(b_gi - b_r[None, :], 0.))
        b_A += tl.dot(b_qd.to(q.dtype.element_ty), tl.trans(b_kd.to(k.dtype.element_ty)),
                      input_precision=PREC)
        # diagonal block in halves of BC2 rows, every exponent <= 0: inside each half
        # pairwise e^(b_t - b_s) as a [2, BC2(t), BC2(s), BK] tensor; second half x first
        # half through r8 = b at row t0 + BC2, as a [BC2, BC2, BK] product
        b_q3 = tl.reshape(b_q, (2, BC2, BK))
        b_k3 = tl.reshape(b_k, (2, BC2, BK))
        b_g3 = tl.reshape(b_gi, (2, BC2, BK))
        b_e = tl.exp(tl.minimum(b_g3[:, :, None, :] - b_g3[:, None, :, :], 0.))
        b_A3 += tl.sum(b_q3[:, :, None, :] * b_k3[:, None, :, :] * b_e, axis=3)
        b_r8 = tl.load(gc + r8 * (H * K) + o_k, mask=m_k, other=0.)
        b_qx = tl.sum(tl.where(o_a[:, None, None] == 1, b_q3 * tl.exp(
            tl.minimum(b_g3 - b_r8[None, None, :], 0.)), 0.), axis=0)      # [BC2, BK] half 1
        b_kx = tl.sum(tl.where(o_a[:, None, None] == 0, b_k3 * tl.exp(
            tl.minimum(b_r8[None, None, :] - b_g3, 0.)), 0.), axis=0)      # [BC2, BK] half 0
        b_Ax += tl.sum(b_qx[:, None, :] * b_kx[None, :, :], axis=2)
    # halves -> [BC, BC]: block (a, b) is b_A3[a] when a == b, b_Ax for (1, 0), else 0
    b_Ad4 = tl.where(o_a[:, None, None, None] == o_a[None, None, :, None], b_A3[:, :, None, :],
                     tl.where((o_a[:, None, None, None] == 1) & (o_a[None, None, :, None] == 0),
                              b_Ax[None, :, None, :], 0.))
    b_Ad = tl.reshape(b_Ad4, (BC, BC))
    b_A = b_A * scale
    b_Ad = tl.where(o_c[:, None] >= o_c[None, :], b_Ad * scale, 0.)
    # columns of sub-chunk i come from b_Ad; b_A is 0 from there on (zeros above the
    # diagonal, so A may start uninitialised)
    m_off = (o_t < i_i * BC) | (o_t >= i_i * BC + BC)
    tl.store(A + t_i[:, None] * (H * BT) + o_t[None, :], b_A, mask=m_i[:, None] & m_off[None, :])
    tl.store(A + t_i[:, None] * (H * BT) + (i_i * BC + o_c)[None, :], b_Ad, mask=m_i[:, None])
    # intra-chunk output: A_i,<i v_<i + A_ii v_i
    b_vc = tl.load(v + t_c[:, None] * (H * V) + o_v[None, :], mask=m_e[:, None] & m_v[None, :],
                   other=0.)
    b_o += tl.dot(b_A.to(v.dtype.element_ty), b_vc, input_precision=PREC)
    p_vi = t_i[:, None] * (H * V) + o_v[None, :]
    m_iv = m_i[:, None] & m_v[None, :]
    b_vi = tl.load(v + p_vi, mask=m_iv, other=0.)
    b_o += tl.dot(b_Ad.to(v.dtype.element_ty), b_vi, input_precision=PREC)
    tl.store(o + p_vi, b_o.to(o.dtype.element_ty), mask=m_iv)


# ----------------------------------------------------------------------------- backward
@autotuned(STATE_CONFIGS)
@triton.jit
def _bwd_dh_kernel(
    q, do, gc,          # [B,T,H,K], [B,T,H,V], [B,T,H,K] fp32
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
    gc += base * K
    p_hs = o_k[:, None] * V + o_v[None, :]
    b_dh = tl.zeros([BK, BV], dtype=tl.float32)
    if HAS_DHT:
        b_dh += tl.load(dht + i_bh.to(tl.int64) * K * V + p_hs, mask=m_kv, other=0.)
    for i in range(N):
        n = N - 1 - i
        p_dh = dh + ((i_b * N + n) * H + i_h).to(tl.int64) * K * V
        tl.store(p_dh + p_hs, b_dh.to(dh.dtype.element_ty), mask=m_kv)
        t = n * BT + o_t
        m_kt = m_k[:, None] & (t[None, :] < T)
        p_kT = t[None, :] * (H * K) + o_k[:, None]
        t_last = tl.minimum(n * BT + BT, T) - 1
        b_last = tl.load(gc + t_last * (H * K) + o_k, mask=m_k, other=0.)
        b_q = tl.load(q + p_kT, mask=m_kt, other=0.).to(tl.float32)
        b_g = tl.load(gc + p_kT, mask=m_kt, other=0.)
        b_qd = (b_q * tl.exp(b_g) * scale).to(q.dtype.element_ty)
        p_do = t[:, None] * (H * V) + o_v[None, :]
        b_do = tl.load(do + p_do, mask=(t[:, None] < T) & (o_v[None, :] < V), other=0.)
        b_dh = b_dh * tl.exp(b_last)[:, None] + tl.dot(b_qd, b_do.to(q.dtype.element_ty),
                                                       input_precision=PREC)
    tl.store(dh0 + i_bh.to(tl.int64) * K * V + p_hs, b_dh, mask=m_kv)


@autotuned(TILE_CONFIGS)
@triton.jit
def _bwd_dv_kernel(
    k, v, gc, A, do, dh,    # inputs (see above)
    dA,                     # [B,T,H,BT] fp32 out: dA[t, s] = do_t . v_s for s <= t, else 0
    dv,                     # [B,T,H,V] out
    T, H: tl.constexpr, K: tl.constexpr, V: tl.constexpr,
    BT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr, PREC: tl.constexpr,
):
    """dv = A^T do + (k e^(b_C - b)) dh[n];  dA = do v^T (causal part), one chunk."""
    i_n, i_bh = tl.program_id(0), tl.program_id(1)
    i_b, i_h = i_bh // H, i_bh % H
    N = tl.cdiv(T, BT)
    base = (i_b * T * H + i_h).to(tl.int64)
    # pointers to token 0 of this (b, h): in-sequence offsets below stay int32
    k += base * K
    v += base * V
    gc += base * K
    A += base * BT
    do += base * V
    dA += base * BT
    dv += base * V
    o_t = tl.arange(0, BT)
    t = i_n * BT + o_t
    m_t = t < T
    t_last = tl.minimum(i_n * BT + BT, T) - 1
    p_dh = dh + ((i_b * N + i_n) * H + i_h).to(tl.int64) * K * V
    p_A = t[:, None] * (H * BT) + o_t[None, :]
    b_A = tl.load(A + p_A, mask=m_t[:, None], other=0.).to(v.dtype.element_ty)
    b_dA = tl.zeros([BT, BT], dtype=tl.float32)
    for i_v in range(0, tl.cdiv(V, BV)):
        o_v = i_v * BV + tl.arange(0, BV)
        m_tv = m_t[:, None] & (o_v[None, :] < V)
        p_v = t[:, None] * (H * V) + o_v[None, :]
        b_v = tl.load(v + p_v, mask=m_tv, other=0.)
        b_do = tl.load(do + p_v, mask=m_tv, other=0.).to(v.dtype.element_ty)
        b_dA += tl.dot(b_do, tl.trans(b_v), input_precision=PREC)
        b_dv = tl.dot(tl.trans(b_A), b_do, input_precision=PREC)
        for i_k in range(0, tl.cdiv(K, BK)):
            o_k = i_k * BK + tl.arange(0, BK)
            m_k = o_k < K
            m_tk = m_t[:, None] & m_k[None, :]
            p_k = t[:, None] * (H * K) + o_k[None, :]
            b_k = tl.load(k + p_k, mask=m_tk, other=0.).to(tl.float32)
            b_g = tl.load(gc + p_k, mask=m_tk, other=0.)
            b_last = tl.load(gc + t_last * (H * K) + o_k, mask=m_k, other=0.)
            b_kd = (b_k * tl.exp(b_last[None, :] - b_g)).to(k.dtype.element_ty)
            b_dh = tl.load(p_dh + o_k[:, None] * V + o_v[None, :],
                           mask=m_k[:, None] & (o_v[None, :] < V), other=0.)
            b_dv += tl.dot(b_kd, b_dh.to(k.dtype.element_ty), input_precision=PREC)
        tl.store(dv + p_v, b_dv.to(dv.dtype.element_ty), mask=m_tv)
    b_dA = tl.where(o_t[:, None] >= o_t[None, :], b_dA, 0.)
    tl.store(dA + p_A, b_dA, mask=m_t[:, None])


# intra dq/dk: <= 128 registers at 8 / 4 warps (sm_90 report), so 2-4 programs per SM
@autotuned(configs((32, 8, 2), (16, 4, 2), (32, 4, 2), names=("BK",)), key=("K",))
@triton.jit
def _bwd_intra_kernel(
    q, k, gc,           # [B,T,H,K] q, k and the chunk-local cumulative gate (fp32)
    dA,                 # [B,T,H,BT] fp32 dA[t, s] = do_t . v_s (s <= t)
    dqi, dki,           # [B,T,H,K] fp32 out: intra-chunk dq, dk without the s == t terms
    scale, T, H: tl.constexpr, K: tl.constexpr,
    BT: tl.constexpr, BC: tl.constexpr, BK: tl.constexpr, PREC: tl.constexpr,
):
    """Intra-chunk dq, dk of sub-chunk i (BC rows) for one K block.

    dq_t = scale sum_{s<t} dA_ts k_s e^(b_t - b_s),  dk_s = scale sum_{t>s} dA_ts q_t e^(b_t - b_s).
    Earlier sub-chunks (dq): one [BC, BT] x [BT, BK] dot through r = b at the first row
    of i, with k e^(r - b) kept only on rows before i (exponent <= 0 there).
    Later sub-chunks (dk): one dot through r2 = b at the last row of i, with q e^(b - r2)
    kept only on rows after i. Inside sub-chunk i: pairwise e^(b_t - b_s), [BC, BC, BK]."""
    i_ik, i_n, i_bh = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    i_b, i_h = i_bh // H, i_bh % H
    NS: tl.constexpr = BT // BC
    BC2: tl.constexpr = BC // 2
    i_i, i_k = i_ik % NS, i_ik // NS
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
    o_c = tl.arange(0, BC)
    o_t = tl.arange(0, BT)
    o_k = i_k * BK + tl.arange(0, BK)
    m_k = o_k < K
    t_i = t0 + o_c
    m_i = t_i < T
    m_ik = m_i[:, None] & m_k[None, :]
    t_c = i_n * BT + o_t                                    # every row of the chunk
    p_i = t_i[:, None] * (H * K) + o_k[None, :]
    p_c = t_c[:, None] * (H * K) + o_k[None, :]
    b_q = tl.load(q + p_i, mask=m_ik, other=0.).to(tl.float32)
    b_k = tl.load(k + p_i, mask=m_ik, other=0.).to(tl.float32)
    b_g = tl.load(gc + p_i, mask=m_ik, other=0.)
    # No branches on i below: the masks empty the parts a sub-chunk does not have (no
    # earlier rows for i = 0, no later ones for the last), and one basic block lets every
    # load of the program be issued up front.
    # dq from the sub-chunks before i, through r = b at row t0
    b_r = tl.load(gc + t0 * (H * K) + o_k, mask=m_k, other=0.)
    m_e = o_t < i_i * BC                                    # rows before t0 (all < T)
    m_ek = m_e[:, None] & m_k[None, :]
    b_kc = tl.load(k + p_c, mask=m_ek, other=0.).to(tl.float32)
    b_gc = tl.load(gc + p_c, mask=m_ek, other=0.)
    b_kd = b_kc * tl.exp(tl.minimum(b_r[None, :] - b_gc, 0.))    # masked rows: k = 0
    b_dAr = tl.load(dA + t_i[:, None] * (H * BT) + o_t[None, :],
                    mask=m_i[:, None] & m_e[None, :], other=0.)
    b_dq = tl.dot(b_dAr.to(k.dtype.element_ty), b_kd.to(k.dtype.element_ty),
                  input_precision=PREC)
    b_dq = b_dq * tl.exp(tl.minimum(b_g - b_r[None, :], 0.))     # padded rows: dot is 0
    # dk from the sub-chunks after i, through r2 = b at the last row of i (when later
    # rows exist, i is full and r2 is its real last row; else nothing is kept)
    b_r2 = tl.load(gc + tl.minimum(t0 + BC - 1, T - 1) * (H * K) + o_k, mask=m_k, other=0.)
    m_l = (o_t >= (i_i + 1) * BC) & (t_c < T)
    m_lk = m_l[:, None] & m_k[None, :]
    b_qc = tl.load(q + p_c, mask=m_lk, other=0.).to(tl.float32)
    b_gl = tl.load(gc + p_c, mask=m_lk, other=0.)
    b_qd = b_qc * tl.exp(tl.minimum(b_gl - b_r2[None, :], 0.))   # masked rows: q = 0
    b_dAc = tl.load(dA + t_c[:, None] * (H * BT) + (i_i * BC + o_c)[None, :],
                    mask=m_l[:, None], other=0.)                   # [BT, BC]
    b_dk = tl.dot(tl.trans(b_dAc.to(q.dtype.element_ty)), b_qd.to(q.dtype.element_ty),
                  input_precision=PREC)
    b_dk = b_dk * tl.exp(tl.minimum(b_r2[None, :] - b_g, 0.))
    # inside sub-chunk i, in fp32 (the nearest pairs carry most of the weight): halves
    # of BC2 rows, pairwise e^(b_t - b_s) for t > s inside each half, [2, BC2(t), BC2(s), BK]
    o_a = tl.arange(0, 2)[:, None]
    o_r = tl.arange(0, BC2)[None, :]
    t_h = t0 + o_a * BC2 + o_r                              # [2, BC2] token of (half, row)
    b_q3 = tl.reshape(b_q, (2, BC2, BK))
    b_k3 = tl.reshape(b_k, (2, BC2, BK))
    b_g3 = tl.reshape(b_g, (2, BC2, BK))
    p_dA3 = dA + t_h[:, :, None] * (H * BT) + i_i * BC + tl.arange(0, BC2)[None, None, :]
    b_dA3 = tl.load(p_dA3 + o_a[:, :, None] * BC2, mask=(t_h < T)[:, :, None], other=0.)
    b_dA3 = tl.where(o_r[:, :, None] > tl.arange(0, BC2)[None, None, :], b_dA3, 0.)
    b_e = tl.exp(tl.minimum(b_g3[:, :, None, :] - b_g3[:, None, :, :], 0.))
    b_dq3 = tl.sum(b_dA3[:, :, :, None] * b_k3[:, None, :, :] * b_e, axis=2)
    b_dk3 = tl.sum(b_dA3[:, :, :, None] * b_q3[:, :, None, :] * b_e, axis=1)
    # and the second half x the first through r8 = b at row t0 + BC2 (clamped to a real
    # row: if the second half is all padding its dA rows are 0): [BC2(t), BC2(s), BK]
    b_r8 = tl.load(gc + tl.minimum(t0 + BC2, T - 1) * (H * K) + o_k, mask=m_k, other=0.)
    a3 = tl.arange(0, 2)[:, None, None]
    b_eq = tl.sum(tl.where(a3 == 1, tl.exp(tl.minimum(b_g3 - b_r8[None, None, :], 0.)), 0.), 0)
    b_ek = tl.sum(tl.where(a3 == 0, tl.exp(tl.minimum(b_r8[None, None, :] - b_g3, 0.)), 0.), 0)
    b_qx = tl.sum(tl.where(a3 == 1, b_q3, 0.), axis=0) * b_eq          # [BC2, BK] half 1
    b_kx = tl.sum(tl.where(a3 == 0, b_k3, 0.), axis=0) * b_ek          # [BC2, BK] half 0
    t_x = t0 + BC2 + tl.arange(0, BC2)                      # rows of the second half
    b_dAx = tl.load(dA + t_x[:, None] * (H * BT) + i_i * BC + tl.arange(0, BC2)[None, :],
                    mask=(t_x < T)[:, None], other=0.)      # [BC2(t), BC2(s)]
    b_dqx = b_eq * tl.sum(b_dAx[:, :, None] * b_kx[None, :, :], axis=1)   # rows of half 1
    b_dkx = b_ek * tl.sum(b_dAx[:, :, None] * b_qx[:, None, :], axis=0)   # rows of half 0
    b_dq3 += tl.where(a3 == 1, b_dqx[None, :, :], 0.)
    b_dk3 += tl.where(a3 == 0, b_dkx[None, :, :], 0.)
    b_dq += tl.reshape(b_dq3, (BC, BK))
    b_dk += tl.reshape(b_dk3, (BC, BK))
    tl.store(dqi + p_i, b_dq * scale, mask=m_ik)
    tl.store(dki + p_i, b_dk * scale, mask=m_ik)


# 64-row tiles: 64x64 at 8 warps sits at ~255 registers (one program per SM), the
# 16-warp and the 32x128 tiles at ~128; BK=128 spills
@autotuned(configs((64, 64, 8, 2), (64, 64, 16, 2), (32, 128, 8, 1)))
@triton.jit
def _bwd_dqk_kernel(
    q, k, v, gc, h, do, dh, dA,     # inputs (see above)
    ht,                             # [B,H,K,V] fp32 final state (the state after the last chunk)
    dqi, dki,                       # [B,T,H,K] fp32 intra-chunk parts (_bwd_intra)
    dq, dk, dg,                     # [B,T,H,K] out
    scale, T, H: tl.constexpr, K: tl.constexpr, V: tl.constexpr,
    BT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr, PREC: tl.constexpr,
):
    """dq, dk, dg for one chunk (all BT rows) and one K block.

    inter: dq = scale e^b (do h[n]^T),  dk = e^(b_C - b) (v dh[n]^T), plus the intra parts.
    gate: dg_t = sum_{u>=t in chunk} (q dq - k dk)_u + sum_v dh[n] * S_end, a suffix sum
    inside the chunk only. The s == t terms (scale dA_tt k_t in dq_t, scale dA_tt q_t in
    dk_t) cancel exactly in q*dq - k*dk, so they are added after dg."""
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
    t_last = tl.minimum(i_n * BT + BT, T) - 1
    p_h = ((i_b * N + i_n) * H + i_h).to(tl.int64) * K * V
    # d/d(b_C) of the state after the chunk: sum_v dS_end * S_end (S_end = h[n+1] or ht)
    p_hn = p_h + H * K * V                                  # h[n+1], masked off at the end
    is_last = (o_k * 0 + i_n) == N - 1                      # [BK] (a tensor mask)
    b_dq = tl.zeros([BT, BK], dtype=tl.float32)
    b_dk = tl.zeros([BT, BK], dtype=tl.float32)
    b_carry = tl.zeros([BK], dtype=tl.float32)
    for i_v in range(0, tl.cdiv(V, BV)):
        o_v = i_v * BV + tl.arange(0, BV)
        m_v = o_v < V
        m_tv = m_t[:, None] & m_v[None, :]
        p_v = t[:, None] * (H * V) + o_v[None, :]
        b_do = tl.load(do + p_v, mask=m_tv, other=0.).to(q.dtype.element_ty)
        b_v = tl.load(v + p_v, mask=m_tv, other=0.)
        p_s = o_k[:, None] * V + o_v[None, :]               # [BK,BV] inside one state
        m_kv = m_k[:, None] & m_v[None, :]
        b_h = tl.load(h + p_h + p_s, mask=m_kv, other=0.).to(q.dtype.element_ty)
        b_dh = tl.load(dh + p_h + p_s, mask=m_kv, other=0.)
        b_dq += tl.dot(b_do, tl.trans(b_h), input_precision=PREC)
        b_dk += tl.dot(b_v.to(q.dtype.element_ty), tl.trans(b_dh.to(q.dtype.element_ty)),
                       input_precision=PREC)
        b_hn = tl.load(h + p_hn + p_s, mask=m_kv & (is_last == 0)[:, None],
                       other=0.).to(tl.float32)
        b_hn += tl.load(ht + i_bh.to(tl.int64) * K * V + p_s, mask=m_kv & is_last[:, None],
                        other=0.)
        b_carry += tl.sum(b_dh.to(tl.float32) * b_hn, axis=1)
    p_k = t[:, None] * (H * K) + o_k[None, :]
    b_q = tl.load(q + p_k, mask=m_tk, other=0.).to(tl.float32)
    b_k = tl.load(k + p_k, mask=m_tk, other=0.).to(tl.float32)
    b_g = tl.load(gc + p_k, mask=m_tk, other=0.)
    b_last = tl.load(gc + t_last * (H * K) + o_k, mask=m_k, other=0.)
    b_dq = tl.where(m_tk, b_dq * tl.exp(b_g) * scale, 0.)
    b_dq += tl.load(dqi + p_k, mask=m_tk, other=0.)
    b_dk = tl.where(m_tk, b_dk * tl.exp(b_last[None, :] - b_g), 0.)
    b_dk += tl.load(dki + p_k, mask=m_tk, other=0.)
    b_x = b_q * b_dq - b_k * b_dk
    b_dg = b_carry[None, :] + tl.sum(b_x, axis=0)[None, :] - tl.cumsum(b_x, axis=0) + b_x
    tl.store(dg + p_k, b_dg.to(dg.dtype.element_ty), mask=m_tk)
    b_dAd = tl.load(dA + t * (H * BT) + o_t, mask=m_t, other=0.) * scale   # dA_tt
    b_dq += b_dAd[:, None] * b_k
    b_dk += b_dAd[:, None] * b_q
    tl.store(dq + p_k, b_dq.to(dq.dtype.element_ty), mask=m_tk)
    tl.store(dk + p_k, b_dk.to(dk.dtype.element_ty), mask=m_tk)


# ----------------------------------------------------------------------------- launchers
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
        k, v, gc, h, h0, ht, T, H, K, V, BT=BT, HAS_H0=h0 is not None, PREC=prec)
    A = torch.empty(B, T, H, BT, device=q.device, dtype=torch.float32)
    o = torch.empty_like(v)
    _fwd_Ao_kernel[(BT // BC, N, B * H)](q, k, v, gc, h, A, o, scale, T, H, K, V, BT=BT, BC=BC,
                                         BV=max(16, triton.next_power_of_2(V)), PREC=prec)
    return o, ht, gc, A, h


def gla_chunk_bwd(q, k, v, gc, A, h, do, dht, ht, scale: float, g_dtype: torch.dtype):
    """Returns (dq, dk, dv, dg, dh0 fp32). dht/ht: final-state gradient and value or None."""
    B, T, H, K = q.shape
    V = v.shape[-1]
    N = cdiv(T, BT)
    prec = _dot_precision(q.dtype)
    dh = torch.empty(B, N, H, K, V, device=q.device, dtype=q.dtype)
    dh0 = torch.empty(B, H, K, V, device=q.device, dtype=torch.float32)
    _bwd_dh_kernel[lambda m: (cdiv(K, m["BK"]), cdiv(V, m["BV"]), B * H)](
        q, do, gc, dht, dh, dh0, scale, T, H, K, V, BT=BT, HAS_DHT=dht is not None, PREC=prec)
    dA = torch.empty(B, T, H, BT, device=q.device, dtype=torch.float32)
    dv = torch.empty_like(v)
    _bwd_dv_kernel[(N, B * H)](k, v, gc, A, do, dh, dA, dv, T, H, K, V, BT=BT, PREC=prec)
    dqi = torch.empty(B, T, H, K, device=q.device, dtype=torch.float32)
    dki = torch.empty_like(dqi)
    _bwd_intra_kernel[lambda m: (BT // BC * cdiv(K, m["BK"]), N, B * H)](
        q, k, gc, dA, dqi, dki, scale, T, H, K, BT=BT, BC=BC, PREC=prec)
    dq, dk = torch.empty_like(q), torch.empty_like(k)
    dg = torch.empty(B, T, H, K, device=q.device, dtype=g_dtype)
    _bwd_dqk_kernel[lambda m: (cdiv(K, m["BK"]), N, B * H)](
        q, k, v, gc, h, do, dh, dA, ht, dqi, dki, dq, dk, dg, scale, T, H, K, V, BT=BT,
        PREC=prec)
    return dq, dk, dv, dg, dh0
