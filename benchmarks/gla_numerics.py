"""Where the bf16 error of the GLA chunk kernels comes from: a float64 emulation.

The chunk algorithm of mixzoo/kernels/gla (forward: state pass, scores, output; backward:
reverse state pass, dv, dq/dk inter and intra, dg) in plain PyTorch float64, with every
value that the kernels round before a tensor-core dot (or store in bf16) rounded the same
way, site by site: bf16, tf32 (10 mantissa bits, as cvt.rna.tf32), hi + lo bf16 parts
(~16 bits, chunk._dot_hl), fp32, or exact. Compared with the fp32 reference on the same
bf16 inputs as benchmarks/ops/gla.py (randn q, k, v, do; logsigmoid(randn)/16 gates), it
reproduces the GPU's --check errors of our kernels and of fla (benchmarks/RESULTS.md,
"gla: numerics and variants v11-v13"), so a cast can be judged on the CPU.

    python benchmarks/gla_numerics.py [T]        # ~2 min on 2 cores at T = 512
"""
from __future__ import annotations

import sys

import torch
import torch.nn.functional as F

torch.set_default_dtype(torch.float64)
C, BC = 64, 16      # chunk and sub-chunk lengths of the kernels


def bf(x):
    return x.to(torch.bfloat16).to(torch.float64)


def tf(x):
    """tf32: 10 explicit mantissa bits, rounded to nearest (ties away), as cvt.rna.tf32."""
    i = x.to(torch.float32).contiguous().view(torch.int32)
    return ((i + 0x1000) & ~0x1FFF).view(torch.float32).to(torch.float64)


def split(x):
    """hi + lo bf16 parts (chunk._dot_hl): about 16 mantissa bits."""
    hi = bf(x)
    return hi + bf(x - hi)


def f32(x):
    return x.to(torch.float32).to(torch.float64)


R = dict(bf=bf, tf=tf, split=split, f32=f32, exact=lambda x: x)
# rounding sites: h_kd (k e^(b_C-b) in the state pass), h_store (stored h), A_op (sub-chunk
# pair factors of the scores), A_full (v12: all scores through the first row), o_q / o_h
# (q e^b and h in the output), o_A (A in A v), dh_q (q e^b in the reverse pass), dh_store,
# dv_kd / dv_dh / dv_A (dv's factors), dq_h / dk_dh (inter dq/dk), dqk_op (intra pair
# factors), dqk_full (v13: intra through the first row), dg_h ("fp32": h, dh unrounded in dg)
V6 = dict(h_kd="bf", h_store="bf", A_op="bf", o_q="bf", o_h="bf", o_A="bf", dh_q="bf",
          dh_store="bf", dv_kd="bf", dv_A="bf", dv_dh="bf", dq_h="bf", dk_dh="bf", dqk_op="bf")
V11 = dict(V6, A_op="tf", o_A="split", dv_A="split", dqk_op="tf", h_kd="split", dh_q="split")
CONFIGS = {
    "v6": V6,
    "fla (tf32 pair dots, fp32 A^T do, fp32 h/dh in bwd)": dict(
        V6, A_op="tf", dh_store="exact", dv_A="f32", dqk_op="tf", dg_h="fp32"),
    "v6 + tf32 score pair dots": dict(V6, A_op="tf"),
    "v6 + A v with A hi+lo": dict(V6, o_A="split"),
    "v6 + A^T do with A hi+lo": dict(V6, dv_A="split"),
    "v6 + tf32 intra dq/dk pair dots": dict(V6, dqk_op="tf"),
    "v6 + fp32 stored h, dh": dict(V6, h_store="exact", dh_store="exact", dg_h="fp32"),
    "v11": V11,
    "v12": dict(V11, A_full="tf"),
    "v13": dict(V11, A_full="tf", dqk_full="tf"),
    "floor (exact, outputs rounded to bf16)": {},
}


