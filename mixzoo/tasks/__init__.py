"""Synthetic sequence tasks for grids, generated on the fly and deterministic by seed.

Built in: `mqar` (Zoology's multi-query associative recall) and the MAD suite
(Poli et al. 2024): `in_context_recall`, `fuzzy_recall`, `noisy_recall`,
`selective_copy`, `compression`, `memorization`.

    >>> from mixzoo.tasks import build_task, list_tasks
    >>> task = build_task({"type": "mqar", "seq_len": 64, "num_kv_pairs": 4})
    >>> inputs, targets = task.sample(8, torch.Generator().manual_seed(0))

A new task is one file: subclass `Task`, give it a `Config(TaskConfig)` with a
`type: Literal["name"]`, decorate it with `@register_task` (see `mqar.py`).
"""
from .base import IGNORE, Task, TaskConfig, masked_accuracy
from .registry import (build_task, build_task_config, get_task, list_tasks, register_task,
                       unregister_task)
# The built-in tasks register themselves on import, one module each.
from . import compression, memorization, mqar, recall, selective_copy  # noqa: F401,E402
from . import image_match  # noqa: F401  (vision: long-range image task, images in)

__all__ = ["IGNORE", "Task", "TaskConfig", "masked_accuracy", "build_task",
           "build_task_config", "get_task", "list_tasks", "register_task", "unregister_task"]
