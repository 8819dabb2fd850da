"""Single-token decoding kernel of the short convolution and its launcher.

window = [state, x_t] (the last W-1 inputs, then the new one), y_t = act(w . window + b),
new state = window[1:]. `short_conv` routes one causal token without gradients here (tested
equal to the full kernel, token by token).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from .._common import cdiv, next_power_of_2
from .triton_conv import _act_fwd, _rows_contig


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


# ----------------------------------------------------------------------------- launcher

def conv_update(x_t, state, weight, bias, act: int):
    """One decoding step. x_t [B,D], state [B,D,W-1] fp32 -> (y_t [B,D], new state)."""
    x_t = _rows_contig(x_t)
    B, D = x_t.shape
    W = weight.shape[1]
    y = torch.empty(B, D, device=x_t.device, dtype=x_t.dtype)
    s_out = torch.empty(B, D, W - 1, device=x_t.device, dtype=torch.float32)
    BD = 256
    _conv_update_kernel[(B, cdiv(D, BD))](
        x_t, state.float().contiguous(), weight.contiguous(), bias if bias is not None else weight,
        y, s_out, x_t.stride(0), D,
        W=W, WP=next_power_of_2(W), HAS_BIAS=bias is not None, ACT=act, BLOCK_D=BD)
    return y, s_out
