"""Softmax attention, the spec (plain PyTorch, fp32 math; fp64 inputs stay fp64).

    attention(q, k, v, *, causal=True, window=None, scale=None) -> o

q `[B,Tq,H,D]`, k/v `[B,Tk,Hkv,D]` with Hkv dividing H (GQA: query head h reads kv
head h // (H // Hkv)). Query i sits at absolute position p_i = Tk - Tq + i (queries are
aligned to the END of the keys, so Tq < Tk is decoding against a KV cache). Key j is
visible to query i when
    causal=False:                 always
    causal=True, window=None:     j <= p_i
    causal=True, window=W:        p_i - W < j <= p_i      (W most recent keys, itself included)
and o_i = sum_j softmax_j(scale * q_i . k_j) v_j over the visible keys; scale defaults
to 1/sqrt(D). The output has q's dtype.

Two forms with the same signature:
- `attention_ref`: the definition -- a full masked [Tq,Tk] score matrix and a softmax.
- `attention_chunked_ref`: online softmax over key blocks (what the Triton kernel does),
  never holding more than [Tq, C] scores; blocks entirely outside the mask are skipped.
Both also serve `attention_lse_ref`, which returns the row logsumexp (natural log, of
the scaled scores) the kernels save for the backward pass.
"""
from __future__ import annotations

import torch


def visible_mask(Tq: int, Tk: int, causal: bool, window: int | None,
                 device: torch.device | str = "cpu", k_start: int = 0,
                 k_stop: int | None = None) -> torch.Tensor:
    """Boolean [Tq, k_stop-k_start] mask, True where query i may see key j (see module doc)."""
    k_stop = Tk if k_stop is None else k_stop
    pos_q = torch.arange(Tq, device=device)[:, None] + (Tk - Tq)  # [Tq,1] absolute positions
    pos_k = torch.arange(k_start, k_stop, device=device)[None, :]  # [1,C]
    if not causal:
        return torch.ones(Tq, k_stop - k_start, dtype=torch.bool, device=device)
    m = pos_k <= pos_q
    if window is not None:
        m &= pos_k > pos_q - window
    return m


def _up(t: torch.Tensor) -> torch.Tensor:
    """fp32 math for half inputs; fp64 inputs stay fp64 (for tight reference checks)."""
    return t.to(torch.promote_types(t.dtype, torch.float32))


def _expand_kv(k: torch.Tensor, H: int) -> torch.Tensor:
    """[B,Tk,Hkv,D] -> [B,Tk,H,D] by repeating each kv head for its H//Hkv query heads."""
    return k.repeat_interleave(H // k.shape[2], dim=2)


def attention_lse_ref(q, k, v, *, causal=True, window=None, scale=None):
    """The definition; returns (o [B,Tq,H,D] in q.dtype, lse [B,H,Tq] fp32)."""
    B, Tq, H, D = q.shape
    Tk = k.shape[1]
    scale = D ** -0.5 if scale is None else scale
    qf = _up(q)
    kf, vf = _expand_kv(_up(k), H), _expand_kv(_up(v), H)  # [B,Tk,H,D]
    s = torch.einsum("bihd,bjhd->bhij", qf, kf) * scale  # [B,H,Tq,Tk]
    mask = visible_mask(Tq, Tk, causal, window, q.device)
    s = s.masked_fill(~mask, float("-inf"))
    lse = torch.logsumexp(s, dim=-1)  # [B,H,Tq]
    p = torch.exp(s - lse[..., None])  # [B,H,Tq,Tk]
    o = torch.einsum("bhij,bjhd->bihd", p, vf)  # [B,Tq,H,D]
    return o.to(q.dtype), lse


def attention_ref(q, k, v, *, causal=True, window=None, scale=None):
    """Naive masked softmax attention (the definition). Shapes: see module docstring."""
    return attention_lse_ref(q, k, v, causal=causal, window=window, scale=scale)[0]


def attention_chunked_lse_ref(q, k, v, *, causal=True, window=None, scale=None,
                              chunk_size: int = 64):
    """Online softmax over key blocks of `chunk_size`; returns (o, lse) like
    `attention_lse_ref`. Running max m, normaliser l and accumulator acc per query:
        m' = max(m, rowmax(s_blk)); acc = acc*e^(m-m') + e^(s_blk-m') v_blk;
        l = l*e^(m-m') + rowsum(e^(s_blk-m'))
    and finally o = acc / l, lse = m + log l."""
    B, Tq, H, D = q.shape
    Tk = k.shape[1]
    scale = D ** -0.5 if scale is None else scale
    qf = _up(q).transpose(1, 2)  # [B,H,Tq,D]
    kf = _expand_kv(_up(k), H).transpose(1, 2)  # [B,H,Tk,D]
    vf = _expand_kv(_up(v), H).transpose(1, 2)  # [B,H,Tk,D]
    m = torch.full((B, H, Tq), float("-inf"), device=q.device, dtype=qf.dtype)
    l = torch.zeros(B, H, Tq, device=q.device, dtype=qf.dtype)
    acc = torch.zeros(B, H, Tq, D, device=q.device, dtype=qf.dtype)
    offset = Tk - Tq  # absolute position of query 0
    for start in range(0, Tk, chunk_size):
        stop = min(start + chunk_size, Tk)
        # skip blocks no query can see: after the last query (causal) or before the
        # first query's window
        if causal and start > offset + Tq - 1:
            break
        if causal and window is not None and stop - 1 <= offset - window:
            continue
        mask = visible_mask(Tq, Tk, causal, window, q.device, start, stop)  # [Tq,C]
        s = torch.einsum("bhid,bhjd->bhij", qf, kf[:, :, start:stop]) * scale
        s = s.masked_fill(~mask, float("-inf"))  # [B,H,Tq,C]
        m_new = torch.maximum(m, s.amax(-1))
        # rows that have seen nothing yet keep m = -inf; use 0 there to avoid inf-inf
        m_safe = torch.where(torch.isinf(m_new), torch.zeros_like(m_new), m_new)
        alpha = torch.exp(m - m_safe)  # [B,H,Tq]
        p = torch.exp(s - m_safe[..., None])  # [B,H,Tq,C]
        acc = acc * alpha[..., None] + p @ vf[:, :, start:stop]
        l = l * alpha + p.sum(-1)
        m = m_new
    o = (acc / l[..., None]).transpose(1, 2)  # [B,Tq,H,D]
    lse = m + torch.log(l)
    return o.to(q.dtype), lse


def attention_chunked_ref(q, k, v, *, causal=True, window=None, scale=None):
    """Chunked online-softmax attention; same signature and result as `attention_ref`."""
    return attention_chunked_lse_ref(q, k, v, causal=causal, window=window, scale=scale)[0]
