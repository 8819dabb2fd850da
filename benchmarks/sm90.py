"""Register and spill report of Triton kernels built for sm_90 (H100) on any host.

No GPU is needed: Triton's bundled ptxas builds the cubin and cuobjdump reads its resource
usage. Run with TRITON_INTERPRET unset. The host's Triton may differ from the GPU
machine's, so read the numbers as a guide (spills at one version usually mean spills at
the other).

    from sm90 import report
    report("delta fused_bwd", kernel, types={"q": "*bf16", "T": "i32", ...}, consts={...})
"""
from __future__ import annotations

import os
import subprocess
import tempfile


def report(name: str, kernel, types: dict, consts: dict, div16=None) -> int:
    """Build every autotune config of `kernel` (an @triton.autotune'd or plain @triton.jit
    function) with the given argument types ("*bf16", "*fp32", "i32", "fp32") and constexpr
    values; print one line per config. Returns the number of configs that failed to build.
    div16 (optional): names of integer arguments that are multiples of 16 at run time; when
    given, every pointer is also marked 16-byte aligned -- the specialization Triton's JIT
    applies at launch, without which loads and stores are not vectorized."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    cuobj = os.path.join(os.path.dirname(triton.__file__), "backends/nvidia/bin/cuobjdump")
    configs = getattr(kernel, "configs", None) or [triton.Config({}, num_warps=4, num_stages=1)]
    from triton.runtime.jit import JITFunction
    fn = kernel
    while not isinstance(fn, JITFunction):                  # Autotuner (or Heuristics) wrapper
        fn = fn.fn
    failures = 0
    for cfg in configs:
        c = {**consts, **cfg.kwargs}
        sig = {a: ("constexpr" if a in c else types[a]) for a in fn.arg_names}
        attrs = None
        if div16 is not None:
            attrs = {(i,): [["tt.divisibility", 16]] for i, a in enumerate(fn.arg_names)
                     if sig[a] != "constexpr" and (sig[a].startswith("*") or a in div16)}
        try:
            ck = triton.compile(
                ASTSource(fn=fn, signature=sig, constexprs={
                    (fn.arg_names.index(n),): x for n, x in c.items() if n in fn.arg_names},
                    attrs=attrs),
                target=GPUTarget("cuda", 90, 32),
                options={"num_warps": cfg.num_warps, "num_stages": cfg.num_stages})
            with tempfile.NamedTemporaryFile("wb", suffix=".cubin", delete=False) as fh:
                fh.write(ck.asm["cubin"])
            out = subprocess.run([cuobj, "-res-usage", fh.name], capture_output=True,
                                 text=True).stdout
            os.unlink(fh.name)
            res = " ".join(ln.strip().split(" SHARED")[0] for ln in out.splitlines() if "REG" in ln)
            print(f"{name:<14} {cfg.kwargs} w{cfg.num_warps} s{cfg.num_stages}: {res}", flush=True)
        except Exception as e:  # noqa: BLE001 - report every config, then count
            failures += 1
            print(f"{name:<14} {cfg.kwargs}: FAILED {type(e).__name__}: {str(e)[:300]}", flush=True)
    return failures
