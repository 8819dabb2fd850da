"""mixers/base.py helpers."""
import torch

from mixzoo.mixers.base import bidirectional


def test_bidirectional_is_forward_plus_reversed_scan():
    x = torch.randn(3, 11, 4)
    run = lambda t: torch.cumsum(t, dim=1) * torch.arange(1, 12).view(1, 11, 1)  # noqa: E731
    want = run(x) + run(x.flip(1)).flip(1)
    torch.testing.assert_close(bidirectional(run, x), want)
