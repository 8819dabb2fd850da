"""The grid file: one base recipe, the task and training settings, and the axes to vary.

    name: mqar-small                 # default: the file name
    base: deltanet-tiny              # a shipped recipe name, a path, or an inline mapping
    task: {type: mqar, seq_len: 64, num_kv_pairs: 8, vocab_size: 64}   # replaces train.task
    train: {steps: 400, lr: 3.0e-3}  # train.<key> for every run
    overrides: ["~model.layers"]     # any recipe overrides for every run (`~key` deletes)
    axes:                            # dotted recipe keys -> values (Cartesian product)
      model.d_model: [32, 64]
      model.pattern: [[dn, dn], [dn, swa]]
    zip:                             # groups whose lists vary together (same length)
      - {model.d_model: [64, 128], train.lr: [3.0e-3, 1.0e-3]}
    seeds: [0, 1]                    # train.seed (the seed also fixes the model init)
    plot: {x: model.d_model, y: accuracy, hue: mixer}   # drawn at the end of the grid

Shipped grids live in `mixzoo/grid/shipped/` (`list_grids()`).
"""
from __future__ import annotations

import difflib
import fnmatch
import os
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

__all__ = ["GridSpec", "PlotSpec", "GridSpecError", "load_grid", "list_grids", "grid_path"]


class GridSpecError(ValueError):
    """A grid file that cannot be read or is malformed (not a bad point: see expand.py)."""


class PlotSpec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    x: str
    y: str = "accuracy"
    hue: str | None = "mixer"
    # How runs that share (hue, x) combine: "mean" (with min-max bars) or "max" (the best
    # of e.g. a learning-rate sweep, as Zoology reports).
    agg: Literal["mean", "max"] = "mean"


class GridSpec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    description: str | None = None
    base: str | dict[str, Any]
    task: dict[str, Any] | None = None
    train: dict[str, Any] = Field(default_factory=dict)
    overrides: list[str] = Field(default_factory=list)
    axes: dict[str, list[Any]] = Field(default_factory=dict)
    zip: list[dict[str, list[Any]]] = Field(default_factory=list)
    seeds: list[int] | None = None
    plot: PlotSpec | None = None
    # Folder that relative `base:` paths are resolved against (the grid file's folder).
    root: str | None = None

    @field_validator("axes")
    @classmethod
    def _axes(cls, v: dict[str, list[Any]]) -> dict[str, list[Any]]:
        for k, vals in v.items():
            if not vals:
                raise ValueError(f"axis {k!r} has no values")
        return v

    @field_validator("zip")
    @classmethod
    def _zip(cls, groups: list[dict[str, list[Any]]]) -> list[dict[str, list[Any]]]:
        for i, g in enumerate(groups):
            if not g:
                raise ValueError(f"zip group {i} is empty")
            lens = {k: len(vals) for k, vals in g.items()}
            if len(set(lens.values())) != 1:
                raise ValueError(f"zip group {i}: every list must have the same length, got "
                                 + ", ".join(f"{k}: {n}" for k, n in lens.items()))
            if 0 in lens.values():
                raise ValueError(f"zip group {i} has no values")
        return groups

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, v: list[int] | None) -> list[int] | None:
        if v is not None and (not v or len(set(v)) != len(v)):
            raise ValueError(f"seeds must be a non-empty list of distinct ints, got {v}")
        return v

    @model_validator(mode="after")
    def _unique_keys(self):
        seen: dict[str, str] = {}
        where = [("axes", k) for k in self.axes]
        where += [(f"zip[{i}]", k) for i, g in enumerate(self.zip) for k in g]
        for place, k in where:
            if k in seen:
                raise ValueError(f"key {k!r} is varied twice ({seen[k]} and {place})")
            seen[k] = place
        if self.seeds is not None and "train.seed" in seen:
            raise ValueError("give `seeds:` or a `train.seed` axis, not both")
        return self

    def varied_keys(self) -> list[str]:
        keys = list(self.axes) + [k for g in self.zip for k in g]
        return keys + (["train.seed"] if self.seeds is not None else [])

    def resolve_base(self) -> str | dict[str, Any]:
        """An inline mapping, a path (relative to the grid file first), or a recipe name."""
        if isinstance(self.base, dict):
            return self.base
        if self.root is not None and (Path(self.root) / self.base).is_file():
            return str(Path(self.root) / self.base)
        return self.base


def _shipped_dir():
    return resources.files("mixzoo.grid").joinpath("shipped")


def list_grids(pattern: str = "*") -> list[str]:
    """Names of the grids shipped with mixzoo, fnmatch-filtered."""
    names = [p.name[:-5] for p in _shipped_dir().iterdir() if p.name.endswith(".yaml")]
    return sorted(n for n in names if fnmatch.fnmatchcase(n, pattern))


def grid_path(path_or_name: str | os.PathLike) -> Path:
    p = Path(path_or_name)
    if p.is_file():
        return p
    text = str(path_or_name)
    if p.suffix in (".yaml", ".yml") or "/" in text or os.sep in text:
        raise GridSpecError(f"{text}: no such grid file")
    shipped = _shipped_dir().joinpath(f"{text}.yaml")
    if not shipped.is_file():
        names = list_grids()
        close = difflib.get_close_matches(text, names, n=3, cutoff=0.5)
        hint = f"did you mean {', '.join(repr(c) for c in close)}? " if close else ""
        raise GridSpecError(f"no grid file or shipped grid named {text!r}; {hint}"
                            f"shipped grids: {', '.join(names)}")
    return Path(str(shipped))


def load_grid(path_or_name: str | os.PathLike | dict[str, Any]) -> GridSpec:
    """A validated GridSpec from a YAML file, a shipped grid name, or a mapping."""
    if isinstance(path_or_name, dict):
        data, source, root = dict(path_or_name), "<grid>", None
        data.setdefault("name", "grid")
    else:
        path = grid_path(path_or_name)
        source, root = str(path), str(path.parent)
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            raise GridSpecError(f"{source}:{where} YAML syntax error: "
                                f"{getattr(e, 'problem', None) or e}") from None
        if not isinstance(data, dict):
            raise GridSpecError(f"{source}: a grid file is a mapping with `base:` and `axes:`")
        data.setdefault("name", path.stem)
    if root is not None and "root" not in data:
        data["root"] = root
    try:
        return GridSpec.model_validate(data)
    except ValidationError as e:
        lines = []
        for err in e.errors():
            loc = ".".join(str(x) for x in err["loc"]) or "(grid)"
            lines.append(f"  {loc}: {err['msg'].removeprefix('Value error, ')}")
        raise GridSpecError(f"{source}: invalid grid\n" + "\n".join(lines)) from None
