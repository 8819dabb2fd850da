"""Fused recurrent Triton kernels for the delta rule: one token at a time, the state in
registers. Used for decoding (T == 1) and short carried-state calls; forward and backward.

Layout: q, k [B,T,H,K]; v [B,T,H,V]; beta [B,T,H]; states [B,H,K,V] fp32.
Step t (q scaled, q/k L2-normalised when USE_L2):
    delta_t = beta_t (v_t - S_{t-1}^T k_t);   S_t = S_{t-1} + k_t delta_t^T;   o_t = S_t^T q_t
The forward saves delta [B,T,H,V] fp32 and the final state; the backward walks t downwards,
rebuilding S_{t-1} = S_t - k_t delta_t^T (exact in exact arithmetic; fp32 drift is a few ulps
per step, fine for the short sequences this path serves).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from .._common import cdiv, next_power_of_2


@triton.jit
def _vec_ptr(base, b, h, t, T, H: tl.constexpr, D: tl.constexpr):
    return base + ((b * T + t).to(tl.int64) * H + h) * D


@triton.jit
def _recurrent_fwd_kernel(
    q, k, v, beta,       # [B,T,H,K], [B,T,H,K], [B,T,H,V], [B,T,H]
    o,                   # output [B,T,H,V]
    h0, ht,              # initial state in (if HAS_H0), final state out [B,H,K,V] fp32
    delta,               # delta_t [B,T,H,V] fp32, written if SAVE_DELTA
    scale, T,
    H: tl.constexpr, K: tl.constexpr, V: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
    USE_L2: tl.constexpr, HAS_H0: tl.constexpr, SAVE_DELTA: tl.constexpr,
):
    """One program per (v-block, b*h); S [BK,BV] fp32 in registers; always writes ht."""
    i_v, i_bh = tl.program_id(0), tl.program_id(1)
    b, h = i_bh // H, i_bh % H
    ck = tl.arange(0, BK)
    cv = i_v * BV + tl.arange(0, BV)
    mk, mv = ck < K, cv < V
    mS = mk[:, None] & mv[None, :]
    sptr = i_bh.to(tl.int64) * K * V + ck[:, None] * V + cv[None, :]
    if HAS_H0:
        S = tl.load(h0 + sptr, mask=mS, other=0.)
    else:
        S = tl.zeros([BK, BV], dtype=tl.float32)
    for t in range(T):
        kt = tl.load(_vec_ptr(k, b, h, t, T, H, K) + ck, mask=mk, other=0.).to(tl.float32)
        qt = tl.load(_vec_ptr(q, b, h, t, T, H, K) + ck, mask=mk, other=0.).to(tl.float32)
        vt = tl.load(_vec_ptr(v, b, h, t, T, H, V) + cv, mask=mv, other=0.).to(tl.float32)
        bt = tl.load(beta + (b * T + t).to(tl.int64) * H + h).to(tl.float32)
        if USE_L2:
            kt = kt * tl.rsqrt(tl.sum(kt * kt) + 1e-6)
            qt = qt * tl.rsqrt(tl.sum(qt * qt) + 1e-6)
        qt = qt * scale
        pred = tl.sum(S * kt[:, None], 0)                    # S^T k   [BV]
        d = bt * (vt - pred)                                 # delta   [BV]
        S += kt[:, None] * d[None, :]
        ot = tl.sum(S * qt[:, None], 0)                      # S^T q   [BV]
        tl.store(_vec_ptr(o, b, h, t, T, H, V) + cv, ot.to(o.dtype.element_ty), mask=mv)
        if SAVE_DELTA:
            tl.store(_vec_ptr(delta, b, h, t, T, H, V) + cv, d, mask=mv)
    tl.store(ht + sptr, S, mask=mS)


@triton.jit
def _recurrent_bwd_kernel(
    q, k, v, beta, delta, ht,   # inputs, saved delta [B,T,H,V] fp32, final state [B,H,K,V]
    do, dht,                    # output grad [B,T,H,V]; final-state grad (if HAS_DHT)
    dq, dk, dbeta,              # per-v-block partials [NV,B,T,H,K], [NV,B,T,H,K], [NV,B,T,H] fp32
    dv, dh0,                    # dv [B,T,H,V]; initial-state grad [B,H,K,V] fp32 (if STORE_DH0)
    scale, T, B,
    H: tl.constexpr, K: tl.constexpr, V: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
    USE_L2: tl.constexpr, HAS_DHT: tl.constexpr, STORE_DH0: tl.constexpr,
):
    """Reverse walk. With dS = dL/dS_t:  dS += q_t do_t^T;  dq_t = S_t do_t;
    d(delta) = dS^T k_t;  dk_t = dS delta_t - S_{t-1} (beta d(delta));  dv_t = beta d(delta);
    dbeta_t = d(delta) . (v_t - S_{t-1}^T k_t);  dS <- dS - k_t (beta d(delta))^T."""
    i_v, i_bh = tl.program_id(0), tl.program_id(1)
    b, h = i_bh // H, i_bh % H
    ck = tl.arange(0, BK)
    cv = i_v * BV + tl.arange(0, BV)
    mk, mv = ck < K, cv < V
    mS = mk[:, None] & mv[None, :]
    sptr = i_bh.to(tl.int64) * K * V + ck[:, None] * V + cv[None, :]
    S = tl.load(ht + sptr, mask=mS, other=0.)
    if HAS_DHT:
        dS = tl.load(dht + sptr, mask=mS, other=0.)
    else:
        dS = tl.zeros([BK, BV], dtype=tl.float32)
    part = i_v.to(tl.int64) * B * T      # offset of this v-block's partial slab, in rows
    for tt in range(T):
        t = T - 1 - tt
        kr = tl.load(_vec_ptr(k, b, h, t, T, H, K) + ck, mask=mk, other=0.).to(tl.float32)
        qr = tl.load(_vec_ptr(q, b, h, t, T, H, K) + ck, mask=mk, other=0.).to(tl.float32)
        vt = tl.load(_vec_ptr(v, b, h, t, T, H, V) + cv, mask=mv, other=0.).to(tl.float32)
        dot_ = tl.load(_vec_ptr(do, b, h, t, T, H, V) + cv, mask=mv, other=0.).to(tl.float32)
        d = tl.load(_vec_ptr(delta, b, h, t, T, H, V) + cv, mask=mv, other=0.)
        bt = tl.load(beta + (b * T + t).to(tl.int64) * H + h).to(tl.float32)
        if USE_L2:
            rk = tl.rsqrt(tl.sum(kr * kr) + 1e-6)
            rq = tl.rsqrt(tl.sum(qr * qr) + 1e-6)
        else:
            rk = 1.0
            rq = 1.0
        kt = kr * rk
        qn = qr * rq
        dS += (qn * scale)[:, None] * dot_[None, :]
        dqt = tl.sum(S * dot_[None, :], 1) * scale           # d(q_hat)  [BK]
        dd = tl.sum(dS * kt[:, None], 0)                      # d(delta)  [BV]
        S -= kt[:, None] * d[None, :]                         # S_{t-1}
        bdd = bt * dd
        dkt = tl.sum(dS * d[None, :], 1) - tl.sum(S * bdd[None, :], 1)
        pred = tl.sum(S * kt[:, None], 0)
        dbt = tl.sum(dd * (vt - pred))
        dS -= kt[:, None] * bdd[None, :]
        if USE_L2:   # linear in the partial gradient, so it may be applied per v-block
            dqt = rq * (dqt - qn * tl.sum(qn * dqt))
            dkt = rk * (dkt - kt * tl.sum(kt * dkt))
        tl.store(_vec_ptr(dq, b, h, part + t, T, H, K) + ck, dqt, mask=mk)
        tl.store(_vec_ptr(dk, b, h, part + t, T, H, K) + ck, dkt, mask=mk)
        tl.store(dbeta + (part + b * T + t) * H + h, dbt)
        tl.store(_vec_ptr(dv, b, h, t, T, H, V) + cv, bdd.to(dv.dtype.element_ty), mask=mv)
    if STORE_DH0:
        tl.store(dh0 + sptr, dS, mask=mS)


def _bv(K: int, V: int) -> tuple[int, int, int]:
    BK = max(16, next_power_of_2(K))
    BV = min(max(16, next_power_of_2(V)), 32 if BK >= 128 else 64)
    return BK, BV, cdiv(V, BV)


def recurrent_fwd(q, k, v, beta, scale: float, initial_state, use_l2: bool, save_for_bwd: bool):
    """Returns o, final state [B,H,K,V] fp32, delta (or empty)."""
    B, T, H, K = q.shape
    V = v.shape[-1]
    BK, BV, NV = _bv(K, V)
    o = torch.empty_like(v)
    ht = q.new_empty((B, H, K, V), dtype=torch.float32)
    delta = q.new_empty((B, T, H, V) if save_for_bwd else (0,), dtype=torch.float32)
    has_h0 = initial_state is not None
    _recurrent_fwd_kernel[(NV, B * H)](
        q, k, v, beta, o, initial_state if has_h0 else ht, ht, delta, scale, T,
        H=H, K=K, V=V, BK=BK, BV=BV, USE_L2=use_l2, HAS_H0=has_h0, SAVE_DELTA=save_for_bwd,
        num_warps=4 if BK * BV <= 4096 else 8)
    return o, ht, delta


def recurrent_bwd(q, k, v, beta, scale: float, initial_state, use_l2: bool, delta, ht, do, dht):
    """Returns dq, dk, dv, dbeta, dh0 (or empty)."""
    B, T, H, K = q.shape
    V = v.shape[-1]
    BK, BV, NV = _bv(K, V)
    dq = q.new_empty((NV, B, T, H, K), dtype=torch.float32)
    dk = torch.empty_like(dq)
    dbeta = q.new_empty((NV, B, T, H), dtype=torch.float32)
    dv = torch.empty_like(v)
    has_h0, has_dht = initial_state is not None, dht is not None
    dht = dht.contiguous() if has_dht else None
    dh0 = q.new_empty((B, H, K, V) if has_h0 else (0,), dtype=torch.float32)
    _recurrent_bwd_kernel[(NV, B * H)](
        q, k, v, beta, delta, ht, do.contiguous(), dht if has_dht else ht, dq, dk, dbeta, dv,
        dh0, scale, T, B, H=H, K=K, V=V, BK=BK, BV=BV, USE_L2=use_l2, HAS_DHT=has_dht,
        STORE_DH0=has_h0, num_warps=4 if BK * BV <= 4096 else 8)
    return (dq.sum(0).to(q.dtype), dk.sum(0).to(k.dtype), dv, dbeta.sum(0).to(beta.dtype), dh0)
