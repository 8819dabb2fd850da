"""Registry: duplicates, overriding, unknown names with suggestions, fnmatch listing,
build_mixer from a name / dict / Config, unregistering. Throwaway mixers (names zz_test_*)
are registered inside the tests and removed afterwards."""
from typing import Literal

import pytest
import torch
from pydantic import BaseModel, Field

from mixzoo.mixers.base import Mixer, MixerConfig
from mixzoo.registry import (build_mixer, get_entry, get_mixer, list_mixers, register_mixer,
                             unregister_mixer)


class _Identity(Mixer):
    """A throwaway (non-mixing) mixer: y = scale * x."""

    def __init__(self, config, d_model, layer_idx=0):
        super().__init__(config, d_model, layer_idx)
        self.scale = torch.nn.Parameter(torch.full((d_model,), float(config.scale)))

    def _forward(self, x, state):
        return x * self.scale, state

    def init_state(self, batch, device=None, dtype=torch.float32):
        return None

    def state_size(self, seq_len):
        return 0


class Alpha(_Identity):
    class Config(MixerConfig):
        type: Literal["zz_test_alpha"] = "zz_test_alpha"
        scale: float = Field(1.0, gt=0)


class AlphaV2(_Identity):
    class Config(MixerConfig):
        type: Literal["zz_test_alpha"] = "zz_test_alpha"
        scale: float = 2.0


class Beta(_Identity):
    class Config(MixerConfig):
        type: Literal["zz_test_beta"] = "zz_test_beta"
        scale: float = 3.0


@pytest.fixture(autouse=True)
def cleanup():
    before = set(list_mixers())
    yield
    for name in set(list_mixers("zz_test_*")) - before:
        unregister_mixer(name)
    assert set(list_mixers()) == before


def test_register_returns_the_class_and_lists_it():
    assert register_mixer(Alpha) is Alpha
    assert get_mixer("zz_test_alpha") is Alpha
    entry = get_entry("zz_test_alpha")
    assert entry.config_cls is Alpha.Config and entry.source == "user"
    assert "zz_test_alpha" in list_mixers()


def test_duplicate_name_raises_unless_override():
    register_mixer(Alpha)
    with pytest.raises(ValueError, match="zz_test_alpha.*already registered.*override=True"):
        register_mixer(AlphaV2)
    assert get_mixer("zz_test_alpha") is Alpha  # the failed registration changed nothing
    register_mixer(AlphaV2, override=True)
    assert get_mixer("zz_test_alpha") is AlphaV2
    m = build_mixer("zz_test_alpha", 4)
    assert isinstance(m, AlphaV2) and m.scale[0].item() == 2.0


def test_decorator_with_options():
    deco = register_mixer(override=True)
    assert deco(Beta) is Beta and get_mixer("zz_test_beta") is Beta


def test_unknown_name_suggests_close_matches():
    with pytest.raises(KeyError, match="'deltanet'"):
        get_mixer("deltanett")
    with pytest.raises(KeyError, match="'sliding_window'"):
        build_mixer("sliding_windw", 16)
    with pytest.raises(KeyError) as e:
        get_mixer("qqqqqqqq")
    assert "Did you mean" not in str(e.value) and "attention" in str(e.value)  # lists all


def test_fnmatch_listing():
    register_mixer(Alpha)
    register_mixer(Beta)
    assert list_mixers("zz_test_*") == ["zz_test_alpha", "zz_test_beta"]
    assert list_mixers("zz_test_a*") == ["zz_test_alpha"]
    assert list_mixers("zz_test_[b]eta") == ["zz_test_beta"]
    assert list_mixers("zz_test_?") == []
    assert list_mixers() == sorted(list_mixers())
    assert {"attention", "sliding_window"} <= set(list_mixers("*i*n*"))
    assert set(list_mixers("*attention")) == {"attention"}


def test_build_from_name_dict_and_config():
    register_mixer(Alpha)
    by_name = build_mixer("zz_test_alpha", 8, layer_idx=3)
    by_dict = build_mixer({"type": "zz_test_alpha", "scale": 0.5}, 8)
    by_cfg = build_mixer(Alpha.Config(scale=0.25), 8)
    assert by_name.layer_idx == 3 and by_name.scale[0].item() == 1.0
    assert by_dict.scale[0].item() == 0.5 and by_cfg.scale[0].item() == 0.25
    assert all(isinstance(m, Alpha) and m.d_model == 8 for m in (by_name, by_dict, by_cfg))


def test_build_rejects_bad_specs():
    register_mixer(Alpha)
    with pytest.raises(ValueError, match="no_such_field"):
        build_mixer({"type": "zz_test_alpha", "no_such_field": 1}, 8)
    with pytest.raises(ValueError, match="scale"):
        build_mixer({"type": "zz_test_alpha", "scale": -1.0}, 8)   # Field(gt=0)
    with pytest.raises(ValueError, match="type"):
        build_mixer({"scale": 1.0}, 8)
    with pytest.raises(TypeError, match="name, a dict"):
        build_mixer(3, 8)
    with pytest.raises(ValueError, match="d_model"):
        build_mixer("zz_test_alpha", 0)
    with pytest.raises(TypeError, match="Config"):
        Alpha(Beta.Config(), 8)  # a module only accepts its own Config


def test_build_from_config_of_unregistered_type_raises():
    with pytest.raises(KeyError, match="zz_test_beta"):
        build_mixer(Beta.Config(), 8)


def test_builtin_built_by_every_spec_form():
    cfg = get_mixer("short_conv").Config(kernel_size=3)
    for spec in ("short_conv", {"type": "short_conv", "kernel_size": 3}, cfg):
        m = build_mixer(spec, 16)
        assert type(m) is get_mixer("short_conv") and get_entry("short_conv").source == "builtin"


def test_unregister():
    register_mixer(Alpha)
    unregister_mixer("zz_test_alpha")
    assert "zz_test_alpha" not in list_mixers()
    with pytest.raises(KeyError, match="zz_test_alpha"):
        get_mixer("zz_test_alpha")
    with pytest.raises(KeyError):
        unregister_mixer("zz_test_alpha")


def test_register_rejects_non_mixers_and_bad_configs():
    class NotAMixer:
        pass

    class NoLiteral(_Identity):
        class Config(MixerConfig):
            type: str = "zz_test_free"

    class NotAMixerConfig(_Identity):
        class Config(BaseModel):
            type: Literal["zz_test_plain"] = "zz_test_plain"

    with pytest.raises(TypeError, match="not a mixzoo.Mixer"):
        register_mixer(NotAMixer)
    with pytest.raises(TypeError, match="Literal"):
        register_mixer(NoLiteral)
    with pytest.raises(TypeError, match="MixerConfig"):
        register_mixer(NotAMixerConfig)
    assert list_mixers("zz_test_*") == []
