"""Attention forward kernels (flash-attention style) and their launchers.

Math (README.md has the derivation). For query i at absolute position p_i = Tk - Tq + i
and the keys it may see (causal: j <= p_i; window W: p_i - W < j), in the base-2 domain
s_ij = (scale * log2 e) q_i . k_j, and over key tiles n the running
    m' = max(m, max_j s_ij),  acc = acc * 2^(m - m') + sum_j 2^(s_ij - m') v_j,
    l  = l * 2^(m - m') + sum_j 2^(s_ij - m')
give o_i = acc / l and lse_i = (m + log2 l) * ln 2 (natural log), which the backward saves.

Tiles are visited in three runs: key tiles cut by the window's lower edge (masked), tiles
every query of the block sees completely (no mask work), and tiles on the causal
diagonal or past Tk (masked). Tiles entirely outside the causal window are never
visited, so sliding-window cost is ~ Tq * W.

`_attn_decode_kernel` serves few queries against a long KV cache: one program packs
all G = H/Hkv query heads of a kv head times the Tq queries into its rows (the K/V tiles
are read once per kv head, not once per query head) and the keys are split over
programs (flash-decoding); partial results are merged with their logsumexps.
"""
from __future__ import annotations

import math
import os

import torch
import triton
import triton.language as tl

try:  # host tensor descriptors (TMA variants): Triton >= 3.4
    from triton.tools.tensor_descriptor import TensorDescriptor
except ImportError:  # pragma: no cover - older Triton: the TMA variants fall back
    TensorDescriptor = None

from .._common import cdiv, is_interpreting, next_power_of_2, pick_configs

LOG2E = 1.4426950408889634
# Running max of rows that have seen no visible key yet. Finite so that 2^(m - m') never
# evaluates -inf - (-inf); masked scores are -inf and give exactly 0.
NEG_BIG = tl.constexpr(-1.0e30)



def _wide_fwd_configs():
    """Head dim 256: smaller tiles, so q and the staged k/v tiles fit shared memory (a
    separate autotuner, because Triton skips pruning once a single config is left)."""
    cfgs = [triton.Config({"BLOCK_M": 64, "BLOCK_N": bn}, num_warps=4, num_stages=2)
            for bn in (64, 32)]
    return cfgs


_TUNE_KEY = ["Tq", "Tk", "HEAD_DIM", "CAUSAL", "HAS_WINDOW", "G", "DOT_PREC"]


def _tma_device(t: torch.Tensor) -> bool:
    """16-bit data on Hopper or newer (TMA; the bf16/fp16 tiles are the measured ones), or
    the interpreter (any dtype)."""
    if is_interpreting():
        return True
    return (t.is_cuda and t.element_size() == 2
            and torch.cuda.get_device_capability(t.device)[0] >= 9)


def tma_ok(*ts: torch.Tensor) -> bool:
    """TMA needs a Hopper-class GPU (16-bit data), 16-byte aligned bases and positive
    16-byte multiples as outer strides (a broadcast, stride-0 gradient goes through the
    pointer loads)."""
    return TensorDescriptor is not None and all(_tma_device(t) for t in ts) and all(
        t.data_ptr() % 16 == 0 and t.stride(-1) == 1
        and all(st > 0 and st * t.element_size() % 16 == 0 for st in t.stride()[:-1])
        for t in ts)


def tma_descs(names, ts, BD: int) -> dict:
    """Host tensor descriptors of [B,T,H,D] tensors, one [1, rows, 1, BD] tile per load; the
    rows are set per autotune config by `set_tma_rows` (the config's pre_hook). Empty
    when the tensors do not meet TMA's alignment rules."""
    if not tma_ok(*ts):
        return {}
    return {n: TensorDescriptor(t, list(t.shape), list(t.stride()), [1, 16, 1, BD])
            for n, t in zip(names, ts)}


def tma_kv(k, v, BD: int) -> dict:
    d = tma_descs(("k_desc", "v_desc"), (k, v), BD)
    return dict(d, USE_TMA=True) if d else {}


