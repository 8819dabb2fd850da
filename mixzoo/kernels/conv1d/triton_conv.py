"""Depthwise short-convolution kernels (forward, backward, single-token update) and launchers.

Notation (README.md has the derivation). The input stream s has x's rows shifted by LEFT:
s[u] = x[u - LEFT] (causal: LEFT = W-1 and s[u] = h0[u] for u < W-1; centred:
LEFT = (W-1)//2 and zeros outside [0,T)). Then
    z[t] = sum_j w[j] s[t+j] + b = sum_j w[j] x[t + j - LEFT] + b,   y[t] = act(z[t])
    dz[t] = dy[t] act'(z[t])
    dx[t] = sum_j w[j] dz[t + LEFT - j],  dw[j] = sum_{b,t} dz[t] x[t + j - LEFT],
    db = sum_{b,t} dz[t].
The backward recomputes z (nothing but x is saved). A program needs dz at the W rows
t + SH + k (SH = LEFT - (W-1), k = 0..W-1) of each output row; with no register shifts in
Triton it recomputes each from W shifted 2D loads of x (L1/L2 hits after the first):
    z[t + SH + k] = sum_i w[i] x[t + SH + k + i - LEFT] + b,   dx[t] = sum_k w[W-1-k] dz[t+SH+k]
and keeps dw's per-thread partial sums in W plain [BLOCK_T, BLOCK_D] accumulators, reduced
over time once per program. Every tile stays in one 2D layout: the first version held a
[BLOCK_T, WP, BLOCK_D] tile whose tap axis Triton spread over lanes, paying ~80 barriers
per tile (2.8 ms at B8 T4096 D4096 on an H100, 15% of copy bandwidth).
"""
from __future__ import annotations


import torch
import triton
import triton.language as tl

from .._common import cdiv, pick_configs


@triton.jit
def _act_fwd(z, ACT: tl.constexpr):
    if ACT == 1:  # silu
        return z * tl.sigmoid(z)
    return z


@triton.jit
def _act_grad(z, ACT: tl.constexpr):
    """d act / dz."""
    if ACT == 1:
        sg = tl.sigmoid(z)
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



def _fwd_configs():
    cfgs = [triton.Config({"BLOCK_T": bt, "BLOCK_D": bd}, num_warps=w)
            for bt, bd, w in [(32, 128, 4), (64, 128, 4), (16, 256, 4)]]
    return cfgs


@triton.autotune(configs=pick_configs(_fwd_configs()), key=["T", "D", "W", "ACT", "LEFT"])
@triton.jit
def _conv_fwd_kernel(
    x_ptr,                    # x [B,T,D], last dim contiguous
    w_ptr,                    # weight [D,W] contiguous
    b_ptr,                    # bias [D] (when HAS_BIAS)
    h0_ptr,                   # initial state [B,D,W-1] contiguous (when HAS_H0)
    y_ptr,                    # y [B,T,D] contiguous
    sxb, sxt,                 # x strides (batch, time)
    T, D,
    W: tl.constexpr,          # kernel width
    LEFT: tl.constexpr,       # taps reaching into the past (W-1 causal, (W-1)//2 centred)
    HAS_BIAS: tl.constexpr, HAS_H0: tl.constexpr,
    ACT: tl.constexpr,        # 0 none, 1 silu
    BLOCK_T: tl.constexpr, BLOCK_D: tl.constexpr,
):
    """y[t] = act(sum_j w[j] x[t + j - LEFT] + b) for one [BLOCK_T, BLOCK_D] tile."""
    pid_t = tl.program_id(0)
    pid_d = tl.program_id(1)
    b = tl.program_id(2)
    t0 = pid_t * BLOCK_T
    offs_t = t0 + tl.arange(0, BLOCK_T)
    offs_d = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)
    dm = offs_d < D
    x_base = x_ptr + b.to(tl.int64) * sxb
    h0_base = h0_ptr + b.to(tl.int64) * D * (W - 1)
    acc = tl.zeros([BLOCK_T, BLOCK_D], dtype=tl.float32)
    for j in tl.static_range(W):
        wj = tl.load(w_ptr + offs_d * W + j, mask=dm, other=0.0).to(tl.float32)  # [BLOCK_D]
        xj = _load_rows(x_base, h0_base, offs_t[:, None] + (j - LEFT), offs_d[None, :], sxt,
                        T, D, W, HAS_H0, t0 < LEFT)
        acc += xj * wj[None, :]
    if HAS_BIAS:
        acc += tl.load(b_ptr + offs_d, mask=dm, other=0.0).to(tl.float32)[None, :]
    y = _act_fwd(acc, ACT)
    out = (b.to(tl.int64) * T + offs_t[:, None]) * D + offs_d[None, :]
    tl.store(y_ptr + out, y.to(y_ptr.dtype.element_ty), mask=(offs_t[:, None] < T) & dm[None, :])


