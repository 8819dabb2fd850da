"""Input validation shared by the public kernel functions.

Every message names the argument, the value it got and what was expected."""
from __future__ import annotations

from typing import Sequence

import torch

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def cdiv(a: int, b: int) -> int:
    """Ceiling division."""
    return (a + b - 1) // b


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
