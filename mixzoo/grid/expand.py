"""Expanding a grid into runs, and validating every run before anything trains.

Each point is the base recipe with dotted overrides, applied in this order: the grid's
`task:` (replaces `train.task`), its `train:` settings, its `overrides:`, the overrides
given on the command line, then the point's axis values and seed. Every point is loaded
and validated (recipe schema, then the model built on the meta device, which checks the
mixer shapes without allocating memory); all bad points are reported together.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import re
from dataclasses import dataclass, field
from typing import Any, Iterable

from .spec import GridSpec

__all__ = ["GridPoint", "GridValidationError", "expand_grid", "describe_point_line", "point_overrides",
           "format_value", "run_id"]


@dataclass
class GridPoint:
    """One run of a grid: its axis values, overrides, and the validated recipe."""
    index: int
    values: dict[str, Any]                  # varied key -> value (axes, zip keys, train.seed)
    overrides: list[str]
    label: str = ""
    run_id: str = ""
    recipe: Any = None                      # mixzoo.recipes.Recipe once validated
    recipe_data: dict[str, Any] = field(default_factory=dict)   # its JSON form
    mixer: str = ""                         # distinct mixer types in layer order, "+"-joined
    task: str = ""                          # the task's registry name
    num_params: int | None = None
    state_size: int | None = None


class GridValidationError(ValueError):
    """Some expanded points are invalid; `problems` lists (point values, message)."""

    def __init__(self, grid: str, problems: list[tuple[dict[str, Any], str]], total: int):
        self.problems = problems
        lines = [f"grid {grid!r}: {len(problems)} of {total} points are invalid "
                 f"(nothing was run):"]
        for values, msg in problems:
            where = ", ".join(f"{k}={format_value(v)}" for k, v in values.items()) or "(base)"
            body = "\n      ".join(str(msg).strip().splitlines())
            lines.append(f"  - {where}\n      {body}")
        super().__init__("\n".join(lines))


def format_value(v: Any) -> str:
    """Short readable form of an axis value for labels and tables."""
    if isinstance(v, (list, tuple)):
        return "-".join(format_value(x) for x in v)
    if isinstance(v, dict):
        if "type" in v:
            rest = ",".join(f"{k}={format_value(x)}" for k, x in v.items() if k != "type")
            return f"{v['type']}({rest})" if rest else str(v["type"])
        return ",".join(f"{k}={format_value(x)}" for k, x in v.items())
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def describe_point_line(p: GridPoint) -> str:
    """One line for listings: id, mixer, size and the axis values."""
    vals = ", ".join(f"{k}={format_value(v)}" for k, v in p.values.items())
    return (f"{p.run_id}  {p.mixer}  params={p.num_params:,}  state={p.state_size}  "
            f"[{vals}]")


def _json(v: Any) -> str:
    return json.dumps(v, separators=(",", ":"))


def point_overrides(spec: GridSpec, values: dict[str, Any], cli: Iterable[str] = ()) -> list[str]:
    out: list[str] = []
    if spec.task is not None:
        out.append(f"train.task={_json(spec.task)}")
    out += [f"train.{k}={_json(v)}" for k, v in spec.train.items()]
    out += list(spec.overrides)
    out += list(cli)
    out += [f"{k}={_json(v)}" for k, v in values.items()]
    return out


def _label(values: dict[str, Any]) -> str:
    parts = []
    for k, v in values.items():
        short = "seed" if k == "train.seed" else k.rsplit(".", 1)[-1]
        # a whole spec (e.g. a task) is named by its type; the hash tells variants apart
        text = v["type"] if isinstance(v, dict) and "type" in v else format_value(v)
        parts.append(f"{short}={text}")
    text = "_".join(parts) or "base"
    text = re.sub(r"[^A-Za-z0-9._=+,-]+", "-", text)
    return text[:80].strip("-_") or "run"


def run_id(label: str, recipe_data: dict[str, Any]) -> str:
    """`<label>-<8 hex>`: the hash covers the resolved recipe except the device (where a
    run happens to execute does not change what it is)."""
    data = json.loads(json.dumps(recipe_data))
    if isinstance(data.get("train"), dict):
        data["train"].pop("device", None)
    digest = hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:8]
    return f"{label}-{digest}"


def _points(spec: GridSpec) -> list[dict[str, Any]]:
    dims: list[list[dict[str, Any]]] = []
    for k, vals in spec.axes.items():
        dims.append([{k: v} for v in vals])
    for g in spec.zip:
        n = len(next(iter(g.values())))
        dims.append([{k: vals[i] for k, vals in g.items()} for i in range(n)])
    if spec.seeds is not None:
        dims.append([{"train.seed": s} for s in spec.seeds])
    points = []
    for combo in itertools.product(*dims):
        values: dict[str, Any] = {}
        for part in combo:
            values.update(part)
        points.append(values)
    return points


def _describe(recipe: Any) -> tuple[str, int, int | None]:
    """(mixer label, parameters, inference-state size at the task's seq_len), built on
    the meta device so that validating a 340M-parameter grid costs no memory."""
    import torch
    from mixzoo.recipes import build_model
    with torch.device("meta"):
        model = build_model(recipe)
    params = sum(p.numel() for p in model.parameters())
    types: list[str] = []
    blocks = getattr(getattr(model, "backbone", None), "blocks", [])
    for b in blocks:
        t = b.mixer.config.type
        if t not in types:
            types.append(t)
    state = None
    backbone = getattr(model, "backbone", None)
    if recipe.train is not None and backbone is not None:
        from mixzoo.tasks import build_task
        state = int(backbone.state_size(build_task(recipe.train.task).seq_len))
    return "+".join(types), params, state


def expand_grid(spec: GridSpec, cli_overrides: Iterable[str] = ()) -> list[GridPoint]:
    """Every point of the grid, validated; raises GridValidationError listing all bad ones."""
    from mixzoo.recipes import load_recipe
    from .spec import GridSpecError
    cli_overrides = list(cli_overrides)
    for text in cli_overrides:
        key = text.lstrip("~+").split("=", 1)[0].strip()
        if key in spec.varied_keys():
            raise GridSpecError(f"override {text!r}: {key} is an axis of grid {spec.name!r}; "
                                f"change the grid's axes instead")
    base = spec.resolve_base()
    points: list[GridPoint] = []
    problems: list[tuple[dict[str, Any], str]] = []
    for i, values in enumerate(_points(spec)):
        p = GridPoint(index=i, values=values, overrides=point_overrides(spec, values, cli_overrides))
        try:
            recipe = load_recipe(base, p.overrides)
            if recipe.train is None:
                raise ValueError("the recipe has no `train:` section; give the grid a `task:` "
                                 "and `train:` settings")
            p.recipe = recipe
            p.recipe_data = recipe.model_dump(mode="json", exclude_none=True)
            p.mixer, p.num_params, p.state_size = _describe(recipe)
            p.task = recipe.train.task.type
        except Exception as e:  # every problem is collected, none stops the check
            problems.append((values, f"{type(e).__name__}: {e}" if not isinstance(e, ValueError)
                             else str(e)))
            continue
        p.label = _label(values)
        p.run_id = run_id(p.label, p.recipe_data)
        points.append(p)
    if problems:
        raise GridValidationError(spec.name, problems, len(problems) + len(points))
    ids = [p.run_id for p in points]
    dup = sorted({x for x in ids if ids.count(x) > 1})
    if dup:
        raise GridValidationError(spec.name, [({}, f"points resolve to the same recipe: "
                                                   f"{', '.join(dup)} (an axis has no effect?)")],
                                  len(points))
    return points
