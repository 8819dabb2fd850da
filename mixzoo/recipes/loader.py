"""Loading recipes: YAML -> omegaconf (interpolation, dotted overrides) -> plain data ->
pydantic (`Recipe`). And `build_model(recipe)`.

    recipe = load_recipe("deltanet-swa-tiny", ["model.d_model=128", "train.steps=50"])
    model = build_model(recipe)

Overrides are `key.path=value` (the value is parsed as YAML: `model.pattern=[dn,swa]`,
`model.layers.3.window=1024`, `train.lr=1e-3`), or `~key.path` to delete a key (for
instance `~model.layers` before switching a recipe to `model.pattern=...`).
YAML is loaded with a safe loader: no tags that import or run code, and recipes name
mixers by registry key, never by import path.
"""
from __future__ import annotations

import difflib
import fnmatch
import os
from importlib import resources
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException
from pydantic import ValidationError
from torch import nn

from .errors import Issue, RecipeError, yaml_locator, yaml_syntax_issue
from .schema import Recipe

__all__ = ["load_recipe", "build_model", "list_recipes", "recipe_path"]

_SHIPPED = "shipped"


def _shipped_dir():
    return resources.files("mixzoo.recipes").joinpath(_SHIPPED)


def list_recipes(pattern: str = "*") -> list[str]:
    """Names of the recipes shipped with mixzoo (package data), fnmatch-filtered."""
    names = [p.name[:-5] for p in _shipped_dir().iterdir() if p.name.endswith(".yaml")]
    return sorted(n for n in names if fnmatch.fnmatchcase(n, pattern))


def recipe_path(name: str) -> Path:
    """The file of a shipped recipe; a close-match `RecipeError` if there is none."""
    path = _shipped_dir().joinpath(f"{name}.yaml")
    if not path.is_file():
        names = list_recipes()
        close = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
        hint = f"did you mean {', '.join(repr(c) for c in close)}? " if close else ""
        raise RecipeError(None, [Issue("", f"no recipe file or shipped recipe named {name!r}; "
                                           f"{hint}shipped: {', '.join(names)}")])
    return Path(str(path))


def _read(path_or_name: str | os.PathLike) -> tuple[str, str]:
    """(YAML text, source label) for a file path or a shipped recipe name."""
    p = Path(path_or_name)
    if p.is_file():
        return p.read_text(encoding="utf-8"), str(path_or_name)
    text = str(path_or_name)
    if p.suffix in (".yaml", ".yml") or os.sep in text or "/" in text:
        raise RecipeError(str(path_or_name), [Issue("", "no such file")])
    path = recipe_path(text)
    return path.read_text(encoding="utf-8"), str(path)


def _parse(text: str, source: str) -> DictConfig:
    try:
        cfg = OmegaConf.create(text)
    except yaml.YAMLError as e:
        raise RecipeError(source, [yaml_syntax_issue(e)]) from None
    except OmegaConfBaseException as e:
        raise RecipeError(source, [Issue("", f"cannot read the recipe: {e}")]) from None
    if not isinstance(cfg, DictConfig):
        raise RecipeError(source, [Issue("", "a recipe is a mapping with a `model:` section, "
                                             f"got a {type(cfg).__name__}")])
    return cfg


def _normalise_specs(cfg: DictConfig) -> None:
    """Plain mixer names in `model.layers` -> {type: name}, so that an override such as
    `model.layers.3.window=64` adds a field instead of replacing the name."""
    from mixzoo.registry import list_mixers
    model = cfg.get("model") if "model" in cfg else None
    if not isinstance(model, DictConfig):
        return
    if OmegaConf.is_interpolation(model, "layers") or \
            not isinstance(model.get("layers"), ListConfig):
        return
    layers = model.layers
    presets = model.get("presets") if isinstance(model.get("presets"), DictConfig) else {}
    names = set(list_mixers())
    for i in range(len(layers)):
        if OmegaConf.is_interpolation(layers, i):
            continue
        val = layers[i]
        if isinstance(val, str) and val in names and val not in presets:
            layers[i] = {"type": val}


def _fill_task_defaults(cfg: DictConfig) -> None:
    """Write the task's defaults into `train.task` (keys the recipe leaves out only), so
    that `${train.task.vocab_size}` resolves for a task given as just `{type: ...}`.
    A task that does not validate is left alone: validation reports it in context."""
    task = OmegaConf.select(cfg, "train.task")
    if not isinstance(task, DictConfig):
        return
    try:
        from mixzoo.tasks import build_task_config
        full = build_task_config(OmegaConf.to_container(task, resolve=True))
    except Exception:  # noqa: BLE001 -- reported by validation, with its location
        return
    for key, value in full.model_dump(mode="json").items():
        if key not in task:
            task[key] = value


