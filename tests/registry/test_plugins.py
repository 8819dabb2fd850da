"""Entry-point plugins: the example plugin is discovered from a `*.dist-info` on sys.path,
validated in a recipe and listed; a broken plugin is reported and breaks nothing else."""
import json
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest
import torch

import mixzoo
from mixzoo.cli import main
from mixzoo.recipes import RecipeError, load_recipe
from mixzoo.registry import get_mixer, list_mixers
from mixzoo.registry.core import entries
from mixzoo.registry.plugins import broken_plugins, reset_plugins

pytestmark = pytest.mark.filterwarnings("ignore:plugin 'clash-plugin' provides:UserWarning")

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_SRC = ROOT / "examples" / "mixzoo-plugin-example" / "src"

CLASH_MODULE = '''
from typing import Literal
from mixzoo import Mixer, MixerConfig

class FakeDeltaNet(Mixer):
    class Config(MixerConfig):
        type: Literal["deltanet"] = "deltanet"
'''

NOT_A_MIXER_MODULE = "def not_a_mixer():\n    return 1\n"

DECORATED_CLASH_MODULE = '''
from typing import Literal
from mixzoo import Mixer, MixerConfig, register_mixer

@register_mixer
class FakeGLA(Mixer):
    class Config(MixerConfig):
        type: Literal["gla"] = "gla"
'''


def make_dist(site: Path, name: str, entry_points: dict[str, str]) -> None:
    """A minimal installed distribution: METADATA + entry_points.txt in a .dist-info."""
    info = site / f"{name.replace('-', '_')}-0.1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1.0\n")
    lines = "".join(f"{k} = {v}\n" for k, v in entry_points.items())
    (info / "entry_points.txt").write_text(f"[mixzoo.mixers]\n{lines}")


@pytest.fixture
def site(tmp_path, monkeypatch):
    """A temp site dir on sys.path with the example plugin, a broken plugin, a plugin that
    clashes with a built-in and one that names a function; plugins are rediscovered."""
    make_dist(tmp_path, "mixzoo-plugin-example",
              {"rwkv_time_mix": "mixzoo_plugin_example.rwkv:RWKVTimeMix"})
    make_dist(tmp_path, "broken-plugin", {"broken_mixer": "no_such_module_xyz:Mixer"})
    (tmp_path / "clash_mod.py").write_text(CLASH_MODULE)
    make_dist(tmp_path, "clash-plugin", {"deltanet": "clash_mod:FakeDeltaNet"})
    (tmp_path / "odd_mod.py").write_text(NOT_A_MIXER_MODULE)
    make_dist(tmp_path, "odd-plugin", {"odd": "odd_mod:not_a_mixer"})
    (tmp_path / "deco_clash_mod.py").write_text(DECORATED_CLASH_MODULE)
    make_dist(tmp_path, "deco-clash-plugin", {"gla_too": "deco_clash_mod"})
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.syspath_prepend(str(EXAMPLE_SRC))
    reset_plugins()
    yield tmp_path
    reset_plugins()
    monkeypatch.undo()
    reset_plugins()                 # rediscover without the temp site (nothing found)


def test_example_plugin_discovered_and_listed(site, capsys):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        names = list_mixers()
    assert "rwkv_time_mix" in names
    assert entries()["rwkv_time_mix"].source == "plugin: mixzoo-plugin-example"
    # The clash keeps the built-in and warns with the distribution name.
    assert entries()["deltanet"].source == "builtin"
    assert any("clash-plugin" in str(w.message) and "deltanet" in str(w.message)
               for w in caught)
    assert main(["list", "rwkv*", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    (row,) = out["mixers"]
    assert row["name"] == "rwkv_time_mix" and row["fields"]["chunk_size"] == 64
    assert main(["list"]) == 0
    text = capsys.readouterr().out
    assert "rwkv_time_mix  [plugin: mixzoo-plugin-example]" in text
    assert "broken plugins" in text and "broken-plugin" in text


def test_example_plugin_in_a_recipe(site, tmp_path):
    path = tmp_path / "hybrid.yaml"
    path.write_text(textwrap.dedent("""\
        model:
          d_model: 32
          vocab_size: 64
          mixer: {type: rwkv_time_mix, chunk_size: 8}
          num_layers: 3
          attention_layers: [1]
          attention: {type: sliding_window, num_heads: 2, window: 8}
        """))
    recipe = load_recipe(path)
    assert [c.type for c in recipe.model.layers] == ["rwkv_time_mix", "sliding_window",
                                                     "rwkv_time_mix"]
    model = mixzoo.build_model(recipe)
    out = model(torch.randint(0, 64, (2, 10)))
    assert out.logits.shape == (2, 10, 64)
    # Plugin configs validate like built-ins: a bad field is located and explained.
    with pytest.raises(RecipeError) as e:
        load_recipe(path, ["model.mixer.chunk_sise=4"])
    assert "model.mixer.chunk_sise" in str(e.value) and "did you mean 'chunk_size'" in str(e.value)


def test_broken_plugin_is_reported_not_fatal(site, tmp_path):
    broken = broken_plugins()
    assert "no_such_module_xyz" in broken["broken_mixer"]
    assert broken["broken_mixer"].startswith("broken-plugin: ModuleNotFoundError")
    assert "not a mixzoo Mixer subclass" in broken["odd"]
    # A module that registers a built-in's name on import stops there: recorded, built-in kept.
    assert "deco-clash-plugin: ValueError: mixer 'gla' is already registered" in broken["gla_too"]
    assert entries()["gla"].source == "builtin"
    with pytest.raises(ImportError, match="broken-plugin.*no_such_module_xyz"):
        get_mixer("broken_mixer")
    assert get_mixer("deltanet").__name__ == "DeltaNetMixer"     # the others keep working
    with pytest.raises(RecipeError) as e:
        load_recipe({"model": {"d_model": 32, "vocab_size": 64, "layers": ["broken_mixer"]}})
    msg = str(e.value)
    assert "model.layers[0]" in msg and "failed to load" in msg and "broken-plugin" in msg


def test_fresh_process_lists_plugins(tmp_path):
    """End to end in a new interpreter: `python -m mixzoo list --json` with the dists on
    PYTHONPATH lists the example plugin and the broken one, and exits 0."""
    make_dist(tmp_path, "mixzoo-plugin-example",
              {"rwkv_time_mix": "mixzoo_plugin_example.rwkv:RWKVTimeMix"})
    make_dist(tmp_path, "broken-plugin", {"broken_mixer": "no_such_module_xyz:Mixer"})
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(tmp_path), str(EXAMPLE_SRC), str(ROOT), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, "-m", "mixzoo", "list", "--json"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    sources = {m["name"]: m["source"] for m in out["mixers"]}
    assert sources["rwkv_time_mix"] == "plugin: mixzoo-plugin-example"
    assert sources["deltanet"] == "builtin"
    assert "ModuleNotFoundError" in out["broken"]["broken_mixer"]
