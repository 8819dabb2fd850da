"""Vision training throughput: mixzoo ViTs against timm's SDPA ViT, in one process.

    python benchmarks/bench_vision.py --out vision.md [--sizes 224 512 1024]
        [--models mixzoo_deltanet_vit_small_patch16_224 vit_small_patch16_224]
        [--batch 224=128 512=32 1024=8] [--dtype bf16] [--amp | --pure]
        [--warmup 5] [--iters 20] [--compile] [--profile] [--json vision.json]

A model entry may carry options after '@', comma-separated, so one process times variants
side by side: `NAME@compile` (torch.compile that model only), `NAME@KEY=VALUE` (environment
variable KEY=VALUE while that row is built, warmed up, timed and profiled; e.g.
`mixzoo_deltanet_vit_small_patch16_224@MIXZOO_VISION_CAST=once`); `NAME@compile-ro` compiles
with mode="reduce-overhead" (CUDA graphs: no per-kernel launch cost; run those rows last);
`NAME@nomix` replaces every block's attention by the identity: the cost of everything
but the token mixer (patch embedding, norms, MLPs, head, loss), i.e. the floor of any mixer
in that backbone at that size. The ratio column is
always against the anchor: the first entry without options whose name does not start with
"mixzoo_" (else the first such entry with options).

Issue 7's comparison with the opt-in DeltaNet variants side by side (eager rows first):

    python benchmarks/bench_vision.py --sizes 224 1024 --out vision.md --warmup 2 --iters 5 \
        --models mixzoo_deltanet_vit_small_patch16_224 \
        mixzoo_deltanet_vit_small_patch16_224@MIXZOO_VISION_PATH=fused \
        mixzoo_deltanet_vit_small_patch16_224@MIXZOO_VISION_PATH=mixer,MIXZOO_VISION_CAST=autocast \
        vit_small_patch16_224 vit_small_patch16_224@nomix

(the first row is the default path, whatever it is at the time: "layer" since session 4
call 17, "fused" + cast-once in call 15; the third row is the path before those;
`vision_host.py` measures the same rows' host work on a CPU, kernels stubbed).
`NAME@profile` profiles that row only (as --profile does for every row), e.g.
`mixzoo_deltanet_vit_small_patch16_224@profile`.

For every image size and model: build the model at that resolution (`img_size=`, 1000
classes, patch 16, so 196 / 1024 / 4096 tokens at 224 / 512 / 1024 px), then time one
training step = forward + cross-entropy + backward (no optimizer step) on fresh random
images with CUDA events: `--warmup` untimed steps, then the median of `--iters` timed steps.
Reports training images/s = batch / median step time, the median ms, the median host ms
(time until the step's last kernel is queued: close to the step ms means the step is bound
by Python/launch overhead, or that the GPU is so far behind that the launch queue is full),
the peak memory of a step (torch.cuda.max_memory_allocated, parameters and gradients
included), and for every model the speed ratio against the first anchor (the first
non-mixzoo model, default timm `vit_small_patch16_224`, which runs softmax attention
through F.scaled_dot_product_attention). All ratios come from this one process.

Precision: `--amp` (default) = fp32 master weights + torch.autocast(bf16), timm's usual
mixed-precision training; `--pure` = parameters cast to bf16 too.
Failures (out of memory, a kernel error) are recorded in the table and the run goes on;
the table is rewritten after every row, so a killed run leaves what it measured.
"""
from __future__ import annotations

import argparse
import datetime
import gc
import json
import os
import pathlib
import platform
import statistics
import sys
import time
import traceback

import torch
import torch.nn.functional as F

