"""The streaming conv1d backward as Triton COMPILES it (sm_90 target, built on this host
without a GPU), not as the interpreter runs it.

The dz windows fa..fg / ra..rg are shifted once per row (fc = fb; fb = fa; fa = dz). Triton's
frontend makes a name loop-carried only if the loop body rebinds it to a different IR value;
when every window started from one shared `zero`, the first shifts looked like no-ops, so
fb..fg / rb..rg were not carried and stayed 0 on the GPU (dx lost taps 2..W-1: rel-RMS error
0.71 at B8 T4096 D4096 W4 on the H100) while the interpreter, running the Python literally,
was exact. This test reads the compiled loop's iter_args.
"""
import os
import re
import subprocess
import sys
import textwrap

import pytest

_SCRIPT = textwrap.dedent("""
    import sys
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource
    import mixzoo.kernels.conv1d.triton_conv as C
    import mixzoo.kernels.conv1d.triton_stream as S
    W, BIDIR = int(sys.argv[1]), sys.argv[2] == "1"
    fn = {"v1": C._conv_bwd_kernel, "v2": S._conv_bwd_stream_kernel,
          "v2fwd": S._conv_fwd_stream_kernel}[sys.argv[3]].fn
    P, F, I = "*bf16", "*fp32", "i32"
    types = dict(x_ptr=P, w_ptr=P, b_ptr=P, h0_ptr=P, dy0_ptr=P, dy1_ptr=P, dy2_ptr=P,
                 dx_ptr=P, dwp_ptr=F, dbp_ptr=F, sxb=I, sxt=I, B=I, T=I, D=I, S1=I, S2=I,
                 n_chunks=I, y0_ptr=P, y1_ptr=P, y2_ptr=P)
    c = dict(W=W, LEFT=W - 1, HAS_BIAS=True, HAS_H0=False, ACT=2, BIDIR=BIDIR,
             NG=3 if BIDIR else 1, CHUNK=32, BLOCK_D=128, FIRST=0, LAST=W - 1 if BIDIR else 0,
             DEPTH=int(sys.argv[4]))
    sig = {a: ("constexpr" if a in c else types[a]) for a in fn.arg_names}
    ck = triton.compile(ASTSource(fn=fn, signature=sig, constexprs={
        (fn.arg_names.index(n),): v for n, v in c.items() if n in fn.arg_names}),
        target=GPUTarget("cuda", 90, 32), options={"num_warps": 1})
    print(ck.asm["ttir"])
""")


def _compiled_loop_args(W: int, bidir: bool, variant: str, depth: int) -> str:
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    res = subprocess.run([sys.executable, "-c", _SCRIPT, str(W), "1" if bidir else "0", variant,
                          str(depth)],
                         capture_output=True, text=True, env=env, timeout=300)
    if res.returncode != 0:
        if "ptxas" in res.stderr or "No module named 'triton.backends.nvidia'" in res.stderr:
            pytest.skip(f"no sm_90 toolchain here: {res.stderr[-300:]}")
        raise AssertionError(res.stderr[-3000:])
    loops = [ln for ln in res.stdout.splitlines() if "scf.for" in ln]
    assert len(loops) == 1, loops
    return loops[0].split("iter_args(")[1].split(")")[0]


@pytest.mark.parametrize("W,bidir,variant,depth", [
    (4, False, "v1", 0), (4, True, "v1", 0), (3, True, "v1", 0),
    (4, False, "v2", 1), (3, True, "v2", 2), (4, True, "v2fwd", 2)])
def test_bwd_dz_windows_are_loop_carried(W, bidir, variant, depth):
    """(v2fwd: the streaming forward's x window; depth: v2's DEPTH, unused by v1.)"""
    args = _compiled_loop_args(W, bidir, variant, depth)
    carried = set(re.findall(r"%([a-z]+\d?)(?:_\d+)?\s*=", args))
    letters = "abcdefg"[:W - 1]
    need = {f"x{c}" for c in letters}
    if variant != "v2fwd":
        need |= {f"f{c}" for c in letters}
    if bidir and variant != "v2fwd":
        need |= {f"r{c}" for c in letters}
    assert need <= carried, f"not loop-carried: {sorted(need - carried)} (iter_args: {args})"
