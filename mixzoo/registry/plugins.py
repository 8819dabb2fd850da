"""Entry-point plugin discovery for the group `mixzoo.mixers`.

Each entry point names a `Mixer` subclass (registered here if it is not yet) or a module that
registers mixers on import. Discovery is lazy (first registry access). A plugin that fails to
import is recorded as broken with the reason; every other mixer keeps working. A name clash with
a built-in keeps the built-in and warns with the distribution name.
"""
from __future__ import annotations

import importlib.metadata as md
import warnings

from . import core

GROUP = "mixzoo.mixers"


def _dist_name(ep) -> str:
    dist = getattr(ep, "dist", None)
    return getattr(dist, "name", None) or "unknown distribution"


def load_plugins() -> None:
    """Load every entry point of the group once; record failures instead of raising."""
    from mixzoo.mixers.base import Mixer
    for ep in md.entry_points(group=GROUP):
        dist = _dist_name(ep)
        before = set(core._REGISTRY)
        try:
            obj = ep.load()
        except Exception as e:  # a broken plugin must never break the others
            core._BROKEN[ep.name] = f"{dist}: {type(e).__name__}: {e}"
            continue
        if isinstance(obj, type) and issubclass(obj, Mixer):
            try:
                name = core.config_type_name(obj.Config)
            except Exception as e:
                core._BROKEN[ep.name] = f"{dist}: {type(e).__name__}: {e}"
                continue
            existing = core._REGISTRY.get(name)
            if existing is not None and existing.cls is not obj:
                warnings.warn(f"plugin {dist!r} provides mixer {name!r}, which clashes with the "
                              f"{existing.source} one; keeping the {existing.source} mixer",
                              stacklevel=2)
                continue
            if existing is None:
                core.register_mixer(obj, source=f"plugin: {dist}")
        # Mixers registered on import by the plugin module: mark their source.
        for name in set(core._REGISTRY) - before:
            e = core._REGISTRY[name]
            if e.source == "user":
                core._REGISTRY[name] = core.MixerEntry(name, e.cls, e.config_cls,
                                                       source=f"plugin: {dist}")


def broken_plugins() -> dict[str, str]:
    """Entry-point name -> reason, for plugins that failed to load."""
    core._ensure_loaded()
    return dict(core._BROKEN)


def broken_error(name: str) -> ImportError | None:
    reason = core._BROKEN.get(name)
    if reason is None:
        return None
    return ImportError(f"mixer plugin {name!r} failed to load ({reason})")
