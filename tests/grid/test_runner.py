"""Running grids: files written, failures recorded while the grid goes on, resume after a
crash loses and repeats nothing, results parse, the process-pool executor, the CLI."""
import csv
import json
from typing import Literal

import pytest
import torch

import mixzoo.grid.executor as executor_mod
from mixzoo.grid import (DevicePoolExecutor, GridOutputExists, SequentialExecutor, load_grid,
                         read_results)
from mixzoo.grid import run_grid as _run_grid
from mixzoo.grid.cli import main as grid_main
from mixzoo.tasks import Task, TaskConfig, register_task, unregister_task
from mixzoo.tasks.mqar import MQAR


def run_grid(spec, out, **kw):
    """In this process, one run after another (the tests patch and register things here)."""
    kw.setdefault("executor", SequentialExecutor())
    return _run_grid(spec, out, **kw)


@pytest.fixture
def boom_task():
    """A task that raises while sampling when `boom` is set (a run that crashes)."""
    @register_task
    class Boom(Task):
        class Config(TaskConfig):
            type: Literal["test_boom"] = "test_boom"
            vocab_size: int = 16
            seq_len: int = 16
            boom: bool = False

        def sample(self, batch, generator):
            if self.config.boom:
                raise RuntimeError("boom: simulated failure")
            return MQAR(MQAR.Config(vocab_size=16, seq_len=16, num_kv_pairs=2)).sample(
                batch, generator)
    yield
    unregister_task("test_boom")


def test_failed_run_is_recorded_and_grid_goes_on(tmp_path, tiny_grid, boom_task, capsys):
    spec = load_grid(tiny_grid(task={"type": "test_boom", "vocab_size": 16, "seq_len": 16},
                               axes={"train.task.boom": [False, True],
                                     "model.d_model": [8, 16]}))
    res = run_grid(spec, tmp_path / "out")
    status = [r["status"] for r in res.rows]
    assert status == ["done", "done", "failed", "failed"]
    assert not res.ok and len(res.failed) == 2
    bad = res.rows[2]
    assert "RuntimeError: boom: simulated failure" in bad["error"]
    st = json.loads((tmp_path / "out" / "runs" / bad["run_id"] / "status.json").read_text())
    assert st["status"] == "failed" and "boom" in st["traceback"]
    assert "failed: RuntimeError: boom" in (tmp_path / "out" / "summary.md").read_text()
    # the CLI exits non-zero when a run failed
    f = tmp_path / "g.yaml"
    import yaml
    f.write_text(yaml.safe_dump(spec.model_dump(exclude={"root"})))
    assert grid_main([str(f), "--out", str(tmp_path / "cli"), "--no-plot", "--devices", "cpu"]) == 1
    assert "2 failed" in capsys.readouterr().out


def test_resume_after_crash_loses_and_repeats_nothing(tmp_path, tiny_grid, monkeypatch):
    spec = load_grid(tiny_grid(axes={"model.d_model": [8, 16, 24]}))
    out = tmp_path / "out"
    first = run_grid(spec, out)
    a, b, c = [r["run_id"] for r in first.rows]
    runs = out / "runs"
    # Simulate a crash: b was killed mid-way (status "running", half a metrics file),
    # c never started, a finished.
    st_b = json.loads((runs / b / "status.json").read_text())
    st_b = {k: st_b[k] for k in ("run_id", "started", "pid")} | {"status": "running"}
    (runs / b / "status.json").write_text(json.dumps(st_b))
    (runs / b / "metrics.jsonl").write_text('{"step": 1, "accu')
    import shutil
    shutil.rmtree(runs / c)
    a_bytes = (runs / a / "status.json").read_bytes()
    a_mtime = (runs / a / "status.json").stat().st_mtime_ns

    with pytest.raises(GridOutputExists, match="--resume"):
        run_grid(spec, out)

    executed = []
    real = executor_mod.execute_job
    monkeypatch.setattr(executor_mod, "execute_job",
                        lambda job: executed.append(job.run_id) or real(job))
    second = run_grid(spec, out, resume=True)
    assert sorted(executed) == sorted([b, c])                    # a is not repeated
    assert second.ran == 2 and second.skipped == 1 and second.ok
    assert (runs / a / "status.json").read_bytes() == a_bytes    # a is untouched
    assert (runs / a / "status.json").stat().st_mtime_ns == a_mtime
    for rid in (b, c):
        lines = (runs / rid / "metrics.jsonl").read_text().splitlines()
        assert [json.loads(x)["step"] for x in lines] == [3]       # complete, rewritten
    # same seeds, same data, same numbers as the uninterrupted run
    acc = {r["run_id"]: r["accuracy"] for r in second.rows}
    assert acc == {r["run_id"]: r["accuracy"] for r in first.rows}
    # resuming a finished grid runs nothing
    executed.clear()
    third = run_grid(spec, out, resume=True)
    assert executed == [] and third.ran == 0 and third.skipped == 3


