"""Chunkwise GLA in Triton: jit kernels, then their host launchers.

Notation (README.md has the derivation). Chunks of BT=64 tokens, sub-chunks of BC=16.
gc = chunk-local cumulative log gate (b_t = sum of g from the chunk start to t, <= 0).
h[n] = state before chunk n, dh[n] = gradient of the state after chunk n.

Forward : _fwd_h (gc, h, final state) -> _fwd_A (intra-chunk scores) -> _fwd_o.
Backward: _bwd_dh (dh, dh0) -> _bwd_dv (dA, dv) -> _bwd_dqk (dq, dk, dg).
Every exponent the kernels take is <= 0 up to rounding (see README "stability").
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from mixzoo.kernels._common import cdiv, pick_configs

BT = 64   # chunk length: the state is materialised once per BT tokens
BC = 16   # sub-chunk length: the smallest tl.dot tile; pairwise decays only inside one
# largest decay spread over a chunk, max_k (b_first - b_last), for which variants v12/v13
# factorise all of a chunk's scores through its first row (chunk_v12.py docstring)
SAFE_SPREAD = 40.0


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
    return triton.autotune(configs=cfgs, key=list(key), prune_configs_by={"early_config_prune": _fits})


# Warps and stages were chosen offline from the sm_90 resource report (cuobjdump
# -res-usage): with 4 warps the 64-row tiles hit 255 registers and spill.
# state passes (sequential over chunks): parallelism is (K/BK)(V/BV)BH programs
STATE_CONFIGS = configs((64, 64, 8, 2), (32, 64, 8, 2))
# one-chunk tiles
TILE_CONFIGS = configs((64, 64, 8, 2), (64, 128, 8, 1))


def _dot_precision(dtype: torch.dtype) -> str:
    # fp32 inputs: full-precision products (tests compare to 1e-5); else native bf16/fp16
    return "ieee" if dtype == torch.float32 else "tf32"


@triton.jit
def _dot_hl(a, b, PREC: tl.constexpr):
    """a @ b for fp32 `a` and `b` in the input dtype, keeping ~16 bits of `a`: with b in
    bf16/fp16, a = hi + lo (both in b's dtype, lo the rounding residue) and two
    tensor-core dots; with fp32 b, one dot at PREC (ieee)."""
    if b.dtype == tl.float32:
        return tl.dot(a, b, input_precision=PREC)
    a_hi = a.to(b.dtype)
    a_lo = (a - a_hi.to(tl.float32)).to(b.dtype)
    return tl.dot(a_hi, b) + tl.dot(a_lo, b)


@triton.jit
def _chunk_spread(gc, t0, t_last, H: tl.constexpr, K: tl.constexpr, BK: tl.constexpr):
    """max over all K of b at row t0 minus b at row t_last (gc: pointer to token 0 of this
    (b, h)): >= 0, the largest exponent the first-row factorisation of a chunk meets."""
    spread = tl.max(tl.zeros([BK], dtype=tl.float32), axis=0)
    for i_k in range(0, tl.cdiv(K, BK)):
        o_k = i_k * BK + tl.arange(0, BK)
        m_k = o_k < K
        d = (tl.load(gc + t0 * (H * K) + o_k, mask=m_k, other=0.)
             - tl.load(gc + t_last * (H * K) + o_k, mask=m_k, other=0.))
        spread = tl.maximum(spread, tl.max(d, axis=0))
    return spread


# ----------------------------------------------------------------------------- forward
@autotuned(STATE_CONFIGS)
@triton.jit
def _fwd_h_kernel(
    k, v, g,            # [B,T,H,K], [B,T,H,V], [B,T,H,K] inputs (g = log gate)
    gc,                 # [B,T,H,K] fp32 out: chunk-local cumsum of g
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
    m_kv = (o_k[:, None] < K) & (o_v[None, :] < V)
    base = (i_b * T * H + i_h).to(tl.int64)
    # pointers to token 0 of this (b, h): in-sequence offsets below stay int32
    k += base * K
    v += base * V
    g += base * K
    gc += base * K
    p_hs = o_k[:, None] * V + o_v[None, :]           # [BK,BV] offsets inside one state
    b_h = tl.zeros([BK, BV], dtype=tl.float32)
    if HAS_H0:
        b_h += tl.load(h0 + i_bh.to(tl.int64) * K * V + p_hs, mask=m_kv, other=0.)
    for n in range(N):
        p_h = h + ((i_b * N + n) * H + i_h).to(tl.int64) * K * V
        tl.store(p_h + p_hs, b_h.to(h.dtype.element_ty), mask=m_kv)
        t = n * BT + o_t
        m_kt = (o_k[:, None] < K) & (t[None, :] < T)
        p_kT = t[None, :] * (H * K) + o_k[:, None]          # [BK,BT] (transposed)
        b_g = tl.load(g + p_kT, mask=m_kt, other=0.).to(tl.float32)
        b_gc = tl.cumsum(b_g, axis=1)                               # padding has g = 0
        if i_v == 0:
            tl.store(gc + p_kT, b_gc, mask=m_kt)
        b_last = tl.sum(tl.where(o_t[None, :] == BT - 1, b_gc, 0.), axis=1)   # [BK]
        b_k = tl.load(k + p_kT, mask=m_kt, other=0.).to(tl.float32)
        b_kd = (b_k * tl.exp(b_last[:, None] - b_gc)).to(k.dtype.element_ty)
        p_v = t[:, None] * (H * V) + o_v[None, :]
        b_v = tl.load(v + p_v, mask=(t[:, None] < T) & (o_v[None, :] < V), other=0.)
        b_h = b_h * tl.exp(b_last)[:, None] + tl.dot(b_kd, b_v, input_precision=PREC)
    tl.store(ht + i_bh.to(tl.int64) * K * V + p_hs, b_h, mask=m_kv)


@autotuned(configs((32, 4, 2), (16, 2, 2), names=("BK",)), key=("K",))
@triton.jit
def _fwd_A_kernel(
    q, k, gc,           # [B,T,H,K] q, k and the chunk-local cumulative gate (fp32)
    A,                  # [B,T,H,BT] fp32 out: A[t, s] = scale sum_k q_tk k_sk e^(b_tk - b_sk), s<=t
    scale, T, H: tl.constexpr, K: tl.constexpr,
    BT: tl.constexpr, BC: tl.constexpr, BK: tl.constexpr, PREC: tl.constexpr,
):
    """Row block i (BC rows) of one chunk's intra scores, sub-chunk by sub-chunk.

    Off-diagonal block (i, j<i): with r = b at the first row of sub-chunk i,
        A_ij = (q_i e^(b_i - r)) (k_j e^(r - b_j))^T,  both exponents <= 0.
    Diagonal block: pairwise e^(b_t - b_s) as one [BC, BC, BK] tensor, in fp32."""
    i_i, i_n, i_bh = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    i_b, i_h = i_bh // H, i_bh % H
    NS: tl.constexpr = BT // BC
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
    # sub-chunks j < i: factorised through the reference row t0
    for j in range(0, i_i):
        b_A = tl.zeros([BC, BC], dtype=tl.float32)
        t_j = i_n * BT + j * BC + o_c
        for i_k in range(0, tl.cdiv(K, BK)):
            o_k = i_k * BK + tl.arange(0, BK)
            m_k = o_k < K
            p_i = t_i[:, None] * (H * K) + o_k[None, :]
            p_j = t_j[:, None] * (H * K) + o_k[None, :]
            m_ik = m_i[:, None] & m_k[None, :]
            b_r = tl.load(gc + t0 * (H * K) + o_k, mask=m_k, other=0.)
            b_q = tl.load(q + p_i, mask=m_ik, other=0.).to(tl.float32)
            b_gi = tl.load(gc + p_i, mask=m_ik, other=0.)
            b_k = tl.load(k + p_j, mask=m_k[None, :], other=0.).to(tl.float32)
            b_gj = tl.load(gc + p_j, mask=m_k[None, :], other=0.)
            b_qd = tl.where(m_ik, b_q * tl.exp(b_gi - b_r[None, :]) * scale, 0.)
            b_kd = b_k * tl.exp(b_r[None, :] - b_gj)
            b_A += tl.dot(b_qd.to(q.dtype.element_ty), tl.trans(b_kd.to(k.dtype.element_ty)),
                          input_precision=PREC)
        tl.store(p_A + j * BC, b_A, mask=m_i[:, None])
    # diagonal block, pairwise: [BC(t), BC(s), BK] decays e^(b_t - b_s), exponent <= 0
    b_A = tl.zeros([BC, BC], dtype=tl.float32)
    for i_k in range(0, tl.cdiv(K, BK)):
        o_k = i_k * BK + tl.arange(0, BK)
        m_ik = m_i[:, None] & (o_k[None, :] < K)
        p_i = t_i[:, None] * (H * K) + o_k[None, :]
        b_q = tl.load(q + p_i, mask=m_ik, other=0.).to(tl.float32)
        b_k = tl.load(k + p_i, mask=m_ik, other=0.).to(tl.float32)
        b_gi = tl.load(gc + p_i, mask=m_ik, other=0.)
        b_e = tl.exp(tl.minimum(b_gi[:, None, :] - b_gi[None, :, :], 0.))
        b_A += tl.sum(b_q[:, None, :] * b_k[None, :, :] * b_e, axis=2)
    b_A = tl.where(o_c[:, None] >= o_c[None, :], b_A * scale, 0.)
    tl.store(p_A + i_i * BC, b_A, mask=m_i[:, None])
    # sub-chunks j > i are above the diagonal: zeros, so A may start uninitialised
    for j in range(i_i + 1, NS):
        tl.store(p_A + j * BC, tl.zeros([BC, BC], dtype=tl.float32), mask=m_i[:, None])


@autotuned(TILE_CONFIGS)
@triton.jit
def _fwd_o_kernel(
    q, v, gc, A, h,     # inputs as above; h [B,N,H,K,V] states before each chunk
    o,                  # [B,T,H,V] out
    scale, T, H: tl.constexpr, K: tl.constexpr, V: tl.constexpr,
    BT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr, PREC: tl.constexpr,
):
    """o = (scale q * e^b) h[n] + A v for one chunk and one V block."""
    i_v, i_n, i_bh = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    i_b, i_h = i_bh // H, i_bh % H
    N = tl.cdiv(T, BT)
    base = (i_b * T * H + i_h).to(tl.int64)
    # pointers to token 0 of this (b, h): in-sequence offsets below stay int32
    q += base * K
    v += base * V
    gc += base * K
    A += base * BT
    o += base * V
    o_t = tl.arange(0, BT)
    t = i_n * BT + o_t
    m_t = t < T
    o_v = i_v * BV + tl.arange(0, BV)
    m_v = o_v < V
    p_h = h + ((i_b * N + i_n) * H + i_h).to(tl.int64) * K * V
    b_o = tl.zeros([BT, BV], dtype=tl.float32)
    for i_k in range(0, tl.cdiv(K, BK)):
        o_k = i_k * BK + tl.arange(0, BK)
        m_tk = m_t[:, None] & (o_k[None, :] < K)
        p_q = t[:, None] * (H * K) + o_k[None, :]
        b_q = tl.load(q + p_q, mask=m_tk, other=0.).to(tl.float32)
        b_g = tl.load(gc + p_q, mask=m_tk, other=0.)
        b_qd = (b_q * tl.exp(b_g) * scale).to(q.dtype.element_ty)
        b_h = tl.load(p_h + o_k[:, None] * V + o_v[None, :],
                      mask=(o_k[:, None] < K) & m_v[None, :], other=0.)
        b_o += tl.dot(b_qd, b_h.to(q.dtype.element_ty), input_precision=PREC)
    b_A = tl.load(A + t[:, None] * (H * BT) + o_t[None, :], mask=m_t[:, None], other=0.)
    p_v = t[:, None] * (H * V) + o_v[None, :]
    m_tv = m_t[:, None] & m_v[None, :]
    b_v = tl.load(v + p_v, mask=m_tv, other=0.)
    b_o += tl.dot(b_A.to(v.dtype.element_ty), b_v, input_precision=PREC)
    tl.store(o + p_v, b_o.to(o.dtype.element_ty), mask=m_tv)


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
    HAS_DHT: tl.constexpr, PREC: tl.constexpr, HI_PREC: tl.constexpr = False,
    BH_HINT: tl.constexpr = 0,      # autotune key only (v13): B*H rounded up to a power of 2
):
    """Reverse pass: dS <- e^(b_C) dS + (scale q e^b)^T do, from the last chunk down.
    HI_PREC: (scale q e^b) enters the dot as hi + lo parts (_dot_hl), not rounded once."""
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
        p_do = t[:, None] * (H * V) + o_v[None, :]
        b_do = tl.load(do + p_do, mask=(t[:, None] < T) & (o_v[None, :] < V), other=0.)
        if HI_PREC:
            b_dh = b_dh * tl.exp(b_last)[:, None] + _dot_hl(b_q * tl.exp(b_g) * scale,
                                                            b_do.to(q.dtype.element_ty), PREC)
        else:
            b_qd = (b_q * tl.exp(b_g) * scale).to(q.dtype.element_ty)
            b_dh = b_dh * tl.exp(b_last)[:, None] + tl.dot(b_qd, b_do.to(q.dtype.element_ty),
                                                           input_precision=PREC)
    tl.store(dh0 + i_bh.to(tl.int64) * K * V + p_hs, b_dh, mask=m_kv)


@autotuned(TILE_CONFIGS, key=("K", "V", "HI_PREC"))
@triton.jit
def _bwd_dv_kernel(
    k, v, gc, A, do, dh,    # inputs (see above)
    dA,                     # [B,T,H,BT] fp32 out: dA[t, s] = do_t . v_s for s <= t, else 0
    dv,                     # [B,T,H,V] out
    T, H: tl.constexpr, K: tl.constexpr, V: tl.constexpr,
    BT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr, PREC: tl.constexpr,
    HI_PREC: tl.constexpr = False,
):
    """dv = A^T do + (k e^(b_C - b)) dh[n];  dA = do v^T (causal part), one chunk.
    HI_PREC: A^T do with A as hi + lo parts (_dot_hl) instead of A rounded to v's dtype."""
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
    b_A = tl.load(A + p_A, mask=m_t[:, None], other=0.)
    if not HI_PREC:
        b_A = b_A.to(v.dtype.element_ty)
    b_dA = tl.zeros([BT, BT], dtype=tl.float32)
    for i_v in range(0, tl.cdiv(V, BV)):
        o_v = i_v * BV + tl.arange(0, BV)
        m_tv = m_t[:, None] & (o_v[None, :] < V)
        p_v = t[:, None] * (H * V) + o_v[None, :]
        b_v = tl.load(v + p_v, mask=m_tv, other=0.)
        b_do = tl.load(do + p_v, mask=m_tv, other=0.).to(v.dtype.element_ty)
        b_dA += tl.dot(b_do, tl.trans(b_v), input_precision=PREC)
        if HI_PREC:
            b_dv = _dot_hl(tl.trans(b_A), b_do, PREC)
        else:
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


@autotuned(configs((32, 64, 4, 2), (32, 64, 8, 2)))
@triton.jit
def _bwd_dqk_kernel(
    q, k, v, gc, h, do, dh, dA,     # inputs (see above)
    ht,                             # [B,H,K,V] fp32 final state (the state after the last chunk)
    dq, dk, dg,                     # [B,T,H,K] out
    scale, T, H: tl.constexpr, K: tl.constexpr, V: tl.constexpr,
    BT: tl.constexpr, BC: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
    PREC: tl.constexpr,
):
    """dq, dk for one chunk and one K block, sub-chunk by sub-chunk (unrolled).

    inter: dq = scale e^b (do h[n]^T),  dk = e^(b_C - b) (v dh[n]^T)
    intra: dq_t = scale sum_{s<=t} dA_ts k_s e^(b_t - b_s),
           dk_s = scale sum_{t>=s} dA_ts q_t e^(b_t - b_s),
    factorised through a reference row between two sub-chunks (exponents <= 0); inside
    the diagonal sub-chunk the decay is pairwise, one [BC, BC, BK] tensor shared by dq
    and dk.
    gate: dg_t = sum_{u>=t in chunk} (q dq - k dk)_u + sum_v dh[n] * S_end, a suffix sum
    inside the chunk only (sub-chunks run last to first, carrying the sum)."""
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
    o_c = tl.arange(0, BC)
    o_k = i_k * BK + tl.arange(0, BK)
    m_k = o_k < K
    t_last = tl.minimum(i_n * BT + BT, T) - 1
    b_last = tl.load(gc + t_last * (H * K) + o_k, mask=m_k, other=0.)
    p_h = ((i_b * N + i_n) * H + i_h).to(tl.int64) * K * V
    # d/d(b_C) of the state after the chunk: sum_v dS_end * S_end (S_end = h[n+1] or ht)
    p_hn = p_h + H * K * V                                  # h[n+1], masked off at the end
    not_last = (o_k * 0 + i_n) < N - 1                      # [BK]
    b_carry = tl.zeros([BK], dtype=tl.float32)
    for i_v in range(0, tl.cdiv(V, BV)):
        o_v = i_v * BV + tl.arange(0, BV)
        p_T = o_k[None, :] * V + o_v[:, None]               # [BV,BK] (transposed)
        m_vk = (o_v[:, None] < V) & m_k[None, :]
        b_dhT = tl.load(dh + p_h + p_T, mask=m_vk, other=0.).to(tl.float32)
        b_hnT = tl.load(h + p_hn + p_T, mask=m_vk & not_last[None, :], other=0.).to(tl.float32)
        b_hnT += tl.load(ht + i_bh.to(tl.int64) * K * V + p_T,
                         mask=m_vk & (not_last == 0)[None, :], other=0.)
        b_carry += tl.sum(b_dhT * b_hnT, axis=0)
    for i in tl.static_range(NS - 1, -1, -1):              # last sub-chunk first
        t0 = i_n * BT + i * BC
        if t0 < T:
            t_i = t0 + o_c
            m_i = t_i < T
            m_ik = m_i[:, None] & m_k[None, :]
            p_i = t_i[:, None] * (H * K) + o_k[None, :]
            b_q = tl.load(q + p_i, mask=m_ik, other=0.).to(tl.float32)
            b_k = tl.load(k + p_i, mask=m_ik, other=0.).to(tl.float32)
            b_g = tl.load(gc + p_i, mask=m_ik, other=0.)
            # inter-chunk terms
            b_dq = tl.zeros([BC, BK], dtype=tl.float32)
            b_dk = tl.zeros([BC, BK], dtype=tl.float32)
            for i_v in range(0, tl.cdiv(V, BV)):
                o_v = i_v * BV + tl.arange(0, BV)
                m_v = o_v < V
                p_v = t_i[:, None] * (H * V) + o_v[None, :]
                b_do = tl.load(do + p_v, mask=m_i[:, None] & m_v[None, :], other=0.)
                b_v = tl.load(v + p_v, mask=m_i[:, None] & m_v[None, :], other=0.)
                p_hT = p_h + o_k[None, :] * V + o_v[:, None]            # [BV,BK] (transposed)
                m_vk = m_v[:, None] & m_k[None, :]
                b_hT = tl.load(h + p_hT, mask=m_vk, other=0.)
                b_dhT = tl.load(dh + p_hT, mask=m_vk, other=0.)
                b_dq += tl.dot(b_do.to(q.dtype.element_ty), b_hT.to(q.dtype.element_ty),
                               input_precision=PREC)
                b_dk += tl.dot(b_v.to(q.dtype.element_ty), b_dhT.to(q.dtype.element_ty),
                               input_precision=PREC)
            b_dq = tl.where(m_ik, b_dq * tl.exp(b_g) * scale, 0.)
            b_dk = tl.where(m_ik, b_dk * tl.exp(b_last[None, :] - b_g), 0.)
            p_dAi = dA + t_i[:, None] * (H * BT) + o_c[None, :]   # rows of sub-chunk i
            # dq from earlier sub-chunks j < i, through r = b at row t0
            if i > 0:
                b_r = tl.load(gc + t0 * (H * K) + o_k, mask=m_k, other=0.)
                b_dqi = tl.zeros([BC, BK], dtype=tl.float32)
                for j in tl.static_range(i):
                    p_j = (i_n * BT + j * BC + o_c)[:, None] * (H * K) + o_k[None, :]
                    b_kj = tl.load(k + p_j, mask=m_k[None, :], other=0.).to(tl.float32)
                    b_gj = tl.load(gc + p_j, mask=m_k[None, :], other=0.)
                    b_kd = (b_kj * tl.exp(b_r[None, :] - b_gj)).to(k.dtype.element_ty)
                    b_dAij = tl.load(p_dAi + j * BC, mask=m_i[:, None], other=0.)
                    b_dqi += tl.dot(b_dAij.to(k.dtype.element_ty), b_kd, input_precision=PREC)
                b_dq += tl.where(m_ik, b_dqi * tl.exp(b_g - b_r[None, :]) * scale, 0.)
            # dk from later sub-chunks j > i, through r2 = b at the last row of sub-chunk i
            if i < NS - 1:
                if t0 + BC < T:       # a later sub-chunk exists, so sub-chunk i is full
                    b_r2 = tl.load(gc + (t0 + BC - 1) * (H * K) + o_k, mask=m_k, other=0.)
                    b_dki = tl.zeros([BC, BK], dtype=tl.float32)
                    for j in tl.static_range(i + 1, NS):
                        t_j = i_n * BT + j * BC + o_c
                        m_j = t_j < T
                        p_j = t_j[:, None] * (H * K) + o_k[None, :]
                        m_jk = m_j[:, None] & m_k[None, :]
                        b_qj = tl.load(q + p_j, mask=m_jk, other=0.).to(tl.float32)
                        b_gj = tl.load(gc + p_j, mask=m_jk, other=0.)
                        b_qd = tl.where(m_jk, b_qj * tl.exp(b_gj - b_r2[None, :]) * scale, 0.)
                        b_dAji = tl.load(dA + t_j[:, None] * (H * BT) + i * BC + o_c[None, :],
                                         mask=m_j[:, None], other=0.)
                        b_dki += tl.dot(tl.trans(b_dAji.to(q.dtype.element_ty)),
                                        b_qd.to(q.dtype.element_ty), input_precision=PREC)
                    b_dk += b_dki * tl.exp(b_r2[None, :] - b_g)
            # diagonal sub-chunk, pairwise e^(b_t - b_s) for t > s: [BC(t), BC(s), BK]
            b_dAii = tl.load(p_dAi + i * BC, mask=m_i[:, None], other=0.)
            b_dAs = tl.where(o_c[:, None] > o_c[None, :], b_dAii, 0.) * scale
            b_e = tl.exp(tl.minimum(b_g[:, None, :] - b_g[None, :, :], 0.))
            b_dq += tl.sum(b_dAs[:, :, None] * b_k[None, :, :] * b_e, axis=1)
            b_dk += tl.sum(b_dAs[:, :, None] * b_q[:, None, :] * b_e, axis=0)
            # the s == t terms (dA_tt k_t in dq_t, dA_tt q_t in dk_t) cancel exactly in
            # q*dq - k*dk: keep them out of the dg terms, so their rounding stays out too
            b_x = b_q * b_dq - b_k * b_dk
            b_tot = tl.sum(b_x, axis=0)
            b_dg = b_carry[None, :] + b_tot[None, :] - tl.cumsum(b_x, axis=0) + b_x
            tl.store(dg + p_i, b_dg.to(dg.dtype.element_ty), mask=m_ik)
            b_carry += b_tot
            b_dAd = tl.sum(tl.where(o_c[:, None] == o_c[None, :], b_dAii, 0.), axis=1) * scale
            b_dq += b_dAd[:, None] * b_k
            b_dk += b_dAd[:, None] * b_q
            tl.store(dq + p_i, b_dq.to(dq.dtype.element_ty), mask=m_ik)
            tl.store(dk + p_i, b_dk.to(dk.dtype.element_ty), mask=m_ik)


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
    _fwd_h_kernel[lambda m: (cdiv(K, m["BK"]), cdiv(V, m["BV"]), B * H)](
        k, v, g, gc, h, h0, ht, T, H, K, V, BT=BT, HAS_H0=h0 is not None, PREC=prec)
    A = torch.empty(B, T, H, BT, device=q.device, dtype=torch.float32)
    _fwd_A_kernel[(BT // BC, N, B * H)](q, k, gc, A, scale, T, H, K, BT=BT, BC=BC, PREC=prec)
    o = torch.empty_like(v)
    _fwd_o_kernel[lambda m: (cdiv(V, m["BV"]), N, B * H)](
        q, v, gc, A, h, o, scale, T, H, K, V, BT=BT, PREC=prec)
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
    dq, dk = torch.empty_like(q), torch.empty_like(k)
    dg = torch.empty(B, T, H, K, device=q.device, dtype=g_dtype)
    _bwd_dqk_kernel[lambda m: (cdiv(K, m["BK"]), N, B * H)](
        q, k, v, gc, h, do, dh, dA, ht, dq, dk, dg, scale, T, H, K, V, BT=BT, BC=BC, PREC=prec)
    return dq, dk, dv, dg, dh0
