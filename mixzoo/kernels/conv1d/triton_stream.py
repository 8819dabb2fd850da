"""Variant "v2" of the short-convolution kernels (the default of `short_conv` since H100 call
10; ops.py picks the variant): both passes walk the rows of a chunk like the v1 backward,
now U = 4 rows per loop iteration.

Why (sm_90 builds of v1, read with cuobjdump on a CPU host):
- the v1 forward loads every x element W times (one [BLOCK_T, BLOCK_D] tile per tap, L1
  hits) and its 64-row tile needs 251 registers (2 blocks of 4 warps per SM);
- the v1 backward loop handles one row per iteration: 309 instructions per step for 8
  channels per thread, 79 of them IMAD/MOV register moves (the window shifts and the
  two-deep load pipeline live across the back edge), and only two rows of loads in flight.
Unrolling U = 4 rows turns the window shifts into SSA renames (261 instructions per row),
and the loads of the next U rows (DEPTH 2: the next 2U) are issued at the top of each
iteration, so U (2U) rows of x and dy are in flight; num_warps and the DEPTHS listed
below are autotuned.

Forward (streaming): a program owns channels [d0, d0+BLOCK_D) of one sequence and output
rows [c0, c1). It keeps the last W-1 inputs in registers and at step u (newest input row u)
emits y[u - RIGHT] (and, BIDIR, the reversed conv's row u - LEFT, stored at T-1-(u-LEFT) of
the second half); every x element is loaded once (plus a W-1 row halo per chunk).

Backward: exactly the v1 streaming backward (triton_conv.py docstring; same window, same
masks, same dw/db partial sums), with the row loop unrolled by U and the loads issued
DEPTH groups ahead. Rows past a chunk's last step load as 0 and store nothing, so the tail
group of the unrolled loop needs no special case. The math is in README.md.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from .._common import cdiv, launch, pick_configs
from .triton_conv import (MAX_GROUPS, _act_fwd, _act_grad, _bounds, _dot8, _group,
                          _kernel_act, _left, _load_rows, _pick, _rows_contig, _stream_load,
                          _tap, group_block_d)

U = 4   # rows per loop iteration (the unroll factor; the _pick4 calls below assume 4)


@triton.jit
def _pick4(k: tl.constexpr, v0, v1, v2, v3):
    """v_k for a compile-time k < 4."""
    r = v0
    if k == 1:
        r = v1
    if k == 2:
        r = v2
    if k == 3:
        r = v3
    return r


@triton.jit
def _load4(base, stride, row, dm, SHIFT: tl.constexpr, T, c_end, REV: tl.constexpr):
    """Raw rows row .. row+3 of a stream (triton_conv._stream_load)."""
    return (_stream_load(base, stride, row, dm, SHIFT, T, c_end, REV),
            _stream_load(base, stride, row + 1, dm, SHIFT, T, c_end, REV),
            _stream_load(base, stride, row + 2, dm, SHIFT, T, c_end, REV),
            _stream_load(base, stride, row + 3, dm, SHIFT, T, c_end, REV))


# DEPTH (groups of U rows in flight) 1 only: the H100 autotuner picked DEPTH 1 in both
# passes when 2 was offered (call 10, B8 T4096 D4096), and each candidate costs a build;
# DEPTH 2 stays in the kernels (interpreter-tested) for other GPUs
DEPTHS = (1,)


def _fwd_configs():
    # 1, 2 or 4 warps over the BLOCK_D channels (8, 4 or 2 bf16 per thread at BLOCK_D=256;
    # call 10 picked 2)
    return [triton.Config({"DEPTH": d}, num_warps=w) for d in DEPTHS for w in (1, 2, 4)]


@triton.autotune(configs=pick_configs(_fwd_configs()),
                 key=["T", "D", "W", "ACT", "LEFT", "BIDIR", "NG", "BLOCK_D", "CHUNK"])
@triton.jit
def _conv_fwd_stream_kernel(
    x_ptr,                    # x [B,T,D], last dim contiguous (any batch/time strides)
    w_ptr,                    # weight [D,W] contiguous
    b_ptr,                    # bias [D] (when HAS_BIAS)
    h0_ptr,                   # initial state [B,D,W-1] contiguous (when HAS_H0)
    y0_ptr, y1_ptr, y2_ptr,   # output groups, each [NB,T,width] (NB = 2B when BIDIR, else B)
    sxb, sxt,                 # x strides (batch, time)
    B, T, D,
    S1, S2,                   # channel-group boundaries (triton_conv._group)
    W: tl.constexpr,          # kernel width
    LEFT: tl.constexpr,       # taps reaching into the past (W-1 causal, (W-1)//2 centred)
    FIRST: tl.constexpr,      # first step u = c0 + FIRST (RIGHT, or min(LEFT, RIGHT) BIDIR)
    LAST: tl.constexpr,       # last step u = c1 - 1 + LAST (RIGHT, or max(LEFT, RIGHT) BIDIR)
    HAS_BIAS: tl.constexpr, HAS_H0: tl.constexpr,
    ACT: tl.constexpr,        # 0 none, 1 silu (tl.sigmoid), 2 silu (MUFU sigmoid, GPU)
    BIDIR: tl.constexpr,      # also write the reversed-sequence conv to rows [B, 2B)
    NG: tl.constexpr,         # number of output groups (1..3)
    CHUNK,                    # output rows per program (runtime: one build serves all)
    BLOCK_D: tl.constexpr,    # channels per program
    DEPTH: tl.constexpr,      # groups of 4 rows whose loads are in flight (1 or 2)
):
    """y rows [c0, c1) of one channel block by one walk over the input rows (module
    docstring). Window: xa..xg = x[u-1..u-7]; q0..q3 = the raw rows of this group, n0..n3
    those of the next."""
    pid_c = tl.program_id(0)
    pid_d = tl.program_id(1)
    b = tl.program_id(2)
    RIGHT: tl.constexpr = W - 1 - LEFT
    d0 = pid_d * BLOCK_D
    offs_d = d0 + tl.arange(0, BLOCK_D)
    dm = offs_d < D
    zi = tl.zeros([BLOCK_D], dtype=tl.int32)   # scalars enter masks as [BLOCK_D] vectors
    c0 = pid_c * CHUNK + zi
    c1 = tl.minimum(c0 + CHUNK, T)
    x_base = x_ptr + b.to(tl.int64) * sxb
    h0_base = h0_ptr + b.to(tl.int64) * D * (W - 1)
    yp, start, width = _group(d0, S1, S2, D, y0_ptr, y1_ptr, y2_ptr, NG)
    ycol = offs_d - start
    yf_base = yp + b.to(tl.int64) * T * width + ycol
    yr_base = yp + (B + b).to(tl.int64) * T * width + ycol
    w0 = _tap(w_ptr, offs_d, dm, 0, W)
    w1 = _tap(w_ptr, offs_d, dm, 1, W)
    w2 = _tap(w_ptr, offs_d, dm, 2, W)
    w3 = _tap(w_ptr, offs_d, dm, 3, W)
    w4 = _tap(w_ptr, offs_d, dm, 4, W)
    w5 = _tap(w_ptr, offs_d, dm, 5, W)
    w6 = _tap(w_ptr, offs_d, dm, 6, W)
    w7 = _tap(w_ptr, offs_d, dm, 7, W)
    if HAS_BIAS:
        bias = tl.load(b_ptr + offs_d, mask=dm, other=0.0).to(tl.float32)
    zero = tl.zeros([BLOCK_D], dtype=tl.float32)
    # the W-1 inputs before the first step (h0 rows when they lie before t = 0)
    us = c0 + FIRST
    near = pid_c == 0
    xa = _load_rows(x_base, h0_base, us - 1, offs_d, sxt, T, D, W, HAS_H0, near)
    xb = zero
    xc = zero
    xd = zero
    xe = zero
    xf = zero
    xg = zero
    if W > 2:
        xb = _load_rows(x_base, h0_base, us - 2, offs_d, sxt, T, D, W, HAS_H0, near)
    if W > 3:
        xc = _load_rows(x_base, h0_base, us - 3, offs_d, sxt, T, D, W, HAS_H0, near)
    if W > 4:
        xd = _load_rows(x_base, h0_base, us - 4, offs_d, sxt, T, D, W, HAS_H0, near)
    if W > 5:
        xe = _load_rows(x_base, h0_base, us - 5, offs_d, sxt, T, D, W, HAS_H0, near)
    if W > 6:
        xf = _load_rows(x_base, h0_base, us - 6, offs_d, sxt, T, D, W, HAS_H0, near)
    if W > 7:
        xg = _load_rows(x_base, h0_base, us - 7, offs_d, sxt, T, D, W, HAS_H0, near)
    u_beg = pid_c * CHUNK + FIRST
    u_end = tl.minimum(pid_c * CHUNK + CHUNK, T) + LAST     # exclusive
    c_end = c1 + LAST
    xd_base = x_base + offs_d
    q0, q1, q2, q3 = _load4(xd_base, sxt, us, dm, 0, T, c_end, 0)
    if DEPTH == 2:
        p0, p1, p2, p3 = _load4(xd_base, sxt, us + 4, dm, 0, T, c_end, 0)
    for g0 in range(u_beg, u_end, 4):
        g = g0 + zi
        n0, n1, n2, n3 = _load4(xd_base, sxt, g + 4 * DEPTH, dm, 0, T, c_end, 0)
        for k in tl.static_range(4):
            u = g + k
            x0 = _pick4(k, q0, q1, q2, q3).to(tl.float32)
            z = _dot8(W, False, w0, w1, w2, w3, w4, w5, w6, w7, x0, xa, xb, xc, xd, xe, xf, xg)
            if HAS_BIAS:
                z += bias
            t = u - RIGHT
            tl.store(yf_base + t.to(tl.int64) * width, _act_fwd(z, ACT).to(yp.dtype.element_ty),
                     mask=dm & (t >= c0) & (t < c1))
            if BIDIR:
                # reversed conv in original time: z'[t'] = sum_m w[m] x[t' + LEFT - m]
                zr = _dot8(W, True, w0, w1, w2, w3, w4, w5, w6, w7,
                           x0, xa, xb, xc, xd, xe, xf, xg)
                if HAS_BIAS:
                    zr += bias
                tr = u - LEFT
                tl.store(yr_base + (T - 1 - tr).to(tl.int64) * width,
                         _act_fwd(zr, ACT).to(yp.dtype.element_ty),
                         mask=dm & (tr >= c0) & (tr < c1))
            if W > 7:
                xg = xf
            if W > 6:
                xf = xe
            if W > 5:
                xe = xd
            if W > 4:
                xd = xc
            if W > 3:
                xc = xb
            if W > 2:
                xb = xa
            xa = x0
        if DEPTH == 2:
            q0 = p0
            q1 = p1
            q2 = p2
            q3 = p3
            p0 = n0
            p1 = n1
            p2 = n2
            p3 = n3
        else:
            q0 = n0
            q1 = n1
            q2 = n2
            q3 = n3


def _bwd_configs():
    # sm_90 builds at W=4, BLOCK_D=256, DEPTH=1: 251 registers with 1 warp (8 warps per SM),
    # 130 with 2 (16 per SM), 72 with 4 (call 10 picked 4). DEPTH 2 with 1 warp is left out
    # (255 registers and a spill at BLOCK_D=256)
    return [triton.Config({"DEPTH": d}, num_warps=w) for d in DEPTHS for w in (1, 2, 4)]


def _bwd_keep(cfg) -> bool:
    return not (cfg.kwargs["DEPTH"] == 2 and cfg.num_warps == 1)


@triton.autotune(configs=pick_configs(_bwd_configs(), _bwd_keep),
                 key=["T", "D", "W", "ACT", "LEFT", "BIDIR", "NG", "BLOCK_D", "CHUNK"])
@triton.jit
def _conv_bwd_stream_kernel(
    x_ptr, w_ptr, b_ptr, h0_ptr,   # as in the forward
    dy0_ptr, dy1_ptr, dy2_ptr,     # dy groups, each [NB,T,width] contiguous (see _group)
    dx_ptr,                        # dx [B,T,D] contiguous
    dwp_ptr,                       # partial dw [B, n_chunks, W, D] fp32
    dbp_ptr,                       # partial db [B, n_chunks, D] fp32
    sxb, sxt,                      # x strides (batch, time)
    B, T, D, S1, S2,
    n_chunks,                      # row chunks per sequence (cdiv(T, CHUNK))
    W: tl.constexpr, LEFT: tl.constexpr, HAS_BIAS: tl.constexpr, HAS_H0: tl.constexpr,
    ACT: tl.constexpr, BIDIR: tl.constexpr, NG: tl.constexpr,
    CHUNK,                         # rows per program (runtime: one build serves all)
    BLOCK_D: tl.constexpr,
    DEPTH: tl.constexpr,           # groups of 4 rows whose loads are in flight (1 or 2)
):
    """The v1 streaming backward (triton_conv._conv_bwd_kernel) with U = 4 rows per loop
    iteration: qx/qf/qg = raw x, dy, reversed-dy rows of this group, nx/nf/ng the next's.
    Window variables: xa..xg = x[u-1..u-7], fa..fg = dz[r-1..r-7], ra..rg reversed."""
    pid_c = tl.program_id(0)
    pid_d = tl.program_id(1)
    b = tl.program_id(2)
    RIGHT: tl.constexpr = W - 1 - LEFT
    d0 = pid_d * BLOCK_D
    offs_d = d0 + tl.arange(0, BLOCK_D)
    dm = offs_d < D
    zi = tl.zeros([BLOCK_D], dtype=tl.int32)
    c0 = pid_c * CHUNK + zi
    c1 = tl.minimum(c0 + CHUNK, T)
    x_base = x_ptr + b.to(tl.int64) * sxb
    h0_base = h0_ptr + b.to(tl.int64) * D * (W - 1)
    dyp, start, width = _group(d0, S1, S2, D, dy0_ptr, dy1_ptr, dy2_ptr, NG)
    dcol = offs_d - start
    dyf_base = dyp + b.to(tl.int64) * T * width + dcol
    dyr_base = dyp + (B + b).to(tl.int64) * T * width + dcol
    dx_base = dx_ptr + b.to(tl.int64) * T * D + offs_d
    w0 = _tap(w_ptr, offs_d, dm, 0, W)
    w1 = _tap(w_ptr, offs_d, dm, 1, W)
    w2 = _tap(w_ptr, offs_d, dm, 2, W)
    w3 = _tap(w_ptr, offs_d, dm, 3, W)
    w4 = _tap(w_ptr, offs_d, dm, 4, W)
    w5 = _tap(w_ptr, offs_d, dm, 5, W)
    w6 = _tap(w_ptr, offs_d, dm, 6, W)
    w7 = _tap(w_ptr, offs_d, dm, 7, W)
    if HAS_BIAS:
        bias = tl.load(b_ptr + offs_d, mask=dm, other=0.0).to(tl.float32)
    zero = tl.zeros([BLOCK_D], dtype=tl.float32)
    near = pid_c == 0
    xa = _load_rows(x_base, h0_base, c0 - 1, offs_d, sxt, T, D, W, HAS_H0, near)
    xb = zero
    xc = zero
    xd = zero
    xe = zero
    xf = zero
    xg = zero
    if W > 2:
        xb = _load_rows(x_base, h0_base, c0 - 2, offs_d, sxt, T, D, W, HAS_H0, near)
    if W > 3:
        xc = _load_rows(x_base, h0_base, c0 - 3, offs_d, sxt, T, D, W, HAS_H0, near)
    if W > 4:
        xd = _load_rows(x_base, h0_base, c0 - 4, offs_d, sxt, T, D, W, HAS_H0, near)
    if W > 5:
        xe = _load_rows(x_base, h0_base, c0 - 5, offs_d, sxt, T, D, W, HAS_H0, near)
    if W > 6:
        xf = _load_rows(x_base, h0_base, c0 - 6, offs_d, sxt, T, D, W, HAS_H0, near)
    if W > 7:
        xg = _load_rows(x_base, h0_base, c0 - 7, offs_d, sxt, T, D, W, HAS_H0, near)
    # each dz window starts from its OWN tl.zeros (loop-carry rule: triton_conv.py, README)
    fa = tl.zeros([BLOCK_D], dtype=tl.float32)
    fb = tl.zeros([BLOCK_D], dtype=tl.float32)
    fc = tl.zeros([BLOCK_D], dtype=tl.float32)
    fd = tl.zeros([BLOCK_D], dtype=tl.float32)
    fe = tl.zeros([BLOCK_D], dtype=tl.float32)
    ff = tl.zeros([BLOCK_D], dtype=tl.float32)
    fg = tl.zeros([BLOCK_D], dtype=tl.float32)
    ra = tl.zeros([BLOCK_D], dtype=tl.float32)
    rb = tl.zeros([BLOCK_D], dtype=tl.float32)
    rc = tl.zeros([BLOCK_D], dtype=tl.float32)
    rd = tl.zeros([BLOCK_D], dtype=tl.float32)
    re = tl.zeros([BLOCK_D], dtype=tl.float32)
    rf = tl.zeros([BLOCK_D], dtype=tl.float32)
    rg = tl.zeros([BLOCK_D], dtype=tl.float32)
    a0 = tl.zeros([BLOCK_D], dtype=tl.float32)
    a1 = tl.zeros([BLOCK_D], dtype=tl.float32)
    a2 = tl.zeros([BLOCK_D], dtype=tl.float32)
    a3 = tl.zeros([BLOCK_D], dtype=tl.float32)
    a4 = tl.zeros([BLOCK_D], dtype=tl.float32)
    a5 = tl.zeros([BLOCK_D], dtype=tl.float32)
    a6 = tl.zeros([BLOCK_D], dtype=tl.float32)
    a7 = tl.zeros([BLOCK_D], dtype=tl.float32)
    db = tl.zeros([BLOCK_D], dtype=tl.float32)
    u_end = tl.minimum(pid_c * CHUNK + CHUNK, T) + W - 1
    c_end = c1 + W - 1
    xd_base = x_base + offs_d
    # raw rows: q* this group, p* the next (DEPTH 2), n* the one being loaded; the reversed
    # dy stream (g) aliases the forward one when not BIDIR
    qx0, qx1, qx2, qx3 = _load4(xd_base, sxt, c0, dm, 0, T, c_end, 0)
    qf0, qf1, qf2, qf3 = _load4(dyf_base, width, c0 - RIGHT, dm, RIGHT, T, c_end, 0)
    qg0, qg1, qg2, qg3 = qf0, qf1, qf2, qf3
    if BIDIR:
        qg0, qg1, qg2, qg3 = _load4(dyr_base, width, c0 - LEFT, dm, LEFT, T, c_end, 1)
    if DEPTH == 2:
        px0, px1, px2, px3 = _load4(xd_base, sxt, c0 + 4, dm, 0, T, c_end, 0)
        pf0, pf1, pf2, pf3 = _load4(dyf_base, width, c0 + 4 - RIGHT, dm, RIGHT, T, c_end, 0)
        pg0, pg1, pg2, pg3 = pf0, pf1, pf2, pf3
        if BIDIR:
            pg0, pg1, pg2, pg3 = _load4(dyr_base, width, c0 + 4 - LEFT, dm, LEFT, T, c_end, 1)
    for g0 in range(pid_c * CHUNK, u_end, 4):
        g = g0 + zi
        nx0, nx1, nx2, nx3 = _load4(xd_base, sxt, g + 4 * DEPTH, dm, 0, T, c_end, 0)
        nf0, nf1, nf2, nf3 = _load4(dyf_base, width, g + 4 * DEPTH - RIGHT, dm, RIGHT, T,
                                    c_end, 0)
        ng0, ng1, ng2, ng3 = nf0, nf1, nf2, nf3
        if BIDIR:
            ng0, ng1, ng2, ng3 = _load4(dyr_base, width, g + 4 * DEPTH - LEFT, dm, LEFT, T,
                                        c_end, 1)
        for k in tl.static_range(4):
            u = g + k
            x0 = _pick4(k, qx0, qx1, qx2, qx3).to(tl.float32)
            dyv = _pick4(k, qf0, qf1, qf2, qf3).to(tl.float32)
            # forward conv: z[r], r = u - RIGHT, reads x[u-(W-1) .. u]
            z = _dot8(W, False, w0, w1, w2, w3, w4, w5, w6, w7, x0, xa, xb, xc, xd, xe, xf, xg)
            if HAS_BIAS:
                z += bias
            dz = dyv * _act_grad(z, ACT)
            dx = _dot8(W, True, w0, w1, w2, w3, w4, w5, w6, w7, dz, fa, fb, fc, fd, fe, ff, fg)
            r = u - RIGHT
            dzo = tl.where((r >= c0) & (r < c1), dz, 0.0)
            if HAS_BIAS:
                db += dzo
            a0 += dzo * _pick(W - 1, x0, xa, xb, xc, xd, xe, xf, xg)
            a1 += dzo * _pick(W - 2, x0, xa, xb, xc, xd, xe, xf, xg)
            if W > 2:
                a2 += dzo * _pick(W - 3, x0, xa, xb, xc, xd, xe, xf, xg)
            if W > 3:
                a3 += dzo * _pick(W - 4, x0, xa, xb, xc, xd, xe, xf, xg)
            if W > 4:
                a4 += dzo * _pick(W - 5, x0, xa, xb, xc, xd, xe, xf, xg)
            if W > 5:
                a5 += dzo * _pick(W - 6, x0, xa, xb, xc, xd, xe, xf, xg)
            if W > 6:
                a6 += dzo * _pick(W - 7, x0, xa, xb, xc, xd, xe, xf, xg)
            if W > 7:
                a7 += dzo * x0
            if W > 7:
                fg = ff
            if W > 6:
                ff = fe
            if W > 5:
                fe = fd
            if W > 4:
                fd = fc
            if W > 3:
                fc = fb
            if W > 2:
                fb = fa
            fa = dz
            if BIDIR:
                # reversed conv in original time (triton_conv._conv_bwd_kernel)
                dyr = _pick4(k, qg0, qg1, qg2, qg3).to(tl.float32)
                zr = _dot8(W, True, w0, w1, w2, w3, w4, w5, w6, w7,
                           x0, xa, xb, xc, xd, xe, xf, xg)
                if HAS_BIAS:
                    zr += bias
                dzr = dyr * _act_grad(zr, ACT)
                dx += _dot8(W, False, w0, w1, w2, w3, w4, w5, w6, w7,
                            dzr, ra, rb, rc, rd, re, rf, rg)
                rr = u - LEFT
                dzro = tl.where((rr >= c0) & (rr < c1), dzr, 0.0)
                if HAS_BIAS:
                    db += dzro
                a0 += dzro * x0
                a1 += dzro * xa
                if W > 2:
                    a2 += dzro * xb
                if W > 3:
                    a3 += dzro * xc
                if W > 4:
                    a4 += dzro * xd
                if W > 5:
                    a5 += dzro * xe
                if W > 6:
                    a6 += dzro * xf
                if W > 7:
                    a7 += dzro * xg
                if W > 7:
                    rg = rf
                if W > 6:
                    rf = re
                if W > 5:
                    re = rd
                if W > 4:
                    rd = rc
                if W > 3:
                    rc = rb
                if W > 2:
                    rb = ra
                ra = dzr
            t = u - (W - 1)
            tl.store(dx_base + t.to(tl.int64) * D, dx.to(dx_ptr.dtype.element_ty),
                     mask=dm & (t >= c0) & (t < c1))
            if W > 7:
                xg = xf
            if W > 6:
                xf = xe
            if W > 5:
                xe = xd
            if W > 4:
                xd = xc
            if W > 3:
                xc = xb
            if W > 2:
                xb = xa
            xa = x0
        if DEPTH == 2:
            qx0, qx1, qx2, qx3 = px0, px1, px2, px3
            qf0, qf1, qf2, qf3 = pf0, pf1, pf2, pf3
            qg0, qg1, qg2, qg3 = pg0, pg1, pg2, pg3
            px0, px1, px2, px3 = nx0, nx1, nx2, nx3
            pf0, pf1, pf2, pf3 = nf0, nf1, nf2, nf3
            pg0, pg1, pg2, pg3 = ng0, ng1, ng2, ng3
        else:
            qx0, qx1, qx2, qx3 = nx0, nx1, nx2, nx3
            qf0, qf1, qf2, qf3 = nf0, nf1, nf2, nf3
            qg0, qg1, qg2, qg3 = ng0, ng1, ng2, ng3
    part = (b * n_chunks + pid_c).to(tl.int64)
    base = dwp_ptr + part * W * D + offs_d
    for j in tl.static_range(W):
        tl.store(base + j * D, _pick(j, a0, a1, a2, a3, a4, a5, a6, a7), mask=dm)
    if HAS_BIAS:
        tl.store(dbp_ptr + part * D + offs_d, db, mask=dm)


# ----------------------------------------------------------------------------- launchers

# rows per program; None: the launcher's choice (chunk_for). Set by ops.use_variant.
CHUNK_OVERRIDE: dict = {"fwd": None, "bwd": None}


def _stream_block_d(groups, D: int) -> int:
    """One group: 256 channels (16-byte bf16 loads with one warp); groups: the largest block
    (<= 128) dividing the group boundaries."""
    bd = group_block_d(groups, D)
    if len(groups) == 1:
        bd = 256 if D >= 256 else 128
    return bd


def chunk_for(B: int, T: int, D: int, bd: int, pass_: str) -> int:
    """Rows per program: long chunks (a W-1 row halo and, backward, one dw/db partial row
    per chunk) while at least ~32 programs per SM of an H100 remain (B8 T4096 D4096: 64
    rows; call 10: forward 0.197 ms at 64 rows, 0.326 at 128, fwd+bwd equal), then evened
    out over the sequence in multiples of U (T=196: four chunks of 52, 52, 52, 40)."""
    if CHUNK_OVERRIDE[pass_]:
        return CHUNK_OVERRIDE[pass_]
    chunk = 256
    while chunk > 32 and B * cdiv(D, bd) * cdiv(T, chunk) < 32 * 132:
        chunk //= 2
    n = cdiv(T, chunk)
    return U * cdiv(cdiv(T, n), U)


def conv_fwd_stream(x, weight, bias, h0, act: int, causal: bool, bidir: bool = False,
                    splits=None):
    """As triton_conv.conv_fwd (same arguments and result), by the streaming kernel."""
    x = _rows_contig(x)
    B, T, D = x.shape
    W = weight.shape[1]
    groups = list(splits) if splits is not None else [D]
    NB = 2 * B if bidir else B
    ys = [torch.empty(NB, T, s, device=x.device, dtype=x.dtype) for s in groups]
    if T == 0 or B == 0:
        return ys if splits is not None else ys[0]
    bd = _stream_block_d(groups, D)
    assert bd, f"conv_fwd_stream: unsupported channel groups {groups}"
    weight = weight.contiguous()
    h0 = h0.contiguous() if h0 is not None else None
    s1, s2 = _bounds(groups, D)
    yp = ys + [ys[0]] * (MAX_GROUPS - len(ys))
    left = _left(W, causal)
    right = W - 1 - left
    first, last = (min(left, right), max(left, right)) if bidir else (right, right)
    chunk = chunk_for(B, T, D, bd, "fwd")
    launch(_conv_fwd_stream_kernel, (cdiv(T, chunk), cdiv(D, bd), B),
        x, weight, bias if bias is not None else weight, h0 if h0 is not None else weight,
        yp[0], yp[1], yp[2], x.stride(0), x.stride(1), B, T, D, s1, s2,
        W=W, LEFT=left, FIRST=first, LAST=last, HAS_BIAS=bias is not None,
        HAS_H0=h0 is not None, ACT=_kernel_act(act), BIDIR=bidir, NG=len(groups),
        CHUNK=chunk, BLOCK_D=bd)
    return ys if splits is not None else ys[0]


def conv_bwd_stream(dy, x, weight, bias, h0, act: int, causal: bool, bidir: bool = False):
    """As triton_conv.conv_bwd (same arguments and result), by the unrolled kernel."""
    x = _rows_contig(x)
    B, T, D = x.shape
    W = weight.shape[1]
    dys = [g.contiguous() for g in (dy if isinstance(dy, (list, tuple)) else [dy])]
    groups = [g.shape[-1] for g in dys]
    weight = weight.contiguous()
    h0c = h0.contiguous() if h0 is not None else None
    dx = torch.empty(B, T, D, device=x.device, dtype=x.dtype)
    if T == 0 or B == 0:
        return (dx, torch.zeros_like(weight),
                torch.zeros_like(bias) if bias is not None else None)
    bd = _stream_block_d(groups, D)
    assert bd, f"conv_bwd_stream: unsupported channel groups {groups}"
    s1, s2 = _bounds(groups, D)
    dp = dys + [dys[0]] * (MAX_GROUPS - len(dys))
    chunk = chunk_for(B, T, D, bd, "bwd")
    n_chunks = cdiv(T, chunk)
    dwp = torch.empty(B, n_chunks, W, D, device=x.device, dtype=torch.float32)
    dbp = (torch.empty(B, n_chunks, D, device=x.device, dtype=torch.float32)
           if bias is not None else dwp)
    launch(_conv_bwd_stream_kernel, (n_chunks, cdiv(D, bd), B),
        x, weight, bias if bias is not None else weight, h0c if h0c is not None else weight,
        dp[0], dp[1], dp[2], dx, dwp, dbp, x.stride(0), x.stride(1), B, T, D, s1, s2,
        n_chunks,
        W=W, LEFT=_left(W, causal), HAS_BIAS=bias is not None, HAS_H0=h0 is not None,
        ACT=_kernel_act(act), BIDIR=bidir, NG=len(groups), CHUNK=chunk, BLOCK_D=bd)
    dw = dwp.sum((0, 1)).t().contiguous().to(weight.dtype)  # [W,D] -> [D,W], as the fake
    db = dbp.sum((0, 1)).to(bias.dtype) if bias is not None else None
    return dx, dw, db