def set_tma_rows(rows_key: str, *names: str):
    """A config pre_hook that gives the named descriptors tiles of the config's rows."""
    def hook(nargs):
        for n in names:
            if nargs.get(n) is not None:
                nargs[n].block_shape = [1, nargs[rows_key], 1, nargs["BLOCK_D"]]
    return hook


@triton.jit
def _fwd_tiles(acc, l_i, m_i, q, k_base, v_base, stride_kt, offs_n, offs_d, pos_q,
               lo, hi, Tk, window, qk_scale,
               k_desc, v_desc, b, hk,  # USE_TMA: [B,Tk,Hkv,D] descriptors, tile [1,BN,1,BD]
               CAUSAL: tl.constexpr, HAS_WINDOW: tl.constexpr, MASKED: tl.constexpr,
               BLOCK_N: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr,
               DOT_PREC: tl.constexpr, USE_TMA: tl.constexpr, FOLD: tl.constexpr):
    """Visit key tiles [lo, hi) in steps of BLOCK_N, updating (acc, l_i, m_i).
    MASKED=False means every query of the block sees every key of these tiles. USE_TMA
    loads k/v tiles through tensor descriptors (rows past Tk and columns past D read 0,
    as the masked pointer loads do). FOLD (needs qk_scale > 0) applies the scale inside
    the exponent's FMA instead of a separate multiply of every score."""
    dmask = offs_d < HEAD_DIM  # [BLOCK_D] folds to all-true when HEAD_DIM == BLOCK_D
    for start_n in range(lo, hi, BLOCK_N):
        cols = start_n + offs_n  # [BLOCK_N] key indices
        kv_off = cols[:, None] * stride_kt + offs_d[None, :]  # [BLOCK_N, BLOCK_D]
        if MASKED:
            ld_mask = (cols[:, None] < Tk) & dmask[None, :]
        else:
            ld_mask = dmask[None, :]
        if USE_TMA:
            k = k_desc.load([b, start_n, hk, 0]).reshape(BLOCK_N, BLOCK_D)
        else:
            k = tl.load(k_base + kv_off, mask=ld_mask, other=0.0)  # [BLOCK_N, BLOCK_D]
        s = tl.dot(q, tl.trans(k), input_precision=DOT_PREC)  # [BLOCK_M, BLOCK_N] unscaled
        if not FOLD:
            s = s * qk_scale
        if MASKED:
            vis = cols[None, :] < Tk
            if CAUSAL:
                vis = vis & (cols[None, :] <= pos_q[:, None])
            if HAS_WINDOW:
                vis = vis & (cols[None, :] > pos_q[:, None] - window)
            s = tl.where(vis, s, float("-inf"))
        if USE_TMA:
            v = v_desc.load([b, start_n, hk, 0]).reshape(BLOCK_N, BLOCK_D)
        else:
            v = tl.load(v_base + kv_off, mask=ld_mask, other=0.0)  # [BLOCK_N, BLOCK_D]
        acc, l_i, m_i = _online_update(acc, l_i, m_i, s, v, qk_scale, DOT_PREC, FOLD)
    return acc, l_i, m_i


@triton.jit
def _online_update(acc, l_i, m_i, s, v, qk_scale, DOT_PREC: tl.constexpr, FOLD: tl.constexpr):
    """One key tile of the online softmax: scores s [BM, BN] (already times qk_scale, or
    raw with FOLD), values v [BN, BD]."""
    if FOLD:  # qk_scale > 0: max(scale * s) = scale * max(s); one FMA per score below
        m_new = tl.maximum(m_i, tl.max(s, 1) * qk_scale)  # [BLOCK_M]
        p = tl.math.exp2(s * qk_scale - m_new[:, None])  # [BLOCK_M, BLOCK_N]
    else:
        m_new = tl.maximum(m_i, tl.max(s, 1))  # [BLOCK_M]
        p = tl.math.exp2(s - m_new[:, None])  # [BLOCK_M, BLOCK_N]
    alpha = tl.math.exp2(m_i - m_new)
    l_i = l_i * alpha + tl.sum(p, 1)
    acc = acc * alpha[:, None]
    acc = tl.dot(p.to(v.dtype), v, acc, input_precision=DOT_PREC)
    return acc, l_i, m_new


