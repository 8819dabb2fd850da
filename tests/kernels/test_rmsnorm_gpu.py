"""RMSNorm kernels on a CUDA GPU (run on an H100): bf16 at vision sizes vs the fp32
reference (output, dx, dweight). Every test carries the gpu mark."""
import pytest
import torch

from mixzoo.kernels._common import rel_rms
from mixzoo.kernels.rmsnorm import rms_norm, rms_norm_ref

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


@pytest.mark.parametrize("shape,combine", [((256, 196, 6, 64), True), ((16, 4096, 6, 64), True),
                                           ((4, 2048, 16, 128), False), ((3, 77, 5, 48), False), ((4, 77, 5, 48), True)])
def test_bf16_vs_fp32_reference(shape, combine):
    g = torch.Generator(device="cuda").manual_seed(0)
    x = torch.randn(*shape, device="cuda", generator=g).bfloat16().requires_grad_()
    w = (1 + 0.1 * torch.randn(shape[-1], device="cuda", generator=g)).requires_grad_()
    y = rms_norm(x, w, eps=1e-5, combine_directions=combine, backend="triton")
    dy = torch.randn(y.shape, device="cuda", generator=g)
    dx, dw = torch.autograd.grad((y.float() * dy).sum(), [x, w])
    xf, wf = (t.detach().float().requires_grad_() for t in (x, w))
    ref = rms_norm_ref(xf, wf, eps=1e-5, combine_directions=combine)
    rx, rw = torch.autograd.grad((ref * dy).sum(), [xf, wf])
    errs = {"y": rel_rms(ref, y.float()), "dx": rel_rms(rx, dx.float()), "dw": rel_rms(rw, dw)}
    print(f"\n{shape} combine={combine} " + " ".join(f"{k}={v:.1e}" for k, v in errs.items()))
    for k, v in errs.items():
        assert v < 1e-2, f"{k}: {v:.2e}"
