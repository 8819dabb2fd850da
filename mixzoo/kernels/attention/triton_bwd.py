"""Attention backward kernels and their launchers.

With P = softmax(S) recomputed from the saved lse (P_ij = 2^(s_ij - lse_i log2 e), s in
the base-2 domain) and delta_i = sum_d o_id do_id = sum_j P_ij dP_ij:
    dV_j = sum_i P_ij dO_i                  (one program per key block and query head:
    dS_ij = P_ij (dO_i . v_j - delta_i)       `_attn_bwd_dkdv`; with GQA the G heads of a
    dK_j = scale * sum_i dS_ij q_i            group are summed afterwards, no atomics)
    dQ_i = scale * sum_j dS_ij k_j           (one program per query block: `_attn_bwd_dq`)
Each kernel visits only tiles inside the causal window, in masked / full / masked runs as
in the forward.
"""
from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

from .._common import cdiv, pick_configs
from .triton_fwd import (_TUNE_KEY, LOG2E, _last_dim_contig, block_d, dot_precision,
                         set_tma_rows, tma_descs)


@triton.jit
def _attn_bwd_delta(o_ptr, do_ptr, delta_ptr,   # o/do [B,Tq,H,D], delta [B,H,Tq] fp32
                    sob, sot, soh, sdb, sdt, sdh,
                    H, Tq,
                    HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_M: tl.constexpr):
    """delta_i = sum_d o_id * do_id (fp32)."""
    pid_m = tl.program_id(0)
    pid_bh = tl.program_id(1)
    b = pid_bh // H
    h = pid_bh % H
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    mask = (offs_m[:, None] < Tq) & (offs_d[None, :] < HEAD_DIM)
    o = tl.load(o_ptr + b.to(tl.int64) * sob + h * soh + offs_m[:, None] * sot + offs_d[None, :],
                mask=mask, other=0.0).to(tl.float32)
    do = tl.load(do_ptr + b.to(tl.int64) * sdb + h * sdh + offs_m[:, None] * sdt
                 + offs_d[None, :], mask=mask, other=0.0).to(tl.float32)
    tl.store(delta_ptr + pid_bh.to(tl.int64) * Tq + offs_m, tl.sum(o * do, 1), mask=offs_m < Tq)


# sm_90 host builds (Triton 3.9, D=128 bf16, strides divisible by 16; `python
# benchmarks/ops/attention.py --sm90-report`), stack bytes per thread (pointer / TMA):
# dkdv 64/32/8w 0/0, 128/32/8w 0/0, 128/64/8w 240/8, 64/32/4w 0/0, 64/64/4w 160/80;
# atomic 64/32/8w 0/0, 128/32/8w s2 16/0, s3 0/0, 128/64/8w 360/224, 64/64/4w 384/272,
# 64/32/4w s2 168/88 (TMA reduce 16: 103 KB shared, two programs per SM);
# dq 128/32/8w 0/0, 128/64/8w 0/0, 64/32/4w 0/0, 64/64/4w 72/0
_DKDV_OPTS = [(64, 32, 8, 3), (128, 32, 8, 2), (128, 64, 8, 2), (64, 32, 4, 3), (64, 64, 4, 3)]
_ATOMIC_OPTS = [(64, 32, 8, 3), (128, 32, 8, 2), (128, 32, 8, 3), (128, 64, 8, 2),
                (64, 64, 4, 3), (64, 32, 4, 2)]
_DQ_OPTS = [(128, 32, 8, 2), (128, 64, 8, 2), (64, 32, 4, 3), (64, 64, 4, 3)]
# TMA dq: 128/32/8w capped at 128 registers (122 used, no stack, 98 KB shared: two
# programs per SM); 128/32 and 128/64 at 8 warps uncapped crashed ptxas (Triton 3.6, GPU
# calls 10-11)
_DQ_TMA_OPTS = [(64, 32, 4, 3), (64, 64, 4, 3), (128, 32, 8, 2, 128)]
# variants "split2" / "dqdelta2": more candidates (host builds: dkdv 128/32/8w s3 no stack
# 115 KB; 64/32/4w s2 48 B stack, 66 KB; dq 128/32/8w capped at 128 registers 32 B stack,
# two programs per SM; 64/32/4w s2 no stack, 66 KB, three per SM; 128/64/8w s3 no stack)
_DKDV2_OPTS = _DKDV_OPTS + [(128, 32, 8, 3), (64, 32, 4, 2)]
_DQ2_OPTS = _DQ_OPTS + [(128, 32, 8, 2, 128), (64, 32, 4, 2), (128, 64, 8, 3)]


