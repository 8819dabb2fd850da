"""Kernel benchmark harness: our kernels against their anchors, in one process.

    python benchmarks/bench_kernels.py --op delta_rule [--shapes B,T,H,D ...] [--dtype bf16]
                                       [--json out.json] [--check] [--impls NAME ...]
                                       [--profile] [--graph]
                                       [--isolate [--time-budget S]]

Loads benchmarks/ops/<OP>.py, which defines
    NAME: str
    DEFAULT_SHAPES: list[dict]                           # e.g. dict(B=4, T=4096, H=16, D=128)
    make_inputs(shape, dtype, device) -> dict[str, Tensor]   # fresh random data, leaves requires_grad
    implementations(shape) -> dict[str, fn(inputs) -> Tensor]  # first entry is ours ("mixzoo")
    reference(inputs) -> Tensor                          # fp32 plain reference, differentiable
    min_bytes(shape, dtype, mode) -> int                 # mode "fwd" | "fwdbwd"
    flops(shape, mode) -> float
    NOT_COMPARABLE: set[str]   (optional) implementations --check skips (different function)

For every shape and implementation it times, with triton.testing.do_bench medians:
    fwd     the forward with autograd recording (the training forward)
    fwdbwd  forward + backward of a fixed random cotangent
and records the peak memory of one fwd+bwd above what was allocated before it (inputs
excluded). With --graph both are timed as CUDA-graph replays of the same work: the GPU
time alone, for ops whose eager timing is bound by the host's launch pace
(benchmarks/host_profile.py tells; GPU call 14: the conv1d fwd+bwd ran 0.526 ms of kernels
but timed 0.78-1.15 ms eager). The table shows ms, the speed ratio of ours to every anchor
(>1 = ours faster), GB/s against the op's minimum bytes, TFLOP/s of the op's FLOP count, and
peak MiB.
--check adds the relative RMS error (‖out−ref‖/‖ref‖) of each implementation's output and
input gradients against the fp32 reference on the same inputs.
"""
from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import pathlib
import platform
import sys

import torch

