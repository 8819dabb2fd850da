"""Chunkwise (WY/UT) Triton kernels for the delta rule, forward and backward.

Layout: q, k [B,T,H,K]; v [B,T,H,V]; beta [B,T,H]; states [B,H,K,V] fp32.
Chunk size C = 64. Per chunk (rows i, j inside it), with S the state at the chunk start
and q already scaled (and L2-normalised when USE_L2):
    A    = StrictTril(diag(beta) K K^T)                    [C,C]
    Tm   = (I + A)^{-1}                                    (blocked forward substitution)
    W    = Tm diag(beta) K,   U = Tm diag(beta) V          [C,K], [C,V]
    U'   = U - W S
    O    = Q S + (Q K^T * M) U'        (M: causal mask, diagonal included)
    S   <- S + K^T U'
Kernels, in launch order:
    _prep_fwd_kernel    (chunk, b*h)       A, Tm, W, U; stores W, U (and Tm for the backward)
    _state_fwd_kernel   (v-block, b*h)     sequential over chunks: U', O, S (stores chunk
                                           states h and U' for the backward)
    _w_kernel           (chunk, b*h)       W = Tm diag(beta) K again, into a temporary
    _state_bwd_kernel   (v-block, b*h)     reverse over chunks: dS per chunk (stores dh)
    _fused_bwd_kernel   (chunk, b*h)       everything else of the backward, from Tm, U', h, dh
README.md derives the backward.
"""
from __future__ import annotations

import inspect

import torch
import triton
import triton.language as tl

from .._common import cdiv, launch, pick_configs
from . import params
from .params import CHUNK, dims as _dims, dot_precision as _prec
L2_EPS = 1e-6
# keep autotune results in the Triton cache dir, so a new process skips re-benchmarking
_AUTOTUNE_KW = ({"cache_results": True}
                if "cache_results" in inspect.signature(triton.autotune).parameters else {})


# ----------------------------------------------------------------------------- helpers
@triton.jit
def _rows_ptrs(base, b, h, t0, T, H: tl.constexpr, D: tl.constexpr, BD: tl.constexpr,
               NR: tl.constexpr, col0):
    """Pointers and mask of rows t0..t0+NR, columns col0..col0+BD of a contiguous [B,T,H,D]
    tensor at head h. One 64-bit scalar base, 32-bit offsets inside the tile: 64-bit
    per-element offset tiles cost registers (and spills) in the larger kernels."""
    r = tl.arange(0, NR)
    c = col0 + tl.arange(0, BD)
    row0 = base + ((b * T + t0).to(tl.int64) * H + h) * D
    m = (t0 + r < T)[:, None] & (c < D)[None, :]
    return row0 + (r * (H * D))[:, None] + c[None, :], m


@triton.jit
def _load_rows(base, b, h, t0, T, H: tl.constexpr, D: tl.constexpr, BD: tl.constexpr,
               NR: tl.constexpr, col0):
    """Rows t0..t0+NR of a [B,T,H,D] tensor at head h, columns col0..col0+BD -> [NR,BD] fp32.
    Rows past T and columns past D read as zero."""
    p, m = _rows_ptrs(base, b, h, t0, T, H, D, BD, NR, col0)
    return tl.load(p, mask=m, other=0.).to(tl.float32)


@triton.jit
def _store_rows(base, x, b, h, t0, T, H: tl.constexpr, D: tl.constexpr, BD: tl.constexpr,
                NR: tl.constexpr, col0):
    p, m = _rows_ptrs(base, b, h, t0, T, H, D, BD, NR, col0)
    tl.store(p, x.to(base.dtype.element_ty), mask=m)


@triton.jit
def _beta_rows(b, t, T, NB, MODE: tl.constexpr):
    """Where beta of batch row b, times t is stored: MODE 0, at (b, t); MODE 1-2 (the
    bidirectional scan's logits, params.BETA_MODES): rows b >= NB are sequence b - NB reversed."""
    if MODE == 0:
        return b, t
    rev = b >= NB
    return tl.where(rev, b - NB, b), tl.where(rev, T - 1 - t, t)


@triton.jit
def _load_beta(beta, b, h, t0, T, H: tl.constexpr, NR: tl.constexpr, NB, MODE: tl.constexpr):
    """beta of rows t0..t0+NR at (b, h) -> [NR] fp32, 0 past T; MODE 1-2: MODE * sigmoid of
    the stored logit."""
    t = t0 + tl.arange(0, NR)
    sb, st = _beta_rows(b, t, T, NB, MODE)
    x = tl.load(beta + (sb * T + st).to(tl.int64) * H + h, mask=t < T, other=0.).to(tl.float32)
    if MODE != 0:
        x = tl.where(t < T, MODE * tl.sigmoid(x), 0.)
    return x


@triton.jit
def _l2n(x, USE_L2: tl.constexpr):
    """Rows of x divided by sqrt(sum(x^2) + eps) when USE_L2 (eps as in reference.l2norm)."""
    if USE_L2:
        x = x * tl.rsqrt(tl.sum(x * x, 1) + 1e-6)[:, None]
    return x