def _wide_configs(big, small):
    """Head dim 256: small tiles only (shared memory); a separate autotuner because
    Triton skips pruning once a single config is left."""
    return [triton.Config({big: 64, small: 32}, num_warps=4, num_stages=2)]


@triton.jit
def _load_rows(desc, base, b, start, h, rows, stride_t, offs_d, ld, ROWS: tl.constexpr,
               BLOCK_D: tl.constexpr, USE_TMA: tl.constexpr):
    """A [ROWS, BLOCK_D] tile of a [B,T,H,D] tensor: rows start.. of (batch b, head h),
    through its tensor descriptor (USE_TMA) or masked pointer loads (out of range: 0)."""
    if USE_TMA:
        x = desc.load([b, start, h, 0]).reshape(ROWS, BLOCK_D)
    else:
        x = tl.load(base + rows[:, None] * stride_t + offs_d[None, :], mask=ld, other=0.0)
    return x


@triton.jit
def _dkdv_tiles(dk, dv, k, v, q_base, do_base, lse_base, delta_base, sqt, sdt, offs_m, offs_d,
                pos_k, lo, hi, Tq, offset, window, qk_scale,
                dqa_base, sdqa, sm_scale,  # ATOMIC_DQ: fp32 dq of this (batch, head), row stride
                q_desc, do_desc, b, h,     # USE_TMA: [B,Tq,H,D] descriptors, tile [1,BM,1,BD]
                dqa_desc,                  # DQ_TMA_REDUCE: descriptor of the fp32 dq
                CAUSAL: tl.constexpr, HAS_WINDOW: tl.constexpr, MASKED: tl.constexpr,
                BLOCK_M: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr,
                DOT_PREC: tl.constexpr, ATOMIC_DQ: tl.constexpr, USE_TMA: tl.constexpr,
                DQ_TMA_REDUCE: tl.constexpr):
    """Query tiles [lo, hi) against this program's key block; transposed scores [BN, BM].
    ATOMIC_DQ: also add this key block's share of dQ (scale * dS K) into the fp32
    accumulator with relaxed atomics (DQ_TMA_REDUCE: TMA reduce-adds of whole tiles).
    USE_TMA: q/do tiles through tensor descriptors (rows past Tq read 0, like the masked
    loads)."""
    dmask = offs_d < HEAD_DIM
    for start_m in range(lo, hi, BLOCK_M):
        rows = start_m + offs_m  # [BLOCK_M] query indices
        if MASKED:
            rmask = rows < Tq
            ld = rmask[:, None] & dmask[None, :]
        else:
            rmask = rows >= 0
            ld = dmask[None, :]
        q = _load_rows(q_desc, q_base, b, start_m, h, rows, sqt, offs_d, ld,
                       BLOCK_M, BLOCK_D, USE_TMA)
        lse2 = tl.load(lse_base + rows, mask=rmask, other=0.0) * 1.4426950408889634
        sT = tl.dot(k, tl.trans(q), input_precision=DOT_PREC) * qk_scale  # [BN, BM]
        pT = tl.math.exp2(sT - lse2[None, :])
        if MASKED:
            pos_q = offset + rows
            vis = rmask[None, :]
            if CAUSAL:
                vis = vis & (pos_k[:, None] <= pos_q[None, :])
            if HAS_WINDOW:
                vis = vis & (pos_k[:, None] > pos_q[None, :] - window)
            pT = tl.where(vis, pT, 0.0)
        do = _load_rows(do_desc, do_base, b, start_m, h, rows, sdt, offs_d, ld,
                        BLOCK_M, BLOCK_D, USE_TMA)
        dv = tl.dot(pT.to(do.dtype), do, dv, input_precision=DOT_PREC)
        dpT = tl.dot(v, tl.trans(do), input_precision=DOT_PREC)  # [BN, BM]
        delta = tl.load(delta_base + rows, mask=rmask, other=0.0)
        dsT = pT * (dpT - delta[None, :])
        dk = tl.dot(dsT.to(q.dtype), q, dk, input_precision=DOT_PREC)
        if ATOMIC_DQ:
            dq = tl.dot(tl.trans(dsT.to(k.dtype)), k, input_precision=DOT_PREC)  # [BM, D]
            if DQ_TMA_REDUCE:  # one bulk asynchronous reduce-add (rows past Tq dropped)
                dqa_desc.atomic_add([b, start_m, h, 0],
                                    (dq * sm_scale).reshape(1, BLOCK_M, 1, BLOCK_D))
            else:
                tl.atomic_add(dqa_base + rows[:, None] * sdqa + offs_d[None, :], dq * sm_scale,
                              mask=ld, sem="relaxed")
    return dk, dv


