"""The `mixzoo` command: list, show, train, grid pass-through, bench, exit codes."""
import json
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

from mixzoo import build_model
from mixzoo.cli import main

ROOT = Path(__file__).resolve().parents[1]


def run(capsys, *argv):
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def test_no_subcommand_prints_help(capsys):
    rc, out, _ = run(capsys)
    assert rc == 0 and "usage: mixzoo" in out
    for cmd in ("list", "show", "train", "grid", "bench"):
        assert cmd in out


def test_list_text_and_json(capsys):
    rc, out, _ = run(capsys, "list")
    assert rc == 0
    assert "deltanet  [builtin]  mixzoo.mixers.deltanet.DeltaNetMixer" in out
    assert "window=512" in out
    rc, out, _ = run(capsys, "list", "*attn*", "--json")
    assert rc == 0
    data = json.loads(out)
    assert data["mixers"] == [] and data["broken"] == {}
    rc, out, _ = run(capsys, "list", "sliding*", "--json")
    (row,) = json.loads(out)["mixers"]
    assert row["name"] == "sliding_window" and row["source"] == "builtin"
    assert row["fields"]["window"] == 512 and "type" not in row["fields"]


def test_list_recipes(capsys):
    rc, out, _ = run(capsys, "list", "--recipes", "deltanet-swa*", "--json")
    assert rc == 0
    names = [r["name"] for r in json.loads(out)["recipes"]]
    assert names == ["deltanet-swa-340m", "deltanet-swa-tiny"]


def test_show_340m_table(capsys):
    rc, out, _ = run(capsys, "show", "deltanet-swa-340m", "--seq-len", "4096", "--device", "cpu")
    assert rc == 0
    assert "deltanet-swa-340m: causal_lm, d_model=1024, vocab_size=32000, 24 layers" in out
    assert "state@4096" in out and "parameters: 335.45M" in out
    rows = [ln for ln in out.splitlines() if ln.strip()[:2].strip().isdigit()]
    assert len(rows) == 24
    assert "sliding_window" in rows[1] and "window=512" in rows[1] and "reference" in rows[1]


def test_show_json_with_overrides(capsys):
    rc, out, _ = run(capsys, "show", "deltanet-swa-tiny", "model.presets.swa.window=4",
                     "--seq-len", "100", "--json", "model.presets.swa.window=8")
    assert rc == 0
    info = json.loads(out)
    assert info["num_layers"] == 4 and info["seq_len"] == 100
    layers = info["layers"]
    assert [r["type"] for r in layers] == ["deltanet", "sliding_window"] * 2
    assert layers[1]["settings"]["window"] == 8 and layers[1]["config"]["window"] == 8
    # SWA keeps the last window-1 keys and values; DeltaNet's state does not grow with T.
    assert layers[1]["state_size"] < layers[0]["state_size"] * 10
    assert info["totals"]["params"] == sum(r["block_params"] for r in layers) + \
        info["totals"]["embedding_params"] + 64          # + the final norm
    assert info["recipe_data"]["model"]["layers"][1]["window"] == 8


def test_bad_recipe_exit_code_2(capsys, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  d_model: 32\n  vocab_size: 64\n  layers: [deltnet]\n")
    rc, out, err = run(capsys, "show", str(bad))
    assert rc == 2 and out == ""
    assert f"{bad}:4:12: model.layers[0]:" in err and "did you mean 'deltanet'" in err
    rc, _, err = run(capsys, "show", "deltanet-tiny", "model.d_model=abc")
    assert rc == 2 and "override 'model.d_model=abc'" in err


def test_python_m_mixzoo_no_traceback(tmp_path):
    """`python -m mixzoo` is the CLI; a YAML error is reported with line and column."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  d_model: 32\n  layers: [gla\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT),
                                                       os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, "-m", "mixzoo", "show", str(bad)], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert f"{bad}:4:1: YAML syntax error" in proc.stderr


@pytest.fixture
def one_thread():
    """Tiny models on a shared 2-core CI box: intra-op threads only add contention."""
    import torch
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_train_prints_a_final_metrics_line(capsys, tmp_path, one_thread):
    rc, out, _ = run(capsys, "train", "transformer-tiny", "train.steps=2",
                     "train.eval_every=2", "train.warmup_steps=1", "train.eval_batches=1",
                     "train.device=cpu", "--quiet", "--out", str(tmp_path))
    assert rc == 0
    (line,) = [ln for ln in out.splitlines() if ln.startswith("final:")]
    n = sum(p.numel() for p in build_model("transformer-tiny").parameters())
    assert "step=2" in line and "accuracy=" in line and f"params={n}" in line
    assert (tmp_path / "metrics.jsonl").read_text().count("\n") == 1


def test_train_needs_a_train_section(capsys, tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("model:\n  d_model: 32\n  vocab_size: 64\n  layers: [gla]\n")
    rc, _, err = run(capsys, "train", str(path))
    assert rc == 2 and "no `train:` section" in err


def test_grid_passes_argv_verbatim(capsys, monkeypatch):
    seen = {}
    fake = types.ModuleType("mixzoo.grid.cli")

    def fake_main(argv):
        seen["argv"] = argv
        return 3
    fake.main = fake_main
    monkeypatch.setitem(sys.modules, "mixzoo.grid.cli", fake)
    assert main(["grid", "mqar-small", "--resume", "--help"]) == 3
    assert seen["argv"] == ["mqar-small", "--resume", "--help"]


def test_bench_on_cpu(capsys, one_thread):
    rc, out, _ = run(capsys, "bench", "transformer-tiny", "--device", "cpu", "--batch", "2",
                     "--seq-len", "16", "--steps", "2", "--warmup", "1", "--json")
    assert rc == 0
    res = json.loads(out)
    n = sum(p.numel() for p in build_model("transformer-tiny").parameters())
    assert res["device"] == "cpu" and res["params"] == n
    assert res["tokens_per_s"] > 0 and res["peak_memory_bytes"] > 0
    rc, out, _ = run(capsys, "bench", "transformer-tiny", "--device", "cpu", "--batch", "2",
                     "--seq-len", "16", "--steps", "1", "--warmup", "0", "--threads", "1")
    assert rc == 0 and "tokens/s" in out and "fwd+bwd" in out


def test_unknown_option_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as e:
        main(["show", "deltanet-tiny", "--colour"])
    assert e.value.code == 2 and "unrecognized arguments: --colour" in capsys.readouterr().err


def test_model_constructor_errors_are_user_errors(capsys, monkeypatch):
    import mixzoo.recipes.summary as summary

    def refuse(recipe):
        raise ValueError("model.block.mlp: 'none' is not available for vision models")
    monkeypatch.setattr(summary, "build_model", refuse)
    rc, out, err = run(capsys, "show", "deltanet-tiny")
    assert rc == 2 and out == ""
    assert "deltanet-tiny: cannot build the model: model.block.mlp" in err
