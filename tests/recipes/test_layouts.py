"""The three layer layouts, per-layer overrides, dotted CLI overrides, interpolation."""
import textwrap

import pytest
import torch

from mixzoo import build_model, load_recipe
from mixzoo.models import SequenceModel
from mixzoo.recipes import Recipe


def types(recipe):
    return [c.type for c in recipe.model.layers]


def lm(**model):
    return {"model": {"d_model": 32, "vocab_size": 64, **model}}


def test_explicit_list_with_names_and_specs():
    r = load_recipe(lm(layers=["deltanet", {"type": "sliding_window", "num_heads": 2,
                                            "window": 16}, "short_conv"]))
    assert types(r) == ["deltanet", "sliding_window", "short_conv"]
    assert r.model.layers[1].window == 16 and r.model.layers[1].num_heads == 2


def test_pattern_with_presets_repeat_and_num_layers():
    presets = {"dn": {"type": "deltanet", "num_heads": 2},
               "swa": {"type": "sliding_window", "window": 8}}
    r = load_recipe(lm(presets=presets, pattern=["dn", "swa"], repeat=3))
    assert types(r) == ["deltanet", "sliding_window"] * 3
    assert r.model.layers[0].num_heads == 2
    # num_layers tiles the pattern cyclically; a registry name works in a pattern too.
    r = load_recipe(lm(presets=presets, pattern=["dn", "dn", "attention"], num_layers=5))
    assert types(r) == ["deltanet", "deltanet", "attention", "deltanet", "deltanet"]


def test_attention_layers_sugar():
    r = load_recipe(lm(mixer={"type": "gla", "num_heads": 2}, num_layers=6,
                       attention_layers=[1, -1]))
    assert types(r) == ["gla", "attention", "gla", "gla", "gla", "attention"]
    r = load_recipe(lm(mixer="retnet", num_layers=3, attention_layers=[0],
                       attention={"type": "sliding_window", "window": 4}))
    assert types(r) == ["sliding_window", "retnet", "retnet"]


def test_per_layer_overrides_revalidate_and_can_replace_the_mixer():
    r = load_recipe(lm(mixer="deltanet", num_layers=4,
                       overrides={2: {"num_heads": 8}, "3": {"type": "attention"},
                                  -4: {"use_short_conv": False}}))
    assert types(r) == ["deltanet", "deltanet", "deltanet", "attention"]
    assert r.model.layers[2].num_heads == 8 and r.model.layers[1].num_heads == 4
    assert r.model.layers[0].use_short_conv is False
    assert r.model.layers[2].model_fields_set >= {"num_heads"}


def test_dotted_cli_overrides(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text(textwrap.dedent("""\
        model:
          d_model: 32
          vocab_size: 64
          presets:
            dn: {type: deltanet}
            swa: {type: sliding_window, window: 16}
          pattern: [dn]
          repeat: 2
        """))
    r = load_recipe(path, ["model.pattern=[dn,swa]", "model.d_model=64",
                           "model.presets.dn.num_heads=2", "model.presets.swa.window=1e2",
                           "model.overrides.1.window=4"])
    assert types(r) == ["deltanet", "sliding_window"] * 2
    assert r.model.d_model == 64 and r.model.layers[0].num_heads == 2
    assert [c.window for c in r.model.layers[1::2]] == [4, 100]   # 1e2 parses as a number
    # A mapping value replaces the spec instead of merging into it.
    r = load_recipe(path, ["model.presets.dn={type: gla, num_heads: 2}"])
    assert types(r) == ["gla", "gla"]
    # `~key` deletes, so a recipe can switch layouts from the command line.
    r = load_recipe(path, ["~model.pattern", "~model.repeat", "~model.presets",
                           "model.layers=[retnet, short_conv]"])
    assert types(r) == ["retnet", "short_conv"]


def test_index_override_on_an_explicit_list_of_names():
    r = load_recipe(lm(layers=["deltanet", "sliding_window"]), ["model.layers.1.window=4"])
    assert r.model.layers[1].window == 4 and r.model.layers[1].type == "sliding_window"


def test_interpolation_and_train_section():
    r = load_recipe({"model": {"d_model": 32, "vocab_size": "${train.task.vocab_size}",
                               "layers": ["deltanet"]},
                     "train": {"task": {"type": "mqar", "vocab_size": 96, "seq_len": 32,
                                        "num_kv_pairs": 4}, "steps": 5, "warmup_steps": 1}},
                    ["train.task.vocab_size=80"])
    assert r.model.vocab_size == 80 and r.train.steps == 5


def test_sequence_kind_builds_a_sequence_model():
    r = load_recipe({"model": {"kind": "sequence", "d_model": 32, "input_dim": 3,
                               "output_dim": 5, "pooling": "last",
                               "layers": ["gla", "short_conv"],
                               "block": {"norm": "layernorm", "mlp": "mlp"}}})
    model = build_model(r)
    assert isinstance(model, SequenceModel)
    assert model(torch.randn(2, 9, 3)).shape == (2, 5)


def test_vision_section_is_validated_without_timm():
    from mixzoo.models.vision.config import VisionSpec
    r = load_recipe({"model": {"kind": "vision", "layers": ["deltanet"],
                               "vision": {"base": "vit_tiny_patch16_224", "num_classes": 10}}})
    assert isinstance(r.model.vision, VisionSpec) and r.model.vision.num_classes == 10
    assert Recipe.model_validate(r.model_dump(mode="json")) == r


def test_recipe_is_frozen_and_dump_round_trips():
    r = load_recipe(lm(mixer="deltanet", num_layers=2, attention_layers=[1]))
    with pytest.raises(Exception):
        r.model.d_model = 3
    again = Recipe.model_validate(r.model_dump())
    assert again == r and types(again) == ["deltanet", "attention"]


def test_task_defaults_resolve_in_interpolations():
    r = load_recipe({"model": {"d_model": 32, "vocab_size": "${train.task.vocab_size}",
                               "layers": ["deltanet"]},
                     "train": {"task": {"type": "mqar"}, "steps": 5, "warmup_steps": 1}})
    assert r.model.vocab_size == r.train.task.vocab_size == 256


def test_dump_keeps_which_block_fields_were_set():
    """A vision model keeps its timm base's block for unset fields, so a dumped and
    reloaded recipe (a grid run) must know which were set."""
    r = load_recipe(lm(layers=["gla"], block={"mlp_ratio": 2}))
    data = r.model_dump(mode="json")
    assert data["model"]["block"] == {"mlp_ratio": 2.0}
    again = Recipe.model_validate(data)
    assert again == r and again.model.block.model_fields_set == {"mlp_ratio"}