@triton.jit
def _attn_bwd_dkdv(
    q_ptr, k_ptr, v_ptr, do_ptr,   # q/do [B,Tq,H,D], k/v [B,Tk,Hkv,D]
    lse_ptr, delta_ptr,            # [B,H,Tq] fp32 each
    dk_ptr, dv_ptr,                # per query head: [B,Tk,H,D] contiguous
    dqa_ptr,                       # ATOMIC_DQ: fp32 dq accumulator [B,Tq,H,D], zeroed
    sqb, sqt, sqh, skb, skt, skh, svb, svt, svh, sdb, sdt, sdh,
    H, Hkv, Tq, Tk, G,             # heads, kv heads, lengths, H // Hkv
    window, qk_scale, sm_scale,    # window (HAS_WINDOW), scale*log2(e), scale
    CAUSAL: tl.constexpr, HAS_WINDOW: tl.constexpr, HEAD_DIM: tl.constexpr,
    BLOCK_D: tl.constexpr, DOT_PREC: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    ATOMIC_DQ: tl.constexpr = False,  # also accumulate dq (one launch, 5 matmuls a tile pair)
    q_desc=None, do_desc=None,     # USE_TMA: host tensor descriptors of q and do [B,Tq,H,D]
    USE_TMA: tl.constexpr = False,
    dqa_desc=None,                 # DQ_TMA_REDUCE: host descriptor of the fp32 dq
    DQ_TMA_REDUCE: tl.constexpr = False,  # dq tiles added by TMA reduce (no interpreter)
):
    """One program = one block of BLOCK_N keys seen by one (batch, query head); loops over
    the query tiles that see the block. (A loop over the G heads of a group inside the
    program doubled the register spills, so GQA groups are summed by the launcher.)"""
    pid_bh = tl.program_id(0)
    pid_n = tl.program_id(1)  # key block 0 (the most queries when causal) goes first
    b = pid_bh // H
    h = pid_bh % H
    hk = h // G
    n0 = pid_n * BLOCK_N
    offset = Tk - Tq
    offs_n = n0 + tl.arange(0, BLOCK_N)
    offs_m = tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    kvmask = (offs_n[:, None] < Tk) & (offs_d[None, :] < HEAD_DIM)
    k = tl.load(k_ptr + b.to(tl.int64) * skb + hk * skh + offs_n[:, None] * skt + offs_d[None, :],
                mask=kvmask, other=0.0)
    v = tl.load(v_ptr + b.to(tl.int64) * svb + hk * svh + offs_n[:, None] * svt + offs_d[None, :],
                mask=kvmask, other=0.0)
    dk = tl.zeros([BLOCK_N, BLOCK_D], dtype=tl.float32)
    dv = tl.zeros([BLOCK_N, BLOCK_D], dtype=tl.float32)

    # query tiles that see this key block: masked [t_lo, b1), full [b1, b2), masked [b2, t_end)
    if CAUSAL:
        t_lo = (tl.maximum(n0 - offset, 0) // BLOCK_M) * BLOCK_M
        # first query tile whose every query comes after every key of the block
        full_lo = tl.cdiv(tl.maximum(n0 + BLOCK_N - 1 - offset, 0), BLOCK_M) * BLOCK_M
    else:
        t_lo = 0
        full_lo = 0
    if HAS_WINDOW:
        t_end = tl.minimum(Tq, tl.maximum(n0 + BLOCK_N + window - 1 - offset, 0))
        # past this tile some query has left the first key of the block behind
        full_hi = (tl.maximum(n0 + window - offset, 0) // BLOCK_M) * BLOCK_M
        full_hi = tl.minimum(full_hi, (Tq // BLOCK_M) * BLOCK_M)
    else:
        t_end = Tq
        full_hi = (Tq // BLOCK_M) * BLOCK_M
    t_end = tl.cdiv(t_end, BLOCK_M) * BLOCK_M
    b1 = tl.minimum(tl.maximum(full_lo, t_lo), t_end)
    b2 = tl.minimum(tl.maximum(full_hi, b1), t_end)

    q_base = q_ptr + b.to(tl.int64) * sqb + h * sqh
    do_base = do_ptr + b.to(tl.int64) * sdb + h * sdh
    lse_base = lse_ptr + (b * H + h).to(tl.int64) * Tq
    delta_base = delta_ptr + (b * H + h).to(tl.int64) * Tq
    dqa_base = dqa_ptr + b.to(tl.int64) * Tq * H * HEAD_DIM + h * HEAD_DIM
    dk, dv = _dkdv_tiles(dk, dv, k, v, q_base, do_base, lse_base, delta_base, sqt, sdt,
                         offs_m, offs_d, offs_n, t_lo, b1, Tq, offset, window, qk_scale,
                         dqa_base, H * HEAD_DIM, sm_scale, q_desc, do_desc, b, h,
                         dqa_desc, CAUSAL, HAS_WINDOW, True, BLOCK_M, HEAD_DIM, BLOCK_D,
                         DOT_PREC, ATOMIC_DQ, USE_TMA, DQ_TMA_REDUCE)
    dk, dv = _dkdv_tiles(dk, dv, k, v, q_base, do_base, lse_base, delta_base, sqt, sdt,
                         offs_m, offs_d, offs_n, b1, b2, Tq, offset, window, qk_scale,
                         dqa_base, H * HEAD_DIM, sm_scale, q_desc, do_desc, b, h,
                         dqa_desc, CAUSAL, HAS_WINDOW, False, BLOCK_M, HEAD_DIM, BLOCK_D,
                         DOT_PREC, ATOMIC_DQ, USE_TMA, DQ_TMA_REDUCE)
    dk, dv = _dkdv_tiles(dk, dv, k, v, q_base, do_base, lse_base, delta_base, sqt, sdt,
                         offs_m, offs_d, offs_n, b2, t_end, Tq, offset, window, qk_scale,
                         dqa_base, H * HEAD_DIM, sm_scale, q_desc, do_desc, b, h,
                         dqa_desc, CAUSAL, HAS_WINDOW, True, BLOCK_M, HEAD_DIM, BLOCK_D,
                         DOT_PREC, ATOMIC_DQ, USE_TMA, DQ_TMA_REDUCE)
    # dk/dv of this query head: [B,Tk,H,D] (the launcher sums the G heads of a group)
    out = ((b * Tk + offs_n[:, None]).to(tl.int64) * H + h) * HEAD_DIM + offs_d[None, :]
    tl.store(dk_ptr + out, (dk * sm_scale).to(dk_ptr.dtype.element_ty), mask=kvmask)
    tl.store(dv_ptr + out, dv.to(dv_ptr.dtype.element_ty), mask=kvmask)


@triton.jit
def _dq_tiles(dq, q, do, lse2, delta, k_base, v_base, skt, svt, offs_n, offs_d, pos_q,
              lo, hi, Tk, window, qk_scale,
              k_desc, v_desc, b, hk,  # USE_TMA: [B,Tk,Hkv,D] descriptors, tile [1,BN,1,BD]
              CAUSAL: tl.constexpr, HAS_WINDOW: tl.constexpr, MASKED: tl.constexpr,
              BLOCK_N: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr,
              DOT_PREC: tl.constexpr, USE_TMA: tl.constexpr):
    """Key tiles [lo, hi) for this program's query block."""
    dmask = offs_d < HEAD_DIM
    for start_n in range(lo, hi, BLOCK_N):
        cols = start_n + offs_n
        if MASKED:
            ld = (cols[:, None] < Tk) & dmask[None, :]
        else:
            ld = dmask[None, :]
        if USE_TMA:
            k = k_desc.load([b, start_n, hk, 0]).reshape(BLOCK_N, BLOCK_D)
            v = v_desc.load([b, start_n, hk, 0]).reshape(BLOCK_N, BLOCK_D)
        else:
            k = tl.load(k_base + cols[:, None] * skt + offs_d[None, :], mask=ld, other=0.0)
            v = tl.load(v_base + cols[:, None] * svt + offs_d[None, :], mask=ld, other=0.0)
        s = tl.dot(q, tl.trans(k), input_precision=DOT_PREC) * qk_scale  # [BM, BN]
        p = tl.math.exp2(s - lse2[:, None])
        if MASKED:
            vis = cols[None, :] < Tk
            if CAUSAL:
                vis = vis & (cols[None, :] <= pos_q[:, None])
            if HAS_WINDOW:
                vis = vis & (cols[None, :] > pos_q[:, None] - window)
            p = tl.where(vis, p, 0.0)
        dp = tl.dot(do, tl.trans(v), input_precision=DOT_PREC)  # [BM, BN]
        ds = p * (dp - delta[:, None])
        dq = tl.dot(ds.to(k.dtype), k, dq, input_precision=DOT_PREC)
    return dq


@triton.jit
def _attn_bwd_dq(
    q_ptr, k_ptr, v_ptr, do_ptr, lse_ptr, delta_ptr,
    dq_ptr,                        # [B,Tq,H,D] contiguous
    sqb, sqt, sqh, skb, skt, skh, svb, svt, svh, sdb, sdt, sdh,
    H, Tq, Tk, G, window, qk_scale, sm_scale,
    CAUSAL: tl.constexpr, HAS_WINDOW: tl.constexpr, HEAD_DIM: tl.constexpr,
    BLOCK_D: tl.constexpr, DOT_PREC: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    o_ptr=None, sob=0, sot=0, soh=0,  # FUSE_DELTA: o [B,Tq,H,D] and its strides
    FUSE_DELTA: tl.constexpr = False,  # compute delta = rowsum(o * do) here and store it
    k_desc=None, v_desc=None,      # USE_TMA: host tensor descriptors of k and v [B,Tk,Hkv,D]
    USE_TMA: tl.constexpr = False,
):
    """One program = one block of BLOCK_M queries of one (batch, head); the last query
    blocks (the most keys under a causal mask) are launched first. With FUSE_DELTA the
    program computes its rows' delta itself and stores it for the dk/dv kernel, which
    then runs after this one (no separate delta launch)."""
    pid_bh = tl.program_id(0)
    pid_m = tl.num_programs(1) - 1 - tl.program_id(1)
    b = pid_bh // H
    h = pid_bh % H
    hk = h // G
    m0 = pid_m * BLOCK_M
    offset = Tk - Tq
    offs_m = m0 + tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    pos_q = offset + offs_m
    rmask = offs_m < Tq
    ld = rmask[:, None] & (offs_d[None, :] < HEAD_DIM)
    q = tl.load(q_ptr + b.to(tl.int64) * sqb + h * sqh + offs_m[:, None] * sqt + offs_d[None, :],
                mask=ld, other=0.0)
    do = tl.load(do_ptr + b.to(tl.int64) * sdb + h * sdh + offs_m[:, None] * sdt
                 + offs_d[None, :], mask=ld, other=0.0)
    lse2 = tl.load(lse_ptr + pid_bh.to(tl.int64) * Tq + offs_m, mask=rmask,
                   other=0.0) * 1.4426950408889634
    if FUSE_DELTA:
        o = tl.load(o_ptr + b.to(tl.int64) * sob + h * soh + offs_m[:, None] * sot
                    + offs_d[None, :], mask=ld, other=0.0)
        delta = tl.sum(o.to(tl.float32) * do.to(tl.float32), 1)  # [BLOCK_M]
        tl.store(delta_ptr + pid_bh.to(tl.int64) * Tq + offs_m, delta, mask=rmask)
    else:
        delta = tl.load(delta_ptr + pid_bh.to(tl.int64) * Tq + offs_m, mask=rmask, other=0.0)
    k_base = k_ptr + b.to(tl.int64) * skb + hk * skh
    v_base = v_ptr + b.to(tl.int64) * svb + hk * svh

    p0 = offset + m0
    if CAUSAL:
        t_end = tl.minimum(Tk, p0 + BLOCK_M)
        full_hi = ((p0 + 1) // BLOCK_N) * BLOCK_N
    else:
        t_end = Tk
        full_hi = (Tk // BLOCK_N) * BLOCK_N
    t_end = tl.cdiv(t_end, BLOCK_N) * BLOCK_N
    if HAS_WINDOW:
        t_lo = (tl.maximum(p0 - window + 1, 0) // BLOCK_N) * BLOCK_N
        full_lo = tl.cdiv(tl.maximum(p0 + BLOCK_M - window, 0), BLOCK_N) * BLOCK_N
    else:
        t_lo = 0
        full_lo = 0
    b1 = tl.minimum(tl.maximum(full_lo, t_lo), t_end)
    b2 = tl.minimum(tl.maximum(full_hi, b1), t_end)

    dq = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)
    dq = _dq_tiles(dq, q, do, lse2, delta, k_base, v_base, skt, svt, offs_n, offs_d, pos_q,
                   t_lo, b1, Tk, window, qk_scale, k_desc, v_desc, b, hk,
                   CAUSAL, HAS_WINDOW, True, BLOCK_N, HEAD_DIM, BLOCK_D, DOT_PREC, USE_TMA)
    dq = _dq_tiles(dq, q, do, lse2, delta, k_base, v_base, skt, svt, offs_n, offs_d, pos_q,
                   b1, b2, Tk, window, qk_scale, k_desc, v_desc, b, hk,
                   CAUSAL, HAS_WINDOW, False, BLOCK_N, HEAD_DIM, BLOCK_D, DOT_PREC, USE_TMA)
    dq = _dq_tiles(dq, q, do, lse2, delta, k_base, v_base, skt, svt, offs_n, offs_d, pos_q,
                   b2, t_end, Tk, window, qk_scale, k_desc, v_desc, b, hk,
                   CAUSAL, HAS_WINDOW, True, BLOCK_N, HEAD_DIM, BLOCK_D, DOT_PREC, USE_TMA)
    out = ((b * Tq + offs_m[:, None]).to(tl.int64) * H + h) * HEAD_DIM + offs_d[None, :]
    tl.store(dq_ptr + out, (dq * sm_scale).to(dq_ptr.dtype.element_ty), mask=ld)


def _tuner(big: str, small: str, opts, descs=(), **kw):
    """An autotuner over `opts` = (big, small, warps, stages[, maxnreg]): `big` is the
    block a program owns, `small` the one it loops over (candidates chosen from sm_90
    compiles without register spills; the first is also the interpreter's single
    config). With `descs`
    (TMA variants) each config's pre_hook gives those tensor descriptors tiles of the
    config's `small` rows."""
    hook = set_tma_rows(small, *descs) if descs else None
    return triton.autotune(
        configs=pick_configs([triton.Config({big: o[0], small: o[1]}, num_warps=o[2],
                                            num_stages=o[3], pre_hook=hook,
                                            maxnreg=o[4] if len(o) > 4 else None)
                              for o in opts]),
        key=_TUNE_KEY, **kw)


_QDO, _KV = ("q_desc", "do_desc"), ("k_desc", "v_desc")
dkdv_tuned = _tuner("BLOCK_N", "BLOCK_M", _DKDV_OPTS)(_attn_bwd_dkdv)
dkdv_tma_tuned = _tuner("BLOCK_N", "BLOCK_M", _DKDV_OPTS, _QDO)(_attn_bwd_dkdv)
# timing an atomic candidate adds into dq: the autotuner zeroes it before each run
dkdv_atomic_tuned = _tuner("BLOCK_N", "BLOCK_M", _ATOMIC_OPTS,
                           reset_to_zero=["dqa_ptr"])(_attn_bwd_dkdv)
dkdv_atomic_tma_tuned = _tuner("BLOCK_N", "BLOCK_M", _ATOMIC_OPTS, _QDO,
                               reset_to_zero=["dqa_ptr"])(_attn_bwd_dkdv)
dkdv_atomic_tmared_tuned = _tuner("BLOCK_N", "BLOCK_M", _ATOMIC_OPTS, _QDO + ("dqa_desc",),
                                  reset_to_zero=["dqa_ptr"])(_attn_bwd_dkdv)
dq_tuned = _tuner("BLOCK_M", "BLOCK_N", _DQ_OPTS)(_attn_bwd_dq)
dq_tma_tuned = _tuner("BLOCK_M", "BLOCK_N", _DQ_TMA_OPTS, _KV)(_attn_bwd_dq)
# FUSE_DELTA: tuned on its own (same candidates)
dq_delta_tuned = _tuner("BLOCK_M", "BLOCK_N", _DQ_OPTS)(_attn_bwd_dq)
dq_delta_tma_tuned = _tuner("BLOCK_M", "BLOCK_N", _DQ_TMA_OPTS, _KV)(_attn_bwd_dq)
dkdv2_tuned = _tuner("BLOCK_N", "BLOCK_M", _DKDV2_OPTS)(_attn_bwd_dkdv)
dq2_tuned = _tuner("BLOCK_M", "BLOCK_N", _DQ2_OPTS)(_attn_bwd_dq)
dq_delta2_tuned = _tuner("BLOCK_M", "BLOCK_N", _DQ2_OPTS)(_attn_bwd_dq)
dkdv_tuned_wide = triton.autotune(configs=_wide_configs("BLOCK_N", "BLOCK_M"),
                                  key=_TUNE_KEY)(_attn_bwd_dkdv)
dq_tuned_wide = triton.autotune(configs=_wide_configs("BLOCK_M", "BLOCK_N"),
                                key=_TUNE_KEY)(_attn_bwd_dq)


# ----------------------------------------------------------------------------- launchers

# Backward variants (MIXZOO_ATTN_BWD_VARIANT or `variant=`), all tested equal to the reference:
#   split    delta launch, then dk/dv (4 matmuls a tile pair), then dq (3 matmuls)
#   dqdelta  dq first, computing and storing delta itself; then dk/dv (one launch fewer)
#   atomic   delta launch, then ONE dk/dv launch that also adds dq into a zeroed fp32
#            buffer with relaxed atomics (5 matmuls a tile pair instead of 7; dq's sum
#            order is not deterministic)
#   atomic_tmared  atomic_tma whose dq tiles are added by TMA reduce (cp.reduce.async.bulk:
#            one asynchronous bulk add per tile); GPU only: the interpreter has no
#            descriptor reduce
#   split2, dqdelta2  split / dqdelta over more candidates (_DKDV2_OPTS, _DQ2_OPTS)
# (Issuing the two matmuls that do not need the probabilities back to back was tried:
# Triton 3.9 still waits for each before the next, sm_90 PTX unchanged in waits.)
# and the first three with "_tma": the looped-over tiles (q/do in dk/dv, k/v in dq) come
# through host tensor descriptors (TMA on Hopper), where the tensors meet TMA's alignment
# rules. Head dim 256 runs `split` without TMA (its own small tiles).
# GPU call 10 (H100, B4 T4096 H16 D128 bf16, fwd+bwd ms, causal / W=512): split 2.914 /
# 1.023; dqdelta 2.920 / 1.002; atomic 3.039 / 1.221; atomic_tma 3.061 / 1.181;
# atomic_tmared 3.248 / 1.168; split_tma 2.960 / 0.978 (tma fwd); dqdelta_tma 2.924 / 0.945
# (tma fwd). The dq TMA kernel's first candidate crashed ptxas (SIGSEGV, Triton 3.6) at
# causal D=128 without a window under MIXZOO_SINGLE_CONFIG=1.
BWD_VARIANTS = ("split", "dqdelta", "atomic", "split_tma", "dqdelta_tma", "atomic_tma",
                "atomic_tmared", "split2", "dqdelta2")
# Defaults, by whether a window is set (MIXZOO_ATTN_BWD_VARIANT overrides both): windowed
# "dqdelta" (one launch fewer than "split", same numerics: against split with the same
# forward in GPU calls 10 and 13, H100 B4 T4096 H16 D128 bf16, fwd+bwd ms 1.002/1.023,
# 0.945/0.978, 1.319/1.389 with W=512); no window "dqdelta2" (paired with the forward
# "tune2_fold": triton_fwd.py's note on the defaults gives the calls 13-16 numbers).
BWD_VARIANT = os.environ.get("MIXZOO_ATTN_BWD_VARIANT")     # None: by window, above
DEFAULT_BWD = {"window": "dqdelta", "global": "dqdelta2"}


def attn_bwd(do, q, k, v, o, lse, causal: bool, window: int, scale: float,
             variant: str | None = None):
    """Gradients (dq, dk, dv) in the inputs' dtypes and shapes. window <= 0 means none."""
    variant = variant or BWD_VARIANT or DEFAULT_BWD["window" if window > 0 else "global"]
    if variant not in BWD_VARIANTS:
        raise ValueError(f"attention backward variant {variant!r}: expected one of "
                         f"{BWD_VARIANTS} (MIXZOO_ATTN_BWD_VARIANT)")
    q, k, v, o, do = (_last_dim_contig(t) for t in (q, k, v, o, do))
    B, Tq, H, D = q.shape
    Tk, Hkv = k.shape[1], k.shape[2]
    dq = torch.empty(B, Tq, H, D, device=q.device, dtype=q.dtype)
    dk = torch.empty(B, Tk, Hkv, D, device=q.device, dtype=k.dtype)
    dv = torch.empty(B, Tk, Hkv, D, device=q.device, dtype=v.dtype)
    if Tq == 0 or Tk == 0:
        return dq.zero_(), dk.zero_(), dv.zero_()
    BD = block_d(D)
    wide = BD >= 256
    reduce = variant == "atomic_tmared"
    more = variant.endswith("2")  # the "2" candidate lists
    kind = "atomic" if reduce else variant.removesuffix("_tma").removesuffix("2")
    tma = reduce or variant.endswith("_tma")
    if wide:
        kind, tma, reduce = "split", False, False
    delta = torch.empty(B, H, Tq, device=q.device, dtype=torch.float32)
    lse = lse.contiguous()
    common = (q.stride(0), q.stride(1), q.stride(2), k.stride(0), k.stride(1), k.stride(2),
              v.stride(0), v.stride(1), v.stride(2), do.stride(0), do.stride(1), do.stride(2))
    flags = dict(CAUSAL=causal, HAS_WINDOW=window > 0, HEAD_DIM=D, BLOCK_D=BD,
                 DOT_PREC=dot_precision(q.dtype))
    G = H // Hkv
    kv_desc = tma_descs(_KV, (k, v), BD) if tma else {}
    qdo_desc = tma_descs(_QDO, (q, do), BD) if tma else {}

    def launch_dq(fuse_delta: bool):
        if wide:
            dq_kernel = dq_tuned_wide
        elif fuse_delta:
            dq_kernel = (dq_delta_tma_tuned if kv_desc else dq_delta2_tuned if more
                         else dq_delta_tuned)
        else:
            dq_kernel = dq_tma_tuned if kv_desc else dq2_tuned if more else dq_tuned
        extra = dict(o_ptr=o, sob=o.stride(0), sot=o.stride(1), soh=o.stride(2),
                     FUSE_DELTA=True) if fuse_delta else {}
        if kv_desc:
            extra.update(kv_desc, USE_TMA=True)
        dq_kernel[lambda meta: (B * H, cdiv(Tq, meta["BLOCK_M"]))](
            q, k, v, do, lse, delta, dq, *common,
            H, Tq, Tk, G, max(window, 1), scale * LOG2E, scale, **flags, **extra)

    if kind == "dqdelta":
        launch_dq(True)  # writes delta for the dk/dv launch below
    else:
        bm_delta = 64
        _attn_bwd_delta[(cdiv(Tq, bm_delta), B * H)](
            o, do, delta, o.stride(0), o.stride(1), o.stride(2),
            do.stride(0), do.stride(1), do.stride(2), H, Tq,
            HEAD_DIM=D, BLOCK_D=BD, BLOCK_M=bm_delta)
    if G == 1:
        dk_h, dv_h = dk, dv
    else:  # per-query-head gradients in fp32, summed over each group below
        dk_h = torch.empty(B, Tk, H, D, device=q.device, dtype=torch.float32)
        dv_h = torch.empty(B, Tk, H, D, device=q.device, dtype=torch.float32)
    extra = dict(qdo_desc, USE_TMA=True) if qdo_desc else {}
    if kind == "atomic":
        dq_acc = torch.zeros(B, Tq, H, D, device=q.device, dtype=torch.float32)
        dkdv = dkdv_atomic_tma_tuned if qdo_desc else dkdv_atomic_tuned
        extra["ATOMIC_DQ"] = True
        dqa_desc = tma_descs(("dqa_desc",), (dq_acc,), BD) if reduce and qdo_desc else {}
        if dqa_desc:
            dkdv = dkdv_atomic_tmared_tuned
            extra.update(dqa_desc, DQ_TMA_REDUCE=True)
    else:
        dq_acc = dq  # not touched
        dkdv = (dkdv_tuned_wide if wide else dkdv_tma_tuned if qdo_desc else
                dkdv2_tuned if more else dkdv_tuned)
    dkdv[lambda meta: (B * H, cdiv(Tk, meta["BLOCK_N"]))](
        q, k, v, do, lse, delta, dk_h, dv_h, dq_acc, *common,
        H, Hkv, Tq, Tk, G, max(window, 1), scale * LOG2E, scale, **flags, **extra)
    if G > 1:
        dk = dk_h.view(B, Tk, Hkv, G, D).sum(3).to(k.dtype)  # [B,Tk,Hkv,D]
        dv = dv_h.view(B, Tk, Hkv, G, D).sum(3).to(v.dtype)
    if kind == "split":
        launch_dq(False)
    elif kind == "atomic":
        dq = dq_acc.to(q.dtype)
    return dq, dk, dv
