"""Depthwise short-convolution kernels (forward, backward) and launchers; the decoding
kernel is in triton_update.py.

Notation (README.md has the derivation). With LEFT taps reaching into the past (causal:
LEFT = W-1, x[u] for u < 0 read from h0; centred: LEFT = (W-1)//2, zeros outside [0,T)) and
RIGHT = W-1-LEFT into the future,
    z[t] = sum_j w[j] x[t + j - LEFT] + b,   y[t] = act(z[t]),   dz[t] = dy[t] act'(z[t])
    dx[t] = sum_j w[j] dz[t + LEFT - j],  dw[j] = sum_{b,t} dz[t] x[t + j - LEFT],
    db = sum_{b,t} dz[t].

Bidirectional mode (BIDIR, for vision): the causal conv of x AND of the time-reversed x, as
one doubled batch y[2B,T,D] with y[B+b, s] = conv(flip(x))[b, s] -- exactly what running the
causal conv on cat([x, flip(x)]) gives, without materialising that input. In original time
the reversed conv is the anti-causal conv with taps flipped (w'[i] = w[W-1-i], LEFT' = RIGHT),
written to row T-1-t of the second half; its gradient is added into the same dx.

Channel groups (NG = 1..3): the channels [0,S1), [S1,S2), [S2,D) are read from / written to
three separate contiguous tensors (q | k | v of a mixer), so no split-and-copy is needed
around the kernels. A program's channel block lies in one group (the launcher picks
BLOCK_D dividing S1 and S2).

Forward: one [BLOCK_T, BLOCK_D] tile per program from shifted 2D loads of x (neighbour rows
hit L1/L2); the two directions of BIDIR share the 2W-1 shifted tiles.

Backward (streaming): a program owns one channel block of one sequence and a chunk
[c0, c1) of rows, and walks the input stream u = c0 .. c1+W-2 one row at a time, keeping
the last W inputs and the last W values of dz in registers (named variables: Triton has no
register arrays). At step u it loads x[u] and dy of the row r = u - RIGHT whose z just
became computable, and emits dx[u - (W-1)]:
    z[r] = sum_j w[j] x[u - (W-1) + j] + b,     dx[u-W+1] = sum_j w[j] dz[r - j]
    dw[j] += dz[r] x[u - (W-1) + j]   (rows r owned by the chunk only)
so every dz is computed once (the first tile version recomputed each dz W times from W^2
shifted loads: 0.69 ms for B256 T196 D1152 and 1.64 ms at B8 T4096 D4096 on an H100, 6x
over the copy time). Loads are issued two steps ahead (software pipelining by hand), and on
the GPU SiLU's sigmoid uses the approximate MUFU ex2/rcp without fix-up code (`_sigmoid`).
The reversed direction of BIDIR runs in the same walk: its z row is u - LEFT and it also
emits dx[u - W + 1]. The dw/db partial sums ([B*chunks, W, D] fp32) are summed by the
launcher.
"""
from __future__ import annotations


import torch
import triton
import triton.language as tl

from .._common import cdiv, is_interpreting, launch, pick_configs


@triton.jit
def _sigmoid(z, ACT: tl.constexpr):
    """ACT 1: tl.sigmoid. ACT 2 (GPU only): 1 / (1 + 2^(-z log2 e)) from the approximate
    MUFU ex2/rcp (~1e-7 relative error; no denormal/overflow fix-ups, which cost ~10
    instructions per element and made the short-T backward instruction-bound)."""
    if ACT == 2:
        e = tl.inline_asm_elementwise("ex2.approx.ftz.f32 $0, $1;", "=f,f",
                                      [z * -1.4426950408889634], dtype=tl.float32,
                                      is_pure=True, pack=1)
        return tl.inline_asm_elementwise("rcp.approx.ftz.f32 $0, $1;", "=f,f", [1.0 + e],
                                         dtype=tl.float32, is_pure=True, pack=1)
    return tl.sigmoid(z)


@triton.jit
def _act_fwd(z, ACT: tl.constexpr):
    if ACT != 0:  # silu
        return z * _sigmoid(z, ACT)
    return z


@triton.jit
def _act_grad(z, ACT: tl.constexpr):
    """d act / dz."""
    if ACT != 0:
        sg = _sigmoid(z, ACT)
        return sg * (1.0 + z * (1.0 - sg))
    return tl.full(z.shape, 1.0, tl.float32)


