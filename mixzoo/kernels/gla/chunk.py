"""Chunkwise GLA in Triton: shared helpers and the passes over chunk states.

Notation (README.md has the derivation). Chunks of BT=64 tokens, sub-chunks of BC=16.
gc = chunk-local cumulative log gate (b_t = sum of g from the chunk start to t, <= 0).
h[n] = state before chunk n, dh[n] = gradient of the state after chunk n.

Here: `_fwd_gc` (gc), `_fwd_h` (states, sequential over chunks), `_bwd_dh` (state
gradients, reverse), `_bwd_dv` (dv and dA = do v^T). The intra-chunk kernels and the
launchers are in chunk_fwd.py and chunk_bwd.py. Every exponent these kernels take is
<= 0 up to rounding (README "stability").

Precision (README "Numerics"): a factor that is not already in the input dtype enters a
tensor-core dot as hi + lo parts (`_dot_hl`), not rounded once to bf16.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from mixzoo.kernels._common import pick_configs

BT = 64   # chunk length: the state is materialised once per BT tokens
BC = 16   # sub-chunk length: the smallest tl.dot tile; pairwise decays only inside one
# largest decay spread over a chunk, max_k (b_first - b_last), for which the intra-chunk
# kernels factorise all of a chunk's pairs through its first row (README "one-dot")
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
    return triton.autotune(configs=cfgs, key=list(key),
                           prune_configs_by={"early_config_prune": _fits})


# Warps and stages were chosen offline from the sm_90 resource report (cuobjdump
# -res-usage; `python benchmarks/ops/gla.py --sm90-report`). (The retention kernels use
# STATE_CONFIGS and TILE_CONFIGS.)
STATE_CONFIGS = configs((64, 64, 8, 2), (32, 64, 8, 2))
TILE_CONFIGS = configs((64, 64, 8, 2), (64, 128, 8, 1))
# GLA's state passes are sequential over chunks: their parallelism is B H (K/BK)(V/BV)
# programs (64 at B1 H16 with 64 x 64 tiles), so they also get small tiles and 3-4 stages
# (loads of the next chunks in flight while one step waits), tuned apart per B*H bucket
# (BH_HINT). sm_90 (bf16, K = V = 128): 110-244 registers, no spills.
GLA_STATE_CONFIGS = configs((64, 64, 8, 2), (32, 64, 8, 2), (32, 32, 4, 2), (64, 64, 8, 3),
                            (32, 32, 4, 3), (32, 32, 4, 4), (32, 64, 4, 3), (16, 32, 2, 3))


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
def _dot_split(a, b, PREC: tl.constexpr):
    """a @ b for fp32 `a` and `b`, keeping ~16 bits of each: bf16 hi + lo parts (bf16 has
    fp32's exponent range) and three tensor-core dots (lo @ lo left out); with PREC
    "ieee" (fp32 inputs), one ieee dot."""
    if PREC == "ieee":
        return tl.dot(a, b, input_precision="ieee")
    a_hi = a.to(tl.bfloat16)
    b_hi = b.to(tl.bfloat16)
    a_lo = (a - a_hi.to(tl.float32)).to(tl.bfloat16)
    b_lo = (b - b_hi.to(tl.float32)).to(tl.bfloat16)
    return tl.dot(a_hi, b_hi) + tl.dot(a_hi, b_lo) + tl.dot(a_lo, b_hi)


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


@autotuned(GLA_STATE_CONFIGS, key=("K", "V", "BH_HINT"))
@triton.jit
def _fwd_h_kernel(
    k, v, gc,           # [B,T,H,K], [B,T,H,V] inputs, [B,T,H,K] fp32 chunk-local cumulative gate
    h,                  # [B,N,H,K,V] out: state before each chunk
    h0, ht,             # [B,H,K,V] fp32 initial state in / final state out
    T, H: tl.constexpr, K: tl.constexpr, V: tl.constexpr,
    BT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
    HAS_H0: tl.constexpr, PREC: tl.constexpr,
    BH_HINT: tl.constexpr,      # autotune key only: B*H rounded up to a power of 2
):
    """S <- exp(b_C) * S + (k * exp(b_C - b))^T v per chunk; stores S before each chunk.
    k * exp(b_C - b) enters the dot as hi + lo parts (_dot_hl)."""
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
        b_h = b_h * tl.exp(b_last)[:, None] + _dot_hl(b_kd, b_v, PREC)
    tl.store(ht + i_bh.to(tl.int64) * K * V + p_hs, b_h, mask=m_kv)


# ----------------------------------------------------------------------------- backward
@autotuned(GLA_STATE_CONFIGS, key=("K", "V", "BH_HINT"))
@triton.jit
def _bwd_dh_kernel(
    q, do, gc,          # [B,T,H,K], [B,T,H,V], [B,T,H,K] fp32
    dht,                # [B,H,K,V] fp32 gradient of the final state (if HAS_DHT)
    dh,                 # [B,N,H,K,V] out: gradient of the state after each chunk
    dh0,                # [B,H,K,V] fp32 out: gradient of the initial state
    scale, T, H: tl.constexpr, K: tl.constexpr, V: tl.constexpr,
    BT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
    HAS_DHT: tl.constexpr, PREC: tl.constexpr,
    BH_HINT: tl.constexpr,      # autotune key only: B*H rounded up to a power of 2
):
    """Reverse pass: dS <- e^(b_C) dS + (scale q e^b)^T do, from the last chunk down;
    (scale q e^b) enters the dot as hi + lo parts (_dot_hl)."""
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
        b_dh = b_dh * tl.exp(b_last)[:, None] + _dot_hl(b_q * tl.exp(b_g) * scale,
                                                        b_do.to(q.dtype.element_ty), PREC)
    tl.store(dh0 + i_bh.to(tl.int64) * K * V + p_hs, b_dh, mask=m_kv)


# sm_90 (bf16, K = V = 128): 255 (24 bytes of spill) / 231 / 240 registers; 16-warp and
# 4-warp tiles spilled more
@autotuned(configs((64, 64, 8, 2), (32, 64, 8, 2), (32, 128, 8, 2)))
@triton.jit
def _bwd_dv_kernel(
    k, v, gc, A, do, dh,    # inputs (see above; A: [B,T,H,BT] fp32 scores)
    dA,                     # [B,T,H,BT] fp32 out: dA[t, s] = do_t . v_s for s <= t, else 0
    dv,                     # [B,T,H,V] out
    T, H: tl.constexpr, K: tl.constexpr, V: tl.constexpr,
    BT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr, PREC: tl.constexpr,
):
    """dv = A^T do + (k e^(b_C - b)) dh[n];  dA = do v^T (causal part), one chunk.
    A^T do takes A as hi + lo parts (_dot_hl)."""
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
    b_dA = tl.zeros([BT, BT], dtype=tl.float32)
    for i_v in range(0, tl.cdiv(V, BV)):
        o_v = i_v * BV + tl.arange(0, BV)
        m_tv = m_t[:, None] & (o_v[None, :] < V)
        p_v = t[:, None] * (H * V) + o_v[None, :]
        b_v = tl.load(v + p_v, mask=m_tv, other=0.)
        b_do = tl.load(do + p_v, mask=m_tv, other=0.).to(v.dtype.element_ty)
        b_dA += tl.dot(b_do, tl.trans(b_v), input_precision=PREC)
        b_dv = _dot_hl(tl.trans(b_A), b_do, PREC)
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