ROOT = pathlib.Path(__file__).resolve().parent
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def load_op(name: str):
    path = ROOT / "ops" / f"{name}.py"
    if not path.exists():
        avail = sorted(p.stem for p in (ROOT / "ops").glob("*.py") if p.stem != "__init__")
        raise SystemExit(f"--op {name}: no {path}; available: {avail}")
    spec = importlib.util.spec_from_file_location(f"bench_ops_{name}", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def parse_shape(s: str) -> dict:
    parts = [int(x) for x in s.split(",")]
    if len(parts) != 4:
        raise argparse.ArgumentTypeError(f"shape {s!r}: expected B,T,H,D")
    return dict(zip("BTHD", parts))


def shape_str(shape: dict) -> str:
    return " ".join(f"{k}{v}" for k, v in shape.items())


def rel_rms(ref: torch.Tensor, out: torch.Tensor) -> float:
    ref, out = ref.detach().double(), out.detach().double()
    den = ref.norm().item()
    num = (out - ref).norm().item()
    return num / den if den else num


def leaves_of(inputs: dict) -> list[torch.Tensor]:
    return [t for t in inputs.values() if isinstance(t, torch.Tensor) and t.requires_grad]


def graph_replay(body):
    """Capture body() in a CUDA graph (after three warm-up calls on a side stream, which
    also run the autotuners) and return (replay, keep-alive handle)."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            body()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = body()
    return graph.replay, (graph, out)


def time_impl(fn, inputs: dict, do: torch.Tensor, warmup: int, rep: int,
              graph: bool = False) -> dict:
    """Median ms of fwd and fwd+bwd, and the peak memory of one fwd+bwd. graph=True times
    CUDA-graph replays of the same work: the GPU time without the host's launch pace."""
    from triton.testing import do_bench
    leaves = leaves_of(inputs)

    def fwd():
        return fn(inputs)

    def fwdbwd():
        fn(inputs).backward(do)

    res = {}
    if graph:
        def grads():
            return torch.autograd.grad(fn(inputs), leaves, do, allow_unused=True)
        for mode, body in (("fwd", fwd), ("fwdbwd", grads)):
            replay, keep = graph_replay(body)
            res[mode] = do_bench(replay, warmup=warmup, rep=rep, return_mode="median")
            del replay, keep
        torch.cuda.empty_cache()
    else:
        res["fwd"] = do_bench(fwd, warmup=warmup, rep=rep, return_mode="median")
        res["fwdbwd"] = do_bench(fwdbwd, warmup=warmup, rep=rep, grad_to_none=leaves,
                                 return_mode="median")
    for t in leaves:
        t.grad = None
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    fwdbwd()
    torch.cuda.synchronize()
    res["peak_mib"] = (torch.cuda.max_memory_allocated() - base) / 2**20
    for t in leaves:
        t.grad = None
    return res


def fwdbwd_step(fn, inputs: dict, do: torch.Tensor):
    """A callable running one fwd+bwd of fn with the input leaves' gradients reset first."""
    leaves = leaves_of(inputs)

    def once():
        for t in leaves:
            t.grad = None
        fn(inputs).backward(do)
    return once


def kernel_table(fn, inputs: dict, do: torch.Tensor, iters: int = 3, rows: int = 14) -> str:
    """Per-kernel CUDA times (torch.profiler) of `iters` fwd+bwd calls of fn, after two
    untimed calls (autotune, compile). Gradients are reset between calls, so no
    accumulation kernels appear."""
    once = fwdbwd_step(fn, inputs, do)
    for _ in range(2):
        once()
    torch.cuda.synchronize()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        for _ in range(iters):
            once()
        torch.cuda.synchronize()
    return prof.key_averages().table(sort_by="cuda_time_total", row_limit=rows)


def check_impl(fn, inputs: dict, ref_out: torch.Tensor, ref_grads: dict, do) -> dict:
    for t in leaves_of(inputs):
        t.grad = None
    out = fn(inputs)
    out.backward(do)
    errs = {"out": rel_rms(ref_out, out)}
    for name, t in inputs.items():
        if name in ref_grads:
            errs["d" + name] = rel_rms(ref_grads[name], t.grad) if t.grad is not None else float("nan")
        if isinstance(t, torch.Tensor):
            t.grad = None
    errs["finite"] = bool(torch.isfinite(out).all())
    return errs


def versions() -> dict:
    import triton
    v = {"torch": torch.__version__, "triton": triton.__version__, "python": platform.python_version()}
    try:
        import fla
        v["fla"] = getattr(fla, "__version__", "?")
    except Exception as e:  # noqa: BLE001 - report, never fail
        v["fla"] = f"not importable ({type(e).__name__})"
    v["gpu"] = torch.cuda.get_device_name() if torch.cuda.is_available() else "none"
    return v


HEADER = ("| shape | impl | fwd ms | ours speedup | fwd GB/s | fwd TFLOP/s | fwd+bwd ms | "
          "ours speedup | fwd+bwd GB/s | fwd+bwd TFLOP/s | peak MiB | errors vs fp32 ref |\n"
          "|---|---|---|---|---|---|---|---|---|---|---|---|")


def bench_shape(mod, shape: dict, dtype, args) -> list[dict]:
    """Time (and check) every implementation at one shape; one row per implementation,
    ours first. A failing implementation gives a row with "error" instead of numbers."""
    not_comparable = set(getattr(mod, "NOT_COMPARABLE", ()))
    torch.manual_seed(0)
    impls = select_impls(mod.implementations(shape), args.impls)
    inputs = mod.make_inputs(shape, dtype, "cuda")
    probe = next(iter(impls.values()))(inputs)
    do = torch.randn_like(probe)
    del probe
    ref_out, ref_grads = None, {}
    if args.check:
        ref_in = {n: (t.detach().float().requires_grad_(t.requires_grad)
                      if isinstance(t, torch.Tensor) else t) for n, t in inputs.items()}
        ref_out = mod.reference(ref_in)
        ref_out.backward(do.float())
        ref_grads = {n: t.grad for n, t in ref_in.items()
                     if isinstance(t, torch.Tensor) and t.grad is not None}
        ref_out = ref_out.detach()
        del ref_in
    rows = []
    for name, fn in impls.items():
        try:
            r = time_impl(fn, inputs, do, args.warmup, args.rep, args.graph)
            if args.check and name not in not_comparable:
                r["err"] = check_impl(fn, inputs, ref_out, ref_grads, do)
        except Exception as e:  # noqa: BLE001 - one failing anchor must not hide the rest
            r = {"error": f"{type(e).__name__}: {str(e)[:200]}"}
        rows.append({"shape": shape, "impl": name, **r})
        # Progress line per implementation, so a run cut by a time limit still leaves data.
        done = (f"fwd {r['fwd']:.3f} ms, fwd+bwd {r['fwdbwd']:.3f} ms, peak {r['peak_mib']:.0f} MiB"
                if "error" not in r else r["error"])
        print(f"# {shape_str(shape)} {name}: {done}", flush=True)
        if args.profile and "error" not in r:
            print(f"# kernels of {name} at {shape_str(shape)}, 3 fwd+bwd:\n"
                  + kernel_table(fn, inputs, do), flush=True)
        torch.cuda.empty_cache()
    return rows


def select_impls(impls: dict, names: list[str] | None) -> dict:
    """The implementations named by --impls, in the op's order (ours stays first when
    named); all of them when names is None."""
    if names is None:
        return impls
    unknown = [n for n in names if n not in impls]
    if unknown:
        raise SystemExit(f"--impls {unknown}: not implementations of this op; "
                         f"expected some of {list(impls)}")
    return {n: fn for n, fn in impls.items() if n in names}


def render(mod, dtype, rows: list[dict]) -> list[str]:
    """Table lines; ratios are against the first implementation of each shape (ours).
    Adds the derived numbers (GB/s, TFLOP/s, speedups) to the rows in place."""
    lines, ours = [], {}
    for row in rows:
        key = shape_str(row["shape"])
        ours.setdefault(key, row)
    for row in rows:
        shape, name = row["shape"], row["impl"]
        base = ours[shape_str(shape)]
        if "error" in row:
            lines.append(f"| {shape_str(shape)} | {name} | error: {row['error']} |||||||||| |")
            continue
        cells = []
        for mode in ("fwd", "fwdbwd"):
            ms = row[mode]
            gbs = mod.min_bytes(shape, dtype, mode) / (ms * 1e-3) / 1e9
            tfs = mod.flops(shape, mode) / (ms * 1e-3) / 1e12
            ratio = (ms / base[mode] if row is not base and "error" not in base else float("nan"))
            row[f"{mode}_gbs"], row[f"{mode}_tflops"], row[f"{mode}_ours_speedup"] = gbs, tfs, ratio
            cells.append(f"{ms:.3f} | {'' if row is base else f'{ratio:.2f}x'} | {gbs:.0f} | {tfs:.1f}")
        err = ""
        if "err" in row:
            err = " ".join(f"{k}={v:.1e}" if isinstance(v, float) else f"{k}={v}"
                           for k, v in row["err"].items())
        lines.append(f"| {shape_str(shape)} | {name} | {' | '.join(cells)} | {row['peak_mib']:.0f} | {err} |")
    return lines


def run_isolated(args, shapes: list[dict]) -> list[dict]:
    """One child process per shape, so a kernel fault (which kills the CUDA context) or a
    timeout loses only that shape. Triton's on-disk cache keeps compiles across children."""
    import subprocess
    import tempfile
    import time
    rows, t_end = [], time.monotonic() + args.time_budget if args.time_budget else None
    for shape in shapes:
        left = None if t_end is None else t_end - time.monotonic()
        if left is not None and left < 10:
            rows.append({"shape": shape, "impl": "(all)", "error": "skipped: --time-budget spent"})
            continue
        with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
            out = f.name
        cmd = [sys.executable, __file__, "--op", args.op, "--dtype", args.dtype, "--json", out,
               "--warmup", str(args.warmup), "--rep", str(args.rep),
               "--shapes", ",".join(str(v) for v in shape.values())] + (["--check"] if args.check else [])
        cmd += ["--impls", *args.impls] if args.impls else []
        cmd += [f for f, on in (("--profile", args.profile), ("--graph", args.graph)) if on]
        try:
            proc = subprocess.run(cmd, timeout=left, capture_output=True, text=True)
            tail = (proc.stdout + proc.stderr).strip().splitlines()[-1:] or [""]
            if proc.returncode == 0:
                with open(out) as fj:
                    rows += json.load(fj)["rows"]
            else:
                rows.append({"shape": shape, "impl": "(all)",
                             "error": f"child exited {proc.returncode}: {tail[0][:200]}"})
        except subprocess.TimeoutExpired as e:
            rows.append({"shape": shape, "impl": "(all)", "error": "child timed out"})
            partial = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
            print(partial, flush=True)                 # the child's progress lines so far
            continue
        print("\n".join(l for l in proc.stdout.splitlines() if l.startswith("# B")), flush=True)
        print(f"# done {shape_str(shape)}", flush=True)
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--op", required=True)
    ap.add_argument("--shapes", nargs="*", type=parse_shape, default=None, help="B,T,H,D ...")
    ap.add_argument("--dtype", default="bf16", choices=sorted(DTYPES))
    ap.add_argument("--json", default=None, help="write all numbers here")
    ap.add_argument("--check", action="store_true", help="also print errors vs the fp32 reference")
    ap.add_argument("--warmup", type=int, default=25, help="do_bench warm-up, ms")
    ap.add_argument("--rep", type=int, default=100, help="do_bench repetition time, ms")
    ap.add_argument("--impls", nargs="+", default=None,
                    help="time only these implementations (ratios are to the first kept)")
    ap.add_argument("--graph", action="store_true",
                    help="time CUDA-graph replays (GPU time, no host launch pace)")
    ap.add_argument("--profile", action="store_true",
                    help="also print each implementation's per-kernel CUDA times")
    ap.add_argument("--isolate", action="store_true",
                    help="run each shape in its own process (a kernel fault loses one shape)")
    ap.add_argument("--time-budget", type=float, default=None,
                    help="with --isolate: seconds for all shapes; later shapes are skipped")
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        raise SystemExit("bench_kernels.py needs a CUDA GPU")
    mod = load_op(args.op)
    dtype = DTYPES[args.dtype]
    shapes = args.shapes or mod.DEFAULT_SHAPES
    meta = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "command": "python " + " ".join(sys.argv), "op": mod.NAME, "dtype": args.dtype,
            "timing": "CUDA graph replay" if args.graph else "eager calls",
            **versions()}
    print("# " + ", ".join(f"{k}={v}" for k, v in meta.items()), flush=True)
    rows = []
    try:
        if args.isolate:
            rows = run_isolated(args, shapes)
        else:
            for shape in shapes:
                new = bench_shape(mod, shape, dtype, args)
                rows += new
                print("\n".join(render(mod, dtype, new)), flush=True)
                torch.cuda.empty_cache()
    finally:
        lines = render(mod, dtype, rows)
        print(f"\n## {mod.NAME} ({args.dtype}, {meta['timing']}) -- ours = first row of each "
              "shape; 'ours speedup' = anchor ms / ours ms\n")
        print(HEADER)
        print("\n".join(lines), flush=True)
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"meta": meta, "rows": rows}, f, indent=1, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