@triton.jit
def _tap(w_ptr, offs_d, dm, j: tl.constexpr, W: tl.constexpr):
    """Column j of the weight, w[:, j], as fp32 [BLOCK_D] (zeros for j >= W)."""
    if j < W:
        return tl.load(w_ptr + offs_d * W + j, mask=dm, other=0.0).to(tl.float32)
    return tl.zeros(offs_d.shape, dtype=tl.float32)


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


def _bwd_configs():
    # plain 2D [BLOCK_T, BLOCK_D] tiles in one layout (a [T, taps, D] register tile put
    # the taps across lanes and cost ~80 barriers per tile on the first H100 run)
    cfgs = [triton.Config({"BLOCK_T": bt, "BLOCK_D": bd}, num_warps=w)
            for bt, bd, w in [(16, 64, 4), (32, 64, 8), (16, 128, 8)]]
    return cfgs


@triton.autotune(configs=pick_configs(_bwd_configs()), key=["T", "D", "W", "ACT", "LEFT"])
@triton.jit
def _conv_bwd_kernel(
    x_ptr, w_ptr, b_ptr, h0_ptr,   # as in the forward
    dy_ptr,                        # dy [B,T,D], last dim contiguous
    dx_ptr,                        # dx [B,T,D] contiguous
    dwp_ptr,                       # partial dw [B, n_chunks, WP, D] fp32
    dbp_ptr,                       # partial db [B, n_chunks, D] fp32
    sxb, sxt, sdb, sdt,            # x and dy strides (batch, time)
    T, D,
    n_chunks,                      # programs along time; each owns consecutive tiles
    W: tl.constexpr, WP: tl.constexpr,   # width (<= 8), next power of two >= W
    LEFT: tl.constexpr, HAS_BIAS: tl.constexpr, HAS_H0: tl.constexpr, ACT: tl.constexpr,
    BLOCK_T: tl.constexpr, BLOCK_D: tl.constexpr,
):
    """dx for a chunk of time tiles and this chunk's dw/db partial sums. dz at the W rows
    t + SH + k that dx[t] needs is recomputed from x (W shifted loads each, L1/L2 hits)."""
    pid_c = tl.program_id(0)
    pid_d = tl.program_id(1)
    b = tl.program_id(2)
    SH: tl.constexpr = LEFT - (W - 1)
    offs_d = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)
    dm = offs_d < D
    x_base = x_ptr + b.to(tl.int64) * sxb
    dy_base = dy_ptr + b.to(tl.int64) * sdb
    h0_base = h0_ptr + b.to(tl.int64) * D * (W - 1)
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
    # per-thread partial sums of dw[j] (a0..a7) and db, reduced over time once at the end
    a0 = tl.zeros([BLOCK_T, BLOCK_D], dtype=tl.float32)
    a1 = tl.zeros([BLOCK_T, BLOCK_D], dtype=tl.float32)
    a2 = tl.zeros([BLOCK_T, BLOCK_D], dtype=tl.float32)
    a3 = tl.zeros([BLOCK_T, BLOCK_D], dtype=tl.float32)
    a4 = tl.zeros([BLOCK_T, BLOCK_D], dtype=tl.float32)
    a5 = tl.zeros([BLOCK_T, BLOCK_D], dtype=tl.float32)
    a6 = tl.zeros([BLOCK_T, BLOCK_D], dtype=tl.float32)
    a7 = tl.zeros([BLOCK_T, BLOCK_D], dtype=tl.float32)
    db_acc = tl.zeros([BLOCK_T, BLOCK_D], dtype=tl.float32)
    n_tiles = tl.cdiv(T, BLOCK_T)
    per = tl.cdiv(n_tiles, n_chunks)
    for it in range(pid_c * per, tl.minimum(pid_c * per + per, n_tiles)):
        t0 = it * BLOCK_T
        offs_t = t0 + tl.arange(0, BLOCK_T)
        near_start = t0 < W - 1
        dx = tl.zeros([BLOCK_T, BLOCK_D], dtype=tl.float32)
        dz0 = tl.zeros([BLOCK_T, BLOCK_D], dtype=tl.float32)
        for k in tl.static_range(W):
            rz = offs_t + (SH + k)  # rows of z feeding dx through tap W-1-k
            z = tl.zeros([BLOCK_T, BLOCK_D], dtype=tl.float32)
            if HAS_BIAS:
                z += bias[None, :]
            for i in tl.static_range(W):
                xi = _load_rows(x_base, h0_base, rz[:, None] + (i - LEFT), offs_d[None, :], sxt,
                                T, D, W, HAS_H0, near_start)
                z += _pick(i, w0, w1, w2, w3, w4, w5, w6, w7)[None, :] * xi
            zok = (rz[:, None] >= 0) & (rz[:, None] < T) & dm[None, :]
            dyk = tl.load(dy_base + rz[:, None].to(tl.int64) * sdt + offs_d[None, :], mask=zok,
                          other=0.0).to(tl.float32)
            dz = dyk * _act_grad(z, ACT)
            dx += _pick(W - 1 - k, w0, w1, w2, w3, w4, w5, w6, w7)[None, :] * dz
            if k == -SH:  # this tile's own rows feed dw and db
                dz0 = dz
        out = (b.to(tl.int64) * T + offs_t[:, None]) * D + offs_d[None, :]
        tl.store(dx_ptr + out, dx.to(dx_ptr.dtype.element_ty),
                 mask=(offs_t[:, None] < T) & dm[None, :])
        db_acc += dz0
        for j in tl.static_range(W):
            xj = _load_rows(x_base, h0_base, offs_t[:, None] + (j - LEFT), offs_d[None, :], sxt,
                            T, D, W, HAS_H0, near_start)
            p = dz0 * xj
            if j == 0:
                a0 += p
            if j == 1:
                a1 += p
            if j == 2:
                a2 += p
            if j == 3:
                a3 += p
            if j == 4:
                a4 += p
            if j == 5:
                a5 += p
            if j == 6:
                a6 += p
            if j == 7:
                a7 += p
    part = (b * n_chunks + pid_c).to(tl.int64)
    for j in tl.static_range(W):
        col = tl.sum(_pick(j, a0, a1, a2, a3, a4, a5, a6, a7), axis=0)  # [BLOCK_D]
        tl.store(dwp_ptr + (part * WP + j) * D + offs_d, col, mask=dm)
    tl.store(dbp_ptr + part * D + offs_d, tl.sum(db_acc, axis=0), mask=dm)