@triton.jit
def _load_rows(x_base, h0_base, rows, offs_d, sxt, T, D, W: tl.constexpr,
               HAS_H0: tl.constexpr, near_start):
    """fp32 x[rows] for any-shaped `rows` (last axis = d); rows < 0 read the initial
    state h0[d, rows + W - 1] when HAS_H0 (only tested when near_start), else 0."""
    dm = offs_d < D
    ok = (rows >= 0) & (rows < T) & dm
    v = tl.load(x_base + rows.to(tl.int64) * sxt + offs_d, mask=ok, other=0.0).to(tl.float32)
    if HAS_H0:
        if near_start:
            hm = (rows < 0) & (rows + W - 1 >= 0) & dm
            v += tl.load(h0_base + offs_d * (W - 1) + rows + W - 1, mask=hm,
                         other=0.0).to(tl.float32)
    return v


@triton.jit
def _group(d0, S1, S2, D, p0, p1, p2, NG: tl.constexpr):
    """(pointer, first channel, width) of the channel group holding channel d0. Groups are
    [0,S1) -> p0, [S1,S2) -> p1, [S2,D) -> p2 (NG=1: S1 = D; NG=2: S2 = D), each a
    contiguous [NB, T, width] tensor."""
    p = p0
    start = d0 * 0
    width = S1
    if NG > 1:
        if d0 >= S1:
            p = p1
            start = S1
            width = S2 - S1
    if NG > 2:
        if d0 >= S2:
            p = p2
            start = S2
            width = D - S2
    return p, start, width


@triton.jit
def _tap(w_ptr, offs_d, dm, j: tl.constexpr, W: tl.constexpr):
    """Column j of the weight, w[:, j], as fp32 [BLOCK_D] (zeros for j >= W)."""
    if j < W:
        return tl.load(w_ptr + offs_d * W + j, mask=dm, other=0.0).to(tl.float32)
    return tl.zeros(offs_d.shape, dtype=tl.float32)


def _fwd_configs():
    return [triton.Config({"BLOCK_T": bt}, num_warps=w) for bt, w in [(32, 4), (64, 4), (16, 4)]]


@triton.autotune(configs=pick_configs(_fwd_configs()),
                 key=["T", "D", "W", "ACT", "LEFT", "BIDIR", "NG", "BLOCK_D"])
