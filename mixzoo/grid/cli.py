"""`mixzoo grid ...` (the main CLI passes everything after `grid` to `main`).

    mixzoo grid GRID [overrides...] [--out DIR] [--resume | --overwrite] [--devices cuda:0,cuda:1]
    mixzoo grid plot RESULTS_DIR --x model.d_model [--y accuracy] [--hue mixer] [--out PNG]
    mixzoo grid list

GRID is a grid YAML file or the name of a shipped grid (`mixzoo grid list`). Overrides are
dotted recipe keys applied to every run (`train.steps=100`). Exit status: 0 when every
run finished, 1 when any failed, 2 for a bad grid or bad arguments.
"""
from __future__ import annotations

import argparse
import sys
import time

__all__ = ["main"]


def _run_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mixzoo grid",
        description="Run an ablation grid: one base recipe, axes of dotted recipe keys, "
                    "every point validated first, then trained and tabulated. "
                    "Other forms: `mixzoo grid plot RESULTS_DIR --x KEY`, `mixzoo grid list`.")
    p.add_argument("grid", help="grid YAML file or shipped grid name (`mixzoo grid list`)")
    p.add_argument("overrides", nargs="*", help="recipe overrides for every run, e.g. "
                                                "train.steps=100")
    p.add_argument("--out", help="output folder (default: grid-results/<grid name>)")
    p.add_argument("--resume", action="store_true",
                   help="skip finished runs; rerun failed and interrupted ones")
    p.add_argument("--overwrite", action="store_true",
                   help="delete earlier results in the output folder first")
    p.add_argument("--devices", default="auto",
                   help="comma-separated devices, one run per device at a time in a process "
                        "pool (e.g. cuda:0,cuda:1; cpu,cpu = two CPU runs at once); one "
                        "device runs sequentially in this process; auto (default): every "
                        "GPU, or one single-threaded CPU worker per core")
    p.add_argument("--dry-run", action="store_true",
                   help="expand and validate, list the runs, train nothing")
    p.add_argument("--no-plot", action="store_true", help="skip the grid's plot at the end")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    return p


def _plot_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mixzoo grid plot",
                                description="Plot a grid's results (needs matplotlib).")
    p.add_argument("results_dir")
    p.add_argument("--x", required=True, help="x column, e.g. model.d_model")
    p.add_argument("--y", default="accuracy", help="y column (default: accuracy)")
    p.add_argument("--hue", default="mixer", help="one line per value (default: mixer; "
                                                  "'none' for a single line)")
    p.add_argument("--agg", default="mean", choices=["mean", "max"],
                   help="combine runs at one point: mean (min-max bars) or max (best)")
    p.add_argument("--out", help="PNG path (default: RESULTS_DIR/<y>_vs_<x>.png)")
    return p


def _err(msg: str) -> None:
    print(f"mixzoo grid: error: {msg}", file=sys.stderr)


def _plot(argv: list[str]) -> int:
    from .plot import PlotUnavailable, plot_results
    args = _plot_parser().parse_args(argv)
    hue = None if args.hue in ("", "none") else args.hue
    try:
        path = plot_results(args.results_dir, args.x, args.y, hue, out=args.out, agg=args.agg)
    except (PlotUnavailable, FileNotFoundError, KeyError, ValueError) as e:
        _err(e.args[0] if e.args else str(e))
        return 2
    print(f"wrote {path}")
    return 0


def _list() -> int:
    from .spec import grid_path, list_grids, load_grid
    for name in list_grids():
        spec = load_grid(grid_path(name))
        print(f"{name:14s} {(spec.description or '').strip().splitlines()[0] if spec.description else ''}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "plot":
        return _plot(argv[1:])
    if argv and argv[0] == "list":
        return _list()
    args = _run_parser().parse_intermixed_args(argv)
    if args.resume and args.overwrite:
        _err("--resume and --overwrite contradict each other")
        return 2

    from .executor import make_executor
    from .expand import GridValidationError, describe_point_line
    from .runner import GridOutputExists, run_grid
    from .spec import GridSpecError, load_grid
    try:
        from mixzoo.recipes import RecipeError
    except ImportError:  # pragma: no cover
        RecipeError = ValueError  # type: ignore
    t0 = time.perf_counter()
    try:
        spec = load_grid(args.grid)
        if args.dry_run:
            from .expand import expand_grid
            points = expand_grid(spec, args.overrides)
            print(f"grid {spec.name}: {len(points)} runs, all valid")
            for p in points:
                print(describe_point_line(p))
            return 0
        if args.devices == "auto":
            devices = None
            executor = None            # run_grid picks auto_devices(runs left to do)
        else:
            devices = [d.strip() for d in args.devices.split(",") if d.strip()]
            executor = make_executor(devices)
        result = run_grid(spec, args.out, resume=args.resume, overwrite=args.overwrite,
                          executor=executor, cli_overrides=args.overrides,
                          progress=not args.quiet)
    except (GridSpecError, GridValidationError, GridOutputExists, RecipeError) as e:
        _err(str(e))
        return 2
    except KeyboardInterrupt:
        _err("interrupted; finished runs are kept, rerun with --resume to continue")
        return 130

    print()
    print(result.table, end="")
    if spec.plot is not None and not args.no_plot:
        from .plot import PlotUnavailable, plot_results
        if any(r.get("status") == "done" for r in result.rows):
            try:
                png = plot_results(result.out_dir, spec.plot.x, spec.plot.y, spec.plot.hue,
                                   title=f"{spec.name}", agg=spec.plot.agg)
                print(f"plot: {png}")
            except PlotUnavailable as e:
                print(f"(no plot: {e})")
    print(f"results: {result.out_dir}/results.csv, results.jsonl, summary.md")
    n_fail = len(result.failed)
    wall = time.perf_counter() - t0
    print(f"{len(result.rows)} runs ({result.ran} run now, {result.skipped} already done), "
          f"{n_fail} failed, {wall:.0f}s")
    return 1 if n_fail else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
