"""The `mixzoo` command (also `python -m mixzoo`).

    mixzoo list [PATTERN] [--json] [--recipes]   registered mixers (or shipped recipes)
    mixzoo show RECIPE [key=value ...] [--seq-len T] [--json]
                                                 the expanded layer table of a recipe
    mixzoo train RECIPE [key=value ...]          train it on its `train:` task
    mixzoo grid ...                              ablation grids (`mixzoo grid --help`)
    mixzoo bench RECIPE [key=value ...] [--batch B --seq-len T --steps N]
                                                 fwd+bwd throughput and peak memory

RECIPE is a YAML file or a shipped recipe name; `key=value` are dotted overrides
(`model.d_model=128`, `model.pattern=[dn,swa]`, `~model.layers` deletes a key).
A bad recipe prints where and why (file:line:col, dotted path, value, what is allowed)
and exits with code 2, without a traceback.
"""
from __future__ import annotations

import argparse
import contextlib
import fnmatch
import json
import sys
import textwrap
import time
from typing import Any, Sequence

__all__ = ["main"]

EXIT_USAGE = 2


class _CliError(Exception):
    """A user error with a one-line message (exit code 2)."""


@contextlib.contextmanager
def _building(name: str):
    """A recipe that validates but that a model constructor still rejects (a vision base
    that cannot take the layout, say) is a user error too, not a traceback."""
    try:
        yield
    except (ValueError, TypeError) as e:
        raise _CliError(f"{name}: cannot build the model: {e}") from e


# -- list --------------------------------------------------------------------------------

def _field_info(config_cls: type) -> dict[str, Any]:
    """{field: JSON-ready default, or "<required>"} of a mixer Config."""
    out = {}
    for name, f in config_cls.model_fields.items():
        if name == "type":
            continue
        if f.is_required():
            out[name] = "<required>"
            continue
        default = f.get_default(call_default_factory=True)
        try:
            json.dumps(default)
            out[name] = default
        except TypeError:
            out[name] = repr(default)
    return out


def _cmd_list(args: argparse.Namespace) -> int:
    if args.recipes:
        from mixzoo.recipes import list_recipes, load_recipe
        names = list_recipes(args.pattern)
        rows = [{"name": n, "description": load_recipe(n).description} for n in names]
        if args.json:
            print(json.dumps({"recipes": rows}, indent=2))
        else:
            for r in rows:
                print(f"{r['name']:<22} {textwrap.shorten(r['description'], 100)}")
        return 0
    from mixzoo.registry.core import entries
    from mixzoo.registry.plugins import broken_plugins
    reg = entries()
    names = sorted(n for n in reg if fnmatch.fnmatchcase(n, args.pattern))
    broken = {n: r for n, r in broken_plugins().items() if fnmatch.fnmatchcase(n, args.pattern)}
    mixers = [{"name": n, "source": reg[n].source,
               "class": f"{reg[n].cls.__module__}.{reg[n].cls.__qualname__}",
               "fields": _field_info(reg[n].config_cls)} for n in names]
    if args.json:
        print(json.dumps({"mixers": mixers, "broken": broken}, indent=2))
        return 0
    if not mixers and not broken:
        print(f"no registered mixer matches {args.pattern!r}")
    for m in mixers:
        print(f"{m['name']}  [{m['source']}]  {m['class']}")
        fields = "  ".join(f"{k}={v!r}" if isinstance(v, str) else f"{k}={v}"
                           for k, v in m["fields"].items())
        print(textwrap.fill(fields, 96, initial_indent="    ", subsequent_indent="    "))
    if broken:
        print("\nbroken plugins (not usable; other mixers are unaffected):")
        for name, reason in broken.items():
            print(f"  {name}: {reason}")
    return 0


# -- show --------------------------------------------------------------------------------

