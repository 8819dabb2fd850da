"""Triton launches with less host work: `launch(kernel, grid, *args, **kw)` is
`kernel[grid](*args, **kw)`, minus Triton's per-launch bookkeeping once a signature is known.

Why: Triton's own launch path binds every argument, computes its specialization and hashes a
cache key (`JITFunction.run`), and for an autotuned kernel also builds the autotune key and
looks the config up (`Autotuner.run`). `benchmarks/launch_overhead.py` on the H100 machine's
host (session 5 call 22): 16.5 us per plain launch and 23.1 us per autotuned one through
Triton, 12.3 and 13.1 us through `launch`. A DeltaNet ViT-S training step at 224 px makes
108 Triton launches and its host side is about as long as its GPU side, so that time is
step time (the step: 47.5 ms with `launch`, 51.3 ms with MIXZOO_FAST_LAUNCH=0, call 22).

How: the first call with a given *signature* goes through Triton unchanged (compiling and
autotuning as usual). We keep the compiled kernel Triton chose, and later calls with the same
signature call its launcher directly. The signature is:
- the kernel (and an autotuner's list of candidates), the current CUDA device (Triton loads
  a compiled kernel per device), and the keyword arguments' values (constexprs and launch
  options);
- per positional argument: a tensor's dtype and whether its data pointer is 16-byte aligned,
  an int's value, a float's type, a bool / str / None as is.
That is a superset of what Triton specializes a compiled kernel on (constexpr values, dtypes,
pointer alignment, integer divisibility by 16 and == 1) and of what our autotune keys read
(constexprs and ints), so the cached kernel is the one Triton itself would launch. The
launcher receives every parameter's value in order (Triton >= 3.3 passes constexprs too):
the positional arguments, then the keywords and defaults fixed at the first call.

Falls back to `kernel[grid](...)` (always correct) when: TRITON_INTERPRET=1, MIXZOO_FAST_LAUNCH=0,
Triton older than 3.4 (no `triton.knobs`), a launch hook is set (profilers such as proton),
an argument of another type, or the chosen autotune config has a pre_hook (which Triton runs
on every launch; an autotuner's reset_to_zero / restore_value act only while benchmarking).
"""
from __future__ import annotations

import inspect
import os

import torch

from .tuning import is_interpreting

_CACHE: dict = {}            # signature -> (launcher, function, packed_metadata, tail, meta)
_SLOW: set = set()           # id(kernel) of kernels that always take Triton's path
_MAX_ENTRIES = 4096          # a bound on the cache (cleared when exceeded)
_STATE: dict = {}            # "ok": fast path possible in this process; "driver", "knobs"


def _fast_ok() -> bool:
    """Whether the fast path may run: MIXZOO_FAST_LAUNCH (read at every call, so one process
    can time both paths), and once per process: not interpreting, Triton >= 3.4, CUDA."""
    if os.environ.get("MIXZOO_FAST_LAUNCH", "1") == "0":
        return False
    ok = _STATE.get("ok")
    if ok is None:
        ok = False
        if not is_interpreting():
            try:
                import triton
                from triton.runtime import driver
                ok = hasattr(triton, "knobs") and torch.cuda.is_available()
                _STATE["driver"], _STATE["knobs"] = driver, getattr(triton, "knobs", None)
            except ImportError:
                ok = False
        _STATE["ok"] = ok
    return ok


def _hook_set(hook) -> bool:
    """A launch hook is in use: set, and (Triton's HookChain) with callbacks registered."""
    return hook is not None and bool(getattr(hook, "calls", True))


def _arg_key(args: tuple):
    """Per positional argument, what the compiled kernel depends on (module docstring);
    None if an argument has a type we do not know how to key."""
    out = []
    for a in args:
        if isinstance(a, torch.Tensor):
            out.append((a.dtype, a.data_ptr() & 15 == 0))
        elif a is None or isinstance(a, (int, str)):     # bool is an int
            out.append((type(a), a))
        elif isinstance(a, float):
            out.append(float)
        else:
            return None
    return tuple(out)


def _unwrap(kernel):
    """The JITFunction under Triton's own Autotuner / Heuristics wrappers, and whether it is
    autotuned; (None, False) for anything else (e.g. a test's proxy object)."""
    from triton.runtime.autotuner import Autotuner, Heuristics
    from triton.runtime.jit import JITFunction
    fn, tuned = kernel, False
    while not isinstance(fn, JITFunction):
        if isinstance(fn, Autotuner):
            tuned = True
        elif not isinstance(fn, Heuristics):
            return None, False
        fn = fn.fn
    return fn, tuned


def _first_launch(kernel, grid, args: tuple, kw: dict):
    """Launch through Triton; return the cache entry for later launches (or None)."""
    jit, tuned = _unwrap(kernel)
    if jit is None:
        _SLOW.add(id(kernel))
        kernel[grid](*args, **kw)
        return None
    if tuned:
        kernel[grid](*args, **kw)                       # autotunes if needed, then launches
        cfg = kernel.best_config
        if cfg.pre_hook is not None:                    # it must run on every launch
            _SLOW.add(id(kernel))
            return None
        full_kw = {**kw, **cfg.all_kwargs()}
        ck = jit.run(*args, grid=grid, warmup=True, **full_kw)     # the cached compile
    else:
        full_kw = kw
        ck = jit.run(*args, grid=grid, warmup=False, **full_kw)    # compiles, launches
    params = list(inspect.signature(jit.fn).parameters.values())
    meta = dict(full_kw)                                # what a callable grid reads
    tail = []
    for p in params[len(args):]:                        # keywords, then defaults, in order
        if p.name in full_kw:
            tail.append(full_kw[p.name])
        elif p.default is not inspect.Parameter.empty:
            tail.append(p.default)
            meta[p.name] = p.default
        else:                                           # a missing argument: Triton raised
            _SLOW.add(id(kernel))
            return None
    run = ck.run                                        # loads the module (sets .function)
    return run, ck.function, ck.packed_metadata, tuple(tail), meta


def launch(kernel, grid: tuple, *args, **kw) -> None:
    """`kernel[grid](*args, **kw)` (module docstring). grid: a tuple of 1-3 ints, or a
    callable of the kernel's keyword / constexpr values (e.g. an autotuned block size)."""
    if not _fast_ok() or id(kernel) in _SLOW:
        kernel[grid](*args, **kw)
        return
    rt = _STATE["knobs"].runtime
    if _hook_set(rt.launch_enter_hook) or _hook_set(rt.launch_exit_hook):
        kernel[grid](*args, **kw)
        return
    ak = _arg_key(args)
    if ak is None:
        kernel[grid](*args, **kw)
        return
    drv = _STATE["driver"].active
    device = drv.get_current_device()   # a compiled kernel is loaded per device, as Triton's
    # id of an autotuner's config list: code that swaps the candidates (tests, config
    # checks) gets Triton's path again
    key = (id(kernel), device, id(getattr(kernel, "configs", None)), ak, tuple(kw.items()))
    entry = _CACHE.get(key)
    if entry is None:
        entry = _first_launch(kernel, grid, args, kw)
        if entry is not None:
            if len(_CACHE) >= _MAX_ENTRIES:
                _CACHE.clear()
            _CACHE[key] = entry
        return
    run, function, packed, tail, meta = entry
    if callable(grid):
        grid = grid(meta)
    stream = drv.get_current_stream(device)
    g1 = grid[1] if len(grid) > 1 else 1
    g2 = grid[2] if len(grid) > 2 else 1
    run(grid[0], g1, g2, stream, function, packed, None, None, None, *args, *tail)
