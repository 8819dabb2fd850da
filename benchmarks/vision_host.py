"""Host-side cost of a ViT training step, measured on a CPU with the Triton kernels stubbed
(or, with --device cuda, on the GPU host with everything real).

    python benchmarks/vision_host.py [--models NAME[@KEY=VALUE,...] ...] [--iters 10]
        [--rounds 20] [--no-amp] [--counts] [--cprofile N]
    python benchmarks/vision_host.py --device cuda [--img 224] [--batch 8] [...]

At ViT-S sizes on the H100 host the DeltaNet ViT's training step is host-bound (the GPU
waits for Python, dispatch and launches: RESULTS.md, session 3 calls 12-13), so its host
work is the number to cut. This script measures it without a GPU: TRITON_INTERPRET=1 and
MIXZOO_BACKEND=triton make every mixzoo layer take its Triton path on CPU tensors (the
same Python as on CUDA: custom ops or autograd Functions, launchers, allocations, grid
lambdas, autotuner lookups), and every kernel launch (`InterpretedFunction.run`) is
replaced by a counter that returns at once, so no kernel math runs. The model has the real
depth but a tiny width and image (embed 16 in 2 heads, 32 px = 4 tokens, batch 1) so the
CPU's own aten kernels cost little next to their dispatch. A step = forward under
autocast(bf16) (as bench_vision's --amp) + loss + backward, the same as bench_vision.py.

Models are measured in interleaved rounds (one round = `--iters` steps of each model, in
turn) and the median and 10th-percentile step of all rounds are reported, so all models see
the same machine state (on a shared, loaded host the 10th percentile is the steadier one).
`NAME@KEY=VALUE` sets an environment variable for that row, as in bench_vision.py
(e.g. `mixzoo_deltanet_vit_small_patch16_224@MIXZOO_VISION_PATH=mixer`). `--counts` adds,
per step, the aten ops dispatched (views counted apart), autograd nodes and Triton launches.

The numbers are relative: this 2-core CPU host measured timm ViT-S at ~5 ms per step where
the H100 host took ~28 ms, so compare models within one run, not with the GPU's host ms.

--device cuda: the real ViT-S widths at --img px with a small --batch (default 8, so the
GPU's work is short and the host never waits on a full launch queue), real kernels; the
host ms is the time until the step's last kernel is queued (synchronized before each step).
This is the host cost including what the CPU stub cannot see (CUDA launches, Triton's own
launch path: argument binding, specialization keys, autotuner lookups); --cprofile shows
where it goes, --counts counts aten ops, autograd nodes and Triton launches.
"""
from __future__ import annotations

import argparse
import collections
import os
import pathlib
import statistics
import sys
import time

CUDA = "--device" in sys.argv[1:-1] and sys.argv[sys.argv.index("--device") + 1] == "cuda"
if not CUDA:
    # Before triton / mixzoo are imported: Triton path on CPU tensors, kernels interpreted.
    os.environ["TRITON_INTERPRET"] = "1"
    os.environ["MIXZOO_BACKEND"] = "triton"