def _cmd_show(args: argparse.Namespace) -> int:
    from mixzoo.recipes import load_recipe
    from mixzoo.recipes.summary import human, model_summary
    recipe = load_recipe(args.recipe, args.overrides)
    with _building(args.recipe):
        info = model_summary(recipe, seq_len=args.seq_len, device=args.device,
                             name=args.recipe)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    T = info["seq_len"]
    head = f"{args.recipe}: {info['kind']}"
    if info["d_model"]:
        head += f", d_model={info['d_model']}"
    if info["vocab_size"]:
        head += f", vocab_size={info['vocab_size']}"
    print(head + f", {info['num_layers']} layers")
    if info["description"]:
        print(textwrap.fill(info["description"], 96, initial_indent="  ",
                            subsequent_indent="  "))
    rows = [("#", "mixer", "settings", "mixer", "block", f"state@{T}", "backend")]
    for r in info["layers"]:
        settings = " ".join(f"{k}={v}" for k, v in r["settings"].items())
        rows.append((str(r["index"]), r["type"], settings, human(r["mixer_params"]),
                     human(r["block_params"]) if r["block_params"] is not None else "-",
                     human(r["state_size"]) if r["state_size"] is not None else "-",
                     r["backend"]))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    right = {0, 3, 4, 5}
    print()
    for j, row in enumerate(rows):
        cells = [c.rjust(w) if i in right else c.ljust(w)
                 for i, (c, w) in enumerate(zip(row, widths))]
        print("  " + "  ".join(cells).rstrip())
        if j == 0:
            print("  " + "  ".join("-" * w for w in widths))
    t = info["totals"]
    print()
    line = f"parameters: {human(t['params'])} ({t['params']:,})"
    if t["embedding_params"] is not None:
        line += (f"; embedding {human(t['embedding_params'])}, non-embedding "
                 f"{human(t['non_embedding_params'])}")
    print(line)
    print(f"inference state at T={T}: {human(t['state_size'])} elements per sequence "
          f"({t['state_size']:,})")
    print(f"backend on {info['device']}: 'auto' runs the Triton kernels on CUDA tensors for "
          f"algorithms that have them and the PyTorch reference elsewhere; MIXZOO_BACKEND "
          f"overrides every layer.")
    return 0


# -- train -------------------------------------------------------------------------------

def _cmd_train(args: argparse.Namespace) -> int:
    from mixzoo.recipes import load_recipe
    recipe = load_recipe(args.recipe, args.overrides)
    if recipe.train is None:
        raise _CliError(f"{args.recipe}: the recipe has no `train:` section (task, steps, "
                        f"batch_size, lr, ...); add one or pass train.* overrides")
    from mixzoo.train import train_recipe
    _set_threads(args)
    from mixzoo.train import TrainingDiverged
    try:
        summary = train_recipe(recipe, progress=not args.quiet, run_dir=args.out)
    except TrainingDiverged as e:
        print(f"mixzoo train: {args.recipe}: training diverged: {e}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps({k: v for k, v in summary.items() if k != "history"}, indent=2))
        return 0
    final = summary["final"]
    metrics = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                       for k, v in final.items() if k not in ("lr", "elapsed_s"))
    best = summary.get("best") or {}
    key = summary.get("metric")
    extra = f" best_{key}={best[key]:.4g}" if key and key in best else ""
    print(f"final: {metrics}{extra} params={summary.get('num_params')} "
          f"time={summary.get('train_time_s')}s")
    return 0


# -- bench -------------------------------------------------------------------------------

def _bench_inputs(recipe, model, batch: int, seq_len: int, device):
    """A function returning a fresh scalar loss for one fwd pass on random inputs."""
    import torch
    m = recipe.model
    if m.kind == "causal_lm":
        ids = torch.randint(0, m.vocab_size, (batch, seq_len), device=device)
        return lambda: model(ids, labels=ids).loss, batch * seq_len, "tokens"
    if m.kind == "sequence":
        x = torch.randn(batch, seq_len, m.input_dim, device=device)
        return lambda: model(x).float().pow(2).mean(), batch * seq_len, "tokens"
    size = getattr(getattr(model, "patch_embed", None), "img_size", None) or (224, 224)
    x = torch.randn(batch, m.vision.in_chans, *size, device=device)
    return lambda: model(x).float().pow(2).mean(), batch, "images"


