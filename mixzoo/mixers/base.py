"""The mixer contract shared by every sequence mixer, built-in or plugin.

A mixer maps x[B,T,D] -> y[B,T,D]. It owns no norm and no residual (the Block does).
Its Config (a frozen pydantic model, extra="forbid") holds every default; the module takes
`(config, d_model, layer_idx)` and nothing else.
"""
from __future__ import annotations

from typing import Any, ClassVar, Literal

import torch
from pydantic import BaseModel, ConfigDict
from torch import nn

Backend = Literal["auto", "triton", "reference"]


class MixerConfig(BaseModel):
    """Base of every mixer Config. Subclasses add `type: Literal["name"] = "name"`."""
    model_config = ConfigDict(frozen=True, extra="forbid")

    type: str
    # False = bidirectional mixing (vision): linear mixers scan forward and backward.
    causal: bool = True
    # "auto" = Triton on CUDA tensors, reference elsewhere (MIXZOO_BACKEND overrides).
    backend: Backend = "auto"


class Mixer(nn.Module):
    """Base class: `forward(x[B,T,D], state=None) -> (y[B,T,D], new_state)`.

    Subclasses define a nested `Config(MixerConfig)` and implement `_forward`,
    `init_state` and `state_size`.
    """

    Config: type[MixerConfig] = MixerConfig
    # Whether `state_size(T)` grows with T (attention's KV cache) or is constant (linear
    # mixers, conv). None = undeclared; the contract suite then compares two lengths.
    state_grows_with_seq: ClassVar[bool | None] = None

    def __init__(self, config: MixerConfig, d_model: int, layer_idx: int = 0):
        super().__init__()
        if not isinstance(config, self.Config):
            raise TypeError(f"{type(self).__name__} expects a {self.Config.__qualname__}, "
                            f"got {type(config).__name__}")
        if not isinstance(d_model, int) or d_model <= 0:
            raise ValueError(f"d_model: expected a positive int, got {d_model!r}")
        self.config = config
        self.d_model = d_model
        self.layer_idx = layer_idx

    # -- the contract -------------------------------------------------------------------
    def forward(self, x: torch.Tensor, state: Any = None) -> tuple[torch.Tensor, Any]:
        if not isinstance(x, torch.Tensor) or x.dim() != 3 or x.shape[-1] != self.d_model:
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"{type(self).__name__}: expected x of shape [B,T,D] with "
                             f"D={self.d_model}, got {got}")
        if state is not None and not self.config.causal:
            raise ValueError(f"{type(self).__name__}: carried state needs causal=True "
                             f"(a bidirectional mixer sees the whole sequence at once)")
        return self._forward(x, state)

    def _forward(self, x: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]:
        raise NotImplementedError(f"{type(self).__name__} must implement _forward")

    def init_state(self, batch: int, device: torch.device | str | None = None,
                   dtype: torch.dtype = torch.float32) -> Any:
        """An empty inference state for `batch` sequences (what `forward` carries)."""
        raise NotImplementedError(f"{type(self).__name__} must implement init_state")

    def state_size(self, seq_len: int) -> int:
        """Number of elements of the inference state after `seq_len` tokens (per sequence)."""
        raise NotImplementedError(f"{type(self).__name__} must implement state_size")

    def extra_repr(self) -> str:
        fields = self.config.model_dump(exclude={"type"})
        return f"{self.config.type}, d_model={self.d_model}, " + ", ".join(
            f"{k}={v}" for k, v in fields.items())


def bidirectional(run, x: torch.Tensor) -> torch.Tensor:
    """Combine a forward scan and a reversed scan over time: y = run(x) + flip(run(flip(x))).

    `run(x[B,T,...]) -> y[B,T,...]` is a causal scan that treats batch rows independently.
    Both directions run as ONE call on a doubled batch [2B,T,...]: half the kernel launches,
    each twice as large (short vision sequences are launch- and occupancy-bound).
    """
    both = run(torch.cat([x, x.flip(dims=[1])], dim=0))    # [2B,T,...]
    return combine_directions(both)


class _CombineDirections(torch.autograd.Function):
    """y = both[:B] + flip_T(both[B:]) with a backward that writes [dy, flip_T(dy)] straight
    into one [2B,...] buffer (autograd's own would zero-fill and copy each half, then add)."""

    @staticmethod
    def forward(ctx, both: torch.Tensor) -> torch.Tensor:
        B = both.shape[0] // 2
        y = both[B:].flip(dims=[1])  # [B,T,...]
        return y.add_(both[:B])

    @staticmethod
    def backward(ctx, dy: torch.Tensor) -> torch.Tensor:
        B, T = dy.shape[:2]
        g = dy.new_empty((2 * B,) + tuple(dy.shape[1:]))  # [2B,T,...]
        g[:B].copy_(dy)
        rev = torch.arange(T - 1, -1, -1, device=dy.device)
        torch.index_select(dy, 1, rev, out=g[B:])
        return g


def combine_directions(both: torch.Tensor) -> torch.Tensor:
    """both [2B,T,...] = (forward scan rows, reversed-sequence scan rows) -> [B,T,...] summed
    in original time order: both[:B] + flip_T(both[B:])."""
    if both.shape[0] % 2:
        raise ValueError(f"combine_directions: expected a doubled batch, got {both.shape[0]} rows")
    return _CombineDirections.apply(both)
