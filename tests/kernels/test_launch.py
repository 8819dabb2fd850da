"""`_common.launch`: the same results as `kernel[grid](...)` on every path (CPU: the
interpreter's fallback; GPU: the cached direct launch, across the specializations that pick
different compiled kernels: dtypes, misaligned pointers, ints equal to 1 or multiples of 16,
constexprs, autotuned configs with a callable grid)."""
import pathlib
import sys

import pytest
import torch

from mixzoo.kernels._common import cdiv, launch
from mixzoo.kernels._common import fastlaunch as launch_mod

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "benchmarks"))
from launch_kernels import axpb_kernel, axpb_tuned  # noqa: E402


def _expect(x, y, s, add_one, stride, n):
    out = torch.zeros(n * stride, dtype=x.dtype, device=x.device)
    out[::stride] = (s * x[:n].float() + y[:n].float() + (1.0 if add_one else 0.0)).to(x.dtype)
    return out


def _cases(device):
    g = torch.Generator().manual_seed(0)
    base = torch.randn(400, generator=g)
    for dtype in (torch.float32, torch.bfloat16) if device == "cuda" else (torch.float32,):
        for offset in (0, 1):                   # offset 1: data pointer not 16-byte aligned
            for n, stride in ((1, 1), (16, 2), (17, 1), (200, 1), (200, 16)):
                for add_one in (False, True):
                    x = base.to(device, dtype)[offset:offset + 300]
                    y = base.flip(0).to(device, torch.float32)[:300]
                    yield x, y, n, stride, add_one


def _run(device, tuned: bool):
    for x, y, n, stride, add_one in _cases(device):
        out = torch.zeros(n * stride, dtype=x.dtype, device=device)
        if tuned:
            launch(axpb_tuned, lambda m: (cdiv(n, m["BLOCK"]),), x, y, out, n, stride, 0.5,
                   ADD_ONE=add_one)
        else:
            launch(axpb_kernel, (cdiv(n, 64),), x, y, out, n, stride, 0.5,
                   ADD_ONE=add_one, BLOCK=64)
        torch.testing.assert_close(out, _expect(x, y, 0.5, add_one, stride, n), rtol=0, atol=0)


def test_launch_matches_expected_cpu():
    _run("cpu", tuned=False)
    _run("cpu", tuned=True)


def test_arg_key_tells_apart_what_triton_specializes_on():
    t = torch.zeros(8)
    k = launch_mod._arg_key
    assert k((t, 16)) != k((t[1:], 16))                 # alignment
    assert k((t, 16)) != k((t.double(), 16))            # dtype
    assert k((t, 1)) != k((t, 2)) and k((t, True)) != k((t, 1))
    assert k((t, 1.0)) == k((t, 2.0))                   # floats are not specialized
    assert k((t, None)) != k((t, 0))
    assert k((t, object())) is None                     # unknown type: Triton's own path


@pytest.mark.gpu
def test_fast_launch_matches_triton_gpu():
    assert launch_mod._fast_ok(), "the fast path should be on for a CUDA GPU with Triton>=3.4"
    for tuned in (False, True):
        _run("cuda", tuned)         # first pass fills the cache (Triton's path) ...
        _run("cuda", tuned)         # ... the second launches the cached kernels directly
    torch.cuda.synchronize()
    assert len(launch_mod._CACHE) >= 20, len(launch_mod._CACHE)
    assert id(axpb_kernel) not in launch_mod._SLOW and id(axpb_tuned) not in launch_mod._SLOW