@triton.jit
def _attn_fwd_kernel(
    q_ptr, k_ptr, v_ptr,      # q [B,Tq,H,D], k/v [B,Tk,Hkv,D] (last dim contiguous)
    o_ptr, lse_ptr,           # o [B,Tq,H,D] (same strides as q's layout), lse [B,H,Tq] fp32
    sqb, sqt, sqh,            # q strides (batch, time, head)
    skb, skt, skh,            # k strides
    svb, svt, svh,            # v strides
    sob, sot, soh,            # o strides
    H, Tq, Tk,                # query heads, query length, key length
    G,                        # query heads per kv head (H // Hkv)
    window,                   # sliding window size (used when HAS_WINDOW)
    qk_scale,                 # scale * log2(e)
    CAUSAL: tl.constexpr, HAS_WINDOW: tl.constexpr,
    HEAD_DIM: tl.constexpr,   # D
    BLOCK_D: tl.constexpr,    # next power of two >= max(D, 16)
    DOT_PREC: tl.constexpr,   # "ieee" for fp32 inputs, "tf32" (ignored) for bf16/fp16
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    k_desc=None, v_desc=None,  # USE_TMA: host tensor descriptors of k and v [B,Tk,Hkv,D]
    USE_TMA: tl.constexpr = False,
    FOLD: tl.constexpr = False,  # scale folded into the exponent's FMA (qk_scale > 0 only)
):
    """One program = one block of BLOCK_M queries of one (batch, head). The grid is
    (B*H, query blocks) with the LAST query blocks (the most keys under a causal mask)
    launched first, so the long programs do not trail at the end."""
    pid_bh = tl.program_id(0)
    pid_m = tl.num_programs(1) - 1 - tl.program_id(1)
    b = pid_bh // H
    h = pid_bh % H
    hk = h // G
    m0 = pid_m * BLOCK_M
    offset = Tk - Tq  # absolute position of query 0
    offs_m = m0 + tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    pos_q = offset + offs_m  # [BLOCK_M]
    dmask = offs_d < HEAD_DIM
    q_base = q_ptr + b.to(tl.int64) * sqb + h * sqh
    k_base = k_ptr + b.to(tl.int64) * skb + hk * skh
    v_base = v_ptr + b.to(tl.int64) * svb + hk * svh
    qmask = (offs_m[:, None] < Tq) & dmask[None, :]
    q = tl.load(q_base + offs_m[:, None] * sqt + offs_d[None, :], mask=qmask, other=0.0)

    # the three runs of key tiles: masked [t_lo, b1), full [b1, b2), masked [b2, t_end)
    p0 = offset + m0  # position of the block's first query
    if CAUSAL:
        t_end = tl.minimum(Tk, p0 + BLOCK_M)
        full_hi = ((p0 + 1) // BLOCK_N) * BLOCK_N  # first tile touching the diagonal
    else:
        t_end = Tk
        full_hi = (Tk // BLOCK_N) * BLOCK_N
    t_end = tl.cdiv(t_end, BLOCK_N) * BLOCK_N
    if HAS_WINDOW:
        t_lo = (tl.maximum(p0 - window + 1, 0) // BLOCK_N) * BLOCK_N
        # first tile all of whose keys every query of the block still sees
        full_lo = tl.cdiv(tl.maximum(p0 + BLOCK_M - window, 0), BLOCK_N) * BLOCK_N
    else:
        t_lo = 0
        full_lo = 0
    b1 = tl.minimum(tl.maximum(full_lo, t_lo), t_end)
    b2 = tl.minimum(tl.maximum(full_hi, b1), t_end)

    m_i = tl.full([BLOCK_M], NEG_BIG, dtype=tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)
    acc, l_i, m_i = _fwd_tiles(acc, l_i, m_i, q, k_base, v_base, skt, offs_n, offs_d, pos_q,
                               t_lo, b1, Tk, window, qk_scale, k_desc, v_desc, b, hk,
                               CAUSAL, HAS_WINDOW, True, BLOCK_N, HEAD_DIM, BLOCK_D, DOT_PREC,
                               USE_TMA, FOLD)
    acc, l_i, m_i = _fwd_tiles(acc, l_i, m_i, q, k_base, v_base, skt, offs_n, offs_d, pos_q,
                               b1, b2, Tk, window, qk_scale, k_desc, v_desc, b, hk,
                               CAUSAL, HAS_WINDOW, False, BLOCK_N, HEAD_DIM, BLOCK_D, DOT_PREC,
                               USE_TMA, FOLD)
    acc, l_i, m_i = _fwd_tiles(acc, l_i, m_i, q, k_base, v_base, skt, offs_n, offs_d, pos_q,
                               b2, t_end, Tk, window, qk_scale, k_desc, v_desc, b, hk,
                               CAUSAL, HAS_WINDOW, True, BLOCK_N, HEAD_DIM, BLOCK_D, DOT_PREC,
                               USE_TMA, FOLD)
    l_safe = tl.where(l_i == 0.0, 1.0, l_i)
    o = acc / l_safe[:, None]
    o_base = o_ptr + b.to(tl.int64) * sob + h * soh
    tl.store(o_base + offs_m[:, None] * sot + offs_d[None, :], o.to(o_ptr.dtype.element_ty),
             mask=qmask)
    lse = (m_i + tl.math.log2(l_safe)) * 0.6931471805599453
    lse = tl.where(l_i == 0.0, float("-inf"), lse)
    tl.store(lse_ptr + pid_bh.to(tl.int64) * Tq + offs_m, lse, mask=offs_m < Tq)


def _fwd_tuner(opts, tma: bool):
    """An autotuner over `opts` = (BLOCK_M, BLOCK_N, warps, stages[, maxnreg]); with `tma` each
    config's pre_hook gives the k/v descriptors tiles of BLOCK_N rows."""
    hook = set_tma_rows("BLOCK_N", "k_desc", "v_desc") if tma else None
    return triton.autotune(
        configs=pick_configs([triton.Config({"BLOCK_M": o[0], "BLOCK_N": o[1]}, num_warps=o[2],
                                            num_stages=o[3], pre_hook=hook,
                                            maxnreg=o[4] if len(o) > 4 else None)
                              for o in opts]),
        key=_TUNE_KEY)(_attn_fwd_kernel)


_BASE_OPTS = [(128, 64, 8, 3), (128, 128, 8, 2)]
# "tune2" candidates: more pipeline stages, 128-key tiles at 3 stages, and 64-query blocks
# at 4 warps small enough for 2-3 programs per SM (sm_90 host builds: 64/64/s2 83 KB of
# shared memory, 64/32/s3 67 KB and 121 registers with TMA), whose softmax phases then
# overlap each other's matmuls; no spills (benchmarks/ops/attention.py --sm90-report);
# and 128/64/8w capped at 128 registers for two programs per SM (98 KB shared; with TMA
# 64 B of stack, 16 B folded)
_TUNE2_OPTS = [(128, 64, 8, 3), (128, 64, 8, 4), (128, 128, 8, 2), (128, 128, 8, 3),
               (64, 64, 4, 2), (64, 32, 4, 3), (128, 64, 8, 2, 128)]
# "tma" candidates: tune2's without 128-key tiles and 64/64 at 4 warps, whose TMA builds
# crashed ptxas (SIGSEGV, Triton 3.6) in GPU call 11 (the autotuner skipped them, but
# every first call paid the compile and printed the PTX)
_TMA_OPTS = [(128, 64, 8, 3), (128, 64, 8, 4), (64, 32, 4, 3), (128, 64, 8, 2, 128)]
attn_fwd_tuned = _fwd_tuner(_BASE_OPTS, False)
# one autotuner per variant (each tunes on its own): {variant name: autotuner}
FWD_TUNERS = {"base": attn_fwd_tuned}
for _fold in ("", "_fold"):
    if _fold:
        FWD_TUNERS["base" + _fold] = _fwd_tuner(_BASE_OPTS, False)
    FWD_TUNERS["tune2" + _fold] = _fwd_tuner(_TUNE2_OPTS, False)
    FWD_TUNERS["tma" + _fold] = _fwd_tuner(_TMA_OPTS, True)
attn_fwd_tune2, attn_fwd_tma = FWD_TUNERS["tune2"], FWD_TUNERS["tma"]
attn_fwd_tuned_wide = triton.autotune(configs=pick_configs(_wide_fwd_configs()),
                                      key=_TUNE_KEY)(_attn_fwd_kernel)


@triton.jit
def _attn_decode_kernel(
    q_ptr, k_ptr, v_ptr,      # q [B,Tq,H,D], k/v [B,Tk,Hkv,D]
    op_ptr, lsep_ptr,         # partials: o [B*Hkv, S, R, D] fp32, lse [B*Hkv, S, R] fp32
    sqb, sqt, sqh, skb, skt, skh, svb, svt, svh,
    Hkv, Tq, Tk, G,           # kv heads, query length, key length, query heads per kv head
    window, qk_scale,         # window size (HAS_WINDOW), scale * log2(e)
    kv_lo,                    # first key any query may see
    split_len,                # keys per split (a multiple of BLOCK_N)
    S, R,                     # number of splits, rows per kv head (= G * Tq)
    CAUSAL: tl.constexpr, HAS_WINDOW: tl.constexpr, HEAD_DIM: tl.constexpr,
    BLOCK_D: tl.constexpr, DOT_PREC: tl.constexpr,
    BLOCK_M: tl.constexpr,    # >= R, a power of two >= 16
    BLOCK_N: tl.constexpr,
):
    """One program = all G*Tq query rows of one (batch, kv head) against one key split.
    Row r is query head hk*G + r // Tq at query index r % Tq."""
    pid_s = tl.program_id(0)
    pid_bk = tl.program_id(1)
    b = pid_bk // Hkv
    hk = pid_bk % Hkv
    rows = tl.arange(0, BLOCK_M)
    qi = rows % Tq
    h = hk * G + rows // Tq
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    dmask = offs_d < HEAD_DIM
    rmask = rows < R
    q_off = b.to(tl.int64) * sqb + qi[:, None] * sqt + h[:, None] * sqh + offs_d[None, :]
    q = tl.load(q_ptr + q_off, mask=rmask[:, None] & dmask[None, :], other=0.0)
    pos_q = Tk - Tq + qi
    k_base = k_ptr + b.to(tl.int64) * skb + hk * skh
    v_base = v_ptr + b.to(tl.int64) * svb + hk * svh
    lo = kv_lo + pid_s * split_len
    hi = tl.minimum(lo + split_len, Tk)
    m_i = tl.full([BLOCK_M], NEG_BIG, dtype=tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)
    for start_n in range(lo, hi, BLOCK_N):
        cols = start_n + offs_n
        kv_off = cols[:, None] * skt + offs_d[None, :]
        ld_mask = (cols[:, None] < hi) & dmask[None, :]
        k = tl.load(k_base + kv_off, mask=ld_mask, other=0.0)
        s = tl.dot(q, tl.trans(k), input_precision=DOT_PREC) * qk_scale  # [BLOCK_M, BLOCK_N]
        vis = cols[None, :] < hi
        if CAUSAL:
            vis = vis & (cols[None, :] <= pos_q[:, None])
        if HAS_WINDOW:
            vis = vis & (cols[None, :] > pos_q[:, None] - window)
        s = tl.where(vis, s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, 1))
        alpha = tl.math.exp2(m_i - m_new)
        p = tl.math.exp2(s - m_new[:, None])
        l_i = l_i * alpha + tl.sum(p, 1)
        v = tl.load(v_base + kv_off, mask=ld_mask, other=0.0)
        acc = tl.dot(p.to(v.dtype), v, acc * alpha[:, None], input_precision=DOT_PREC)
        m_i = m_new
    l_safe = tl.where(l_i == 0.0, 1.0, l_i)
    o = acc / l_safe[:, None]
    lse = tl.where(l_i == 0.0, float("-inf"), (m_i + tl.math.log2(l_safe)) * 0.6931471805599453)
    part = pid_bk.to(tl.int64) * S + pid_s  # [B*Hkv, S] row
    tl.store(op_ptr + (part * R + rows[:, None]) * HEAD_DIM + offs_d[None, :], o,
             mask=rmask[:, None] & dmask[None, :])
    tl.store(lsep_ptr + part * R + rows, lse, mask=rmask)


# ----------------------------------------------------------------------------- launchers

def block_d(D: int) -> int:
    """Head-dim tile: next power of two, at least 16 (tl.dot's minimum)."""
    return max(16, next_power_of_2(D))


def dot_precision(dtype: torch.dtype) -> str:
    """fp32 inputs get exact fp32 dots; bf16/fp16 use the tensor cores as they are."""
    return "ieee" if dtype == torch.float32 else "tf32"


def _last_dim_contig(t: torch.Tensor) -> torch.Tensor:
    return t if t.stride(-1) == 1 else t.contiguous()


# Forward variants (MIXZOO_ATTN_FWD_VARIANT or `variant=`), each with its own autotuner
# (FWD_TUNERS): "base" (_BASE_OPTS), "tune2" (_TUNE2_OPTS), "tma" (k/v tiles through host
# tensor descriptors, TMA on Hopper, _TUNE2_OPTS; k/v off TMA's 16-byte alignment run
# "tune2"). Each also as "<name>_fold": the scale folded into the exponent's FMA (when
# scale > 0; otherwise unfolded). Head dim 256 always runs its own small tiles.
# (A hand-pipelined loop, QK^T of tile n+1 issued before the softmax of tile n, was tried:
# Triton still waits for that matmul before the exponentials, so it gained no overlap.)
FWD_VARIANTS = ("base", "tune2", "tma", "base_fold", "tune2_fold", "tma_fold")
# Defaults, by whether a window is set (MIXZOO_ATTN_FWD_VARIANT overrides both):
# - windowed: "tma_fold". GPU call 10 (H100, B4 T4096 H16 D128 bf16, same process): forward
#   0.229 vs 0.300 ms ("base") at W=512; with the backward below it was the faster pair at
#   B1 T16384 W2048 in calls 14 and 16 (fwd+bwd 2.487 / 2.554 ms against 2.661 / 2.793 for
#   tune2_fold + dqdelta2) and within noise at W=512.
# - no window (global causal, and bidirectional): "tune2_fold". With the backward "dqdelta2"
#   it was the faster pair at B4 T4096 H16 D128 causal in calls 13, 14 and 16: fwd+bwd 2.687 /
#   2.731 / 2.581 ms against 2.759 / 2.835 / 2.761 for tma_fold + dqdelta; errors equal;
#   test_attention_gpu.py passed with this pair (call 14).
FWD_VARIANT = os.environ.get("MIXZOO_ATTN_FWD_VARIANT")     # None: by window, above
DEFAULT_FWD = {"window": "tma_fold", "global": "tune2_fold"}


def attn_fwd(q, k, v, causal: bool, window: int, scale: float, variant: str | None = None):
    """Launch the forward kernel. window <= 0 means none. Returns (o, lse [B,H,Tq] fp32)."""
    variant = variant or FWD_VARIANT or DEFAULT_FWD["window" if window > 0 else "global"]
    if variant not in FWD_VARIANTS:
        raise ValueError(f"attention forward variant {variant!r}: expected one of "
                         f"{FWD_VARIANTS} (MIXZOO_ATTN_FWD_VARIANT)")
    q, k, v = (_last_dim_contig(t) for t in (q, k, v))
    B, Tq, H, D = q.shape
    Tk, Hkv = k.shape[1], k.shape[2]
    o = torch.empty_like(q, memory_format=torch.contiguous_format)
    lse = torch.empty(B, H, Tq, device=q.device, dtype=torch.float32)
    if Tq == 0:
        return o, lse

    def grid(meta):
        return (B * H, cdiv(Tq, meta["BLOCK_M"]))

    BD = block_d(D)
    tiles, fold = variant.removesuffix("_fold"), variant.endswith("_fold") and scale > 0
    extra = dict(FOLD=True) if fold else {}
    tma = tma_kv(k, v, BD) if tiles == "tma" and BD < 256 else {}
    extra.update(tma)
    if BD >= 256:
        kernel = attn_fwd_tuned_wide
    elif tiles.startswith("tma") and not tma:  # off TMA's alignment: the same tiles by pointer
        kernel = FWD_TUNERS["tune2_fold" if fold else "tune2"]
    else:
        kernel = FWD_TUNERS[tiles + ("_fold" if fold else "")]
    kernel[grid](
        q, k, v, o, lse,
        q.stride(0), q.stride(1), q.stride(2),
        k.stride(0), k.stride(1), k.stride(2),
        v.stride(0), v.stride(1), v.stride(2),
        o.stride(0), o.stride(1), o.stride(2),
        H, Tq, Tk, H // Hkv, max(window, 1), scale * LOG2E,
        CAUSAL=causal, HAS_WINDOW=window > 0, HEAD_DIM=D, BLOCK_D=BD,
        DOT_PREC=dot_precision(q.dtype), **extra,
    )
    return o, lse


DECODE_MAX_ROWS = 64  # G * Tq rows a decode program holds (one BLOCK_M tile)


def use_decode(q, k) -> bool:
    """The decode kernel serves calls whose G*Tq query rows fit one tile and whose keys
    outnumber the queries (a KV cache); it is tested equal to `attn_fwd`."""
    Tq, H = q.shape[1], q.shape[2]
    Tk, Hkv = k.shape[1], k.shape[2]
    return Tq < Tk and (H // Hkv) * Tq <= DECODE_MAX_ROWS


def _num_sms(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).multi_processor_count
    return 2  # interpreter: still exercise several splits


def attn_decode(q, k, v, causal: bool, window: int, scale: float):
    """Few queries against a long KV cache: split-key partials merged by logsumexp.
    Same result as `attn_fwd`: (o [B,Tq,H,D], lse [B,H,Tq] fp32)."""
    q, k, v = (_last_dim_contig(t) for t in (q, k, v))
    B, Tq, H, D = q.shape
    Tk, Hkv = k.shape[1], k.shape[2]
    G = H // Hkv
    R = G * Tq
    BLOCK_M = max(16, next_power_of_2(R))
    BLOCK_N = 64 if D <= 128 else 32
    kv_lo = max(0, Tk - Tq - window + 1) if (causal and window > 0) else 0
    n_keys = Tk - kv_lo
    # enough splits to fill the GPU twice over, each at least 4 key tiles long
    want = cdiv(2 * _num_sms(q.device), B * Hkv)
    S = max(1, min(want, cdiv(n_keys, 4 * BLOCK_N)))
    split_len = cdiv(cdiv(n_keys, S), BLOCK_N) * BLOCK_N
    S = cdiv(n_keys, split_len)
    o_part = torch.empty(B * Hkv, S, R, D, device=q.device, dtype=torch.float32)
    lse_part = torch.empty(B * Hkv, S, R, device=q.device, dtype=torch.float32)
    _attn_decode_kernel[(S, B * Hkv)](
        q, k, v, o_part, lse_part,
        q.stride(0), q.stride(1), q.stride(2), k.stride(0), k.stride(1), k.stride(2),
        v.stride(0), v.stride(1), v.stride(2),
        Hkv, Tq, Tk, G, max(window, 1), scale * LOG2E, kv_lo, split_len, S, R,
        CAUSAL=causal, HAS_WINDOW=window > 0, HEAD_DIM=D, BLOCK_D=block_d(D),
        DOT_PREC=dot_precision(q.dtype), BLOCK_M=BLOCK_M, BLOCK_N=BLOCK_N,
        num_warps=4, num_stages=2,
    )
    # merge the splits: lse = logsumexp_s lse_s, o = sum_s e^(lse_s - lse) o_s
    lse = torch.logsumexp(lse_part, dim=1)  # [B*Hkv, R]
    wts = torch.exp(lse_part - lse[:, None]).nan_to_num_(0.0)  # [B*Hkv, S, R]
    o = (o_part * wts[..., None]).sum(1)  # [B*Hkv, R, D]
    # rows r = g * Tq + i  ->  [B, Hkv, G, Tq, D] -> [B, Tq, H, D]
    o = o.view(B, Hkv, G, Tq, D).permute(0, 3, 1, 2, 4).reshape(B, Tq, H, D).to(q.dtype)
    lse = lse.view(B, Hkv * G, Tq)  # [B,H,Tq] (h = hk * G + g)
    return o, lse


def scale_or_default(scale, D: int) -> float:
    return float(scale) if scale is not None else 1.0 / math.sqrt(D)