@triton.jit
def _conv_fwd_kernel(
    x_ptr,                    # x [B,T,D], last dim contiguous (any batch/time strides)
    w_ptr,                    # weight [D,W] contiguous
    b_ptr,                    # bias [D] (when HAS_BIAS)
    h0_ptr,                   # initial state [B,D,W-1] contiguous (when HAS_H0)
    y0_ptr, y1_ptr, y2_ptr,   # output groups, each [NB,T,width] (NB = 2B when BIDIR, else B)
    sxb, sxt,                 # x strides (batch, time)
    B, T, D,
    S1, S2,                   # channel-group boundaries (see _group)
    W: tl.constexpr,          # kernel width
    LEFT: tl.constexpr,       # taps reaching into the past (W-1 causal, (W-1)//2 centred)
    HAS_BIAS: tl.constexpr, HAS_H0: tl.constexpr,
    ACT: tl.constexpr,        # 0 none, 1 silu
    BIDIR: tl.constexpr,      # also write the reversed-sequence conv to rows [B, 2B)
    NG: tl.constexpr,         # number of output groups (1..3)
    BLOCK_T: tl.constexpr, BLOCK_D: tl.constexpr,
):
    """y[t] = act(sum_j w[j] x[t + j - LEFT] + b) for one [BLOCK_T, BLOCK_D] tile; with BIDIR
    also y[B+b, T-1-t] = act(sum_j w[W-1-j] x[t + j - (W-1-LEFT)] + b)."""
    pid_t = tl.program_id(0)
    pid_d = tl.program_id(1)
    b = tl.program_id(2)
    t0 = pid_t * BLOCK_T
    d0 = pid_d * BLOCK_D
    offs_t = t0 + tl.arange(0, BLOCK_T)
    offs_d = d0 + tl.arange(0, BLOCK_D)
    dm = offs_d < D
    x_base = x_ptr + b.to(tl.int64) * sxb
    h0_base = h0_ptr + b.to(tl.int64) * D * (W - 1)
    acc = tl.zeros([BLOCK_T, BLOCK_D], dtype=tl.float32)
    acc_r = tl.zeros([BLOCK_T, BLOCK_D], dtype=tl.float32)
    # shift s = row offset of the loaded x tile; the forward uses s in [-LEFT, W-1-LEFT]
    # (tap s + LEFT), the reversed conv s in [LEFT-(W-1), LEFT] (tap LEFT - s)
    for s in tl.static_range(1 - W, W):
        # (only two-operand boolean ops: older Triton rejects chains like `a and b and c`)
        if ((s >= -LEFT) and (s <= W - 1 - LEFT)) or (BIDIR and ((s >= LEFT - (W - 1))
                                                                and (s <= LEFT))):
            xs = _load_rows(x_base, h0_base, offs_t[:, None] + s, offs_d[None, :], sxt,
                            T, D, W, HAS_H0, t0 < LEFT)
            if (s >= -LEFT) and (s <= W - 1 - LEFT):
                acc += xs * _tap(w_ptr, offs_d, dm, s + LEFT, W)[None, :]
            if BIDIR and ((s >= LEFT - (W - 1)) and (s <= LEFT)):
                acc_r += xs * _tap(w_ptr, offs_d, dm, LEFT - s, W)[None, :]
    if HAS_BIAS:
        bias = tl.load(b_ptr + offs_d, mask=dm, other=0.0).to(tl.float32)[None, :]
        acc += bias
        acc_r += bias
    yp, start, width = _group(d0, S1, S2, D, y0_ptr, y1_ptr, y2_ptr, NG)
    mask = (offs_t[:, None] < T) & dm[None, :]
    cols = (offs_d - start)[None, :]
    out = (b.to(tl.int64) * T + offs_t[:, None]) * width + cols
    tl.store(yp + out, _act_fwd(acc, ACT).to(yp.dtype.element_ty), mask=mask)
    if BIDIR:
        out_r = ((B + b).to(tl.int64) * T + (T - 1 - offs_t)[:, None]) * width + cols
        tl.store(yp + out_r, _act_fwd(acc_r, ACT).to(yp.dtype.element_ty), mask=mask)


@triton.jit
def _pick(j: tl.constexpr, v0, v1, v2, v3, v4, v5, v6, v7):
    """v_j for a compile-time j (Triton has no arrays of tensors)."""
    r = v0
    if j == 1:
        r = v1
    if j == 2:
        r = v2
    if j == 3:
        r = v3
    if j == 4:
        r = v4
    if j == 5:
        r = v5
    if j == 6:
        r = v6
    if j == 7:
        r = v7
    return r


@triton.jit
def _dot8(W: tl.constexpr, REV: tl.constexpr, w0, w1, w2, w3, w4, w5, w6, w7,
          v0, v1, v2, v3, v4, v5, v6, v7):
    """sum_{j<W} w_j * v_{W-1-j} (REV=False) or sum_{j<W} w_j * v_j (REV=True)."""
    acc = w0 * _pick(0 if REV else W - 1, v0, v1, v2, v3, v4, v5, v6, v7)
    for j in tl.static_range(1, W):
        acc += (_pick(j, w0, w1, w2, w3, w4, w5, w6, w7)
                * _pick(j if REV else W - 1 - j, v0, v1, v2, v3, v4, v5, v6, v7))
    return acc


@triton.jit
def _stream_load(base, stride, row, dm, SHIFT: tl.constexpr, T, c_end, REV: tl.constexpr):
    """Raw row `row` ([BLOCK_D], row a broadcast vector) of a stream: rows outside [0,T), and
    rows whose step (row + SHIFT) is past the chunk's last step, read 0. REV: the row lives
    at T-1-row (the reversed half of a doubled batch)."""
    ok = dm & (row >= 0) & (row < T) & (row + SHIFT < c_end)
    at = T - 1 - row if REV else row
    return tl.load(base + at.to(tl.int64) * stride, mask=ok, other=0.0)


def _bwd_configs():
    # 1D rows of BLOCK_D channels (the launcher picks BLOCK_D and CHUNK); small programs keep
    # many in flight per SM
    return [triton.Config({}, num_warps=w) for w in (1, 2)]