@triton.jit
def _inv16(a):
    """(I + a)^{-1} for a strictly lower-triangular [16,16] fp32 tile, by forward substitution:
    row i of X is e_i - sum_{j<i} a[i,j] X[j,:]; rows are finished top to bottom."""
    r = tl.arange(0, 16)
    x = (r[:, None] == r[None, :]).to(tl.float32)
    for i in tl.static_range(1, 16):
        a_i = tl.sum(tl.where(r[:, None] == i, a, 0.), 0)       # a[i, :]            [16]
        acc = tl.sum(a_i[:, None] * x, 0)                       # sum_j a[i,j] X[j,:] [16]
        row = (r == i).to(tl.float32) - acc
        x = tl.where(r[:, None] == i, row[None, :], x)
    return x


@triton.jit
def _inv16x4(a00, a11, a22, a33):
    """_inv16 of four independent [16,16] blocks in one pass: they are stacked into one
    [4,16,16] tile, so each of the 15 substitution steps updates row i of all four blocks
    at once (15 dependent steps instead of 60). Returns the four inverses."""
    # stack: join twice -> [16,16,2,2] whose [..., p, q] is block 2p+q, then blocks first
    j = tl.join(tl.join(a00, a22), tl.join(a11, a33))
    a = tl.permute(tl.reshape(j, (16, 16, 4)), (2, 0, 1))                  # [4,16,16]
    r = tl.arange(0, 16)
    x = tl.broadcast_to(((r[:, None] == r[None, :]).to(tl.float32))[None, :, :], (4, 16, 16))
    for i in tl.static_range(1, 16):
        sel = (r == i)[None, :, None]                                       # row i
        a_i = tl.sum(tl.where(sel, a, 0.), 1)                               # a[b, i, :]  [4,16]
        acc = tl.sum(a_i[:, :, None] * x, 1)                # sum_j a[b,i,j] X[b,j,:]   [4,16]
        row = (r == i).to(tl.float32)[None, :] - acc
        x = tl.where(sel, row[:, None, :], x)
    xs = tl.reshape(tl.permute(x, (1, 2, 0)), (16, 16, 2, 2))              # [..., p, q]
    x02, x13 = tl.split(xs)                                  # q = 0: blocks 0, 2; q = 1: 1, 3
    d0, d2 = tl.split(x02)
    d1, d3 = tl.split(x13)
    return d0, d1, d2, d3


@triton.jit
def _st_tile(tinv, base, x, bi: tl.constexpr, bj: tl.constexpr):
    """Store a [16,16] tile at block (bi, bj) of the [64,64] Tm buffer at `base`."""
    r = tl.arange(0, 16)
    tl.store(tinv + base + (bi * 16 + r)[:, None] * 64 + (bj * 16 + r)[None, :], x)


@triton.jit
def _tm_base(i_bh, c, NT):
    """Offset of chunk c's [64,64] Tm tile in the [B*H,NT,64,64] buffer (int64)."""
    return (i_bh.to(tl.int64) * NT + c) * 4096


@triton.jit
def _tm_ptrs(tinv, i_bh, c, NT):
    """Pointers of chunk c's whole [64,64] Tm tile."""
    r = tl.arange(0, 64)
    return tinv + _tm_base(i_bh, c, NT) + r[:, None] * 64 + r[None, :]


@triton.jit
def _w_from_tm(tinv, beta, kd, b, h, i_bh, c, NT, T, H: tl.constexpr, PREC: tl.constexpr,
               NB, BMODE: tl.constexpr):
    """W = Tm diag(beta) K [64,BK] fp32 for chunk c, from the saved Tm and K rounded to the
    input dtype (kd), as the prep kernel computed it (to rounding)."""
    bk = _load_beta(beta, b, h, c * 64, T, H, 64, NB, BMODE)[:, None] * kd.to(tl.float32)
    return tl.dot(tl.load(_tm_ptrs(tinv, i_bh, c, NT)), bk, input_precision=PREC)


@triton.jit
def _tm_times(d0, d1, d2, d3, x10, x20, x21, x30, x31, x32, y0, y1, y2, y3,
              PREC: tl.constexpr):
    """Tm Y by 16-row blocks, Tm given by its lower-triangular [16,16] blocks (d: diagonal,
    x_ij: below it) and Y by its row blocks y0..y3; returns the four row blocks."""
    z0 = tl.dot(d0, y0, input_precision=PREC)
    z1 = tl.dot(x10, y0, input_precision=PREC) + tl.dot(d1, y1, input_precision=PREC)
    z2 = (tl.dot(x20, y0, input_precision=PREC) + tl.dot(x21, y1, input_precision=PREC)
          + tl.dot(d2, y2, input_precision=PREC))
    z3 = (tl.dot(x30, y0, input_precision=PREC) + tl.dot(x31, y1, input_precision=PREC)
          + tl.dot(x32, y2, input_precision=PREC) + tl.dot(d3, y3, input_precision=PREC))
    return z0, z1, z2, z3