def _cmd_bench(args: argparse.Namespace) -> int:
    import torch
    from mixzoo.recipes import build_model, load_recipe
    recipe = load_recipe(args.recipe, args.overrides)
    _set_threads(args)
    if args.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(args.device)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise _CliError(f"--device {args.device}: CUDA is not available here")
    torch.manual_seed(0)
    with _building(args.recipe):
        model = build_model(recipe)
    model = model.to(device)
    model.train()
    params = sum(p.numel() for p in model.parameters())
    loss_fn, units, unit = _bench_inputs(recipe, model, args.batch, args.seq_len, device)
    autocast = args.dtype == "bf16" and device.type == "cuda"

    def step():
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            loss = loss_fn()
        loss.backward()
        model.zero_grad(set_to_none=True)

    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for _ in range(args.warmup):        # first calls compile / autotune kernels
        step()
    sync()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for _ in range(args.steps):
        t0 = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - t0)
    times.sort()
    median = times[len(times) // 2]
    if device.type == "cuda":
        peak, peak_what = torch.cuda.max_memory_allocated(device), "peak allocated (CUDA)"
    else:
        import resource
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        peak_what = "peak RSS of the whole process"
    result = {"recipe": args.recipe, "device": str(device), "dtype": args.dtype if autocast
              else "fp32", "batch": args.batch, "seq_len": args.seq_len if unit == "tokens"
              else None, "steps": args.steps, "warmup": args.warmup, "params": params,
              "median_step_s": median, "min_step_s": times[0],
              f"{unit}_per_s": units / median, "peak_memory_bytes": int(peak),
              "peak_memory_kind": peak_what}
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    from mixzoo.recipes.summary import human
    shape = f"B={args.batch} T={args.seq_len}" if unit == "tokens" else f"B={args.batch}"
    print(f"{args.recipe} on {device} ({result['dtype']}), {human(params)} parameters, {shape}")
    print(f"fwd+bwd: median {median * 1e3:.2f} ms/step (min {times[0] * 1e3:.2f}, "
          f"{args.steps} steps after {args.warmup} warm-up) = {human(units / median)} "
          f"{unit}/s")
    print(f"memory: {peak / 2**30:.2f} GiB {peak_what}")
    return 0


# -- the parser --------------------------------------------------------------------------

def _threads_arg(s: argparse.ArgumentParser) -> None:
    s.add_argument("--threads", type=int, default=None, metavar="N",
                   help="CPU threads for torch (default: torch's choice). Tiny models on a "
                        "busy machine often run several times faster with --threads 1.")


def _set_threads(args: argparse.Namespace) -> None:
    if getattr(args, "threads", None) is not None:
        if args.threads < 1:
            raise _CliError(f"--threads {args.threads}: expected a positive number")
        import torch
        torch.set_num_threads(args.threads)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mixzoo", description="A zoo of interchangeable sequence mixers: list them, "
        "inspect and train YAML recipes, run ablation grids.",
        epilog="RECIPE is a YAML file or a shipped recipe name (`mixzoo list --recipes`).")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    s = sub.add_parser("list", help="registered mixers (or --recipes: shipped recipes)")
    s.add_argument("pattern", nargs="?", default="*", help="fnmatch pattern (default: *)")
    s.add_argument("--json", action="store_true", help="machine-readable output")
    s.add_argument("--recipes", action="store_true", help="list the shipped recipes instead")
    s.set_defaults(func=_cmd_list)

    def recipe_args(s):
        s.add_argument("recipe", metavar="RECIPE", help="YAML file or shipped recipe name")
        s.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                       help="dotted overrides, e.g. model.d_model=128 model.pattern=[dn,swa]")

    s = sub.add_parser("show", help="the expanded layer table of a recipe")
    recipe_args(s)
    s.add_argument("--seq-len", type=int, default=2048,
                   help="sequence length for the inference-state sizes (default 2048)")
    s.add_argument("--device", default="auto",
                   help="device whose backends to show: auto|cpu|cuda (default auto)")
    s.add_argument("--json", action="store_true", help="machine-readable output")
    s.set_defaults(func=_cmd_show)

    s = sub.add_parser("train", help="train a recipe on its `train:` task")
    recipe_args(s)
    s.add_argument("--out", default=None, metavar="DIR",
                   help="write metrics.jsonl into DIR")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.add_argument("--json", action="store_true", help="print the summary as JSON")
    _threads_arg(s)
    s.set_defaults(func=_cmd_train)

    sub.add_parser("grid", help="ablation grids (see `mixzoo grid --help`)", add_help=False)

    s = sub.add_parser("bench", help="model fwd+bwd throughput and peak memory")
    recipe_args(s)
    s.add_argument("--batch", type=int, default=8)
    s.add_argument("--seq-len", type=int, default=512)
    s.add_argument("--steps", type=int, default=10, help="timed steps (median reported)")
    s.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    s.add_argument("--device", default="auto", help="auto|cpu|cuda|cuda:N")
    s.add_argument("--dtype", choices=("bf16", "fp32"), default="bf16",
                   help="bf16 = autocast on CUDA (CPU always runs fp32)")
    s.add_argument("--json", action="store_true", help="machine-readable output")
    _threads_arg(s)
    s.set_defaults(func=_cmd_bench)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `mixzoo` console script; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "grid":
        from mixzoo.grid.cli import main as grid_main
        return grid_main(argv[1:])
    parser = _parser()
    if not argv:
        parser.print_help()
        return 0
    # Overrides may come after options too (`show R --json model.d_model=64`): argparse
    # leaves those over, in order, and they join the positional ones.
    args, extra = parser.parse_known_args(argv)
    if extra:
        if not hasattr(args, "overrides") or any(x.startswith("-") for x in extra):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.overrides = list(args.overrides) + extra
    from mixzoo.recipes import RecipeError
    try:
        return args.func(args)
    except RecipeError as e:
        print(f"mixzoo {args.command}: {e}", file=sys.stderr)
        return EXIT_USAGE
    except _CliError as e:
        print(f"mixzoo {args.command}: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"mixzoo {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