@triton.jit
def _conv_update_kernel(
    x_ptr,                    # x_t [B,D] (one token), last dim contiguous
    s_ptr,                    # state [B,D,W-1] fp32 contiguous: the last W-1 inputs
    w_ptr, b_ptr,             # weight [D,W], bias [D] (when HAS_BIAS)
    y_ptr,                    # y_t [B,D]
    s_out_ptr,                # new state [B,D,W-1] fp32
    sxb, D,
    W: tl.constexpr, WP: tl.constexpr, HAS_BIAS: tl.constexpr, ACT: tl.constexpr,
    BLOCK_D: tl.constexpr,
):
    """One decoding step: window = [state, x_t]; y_t = act(w . window + b);
    new state = window[1:]."""
    b = tl.program_id(0)
    offs_d = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
    offs_k = tl.arange(0, WP)
    dm = offs_d < D
    xt = tl.load(x_ptr + b.to(tl.int64) * sxb + offs_d, mask=dm, other=0.0).to(tl.float32)
    s_base = s_ptr + (b.to(tl.int64) * D + offs_d[:, None]) * (W - 1)
    st = tl.load(s_base + offs_k[None, :], mask=dm[:, None] & (offs_k < W - 1)[None, :],
                 other=0.0)  # [BLOCK_D, WP]
    win = tl.where((offs_k == W - 1)[None, :], xt[:, None], st)
    w = tl.load(w_ptr + offs_d[:, None] * W + offs_k[None, :],
                mask=dm[:, None] & (offs_k < W)[None, :], other=0.0).to(tl.float32)
    z = tl.sum(win * w, axis=1)
    if HAS_BIAS:
        z += tl.load(b_ptr + offs_d, mask=dm, other=0.0).to(tl.float32)
    tl.store(y_ptr + b.to(tl.int64) * D + offs_d, _act_fwd(z, ACT).to(y_ptr.dtype.element_ty),
             mask=dm)
    nxt = tl.load(s_base + offs_k[None, :] + 1, mask=dm[:, None] & (offs_k < W - 2)[None, :],
                  other=0.0)
    nxt = tl.where((offs_k == W - 2)[None, :], xt[:, None], nxt)
    tl.store(s_out_ptr + (b.to(tl.int64) * D + offs_d[:, None]) * (W - 1) + offs_k[None, :], nxt,
             mask=dm[:, None] & (offs_k < W - 1)[None, :])


