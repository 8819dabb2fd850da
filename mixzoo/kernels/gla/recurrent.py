"""Fused recurrent kernels for diagonal-decay linear attention (decoding path): jit
kernels, then host launchers. One token at a time, the state lives in registers.

    S_t = diag(e^(g_t)) S_{t-1} + k_t v_t^T,   o_t = S_t^T (scale q_t)

The gate is read through four strides (b, t, h, k), so the same kernels serve GLA's
per-key gate [B,T,H,K] and retention's scalar decay ([B,T,H] per token or [H] per
head: stride 0 along k), without expanding it in memory.

Backward: a forward sweep gives dq, a reverse sweep gives dk, dv and dh0 (the state
gradient dS_t = e^(g_{t+1}) dS_{t+1} + scale q_t do_t^T). The self terms (s == t) of dq
and dk are added on the host, after the dg terms q*dq - k*dk are taken without them:
they cancel exactly there, and leaving them out keeps their rounding out of dg.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from mixzoo.kernels._common import cdiv


@triton.jit
def _fwd_kernel(
    q, k, v,                    # [B,T,H,K], [B,T,H,K], [B,T,H,V]
    g, sgb, sgt, sgh, sgk,      # log gate and its (b, t, h, k) strides
    o,                          # [B,T,H,V] out
    h0, ht,                     # [B,H,K,V] fp32 initial state in / final state out
    scale, T, H: tl.constexpr, K: tl.constexpr, V: tl.constexpr,
    BK: tl.constexpr, BV: tl.constexpr, HAS_H0: tl.constexpr,
):
    """One program per (V block, b, h); the whole K extent of the state in registers."""
    i_v, i_bh = tl.program_id(0), tl.program_id(1)
    i_b, i_h = i_bh // H, i_bh % H
    o_k = tl.arange(0, BK)
    o_v = i_v * BV + tl.arange(0, BV)
    m_k, m_v = o_k < K, o_v < V
    m_kv = m_k[:, None] & m_v[None, :]
    base = (i_b * T * H + i_h).to(tl.int64)
    p_g = g + i_b.to(tl.int64) * sgb + i_h * sgh + o_k * sgk
    p_hs = i_bh.to(tl.int64) * K * V + o_k[:, None] * V + o_v[None, :]
    b_h = tl.zeros([BK, BV], dtype=tl.float32)
    if HAS_H0:
        b_h += tl.load(h0 + p_hs, mask=m_kv, other=0.)
    for t in range(T):
        p_t = base + t * H
        b_q = tl.load(q + p_t * K + o_k, mask=m_k, other=0.).to(tl.float32) * scale
        b_k = tl.load(k + p_t * K + o_k, mask=m_k, other=0.).to(tl.float32)
        b_v = tl.load(v + p_t * V + o_v, mask=m_v, other=0.).to(tl.float32)
        b_g = tl.load(p_g + t * sgt, mask=m_k, other=0.).to(tl.float32)
        b_h = b_h * tl.exp(b_g)[:, None] + b_k[:, None] * b_v[None, :]
        b_o = tl.sum(b_h * b_q[:, None], axis=0)
        tl.store(o + p_t * V + o_v, b_o.to(o.dtype.element_ty), mask=m_v)
    tl.store(ht + p_hs, b_h, mask=m_kv)


@triton.jit
def _bwd_dq_kernel(
    k, v, g, sgb, sgt, sgh, sgk, do, h0,    # inputs (see _fwd_kernel)
    dq,                                     # [NV,B,T,H,K] fp32 out: dq without self term
    scale, T, H: tl.constexpr, K: tl.constexpr, V: tl.constexpr,
    BK: tl.constexpr, BV: tl.constexpr, HAS_H0: tl.constexpr,
):
    """Forward sweep: dq_t = scale (e^(g_t) S_{t-1}) do_t, partial over this V block."""
    i_v, i_bh = tl.program_id(0), tl.program_id(1)
    i_b, i_h = i_bh // H, i_bh % H
    o_k = tl.arange(0, BK)
    o_v = i_v * BV + tl.arange(0, BV)
    m_k, m_v = o_k < K, o_v < V
    base = (i_b * T * H + i_h).to(tl.int64)
    p_g = g + i_b.to(tl.int64) * sgb + i_h * sgh + o_k * sgk
    p_dq = dq + i_v.to(tl.int64) * (tl.num_programs(1) // H) * T * H * K
    b_h = tl.zeros([BK, BV], dtype=tl.float32)
    if HAS_H0:
        b_h += tl.load(h0 + i_bh.to(tl.int64) * K * V + o_k[:, None] * V + o_v[None, :],
                       mask=m_k[:, None] & m_v[None, :], other=0.)
    for t in range(T):
        p_t = base + t * H
        b_k = tl.load(k + p_t * K + o_k, mask=m_k, other=0.).to(tl.float32)
        b_v = tl.load(v + p_t * V + o_v, mask=m_v, other=0.).to(tl.float32)
        b_do = tl.load(do + p_t * V + o_v, mask=m_v, other=0.).to(tl.float32)
        b_g = tl.load(p_g + t * sgt, mask=m_k, other=0.).to(tl.float32)
        b_h = b_h * tl.exp(b_g)[:, None]
        tl.store(p_dq + p_t * K + o_k, tl.sum(b_h * b_do[None, :], axis=1) * scale, mask=m_k)
        b_h += b_k[:, None] * b_v[None, :]


@triton.jit
def _bwd_dkv_kernel(
    q, k, v, g, sgb, sgt, sgh, sgk, do,     # inputs (see _fwd_kernel)
    dht,                                    # [B,H,K,V] fp32 final-state gradient (if HAS_DHT)
    dk,                                     # [NV,B,T,H,K] fp32 out: dk without self term
    dv,                                     # [B,T,H,V] out
    dh0,                                    # [B,H,K,V] fp32 out
    scale, T, H: tl.constexpr, K: tl.constexpr, V: tl.constexpr,
    BK: tl.constexpr, BV: tl.constexpr, HAS_DHT: tl.constexpr,
):
    """Reverse sweep over dS_t; dk_t = dS_t' v_t (dS_t' = dS_t less scale q_t do_t^T),
    dv_t = dS_t^T k_t."""
    i_v, i_bh = tl.program_id(0), tl.program_id(1)
    i_b, i_h = i_bh // H, i_bh % H
    o_k = tl.arange(0, BK)
    o_v = i_v * BV + tl.arange(0, BV)
    m_k, m_v = o_k < K, o_v < V
    m_kv = m_k[:, None] & m_v[None, :]
    base = (i_b * T * H + i_h).to(tl.int64)
    p_g = g + i_b.to(tl.int64) * sgb + i_h * sgh + o_k * sgk
    p_dk = dk + i_v.to(tl.int64) * (tl.num_programs(1) // H) * T * H * K
    p_hs = i_bh.to(tl.int64) * K * V + o_k[:, None] * V + o_v[None, :]
    b_dh = tl.zeros([BK, BV], dtype=tl.float32)
    if HAS_DHT:
        b_dh += tl.load(dht + p_hs, mask=m_kv, other=0.)
    for i in range(T):
        t = T - 1 - i
        p_t = base + t * H
        b_q = tl.load(q + p_t * K + o_k, mask=m_k, other=0.).to(tl.float32) * scale
        b_k = tl.load(k + p_t * K + o_k, mask=m_k, other=0.).to(tl.float32)
        b_v = tl.load(v + p_t * V + o_v, mask=m_v, other=0.).to(tl.float32)
        b_do = tl.load(do + p_t * V + o_v, mask=m_v, other=0.).to(tl.float32)
        b_g = tl.load(p_g + t * sgt, mask=m_k, other=0.).to(tl.float32)
        tl.store(p_dk + p_t * K + o_k, tl.sum(b_dh * b_v[None, :], axis=1), mask=m_k)
        b_dh += b_q[:, None] * b_do[None, :]
        tl.store(dv + p_t * V + o_v, tl.sum(b_dh * b_k[:, None], axis=0).to(dv.dtype.element_ty),
                 mask=m_v)
        b_dh = b_dh * tl.exp(b_g)[:, None]
    tl.store(dh0 + p_hs, b_dh, mask=m_kv)


# ----------------------------------------------------------------------------- launchers
def gate_strides(g: torch.Tensor) -> tuple[int, int, int, int]:
    """(b, t, h, k) strides of a gate [B,T,H,K] (GLA), [B,T,H] or [H] (retention)."""
    if g.dim() == 4:
        return tuple(g.stride())
    if g.dim() == 3:
        return g.stride(0), g.stride(1), g.stride(2), 0
    return 0, 0, g.stride(0), 0


def _tiles(K: int, V: int) -> tuple[int, int]:
    bk = triton.next_power_of_2(K)
    bv = min(triton.next_power_of_2(V), max(16, 4096 // bk))   # state tile <= 4096 fp32
    return bk, bv


def fused_recurrent_fwd(q, k, v, g, h0, scale: float):
    """Returns (o, final state fp32). q/k/v contiguous [B,T,H,*]; g any of the layouts."""
    B, T, H, K = q.shape
    V = v.shape[-1]
    BK, BV = _tiles(K, V)
    o = torch.empty_like(v)
    ht = torch.empty(B, H, K, V, device=q.device, dtype=torch.float32)
    _fwd_kernel[(cdiv(V, BV), B * H)](
        q, k, v, g, *gate_strides(g), o, h0, ht, scale, T, H, K, V,
        BK=BK, BV=BV, HAS_H0=h0 is not None, num_warps=4)
    return o, ht


def fused_recurrent_bwd(q, k, v, g, h0, do, dht, ht, scale: float):
    """Returns (dq, dk, dv, dg per key [B,T,H,K] fp32, dh0 fp32)."""
    B, T, H, K = q.shape
    V = v.shape[-1]
    BK, BV = _tiles(K, V)
    NV = cdiv(V, BV)
    dq = torch.empty(NV, B, T, H, K, device=q.device, dtype=torch.float32)
    dk = torch.empty(NV, B, T, H, K, device=q.device, dtype=torch.float32)
    dv = torch.empty_like(v)
    dh0 = torch.empty(B, H, K, V, device=q.device, dtype=torch.float32)
    strides = gate_strides(g)
    _bwd_dq_kernel[(NV, B * H)](k, v, g, *strides, do, h0, dq, scale, T, H, K, V,
                                BK=BK, BV=BV, HAS_H0=h0 is not None, num_warps=4)
    _bwd_dkv_kernel[(NV, B * H)](q, k, v, g, *strides, do, dht, dk, dv, dh0, scale, T, H, K, V,
                                 BK=BK, BV=BV, HAS_DHT=dht is not None, num_warps=4)
    qf, kf = q.float(), k.float()
    dq, dk = dq.sum(0), dk.sum(0)                                   # [B,T,H,K]
    dgl = qf * dq - kf * dk                                         # self terms excluded
    dg = dgl.flip(1).cumsum(1).flip(1)
    if dht is not None:
        dg = dg + (dht * ht).sum(-1)[:, None]                       # e^(B_T) reaches every g
    s = (v.float() * do.float()).sum(-1, keepdim=True) * scale      # [B,T,H,1] self terms
    dq = (dq + s * kf).to(q.dtype)
    dk = (dk + s * qf).to(k.dtype)
    return dq, dk, dv, dg, dh0
