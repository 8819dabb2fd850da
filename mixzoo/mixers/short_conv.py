"""Short convolution: a depthwise causal convolution over time (as in H3, Hyena, Based and
the short convs inside DeltaNet), used on its own as a cheap local token mixer.

    y[t,d] = act( sum_{j<W} w[d,j] x[t-W+1+j, d] + b[d] ),   act = identity or SiLU

State (carried exactly): the last kernel_size-1 inputs, fp32 [B,D,W-1] (zeros at start).
causal=False (vision): "same" padding centred on t ((W-1)//2 taps into the past, the rest
into the future; for even W one more into the future); no state.
"""
from __future__ import annotations

from typing import Any, ClassVar, Literal

import torch
from pydantic import Field
from torch import nn

from mixzoo.kernels.conv1d import short_conv
from mixzoo.registry import register_mixer

from .base import Mixer, MixerConfig
from ._util import conv_weight


@register_mixer
class ShortConvMixer(Mixer):
    """Depthwise short-conv token mixer. x[B,T,D] -> y[B,T,D]; see the module docstring."""

    state_grows_with_seq: ClassVar[bool] = False

    class Config(MixerConfig):
        type: Literal["short_conv"] = "short_conv"
        # 2..8 is what the conv kernels support; 4 is the usual "short" conv width.
        kernel_size: int = Field(4, ge=2, le=8)
        # Linear by default: the Block's MLP right after supplies the nonlinearity.
        # "silu" matches the short convs inside DeltaNet.
        activation: Literal["silu"] | None = None
        bias: bool = True

    def __init__(self, config: Config, d_model: int, layer_idx: int = 0):
        super().__init__(config, d_model, layer_idx)
        self.weight = conv_weight(d_model, config.kernel_size)  # [D,W]
        self.bias = nn.Parameter(torch.zeros(d_model)) if config.bias else None

    def _forward(self, x: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]:
        c = self.config
        y, new_state = short_conv(x, self.weight, self.bias, activation=c.activation,
                                  causal=c.causal, initial_state=state,
                                  output_final_state=c.causal, backend=c.backend)
        return y, new_state  # [B,T,D], [B,D,W-1] fp32 or None

    def init_state(self, batch: int, device=None, dtype: torch.dtype = torch.float32
                   ) -> torch.Tensor:
        """Zero history, fp32 [B,D,W-1] (the conv kernels keep their state in fp32)."""
        return torch.zeros(batch, self.d_model, self.config.kernel_size - 1, device=device,
                           dtype=torch.float32)

    def state_size(self, seq_len: int) -> int:
        return self.d_model * (self.config.kernel_size - 1)
