"""Contract tests generated from the task registry: every task (plugins too) is covered."""
import pytest
import torch
from pydantic import ValidationError

from mixzoo.tasks import IGNORE, Task, TaskConfig, build_task, get_task, list_tasks, register_task
from mixzoo.tasks.registry import unregister_task


# The token-task contract (long [B,T] ids and targets); tasks with other inputs, e.g.
# image_match (images -> class labels), declare `input_kind` and test themselves.
TOKEN_TASKS = [n for n in list_tasks() if getattr(get_task(n), "input_kind", "tokens") == "tokens"]


def small(name):
    """The task at its defaults, shrunk where the defaults are large."""
    return build_task(name)


@pytest.mark.parametrize("name", TOKEN_TASKS)
def test_sample_shapes_and_ranges(name):
    task = small(name)
    x, y = task.sample(4, torch.Generator().manual_seed(0))
    assert x.shape == y.shape == (4, task.seq_len)
    assert x.dtype == y.dtype == torch.long
    assert x.min() >= 0 and x.max() < task.vocab_size
    scored = y != IGNORE
    assert scored.any(1).all(), "every sequence must score at least one position"
    assert y[scored].min() >= 0 and y[scored].max() < task.vocab_size


@pytest.mark.parametrize("name", TOKEN_TASKS)
def test_deterministic_by_seed(name):
    task = small(name)
    a = task.sample(3, torch.Generator().manual_seed(7))
    b = task.sample(3, torch.Generator().manual_seed(7))
    c = task.sample(3, torch.Generator().manual_seed(8))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])
    # Rebuilding the task from its config gives the same data (no hidden global state).
    d = build_task(task.config.model_dump()).sample(3, torch.Generator().manual_seed(7))
    assert torch.equal(a[0], d[0]) and torch.equal(a[1], d[1])


@pytest.mark.parametrize("name", TOKEN_TASKS)
def test_metric_perfect_and_wrong(name):
    task = small(name)
    x, y = task.sample(4, torch.Generator().manual_seed(1))
    perfect = torch.nn.functional.one_hot(y.clamp(min=0), task.vocab_size).float()
    m = task.metric(perfect, y)
    assert m[task.primary_metric] == pytest.approx(1.0)
    wrong = torch.nn.functional.one_hot((y.clamp(min=0) + 1) % task.vocab_size,
                                        task.vocab_size).float()
    assert task.metric(wrong, y)[task.primary_metric] == pytest.approx(0.0)


def test_registry_errors_and_user_task():
    with pytest.raises(KeyError, match="Did you mean 'mqar'"):
        get_task("mqra")
    with pytest.raises(ValueError, match="num_kv_pairs"):
        build_task({"type": "mqar", "seq_len": 16, "num_kv_pairs": 8})
    with pytest.raises(ValueError, match="Extra inputs"):
        build_task({"type": "mqar", "bogus": 1})
    with pytest.raises(ValueError, match="already registered"):
        register_task(get_task("mqar"))

    from typing import Literal

    @register_task
    class Copy(Task):                       # a user task in a few lines
        class Config(TaskConfig):
            type: Literal["test_copy"] = "test_copy"

        def sample(self, batch, generator):
            x = torch.randint(0, self.vocab_size, (batch, self.seq_len), generator=generator)
            return x, x

    try:
        assert "test_copy" in list_tasks("test_*")
        assert build_task({"type": "test_copy", "seq_len": 8}).sample(
            2, torch.Generator().manual_seed(0))[0].shape == (2, 8)
    finally:
        unregister_task("test_copy")
    assert "test_copy" not in list_tasks()


def test_configs_frozen():
    cfg = build_task("mqar").config
    with pytest.raises(ValidationError):
        cfg.seq_len = 3
