"""Memory check of the delta-rule chunk kernels under the interpreter (the fixture of
test_conv1d_memcheck: every unmasked address must lie inside a tensor of the launch), for
each W source of the state backward, a partial last chunk and the in-kernel L2 norm."""
import os
os.environ.setdefault("TRITON_INTERPRET", "1")
import pytest
import torch
import torch.nn.functional as F
from mixzoo.kernels._common import is_interpreting
from tests.kernels.test_conv1d_memcheck import memcheck  # noqa: F401 (the fixture)
from mixzoo.kernels.delta_rule import delta_rule

pytestmark = pytest.mark.skipif(not is_interpreting(), reason="wraps the Triton interpreter")


@pytest.mark.parametrize("mode,T,D,l2", [("rebuild", 130, 64, False), ("load", 300, 32, True),
                                         ("load", 130, 64, True)])
def test_delta_in_bounds(memcheck, mode, T, D, l2, monkeypatch):  # noqa: F811
    monkeypatch.setenv("MIXZOO_DELTA_STATE_W", mode)
    g = torch.Generator().manual_seed(0)
    B, H = 1, 2
    q, k, v = (torch.randn(B, T, H, D, generator=g) for _ in range(3))
    k = k if l2 else F.normalize(k, dim=-1)
    beta = torch.rand(B, T, H, generator=g)
    h0 = torch.randn(B, H, D, D, generator=g) * 0.1
    xs = [t.requires_grad_(True) for t in (q, k, v, beta, h0)]
    o, s = delta_rule(*xs[:4], initial_state=xs[4], output_final_state=True, use_qk_l2norm=l2,
                      backend="triton")
    (o.sum() + s.sum()).backward()
