"""The recipe schema: `Recipe` = `model:` (+ optional `train:`), validated by pydantic.

Mixer specs are validated through a discriminated union on `type` built from the registry
at validation time, so plugin mixers validate exactly like built-ins. The three layer
layouts are expanded into one explicit list, which is what `Recipe.model.layers` holds:

1. explicit:   layers: [deltanet, {type: sliding_window, window: 64}, ...]
2. pattern:    presets: {dn: {type: deltanet}, swa: {type: sliding_window}}
               pattern: [dn, swa]
               repeat: 12            # or num_layers: 24 (the pattern is tiled cyclically)
3. sugar:      mixer: deltanet       # the base mixer of every layer
               num_layers: 24
               attention_layers: [5, 17]          # these layers use `attention:`
               attention: {type: attention, num_heads: 16}   # default: "attention"

In every form a string names a preset first, then a registered mixer. `overrides:
{index: {field: value}}` then changes single layers (re-validated; a `type` in the
override replaces that layer's mixer). A validated Recipe dumps (`model_dump()`) to the
explicit form, which loads back to an equal Recipe.
"""
from __future__ import annotations

import difflib
import functools
from typing import Annotated, Any, Literal, Mapping, Union

from pydantic import (BaseModel, ConfigDict, Field, SerializeAsAny, TypeAdapter,
                      ValidationError, field_serializer, model_validator)
from pydantic_core import PydanticCustomError

from mixzoo.blocks import BlockConfig
from mixzoo.mixers.base import MixerConfig
from mixzoo.registry import core as registry

__all__ = ["ModelSpec", "Recipe", "mixer_union", "validate_mixer_spec", "LAYOUT_KEYS"]

LAYOUT_KEYS = ("layers", "presets", "pattern", "repeat", "num_layers", "mixer",
               "attention_layers", "attention", "overrides")
_FORMS = ("layers", "pattern", "mixer")
_FORMS_HELP = ("give the layers in one of three forms: `layers: [spec, ...]`; "
               "`presets:` + `pattern: [names]` + `repeat: N` (or `num_layers: L`); "
               "`mixer: spec` + `num_layers: L` (+ `attention_layers: [i, j]`)")

Loc = tuple  # a pydantic error location: ("model", "layers", 3, "window")


def _err(loc: Loc, kind: str, msg: str, value: Any) -> dict:
    """One pydantic line error (InitErrorDetails) with our own message."""
    return {"type": PydanticCustomError(kind, msg), "loc": tuple(loc), "input": value}


def _relocate(e: ValidationError, prefix: Loc, strip: int = 0) -> list[dict]:
    """The line errors of `e`, with `prefix` prepended to their locations.

    strip: location elements to drop first (the tag a discriminated union inserts)."""
    out = []
    for d in e.errors(include_url=False):
        loc = tuple(prefix) + tuple(d["loc"][strip:])
        out.append({"type": PydanticCustomError(d["type"], d["msg"]), "loc": loc,
                    "input": d.get("input")})
    return out


def _raise(title: str, errors: list[dict]) -> None:
    if errors:
        raise ValidationError.from_exception_data(title, errors)


def _suggest(word: str, choices, n: int = 1) -> str:
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=n, cutoff=0.5)
    return f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""


# -- the registry-built discriminated union ---------------------------------------------

@functools.lru_cache(maxsize=8)
def _union_adapter(config_classes: tuple[type, ...]) -> TypeAdapter:
    if len(config_classes) == 1:
        return TypeAdapter(config_classes[0])
    union = Annotated[Union[config_classes], Field(discriminator="type")]  # noqa: UP007
    return TypeAdapter(union)


def mixer_union() -> TypeAdapter:
    """A TypeAdapter for `Annotated[Union[<every registered Config>], discriminator="type"]`,
    rebuilt whenever the registry changes (plugins included)."""
    entries = registry.entries()
    return _union_adapter(tuple(entries[n].config_cls for n in sorted(entries)))


