"""`mixzoo grid plot`: one line per hue value, y against x, from a grid's results.jsonl.

Needs matplotlib (`pip install 'mixzoo[plot]'`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from .results import read_results

__all__ = ["plot_results", "PlotUnavailable"]


class PlotUnavailable(ImportError):
    pass


def _num(v: Any) -> float | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, float)):
        return float(v)
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def plot_results(results_dir: str | Path, x: str, y: str = "accuracy", hue: str | None = "mixer",
                 out: str | Path | None = None, title: str | None = None,
                 agg: str = "mean") -> Path:
    """Write a PNG of `y` against `x`, one line per value of `hue`. Runs sharing a point
    (seeds, other axes) are combined by `agg`: "mean" (with min-max error bars) or "max"
    (the best, e.g. over a learning-rate sweep). Only finished runs are plotted.
    Returns the PNG path."""
    if agg not in ("mean", "max"):
        raise ValueError(f"agg must be 'mean' or 'max', got {agg!r}")
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        raise PlotUnavailable("plotting needs matplotlib: pip install 'mixzoo[plot]' "
                              f"({e})") from None
    results_dir = Path(results_dir)
    rows = [r for r in read_results(results_dir) if r.get("status") == "done"]
    if not rows:
        raise ValueError(f"{results_dir}: no finished runs to plot")
    for key in (x, y) + ((hue,) if hue else ()):
        if not any(key in r for r in rows):
            cols = sorted({k for r in rows for k in r})
            raise KeyError(f"column {key!r} is not in {results_dir}/results.jsonl; "
                           f"columns: {', '.join(cols)}")
    xs_all = [r.get(x) for r in rows]
    numeric_x = all(_num(v) is not None for v in xs_all)
    cats = sorted({str(v) for v in xs_all}) if not numeric_x else []

    groups: dict[str, dict[Any, list[float]]] = {}
    for r in rows:
        yv = _num(r.get(y))
        if yv is None:
            continue
        xv = _num(r.get(x)) if numeric_x else cats.index(str(r.get(x)))
        groups.setdefault(str(r.get(hue)) if hue else y, {}).setdefault(xv, []).append(yv)

    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    for name in sorted(groups):
        pts = sorted(groups[name].items())
        xs = [p[0] for p in pts]
        if agg == "max":
            means = [max(v) for _, v in pts]
        else:
            means = [sum(v) / len(v) for _, v in pts]
        lo = [m - min(v) for m, (_, v) in zip(means, pts)]
        hi = [max(v) - m for m, (_, v) in zip(means, pts)]
        if agg == "mean" and any(len(v) > 1 for _, v in pts):
            ax.errorbar(xs, means, yerr=[lo, hi], marker="o", capsize=3, label=name)
        else:
            ax.plot(xs, means, marker="o", label=name)
    if numeric_x:
        xv = sorted({_num(v) for v in xs_all})
        if len(xv) > 2 and xv[0] > 0 and xv[-1] / xv[0] >= 8:
            ax.set_xscale("log", base=2)
        ax.set_xticks(xv)
        ax.set_xticklabels([f"{v:g}" for v in xv])
    else:
        ax.set_xticks(range(len(cats)))
        ax.set_xticklabels(cats, rotation=20, ha="right")
    ax.set_xlabel(x)
    ax.set_ylabel(y if agg == "mean" else f"{y} (best run)")
    if y.endswith("accuracy"):
        ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    if hue:
        ax.legend(title=hue, fontsize="small")
    ax.set_title(title or results_dir.name)
    fig.tight_layout()
    out = Path(out) if out is not None else results_dir / f"{_safe(y)}_vs_{_safe(x)}.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(out)
    return out


def _safe(s: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "-" for c in s)
