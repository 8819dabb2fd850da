"""The delta rule (DeltaNet): public function with input checks and backend dispatch.

See README.md for the math. `reference.py` is the spec."""
from __future__ import annotations

import torch

from .._common import check_dtype_float, check_same_device, check_shape, resolve_backend
from .reference import delta_rule_chunk_ref, delta_rule_recurrent_ref

__all__ = ["delta_rule", "delta_rule_chunk_ref", "delta_rule_recurrent_ref", "delta_rule_triton"]

try:  # the Triton kernels need the triton package (Linux); the reference works everywhere
    from . import ops as _ops
    from . import params as _params
    _HAS_TRITON = True
except ImportError:  # pragma: no cover - depends on the platform
    _ops = _params = None
    _HAS_TRITON = False

MAX_HEAD_DIM = 256  # register tiles hold whole K rows and [K, BV] state blocks


def _validate(q, k, v, beta, initial_state):
    check_shape("q", q, (None, None, None, None), "[B,T,H,K]")
    B, T, H, K = q.shape
    check_shape("k", k, (B, T, H, K), "[B,T,H,K]")
    check_shape("v", v, (B, T, H, None), "[B,T,H,V]")
    V = v.shape[-1]
    check_shape("beta", beta, (B, T, H), "[B,T,H]")
    if initial_state is not None:
        check_shape("initial_state", initial_state, (B, H, K, V), "[B,H,K,V]")
    for name, t in (("q", q), ("k", k), ("v", v), ("beta", beta), ("initial_state", initial_state)):
        if t is not None:
            check_dtype_float(name, t)
    if initial_state is not None and initial_state.dtype != torch.float32:
        raise TypeError(f"initial_state: expected float32 [B,H,K,V], got {initial_state.dtype}")
    check_same_device(q=q, k=k, v=v, beta=beta, initial_state=initial_state)


def delta_rule(q, k, v, beta, *, scale=None, initial_state=None, output_final_state=False,
               use_qk_l2norm=False, backend="auto"):
    """Delta-rule linear attention.

    q, k: [B,T,H,K]; v: [B,T,H,V]; beta: [B,T,H]; initial_state: [B,H,K,V] fp32 or None.
    Recurrence: S_t = S_{t-1} + k_t beta_t (v_t - S_{t-1}^T k_t)^T, o_t = S_t^T (scale q_t),
    scale=None -> 1/sqrt(K). use_qk_l2norm L2-normalises q and k over the head dim
    (eps 1e-6) inside the op, gradients included.
    Returns (o [B,T,H,V] in v's dtype, final state [B,H,K,V] fp32 or None).
    backend: "auto" (Triton on CUDA, reference elsewhere) | "triton" | "reference".
    """
    _validate(q, k, v, beta, initial_state)
    which = resolve_backend(backend, q, k, v, beta, initial_state,
                            has_triton=_HAS_TRITON, algo="delta_rule")
    if which == "reference" or q.shape[1] == 0 or v.dtype == torch.float64:
        # T == 0 has nothing to launch; tl.dot has no fp64: both go to the fp32-math reference
        return delta_rule_chunk_ref(q, k, v, beta, scale=scale, initial_state=initial_state,
                                    output_final_state=output_final_state,
                                    use_qk_l2norm=use_qk_l2norm)
    for name, d in (("K", q.shape[-1]), ("V", v.shape[-1])):
        if d > MAX_HEAD_DIM:
            raise ValueError(f"delta_rule: backend='triton' supports head dims up to "
                             f"{MAX_HEAD_DIM}, got {name}={d}; use backend='reference'")
    # T == 1 (decode) and, on CUDA, tiles too large for the chunk kernels (params.chunk_fits)
    # run the fused recurrent kernels
    fits = not q.is_cuda or _params.chunk_fits(v.dtype, q.shape[-1], v.shape[-1])
    algo = "recurrent" if q.shape[1] == 1 or not fits else "chunk"
    return delta_rule_triton(q, k, v, beta, scale=scale, initial_state=initial_state,
                             output_final_state=output_final_state, use_qk_l2norm=use_qk_l2norm,
                             algo=algo)


def delta_rule_triton(q, k, v, beta, *, scale=None, initial_state=None, output_final_state=False,
                      use_qk_l2norm=False, algo="chunk"):
    """The Triton path without validation (`delta_rule` validates first).
    algo: "chunk" (chunkwise WY/UT kernels) or "recurrent" (fused step kernel; T == 1 decode).
    Both are tested equal to the reference, so `delta_rule` picks "recurrent" only for T == 1."""
    if scale is None:
        scale = q.shape[-1] ** -0.5
    dt = v.dtype
    q, k = q.to(dt).contiguous(), k.to(dt).contiguous()
    v, beta = v.contiguous(), beta.contiguous()
    h0 = initial_state.contiguous() if initial_state is not None else None
    save = torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in (q, k, v, beta, h0))
    if algo == "recurrent":
        o, ht, _ = _ops.recurrent_fwd(q, k, v, beta, h0, float(scale), use_qk_l2norm, save)
    elif algo == "chunk":
        o, ht, _, _, _ = _ops.chunk_fwd(q, k, v, beta, h0, float(scale), output_final_state,
                                        use_qk_l2norm, save)
    else:
        raise ValueError(f"delta_rule_triton: algo={algo!r}, expected 'chunk' or 'recurrent'")
    return o, (ht if output_final_state else None)