# ----------------------------------------------------------------------------- forward
@triton.jit
def _prep_fwd_kernel(
    k, v, beta,          # inputs [B,T,H,K], [B,T,H,V], [B,T,H] (BMODE 1-2: logits [NB,T,H])
    w, u,                # outputs W [B,T,H,K], U [B,T,H,V] in the input dtype
    tinv,                # output Tm [B,H,NT,64,64] fp32, if SAVE_T
    T, NB,               # sequence length; batch of the logits (BMODE 1-2)
    H: tl.constexpr, K: tl.constexpr, V: tl.constexpr,   # heads, key dim, value dim
    BK: tl.constexpr, BV: tl.constexpr,                   # K, V rounded up to powers of 2
    USE_L2: tl.constexpr, SAVE_T: tl.constexpr, PREC: tl.constexpr,
    STACKED: tl.constexpr,                                # _inv16x4 (True) or 4 x _inv16
    BMODE: tl.constexpr,                                  # params.BETA_MODES
):
    """One program per (chunk, b*h). The chunk is handled as 4 row blocks of 16:
    A_ij = diag(beta_i) K_i K_j^T, D_i = (I + StrictTril(A_ii))^{-1},
    X_ij = -D_i sum_{m=j}^{i-1} A_im X_mj (X_jj = D_j), W_i = sum_j X_ij diag(beta_j) K_j."""
    i_c, i_bh = tl.program_id(0), tl.program_id(1)
    b, h = i_bh // H, i_bh % H
    t0 = i_c * 64
    dt = k.dtype.element_ty
    k0 = _l2n(_load_rows(k, b, h, t0, T, H, K, BK, 16, 0), USE_L2)
    k1 = _l2n(_load_rows(k, b, h, t0 + 16, T, H, K, BK, 16, 0), USE_L2)
    k2 = _l2n(_load_rows(k, b, h, t0 + 32, T, H, K, BK, 16, 0), USE_L2)
    k3 = _l2n(_load_rows(k, b, h, t0 + 48, T, H, K, BK, 16, 0), USE_L2)
    b0 = _load_beta(beta, b, h, t0, T, H, 16, NB, BMODE)
    b1 = _load_beta(beta, b, h, t0 + 16, T, H, 16, NB, BMODE)
    b2 = _load_beta(beta, b, h, t0 + 32, T, H, 16, NB, BMODE)
    b3 = _load_beta(beta, b, h, t0 + 48, T, H, 16, NB, BMODE)
    # dot operands in the input dtype (fp32 accumulation), as the state pass uses them
    k0d, k1d, k2d, k3d = k0.to(dt), k1.to(dt), k2.to(dt), k3.to(dt)
    r = tl.arange(0, 16)
    strict = r[:, None] > r[None, :]
    a00 = tl.where(strict, b0[:, None] * tl.dot(k0d, tl.trans(k0d), input_precision=PREC), 0.)
    a11 = tl.where(strict, b1[:, None] * tl.dot(k1d, tl.trans(k1d), input_precision=PREC), 0.)
    a22 = tl.where(strict, b2[:, None] * tl.dot(k2d, tl.trans(k2d), input_precision=PREC), 0.)
    a33 = tl.where(strict, b3[:, None] * tl.dot(k3d, tl.trans(k3d), input_precision=PREC), 0.)
    a10 = b1[:, None] * tl.dot(k1d, tl.trans(k0d), input_precision=PREC)
    a20 = b2[:, None] * tl.dot(k2d, tl.trans(k0d), input_precision=PREC)
    a21 = b2[:, None] * tl.dot(k2d, tl.trans(k1d), input_precision=PREC)
    a30 = b3[:, None] * tl.dot(k3d, tl.trans(k0d), input_precision=PREC)
    a31 = b3[:, None] * tl.dot(k3d, tl.trans(k1d), input_precision=PREC)
    a32 = b3[:, None] * tl.dot(k3d, tl.trans(k2d), input_precision=PREC)
    if STACKED:
        d0, d1, d2, d3 = _inv16x4(a00, a11, a22, a33)
    else:
        d0, d1, d2, d3 = _inv16(a00), _inv16(a11), _inv16(a22), _inv16(a33)
    # off-diagonal blocks of Tm in fp32 (PREC: tf32 for half inputs, tf32x3 for fp32 ones)
    x10 = -tl.dot(d1, tl.dot(a10, d0, input_precision=PREC), input_precision=PREC)
    x21 = -tl.dot(d2, tl.dot(a21, d1, input_precision=PREC), input_precision=PREC)
    x20 = -tl.dot(d2, tl.dot(a20, d0, input_precision=PREC)
                  + tl.dot(a21, x10, input_precision=PREC), input_precision=PREC)
    x32 = -tl.dot(d3, tl.dot(a32, d2, input_precision=PREC), input_precision=PREC)
    x31 = -tl.dot(d3, tl.dot(a31, d1, input_precision=PREC)
                  + tl.dot(a32, x21, input_precision=PREC), input_precision=PREC)
    x30 = -tl.dot(d3, tl.dot(a30, d0, input_precision=PREC)
                  + tl.dot(a31, x10, input_precision=PREC)
                  + tl.dot(a32, x20, input_precision=PREC), input_precision=PREC)
    if SAVE_T:
        base = _tm_base(i_bh, i_c, tl.cdiv(T, 64))
        _st_tile(tinv, base, d0, 0, 0)
        _st_tile(tinv, base, x10, 1, 0)
        _st_tile(tinv, base, d1, 1, 1)
        _st_tile(tinv, base, x20, 2, 0)
        _st_tile(tinv, base, x21, 2, 1)
        _st_tile(tinv, base, d2, 2, 2)
        _st_tile(tinv, base, x30, 3, 0)
        _st_tile(tinv, base, x31, 3, 1)
        _st_tile(tinv, base, x32, 3, 2)
        _st_tile(tinv, base, d3, 3, 3)
        zero = tl.zeros([16, 16], dtype=tl.float32)    # upper blocks: Tm is lower triangular
        _st_tile(tinv, base, zero, 0, 1)
        _st_tile(tinv, base, zero, 0, 2)
        _st_tile(tinv, base, zero, 0, 3)
        _st_tile(tinv, base, zero, 1, 2)
        _st_tile(tinv, base, zero, 1, 3)
        _st_tile(tinv, base, zero, 2, 3)
    # W = Tm diag(beta) K, row block by row block (from the dot-dtype copies of k, so the fp32
    # k tiles need not stay live across the inversion)
    bk0 = b0[:, None] * k0d.to(tl.float32)
    bk1 = b1[:, None] * k1d.to(tl.float32)
    bk2 = b2[:, None] * k2d.to(tl.float32)
    bk3 = b3[:, None] * k3d.to(tl.float32)
    w0, w1, w2, w3 = _tm_times(d0, d1, d2, d3, x10, x20, x21, x30, x31, x32,
                               bk0, bk1, bk2, bk3, PREC)
    _store_rows(w, w0, b, h, t0, T, H, K, BK, 16, 0)
    _store_rows(w, w1, b, h, t0 + 16, T, H, K, BK, 16, 0)
    _store_rows(w, w2, b, h, t0 + 32, T, H, K, BK, 16, 0)
    _store_rows(w, w3, b, h, t0 + 48, T, H, K, BK, 16, 0)
    # U = Tm diag(beta) V
    bv0 = b0[:, None] * _load_rows(v, b, h, t0, T, H, V, BV, 16, 0)
    bv1 = b1[:, None] * _load_rows(v, b, h, t0 + 16, T, H, V, BV, 16, 0)
    bv2 = b2[:, None] * _load_rows(v, b, h, t0 + 32, T, H, V, BV, 16, 0)
    bv3 = b3[:, None] * _load_rows(v, b, h, t0 + 48, T, H, V, BV, 16, 0)
    u0, u1, u2, u3 = _tm_times(d0, d1, d2, d3, x10, x20, x21, x30, x31, x32,
                               bv0, bv1, bv2, bv3, PREC)
    _store_rows(u, u0, b, h, t0, T, H, V, BV, 16, 0)
    _store_rows(u, u1, b, h, t0 + 16, T, H, V, BV, 16, 0)
    _store_rows(u, u2, b, h, t0 + 32, T, H, V, BV, 16, 0)
    _store_rows(u, u3, b, h, t0 + 48, T, H, V, BV, 16, 0)


