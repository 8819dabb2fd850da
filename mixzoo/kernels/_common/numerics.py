"""Numerical comparison used by every kernel test (and by the GPU check scripts)."""
from __future__ import annotations

import torch


def rel_rms(ref: torch.Tensor, out: torch.Tensor) -> float:
    """‖out − ref‖ / ‖ref‖ computed in float64 (0/0 counts as 0)."""
    ref64, out64 = ref.detach().double(), out.detach().double()
    num = (out64 - ref64).norm().item()
    den = ref64.norm().item()
    if den == 0.0:
        return num
    return num / den


def assert_close(ref: torch.Tensor, out: torch.Tensor, rtol_rms: float, name: str = "") -> float:
    """Assert relative RMS error ≤ rtol_rms and no NaN/Inf in `out`. Returns the error.

    Guide thresholds: fp32 kernels 1e-5, tf32 1e-3, bf16 1e-2. A failure is never a warning.
    """
    label = f"{name}: " if name else ""
    if ref.shape != out.shape:
        raise AssertionError(f"{label}shape {tuple(out.shape)} != reference {tuple(ref.shape)}")
    if not torch.isfinite(out).all():
        raise AssertionError(f"{label}output has NaN/Inf")
    err = rel_rms(ref, out)
    if not err <= rtol_rms:
        raise AssertionError(f"{label}relative RMS error {err:.3e} > {rtol_rms:.1e}")
    return err
