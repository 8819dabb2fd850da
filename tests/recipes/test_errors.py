"""Bad recipes: every one is a RecipeError naming the file, the line, the dotted path of the
bad field, the value and what was allowed."""
import textwrap

import pytest

from mixzoo.recipes import RecipeError, load_recipe

GOOD = """\
model:
  d_model: 32
  vocab_size: 64
  presets:
    dn: {type: deltanet, num_heads: 2}
    swa: {type: sliding_window, num_heads: 2, window: 16}
  pattern: [dn, swa]
  repeat: 2
train:
  task: {type: mqar, vocab_size: 64, seq_len: 32, num_kv_pairs: 4}
  steps: 10
  warmup_steps: 2
"""


def fails(tmp_path, text: str, overrides=()) -> RecipeError:
    path = tmp_path / "bad.yaml"
    path.write_text(textwrap.dedent(text))
    with pytest.raises(RecipeError) as e:
        load_recipe(path, overrides)
    assert str(path) in str(e.value)
    return e.value


def test_good_recipe_loads(tmp_path):
    path = tmp_path / "good.yaml"
    path.write_text(GOOD)
    assert len(load_recipe(path).model.layers) == 4


def test_bad_type_suggests_the_closest_name(tmp_path):
    e = fails(tmp_path, GOOD.replace("type: deltanet", "type: deltnet"))
    (issue,) = e.issues
    assert issue.path == "model.presets.dn.type" and (issue.line, issue.column) == (5, 10)
    assert "unknown mixer type 'deltnet'; did you mean 'deltanet'?" in issue.message
    assert "registered: attention, deltanet, gla" in issue.message
    assert f"{tmp_path / 'bad.yaml'}:5:10: model.presets.dn.type" in str(e)


def test_unknown_mixer_field(tmp_path):
    e = fails(tmp_path, GOOD.replace("window: 16", "windw: 16"))
    (issue,) = e.issues
    assert issue.path == "model.presets.swa.windw" and issue.line == 6
    assert "unknown field 'windw' for mixer 'sliding_window'; did you mean 'window'?" in str(e)


def test_unknown_model_key(tmp_path):
    e = fails(tmp_path, GOOD.replace("d_model: 32", "d_model: 32\n  d_modle: 4"))
    (issue,) = e.issues
    assert issue.path == "model.d_modle" and issue.line == 3
    assert "did you mean 'd_model'?" in issue.message and "allowed: kind, d_model" in issue.message


def test_unknown_top_level_and_train_keys(tmp_path):
    e = fails(tmp_path, GOOD.replace("steps: 10", "setps: 10") + "optimiser: adam\n")
    paths = [i.path for i in e.issues]
    assert paths == ["train.setps", "optimiser"]
    assert "did you mean 'steps'?" in e.issues[0].message
    assert "allowed: description, model, train" in e.issues[1].message


def test_wrong_value_type(tmp_path):
    e = fails(tmp_path, GOOD.replace("window: 16", "window: sixteen"))
    (issue,) = e.issues
    assert issue.path == "model.presets.swa.window" and issue.value == "sixteen"
    assert "valid integer" in issue.message and "(got 'sixteen')" in str(e)


def test_explicit_layer_path_uses_brackets(tmp_path):
    e = fails(tmp_path, """\
        model:
          d_model: 32
          vocab_size: 64
          layers:
            - deltanet
            - {type: sliding_window, window: -5}
        """)
    (issue,) = e.issues
    assert issue.path == "model.layers[1].window" and issue.line == 6
    assert "greater than or equal to" in issue.message and issue.value == -5


def test_pattern_names_a_missing_preset(tmp_path):
    e = fails(tmp_path, GOOD.replace("pattern: [dn, swa]", "pattern: [dn, swa2]"))
    (issue,) = e.issues
    assert issue.path == "model.pattern[1]" and issue.value == "swa2"
    assert "no preset named 'swa2'; did you mean 'swa'?" in issue.message


def test_override_index_out_of_range(tmp_path):
    text = GOOD.replace("repeat: 2", "repeat: 2\n  overrides:\n    7: {window: 4}")
    e = fails(tmp_path, text)
    (issue,) = e.issues
    assert issue.path == "model.overrides[7]" and issue.line == 10
    assert "the model has 4 layers (0..3" in issue.message


def test_override_field_is_revalidated(tmp_path):
    text = GOOD.replace("repeat: 2", "repeat: 2\n  overrides:\n    1: {window: -3}")
    (issue,) = fails(tmp_path, text).issues
    assert issue.path == "model.overrides[1].window" and issue.line == 10


def test_yaml_syntax_error_has_line_and_column(tmp_path):
    e = fails(tmp_path, GOOD.replace("pattern: [dn, swa]", "pattern: [dn, swa\n  oops: 1"))
    (issue,) = e.issues
    assert "YAML syntax error" in issue.message
    assert (issue.line, issue.column) == (8, 7)
    assert "bad.yaml:8:7:" in str(e)


def test_unsafe_yaml_tag_is_refused(tmp_path):
    e = fails(tmp_path, "model:\n  d_model: !!python/object/apply:os.system [echo hi]\n")
    assert "tags that import or run Python code are not allowed" in str(e)
    assert e.issues[0].line == 2


def test_two_layouts_at_once(tmp_path):
    e = fails(tmp_path, GOOD.replace("repeat: 2", "repeat: 2\n  layers: [gla]"))
    assert "two different layer layouts" in str(e)