def validate_mixer_spec(spec: Any, loc: Loc = (), presets: Mapping[str, MixerConfig] | None
                        = None) -> tuple[MixerConfig | None, list[dict]]:
    """Validate one mixer spec: a preset name, a mixer name, a dict with `type`, or a Config.

    Returns (config, []) or (None, line errors located under `loc`)."""
    presets = presets or {}
    names = registry.list_mixers()
    if isinstance(spec, MixerConfig):
        if spec.type not in names:
            return None, [_err(loc + ("type",), "mixer_type", _unknown_type_msg(spec.type),
                               spec.type)]
        return spec, []
    if isinstance(spec, str):
        if spec in presets:
            return presets[spec], []
        if spec in names:
            return registry.get_entry(spec).config_cls(), []
        broken = _broken_msg(spec)
        if broken:
            return None, [_err(loc, "mixer_type", broken, spec)]
        pre = f"presets: {', '.join(presets)}; " if presets else ""
        return None, [_err(loc, "mixer_type",
                           f"{spec!r} is neither a preset nor a registered mixer "
                           f"({pre}mixers: {', '.join(names)})"
                           f"{_suggest(spec, list(presets) + names)}", spec)]
    if not isinstance(spec, Mapping):
        return None, [_err(loc, "mixer_spec",
                           f"a mixer spec is a name or a mapping with `type`, got "
                           f"{type(spec).__name__}", spec)]
    if "type" not in spec:
        return None, [_err(loc + ("type",), "missing",
                           f"every mixer spec needs a `type` (one of: {', '.join(names)})",
                           dict(spec))]
    kind = spec["type"]
    if not isinstance(kind, str) or kind not in names:
        return None, [_err(loc + ("type",), "mixer_type", _unknown_type_msg(kind), kind)]
    config_cls = registry.get_entry(kind).config_cls
    errors = []
    for key in spec:                   # unknown fields, with the allowed ones and a guess
        if key not in config_cls.model_fields:
            allowed = [f for f in config_cls.model_fields if f != "type"]
            errors.append(_err(loc + (key,), "extra_forbidden",
                               f"unknown field {key!r} for mixer {kind!r}{_suggest(key, allowed)}"
                               f" (fields: {', '.join(allowed)})", spec[key]))
    if errors:
        return None, errors
    try:
        return mixer_union().validate_python(dict(spec)), []
    except ValidationError as e:
        strip = 0 if len(names) == 1 else 1        # drop the union's tag from the location
        return None, _relocate(e, loc, strip=strip)


def _broken_msg(name: Any) -> str | None:
    from mixzoo.registry.plugins import broken_plugins
    err = broken_plugins().get(name) if isinstance(name, str) else None
    return f"mixer {name!r} comes from a plugin that failed to load ({err})" if err else None


def _unknown_type_msg(kind: Any) -> str:
    broken = _broken_msg(kind)
    if broken:
        return broken
    names = registry.list_mixers()
    return (f"unknown mixer type {kind!r}{_suggest(kind, names)} "
            f"(registered: {', '.join(names)})")


# -- layout expansion --------------------------------------------------------------------

class _Layout(BaseModel):
    """The layout keys of `model:` (shapes only; meaning is checked in `_expand`)."""
    model_config = ConfigDict(extra="forbid")

    layers: list[Any] | None = None
    presets: dict[str, Any] | None = None
    pattern: list[str] | None = Field(None, min_length=1)
    repeat: int | None = Field(None, ge=1)
    num_layers: int | None = Field(None, ge=1)
    mixer: Any = None
    attention_layers: list[int] | None = None
    attention: Any = None
    overrides: dict[int, dict[str, Any]] | None = None


