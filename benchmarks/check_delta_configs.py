"""Correctness of each autotune candidate of the delta-rule fused backward on the GPU.

    python benchmarks/check_delta_configs.py [B,T,H,D] [--l2] [--fp32] [--no-prep]

The autotuner picks configs by speed only, so a candidate that computes wrong results (or
faults) on some GPU/Triton pair would be picked silently. This runs the chunk kernels with
each candidate forced, one child process per candidate (a fault loses only that one), and
prints the relative RMS error of o, the final state and every gradient against the fp32
chunkwise reference on the same inputs (initial state and final-state gradient included).
Unless --no-prep, it first checks the prep kernel (not autotuned) at each warp count the
launcher may pick (PREP_WARPS), both inversions: Tm and W against fp64 on a small shape.
"""
from __future__ import annotations

import subprocess
import sys

import torch
import torch.nn.functional as F

DEV = "cuda" if torch.cuda.is_available() else "cpu"     # cpu: under TRITON_INTERPRET=1 only
# the interpreter's bf16 dot is wrong; --fp32 checks the fp32 kernels (tf32x3 dots) on the GPU
LOW = torch.bfloat16 if DEV == "cuda" and "--fp32" not in sys.argv else torch.float32
FLAGS = [f for f in ("--l2", "--fp32") if f in sys.argv]       # passed on to the children


def run_one(idx: int, B: int, T: int, H: int, D: int, l2: bool) -> None:
    from mixzoo.kernels._common import rel_rms
    from mixzoo.kernels.delta_rule import chunk, delta_rule, delta_rule_chunk_ref
    kern = chunk._fused_bwd_kernel
    cfg = kern.configs[idx]
    kern.configs = [cfg]
    kern.cache = {}
    g = torch.Generator(device=DEV).manual_seed(0)
    q = torch.randn(B, T, H, D, device=DEV, generator=g)
    k = torch.randn(B, T, H, D, device=DEV, generator=g)
    k = k if l2 else F.normalize(k, dim=-1)
    v = torch.randn(B, T, H, D, device=DEV, generator=g)
    beta = torch.rand(B, T, H, device=DEV, generator=g)
    h0 = 0.1 * torch.randn(B, H, D, D, device=DEV, generator=g)
    do, dht = torch.randn_like(v), torch.randn_like(h0)

    def grads(fn, dtype):
        xs = [t.to(dtype).detach().requires_grad_(True) for t in (q, k, v, beta)]
        h = h0.clone().requires_grad_(True)
        o, ht = fn(*xs, initial_state=h, output_final_state=True, use_qk_l2norm=l2)
        ((o.float() * do).sum() + (ht.float() * dht).sum()).backward()
        return [o, ht] + [x.grad for x in xs] + [h.grad]
    ref = grads(delta_rule_chunk_ref, torch.float32)
    out = grads(lambda *a, **kw: delta_rule(*a, **kw, backend="triton"), LOW)
    torch.cuda.synchronize() if DEV == "cuda" else None
    if idx == 0:     # W rebuilt by the backward's _w_kernel vs the forward's prep W
        kb, vb, bb = (t.to(LOW) for t in (k, v, beta))
        w, _, tinv = chunk.prep(kb, vb, bb, l2, True)
        w2 = torch.empty_like(w)
        chunk._w_kernel[(tinv.shape[2], B * H)](kb, bb, tinv, w2, T, 0, H=H, K=D, BK=D,
                                                USE_L2=l2, BMODE=0, num_warps=4,
                                                PREC="tf32" if DEV == "cuda" else "ieee")
        torch.cuda.synchronize() if DEV == "cuda" else None
        print(f"w_kernel vs prep W: {rel_rms(w.float(), w2.float()):.1e}", flush=True)
    names = ["o", "ht", "dq", "dk", "dv", "dbeta", "dh0"]
    errs = " ".join(f"{n}={rel_rms(r, x):.1e}" for n, r, x in zip(names, ref, out))
    print(f"config {idx} {cfg}: {errs}", flush=True)


