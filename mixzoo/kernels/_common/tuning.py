"""Autotune helpers: configs are a list plus a filter; under TRITON_INTERPRET=1 only
one config is kept, because autotuning several configs fails in the interpreter."""
from __future__ import annotations

import os
from typing import Callable, Sequence


def is_interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET") == "1"


def pick_configs(configs: Sequence, keep: Callable[[object], bool] = lambda c: True) -> list:
    """Filter `configs` with `keep`; keep only the first survivor when interpreting."""
    out = [c for c in configs if keep(c)]
    if not out:
        raise ValueError("pick_configs: the filter removed every autotune config")
    return out[:1] if is_interpreting() else out