def test_results_files_parse(tmp_path, tiny_grid):
    from mixzoo.recipes import load_recipe
    spec = load_grid(tiny_grid(axes={"model.d_model": [8, 16]}, seeds=[0, 1]))
    res = run_grid(spec, tmp_path)
    assert res.ok and len(res.rows) == 4
    with open(tmp_path / "results.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 4
    for r in rows:
        assert r["status"] == "done" and int(r["model.d_model"]) in (8, 16)
        assert 0.0 <= float(r["accuracy"]) <= 1.0 and float(r["best_accuracy"]) >= 0
        assert int(r["num_params"]) > 0 and int(r["state_size"]) > 0
        assert r["mixer"] == "deltanet" and r["task"] == "mqar" and r["train.seed"] in "01"
    jl = read_results(tmp_path)
    assert [r["run_id"] for r in jl] == [r["run_id"] for r in rows]
    md = (tmp_path / "summary.md").read_text()
    assert "| d_model | seed | mixer |" in md and "4 runs: 4 done, 0 failed" in md
    for r in jl:
        run = tmp_path / "runs" / r["run_id"]
        recipe = load_recipe(run / "recipe.yaml")               # re-runnable as is
        assert recipe.model.d_model == r["model.d_model"] and recipe.train.seed == r["train.seed"]
        assert json.loads((run / "status.json").read_text())["status"] == "done"
        assert json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])["step"] == 3
    # seeds give different runs
    assert len({r["run_id"] for r in jl}) == 4


def test_plot(tmp_path, tiny_grid):
    pytest.importorskip("matplotlib")
    from mixzoo.grid.plot import plot_results
    run_grid(load_grid(tiny_grid(axes={"model.d_model": [8, 16],
                                       "model.pattern": [["dn"], ["attn"]]})), tmp_path)
    png = plot_results(tmp_path, "model.d_model", "accuracy", "mixer")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert grid_main(["plot", str(tmp_path), "--x", "model.d_model", "--y", "eval_loss",
                      "--agg", "max"]) == 0
    assert (tmp_path / "eval_loss_vs_model.d_model.png").is_file()
    with pytest.raises(KeyError, match="columns: "):
        plot_results(tmp_path, "model.nope", "accuracy")
    assert grid_main(["plot", str(tmp_path), "--x", "nope"]) == 2


def test_device_pool_executor(tmp_path, tiny_grid):
    spec = load_grid(tiny_grid(axes={"model.d_model": [8, 16]}))
    res = run_grid(spec, tmp_path, executor=DevicePoolExecutor(["cpu", "cpu"]), progress=False)
    assert res.ok and len(res.rows) == 2
    seq = run_grid(spec, tmp_path / "seq", progress=False)
    assert [r["run_id"] for r in res.rows] == [r["run_id"] for r in seq.rows]
    for a, b in zip(res.rows, seq.rows):     # same runs; thread counts may differ -> ~equal
        assert abs(a["eval_loss"] - b["eval_loss"]) < 1e-3
    st = json.loads((tmp_path / "runs" / res.rows[0]["run_id"] / "status.json").read_text())
    assert st["device"] == "cpu" and st["pid"] != __import__("os").getpid()


def test_main_job_grid_on_a_reduced_budget(tmp_path, capsys):
    """`mixzoo grid mqar-small`, every run with a 2-step budget: all 10 finish, the table
    prints, results and the plot are written."""
    out = tmp_path / "mqar-small"
    code = grid_main(["mqar-small", "--out", str(out), "train.steps=2", "train.warmup_steps=1",
                      "train.eval_every=2", "train.batch_size=4", "train.eval_batch_size=8",
                      "train.eval_batches=1"])
    text = capsys.readouterr().out
    assert code == 0, text
    rows = read_results(out)
    assert len(rows) == 10 and all(r["status"] == "done" for r in rows)
    assert {r["mixer"] for r in rows} == {"deltanet", "gla", "retnet", "attention",
                                         "deltanet+sliding_window"}
    assert "| d_model | mixer | params | state | accuracy |" in text
    try:
        import matplotlib  # noqa: F401
        assert (out / "accuracy_vs_model.d_model.png").is_file()
    except ImportError:
        assert "no plot" in text
    # a bad grid is exit code 2, not a traceback
    assert grid_main(["mqar-small", "--out", str(tmp_path / "x"), "train.lr=-1"]) == 2
    assert "10 of 10 points are invalid" in capsys.readouterr().err
    # overriding a key the grid varies is refused (the axis would silently win)
    assert grid_main(["mqar-small", "--out", str(tmp_path / "x"), "model.d_model=8"]) == 2
    assert "model.d_model is an axis" in capsys.readouterr().err