def fwd_bwd(q, k, v, g, do, cfg):
    """The chunk kernels' forward and backward for one head in float64, each value that
    enters a tl.dot (or is stored) rounded as cfg says: {site: "bf" | "tf" | "split" |
    "f32" | "exact"} (missing = exact; sites listed above V6). q, k, g [T, K], v, do
    [T, V] hold bf16 values; T a multiple of 64. Returns o, dq, dk, dv, dg rounded to
    bf16 as stored."""
    r = lambda name, x: R[cfg.get(name, "exact")](x)
    T, K = q.shape
    V = v.shape[1]
    N = T // C
    scale = K ** -0.5
    qc, kc, gg = (x.view(N, C, K) for x in (q, k, g))
    vc, doc = v.view(N, C, V), do.view(N, C, V)
    gc = f32(gg.cumsum(1))
    last = gc[:, -1]                                            # [N,K]
    # ---- state pass
    S = torch.zeros(K, V)
    hs = []
    for n in range(N):
        hs.append(S)
        kd = r("h_kd", kc[n] * torch.exp(last[n] - gc[n]))
        S = S * torch.exp(last[n])[:, None] + kd.T @ vc[n]
    h = r("h_store", torch.stack(hs))                          # [N,K,V]
    # ---- scores
    causal0 = torch.arange(C)[:, None] >= torch.arange(C)[None, :]
    A = torch.zeros(N, C, C)
    blk = torch.arange(C) // BC
    for i in range(1, C // BC):
        rows = slice(i * BC, (i + 1) * BC)
        ri = gc[:, i * BC]                                       # [N,K]
        qd = r("A_op", qc[:, rows] * torch.exp(gc[:, rows] - ri[:, None]) * scale)
        kd = r("A_op", kc[:, :i * BC] * torch.exp(ri[:, None] - gc[:, :i * BC]))
        A[:, rows, :i * BC] = qd @ kd.transpose(1, 2)
    diff = gc[:, :, None, :] - gc[:, None, :, :]                 # [N,t,s,K]
    same = (blk[:, None] == blk[None, :]) & (torch.arange(C)[:, None] >= torch.arange(C)[None, :])
    e = torch.where(same[None, :, :, None], torch.exp(torch.clamp(diff, max=0)), 0.)
    A = A + torch.einsum("ntk,nsk,ntsk->nts", qc, kc, e) * scale
    if "A_full" in cfg:
        b0 = gc[:, :1]
        qf = R[cfg["A_full"]](qc * torch.exp(gc - b0) * scale)
        kf = R[cfg["A_full"]](kc * torch.exp(b0 - gc))
        A = torch.where(causal0, qf @ kf.transpose(1, 2), 0.)
    A = f32(A)
    qe = r("o_q", qc * scale * torch.exp(gc))
    o = qe @ r("o_h", h) + r("o_A", A) @ vc
    o = bf(o).view(T, V)
    # ---- backward
    D = torch.zeros(K, V)
    dhs = [None] * N
    for n in reversed(range(N)):
        dhs[n] = D
        D = D * torch.exp(last[n])[:, None] + r("dh_q", qc[n] * scale * torch.exp(gc[n])).T @ doc[n]
    dh = r("dh_store", torch.stack(dhs))
    causal = torch.arange(C)[:, None] >= torch.arange(C)[None, :]
    dA = f32(torch.where(causal, doc @ vc.transpose(1, 2), 0.))  # unscaled
    kdl = r("dv_kd", kc * torch.exp(last[:, None] - gc))
    dv = r("dv_A", A).transpose(1, 2) @ doc + kdl @ r("dv_dh", dh)
    dq_int = (doc @ r("dq_h", h).transpose(1, 2)) * torch.exp(gc) * scale
    dk_int = (vc @ r("dk_dh", dh).transpose(1, 2)) * torch.exp(last[:, None] - gc)
    dq = dq_int.clone()
    dk = dk_int.clone()
    for i in range(1, C // BC):
        rows = slice(i * BC, (i + 1) * BC)
        ri = gc[:, i * BC]
        kd = r("dqk_op", kc[:, :i * BC] * torch.exp(ri[:, None] - gc[:, :i * BC]))
        dq[:, rows] += ((r("dqk_op", dA[:, rows, :i * BC]) @ kd)
                        * torch.exp(gc[:, rows] - ri[:, None]) * scale)
    for i in range(0, C // BC - 1):
        rows = slice(i * BC, (i + 1) * BC)
        r2 = gc[:, (i + 1) * BC - 1]
        later = slice((i + 1) * BC, C)
        qd = r("dqk_op", qc[:, later] * torch.exp(gc[:, later] - r2[:, None]))
        dk[:, rows] += ((r("dqk_op", dA[:, later, rows]).transpose(1, 2) @ qd)
                        * torch.exp(r2[:, None] - gc[:, rows]) * scale)
    strict = same & ~torch.eye(C, dtype=torch.bool)
    e2 = torch.where(strict[None, :, :, None], torch.exp(torch.clamp(diff, max=0)), 0.)
    dq += torch.einsum("nts,nsk,ntsk->ntk", dA, kc, e2) * scale
    dk += torch.einsum("nts,ntk,ntsk->nsk", dA, qc, e2) * scale
    if "dqk_full" in cfg:
        rr = R[cfg["dqk_full"]]
        b0 = gc[:, :1]
        sl = causal & ~torch.eye(C, dtype=torch.bool)
        dAs = rr(torch.where(sl, dA, 0.))
        dq = dq_int + (dAs @ rr(kc * torch.exp(b0 - gc))) * torch.exp(gc - b0) * scale
        dk = dk_int + ((dAs.transpose(1, 2) @ rr(qc * torch.exp(gc - b0)))
                       * torch.exp(b0 - gc) * scale)
    hh = h if cfg.get("dg_h", "store") == "store" else torch.stack(hs)
    dhh = dh if cfg.get("dg_h", "store") == "store" else torch.stack(dhs)
    carry = torch.exp(last) * (dhh * hh).sum(-1) + (kc * dk_int).sum(1)   # [N,K]
    x = qc * dq - kc * dk
    dg = carry[:, None] + x.flip(1).cumsum(1).flip(1)
    dAd = torch.diagonal(dA, dim1=1, dim2=2)[..., None] * scale
    dq = dq + dAd * kc
    dk = dk + dAd * qc
    out = dict(o=o, dq=bf(dq).view(T, K), dk=bf(dk).view(T, K), dv=bf(dv).view(T, V),
               dg=bf(dg).view(T, K))
    return out


def fwd_bwd_ref(q, k, v, g, do):
    """Output and gradients of the fp32 reference (`gla_chunk_ref`, autograd)."""
    from mixzoo.kernels.gla.reference import gla_chunk_ref
    xs = [x.clone().requires_grad_(True) for x in (q, k, v, g)]
    # gla_chunk_ref computes in fp32 (rel. error ~1e-6, far below what is measured here)
    o, _ = gla_chunk_ref(*(x[None, :, None] for x in xs))
    o = o[0, :, 0]
    grads = torch.autograd.grad((o * do.to(o.dtype)).sum(), xs)
    return dict(o=o.detach().double(), dq=grads[0].double(), dk=grads[1].double(),
                dv=grads[2].double(), dg=grads[3].double())


def main(T: int = 512, heads: int = 4, K: int = 128) -> None:
    gen = torch.Generator().manual_seed(0)
    data = []
    for _ in range(heads):
        q, k, v, do = (bf(torch.randn(T, K, generator=gen)) for _ in range(4))
        g = bf(F.logsigmoid(torch.randn(T, K, generator=gen)) / 16)
        data.append((q, k, v, g, do))
    ref = [fwd_bwd_ref(*d) for d in data]
    print(f"rel. RMS error vs the fp32 reference, T {T}, {heads} heads, K = V = {K} (1e-3)")
    print("| configuration | out | dq | dk | dv | dg |\n|---|---|---|---|---|---|")
    for name, cfg in CONFIGS.items():
        outs = [fwd_bwd(*d, cfg) for d in data]
        errs = []
        for key in ("o", "dq", "dk", "dv", "dg"):
            rr = torch.cat([x[key] for x in ref])
            oo = torch.cat([x[key] for x in outs])
            errs.append(((oo - rr).norm() / rr.norm()).item())
        print(f"| {name} | " + " | ".join(f"{e * 1e3:.2f}" for e in errs) + " |", flush=True)


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:2]))