PREP_WARPS = (2, 4)      # the prep kernel is not autotuned: params.prep_warps picks 2 or 4


def run_prep(warps: int, stacked: bool, B: int, T: int, H: int, D: int) -> None:
    """The prep kernel launched directly at `warps` warps: Tm and W against fp64."""
    from mixzoo.kernels._common import rel_rms
    from mixzoo.kernels.delta_rule import chunk
    kern = chunk._prep_fwd_kernel
    g = torch.Generator(device=DEV).manual_seed(0)
    k = F.normalize(torch.randn(B, T, H, D, device=DEV, generator=g), dim=-1).to(LOW)
    v = torch.randn(B, T, H, D, device=DEV, generator=g).to(LOW)
    beta = torch.rand(B, T, H, device=DEV, generator=g).to(LOW)
    NT = (T + 63) // 64
    w, u = torch.empty_like(k), torch.empty_like(v)
    tinv = torch.full((B, H, NT, 64, 64), float("nan"), device=DEV)
    kern[(NT, B * H)](k, v, beta, w, u, tinv, T, 0, H=H, K=D, V=D, BK=D, BV=D, USE_L2=False,
                      BMODE=0, SAVE_T=True, PREC="tf32" if DEV == "cuda" else "ieee",
                      STACKED=stacked, num_warps=warps)
    worst_t = worst_w = 0.0
    kd, bd = k.double(), beta.double()
    for b in range(B):
        for h in range(H):
            for c in range(NT):
                kc, bc = kd[b, c * 64:(c + 1) * 64, h], bd[b, c * 64:(c + 1) * 64, h]
                n = kc.shape[0]
                ref = torch.linalg.inv(torch.eye(n, dtype=torch.float64, device=DEV)
                                       + torch.tril(bc[:, None] * (kc @ kc.T), -1))
                worst_t = max(worst_t, rel_rms(ref, tinv[b, h, c, :n, :n]))
                worst_w = max(worst_w, rel_rms(ref @ (bc[:, None] * kc), w[b, c * 64:c * 64 + n, h]))
    print(f"config prep w{warps} stacked={stacked}: worst Tm {worst_t:.1e}, "
          f"worst W {worst_w:.1e}", flush=True)


def main() -> None:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    l2 = "--l2" in sys.argv
    if len(args) >= 2 and args[0] == "child":
        idx, shape = int(args[1]), [int(x) for x in args[2].split(",")]
        return run_one(idx, *shape, l2)
    if len(args) >= 2 and args[0] == "prep":
        warps, stacked = int(args[1]), args[2] == "1"
        return run_prep(warps, stacked, *[int(x) for x in args[3].split(",")])
    shape = args[0] if args else "2,2048,8,128"
    from mixzoo.kernels.delta_rule import chunk
    small = "1,200,4," + shape.split(",")[3]
    for warps in () if "--no-prep" in sys.argv else PREP_WARPS:
        for st in ("0", "1"):
            cmd = [sys.executable, __file__, "prep", str(warps), st, small]
            try:
                p = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
                lines = [ln for ln in (p.stdout + p.stderr).splitlines()
                         if ln.startswith("config") or "Error" in ln]
                print("\n".join(lines) if lines else f"prep w{warps} stacked={st}: exit "
                      f"{p.returncode}", flush=True)
            except subprocess.TimeoutExpired:
                print(f"prep w{warps} stacked={st}: timed out", flush=True)
    for idx in range(len(chunk._fused_bwd_kernel.configs)):
        cmd = [sys.executable, __file__, "child", str(idx), shape] + FLAGS
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
            lines = [ln for ln in (p.stdout + p.stderr).splitlines()
                     if ln.startswith(("config", "w_kernel")) or "Error" in ln or "error" in ln]
            print("\n".join(lines) if lines else f"config {idx}: exit {p.returncode}", flush=True)
        except subprocess.TimeoutExpired:
            print(f"config {idx}: timed out", flush=True)


if __name__ == "__main__":
    main()