@triton.jit
def _state_ptrs(base, i_bh, c, NT, K: tl.constexpr, V: tl.constexpr, BK: tl.constexpr,
                BV: tl.constexpr, i_v):
    """Pointers and mask of the [BK, BV] block i_v of chunk c's state in a [B*H,NT,K,V] buffer."""
    rk = tl.arange(0, BK)
    cv = i_v * BV + tl.arange(0, BV)
    off = (i_bh.to(tl.int64) * NT + c) * K * V
    return base + off + rk[:, None] * V + cv[None, :], (rk < K)[:, None] & (cv < V)[None, :]


@triton.jit
def _state_fwd_kernel(
    q, k, w, u,          # q, k [B,T,H,K]; W [B,T,H,K]; U [B,T,H,V] (from _prep_fwd_kernel)
    o,                   # output [B,T,H,V]
    h0, ht,              # initial / final state [B,H,K,V] fp32 (used if HAS_H0 / STORE_HT)
    hbuf,                # chunk-start states [B,H,NT,K,V] (input dtype), written if SAVE_H
    vn,                  # U' [B,T,H,V] (input dtype), written if SAVE_H
    scale, T,            # query scale; sequence length
    H: tl.constexpr, K: tl.constexpr, V: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
    USE_L2: tl.constexpr, HAS_H0: tl.constexpr, STORE_HT: tl.constexpr,
    SAVE_H: tl.constexpr, PREC: tl.constexpr,
):
    """One program per (v-block, b*h), sequential over chunks; S [BK,BV] lives in registers:
    U' = U - W S;  O = Q S + (Q K^T * M) U';  S <- S + K^T U'."""
    i_v, i_bh = tl.program_id(0), tl.program_id(1)
    b, h = i_bh // H, i_bh % H
    dt = q.dtype.element_ty
    NT = tl.cdiv(T, 64)
    r = tl.arange(0, 64)
    causal = r[:, None] >= r[None, :]
    p0, m0 = _state_ptrs(h0, i_bh, 0, 1, K, V, BK, BV, i_v)
    if HAS_H0:
        S = tl.load(p0, mask=m0, other=0.)
    else:
        S = tl.zeros([BK, BV], dtype=tl.float32)
    for c in range(NT):
        t0 = c * 64
        if SAVE_H:
            ph, mh = _state_ptrs(hbuf, i_bh, c, NT, K, V, BK, BV, i_v)
            tl.store(ph, S.to(hbuf.dtype.element_ty), mask=mh)
        qc = (_l2n(_load_rows(q, b, h, t0, T, H, K, BK, 64, 0), USE_L2) * scale).to(dt)
        kc = _l2n(_load_rows(k, b, h, t0, T, H, K, BK, 64, 0), USE_L2).to(dt)
        wc = _load_rows(w, b, h, t0, T, H, K, BK, 64, 0).to(dt)
        uc = _load_rows(u, b, h, t0, T, H, V, BV, 64, i_v * BV)
        Sd = S.to(dt)
        up = uc - tl.dot(wc, Sd, input_precision=PREC)                       # U'  [64,BV]
        upd = up.to(dt)
        if SAVE_H:
            _store_rows(vn, upd, b, h, t0, T, H, V, BV, 64, i_v * BV)
        P = tl.where(causal, tl.dot(qc, tl.trans(kc), input_precision=PREC), 0.)
        oc = tl.dot(qc, Sd, input_precision=PREC) + tl.dot(P.to(dt), upd, input_precision=PREC)
        _store_rows(o, oc, b, h, t0, T, H, V, BV, 64, i_v * BV)
        S += tl.dot(tl.trans(kc), upd, input_precision=PREC)
    if STORE_HT:
        pt, mt = _state_ptrs(ht, i_bh, 0, 1, K, V, BK, BV, i_v)
        tl.store(pt, S, mask=mt)