def _expand(raw: Mapping[str, Any]) -> tuple[list[MixerConfig], list[dict], list[Loc]]:
    """Layout keys of `model:` -> (explicit list of layer Configs, line errors, and for each
    layer the location (under `model`) of the spec it came from)."""
    try:
        lay = _Layout.model_validate({k: raw[k] for k in LAYOUT_KEYS if k in raw})
    except ValidationError as e:
        return [], _relocate(e, ()), []
    errors: list[dict] = []
    forms = [f for f in _FORMS if getattr(lay, f) is not None]
    if not forms:
        return [], [_err(("layers",), "missing", f"no layer layout: {_FORMS_HELP}", None)], []
    if len(forms) > 1:
        return [], [_err((forms[1],), "layout_conflict",
                         f"`{forms[0]}` and `{forms[1]}` are two different layer layouts; "
                         f"keep one ({_FORMS_HELP})", raw.get(forms[1]))], []
    form = forms[0]
    for key, allowed_in in (("repeat", "pattern"), ("attention_layers", "mixer"),
                            ("attention", "mixer"), ("num_layers", "pattern` or `mixer")):
        if getattr(lay, key) is not None and form not in allowed_in.split("` or `"):
            errors.append(_err((key,), "layout_conflict",
                               f"`{key}` only goes with `{allowed_in}`, but this recipe lists "
                               f"`{form}`", getattr(lay, key)))

    presets: dict[str, MixerConfig] = {}
    for name, spec in (lay.presets or {}).items():
        if isinstance(spec, str) and spec == name:
            spec = {"type": spec}
        cfg, errs = validate_mixer_spec(spec, ("presets", name))
        errors += errs
        if cfg is not None:
            presets[name] = cfg

    layers: list[MixerConfig | None] = []
    origins: list[Loc] = []
    if form == "layers":
        if not lay.layers:
            errors.append(_err(("layers",), "too_short", "`layers` is empty", lay.layers))
        for i, spec in enumerate(lay.layers):
            cfg, errs = validate_mixer_spec(spec, ("layers", i), presets)
            errors += errs
            layers.append(cfg)
            origins.append(("layers", i))
    elif form == "pattern":
        if lay.repeat is not None and lay.num_layers is not None:
            errors.append(_err(("num_layers",), "layout_conflict",
                               "give `repeat` or `num_layers`, not both", lay.num_layers))
        cfgs = []
        for i, name in enumerate(lay.pattern):
            if name not in presets and lay.presets and name in lay.presets:
                cfgs.append(None)                      # the preset itself was reported
                continue
            if name not in presets and name not in registry.list_mixers():
                known = list(lay.presets or {})
                errors.append(_err(("pattern", i), "unknown_preset",
                                   f"no preset named {name!r}{_suggest(name, known)} "
                                   f"(presets: {', '.join(known) or 'none'}; a registered "
                                   f"mixer name also works)", name))
                cfgs.append(None)
                continue
            cfg, errs = validate_mixer_spec(name, ("pattern", i), presets)
            errors += errs
            cfgs.append(cfg)
        n = lay.num_layers or len(cfgs) * (lay.repeat or 1)
        layers = [cfgs[i % len(cfgs)] for i in range(n)]
        origins = [("presets", lay.pattern[i % len(cfgs)]) if lay.pattern[i % len(cfgs)]
                   in presets else ("pattern", i % len(cfgs)) for i in range(n)]
    else:  # form == "mixer"
        if lay.num_layers is None:
            errors.append(_err(("num_layers",), "missing",
                               "`mixer:` needs `num_layers:` (how many layers)", None))
        base, errs = validate_mixer_spec(lay.mixer, ("mixer",), presets)
        errors += errs
        attn, errs = validate_mixer_spec(lay.attention if lay.attention is not None
                                         else "attention", ("attention",), presets)
        errors += errs
        n = lay.num_layers or 0
        layers = [base] * n
        origins = [("mixer",)] * n
        seen = set()
        for j, idx in enumerate(lay.attention_layers or []):
            if not -n <= idx < n:
                errors.append(_err(("attention_layers", j), "index_range",
                                   f"layer index {idx} is out of range: the model has {n} "
                                   f"layers (0..{n - 1}, or negative from the end)", idx))
            elif idx % n in seen:
                errors.append(_err(("attention_layers", j), "duplicate",
                                   f"layer {idx % n} is listed twice", idx))
            else:
                seen.add(idx % n)
                layers[idx % n] = attn
                origins[idx % n] = ("attention",) if lay.attention is not None else \
                    ("attention_layers", j)

    n = len(layers)
    for idx, fields in (lay.overrides or {}).items():
        if not -n <= idx < n:
            errors.append(_err(("overrides", idx), "index_range",
                               f"override for layer {idx}, but the model has {n} layers "
                               f"(0..{n - 1}, or negative from the end)", idx))
            continue
        base = layers[idx % n]
        if base is None:                                # already reported
            continue
        # Keep which fields were set explicitly (a vision model reads `model_fields_set`).
        merged = fields if fields.get("type", base.type) != base.type else \
            {**base.model_dump(exclude_unset=True), "type": base.type, **fields}
        cfg, errs = validate_mixer_spec(merged, ("overrides", idx))
        errors += errs
        layers[idx % n] = cfg
        origins[idx % n] = ("overrides", idx)
    return layers, errors, origins


