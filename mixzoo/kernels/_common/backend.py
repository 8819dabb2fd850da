"""Backend choice shared by every kernel package.

`backend` is one of "auto" | "triton" | "reference":
- "auto": Triton when the tensors live on CUDA (or when TRITON_INTERPRET=1 and the
  algorithm has Triton kernels), the plain-PyTorch reference otherwise.
- "triton" / "reference": forced.
The environment variable MIXZOO_BACKEND, when set, overrides every call (debugging aid).
"""
from __future__ import annotations

import importlib.util
import os

import torch

BACKENDS = ("auto", "triton", "reference")


# Computed once at import: torch.compile(fullgraph=True) cannot trace find_spec.
_TRITON_AVAILABLE = importlib.util.find_spec("triton") is not None


def triton_available() -> bool:
    """True when the `triton` package can be imported at all."""
    return _TRITON_AVAILABLE


def triton_unavailable_error(algo: str, why: str) -> NotImplementedError:
    return NotImplementedError(
        f"{algo}: backend='triton' is not available here ({why}). "
        f"Use backend='reference' or backend='auto'."
    )


def resolve_backend(backend: str, *tensors: torch.Tensor, has_triton: bool = True,
                    algo: str = "kernel") -> str:
    """Return "triton" or "reference" for a call.

    backend: the caller's request ("auto" | "triton" | "reference").
    tensors: the call's inputs; "auto" picks Triton only when they are on CUDA.
    has_triton: whether this algorithm ships Triton kernels.
    """
    env = os.environ.get("MIXZOO_BACKEND")
    if env:
        if env not in BACKENDS:
            raise ValueError(f"MIXZOO_BACKEND={env!r}: expected one of {BACKENDS}")
        backend = env
    if backend not in BACKENDS:
        raise ValueError(f"{algo}: backend={backend!r}, expected one of {BACKENDS}")
    if backend == "reference":
        return "reference"
    on_cuda = all(t.is_cuda for t in tensors if t is not None)
    interp = os.environ.get("TRITON_INTERPRET") == "1"
    if backend == "auto":
        return "triton" if (has_triton and triton_available() and on_cuda) else "reference"
    # backend == "triton"
    if not has_triton:
        raise triton_unavailable_error(algo, "no Triton kernels for this algorithm yet")
    if not triton_available():
        raise triton_unavailable_error(algo, "the triton package is not installed")
    if not on_cuda and not interp:
        raise triton_unavailable_error(
            algo, "inputs are on the CPU; set TRITON_INTERPRET=1 before importing mixzoo "
            "to run the kernels in Triton's interpreter")
    return "triton"