# ----------------------------------------------------------------------------- backward
@triton.jit
def _w_kernel(
    k, beta, tinv,       # k [B,T,H,K]; beta (as _prep_fwd_kernel's); Tm [B,H,NT,64,64] fp32
    w,                   # output W [B,T,H,K] (input dtype)
    T, NB, H: tl.constexpr, K: tl.constexpr, BK: tl.constexpr, USE_L2: tl.constexpr,
    PREC: tl.constexpr, BMODE: tl.constexpr,
):
    """W = Tm diag(beta) K for one chunk, in parallel over chunks, for the state backward (the
    forward saves U', not W; rebuilding W inside the sequential pass cost 0.51 vs 0.20 ms)."""
    i_c, i_bh = tl.program_id(0), tl.program_id(1)
    b, h = i_bh // H, i_bh % H
    t0 = i_c * 64
    kd = _l2n(_load_rows(k, b, h, t0, T, H, K, BK, 64, 0), USE_L2).to(k.dtype.element_ty)
    wc = _w_from_tm(tinv, beta, kd, b, h, i_bh, i_c, tl.cdiv(T, 64), T, H, PREC, NB, BMODE)
    _store_rows(w, wc, b, h, t0, T, H, K, BK, 64, 0)


@triton.jit
def _state_bwd_kernel(
    q, k, w,             # q, k [B,T,H,K]; W [B,T,H,K] (from _w_kernel; unused if W_FROM_T)
    beta, tinv,          # beta [B,T,H], Tm [B,H,NT,64,64] fp32 (used if W_FROM_T)
    do,                  # output grad [B,T,H,V]
    dht, dh0,            # final-state grad in, initial-state grad out [B,H,K,V] fp32
    dhbuf,               # dS after each chunk [B,H,NT,K,V] (input dtype), written
    scale, T, NB,
    H: tl.constexpr, K: tl.constexpr, V: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
    USE_L2: tl.constexpr, HAS_DHT: tl.constexpr, STORE_DH0: tl.constexpr, PREC: tl.constexpr,
    W_FROM_T: tl.constexpr, BMODE: tl.constexpr,
):
    """Reverse pass over chunks. With dS = dL/dS_{c+1} (the state after chunk c):
    dU' = (Q K^T * M)^T dO + K dS;   dS_c = dS + Q^T dO - W^T dU'.
    W_FROM_T (params.state_w_mode 'rebuild') rebuilds W = Tm diag(beta) K per chunk inside
    the loop instead of loading it (slower; right where the loaded form was wrong)."""
    i_v, i_bh = tl.program_id(0), tl.program_id(1)
    b, h = i_bh // H, i_bh % H
    dt = q.dtype.element_ty
    NT = tl.cdiv(T, 64)
    r = tl.arange(0, 64)
    anti = r[:, None] <= r[None, :]      # P^T[j,i] nonzero for i >= j
    pt, mt = _state_ptrs(dht, i_bh, 0, 1, K, V, BK, BV, i_v)
    if HAS_DHT:
        dS = tl.load(pt, mask=mt, other=0.)
    else:
        dS = tl.zeros([BK, BV], dtype=tl.float32)
    for cc in range(NT):
        c = NT - 1 - cc
        t0 = c * 64
        ph, mh = _state_ptrs(dhbuf, i_bh, c, NT, K, V, BK, BV, i_v)
        tl.store(ph, dS.to(dhbuf.dtype.element_ty), mask=mh)
        qc = (_l2n(_load_rows(q, b, h, t0, T, H, K, BK, 64, 0), USE_L2) * scale).to(dt)
        kc = _l2n(_load_rows(k, b, h, t0, T, H, K, BK, 64, 0), USE_L2).to(dt)
        if W_FROM_T:
            wt = tl.trans(_w_from_tm(tinv, beta, kc, b, h, i_bh, c, NT, T, H, PREC, NB,
                                     BMODE).to(dt))
        else:
            wt = tl.trans(_load_rows(w, b, h, t0, T, H, K, BK, 64, 0).to(dt))
        doc = _load_rows(do, b, h, t0, T, H, V, BV, 64, i_v * BV).to(dt)
        Pt = tl.where(anti, tl.dot(kc, tl.trans(qc), input_precision=PREC), 0.)
        dup = (tl.dot(Pt.to(dt), doc, input_precision=PREC)
               + tl.dot(kc, dS.to(dt), input_precision=PREC))                  # dU' [64,BV]
        dS += (tl.dot(tl.trans(qc), doc, input_precision=PREC)
               - tl.dot(wt, dup.to(dt), input_precision=PREC))
    if STORE_DH0:
        p0, m0 = _state_ptrs(dh0, i_bh, 0, 1, K, V, BK, BV, i_v)
        tl.store(p0, dS, mask=m0)


