"""Registry core.

A mixer is registered under the `type` literal of its Config (stated once, in the Config):

    @register_mixer
    class MyMixer(Mixer):
        class Config(MixerConfig):
            type: Literal["my_mixer"] = "my_mixer"
            ...

Built-ins are registered when `mixzoo.mixers` is imported; plugins from the entry-point group
`mixzoo.mixers` are discovered lazily on first registry access (see `plugins.py`).
"""
from __future__ import annotations

import difflib
import fnmatch
import typing
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, TypeVar

from pydantic import ValidationError

__all__ = ["MixerEntry", "register_mixer", "unregister_mixer", "get_mixer", "get_entry",
           "list_mixers", "build_mixer", "config_type_name", "unknown_name_error"]


@dataclass(frozen=True)
class MixerEntry:
    """One registered mixer: its class, its Config class and where it came from."""
    name: str
    cls: type
    config_cls: type
    source: str = "builtin"            # "builtin" | "plugin: <distribution>" | "user"
    extra: Mapping[str, Any] = field(default_factory=dict)


_REGISTRY: dict[str, MixerEntry] = {}
_BROKEN: dict[str, str] = {}           # plugin entry-point name -> reason (see plugins.py)
_state = {"builtins_loaded": False, "plugins_loaded": False, "loading": False}

M = TypeVar("M", bound=type)


def config_type_name(config_cls: type) -> str:
    """The registry key: the single value of the Config's `type: Literal[...]` field."""
    fields = getattr(config_cls, "model_fields", None)
    if fields is None or "type" not in fields:
        raise TypeError(f"{config_cls.__qualname__}: a mixer Config needs a "
                        f"`type: Literal['name']` field (the registry key)")
    ann = fields["type"].annotation
    args = typing.get_args(ann) if typing.get_origin(ann) is typing.Literal else ()
    if len(args) != 1 or not isinstance(args[0], str):
        raise TypeError(f"{config_cls.__qualname__}.type must be Literal['<one name>'], got {ann!r}")
    return args[0]


def _ensure_loaded() -> None:
    """Import the built-ins, then discover plugins, once (and never re-entrantly)."""
    if _state["loading"]:
        return
    _state["loading"] = True
    try:
        if not _state["builtins_loaded"]:
            _state["builtins_loaded"] = True
            import mixzoo.mixers  # noqa: F401  (registers the built-ins)
        if not _state["plugins_loaded"]:
            _state["plugins_loaded"] = True
            from .plugins import load_plugins
            load_plugins()
    finally:
        _state["loading"] = False


def register_mixer(cls: M | None = None, *, override: bool = False,
                   source: str = "user") -> M | Callable[[M], M]:
    """Class decorator registering a `Mixer` subclass under its Config's `type` literal.

    A duplicate name raises `ValueError` unless `override=True`. Usable bare
    (`@register_mixer`) or with options (`@register_mixer(override=True)`).
    """
    def deco(c: M) -> M:
        from mixzoo.mixers.base import Mixer, MixerConfig
        if not (isinstance(c, type) and issubclass(c, Mixer)):
            raise TypeError(f"register_mixer: {c!r} is not a mixzoo.Mixer subclass")
        config_cls = getattr(c, "Config", None)
        if not (isinstance(config_cls, type) and issubclass(config_cls, MixerConfig)):
            raise TypeError(f"register_mixer: {c.__qualname__}.Config must subclass MixerConfig")
        name = config_type_name(config_cls)
        src = source
        if c.__module__.startswith("mixzoo.mixers"):
            src = "builtin"
        if name in _REGISTRY and not override:
            old = _REGISTRY[name]
            raise ValueError(
                f"mixer {name!r} is already registered by {old.cls.__module__}."
                f"{old.cls.__qualname__} ({old.source}); pass override=True to replace it")
        _REGISTRY[name] = MixerEntry(name=name, cls=c, config_cls=config_cls, source=src)
        return c

    return deco(cls) if cls is not None else deco


def unregister_mixer(name: str) -> None:
    """Remove a mixer (mainly for tests and interactive use)."""
    _ensure_loaded()
    if name not in _REGISTRY:
        raise _unknown(name)
    del _REGISTRY[name]


def unknown_name_error(kind: str, name: Any, registered: Any, note: str = "") -> KeyError:
    """KeyError for an unknown registry key, with close matches (shared by every registry)."""
    names = sorted(registered)
    close = difflib.get_close_matches(str(name), names, n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    return KeyError(f"unknown {kind} {name!r}.{hint}{note} Registered: {', '.join(names)}")


def _unknown(name: str) -> KeyError:
    broken = f" (plugin {name!r} failed to load: {_BROKEN[name]})" if name in _BROKEN else ""
    return unknown_name_error("mixer", name, _REGISTRY, broken)


def get_entry(name: str) -> MixerEntry:
    _ensure_loaded()
    if name in _REGISTRY:
        return _REGISTRY[name]
    from .plugins import broken_error
    err = broken_error(name)
    if err is not None:
        raise err
    raise _unknown(name)


def get_mixer(name: str) -> type:
    """The registered Mixer class for `name`; KeyError with close matches if unknown."""
    return get_entry(name).cls


def list_mixers(pattern: str = "*") -> list[str]:
    """Sorted registered names matching the fnmatch `pattern` (e.g. "*attn*")."""
    _ensure_loaded()
    return sorted(n for n in _REGISTRY if fnmatch.fnmatchcase(n, pattern))


def entries() -> dict[str, MixerEntry]:
    _ensure_loaded()
    return dict(_REGISTRY)


def build_config(spec: Any):
    """Turn a spec (name, dict with `type`, or a Config object) into a validated Config."""
    from mixzoo.mixers.base import MixerConfig
    if isinstance(spec, MixerConfig):
        get_entry(spec.type)           # unknown/broken type still raises
        return spec
    if isinstance(spec, str):
        return get_entry(spec).config_cls()
    if isinstance(spec, Mapping):
        if "type" not in spec:
            raise ValueError(f"mixer spec {dict(spec)!r} has no 'type' field; "
                             f"expected one of {list_mixers()}")
        entry = get_entry(spec["type"])
        try:
            return entry.config_cls.model_validate(dict(spec))
        except ValidationError as e:
            raise ValueError(f"invalid config for mixer {spec['type']!r}:\n{e}") from None
    raise TypeError(f"mixer spec must be a name, a dict with 'type', or a MixerConfig; "
                    f"got {type(spec).__name__}")


def build_mixer(spec: Any, d_model: int, layer_idx: int = 0):
    """Build a mixer module from a name, a dict with `type`, or a Config object."""
    config = build_config(spec)
    return get_entry(config.type).cls(config, d_model, layer_idx)
