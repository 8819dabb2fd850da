"""Small helpers shared by the built-in mixers (head split, state checks, conv init)."""
from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn


def head_dims(d_model: int, num_heads: int, expand_k: float, expand_v: float,
              who: str) -> tuple[int, int]:
    """(K, V) per head for key width d_model*expand_k and value width d_model*expand_v.

    Raises ValueError naming the fields when the widths do not split evenly into heads.
    """
    key_dim, value_dim = d_model * expand_k, d_model * expand_v
    for name, width in (("expand_k", key_dim), ("expand_v", value_dim)):
        if width != int(width) or int(width) % num_heads or int(width) < num_heads:
            raise ValueError(f"{who}: d_model={d_model} * {name} = {width} must be a positive "
                             f"multiple of num_heads={num_heads}")
    return int(key_dim) // num_heads, int(value_dim) // num_heads


def check_state(state: Any, keys: tuple[str, ...], who: str) -> None:
    """ValueError unless `state` is a dict with exactly `keys` (the layout init_state returns);
    the kernels then check the tensors' shapes."""
    if not isinstance(state, dict) or set(state) != set(keys):
        got = sorted(state) if isinstance(state, dict) else type(state).__name__
        raise ValueError(f"{who}: state must be the dict from init_state()/forward() with keys "
                         f"{sorted(keys)}, got {got}")


def conv_weight(channels: int, width: int) -> nn.Parameter:
    """A depthwise conv weight [C,W] initialised like nn.Conv1d (uniform, bound 1/sqrt(W))."""
    bound = 1.0 / math.sqrt(width)
    return nn.Parameter(torch.empty(channels, width).uniform_(-bound, bound))