def _fused_bwd_configs():
    if not params.wide_tuning():          # session 1's list (no 16 warps: faulted on the H100)
        return pick_configs([triton.Config({"BV": bv}, num_warps=nw, num_stages=ns)
                             for bv in (32, 64) for nw in (4, 8) for ns in (1, 2)])
    # sm_90 host builds (Triton 3.9, K=V=128, bf16): BV=16 at 8 warps spills least (296 B),
    # then BV=32 (8 warps); 4 warps and BV=64 spill 2-4x more. 2 warps: three [64,K] fp32
    # tiles do not fit at all. First entry: the interpreter's single config.
    cfgs = [triton.Config({"BV": bv}, num_warps=nw, num_stages=ns)
            for bv, nw, ns in ((32, 8, 2), (16, 8, 1), (16, 8, 2), (16, 8, 3), (32, 8, 1),
                               (32, 8, 3), (32, 4, 2), (64, 8, 2)) + _SMALL_K]
    return pick_configs(cfgs)


# Candidates for key dims <= 64 only (pruned above): the [64,K] tiles hold half the registers,
# so 4 warps fit wider V blocks. Session 5 call 22 (H100, B256 T196 H6 D64, the ViT scan):
# (32, 4, 2), the best of the list above there, took 0.52 ms per chunk_bwd against 0.72-1.0
# for the 8-warp ones.
_SMALL_K = ((64, 4, 2), (64, 4, 3), (32, 4, 3), (16, 4, 2))


def _fused_bwd_prune(configs, named_args, **kwargs):
    """fp32 inputs and head dims over 128: the first candidate only (the one checked right on
    the H100 there; (16, 8 warps, 1 stage) faulted with fp32 inputs at D=64). Key dims over
    64: without the `_SMALL_K` candidates. Triton passes the positional arguments in
    named_args and the keyword ones (K) as keywords."""
    K = kwargs.get("K", named_args.get("K"))
    if named_args["q"].dtype == torch.float32 or K > 128:
        return configs[:1]
    if K > 64:
        return [c for c in configs
                if (c.kwargs["BV"], c.num_warps, c.num_stages) not in _SMALL_K]
    return configs


@triton.autotune(configs=_fused_bwd_configs(), key=["H", "K", "V", "USE_L2"],
                 prune_configs_by={"early_config_prune": _fused_bwd_prune}, **_AUTOTUNE_KW)
