"""Test-wide setup.

Triton kernels run on the CPU only in Triton's interpreter, which must be switched on
before the first `@triton.jit` import; CI sets TRITON_INTERPRET=1 for the whole run and
this makes a bare `pytest` behave the same way on a machine without a GPU. On a GPU
machine it is left alone, so `pytest -m gpu` compiles real kernels.
"""
import os
import shutil

if shutil.which("nvidia-smi") is None:
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
import torch  # noqa: E402


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


def pytest_collection_modifyitems(config, items):
    """Skip `gpu` tests cleanly when no CUDA device is present (if selected explicitly)."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
