"""GPU: short training runs through the Triton kernels track the reference backend.

Same seed, same data, same initial weights; only the mixers' backend differs. The loss
curves must agree within a small tolerance and fall."""
import pytest
import torch

from mixzoo import CausalLM

pytestmark = pytest.mark.gpu

MIXERS = ["deltanet", "gla", "retnet", "attention", "sliding_window"]


def _losses(mixer: str, backend: str, steps: int = 30) -> list[float]:
    torch.manual_seed(0)
    spec = {"type": mixer, "num_heads": 2, "backend": backend}
    if mixer == "sliding_window":
        spec["window"] = 64
    V = 64
    lm = CausalLM(V, 128, [spec, "short_conv", spec]).cuda()
    opt = torch.optim.AdamW(lm.parameters(), lr=3e-3)
    gen = torch.Generator(device="cuda").manual_seed(1)
    out = []
    for _ in range(steps):
        # Arithmetic progressions mod V with a random start and stride per sequence: the
        # stride must be read from context, so the mixers have to learn something.
        start = torch.randint(0, V, (8, 1), device="cuda", generator=gen)
        stride = torch.randint(1, 4, (8, 1), device="cuda", generator=gen)
        ids = (start + stride * torch.arange(64, device="cuda")) % V        # [8,64]
        labels = torch.cat([ids[:, 1:], torch.full_like(ids[:, :1], -100)], 1)
        loss = lm(ids, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        out.append(loss.item())
    return out


@pytest.mark.parametrize("mixer", MIXERS)
def test_training_on_triton_matches_reference(mixer):
    tri = _losses(mixer, "triton")
    ref = _losses(mixer, "reference")
    print(f"\n{mixer}: triton {tri[0]:.4f}->{tri[-1]:.4f}  reference {ref[0]:.4f}->{ref[-1]:.4f}")
    # On the CPU reference this task goes from ~4.2 to < 0.2 in 30 steps for every mixer.
    assert tri[-1] < 0.5 * tri[0], "loss did not fall on the Triton backend"
    gaps = [abs(a - b) / max(abs(b), 0.5) for a, b in zip(tri, ref)]
    # The first steps test the kernels' gradients tightly (a wrong gradient shows at step 2);
    # later, rounding differences are amplified by training itself (RetNet's curves agreed
    # to 2e-6 for the first steps and drifted to a 7e-2 gap near the end, final losses
    # 0.1194 vs 0.1206, on the H100), so the rest is held to a looser bound.
    assert max(gaps[:10]) < 1e-3, f"early loss curves differ: max relative gap {max(gaps[:10]):.3e}"
    assert max(gaps) < 1.5e-1, f"loss curves diverge: max relative gap {max(gaps):.3e}"
