"""Channel mixers: a GELU MLP and SwiGLU."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class MLP(nn.Module):
    """fc2(gelu(fc1(x))), hidden = ratio * D."""

    def __init__(self, dim: int, ratio: float):
        super().__init__()
        hidden = int(round(ratio * dim))
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class SwiGLU(nn.Module):
    """down(silu(gate(x)) * up(x)).

    hidden = 2/3 * ratio * D rounded up to a multiple of 8, so a SwiGLU with ratio 4 has
    the same parameter count as a 4x GELU MLP (as in LLaMA)."""

    def __init__(self, dim: int, ratio: float):
        super().__init__()
        hidden = int(2 * ratio * dim / 3)
        hidden = (hidden + 7) // 8 * 8
        self.gate_up = nn.Linear(dim, 2 * hidden, bias=False)
        self.down = nn.Linear(hidden, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up(x).chunk(2, dim=-1)   # [B,T,hidden] each
        return self.down(F.silu(gate) * up)


def build_mlp(kind: str, dim: int, ratio: float) -> nn.Module | None:
    if kind == "swiglu":
        return SwiGLU(dim, ratio)
    if kind == "mlp":
        return MLP(dim, ratio)
    if kind == "none":
        return None
    raise ValueError(f"mlp: expected 'swiglu', 'mlp' or 'none', got {kind!r}")