# -- the schema --------------------------------------------------------------------------

Kind = Literal["causal_lm", "sequence", "vision"]
_KIND_FIELDS = {"vocab_size": ("causal_lm",), "tie_embeddings": ("causal_lm",),
                "input_dim": ("sequence",), "output_dim": ("sequence",),
                "pooling": ("sequence",), "vision": ("vision",)}


class ModelSpec(BaseModel):
    """The `model:` section. `layers` is the expanded, validated list of mixer Configs."""
    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Kind = "causal_lm"
    # Width of the residual stream (vision: the timm base's embedding width, if given).
    d_model: int | None = Field(None, gt=0)
    layers: list[SerializeAsAny[MixerConfig]] = Field(min_length=1)
    block: BlockConfig = BlockConfig()
    # causal_lm
    vocab_size: int | None = Field(None, gt=1)
    # Share the embedding and LM-head matrices (as in the DeltaNet/GLA papers' models).
    # (None = True; kind-specific options default to None so that a dump of one kind
    # never carries settings of another.)
    tie_embeddings: bool | None = None
    # sequence (continuous inputs); pooling None = "mean"
    input_dim: int | None = Field(None, gt=0)
    output_dim: int | None = Field(None, gt=0)
    pooling: Literal["mean", "last", "none"] | None = None
    # vision: a mixzoo.models.vision.config.VisionSpec (validated lazily: timm-free)
    vision: Any = None

    @field_serializer("block")
    def _block_as_given(self, block: BlockConfig, info) -> dict[str, Any]:
        # Only the fields the recipe set: a vision model keeps its timm base's block for
        # the others (it reads `model_fields_set`), and a dump must load back the same.
        return block.model_dump(mode=info.mode, exclude_unset=True)

    @model_validator(mode="wrap")
    @classmethod
    def _layout(cls, data: Any, handler):
        if not isinstance(data, Mapping):
            return handler(data)
        data = dict(data)
        layers, errors, origins = _expand(data)
        layout_failed = bool(errors)
        for k in LAYOUT_KEYS:
            data.pop(k, None)
        if not layout_failed:
            data["layers"] = layers
        errors += _check_kind(data)
        if data.get("kind") == "vision" and data.get("vision") is not None:
            vision, errs = _validate_vision(data["vision"])
            errors += errs
            data["vision"] = vision
        try:
            result = handler(data)
        except ValidationError as e:
            rest = [d for d in _relocate(e, ())
                    if not (layout_failed and d["loc"][:1] == ("layers",))]
            _raise(cls.__name__, errors + rest)
            raise
        _raise(cls.__name__, errors)
        _raise(cls.__name__, _check_buildable(result, origins))
        return result


