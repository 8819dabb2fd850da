"""Synthetic sequence tasks for grids, generated on the fly and deterministic by seed.

    >>> from mixzoo.tasks import build_task, list_tasks
    >>> task = build_task({"type": "mqar", "seq_len": 64, "num_kv_pairs": 4})
    >>> inputs, targets = task.sample(8, torch.Generator().manual_seed(0))

A new task is one file: subclass `Task`, give it a `Config(TaskConfig)` with a
`type: Literal["name"]`, decorate it with `@register_task` (see `mqar.py`).
"""
from .base import IGNORE, Task, TaskConfig, masked_accuracy
from .registry import (build_task, build_task_config, get_task, list_tasks, register_task,
                       unregister_task)
from . import mqar  # noqa: F401  (registers the built-in tasks, one module each)
from . import image_match  # noqa: F401  (vision: long-range image task, images in)

__all__ = ["IGNORE", "Task", "TaskConfig", "masked_accuracy", "build_task",
           "build_task_config", "get_task", "list_tasks", "register_task", "unregister_task"]
