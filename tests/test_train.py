"""The training loop: falling loss on the DeltaNet/SWA hybrid, determinism, early stop,
NaN detection, metrics file, config validation."""
import json

import pytest
import torch
from pydantic import ValidationError

import mixzoo
from mixzoo.train import TrainConfig, TrainingDiverged, train, train_recipe

@pytest.fixture(autouse=True)
def _one_thread():
    """Small models: one thread is as fast, and immune to a busy CI machine (oversubscribed
    OpenMP threads spin and slow everything down many times)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


TASK = {"type": "mqar", "seq_len": 32, "num_kv_pairs": 4, "vocab_size": 32}


def tiny_lm(vocab=32, d=16):
    torch.manual_seed(0)
    return mixzoo.CausalLM(vocab, d, ["deltanet"])


def test_hybrid_trains_50_steps_with_falling_loss(tmp_path):
    from mixzoo.recipes import load_recipe
    recipe = load_recipe("deltanet-swa-tiny", [
        "train.steps=50", "train.warmup_steps=5", "train.eval_every=10", "train.batch_size=16",
        "train.eval_batches=1", "train.device=cpu"])
    assert [c.type for c in recipe.model.layers] == ["deltanet", "sliding_window"] * 2
    summary = train_recipe(recipe, progress=False, run_dir=tmp_path)
    hist = summary["history"]
    assert summary["steps"] == 50 and len(hist) == 5
    assert hist[-1]["train_loss"] < hist[0]["train_loss"] - 0.05
    assert all(torch.isfinite(torch.tensor(r["train_loss"])) for r in hist)
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["step"] for x in lines] == [10, 20, 30, 40, 50]
    assert summary["state_size"] > 0 and summary["num_params"] > 0


def test_deterministic_end_to_end():
    cfg = TrainConfig(task=TASK, steps=6, warmup_steps=1, eval_every=3, batch_size=4,
                      eval_batches=1, device="cpu")
    a = train(tiny_lm(), cfg, progress=False)["history"]
    b = train(tiny_lm(), cfg, progress=False)["history"]
    strip = lambda h: [{k: v for k, v in r.items() if k != "elapsed_s"} for r in h]  # noqa: E731
    assert strip(a) == strip(b)
    c = train(tiny_lm(), cfg.model_copy(update={"seed": 1}), progress=False)["history"]
    assert strip(a) != strip(c)


def test_early_stop_and_summary():
    cfg = TrainConfig(task=TASK, steps=20, warmup_steps=0, eval_every=2, batch_size=4,
                      eval_batches=1, device="cpu",
                      early_stop={"metric": "accuracy", "value": 0.0})
    s = train(tiny_lm(), cfg, progress=True)
    assert s["early_stopped"] and s["steps"] == 2
    assert s["metric"] == "accuracy" and s["best"]["accuracy"] == s["final"]["accuracy"]


def test_nan_loss_raises_clear_error():
    model = tiny_lm()
    with torch.no_grad():
        model.embed.weight.fill_(float("nan"))
    cfg = TrainConfig(task=TASK, steps=3, warmup_steps=0, device="cpu", batch_size=2)
    with pytest.raises(TrainingDiverged, match="loss is nan at step 1/3"):
        train(model, cfg, progress=False)


def test_vocab_mismatch_is_reported():
    cfg = TrainConfig(task=TASK, steps=1, warmup_steps=0, device="cpu")
    with pytest.raises(ValueError, match="vocab_size=16 is smaller than the task's vocab_size=32"):
        train(tiny_lm(vocab=16), cfg, progress=False)


def test_config_validation_and_round_trip():
    cfg = TrainConfig(task="mqar", steps=10, warmup_steps=2)
    assert TrainConfig.model_validate(cfg.model_dump()) == cfg
    assert cfg.model_dump()["task"]["num_kv_pairs"] == 8          # subclass fields kept
    for bad, match in [({"task": "mqra"}, "Did you mean 'mqar'"),
                       ({"device": "gpu"}, "device must be"),
                       ({"steps": 5, "warmup_steps": 10}, "exceeds steps"),
                       ({"dtype": "fp16"}, "dtype"),
                       ({"lr": 1e-3, "lrr": 1}, "lrr"),
                       ({"task": {"type": "mqar", "seq_len": 8, "num_kv_pairs": 4}}, "too short")]:
        with pytest.raises(ValidationError, match=match):
            TrainConfig(**bad)
    with pytest.raises(ValidationError):
        cfg.steps = 3                                             # frozen