# ----------------------------------------------------------------------------- launchers

ACT_CODES = {None: 0, "silu": 1}
CHUNK_ROWS = 128


def _left(W: int, causal: bool) -> int:
    return W - 1 if causal else (W - 1) // 2


def _rows_contig(t: torch.Tensor) -> torch.Tensor:
    return t if t.stride(-1) == 1 else t.contiguous()


def conv_fwd(x, weight, bias, h0, act: int, causal: bool):
    """y [B,T,D] in x's dtype."""
    x = _rows_contig(x)
    B, T, D = x.shape
    W = weight.shape[1]
    y = torch.empty(B, T, D, device=x.device, dtype=x.dtype)
    if T == 0:
        return y
    weight = weight.contiguous()
    h0 = h0.contiguous() if h0 is not None else None
    def grid(meta):
        return (triton.cdiv(T, meta["BLOCK_T"]), triton.cdiv(D, meta["BLOCK_D"]), B)

    _conv_fwd_kernel[grid](
        x, weight, bias if bias is not None else weight, h0 if h0 is not None else weight, y,
        x.stride(0), x.stride(1), T, D,
        W=W, LEFT=_left(W, causal), HAS_BIAS=bias is not None, HAS_H0=h0 is not None, ACT=act)
    return y


def conv_bwd(dy, x, weight, bias, h0, act: int, causal: bool):
    """(dx, dw, db or None); the initial-state gradient is `head_state_grad`'s job."""
    x, dy = _rows_contig(x), _rows_contig(dy)
    B, T, D = x.shape
    W = weight.shape[1]
    WP = triton.next_power_of_2(W)
    weight = weight.contiguous()
    h0c = h0.contiguous() if h0 is not None else None
    dx = torch.empty(B, T, D, device=x.device, dtype=x.dtype)
    # time chunks of CHUNK_ROWS rows: many short programs keep enough loads in flight (a
    # handful of long serial ones ran at 15% of copy bandwidth on an H100); the dw/db
    # partial sums cost 2 * WP * 4 bytes per chunk and channel, ~2% of the traffic
    n_chunks = cdiv(T, CHUNK_ROWS)
    dwp = torch.empty(B, n_chunks, WP, D, device=x.device, dtype=torch.float32)
    dbp = torch.empty(B, n_chunks, D, device=x.device, dtype=torch.float32)
    _conv_bwd_kernel[lambda meta: (n_chunks, triton.cdiv(D, meta["BLOCK_D"]), B)](
        x, weight, bias if bias is not None else weight, h0c if h0c is not None else weight,
        dy, dx, dwp, dbp, x.stride(0), x.stride(1), dy.stride(0), dy.stride(1), T, D, n_chunks,
        W=W, WP=WP, LEFT=_left(W, causal), HAS_BIAS=bias is not None, HAS_H0=h0 is not None,
        ACT=act)
    dw = dwp.sum((0, 1))[:W].t().to(weight.dtype)  # [W,D] -> [D,W]
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


def conv_update(x_t, state, weight, bias, act: int):
    """One decoding step. x_t [B,D], state [B,D,W-1] fp32 -> (y_t [B,D], new state)."""
    x_t = _rows_contig(x_t)
    B, D = x_t.shape
    W = weight.shape[1]
    y = torch.empty(B, D, device=x_t.device, dtype=x_t.dtype)
    s_out = torch.empty(B, D, W - 1, device=x_t.device, dtype=torch.float32)
    BD = 256
    _conv_update_kernel[(B, triton.cdiv(D, BD))](
        x_t, state.float().contiguous(), weight.contiguous(), bias if bias is not None else weight,
        y, s_out, x_t.stride(0), D,
        W=W, WP=triton.next_power_of_2(W), HAS_BIAS=bias is not None, ACT=act, BLOCK_D=BD)
    return y, s_out
