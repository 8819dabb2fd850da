"""Entry-point plugin discovery for the group `mixzoo.mixers`.

A third-party package declares, in its pyproject.toml,

    [project.entry-points."mixzoo.mixers"]
    my_mixer = "my_package.module:MyMixer"     # a Mixer subclass (registered here), or
    more = "my_package.mixers"                 # a module that registers mixers on import

and its mixers appear in `list_mixers()`, recipes and the CLI with no change to mixzoo.

- Discovery is lazy: the first registry access loads every entry point once.
- A plugin that fails to import (or names something that is not a Mixer or a module) is
  recorded as broken with the reason; every other mixer keeps working, `mixzoo list` shows
  it, and using it raises an ImportError naming the distribution and the original error.
- A name clash with an already registered mixer (a built-in) keeps the registered one and
  warns with the plugin's distribution name.
"""
from __future__ import annotations

import importlib.metadata as md
import types
import warnings

from . import core

__all__ = ["GROUP", "load_plugins", "broken_plugins", "broken_error", "reset_plugins"]

GROUP = "mixzoo.mixers"


def _dist_name(ep) -> str:
    dist = getattr(ep, "dist", None)
    return getattr(dist, "name", None) or "unknown distribution"


def _record_broken(ep, dist: str, reason: str) -> None:
    core._BROKEN[ep.name] = f"{dist}: {reason}"


def load_plugins() -> None:
    """Load every entry point of the group once; record failures instead of raising."""
    from mixzoo.mixers.base import Mixer
    seen: set[tuple[str, str]] = set()
    for ep in md.entry_points(group=GROUP):
        dist = _dist_name(ep)
        if (ep.name, ep.value) in seen:     # the same distribution found twice on sys.path
            continue
        seen.add((ep.name, ep.value))
        before = set(core._REGISTRY)
        try:
            obj = ep.load()
        except Exception as e:  # noqa: BLE001 -- a broken plugin must never break the others
            _record_broken(ep, dist, f"{type(e).__name__}: {e}")
            continue
        if isinstance(obj, type) and issubclass(obj, Mixer):
            try:
                name = core.config_type_name(obj.Config)
            except Exception as e:  # noqa: BLE001
                _record_broken(ep, dist, f"{type(e).__name__}: {e}")
                continue
            existing = core._REGISTRY.get(name)
            if existing is not None and existing.cls is not obj:
                warnings.warn(f"plugin {dist!r} provides mixer {name!r}, which clashes with the "
                              f"{existing.source} one; keeping the {existing.source} mixer",
                              stacklevel=2)
                continue
            if existing is None:
                try:
                    core.register_mixer(obj, source=f"plugin: {dist}")
                except Exception as e:  # noqa: BLE001 -- e.g. a Config without a `type`
                    _record_broken(ep, dist, f"{type(e).__name__}: {e}")
                    continue
        elif not isinstance(obj, types.ModuleType):
            _record_broken(ep, dist, f"entry point {ep.value!r} names a "
                                     f"{type(obj).__name__}, not a mixzoo Mixer subclass or "
                                     f"a module that registers mixers")
            continue
        # Mixers the plugin registered on import (decorated classes, module entry points):
        # mark where they came from.
        for name in set(core._REGISTRY) - before:
            e = core._REGISTRY[name]
            if not e.source.startswith("plugin"):
                core._REGISTRY[name] = core.MixerEntry(name, e.cls, e.config_cls,
                                                       source=f"plugin: {dist}")


def broken_plugins() -> dict[str, str]:
    """Entry-point name -> "<distribution>: <reason>", for plugins that failed to load."""
    core._ensure_loaded()
    return dict(core._BROKEN)


def broken_error(name: str) -> ImportError | None:
    """The ImportError to raise when a broken plugin's mixer is asked for (else None)."""
    reason = core._BROKEN.get(name)
    if reason is None:
        return None
    return ImportError(f"mixer plugin {name!r} failed to load ({reason})")


def reset_plugins() -> None:
    """Forget every plugin (their mixers and broken records); the next registry access
    discovers them again, e.g. after a distribution was installed into a running process."""
    for name in [n for n, e in core._REGISTRY.items() if e.source.startswith("plugin")]:
        del core._REGISTRY[name]
    core._BROKEN.clear()
    core._state["plugins_loaded"] = False
