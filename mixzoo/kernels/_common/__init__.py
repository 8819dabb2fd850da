"""Shared plumbing for every kernel package: backend choice, input checks, cdiv,
autotune helpers, the custom ops' eager fast path and the `assert_close` used by the tests."""
from .backend import BACKENDS, resolve_backend, triton_available, triton_unavailable_error
from .eager import EagerOp
from .fastlaunch import launch
from .checks import (cdiv, check_dtype_float, check_rank, check_same_device, check_shape,
                     next_power_of_2)
from .numerics import assert_close, rel_rms
from .tuning import is_interpreting, pick_configs

__all__ = [
    "BACKENDS", "resolve_backend", "triton_available", "triton_unavailable_error",
    "check_dtype_float", "check_rank", "check_same_device", "check_shape", "cdiv",
    "next_power_of_2", "launch",
    "assert_close", "rel_rms", "is_interpreting", "pick_configs", "EagerOp",
]
