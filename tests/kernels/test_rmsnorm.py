"""RMSNorm (optionally combining a doubled batch's two scan directions): the Triton kernels
(TRITON_INTERPRET=1, fp32) against the fp64 reference -- output, dx and dweight -- and the
reference against its definition."""
import os

os.environ.setdefault("TRITON_INTERPRET", "1")  # before triton/mixzoo are imported

import pytest
import torch

from mixzoo.kernels._common import assert_close
from mixzoo.kernels.rmsnorm import rms_norm, rms_norm_ref


def test_reference_combine_is_flip_add_then_norm():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 5, 3, 8, generator=g, dtype=torch.float64)
    w = torch.randn(8, generator=g, dtype=torch.float64)
    u = x[:2] + x[2:].flip(1)
    want = u / torch.sqrt(u.pow(2).mean(-1, keepdim=True) + 1e-5) * w
    assert_close(want, rms_norm_ref(x, w, eps=1e-5, combine_directions=True), 1e-12)


@pytest.mark.parametrize("dispatch", ["op", "function"])
@pytest.mark.parametrize("shape,combine", [
    ((4, 7, 3, 16), True), ((2, 1, 2, 64), True), ((2, 9, 24), False), ((6, 5, 2, 20), True),
    ((3, 130, 1, 32), False)])
def test_triton_matches_reference(shape, combine, dispatch, monkeypatch):
    """Both eager dispatch layers (the custom op through EagerOp, this package's own
    autograd.Function) against fp64."""
    monkeypatch.setenv("MIXZOO_RMSNORM_DISPATCH", dispatch)
    g = torch.Generator().manual_seed(sum(shape))
    x = torch.randn(*shape, generator=g).requires_grad_()
    w = (1 + 0.1 * torch.randn(shape[-1], generator=g)).requires_grad_()
    y = rms_norm(x, w, eps=1e-5, combine_directions=combine, backend="triton")
    dy = torch.randn(y.shape, generator=g)
    dx, dw = torch.autograd.grad((y * dy).sum(), [x, w])
    x64, w64 = (t.detach().double().requires_grad_() for t in (x, w))
    want = rms_norm_ref(x64, w64, eps=1e-5, combine_directions=combine)
    ex, ew = torch.autograd.grad((want * dy.double()).sum(), [x64, w64])
    assert y.shape == want.shape and y.dtype == x.dtype
    for name, r, o in (("y", want, y), ("dx", ex, dx), ("dw", ew, dw)):
        assert_close(r, o, 1e-5, name)


def test_validation(monkeypatch):
    monkeypatch.setenv("MIXZOO_RMSNORM_DISPATCH", "custom")
    with pytest.raises(ValueError, match="MIXZOO_RMSNORM_DISPATCH"):
        rms_norm(torch.randn(2, 3, 4), torch.ones(4), eps=1e-5, backend="triton")
    monkeypatch.delenv("MIXZOO_RMSNORM_DISPATCH")
    with pytest.raises(ValueError, match="weight"):
        rms_norm(torch.randn(2, 3, 4), torch.randn(5), eps=1e-5)
    with pytest.raises(ValueError, match="doubled batch"):
        rms_norm(torch.randn(3, 3, 4), torch.randn(4), eps=1e-5, combine_directions=True)


def test_custom_op_opcheck():
    x = torch.randn(4, 6, 2, 16).requires_grad_()
    w = torch.randn(16).requires_grad_()
    torch.library.opcheck(torch.ops.mixzoo.rms_norm_fwd.default, (x, w, 1e-5, True),
                          test_utils=("test_schema", "test_faketensor",
                                      "test_autograd_registration"))
    _, rstd = torch.ops.mixzoo.rms_norm_fwd(x.detach(), w.detach(), 1e-5, True)
    torch.library.opcheck(torch.ops.mixzoo.rms_norm_bwd.default,
                          (torch.randn(2, 6, 2, 16), x.detach(), w.detach(), rstd, True),
                          test_utils=("test_schema", "test_faketensor"))
