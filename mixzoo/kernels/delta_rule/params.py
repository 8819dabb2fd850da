"""Launch parameters of the chunk kernels (chunk.py): block sizes, dot precision, and the
environment knobs that choose between equivalent kernel variants.

Knobs (read at every call unless noted, so one process can time or check each variant):
    MIXZOO_DELTA_TUNE=narrow       autotune lists of run 1 (read at import)
    MIXZOO_DELTA_INV=blocks        four 16x16 inverse chains instead of one [4,16,16] pass
    MIXZOO_DELTA_STATE_W=auto|load|rebuild
                                   where the state backward gets W (see state_w_mode)
    MIXZOO_DELTA_PREP_WARPS=N      warps of the prep and W kernels (diagnosis)
    MIXZOO_DELTA_STATE_WARPS=N     warps of the state kernels (diagnosis)
    MIXZOO_DELTA_STATE_STAGES=N    pipeline stages of the state kernels (diagnosis)
    MIXZOO_DELTA_STATE_BWD_BV=N    V block of the state backward (diagnosis)
"""
from __future__ import annotations

import os

import torch

from .._common import cdiv, next_power_of_2

CHUNK = 64

STATE_W_MODES = ("auto", "load", "rebuild")


def wide_tuning() -> bool:
    """MIXZOO_DELTA_TUNE=narrow restores the autotune lists of run 1, in case a config of the
    wider lists faults on some GPU/Triton pair."""
    return os.environ.get("MIXZOO_DELTA_TUNE", "wide") != "narrow"


def stacked_inverse() -> bool:
    """MIXZOO_DELTA_INV=stacked (default) inverts the four diagonal 16x16 blocks of each chunk
    in one [4,16,16] pass (_inv16x4, 15 dependent steps); =blocks runs four _inv16 chains (60
    steps). GPU call 18 (H100, B4 T4096 H16 D128 bf16): forward 0.564 vs 0.594 ms, equal
    errors, GPU tests passed with stacked."""
    name = os.environ.get("MIXZOO_DELTA_INV", "stacked")
    if name not in ("stacked", "blocks"):
        raise ValueError(f"MIXZOO_DELTA_INV={name!r}: expected 'stacked' or 'blocks'")
    return name == "stacked"


def state_w_mode(bv: int) -> str:
    """How the state backward gets W = Tm diag(beta) K for a V block of `bv` columns:
    'load' (W from _w_kernel) or 'rebuild' (from Tm inside the sequential loop, slower). On
    the H100 with Triton 3.6, 'load' gave wrong gradients at bv=32 (right at 64), also with W
    written transposed (a variant measured in call 10 and removed), while 'rebuild' was
    right at both (benchmarks/RESULTS.md, session 3). Default ('auto'):
    'load' at bv >= 64, 'rebuild' below."""
    mode = os.environ.get("MIXZOO_DELTA_STATE_W", "auto")
    if mode not in STATE_W_MODES:
        raise ValueError(f"MIXZOO_DELTA_STATE_W={mode!r}: expected one of {STATE_W_MODES}")
    if mode == "auto":
        return "load" if bv >= 64 else "rebuild"
    return mode


def prep_warps(bk: int) -> int:
    """Warps of the per-chunk prep and W kernels: 2 for head dims up to 128. H100, session 5
    (`benchmarks/delta_sweep.py`): prep 0.214 ms at 2 warps vs 0.323 at 4 and 0.99 at 8 at
    B256 T196 H6 D64 (call 21), 0.227 vs 0.331 / 0.74 at B4 T4096 H16 D128 (call 22);
    the W kernel 0.070 vs 0.076 and 0.083 vs 0.105 ms. MIXZOO_DELTA_PREP_WARPS overrides."""
    return int(os.environ.get("MIXZOO_DELTA_PREP_WARPS", 2 if bk <= 128 else 4))


def state_warps(bk: int, bv: int) -> int:
    """Warps of the sequential state kernels (MIXZOO_DELTA_STATE_WARPS overrides)."""
    return int(os.environ.get("MIXZOO_DELTA_STATE_WARPS", 4 if bk * bv <= 4096 else 8))


