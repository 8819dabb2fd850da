"""The contract suite must fail on broken mixers: each test registers a toy mixer with one
deliberate defect and checks that exactly the matching contract check rejects it."""
from typing import ClassVar, Literal

import pytest
import torch
from torch import nn

from mixzoo.mixers.base import Mixer, MixerConfig
from mixzoo.registry import register_mixer, unregister_mixer
from mixzoo.testing import CONTRACT_CHECKS, check_mixer_contract


class ToyCumsum(Mixer):
    """A correct little mixer: y_t = W_o sum_{s<=t} W_i x_s (state: the running sum)."""
    state_grows_with_seq: ClassVar[bool] = False

    class Config(MixerConfig):
        type: Literal["contract_toy"] = "contract_toy"

    def __init__(self, config, d_model, layer_idx=0):
        super().__init__(config, d_model, layer_idx)
        self.inp = nn.Linear(d_model, d_model)
        self.out = nn.Linear(d_model, d_model)

    def _forward(self, x, state):
        h = self.inp(x)                                       # [B,T,D]
        if not self.config.causal:
            return self.out(h.sum(1, keepdim=True).expand_as(h)), None
        start = 0 if state is None else state.to(h.dtype)[:, None]
        c = h.cumsum(1) + start                               # [B,T,D]
        return self.out(c), c[:, -1].float()

    def init_state(self, batch, device=None, dtype=torch.float32):
        return torch.zeros(batch, self.d_model, device=device)

    def state_size(self, seq_len):
        return self.d_model


class LeaksFuture(ToyCumsum):
    def _forward(self, x, state):
        y, s = super()._forward(x, state)
        return y + x.flip(1), s                               # future tokens leak into the past


class DropsState(ToyCumsum):
    def _forward(self, x, state):
        return super()._forward(x, None)                      # ignores the carried state


class UnusedParameter(ToyCumsum):
    def __init__(self, config, d_model, layer_idx=0):
        super().__init__(config, d_model, layer_idx)
        self.unused = nn.Parameter(torch.ones(3))


class WrongStateSize(ToyCumsum):
    def state_size(self, seq_len):
        return self.d_model + 1


class ClaimsGrowing(ToyCumsum):
    state_grows_with_seq: ClassVar[bool] = True


class AlwaysCausal(ToyCumsum):
    def _forward(self, x, state):
        if self.config.causal:
            return super()._forward(x, state)
        return self.out(self.inp(x).cumsum(1)), None          # causal=False stays causal


class WrongDtype(ToyCumsum):
    def _forward(self, x, state):
        y, s = super()._forward(x, state)
        return y.float(), s


class NoValidation(ToyCumsum):
    def forward(self, x, state=None):                         # skips the base shape checks
        return self._forward(x, state)


@pytest.fixture
def register():
    names = []

    def reg(cls):
        register_mixer(cls, override=True)
        names.append(cls.Config().type)
        return cls.Config().type

    yield reg
    for n in names:
        unregister_mixer(n)


def test_a_correct_mixer_passes_every_check(register):
    assert check_mixer_contract(register(ToyCumsum)) == list(CONTRACT_CHECKS)


@pytest.mark.parametrize("cls, failing", [
    (LeaksFuture, {"causality", "state_carry"}),   # a leak also breaks piecewise decoding
    (DropsState, {"state_carry"}),
    (UnusedParameter, {"gradients"}),
    (WrongStateSize, {"state_size"}),
    (ClaimsGrowing, {"state_size"}),
    (AlwaysCausal, {"bidirectional"}),
    (WrongDtype, {"output_shape_dtype"}),
    (NoValidation, {"bad_input", "bidirectional"}),  # also skips the causal-state check
])
def test_the_suite_catches_a_broken_mixer(register, cls, failing):
    name = register(cls)
    for check in failing:
        with pytest.raises(AssertionError, match=f"^{check}: "):
            check_mixer_contract(name, checks=[check])
    # ...and only those checks: the others still pass on it.
    check_mixer_contract(name, checks=[c for c in CONTRACT_CHECKS if c not in failing])
