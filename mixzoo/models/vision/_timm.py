"""The one place in mixzoo that imports timm (and, through it, torchvision).

`import_timm()` returns the timm module. It works around a packaging trap seen on CPU-only
machines: the torchvision 0.28 wheel from the registry is built against a CUDA torch and ships
no compiled `torchvision::nms` operator for a CPU torch, yet its `_meta_registrations.py`
registers a fake (meta) kernel for `torchvision::nms` at import time. With the operator
undefined, `torch.library.register_fake` raises

    RuntimeError: operator torchvision::nms does not exist

and because timm imports torchvision (`timm.layers._fx`), `import timm` fails with it. timm never
calls nms; it only needs the rest of torchvision to import. So on exactly that error we drop the
half-imported `torchvision*` modules from `sys.modules`, define the two operator schemas that the
meta registrations expect (`nms` and `qnms`, schemas as torchvision's C++ declares them) with
`torch.library`, and import again. Any other error propagates unchanged. Calling the defined
operators without a kernel still fails loudly (no kernel for the backend), so nothing is faked.
"""
from __future__ import annotations

import sys
from types import ModuleType

import torch

_MISSING_NMS = "operator torchvision::nms does not exist"
# Kept alive for the life of the process: a torch.library.Library's definitions are removed
# when the object is garbage collected.
_TORCHVISION_LIB: list[torch.library.Library] = []


def _drop_modules(prefix: str) -> None:
    for name in [m for m in sys.modules if m == prefix or m.startswith(prefix + ".")]:
        del sys.modules[name]


def _define_torchvision_nms_schemas() -> None:
    lib = torch.library.Library("torchvision", "DEF")
    lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    lib.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    _TORCHVISION_LIB.append(lib)


def ensure_torchvision_importable() -> None:
    """Import torchvision, applying the nms-schema workaround above if (and only if) needed."""
    if "torchvision" in sys.modules and hasattr(sys.modules["torchvision"], "__version__"):
        return
    try:
        import torchvision  # noqa: F401
    except ImportError:
        return                         # no torchvision at all: timm copes without it
    except RuntimeError as e:
        if _MISSING_NMS not in str(e):
            raise
        _drop_modules("torchvision")   # a failed import leaves half-initialised submodules
        if not _TORCHVISION_LIB:
            _define_torchvision_nms_schemas()
        import torchvision  # noqa: F401,F811


def import_timm() -> ModuleType:
    """Return the `timm` module, importing it through the torchvision workaround."""
    mod = sys.modules.get("timm")
    if mod is not None and hasattr(mod, "create_model"):
        return mod
    ensure_torchvision_importable()
    import timm
    return timm