def _check_buildable(spec: "ModelSpec", origins: list[Loc] | None) -> list[dict]:
    """Build each distinct layer config once on the meta device (no memory, no init cost),
    so that a config the module rejects at this width (say, d_model not divisible by
    num_heads) is a recipe error at `model.layers[i]` rather than a crash at build time."""
    if spec.d_model is None:
        return []
    import torch
    errors, seen = [], set()
    for i, cfg in enumerate(spec.layers):
        key = cfg.model_dump_json()
        if key in seen:
            continue
        seen.add(key)
        try:
            with torch.device("meta"):
                registry.get_entry(cfg.type).cls(cfg, spec.d_model, i)
        except (ValueError, TypeError) as e:
            loc = origins[i] if origins else ("layers", i)
            errors.append(_err(loc, "mixer_build",
                               f"layer {i} ({cfg.type}) cannot be built at d_model="
                               f"{spec.d_model}: {e}",
                               cfg.model_dump(exclude_defaults=True)))
        except Exception:        # noqa: BLE001 -- anything else surfaces in build_model
            pass
    return errors


def _check_kind(data: Mapping[str, Any]) -> list[dict]:
    """Fields that belong to another kind, and fields a kind needs."""
    kind = data.get("kind", "causal_lm")
    if kind not in ("causal_lm", "sequence", "vision"):
        return []                                   # the Literal reports it
    errors = []
    for key, kinds in _KIND_FIELDS.items():
        if key in data and data[key] is not None and kind not in kinds:
            errors.append(_err((key,), "kind_field",
                               f"`{key}` is for kind {' / '.join(kinds)}, but this model is "
                               f"kind {kind!r}", data[key]))
    need = {"causal_lm": ("d_model", "vocab_size"),
            "sequence": ("d_model", "input_dim", "output_dim"),
            "vision": ("vision",)}[kind]
    for key in need:
        if data.get(key) is None:
            errors.append(_err((key,), "missing", f"kind {kind!r} needs `{key}`", None))
    return errors


def _validate_vision(spec: Any) -> tuple[Any, list[dict]]:
    try:
        from mixzoo.models.vision.config import VisionSpec
    except ImportError as e:
        return spec, [_err(("vision",), "vision_unavailable",
                           f"vision recipes need mixzoo.models.vision ({e})", spec)]
    if isinstance(spec, VisionSpec):
        return spec, []
    try:
        return VisionSpec.model_validate(spec), []
    except ValidationError as e:
        return spec, _relocate(e, ("vision",))


class Recipe(BaseModel):
    """A whole recipe: a model, an optional training setup and a description."""
    model_config = ConfigDict(frozen=True, extra="forbid")

    description: str = ""
    model: ModelSpec
    # A mixzoo.train.TrainConfig (validated lazily, so that a recipe without training
    # never imports the task registry).
    train: Any = None

    @model_validator(mode="wrap")
    @classmethod
    def _train(cls, data: Any, handler):
        if not isinstance(data, Mapping) or data.get("train") is None:
            return handler(data)
        data = dict(data)
        from mixzoo.train import TrainConfig
        errors: list[dict] = []
        if not isinstance(data["train"], TrainConfig):
            try:
                data["train"] = TrainConfig.model_validate(data["train"])
            except ValidationError as e:
                errors = _relocate(e, ("train",))
                data["train"] = None
        try:
            result = handler(data)
        except ValidationError as e:
            _raise(cls.__name__, errors + _relocate(e, ()))
            raise
        _raise(cls.__name__, errors)
        m, task = result.model, getattr(result.train, "task", None)
        task_vocab = getattr(task, "vocab_size", None)
        if m.kind == "causal_lm" and task_vocab is not None and m.vocab_size < task_vocab:
            _raise(cls.__name__, [_err(
                ("model", "vocab_size"), "vocab_too_small",
                f"the model reads {m.vocab_size} token ids but the task "
                f"({task.type}) uses {task_vocab}; set model.vocab_size >= {task_vocab} "
                f"(or `${{train.task.vocab_size}}`)", m.vocab_size)])
        return result
