"""Register mixzoo's timm models without importing timm on `import mixzoo`.

Importing timm (and torchvision behind it) takes seconds; `import mixzoo` must stay cheap.
So `install()` (called by `mixzoo/__init__.py`) does one of two things:

- timm is already imported: register the models now (only our small module is imported);
- otherwise: put a finder at the front of `sys.meta_path` that waits for `import timm`.
  When it comes, the finder lets the normal finders locate timm, wraps its loader, and
  (1) before timm's code runs, applies the torchvision workaround of `_timm.py`, so that
      `import timm` after `import mixzoo` works on a CPU-only torch too;
  (2) after timm's code has run, registers the mixzoo models, so
      `timm.list_models("mixzoo_*")` and `timm.create_model("mixzoo_...")` just work.
  The finder then removes itself (a mere `importlib.util.find_spec("timm")` leaves it in
  place). A failure in (2) only warns: `import timm` never breaks
  because of mixzoo.

This module imports neither timm nor torchvision.
"""
from __future__ import annotations

import importlib.abc
import sys
import warnings

_TARGET = "timm"


def _register() -> None:
    try:
        from . import mixzoo_vit  # noqa: F401  (its @register_model decorators do the work)
    except Exception as e:  # never break `import timm` because of mixzoo
        warnings.warn(f"mixzoo: could not register the mixzoo timm models: "
                      f"{type(e).__name__}: {e}", stacklevel=2)


class _Loader(importlib.abc.Loader):
    """Wraps timm's own loader: workaround before, model registration after."""

    def __init__(self, inner):
        self._inner = inner

    def create_module(self, spec):
        return self._inner.create_module(spec)

    def exec_module(self, module):
        from ._timm import ensure_torchvision_importable
        ensure_torchvision_importable()
        self._inner.exec_module(module)
        uninstall()                     # timm is in: the hook's job is done
        _register()

    def __getattr__(self, name):  # get_source, get_resource_reader, is_package, ...
        return getattr(self._inner, name)


class _TimmFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path, target=None):
        if fullname != _TARGET:
            return None
        for finder in sys.meta_path:
            if finder is self:
                continue
            find = getattr(finder, "find_spec", None)
            spec = find(fullname, path, target) if find is not None else None
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _Loader(spec.loader)
                return spec
        return None


_FINDER = _TimmFinder()


def install() -> None:
    """Make timm see the mixzoo models, now (timm loaded) or when timm is imported."""
    timm = sys.modules.get(_TARGET)
    if timm is not None and hasattr(timm, "create_model"):
        _register()
    elif _FINDER not in sys.meta_path:
        sys.meta_path.insert(0, _FINDER)


def uninstall() -> None:
    while _FINDER in sys.meta_path:
        sys.meta_path.remove(_FINDER)
