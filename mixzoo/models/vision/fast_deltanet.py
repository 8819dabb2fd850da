"""Eager fast paths of the bidirectional (vision) DeltaNet layer, taken by the timm adapter
with MIXZOO_VISION_PATH=layer (the default) or =fused (adapter.py; imported on first use).

At ViT sizes (196 tokens, batch 128) one DeltaNet layer's GPU work is a few hundred
microseconds per kernel, and a training step's host side (Python, dispatch, launches) is
as long as its GPU side: on the H100 host the DeltaNet ViT-S step took exactly its host time
at 224 and 1024 px (session 3 calls 12-13: 72.9 ms host for a 72.8 ms step at 224 px, while
its kernels add up to ~55 ms at 1024 px), and timm's own ViT-S step was host-bound at 224 px
too (call 11: 38.2 ms host for a 38.1 ms step). The mixer's default path calls
three custom ops per layer (`short_conv_bidir_fwd`, `delta_rule_chunk_fwd`, `rms_norm_fwd`,
each with a backward op); torch.library's eager dispatch (schema defaults, pytree, the
autograd wrapper, redispatch, dynamo-disable wrappers) costs ~0.1-0.2 ms of host time per op
call on a slow host, ~1 ms per layer per step. These paths run the same kernels through
plain torch.autograd.Functions (beta is passed as logits: params.BETA_MODES):

"fused" (`_BidirScan`, one Function per layer for the scan; the projections and the output
gate stay torch ops, as in the mixer):
    forward:  conv (q|k|v of both scan directions, one launch) -> delta-rule chunk forward
              (prep + state pass) -> output RMSNorm combining the two directions
    backward: RMSNorm backward -> delta-rule chunk backward -> conv backward
"layer" (`_BidirLayer`, the whole layer as ONE autograd node): the same, with in_proj
    (q|k|v and beta-logit GEMMs) before and o_proj after, x and the weights cast once to the
    compute dtype inside. Backward: o_proj GEMMs -> the scan's backward -> dx (one addmm over
    both in_proj GEMMs) and dW_in (written into one buffer in w_in's row order).
    Host work per DeltaNet ViT-S training step (benchmarks/vision_host.py, autocast bf16,
    10th percentile): CPU host with the kernels stubbed, timm ViT-S 7.2 ms, "layer" 7.9,
    "fused" with MIXZOO_VISION_CAST=once 8.2, the mixer path 12.4; H100 host (call 17, real
    kernels, 224 px batch 8): timm 18.0, "layer" 34.7, "fused" 36.7; session 5 call 23, with
    the cached Triton launches (_common.launch): timm 15.8, "layer" 26.2.

Both compute the same values as the mixer (tested equal in fp32: output and every
gradient); beta for both directions (sigmoid, and the reversed direction's time order) is
computed inside the delta-rule kernels from the logits (params.BETA_MODES). Under
autocast, "layer" has MIXZOO_VISION_CAST=once semantics (one cast of x; its gradient summed
over the projections in the autocast dtype before the cast back).

They apply only where the mixer itself would run exactly these kernels: a bidirectional
DeltaNet (causal=False) with its short conv, the Triton backend, no carried state, T > 1,
q|k|v channel groups the grouped conv kernel takes, and on CUDA what `delta_rule` runs on
its chunk kernels (`params.chunk_fits`: half-precision compute, head dims <= 128; fp32
training takes the mixer's path, i.e. the recurrent kernels); "layer" also needs no output
gate (otherwise it takes "fused"). Everything else, and everything under torch.compile
(which needs the custom ops), takes the mixer's own path. Under torch.no_grad nothing is
saved for a backward.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from mixzoo.kernels._common import resolve_backend
from mixzoo.kernels.conv1d import ops as conv_ops
from mixzoo.kernels.conv1d.triton_conv import ACT_CODES, group_block_d
from mixzoo.kernels.delta_rule import MAX_HEAD_DIM
from mixzoo.kernels.delta_rule.chunk import chunk_bwd, chunk_fwd
from mixzoo.kernels.delta_rule.params import chunk_fits
from mixzoo.kernels.rmsnorm.triton_rmsnorm import rmsnorm_bwd, rmsnorm_fwd
from mixzoo.mixers.deltanet import DeltaNetMixer

_SILU = ACT_CODES["silu"]


def _scan_fwd(ctx, qkv, conv_w, b_logit, norm_w, H: int, K: int, V: int, eps: float,
              neg_eig: bool, save: bool):
    """conv -> delta rule (both directions as one doubled batch) -> combining RMSNorm:
    qkv [B,T,2HK+HV], b_logit [B,T,H] -> y [B,T,H,V]. With `save`, ctx gets the scan's saved
    tensors (`ctx.scan`, a tuple) and constants, for `_scan_bwd`."""
    B, T, _ = qkv.shape
    b_logit = b_logit.contiguous()  # [B,T,H]; the kernels build beta of both directions
    beta_mode = 2 if neg_eig else 1  # (params.BETA_MODES): MODE * sigmoid, rows B.. reversed
    variant = conv_ops.current_variant("bidirectional")
    q, k, v = conv_ops._fwd_impl(variant)(qkv, conv_w, None, None, _SILU, True,
                                          bidir=True, splits=[H * K, H * K, H * V])
    q = q.view(2 * B, T, H, K)  # [2B,T,H,K], rows B.. = reversed sequence
    k = k.view(2 * B, T, H, K)  # [2B,T,H,K]
    v = v.view(2 * B, T, H, V)  # [2B,T,H,V]
    scale = K ** -0.5
    o, _, vn, tinv, hbuf = chunk_fwd(q, k, v, b_logit, scale, None, False, True, save,
                                     beta_mode)
    y, rstd = rmsnorm_fwd(o, norm_w, eps, True)  # [B,T,H,V]
    if save:
        ctx.scan = (qkv, conv_w, q, k, v, b_logit, vn, tinv, hbuf, o, norm_w, rstd)
        ctx.variant, ctx.scale, ctx.beta_mode = variant, scale, beta_mode
    return y


def _scan_bwd(ctx, scan, dy):
    """Gradients of `_scan_fwd` from its saved tensors `scan` and dy [B,T,H,V]:
    (dqkv [B,T,2HK+HV], dconv_w, db_logit [B,T,H], dnorm_w)."""
    qkv, conv_w, q, k, v, b_logit, vn, tinv, hbuf, o, norm_w, rstd = scan
    do, dnorm_w = rmsnorm_bwd(dy, o, norm_w, rstd, True)  # [2B,T,H,V], [V]
    dq, dk, dv, dz, _ = chunk_bwd(q, k, v, b_logit, ctx.scale, None, True, vn, tinv, hbuf,
                                  do, None, ctx.beta_mode)  # dz [2B,T,H]: d logit per direction
    B2, T = q.shape[:2]
    dys = [dq.view(B2, T, -1), dk.view(B2, T, -1), dv.view(B2, T, -1)]  # [2B,T,*]
    dqkv, dconv_w, _ = conv_ops._bwd_impl(ctx.variant)(dys, qkv, conv_w, None, None, _SILU,
                                                       True, bidir=True)
    db_logit = dz[:B2 // 2] + dz[B2 // 2:]  # [B,T,H], both directions (same time order)
    return dqkv, dconv_w, db_logit, dnorm_w


class _BidirScan(torch.autograd.Function):
    """qkv [B,T,2HK+HV], beta logits [B,T,H] -> o_norm(scan(fwd) + flip(scan(rev)))
    [B,T,H,V]; see the module docstring. conv_w [2HK+HV, W], norm_w [V]. beta =
    sigmoid(logits) (times 2 with neg_eig) of both directions is computed by the delta-rule
    kernels from the logits, so no sigmoid, flip or concatenation runs as a torch op."""

    @staticmethod
    def forward(ctx, qkv, conv_w, b_logit, norm_w, heads: int, k_dim: int, v_dim: int,
                eps: float, neg_eig: bool, grad_mode: bool):
        save = grad_mode and any(ctx.needs_input_grad[:4])   # nothing saved for inference
        y = _scan_fwd(ctx, qkv, conv_w, b_logit, norm_w, heads, k_dim, v_dim, eps, neg_eig,
                      save)
        if save:
            ctx.save_for_backward(*ctx.scan)
            del ctx.scan
        return y

    @staticmethod
    def backward(ctx, dy):
        dqkv, dconv_w, db_logit, dnorm_w = _scan_bwd(ctx, ctx.saved_tensors, dy)
        return dqkv, dconv_w, db_logit, dnorm_w, None, None, None, None, None, None


class _BidirLayer(torch.autograd.Function):
    """The whole layer, x [B,T,D] -> o_proj(o_norm(bidirectional scan(in_proj(x)))) [B,T,D],
    as ONE autograd node (MIXZOO_VISION_PATH=layer): the projections run as plain GEMMs in
    the compute dtype `dt` (autocast's dtype under autocast, else x's), x and the weights are
    cast to it once inside, and the backward returns each gradient in its input's dtype
    (dx summed over the q|k|v and beta projections in `dt` before that one cast, as with
    MIXZOO_VISION_CAST=once). w_in [2HK+HV+H, D] = q|k|v|beta-logit rows, w_o [D, HV]."""

    @staticmethod
    def forward(ctx, x, w_in, b_in, conv_w, norm_w, w_o, b_o, dt: torch.dtype, heads: int,
                k_dim: int, v_dim: int, eps: float, neg_eig: bool, grad_mode: bool):
        B, T, D = x.shape
        H, V = heads, v_dim
        n_qkv = w_in.shape[0] - H
        xc = x.to(dt)                                     # [B,T,D], one cast (or none)
        w = w_in.to(dt)                                   # [qkv+H, D]
        bi = None if b_in is None else b_in.to(dt)
        qkv = F.linear(xc, w[:n_qkv], None if bi is None else bi[:n_qkv])  # [B,T,qkv]
        b_logit = F.linear(xc, w[n_qkv:], None if bi is None else bi[n_qkv:])  # [B,T,H]
        save = grad_mode and any(ctx.needs_input_grad[:7])   # nothing saved for inference
        y = _scan_fwd(ctx, qkv, conv_w, b_logit, norm_w, H, k_dim, V, eps, neg_eig, save)
        yf = y.view(B, T, H * V)                          # [B,T,HV] normed scan output
        wo = w_o.to(dt)
        out = F.linear(yf, wo, None if b_o is None else b_o.to(dt))  # [B,T,D]
        if save:
            ctx.save_for_backward(xc, w, wo, yf, *ctx.scan)
            del ctx.scan
            ctx.n_qkv, ctx.has_bias = n_qkv, (b_in is not None, b_o is not None)
            ctx.dtypes = (x.dtype, w_in.dtype, w_o.dtype)
        return out

    @staticmethod
    def backward(ctx, dout):
        xc, w, wo, yf, *scan = ctx.saved_tensors
        B, T, D = xc.shape
        n = ctx.n_qkv
        x_dt, win_dt, wo_dt = ctx.dtypes
        g = dout.to(wo.dtype).reshape(B * T, D)           # [BT,D]
        dyf = torch.mm(g, wo)                             # [BT,HV]
        dwo = torch.mm(g.t(), yf.reshape(B * T, -1))      # [D,HV]
        dbo = g.sum(0).to(wo_dt) if ctx.has_bias[1] else None
        H = scan[5].shape[-1]                             # beta logits [B,T,H]
        dqkv, dconv_w, db_logit, dnorm_w = _scan_bwd(ctx, scan, dyf.view(B, T, H, -1))
        dqkv = dqkv.reshape(B * T, n)                     # [BT,qkv]
        db = db_logit.reshape(B * T, H).to(dqkv.dtype)    # [BT,H]
        x2 = xc.reshape(B * T, D)                         # [BT,D]
        dx = torch.addmm(torch.mm(db, w[n:]), dqkv, w[:n])  # [BT,D], both projections
        dw = torch.empty_like(w)                          # [qkv+H, D]: rows as in w_in
        torch.mm(dqkv.t(), x2, out=dw[:n])
        torch.mm(db.t(), x2, out=dw[n:])
        dbi = torch.cat([dqkv.sum(0), db.sum(0)]).to(win_dt) if ctx.has_bias[0] else None
        return (dx.view(B, T, D).to(x_dt), dw.to(win_dt), dbi, dconv_w, dnorm_w,
                dwo.to(wo_dt), dbo, None, None, None, None, None, None, None)


def fused_mixer(m) -> bool:
    """The part of `fused_applies` fixed by the mixer's config and widths (callers may cache
    it per mixer)."""
    return (isinstance(m, DeltaNetMixer) and not m.config.causal
            and m.conv_weight is not None and max(m.K, m.V) <= MAX_HEAD_DIM
            and bool(group_block_d([m.H * m.K, m.H * m.K, m.H * m.V], m.qkv_dim)))


def fused_applies(m, x: torch.Tensor, mixer_ok: bool | None = None) -> bool:
    """Whether `fused_forward(m, x)` runs exactly the kernels `m(x)` would (module docstring).
    mixer_ok: a cached `fused_mixer(m)`."""
    if not (fused_mixer(m) if mixer_ok is None else mixer_ok):
        return False
    if torch.compiler.is_compiling() or x.dtype == torch.float64 or x.shape[1] <= 1:
        return False                # (T == 1: `delta_rule` runs its recurrent kernel)
    if x.is_cuda:                   # as `delta_rule`: the chunk kernels only where they fit
        dev = x.device.type         # (fp32 or head dims > 128 run the recurrent kernels)
        dt = torch.get_autocast_dtype(dev) if torch.is_autocast_enabled(dev) else x.dtype
        if not chunk_fits(dt, m.K, m.V):
            return False
    try:
        return resolve_backend(m.config.backend, x, has_triton=True, algo="delta_rule") == "triton"
    except NotImplementedError:     # backend="triton" asked for where Triton cannot run
        return False


def fused_forward(m: DeltaNetMixer, x: torch.Tensor) -> torch.Tensor:
    """y [B,T,D] = m(x)[0] for a bidirectional DeltaNet, through `_BidirScan`."""
    B, T, _ = x.shape
    w_qkv, w_b = m.in_proj.weight.split([m.qkv_dim, m.H])
    b_qkv, b_b = (None, None) if m.in_proj.bias is None else m.in_proj.bias.split(
        [m.qkv_dim, m.H])
    qkv = F.linear(x, w_qkv, b_qkv)  # [B,T,qkv_dim]
    b_logit = F.linear(x, w_b, b_b)  # [B,T,H]
    o = _BidirScan.apply(qkv, m.conv_weight, b_logit, m.o_norm.weight, m.H, m.K, m.V,
                         float(m.o_norm.eps), m.config.allow_neg_eigval,
                         torch.is_grad_enabled())  # [B,T,H,V]
    if m.g_proj is not None:
        o = o * F.silu(m.g_proj(x)).reshape(B, T, m.H, m.V)  # [B,T,H,V]
    return F.linear(o.reshape(B, T, m.H * m.V), m.o_proj.weight, m.o_proj.bias)  # [B,T,D]


def layer_applies(m, x: torch.Tensor, mixer_ok: bool | None = None) -> bool:
    """Whether `layer_forward(m, x)` applies: `fused_applies` and no output gate."""
    return m.g_proj is None and fused_applies(m, x, mixer_ok)


def layer_forward(m: DeltaNetMixer, x: torch.Tensor) -> torch.Tensor:
    """y [B,T,D] = m(x)[0] for a bidirectional DeltaNet without output gate, through
    `_BidirLayer` (one autograd node). Under autocast the layer computes in autocast's dtype
    and casts x once (MIXZOO_VISION_CAST=once semantics); otherwise in x's dtype."""
    dev = x.device.type
    dt = torch.get_autocast_dtype(dev) if torch.is_autocast_enabled(dev) else x.dtype
    return _BidirLayer.apply(x, m.in_proj.weight, m.in_proj.bias, m.conv_weight,
                             m.o_norm.weight, m.o_proj.weight, m.o_proj.bias, dt, m.H, m.K,
                             m.V, float(m.o_norm.eps), m.config.allow_neg_eigval,
                             torch.is_grad_enabled())