@triton.jit
def _fused_bwd_kernel(
    q, k, v, beta,       # inputs
    vn,                  # U' [B,T,H,V] saved by the forward
    tinv,                # Tm [B,H,NT,64,64] fp32 (from _prep_fwd_kernel)
    hbuf, dhbuf,         # S_c and dL/dS_{c+1} per chunk [B,H,NT,K,V]
    do,                  # output grad [B,T,H,V]
    dq, dk, dv, dbeta,   # outputs like q, k, v, and dbeta [B,T,H] (BMODE 1-2: d logit, rows
    scale, T, NB,        #   b >= NB in the logits' time order; the caller adds the halves)
    H: tl.constexpr, K: tl.constexpr, V: tl.constexpr, BK: tl.constexpr,
    USE_L2: tl.constexpr, PREC: tl.constexpr, BMODE: tl.constexpr, BV: tl.constexpr,
):
    """One program per (chunk, b*h): every gradient that does not cross chunks.
    Loop over v-blocks (S, dS: this chunk's state and its gradient, [K,BV] slices; U' as
    saved by the forward):   dP += dO U'^T;   dU' = P^T dO + K dS;   dQ += dO S^T;
        dbv = Tm^T dU'  (= d(beta V));  dV = beta dbv;  R = V - K S;
        dTm += dU' (beta R)^T;   dbeta += rowsum(dbv * R);   dK += U' dS^T - (beta dbv) S^T.
    The last three fold in the W path (dW = -sum_v dU' S^T, with W = Tm beta K) one v-block
    at a time, so no [64,K] dW accumulator is live across the loop (README, "Backward").
    Then: dQ += (dP*M) K;  dK += (dP*M)^T Q;  dA = -StrictTril(Tm^T dTm Tm^T);
        dK += (beta dA + (beta dA)^T) K;  dbeta += rowsum(dA * K K^T); the scale and l2norm
    chain. Live across the loop: dQ, dK [64,K] fp32; dP, dTm [64,64] fp32; Tm; bf16 Q, K, P.
    fp32 rows of q and k are re-read for the epilogue instead of being kept."""
    i_c, i_bh = tl.program_id(0), tl.program_id(1)
    b, h = i_bh // H, i_bh % H
    dt = q.dtype.element_ty
    NT = tl.cdiv(T, 64)
    t0 = i_c * 64
    r = tl.arange(0, 64)
    causal = r[:, None] >= r[None, :]
    qd = (_l2n(_load_rows(q, b, h, t0, T, H, K, BK, 64, 0), USE_L2) * scale).to(dt)
    kd = _l2n(_load_rows(k, b, h, t0, T, H, K, BK, 64, 0), USE_L2).to(dt)
    bt = _load_beta(beta, b, h, t0, T, H, 64, NB, BMODE)
    Tm = tl.where(causal, tl.load(_tm_ptrs(tinv, i_bh, i_c, NT), mask=causal, other=0.), 0.)
    P = tl.where(causal, tl.dot(qd, tl.trans(kd), input_precision=PREC), 0.).to(dt)
    dP = tl.zeros([64, 64], dtype=tl.float32)
    dT = tl.zeros([64, 64], dtype=tl.float32)
    dqa = tl.zeros([64, BK], dtype=tl.float32)
    dka = tl.zeros([64, BK], dtype=tl.float32)
    dba = tl.zeros([64], dtype=tl.float32)
    for i_v in range(tl.cdiv(V, BV)):
        ps, ms = _state_ptrs(hbuf, i_bh, i_c, NT, K, V, BK, BV, i_v)
        S = tl.load(ps, mask=ms, other=0.).to(dt)                              # [BK,BV]
        pd, md = _state_ptrs(dhbuf, i_bh, i_c, NT, K, V, BK, BV, i_v)
        dS = tl.load(pd, mask=md, other=0.).to(dt)
        vb = _load_rows(v, b, h, t0, T, H, V, BV, 64, i_v * BV)
        dob = _load_rows(do, b, h, t0, T, H, V, BV, 64, i_v * BV).to(dt)
        upd = _load_rows(vn, b, h, t0, T, H, V, BV, 64, i_v * BV).to(dt)      # U'
        dP += tl.dot(dob, tl.trans(upd), input_precision=PREC)
        dup = (tl.dot(tl.trans(P), dob, input_precision=PREC)
               + tl.dot(kd, dS, input_precision=PREC))                        # dU' fp32
        dbv = tl.dot(tl.trans(Tm), dup, input_precision=PREC)                 # d(beta V)
        _store_rows(dv, bt[:, None] * dbv, b, h, t0, T, H, V, BV, 64, i_v * BV)
        rv = vb - tl.dot(kd, S, input_precision=PREC)                         # V - K S
        dT += tl.dot(dup, tl.trans(bt[:, None] * rv), input_precision=PREC)
        dba += tl.sum(dbv * rv, 1)
        dqa += tl.dot(dob, tl.trans(S), input_precision=PREC)
        dka += (tl.dot(upd, tl.trans(dS), input_precision=PREC)
                - tl.dot((bt[:, None] * dbv).to(dt), tl.trans(S), input_precision=PREC))
    dP = tl.where(causal, dP, 0.).to(dt)
    dqa += tl.dot(dP, kd, input_precision=PREC)
    dka += tl.dot(tl.trans(dP), qd, input_precision=PREC)
    dA = -tl.dot(tl.dot(tl.trans(Tm), dT, input_precision=PREC), tl.trans(Tm),
                 input_precision=PREC)
    dA = tl.where(r[:, None] > r[None, :], dA, 0.)
    dba += tl.sum(dA * tl.dot(kd, tl.trans(kd), input_precision=PREC), 1)     # rowsum(dA*KK^T)
    Bm = bt[:, None] * dA
    kr = _load_rows(k, b, h, t0, T, H, K, BK, 64, 0)
    kn = _l2n(kr, USE_L2)
    dka += tl.dot(Bm + tl.trans(Bm), kn, input_precision=PREC)
    dqa = dqa * scale
    if USE_L2:
        qr = _load_rows(q, b, h, t0, T, H, K, BK, 64, 0)
        qn = _l2n(qr, USE_L2)
        rq = tl.rsqrt(tl.sum(qr * qr, 1) + 1e-6)
        rk = tl.rsqrt(tl.sum(kr * kr, 1) + 1e-6)
        dqa = rq[:, None] * (dqa - qn * tl.sum(qn * dqa, 1)[:, None])
        dka = rk[:, None] * (dka - kn * tl.sum(kn * dka, 1)[:, None])
    _store_rows(dq, dqa, b, h, t0, T, H, K, BK, 64, 0)
    _store_rows(dk, dka, b, h, t0, T, H, K, BK, 64, 0)
    tb = t0 + r
    _, st = _beta_rows(b, tb, T, NB, BMODE)
    if BMODE != 0:              # beta = BMODE sigmoid(z): dz = dbeta beta (1 - beta / BMODE)
        dba = dba * bt * (1. - bt / BMODE)
    tl.store(dbeta + (b * T + st).to(tl.int64) * H + h, dba.to(dbeta.dtype.element_ty),
             mask=tb < T)