@triton.autotune(configs=pick_configs(_bwd_configs()),
                 key=["T", "D", "W", "ACT", "LEFT", "BIDIR", "NG", "BLOCK_D", "CHUNK"])
@triton.jit
def _conv_bwd_kernel(
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
    CHUNK: tl.constexpr, BLOCK_D: tl.constexpr,
):
    """dx rows [c0, c1) of one channel block and the chunk's dw/db partial sums, by one walk
    over the input rows (module docstring). Window variables: xa..xg = x[u-1..u-7],
    fa..fg = dz[r-1..r-7] (forward), ra..rg = the same for the reversed conv."""
    pid_c = tl.program_id(0)
    pid_d = tl.program_id(1)
    b = tl.program_id(2)
    RIGHT: tl.constexpr = W - 1 - LEFT
    d0 = pid_d * BLOCK_D
    offs_d = d0 + tl.arange(0, BLOCK_D)
    dm = offs_d < D
    # scalars are broadcast to [BLOCK_D] before they enter masks (the interpreter mis-types
    # a 0-d bool combined with a vector)
    zi = tl.zeros([BLOCK_D], dtype=tl.int32)
    c0 = pid_c * CHUNK + zi
    c1 = tl.minimum(c0 + CHUNK, T)
    x_base = x_ptr + b.to(tl.int64) * sxb
    h0_base = h0_ptr + b.to(tl.int64) * D * (W - 1)
    dyp, start, width = _group(d0, S1, S2, D, dy0_ptr, dy1_ptr, dy2_ptr, NG)
    dcol = offs_d - start
    dyf_base = dyp + b.to(tl.int64) * T * width + dcol
    dyr_base = dyp + (B + b).to(tl.int64) * T * width + dcol
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
    # x window before the chunk (h0 rows for c0 = 0 in the causal case)
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
    # the dz windows start at 0, each from its OWN tl.zeros: Triton's frontend makes a name
    # loop-carried only if the loop body rebinds it to a different IR value, so with one
    # shared `zero` the shifts fb = fa, fc = fb, ... of the first body pass looked like
    # no-ops and fb..fg stayed 0 for the whole loop on the GPU (dx lost taps 2..W-1, rel
    # error 0.71 at W=4); the interpreter runs the Python literally and never showed it
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
    a0 = zero
    a1 = zero
    a2 = zero
    a3 = zero
    a4 = zero
    a5 = zero
    a6 = zero
    a7 = zero
    db = zero
    # software pipeline, two rows deep: the loads of step u are issued during step u-2 and
    # carried raw (converted at use, so the wait for them falls two steps later)
    u_end = tl.minimum(pid_c * CHUNK + CHUNK, T) + W - 1
    c_end = c1 + W - 1
    xd_base = x_base + offs_d
    x1 = _stream_load(xd_base, sxt, c0, dm, 0, T, c_end, 0)
    x2 = _stream_load(xd_base, sxt, c0 + 1, dm, 0, T, c_end, 0)
    f1 = _stream_load(dyf_base, width, c0 - RIGHT, dm, RIGHT, T, c_end, 0)
    f2 = _stream_load(dyf_base, width, c0 + 1 - RIGHT, dm, RIGHT, T, c_end, 0)
    g1 = f1
    g2 = f2
    if BIDIR:
        g1 = _stream_load(dyr_base, width, c0 - LEFT, dm, LEFT, T, c_end, 1)
        g2 = _stream_load(dyr_base, width, c0 + 1 - LEFT, dm, LEFT, T, c_end, 1)
    for u0 in range(pid_c * CHUNK, u_end):
        u = u0 + zi
        x0 = x1.to(tl.float32)
        dyv = f1.to(tl.float32)
        dyr = g1.to(tl.float32)
        x1 = x2
        f1 = f2
        g1 = g2
        x2 = _stream_load(xd_base, sxt, u + 2, dm, 0, T, c_end, 0)
        f2 = _stream_load(dyf_base, width, u + 2 - RIGHT, dm, RIGHT, T, c_end, 0)
        if BIDIR:
            g2 = _stream_load(dyr_base, width, u + 2 - LEFT, dm, LEFT, T, c_end, 1)
        # forward conv: z[r], r = u - RIGHT, reads x[u-(W-1) .. u]
        z = _dot8(W, False, w0, w1, w2, w3, w4, w5, w6, w7, x0, xa, xb, xc, xd, xe, xf, xg)
        if HAS_BIAS:
            z += bias
        dz = dyv * _act_grad(z, ACT)
        dx = _dot8(W, True, w0, w1, w2, w3, w4, w5, w6, w7, dz, fa, fb, fc, fd, fe, ff, fg)
        r = u - RIGHT
        dzo = tl.where((r >= c0) & (r < c1), dz, 0.0)
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
            # reversed conv in original time: z'[r'] = sum_m w[m] x[r' + LEFT - m],
            # r' = u - LEFT; dx[u-W+1] += sum_m w[W-1-m] dz'[r' - m]
            zr = _dot8(W, True, w0, w1, w2, w3, w4, w5, w6, w7, x0, xa, xb, xc, xd, xe, xf, xg)
            if HAS_BIAS:
                zr += bias
            dzr = dyr * _act_grad(zr, ACT)
            dx += _dot8(W, False, w0, w1, w2, w3, w4, w5, w6, w7,
                        dzr, ra, rb, rc, rd, re, rf, rg)
            rr = u - LEFT
            dzro = tl.where((rr >= c0) & (rr < c1), dzr, 0.0)
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
        tl.store(dx_ptr + (b.to(tl.int64) * T + t) * D + offs_d, dx.to(dx_ptr.dtype.element_ty),
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
    part = (b * n_chunks + pid_c).to(tl.int64)
    base = dwp_ptr + part * W * D + offs_d
    for j in tl.static_range(W):
        tl.store(base + j * D, _pick(j, a0, a1, a2, a3, a4, a5, a6, a7), mask=dm)
    tl.store(dbp_ptr + part * D + offs_d, db, mask=dm)


# ----------------------------------------------------------------------------- launchers

ACT_CODES = {None: 0, "silu": 1}


def _kernel_act(act: int) -> int:
    """The code the fwd/bwd kernels get: silu with the MUFU sigmoid (2) on the GPU; the
    interpreter runs tl.sigmoid (1)."""
    return 2 if act == 1 and not is_interpreting() else act
MAX_GROUPS = 3


def _left(W: int, causal: bool) -> int:
    return W - 1 if causal else (W - 1) // 2


def _rows_contig(t: torch.Tensor) -> torch.Tensor:
    return t if t.stride(-1) == 1 else t.contiguous()


def _block_d(splits, D: int, cap: int) -> int:
    """The largest power of two <= cap dividing every group boundary (>= 16), else 0."""
    bounds = [sum(splits[:i]) for i in range(1, len(splits))]
    bd = cap
    while bd >= 16:
        if all(s % bd == 0 for s in bounds):
            return bd
        bd //= 2
    return 0


def group_block_d(splits, D: int) -> int:
    """BLOCK_D the kernels use for these channel groups (0: the groups are not supported;
    the caller splits a single output instead)."""
    if len(splits) > MAX_GROUPS or sum(splits) != D:
        return 0
    return _block_d(list(splits), D, 128)


def _bounds(splits, D):
    s1 = splits[0] if len(splits) > 1 else D
    s2 = s1 + splits[1] if len(splits) > 2 else D
    return s1, s2


def conv_fwd(x, weight, bias, h0, act: int, causal: bool, bidir: bool = False,
             splits=None):
    """y [NB,T,D] in x's dtype (NB = 2B with bidir), or a list of [NB,T,s] per split."""
    x = _rows_contig(x)
    B, T, D = x.shape
    W = weight.shape[1]
    groups = list(splits) if splits is not None else [D]
    NB = 2 * B if bidir else B
    ys = [torch.empty(NB, T, s, device=x.device, dtype=x.dtype) for s in groups]
    if T == 0 or B == 0:
        return ys if splits is not None else ys[0]
    bd = group_block_d(groups, D)
    assert bd, f"conv_fwd: unsupported channel groups {groups}"
    weight = weight.contiguous()
    h0 = h0.contiguous() if h0 is not None else None
    s1, s2 = _bounds(groups, D)
    yp = ys + [ys[0]] * (MAX_GROUPS - len(ys))

    def grid(meta):
        return (cdiv(T, meta["BLOCK_T"]), cdiv(D, bd), B)

    launch(_conv_fwd_kernel, grid,
        x, weight, bias if bias is not None else weight, h0 if h0 is not None else weight,
        yp[0], yp[1], yp[2], x.stride(0), x.stride(1), B, T, D, s1, s2,
        W=W, LEFT=_left(W, causal), HAS_BIAS=bias is not None, HAS_H0=h0 is not None,
        ACT=_kernel_act(act), BIDIR=bidir, NG=len(groups), BLOCK_D=bd)
    return ys if splits is not None else ys[0]


def conv_bwd(dy, x, weight, bias, h0, act: int, causal: bool, bidir: bool = False):
    """(dx, dw, db or None); dy is one [NB,T,D] tensor or a list of channel groups. The
    initial-state gradient is `head_state_grad`'s job."""
    x = _rows_contig(x)
    B, T, D = x.shape
    W = weight.shape[1]
    dys = [g.contiguous() for g in (dy if isinstance(dy, (list, tuple)) else [dy])]
    groups = [g.shape[-1] for g in dys]
    weight = weight.contiguous()
    h0c = h0.contiguous() if h0 is not None else None
    dx = torch.empty(B, T, D, device=x.device, dtype=x.dtype)
    bd = group_block_d(groups, D)
    assert bd, f"conv_bwd: unsupported channel groups {groups}"
    if len(groups) == 1:
        bd = 256 if D >= 256 else 128   # 16-byte loads with one warp
    if T == 0 or B == 0:
        return (dx, torch.zeros_like(weight),
                torch.zeros_like(bias) if bias is not None else None)
    s1, s2 = _bounds(groups, D)
    dp = dys + [dys[0]] * (MAX_GROUPS - len(dys))
    # rows per program: 64 (halo overhead (W-1)/64), or 32 when that leaves few programs
    n_prog64 = B * cdiv(D, bd) * cdiv(T, 64)
    chunk = 64 if n_prog64 >= 8192 else 32
    n_chunks = cdiv(T, chunk)
    dwp = torch.empty(B, n_chunks, W, D, device=x.device, dtype=torch.float32)
    dbp = torch.empty(B, n_chunks, D, device=x.device, dtype=torch.float32)
    launch(_conv_bwd_kernel, (n_chunks, cdiv(D, bd), B),
        x, weight, bias if bias is not None else weight, h0c if h0c is not None else weight,
        dp[0], dp[1], dp[2], dx, dwp, dbp, x.stride(0), x.stride(1), B, T, D, s1, s2,
        n_chunks,
        W=W, LEFT=_left(W, causal), HAS_BIAS=bias is not None, HAS_H0=h0 is not None,
        ACT=_kernel_act(act), BIDIR=bidir, NG=len(groups), CHUNK=chunk, BLOCK_D=bd)
    dw = dwp.sum((0, 1)).t().contiguous().to(weight.dtype)  # [W,D] -> [D,W], as the fake
    db = dbp.sum((0, 1)).to(bias.dtype) if bias is not None else None
    return dx, dw, db


def head_state_grad(dy, x, weight, bias, h0, act: int):
    """Gradient of the initial state, from the first W-1 outputs only (plain torch; the
    tensors are [B,D,<2W]): with stream s = [h0, x], z[t] = sum_j w[j] s[t+j] + b and
    dh0[u] = sum_{t <= u, t < T} w[u-t] dz[t]."""
    B, T, D = x.shape
    W = weight.shape[1]
    n = min(T, W - 1)
    s = torch.cat([h0.float(), x[:, :n].float().transpose(1, 2)], dim=2)  # [B,D,W-1+n]
    wf = weight.float()
    z = sum(wf[:, j, None] * s[:, :, j:j + n] for j in range(W))  # [B,D,n]
    if bias is not None:
        z = z + bias.float()[:, None]
    g = torch.sigmoid(z) * (1 + z * (1 - torch.sigmoid(z))) if act == 1 else torch.ones_like(z)
    dz = dy[:, :n].float().transpose(1, 2) * g  # [B,D,n]
    dh0 = torch.zeros_like(h0, dtype=torch.float32)
    for t in range(n):
        for u in range(t, W - 1):
            dh0[:, :, u] += wf[:, u - t] * dz[:, :, t]
    return dh0.to(h0.dtype)