def test_layout_keys_in_the_wrong_form(tmp_path):
    e = fails(tmp_path, """\
        model:
          d_model: 32
          vocab_size: 64
          layers: [gla, gla]
          repeat: 3
          attention_layers: [0]
        """)
    msgs = {i.path: i.message for i in e.issues}
    assert "only goes with `pattern`" in msgs["model.repeat"]
    assert "only goes with `mixer`" in msgs["model.attention_layers"]


def test_mixer_form_needs_num_layers_and_valid_attention_indices(tmp_path):
    e = fails(tmp_path, """\
        model:
          d_model: 32
          vocab_size: 64
          mixer: deltanet
          attention_layers: [1]
        """)
    assert "`mixer:` needs `num_layers:`" in str(e)
    e = fails(tmp_path, """\
        model:
          d_model: 32
          vocab_size: 64
          mixer: deltanet
          num_layers: 4
          attention_layers: [1, 1, 9]
        """)
    msgs = {i.path: i.message for i in e.issues}
    assert "listed twice" in msgs["model.attention_layers[1]"]
    assert "out of range" in msgs["model.attention_layers[2]"]


def test_kind_specific_fields(tmp_path):
    e = fails(tmp_path, """\
        model:
          d_model: 32
          input_dim: 3
          layers: [gla]
        """)
    msgs = {i.path: i.message for i in e.issues}
    assert "is for kind sequence" in msgs["model.input_dim"]
    assert "kind 'causal_lm' needs `vocab_size`" in msgs["model.vocab_size"]


def test_bad_literal_suggests(tmp_path):
    e = fails(tmp_path, GOOD.replace("repeat: 2", "repeat: 2\n  kind: causal\n"
                                                  "  block: {norm: rmsnrom}"))
    msgs = {i.path: i.message for i in e.issues}
    assert "did you mean 'causal_lm'?" in msgs["model.kind"]
    assert "did you mean 'rmsnorm'?" in msgs["model.block.norm"]


def test_width_the_mixer_cannot_take(tmp_path):
    e = fails(tmp_path, GOOD.replace("d_model: 32", "d_model: 33"))
    msgs = {i.path: i.message for i in e.issues}
    assert {i.line for i in e.issues} == {5, 6}
    assert "layer 0 (deltanet) cannot be built at d_model=33" in msgs["model.presets.dn"]
    assert "layer 1 (sliding_window) cannot be built" in msgs["model.presets.swa"]
    assert "num_heads=2" in msgs["model.presets.swa"]


def test_bad_override_is_named(tmp_path):
    path = tmp_path / "good.yaml"
    path.write_text(GOOD)
    with pytest.raises(RecipeError) as e:
        load_recipe(path, ["model.d_model=wide", "model.presets.dn.num_heads"])
    text = str(e.value)
    assert "override 'model.presets.dn.num_heads': cannot apply: expected key.path=value" in text
    with pytest.raises(RecipeError) as e:
        load_recipe(path, ["model.d_model=wide"])
    (issue,) = e.value.issues
    assert issue.origin == "override 'model.d_model=wide'" and issue.path == "model.d_model"
    assert "valid integer" in issue.message


def test_unresolvable_interpolation(tmp_path):
    e = fails(tmp_path, GOOD.replace("vocab_size: 64\n  presets",
                                     "vocab_size: ${train.task.vocab}\n  presets"))
    (issue,) = e.issues
    assert issue.path == "model.vocab_size" and issue.line == 3
    assert "cannot resolve" in issue.message and "train.task.vocab" in issue.message


def test_unknown_recipe_name_and_missing_file(tmp_path):
    with pytest.raises(RecipeError, match="did you mean 'deltanet-swa-tiny'"):
        load_recipe("deltanet-swa-tnyi")
    with pytest.raises(RecipeError, match="no such file"):
        load_recipe(tmp_path / "nope.yaml")


def test_not_a_mapping(tmp_path):
    e = fails(tmp_path, "- just\n- a list\n")
    assert "a recipe is a mapping with a `model:` section" in str(e)


def test_all_problems_are_reported_together(tmp_path):
    e = fails(tmp_path, GOOD.replace("type: deltanet", "type: deltnet")
              .replace("window: 16", "window: x").replace("steps: 10", "steps: -1"))
    assert [i.path for i in e.issues] == ["model.presets.dn.type", "model.presets.swa.window",
                                          "train.steps"]
    assert "(3 problems)" in str(e)


def test_model_vocab_smaller_than_the_task(tmp_path):
    e = fails(tmp_path, GOOD.replace("vocab_size: 64\n  presets", "vocab_size: 32\n  presets"))
    (issue,) = e.issues
    assert issue.path == "model.vocab_size" and issue.line == 3
    assert "the task (mqar) uses 64" in issue.message


def test_recipe_error_pickles(tmp_path):
    """Grid workers send errors back across processes."""
    import pickle
    e = fails(tmp_path, GOOD.replace("repeat: 2", "repeat: 2\n  layers: [gla]\n  num_layers: 0"))
    again = pickle.loads(pickle.dumps(e))
    assert str(again) == str(e) and again.issues == e.issues


def test_missing_layout_and_vocab_are_both_reported():
    with pytest.raises(RecipeError) as e:
        load_recipe({"model": {"d_model": 32}})
    msgs = {i.path: i.message for i in e.value.issues}
    assert "no layer layout: give the layers in one of three forms" in msgs["model.layers"]
    assert "needs `vocab_size`" in msgs["model.vocab_size"]
