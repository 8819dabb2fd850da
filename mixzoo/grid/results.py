"""Grid results: one row per run -> results.jsonl, results.csv and summary.md.

A row holds the run's id and label, its axis values (one column per varied dotted key),
the mixer label, parameters, inference-state size, the final eval metrics, the best
value of the task's primary metric, train time, status and error.
"""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from .expand import GridPoint, format_value
from .io import atomic_write_text

__all__ = ["result_row", "write_results", "read_results", "markdown_table"]

_SKIP_FINAL = ("lr", "elapsed_s", "step")


def result_row(point: GridPoint, status: dict[str, Any] | None) -> dict[str, Any]:
    status = status or {"status": "pending"}
    row: dict[str, Any] = {"run_id": point.run_id, "label": point.label}
    for k, v in point.values.items():
        row[k] = v if isinstance(v, (int, float, str, bool)) or v is None else format_value(v)
    row.update(mixer=point.mixer, task=point.task, num_params=point.num_params, state_size=point.state_size,
               status=status.get("status"))
    res = status.get("result") or {}
    final = res.get("final") or {}
    for k, v in final.items():
        if k not in _SKIP_FINAL:
            row[k] = v
    metric = res.get("metric")
    best = res.get("best") or {}
    if metric and metric in best:
        row[f"best_{metric}"] = best[metric]
        row["best_step"] = best.get("step")
    row["steps"] = res.get("steps")
    row["train_time_s"] = res.get("train_time_s")
    row["error"] = status.get("error")
    return row


def _columns(rows: list[dict[str, Any]]) -> list[str]:
    cols: list[str] = []
    for r in rows:
        for k in r:
            if k not in cols:
                cols.append(k)
    return cols


def markdown_table(rows: list[dict[str, Any]], varied: list[str]) -> str:
    """A compact table: axis values, mixer, size, final/best metric, time, status."""
    if not rows:
        return "(no runs)\n"
    metric_cols = [c for c in ("accuracy", "best_accuracy", "eval_loss") if any(c in r for r in rows)]
    cols = [k for k in varied if k not in ("model.pattern", "model.layers", "train.task")]
    if len({r.get("task") for r in rows}) > 1:
        cols.append("task")
    cols += ["mixer", "num_params", "state_size"] + metric_cols + ["train_time_s", "status"]
    head = [("seed" if c == "train.seed" else c.rsplit(".", 1)[-1] if "." in c else c)
            for c in cols]
    head = [{"num_params": "params", "state_size": "state", "train_time_s": "time_s"}.get(h, h)
            for h in head]

    def cell(r: dict[str, Any], c: str) -> str:
        v = r.get(c)
        if v is None:
            return ""
        if isinstance(v, float):
            return f"{v:.1f}" if c == "train_time_s" else f"{v:.3f}"
        if isinstance(v, int) and c in ("num_params", "state_size"):
            return _human(v)
        return str(v)

    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for r in rows:
        lines.append("| " + " | ".join(cell(r, c) for c in cols) + " |")
    return "\n".join(lines) + "\n"


def _human(n: int) -> str:
    for unit, k in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= k:
            return f"{n / k:.1f}{unit}"
    return str(n)


def write_results(out_dir: str | Path, rows: list[dict[str, Any]], varied: list[str],
                  title: str) -> str:
    """Write results.jsonl, results.csv and summary.md atomically; return the markdown."""
    out_dir = Path(out_dir)
    atomic_write_text(out_dir / "results.jsonl",
                      "".join(json.dumps(r, default=str) + "\n" for r in rows))
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=_columns(rows), extrasaction="ignore")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if v is None else v) for k, v in r.items()})
    atomic_write_text(out_dir / "results.csv", buf.getvalue())
    n_done = sum(r.get("status") == "done" for r in rows)
    n_fail = sum(r.get("status") == "failed" for r in rows)
    table = markdown_table(rows, varied)
    md = [f"# {title}", "", f"{len(rows)} runs: {n_done} done, {n_fail} failed, "
          f"{len(rows) - n_done - n_fail} not finished.", "", table]
    for r in rows:
        if r.get("status") == "failed":
            md.append(f"- `{r['run_id']}` failed: {r.get('error')}")
    atomic_write_text(out_dir / "summary.md", "\n".join(md).rstrip() + "\n")
    return table


def read_results(out_dir: str | Path) -> list[dict[str, Any]]:
    path = Path(out_dir) / "results.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no results here (run `mixzoo grid GRID.yaml` first)")
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
