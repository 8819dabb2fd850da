"""Softmax attention (global, bidirectional and causal sliding-window), one kernel family.

    attention(q, k, v, *, causal=True, window=None, scale=None, backend="auto") -> o

q `[B,Tq,H,D]`, k/v `[B,Tk,Hkv,D]`, Hkv divides H (GQA: query head h uses kv head
h // (H // Hkv)). `window` = number of most recent keys each query sees, itself included
(None = unlimited; needs causal=True). When Tq < Tk the queries are the LAST Tq positions
(query i sits at Tk - Tq + i): decoding against a KV cache. Returns o `[B,Tq,H,D]` in q's
dtype. backend: "auto" (Triton on CUDA, reference elsewhere) | "triton" | "reference" |
"sdpa" (torch.nn.functional.scaled_dot_product_attention, explicit mask for windows).
The math is in README.md; `reference.py` is the spec.
"""
from __future__ import annotations

import os

import torch

from .._common import check_dtype_float, check_rank, check_same_device, resolve_backend
from .reference import attention_chunked_ref, attention_ref, visible_mask

from .._common import triton_available

_HAS_TRITON = triton_available()
if _HAS_TRITON:
    from .ops import attention_triton, attention_triton_lse

__all__ = ["attention", "attention_ref", "attention_chunked_ref", "attention_sdpa",
           "check_attention_inputs"]


def check_attention_inputs(q, k, v, causal: bool, window: int | None) -> None:
    """Raise ValueError/TypeError naming the argument when the inputs break the contract."""
    check_rank("q", q, 4, "[B,Tq,H,D]")
    check_rank("k", k, 4, "[B,Tk,Hkv,D]")
    check_rank("v", v, 4, "[B,Tk,Hkv,D]")
    B, Tq, H, D = q.shape
    if k.shape != v.shape:
        raise ValueError(f"k and v: expected the same shape [B,Tk,Hkv,D], got "
                         f"{list(k.shape)} and {list(v.shape)}")
    if k.shape[0] != B or k.shape[3] != D:
        raise ValueError(f"k: expected shape [B,Tk,Hkv,D] = [{B},*,*,{D}] to match q "
                         f"{list(q.shape)}, got {list(k.shape)}")
    Hkv = k.shape[2]
    if Hkv == 0 or H % Hkv != 0:
        raise ValueError(f"k/v: the number of kv heads ({Hkv}) must divide the number of "
                         f"query heads ({H})")
    for name, t in (("q", q), ("k", k), ("v", v)):
        check_dtype_float(name, t)
    if not (q.dtype == k.dtype == v.dtype):
        raise TypeError(f"q, k, v: expected one dtype, got {q.dtype}, {k.dtype}, {v.dtype}")
    check_same_device(q=q, k=k, v=v)
    if window is not None:
        if not causal:
            raise ValueError("window: a sliding window needs causal=True "
                             "(got causal=False with window set)")
        if isinstance(window, bool) or not isinstance(window, int) or window < 1:
            raise ValueError(f"window: expected None or an int >= 1, got {window!r}")
    if causal and Tq > k.shape[1]:
        raise ValueError(f"q: causal attention needs Tq <= Tk (queries are aligned to the "
                         f"end of the keys), got Tq={Tq}, Tk={k.shape[1]}")


def attention_sdpa(q, k, v, *, causal=True, window=None, scale=None):
    """The same function through torch's scaled_dot_product_attention."""
    B, Tq, H, D = q.shape
    Tk, Hkv = k.shape[1], k.shape[2]
    qt, kt, vt = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # [B,H,T,D]
    if Hkv != H:  # expand GQA heads; portable across torch versions
        kt = kt.repeat_interleave(H // Hkv, dim=1)
        vt = vt.repeat_interleave(H // Hkv, dim=1)
    if causal and window is None and Tq == Tk:
        o = torch.nn.functional.scaled_dot_product_attention(qt, kt, vt, is_causal=True,
                                                             scale=scale)
    elif not causal:
        o = torch.nn.functional.scaled_dot_product_attention(qt, kt, vt, scale=scale)
    else:  # bottom-right causal alignment and/or a window: explicit boolean mask
        mask = visible_mask(Tq, Tk, causal, window, q.device)  # [Tq,Tk]
        o = torch.nn.functional.scaled_dot_product_attention(qt, kt, vt, attn_mask=mask,
                                                             scale=scale)
    return o.transpose(1, 2)  # [B,Tq,H,D]


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, causal: bool = True,
              window: int | None = None, scale: float | None = None,
              backend: str = "auto") -> torch.Tensor:
    """Softmax attention; see the module docstring for shapes and semantics."""
    check_attention_inputs(q, k, v, causal, window)
    if backend == "sdpa" and not os.environ.get("MIXZOO_BACKEND"):
        return attention_sdpa(q, k, v, causal=causal, window=window, scale=scale)
    which = resolve_backend("auto" if backend == "sdpa" else backend, q, k, v,
                            has_triton=_HAS_TRITON, algo="attention")
    if which == "triton":
        return attention_triton(q, k, v, causal=causal, window=window, scale=scale)
    return attention_chunked_ref(q, k, v, causal=causal, window=window, scale=scale)