ROOT = pathlib.Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# the model, its opt-in variants, the anchor, the anchor without its mixer (the floor of any
# mixer), and both compiled, then both under CUDA graphs (no host overhead at all; at 224 px
# both eager steps are host-bound on the H100 host) -- compiled rows run after every eager row
DEFAULT_MODELS = ["mixzoo_deltanet_vit_small_patch16_224",
                  "mixzoo_deltanet_vit_small_patch16_224@MIXZOO_VISION_PATH=fused",
                  "mixzoo_deltanet_vit_small_patch16_224@MIXZOO_VISION_PATH=mixer,"
                  "MIXZOO_VISION_CAST=autocast",
                  "vit_small_patch16_224", "vit_small_patch16_224@nomix",
                  "mixzoo_deltanet_vit_small_patch16_224@compile", "vit_small_patch16_224@compile",
                  "mixzoo_deltanet_vit_small_patch16_224@compile-ro",
                  "vit_small_patch16_224@compile-ro"]
DEFAULT_BATCH = {224: 128, 512: 32, 1024: 8}
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
TARGETS = {224: 0.7, 1024: 2.0}       # issue 7: DeltaNet vs the attention ViT


def parse_batch(items: list[str]) -> dict[int, int]:
    out = dict(DEFAULT_BATCH)
    for item in items:
        size, _, b = item.partition("=")
        if not b:
            raise SystemExit(f"--batch {item!r}: expected SIZE=BATCH, e.g. 1024=8")
        out[int(size)] = int(b)
    return out


COMPILE_OPTS = {"compile": "default", "compile-ro": "reduce-overhead"}
NOMIX = "nomix"
PROFILE = "profile"


class NoMix(torch.nn.Module):
    """A token mixer that mixes nothing (`@nomix` rows): y = x."""

    def forward(self, x, attn_mask=None, is_causal=False):
        return x


def parse_entry(entry: str) -> tuple[str, str | None, dict[str, str]]:
    """'NAME[@opt,opt...]' -> (timm model name, torch.compile mode or None, env overrides;
    the nomix and profile flags travel as env[NOMIX] / env[PROFILE] = "1")."""
    name, _, opts = entry.partition("@")
    compile_, env = None, {}
    for opt in filter(None, opts.split(",")):
        if opt in (NOMIX, PROFILE):
            env[opt] = "1"
        elif opt in COMPILE_OPTS:
            compile_ = COMPILE_OPTS[opt]
        elif "=" in opt:
            key, _, value = opt.partition("=")
            env[key] = value
        else:
            raise SystemExit(f"--models {entry!r}: option {opt!r} is none of "
                             f"{sorted(COMPILE_OPTS) + [NOMIX, PROFILE]} or KEY=VALUE")
    return name, compile_, env


class _Env:
    """Set environment variables for one row, restore them afterwards."""

    def __init__(self, env: dict[str, str]):
        self.env, self.old = env, {}

    def __enter__(self):
        for k, v in self.env.items():
            self.old[k] = os.environ.get(k)
            os.environ[k] = v

    def __exit__(self, *exc):
        for k, v in self.old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def versions() -> dict[str, str]:
    import timm
    v = {"torch": torch.__version__, "timm": timm.__version__, "python": platform.python_version()}
    for name in ("triton", "fla"):
        try:
            v[name] = __import__(name).__version__
        except Exception:
            v[name] = "n/a"
    return v


def build(name: str, size: int, dtype: torch.dtype, pure: bool, compile_: str | None,
          device: str, nomix: bool = False):
    import timm
    model = timm.create_model(name, img_size=size, num_classes=1000).to(device).train()
    if nomix:
        for block in model.blocks:
            block.attn = NoMix()
    if pure:
        model = model.to(dtype)
    if compile_:
        model = torch.compile(model, mode=compile_)
        model.cudagraphs = compile_ == "reduce-overhead"
    return model


def step(model, x, y, dtype, amp: bool):
    if getattr(model, "cudagraphs", False):    # compile-ro: a new iteration of the graphs
        torch.compiler.cudagraph_mark_step_begin()
    with torch.autocast(x.device.type, dtype=dtype, enabled=amp):
        logits = model(x)
    loss = F.cross_entropy(logits.float(), y)
    loss.backward()
    return loss