import torch  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[1]
for p in (ROOT, ROOT / "benchmarks"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

from bench_vision import NOMIX, PROFILE, NoMix, _Env, parse_entry  # noqa: E402

DEFAULT_MODELS = ["vit_small_patch16_224", "mixzoo_deltanet_vit_small_patch16_224"]
# Real depth, tiny tensors: 32 px = 4 tokens, batch 1, width 16 in 2 heads (head dim 8; the
# bidirectional conv kernel wants q|k|v group boundaries at multiples of 16). At these sizes
# the CPU's bf16 GEMMs cost ~5 us instead of ~20 us at width 48 (they are launches on a GPU).
SMALL = dict(img_size=32, embed_dim=16, num_heads=2, num_classes=10)
BATCH = 1
LAUNCHES = collections.Counter()


def stub_triton() -> None:
    """Every interpreted kernel launch only counts itself (no kernel math)."""
    from triton.runtime.interpreter import InterpretedFunction

    def run(self, *args, grid, warmup, **kwargs):
        if not warmup:
            LAUNCHES[self.fn.__name__] += 1

    InterpretedFunction.run = run


def count_triton() -> None:
    """(CUDA) every Triton launch also counts itself."""
    from triton.runtime.jit import JITFunction
    real = JITFunction.run

    def run(self, *args, grid, warmup, **kwargs):
        if not warmup:
            LAUNCHES[self.fn.__name__] += 1
        return real(self, *args, grid=grid, warmup=warmup, **kwargs)

    JITFunction.run = run


def build(entry: str, device: str = "cpu", img: int = 224):
    from mixzoo.models.vision import import_timm
    timm = import_timm()
    name, compile_, env = parse_entry(entry)
    if compile_:
        raise SystemExit(f"{entry}: compiled rows are not host-measured here")
    nomix = env.pop(NOMIX, None) is not None
    env.pop(PROFILE, None)
    if device == "cuda":
        model = timm.create_model(name, img_size=img, num_classes=1000).cuda().train()
    else:
        model = timm.create_model(name, **SMALL).train()
    if nomix:
        for block in model.blocks:
            block.attn = NoMix()
    return model, env


def step(model, x, y, amp: bool) -> None:
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=amp):
        logits = model(x)
    torch.nn.functional.cross_entropy(logits.float(), y).backward()


def timed(model, env, x, y, amp: bool, n: int) -> list[float]:
    out = []
    cuda = x.is_cuda
    with _Env(env):
        for _ in range(n):
            if cuda:
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            step(model, x, y, amp)
            out.append((time.perf_counter() - t0) * 1e3)   # until the last kernel is queued
            model.zero_grad(set_to_none=False)
    if cuda:
        torch.cuda.synchronize()
    return out


def counts(model, env, x, y, amp: bool) -> dict[str, int]:
    """aten ops (views apart), autograd nodes and Triton launches of one step."""
    from torch.utils._python_dispatch import TorchDispatchMode
    views = {"view", "_unsafe_view", "t", "transpose", "expand", "slice", "split",
             "split_with_sizes", "alias", "reshape", "unsqueeze", "squeeze", "permute",
             "select", "as_strided", "unbind", "detach", "unflatten"}
    n = collections.Counter()

    class Log(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            n["aten views" if func.overloadpacket.__name__ in views else "aten compute"] += 1
            return func(*args, **(kwargs or {}))

    with _Env(env):
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=amp):
            logits = model(x)
        seen, todo = set(), [logits.grad_fn]
        while todo:                                  # autograd nodes of the step
            node = todo.pop()
            if node is None or node in seen:
                continue
            seen.add(node)
            todo.extend(f for f, _ in node.next_functions)
        n["autograd nodes"] = len(seen)
        model.zero_grad(set_to_none=False)
        LAUNCHES.clear()
        with Log():
            step(model, x, y, amp)
        n["triton launches"] = sum(LAUNCHES.values())
        model.zero_grad(set_to_none=False)
    return dict(n)


def sync_check(model, env, x, y, amp: bool) -> list[str]:
    """Host-device synchronizations in one step (torch.cuda.set_sync_debug_mode "warn"),
    each with the innermost mixzoo / timm / benchmark frames where it was raised. A sync in
    a step makes the host wait for the GPU, so host and GPU time add up instead of
    overlapping."""
    import traceback
    import warnings
    found = []

    def show(message, category, filename, lineno, file=None, line=None):
        frames = [f for f in traceback.extract_stack()[:-1]
                  if any(k in f.filename for k in ("/mixzoo/", "/timm/", "benchmarks"))]
        where = " <- ".join(f"{pathlib.Path(f.filename).name}:{f.lineno} {f.name}"
                            for f in frames[::-1][:4])
        found.append(f"{str(message).splitlines()[0]} at {where or filename + ':' + str(lineno)}")

    with _Env(env), warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = show
        torch.cuda.set_sync_debug_mode("warn")
        try:
            step(model, x, y, amp)
        finally:
            torch.cuda.set_sync_debug_mode(0)
        model.zero_grad(set_to_none=False)
    return found