def _split_override(text: str) -> tuple[str, str | None]:
    text = text.strip()
    if text.startswith("~"):
        return text[1:], None
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ValueError("expected key.path=value or ~key.path")
    return key.strip().lstrip("+"), value


def _apply_overrides(cfg: DictConfig, overrides: Iterable[str], source: str
                     ) -> dict[tuple, str]:
    applied: dict[tuple, str] = {}
    issues = []
    for text in overrides:
        try:
            key, value = _split_override(text)
            if value is None:
                parent_key, _, leaf = key.rpartition(".")
                parent = OmegaConf.select(cfg, parent_key) if parent_key else cfg
                if parent is None or (isinstance(parent, DictConfig) and leaf not in parent):
                    raise KeyError(f"{key} is not in the recipe")
                if isinstance(parent, ListConfig):
                    del parent[int(leaf)]
                else:
                    del parent[leaf]
            else:
                # Parsed as YAML like omegaconf's dotlist; a mapping value replaces the
                # old one instead of merging into it (an axis value is the whole spec).
                parsed = OmegaConf.to_container(OmegaConf.from_dotlist([f"v={value}"]))["v"]
                OmegaConf.update(cfg, key, parsed, merge=False)
        except (ValueError, KeyError, IndexError, OmegaConfBaseException, yaml.YAMLError) as e:
            reason = str(e).splitlines()[0] if str(e) else type(e).__name__
            issues.append(Issue("", f"cannot apply: {reason}", origin=f"override {text!r}"))
            continue
        applied[tuple(key.split("."))] = text
    if issues:
        raise RecipeError(source, issues)
    return applied


def load_recipe(path_or_name: str | os.PathLike | Mapping[str, Any] | Recipe,
                overrides: Iterable[str] = ()) -> Recipe:
    """A validated Recipe from a YAML file, a shipped recipe name (see `list_recipes()`),
    a mapping, or a Recipe, with dotted `overrides` applied first.

    Raises `RecipeError` (a ValueError) naming the source, the dotted path of every bad
    field, its value and what was allowed."""
    overrides = list(overrides)
    if isinstance(path_or_name, Recipe):
        if not overrides:
            return path_or_name
        path_or_name = path_or_name.model_dump(mode="json")
    locate = None
    if isinstance(path_or_name, Mapping):
        source = "<recipe>"
        try:
            cfg = OmegaConf.create(dict(path_or_name))
        except OmegaConfBaseException as e:
            raise RecipeError(source, [Issue("", f"cannot read the recipe: {e}")]) from None
    else:
        text, source = _read(path_or_name)
        cfg = _parse(text, source)
        locate = yaml_locator(text)
    _normalise_specs(cfg)
    applied = _apply_overrides(cfg, overrides, source)
    _fill_task_defaults(cfg)
    try:
        data = OmegaConf.to_container(cfg, resolve=True)
    except OmegaConfBaseException as e:
        lines = str(e).splitlines()
        key = next((ln.split(":", 1)[1].strip() for ln in lines if "full_key:" in ln), "")
        pos = locate(tuple(key.split("."))) if (locate and key) else None
        raise RecipeError(source, [Issue(key, f"cannot resolve: {lines[0]}",
                                         line=pos[0] if pos else None,
                                         column=pos[1] if pos else None)]) from None
    try:
        return Recipe.model_validate(data)
    except ValidationError as e:
        raise RecipeError.from_validation(e, source, raw=data, locate=locate,
                                          overrides=applied) from None


def build_model(recipe: Recipe | str | os.PathLike) -> nn.Module:
    """The model a recipe describes: `CausalLM`, `SequenceModel`, or a timm vision model.

    Accepts a Recipe, or anything `load_recipe` takes (a file path, a shipped name)."""
    if not isinstance(recipe, Recipe):
        recipe = load_recipe(recipe)
    m = recipe.model
    if m.kind == "causal_lm":
        from mixzoo.models import CausalLM
        return CausalLM(m.vocab_size, m.d_model, list(m.layers), m.block,
                        tie_embeddings=m.tie_embeddings is not False)
    if m.kind == "sequence":
        from mixzoo.models import SequenceModel
        return SequenceModel(m.input_dim, m.output_dim, m.d_model, list(m.layers), m.block,
                             pooling=m.pooling or "mean")
    from mixzoo.models.vision import build_vision_model
    return build_vision_model(m)
