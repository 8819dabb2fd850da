"""Running a grid: expand and validate, skip what is done, run the rest, tabulate.

Output layout (`out_dir`, by default `grid-results/<grid name>/`):

    grid.yaml              the grid as run (after defaults), for the record
    runs/<id>/recipe.yaml  the resolved recipe of each run (`mixzoo train` can re-run it)
    runs/<id>/metrics.jsonl  one line per evaluation
    runs/<id>/status.json  running | done (with the summary) | failed (with the error)
    results.jsonl / results.csv / summary.md   one row per run, rewritten after each run

Every write is atomic, and results are rewritten after each finished run, so killing the
grid at any moment loses at most the runs in progress; `resume=True` skips runs whose
status is "done" and reruns failed and interrupted ones.
"""
from __future__ import annotations

import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, TextIO

import yaml

from .executor import Executor, RunJob, SequentialExecutor, auto_devices, make_executor
from .expand import GridPoint, expand_grid
from .io import atomic_write_text, read_json
from .results import result_row, write_results
from .spec import GridSpec

__all__ = ["GridResult", "GridOutputExists", "run_grid", "default_out_dir"]


class GridOutputExists(FileExistsError):
    pass


@dataclass
class GridResult:
    out_dir: Path
    rows: list[dict[str, Any]]
    table: str
    ran: int                    # runs executed in this call
    skipped: int                # runs already done (resume)
    wall_s: float

    @property
    def failed(self) -> list[dict[str, Any]]:
        return [r for r in self.rows if r.get("status") != "done"]

    @property
    def ok(self) -> bool:
        return not self.failed


def default_out_dir(spec: GridSpec) -> Path:
    return Path("grid-results") / spec.name


def _has_runs(out_dir: Path) -> bool:
    runs = out_dir / "runs"
    return runs.is_dir() and any(runs.iterdir())


def run_grid(spec: GridSpec, out_dir: str | Path | None = None, *, resume: bool = False,
             overwrite: bool = False, executor: Executor | None = None,
             cli_overrides: Iterable[str] = (), progress: bool = True,
             log: TextIO | None = None) -> GridResult:
    """Run every point of `spec`; see the module docstring for the files written.

    `executor` decides where runs execute; None = `auto_devices`: every GPU, or one
    single-threaded CPU worker per core.

    Raises GridValidationError (nothing runs) if any point is invalid, and
    GridOutputExists if `out_dir` holds runs and neither `resume` nor `overwrite` is set.
    """
    log = log or sys.stdout
    t0 = time.perf_counter()
    out_dir = Path(out_dir) if out_dir is not None else default_out_dir(spec)

    def say(msg: str) -> None:
        if progress:
            print(msg, file=log, flush=True)

    points = expand_grid(spec, cli_overrides)
    varied = spec.varied_keys()
    say(f"grid {spec.name}: {len(points)} runs, all valid -> {out_dir}")

    if _has_runs(out_dir) and not resume:
        if not overwrite:
            raise GridOutputExists(f"{out_dir} already holds runs; pass --resume to continue "
                                   f"them, --overwrite to start again, or --out DIR")
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_dir / "grid.yaml", yaml.safe_dump(
        {**spec.model_dump(mode="json", exclude={"root"}, exclude_none=True),
         "cli_overrides": list(cli_overrides)}, sort_keys=False))

    statuses: dict[str, dict[str, Any] | None] = {}
    todo: list[GridPoint] = []
    for p in points:
        st = read_json(out_dir / "runs" / p.run_id / "status.json") if resume else None
        if st is not None and st.get("status") == "done":
            statuses[p.run_id] = st
        else:
            statuses[p.run_id] = None
            todo.append(p)
    skipped = len(points) - len(todo)
    if resume:
        say(f"resume: {skipped} runs already done, {len(todo)} to run")

    def table() -> str:
        rows = [result_row(p, statuses[p.run_id]) for p in points]
        return write_results(out_dir, rows, varied, f"grid {spec.name}")

    table()
    if executor is None:
        executor = make_executor(auto_devices(len(todo))) if todo else SequentialExecutor()
    if todo:
        say(f"running {len(todo)} runs: {executor.describe()}")
    jobs = [RunJob(p.run_id, str(out_dir / "runs" / p.run_id), p.recipe_data,
                   progress=progress and executor.interactive) for p in todo]
    by_id = {p.run_id: p for p in todo}
    n_total = len(todo)
    for n, p in enumerate(todo[:1], 1):     # announce the first run before it starts
        if executor.interactive:
            say(f"[{skipped + n}/{len(points)}] {p.run_id} ({p.mixer}, "
                f"{p.num_params:,} params)")
    for n, (job, st) in enumerate(executor.run(jobs), 1):
        statuses[job.run_id] = st
        table()
        p = by_id[job.run_id]
        if st.get("status") == "done":
            res = st["result"]
            key = res.get("metric")
            final = res.get("final", {})
            msg = f"{key}={final.get(key, float('nan')):.3f}" if key else ""
            say(f"  done {job.run_id}: {msg} ({res.get('train_time_s', 0):.1f}s) "
                f"[{n}/{n_total}, {time.perf_counter() - t0:.0f}s elapsed]")
        else:
            say(f"  FAILED {job.run_id}: {st.get('error')} [{n}/{n_total}]")
        if executor.interactive and n < n_total:
            nxt = todo[n]
            say(f"[{skipped + n + 1}/{len(points)}] {nxt.run_id} ({nxt.mixer}, "
                f"{nxt.num_params:,} params)")

    rows = [result_row(p, statuses[p.run_id]) for p in points]
    text = write_results(out_dir, rows, varied, f"grid {spec.name}")
    return GridResult(out_dir=out_dir, rows=rows, table=text, ran=len(todo), skipped=skipped,
                      wall_s=time.perf_counter() - t0)