# ----------------------------------------------------------------------------- launchers
def prep(k, v, beta, use_l2: bool, save_t: bool, beta_mode: int = 0):
    """The per-chunk UT transform: W = Tm diag(beta) K, U = Tm diag(beta) V (input dtype) and
    Tm [B,H,NT,64,64] fp32 (empty unless save_t)."""
    B, T, H, K, V, BK, BVf = _dims(k, v)
    NT = cdiv(T, CHUNK)
    prec = _prec(k)
    w = torch.empty_like(k)
    u = torch.empty_like(v)
    tinv = k.new_empty((B, H, NT, CHUNK, CHUNK) if save_t else (0,), dtype=torch.float32)
    launch(_prep_fwd_kernel, (NT, B * H), k, v, beta, w, u, tinv, T,
           params.logit_batch(k, beta_mode), H=H, K=K, V=V, BK=BK, BV=BVf, USE_L2=use_l2,
           SAVE_T=save_t, PREC=prec, STACKED=params.stacked_inverse(), BMODE=beta_mode,
           num_warps=params.prep_warps(BK))
    return w, u, tinv


def chunk_fwd(q, k, v, beta, scale: float, initial_state, output_final_state: bool,
              use_l2: bool, save_for_bwd: bool, beta_mode: int = 0):
    """Forward launcher. Returns o, the final state (or empty), and what the backward needs
    (each empty unless save_for_bwd): U' [B,T,H,V], Tm [B,H,NT,64,64] fp32, h [B,H,NT,K,V]."""
    B, T, H, K, V, BK, BVf = _dims(q, v)
    NT = cdiv(T, CHUNK)
    prec = _prec(q)
    w, u, tinv = prep(k, v, beta, use_l2, save_for_bwd, beta_mode)
    o = torch.empty_like(v)
    ht = q.new_empty((B, H, K, V) if output_final_state else (0,), dtype=torch.float32)
    hbuf = q.new_empty((B, H, NT, K, V) if save_for_bwd else (0,))
    vn = torch.empty_like(v) if save_for_bwd else v.new_empty((0,))
    BV = params.state_bv(B * H, BVf, half=q.dtype != torch.float32)
    h0 = initial_state if initial_state is not None else ht
    launch(_state_fwd_kernel, (cdiv(V, BV), B * H),
        q, k, w, u, o, h0, ht, hbuf, vn, scale, T, H=H, K=K, V=V, BK=BK, BV=BV, USE_L2=use_l2,
        HAS_H0=initial_state is not None, STORE_HT=output_final_state, SAVE_H=save_for_bwd,
        PREC=prec, num_warps=params.state_warps(BK, BV), num_stages=params.state_stages(BK))
    return o, ht, vn, tinv, hbuf


def chunk_bwd(q, k, v, beta, scale: float, initial_state, use_l2: bool, vn, tinv, hbuf, do, dht,
              beta_mode: int = 0):
    """Backward launcher (vn, tinv, hbuf: saved by chunk_fwd): returns dq, dk, dv, dbeta (see
    params.BETA_MODES), dh0 (or empty)."""
    B, T, H, K, V, BK, BVf = _dims(q, v)
    nb = params.logit_batch(q, beta_mode)
    NT = cdiv(T, CHUNK)
    prec = _prec(q)
    do = do.contiguous()
    dht = dht.contiguous() if dht is not None else None
    dhbuf = torch.empty_like(hbuf)
    has_h0 = initial_state is not None
    dh0 = q.new_empty((B, H, K, V) if has_h0 else (0,), dtype=torch.float32)
    BV = params.state_bv(B * H, BVf, backward=True, half=q.dtype != torch.float32)
    has_dht = dht is not None
    # W for the state pass (params.state_w_mode; README, "Saved for the backward"). W is freed
    # before dq, dk, dv are allocated, so it does not raise the peak.
    w_from_t = params.state_w_mode(BV) == "rebuild"
    w = k.new_empty((0,)) if w_from_t else torch.empty_like(k)
    if not w_from_t:
        launch(_w_kernel, (NT, B * H), k, beta, tinv, w, T, nb, H=H, K=K, BK=BK, USE_L2=use_l2,
               PREC=prec, BMODE=beta_mode, num_warps=params.prep_warps(BK))
    launch(_state_bwd_kernel, (cdiv(V, BV), B * H),
        q, k, w, beta, tinv, do, dht if has_dht else dh0, dh0, dhbuf, scale, T, nb, H=H, K=K,
        V=V, BK=BK, BV=BV, USE_L2=use_l2, HAS_DHT=has_dht, STORE_DH0=has_h0, PREC=prec,
        W_FROM_T=w_from_t, BMODE=beta_mode, num_warps=params.state_warps(BK, BV),
        num_stages=params.state_stages(BK))
    del w
    dq, dk, dv = (torch.empty_like(x) for x in (q, k, v))
    dbeta = beta.new_empty((B, T, H))
    launch(_fused_bwd_kernel, (NT, B * H), q, k, v, beta, vn, tinv, hbuf, dhbuf, do, dq, dk, dv,
           dbeta, scale, T, nb, H=H, K=K, V=V, BK=BK, USE_L2=use_l2, PREC=prec, BMODE=beta_mode)
    return dq, dk, dv, dbeta, dh0