def measure(entry: str, size: int, batch: int, args) -> dict:
    name, compile_, env = parse_entry(entry)
    nomix = env.pop(NOMIX, None) is not None
    prof = env.pop(PROFILE, None) is not None or args.profile
    with _Env(env):
        return _measure(entry, name, size, batch, args,
                        compile_ or ("default" if args.compile else None), nomix, prof)


def _measure(entry: str, name: str, size: int, batch: int, args, compile_: str | None,
             nomix: bool, prof: bool) -> dict:
    dtype, dev = DTYPES[args.dtype], args.device
    cuda = dev == "cuda"
    model = build(name, size, dtype, args.pure, compile_, dev, nomix)
    params = sum(p.numel() for p in model.parameters())
    x_dtype = dtype if args.pure else torch.float32
    gen = torch.Generator(device=dev).manual_seed(0)

    def batch_data():
        x = torch.randn(batch, 3, size, size, device=dev, dtype=x_dtype, generator=gen)
        y = torch.randint(0, 1000, (batch,), device=dev, generator=gen)
        return x, y

    def sync():
        if cuda:
            torch.cuda.synchronize()

    for _ in range(args.warmup):
        x, y = batch_data()
        loss = step(model, x, y, dtype, not args.pure)
        model.zero_grad(set_to_none=False)
    if not torch.isfinite(loss):
        raise FloatingPointError(f"loss is {loss.item()}")
    sync()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    times, host = [], []
    for _ in range(args.iters):
        x, y = batch_data()
        if cuda:
            start, end = (torch.cuda.Event(enable_timing=True),
                          torch.cuda.Event(enable_timing=True))
            sync()
            t0 = time.perf_counter()
            start.record()
            step(model, x, y, dtype, not args.pure)
            end.record()
            host.append((time.perf_counter() - t0) * 1e3)   # until the last kernel is queued
            sync()
            times.append(start.elapsed_time(end))
        else:                                   # --device cpu: a smoke run, not a benchmark
            t0 = time.perf_counter()
            step(model, x, y, dtype, not args.pure)
            times.append((time.perf_counter() - t0) * 1e3)
        model.zero_grad(set_to_none=False)     # keep grads allocated, as in real training
    ms = statistics.median(times)
    row = {"model": entry, "img": size, "tokens": (size // 16) ** 2, "batch": batch,
           "ms": ms, "img_s": batch / (ms / 1e3),
           "host_ms": statistics.median(host) if host else float("nan"),
           "peak_mib": torch.cuda.max_memory_allocated() / 2 ** 20 if cuda else float("nan"),
           "params_m": params / 1e6, "status": "ok"}
    if prof and cuda:
        row["top_kernels"] = profile(model, batch_data, dtype, not args.pure)
    del model
    return row


def profile(model, batch_data, dtype, amp: bool) -> list[str]:
    """Where one step's GPU time goes: total kernel time against the step's wall time (a
    large gap = the GPU waits for the host), the 20 most expensive kernels, and the 20 aten
    ops (with input shapes) whose own kernels cost the most, so each elementwise/copy kernel
    can be traced to the op and tensor that launched it."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as prof
    x, y = batch_data()
    torch.cuda.synchronize()
    with prof(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA], record_shapes=True) as p:
        t0 = time.perf_counter()
        step(model, x, y, dtype, amp)
        torch.cuda.synchronize()
        wall = (time.perf_counter() - t0) * 1e3
    model.zero_grad(set_to_none=False)

    def dev(e, own: bool) -> float:
        name = "self_device_time_total" if own else "device_time_total"
        return getattr(e, name, getattr(e, name.replace("device", "cuda"), 0)) / 1e3

    kernels = [e for e in p.key_averages() if e.device_type == DeviceType.CUDA]
    total = sum(dev(e, False) for e in kernels)
    out = [f"step under the profiler: {wall:.1f} ms wall, {total:.1f} ms of kernels "
           f"({sum(e.count for e in kernels)} launches)", "top kernels:"]
    for e in sorted(kernels, key=lambda e: dev(e, False), reverse=True)[:20]:
        out.append(f"  {e.key[:70]} {dev(e, False):.2f}ms x{e.count}")
    ops = [e for e in p.key_averages(group_by_input_shape=True)
           if e.device_type == DeviceType.CPU and dev(e, True) > 0]
    out.append("top aten ops by their own kernels' time (input shapes):")
    for e in sorted(ops, key=lambda e: dev(e, True), reverse=True)[:20]:
        shapes = str(getattr(e, "input_shapes", ""))[:90]
        out.append(f"  {e.key[:40]} {dev(e, True):.2f}ms x{e.count} {shapes}")
    return out


def table(rows: list[dict], anchor: str | None) -> str:
    lines = ["| model | img px | tokens | batch | step ms | host ms | images/s | vs anchor | "
             "peak MiB | params M |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    base = {r["img"]: r for r in rows if r["model"] == anchor and r["status"] == "ok"}
    first = {}
    for i, r in enumerate(rows):
        first.setdefault(r["img"], i)
    for r in sorted(rows, key=lambda r: first[r["img"]]):   # by size, in measured order
        if r["status"] != "ok":
            lines.append(f"| {r['model']} | {r['img']} | {r.get('tokens', '')} | "
                         f"{r['batch']} | {r['status']} | | | | | |")
            continue
        ref = base.get(r["img"])
        ratio = f"{r['img_s'] / ref['img_s']:.2f}x" if ref else "n/a"
        lines.append(f"| {r['model']} | {r['img']} | {r['tokens']} | {r['batch']} | "
                     f"{r['ms']:.1f} | {r.get('host_ms', float('nan')):.1f} | "
                     f"{r['img_s']:.1f} | {ratio} | {r['peak_mib']:.0f} | "
                     f"{r['params_m']:.1f} |")
    return "\n".join(lines)


def verdict(rows: list[dict], anchor: str | None) -> list[str]:
    out = []
    ok = {(r["model"], r["img"]): r for r in rows if r["status"] == "ok"}
    for size, target in TARGETS.items():
        ref = ok.get((anchor, size))
        for (entry, img), dn in ok.items():
            if img != size or parse_entry(entry)[0] != "mixzoo_deltanet_vit_small_patch16_224":
                continue
            if ref:
                ratio = dn["img_s"] / ref["img_s"]
                out.append(f"- {size} px: {entry} / {anchor} = {ratio:.2f}x "
                           f"(target >= {target}x): {'MET' if ratio >= target else 'NOT MET'}")
    return out


def write(path: pathlib.Path | None, header: str, rows: list[dict], anchor: str | None,
          json_path: pathlib.Path | None, meta: dict) -> str:
    body = [header, "", table(rows, anchor), ""]
    body += verdict(rows, anchor)
    for r in rows:
        if r.get("top_kernels"):
            body += ["", f"Profile of one step, {r['model']} @ {r['img']} px:"]
            body += [f"    {k}" for k in r["top_kernels"]]
    for r in rows:
        if r["status"] != "ok" and r.get("error"):
            body += ["", f"{r['model']} @ {r['img']} px failed:", "    " + r["error"]]
    text = "\n".join(body) + "\n"
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    if json_path is not None:
        json_path.write_text(json.dumps({**meta, "rows": rows}, indent=1))
    return text


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=pathlib.Path, required=True, help="markdown table path")
    ap.add_argument("--json", type=pathlib.Path, default=None)
    ap.add_argument("--sizes", type=int, nargs="+", default=[224, 512, 1024])
    ap.add_argument("--models", nargs="+", default=DEFAULT_MODELS)
    ap.add_argument("--batch", nargs="*", default=[], help="SIZE=BATCH overrides")
    ap.add_argument("--dtype", choices=sorted(DTYPES), default="bf16")
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--amp", action="store_true", help="autocast, fp32 weights (default)")
    mode.add_argument("--pure", action="store_true", help="bf16 weights and activations")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--compile", action="store_true", help="torch.compile every model")
    ap.add_argument("--profile", action="store_true", help="top kernels of every model")
    ap.add_argument("--device", choices=["cuda", "cpu"], default="cuda",
                    help="cpu only smoke-tests the script (timings meaningless)")
    args = ap.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("bench_vision: needs a CUDA GPU (or --device cpu for a smoke run)",
              file=sys.stderr)
        return 2
    batches = parse_batch(args.batch)
    import mixzoo  # noqa: F401  (registers the mixzoo_* timm models when timm loads)
    from mixzoo.models.vision import import_timm
    timm = import_timm()
    for entry in args.models:
        name = parse_entry(entry)[0]
        if not timm.is_model(name):
            raise SystemExit(f"--models: unknown timm model {name!r}")
    anchors = [m for m in args.models if not m.startswith("mixzoo_")]
    anchor = next((m for m in anchors if "@" not in m), anchors[0] if anchors else None)
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    meta = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "gpu": torch.cuda.get_device_name() if args.device == "cuda" else "cpu (smoke)",
            "versions": versions(),
            "command": "python " + " ".join([sys.argv[0]] + (argv or sys.argv[1:])),
            "precision": f"{args.dtype} {'pure' if args.pure else 'autocast (fp32 weights)'}",
            "timm_fused_attn": bool(timm.layers.use_fused_attn()),
            "mixzoo_backend": os.environ.get("MIXZOO_BACKEND", "auto")}
    header = (f"## Vision training throughput ({meta['date']})\n\n"
              f"GPU {meta['gpu']}; " + ", ".join(f"{k} {v}" for k, v in meta["versions"].items())
              + f"\nprecision {meta['precision']}; timm fused (SDPA) attention: "
              f"{meta['timm_fused_attn']}; mixzoo backend: {meta['mixzoo_backend']}; "
              f"step = fwd + CE loss + bwd, median of {args.iters} after {args.warmup} warmup"
              f"{'; torch.compile' if args.compile else ''}\n\n`{meta['command']}`")
    rows: list[dict] = []
    # eager rows of every size first, then the compiled ones (minutes of compiling each): a
    # run killed by its time limit keeps the whole eager table
    eager = [m for m in args.models if parse_entry(m)[1] is None]
    compiled = [m for m in args.models if parse_entry(m)[1] is not None]
    plan = [(s, m) for group in (eager, compiled) for s in args.sizes for m in group]
    for size, name in plan:
        batch = batches.get(size) or max(1, int(DEFAULT_BATCH[224] * (224 / size) ** 2))
        t0 = time.perf_counter()
        try:
            row = measure(name, size, batch, args)
        except torch.cuda.OutOfMemoryError:
            row = {"model": name, "img": size, "batch": batch, "status": "OOM"}
            gc.collect()
        except Exception as e:  # one failure must not lose the other rows
            row = {"model": name, "img": size, "batch": batch,
                   "status": f"error: {type(e).__name__}",
                   "error": "".join(traceback.format_exception_only(e)).strip()[:400]}
            traceback.print_exc()
        if args.device == "cuda":
            torch.cuda.empty_cache()
        rows.append(row)
        done = (f"{row['img_s']:.1f} img/s, {row['peak_mib']:.0f} MiB"
                if row["status"] == "ok" else row["status"])
        print(f"[{name} @ {size}px, batch {batch}] {done} "
              f"({time.perf_counter() - t0:.0f}s)", flush=True)
        write(args.out, header, rows, anchor, args.json, meta)
    text = write(args.out, header, rows, anchor, args.json, meta)
    print()
    print(text)
    return 0 if all(r["status"] == "ok" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