def state_stages(bk: int) -> int:
    """Software-pipelining stages of the sequential state kernels: at head dim 256 three
    stages of [64,256] tiles need 320 KB of shared memory (the H100 has 227 KB), so two.
    (One stage computed a wrong forward on the H100 with Triton 3.6, even at head dim 128.)
    MIXZOO_DELTA_STATE_STAGES overrides (diagnosis)."""
    return int(os.environ.get("MIXZOO_DELTA_STATE_STAGES", 2 if bk >= 256 else 3))


def dims(q: torch.Tensor, v: torch.Tensor):
    """B, T, H, K, V and the padded full-width blocks BK, BV (powers of two, >= 16)."""
    B, T, H, K = q.shape
    V = v.shape[-1]
    return B, T, H, K, V, max(16, next_power_of_2(K)), max(16, next_power_of_2(V))


def dot_precision(x: torch.Tensor) -> str:
    # fp32 inputs: near-fp32 products (3 tf32 passes); half inputs: the operands are half anyway
    return "tf32x3" if x.dtype == torch.float32 else "tf32"


def state_bv(BH: int, BVfull: int, backward: bool = False, half: bool = True) -> int:
    """v-block for the sequential passes. Half-precision inputs, forward: 64 when that still
    gives >= 128 programs (one H100 has 132 SMs; each program walks all chunks in turn), else
    32; backward: 64 whenever V allows, because the state backward with a loaded W computed
    wrong gradients at V blocks of 32 on the H100 (Triton 3.6; RESULTS.md session 3, calls
    9-11) and the rebuilt-W alternative cost 0.6 ms at B1 T16384 H16 D128. fp32 inputs: 32
    (fp32 tiles at 64 needed 280 KB of shared memory, more than the H100's 227 KB; with
    32 the backward rebuilds W, the form checked right on the H100 in fp32).
    MIXZOO_DELTA_STATE_BWD_BV overrides the backward's (diagnosis)."""
    if not half:
        return min(32, BVfull)
    if backward:
        bv = int(os.environ.get("MIXZOO_DELTA_STATE_BWD_BV", 64))
        return min(bv, BVfull)
    if BVfull >= 64 and BH * cdiv(BVfull, 64) >= 128:
        return 64
    return min(32, BVfull)


# How the chunk launchers' `beta` is given (beta_mode). 0: beta [B,T,H]. 1, 2: the
# bidirectional scan (vision): logits z [B/2,T,H] of B/2 sequences whose batch rows B/2.. are
# the same sequences reversed in time; beta = sigmoid(z) (1) or 2 sigmoid(z) (2, negative
# eigenvalues), computed in the kernels. chunk_bwd then returns dz per direction, [B,T,H] with
# rows B/2.. in z's time order, which the caller sums over the two halves. This replaces the
# sigmoid, flip and concatenation (and their backward) as separate torch ops.
BETA_MODES = (0, 1, 2)


def logit_batch(q: torch.Tensor, beta_mode: int) -> int:
    """NB, the batch of the logits (0 for beta_mode 0); q [B,T,H,K] holds both directions."""
    if beta_mode not in BETA_MODES:
        raise ValueError(f"beta_mode={beta_mode!r}: expected one of {BETA_MODES}")
    return q.shape[0] // 2 if beta_mode else 0


def chunk_fits(dtype: torch.dtype, K: int, V: int) -> bool:
    """Whether `delta_rule` on CUDA runs the chunk kernels: half-precision inputs with head
    dims up to 128. Beyond, it runs the fused recurrent kernels (registers only; exact,
    slower). Head dim 256: the sequential passes need 320 KB of shared memory at three
    pipeline stages and 278 KB at two (an H100 has 227 KB), and one stage miscompiled. fp32:
    the fused backward's first candidate needed 280 KB with the in-kernel L2 norm (GPU call
    13), another candidate faulted (call 10). `delta_rule_triton(algo="chunk")` still runs
    the chunk kernels in fp32 (tested on the H100 at head dim 64 without the L2 norm)."""
    return dtype != torch.float32 and K <= 128 and V <= 128