def copies(model, env, x, y, amp: bool) -> list[str]:
    """Every copy-like aten op (copy_, _to_copy, clone, contiguous copies) of one step with
    its operands' shapes, dtypes and contiguity and the innermost mixzoo / timm frames; a
    copy of a non-contiguous tensor runs PyTorch's slow strided kernel."""
    import traceback
    from torch.utils._python_dispatch import TorchDispatchMode
    out = []

    class Log(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            name = func.overloadpacket.__name__
            if name in ("copy_", "_to_copy", "clone", "flip", "cat"):
                ts = [a for a in args if isinstance(a, torch.Tensor)]
                desc = " ".join(f"{list(t.shape)}:{str(t.dtype)[6:]}:"
                                f"{'c' if t.is_contiguous() else 'strided' + str(t.stride())}"
                                for t in ts[:2])
                frames = [f for f in traceback.extract_stack()[:-1]
                          if "/mixzoo/" in f.filename or "/timm/" in f.filename]
                where = " <- ".join(f"{pathlib.Path(f.filename).name}:{f.lineno}"
                                    for f in frames[::-1][:2]) or "(autograd engine)"
                to = (kwargs or {}).get("dtype")
                out.append(f"{name} {desc}{' -> ' + str(to)[6:] if to else ''} at {where}")
            return func(*args, **(kwargs or {}))

    with _Env(env):
        with Log():
            step(model, x, y, amp)
        model.zero_grad(set_to_none=False)
    return out


def _profiled_step(model, env, x, y, amp: bool, **options):
    """torch.profiler (CPU + CUDA, `options` passed on) over one step, after one warm step."""
    from torch.profiler import ProfilerActivity, profile
    with _Env(env):
        step(model, x, y, amp)
        model.zero_grad(set_to_none=False)
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA], **options) as prof:
            step(model, x, y, amp)
            torch.cuda.synchronize()
        model.zero_grad(set_to_none=False)
    return prof


def kernel_origin(model, env, x, y, amp: bool, kernel: str) -> list[str]:
    """The innermost aten ops (name, input shapes, Python stack) whose CUDA kernels' names contain
    `kernel`, in one profiled step: where an unexpected kernel in a profile comes from."""
    prof = _profiled_step(model, env, x, y, amp, record_shapes=True, with_stack=True)
    out = []
    for evt in prof.events():
        ks = [k for k in getattr(evt, "kernels", []) if kernel in k.name]
        if ks and not any(c.kernels for c in evt.cpu_children):      # innermost op only
            stack = [f for f in (evt.stack or []) if "/mixzoo/" in f or "/timm/" in f][:3]
            out.append(f"{evt.name} {evt.input_shapes} at {' <- '.join(stack) or '?'}")
    return out


