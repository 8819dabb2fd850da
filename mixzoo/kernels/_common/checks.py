"""Input validation shared by the public kernel functions.

Every message names the argument, the value it got and what was expected."""
from __future__ import annotations

from typing import Sequence

import torch

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def cdiv(a: int, b: int) -> int:
    """Ceiling division. Launchers use this, not `triton.cdiv`: in recent Triton that is a
    ConstexprFunction whose host-side call costs microseconds (a cProfile of the conv
    fwd+bwd launcher showed triton.cdiv calls at ~45% of its Python time)."""
    return (a + b - 1) // b


def next_power_of_2(n: int) -> int:
    """Smallest power of two >= n (1 for n <= 1); the host-side `triton.next_power_of_2`."""
    return 1 << (n - 1).bit_length() if n > 1 else 1


def check_rank(name: str, t: torch.Tensor, rank: int, layout: str) -> None:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor {layout}, got {type(t).__name__}")
    if t.dim() != rank:
        raise ValueError(f"{name}: expected shape {layout} ({rank} dims), got {tuple(t.shape)}")


def check_shape(name: str, t: torch.Tensor, expected: Sequence[int | None], layout: str) -> None:
    """Check `t.shape` against `expected` (None = any size) and explain with `layout`."""
    check_rank(name, t, len(expected), layout)
    for got, want in zip(t.shape, expected):
        if want is not None and got != want:
            want_s = "[" + ",".join("*" if w is None else str(w) for w in expected) + "]"
            raise ValueError(
                f"{name}: expected shape {layout} = {want_s}, got {list(t.shape)}")


def check_dtype_float(name: str, t: torch.Tensor) -> None:
    if t.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name}: expected a floating dtype {FLOAT_DTYPES}, got {t.dtype}")


def check_same_device(**tensors: torch.Tensor | None) -> None:
    devs = {k: v.device for k, v in tensors.items() if v is not None}
    if len(set(devs.values())) > 1:
        raise ValueError(f"inputs are on different devices: {devs}")
