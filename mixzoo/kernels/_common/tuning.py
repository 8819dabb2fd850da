"""Autotune helpers: configs are a list plus a filter. Only the first surviving config is
kept under TRITON_INTERPRET=1 (autotuning several configs fails in the interpreter) and
under MIXZOO_SINGLE_CONFIG=1 (GPU correctness runs, where compiling every candidate for
every shape would dominate). Both are read when the kernel module is imported."""
from __future__ import annotations

import os
from typing import Callable, Sequence


def is_interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET") == "1"


def single_config() -> bool:
    return is_interpreting() or os.environ.get("MIXZOO_SINGLE_CONFIG") == "1"


def pick_configs(configs: Sequence, keep: Callable[[object], bool] = lambda c: True) -> list:
    """Filter `configs` with `keep`; keep only the first survivor when `single_config()`."""
    out = [c for c in configs if keep(c)]
    if not out:
        raise ValueError("pick_configs: the filter removed every autotune config")
    return out[:1] if single_config() else out