def torch_profile(model, env, x, y, amp: bool, rows: int) -> str:
    """torch.profiler table of one step, ops sorted by their own host (CPU) time."""
    prof = _profiled_step(model, env, x, y, amp)
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows,
                                     max_name_column_width=60)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", nargs="+", default=DEFAULT_MODELS)
    ap.add_argument("--iters", type=int, default=10, help="steps per model per round")
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--no-amp", action="store_true", help="fp32, no autocast")
    ap.add_argument("--counts", action="store_true", help="aten ops / nodes / launches")
    ap.add_argument("--cprofile", type=int, default=0, metavar="N",
                    help="cProfile the last model's steps, print the top N functions")
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu",
                    help="cpu: kernels stubbed, tiny model; cuda: real (module docstring)")
    ap.add_argument("--img", type=int, default=224, help="(cuda) image size")
    ap.add_argument("--batch", type=int, default=8, help="(cuda) batch")
    ap.add_argument("--sync-check", action="store_true",
                    help="(cuda) list the host-device synchronizations of one step per model")
    ap.add_argument("--kernel-origin", default="", metavar="SUBSTR",
                    help="(cuda) which ops launch the CUDA kernels whose names contain SUBSTR")
    ap.add_argument("--copies", action="store_true",
                    help="(cuda) list the copy / cast ops of one step per model, with layouts")
    ap.add_argument("--torch-profile", type=int, default=0, metavar="N",
                    help="(cuda) torch.profiler table of one step per model, top N by host time")
    args = ap.parse_args(argv)
    import mixzoo  # noqa: F401  (registers the mixzoo_* timm models)
    amp = not args.no_amp
    torch.manual_seed(0)
    if args.device == "cuda":
        if args.counts:
            count_triton()
        x = torch.randn(args.batch, 3, args.img, args.img, device="cuda")
        y = torch.randint(0, 1000, (args.batch,), device="cuda")
    else:
        torch.set_num_threads(1)
        stub_triton()
        x = torch.randn(BATCH, 3, SMALL["img_size"], SMALL["img_size"])
        y = torch.randint(0, SMALL["num_classes"], (BATCH,))
    rows = [(entry, *build(entry, args.device, args.img)) for entry in args.models]
    for _, model, env in rows:                      # warm up (first-call caches)
        timed(model, env, x, y, amp, 3)
    if args.device == "cuda" and (args.sync_check or args.torch_profile or args.copies
                                  or args.kernel_origin):
        for entry, model, env in rows:
            if args.kernel_origin:
                found = kernel_origin(model, env, x, y, amp, args.kernel_origin)
                print(f"ops launching '{args.kernel_origin}' in one step of {entry}: {len(found)}")
                for line in sorted(set(found), key=lambda s: -found.count(s)):
                    print(f"    {found.count(line)} x {line}")
            if args.copies:
                found = copies(model, env, x, y, amp)
                print(f"copy-like ops in one step of {entry}: {len(found)}")
                for line in sorted(set(found), key=lambda s: -found.count(s)):
                    print(f"    {found.count(line)} x {line}")
            if args.sync_check:
                syncs = sync_check(model, env, x, y, amp)
                print(f"synchronizations in one step of {entry}: {len(syncs)}")
                for line in sorted(set(syncs)):
                    print(f"    {syncs.count(line)} x {line}")
            if args.torch_profile:
                print(f"torch.profiler, one step of {entry}:")
                print(torch_profile(model, env, x, y, amp, args.torch_profile))
    times = {entry: [] for entry, _, _ in rows}
    for _ in range(args.rounds):
        for entry, model, env in rows:
            times[entry] += timed(model, env, x, y, amp, args.iters)
    def p10(ts):
        return sorted(ts)[len(ts) // 10]

    base = statistics.median(times[rows[0][0]])
    base10 = p10(times[rows[0][0]])
    where = (f"{torch.cuda.get_device_name()}, real kernels, {args.img} px, batch {args.batch}"
             if args.device == "cuda" else "CPU, 1 thread, kernels stubbed")
    print(f"host ms per training step ({'autocast bf16' if amp else 'fp32'}, {where}; "
          f"{args.rounds} rounds x {args.iters} steps; torch {torch.__version__})")
    print("| model | host ms (median) | vs first | host ms (10th percentile) | vs first |"
          + (" counts |" if args.counts else ""))
    for entry, model, env in rows:
        ms, ms10 = statistics.median(times[entry]), p10(times[entry])
        extra = ""
        if args.counts:
            extra = " " + ", ".join(f"{k} {v}" for k, v in
                                    sorted(counts(model, env, x, y, amp).items())) + " |"
        print(f"| {entry} | {ms:.2f} | {ms / base:.2f}x | {ms10:.2f} | {ms10 / base10:.2f}x |"
              f"{extra}")
    if args.cprofile:
        import cProfile
        import pstats
        entry, model, env = rows[-1]
        pr = cProfile.Profile()
        pr.enable()
        timed(model, env, x, y, amp, 10)
        pr.disable()
        print(f"\ncProfile of 10 steps of {entry}:")
        pstats.Stats(pr).sort_stats("tottime").print_stats(args.cprofile)
    return 0


if __name__ == "__main__":
    sys.exit(main())
