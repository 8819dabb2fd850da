"""The task registry: a decorator over a typed dict, fnmatch listing, close-match errors.

Like the mixer registry, a task is registered under the `type` literal of its Config:

    @register_task
    class MyTask(Task):
        class Config(TaskConfig):
            type: Literal["my_task"] = "my_task"
"""
from __future__ import annotations

import fnmatch
from typing import Any, Callable, Mapping, TypeVar

from pydantic import ValidationError

from mixzoo.registry.core import config_type_name, unknown_name_error

from .base import Task, TaskConfig

__all__ = ["register_task", "unregister_task", "get_task", "list_tasks", "build_task",
           "build_task_config"]

_TASKS: dict[str, type[Task]] = {}
_loaded = {"builtins": False}

T = TypeVar("T", bound=type)


def _ensure_loaded() -> None:
    if not _loaded["builtins"]:
        _loaded["builtins"] = True
        import mixzoo.tasks  # noqa: F401  (registers the built-in tasks)


def register_task(cls: T | None = None, *, override: bool = False) -> T | Callable[[T], T]:
    """Class decorator registering a `Task` subclass under its Config's `type` literal.
    A duplicate name raises `ValueError` unless `override=True`."""
    def deco(c: T) -> T:
        if not (isinstance(c, type) and issubclass(c, Task)):
            raise TypeError(f"register_task: {c!r} is not a mixzoo.tasks.Task subclass")
        cfg = getattr(c, "Config", None)
        if not (isinstance(cfg, type) and issubclass(cfg, TaskConfig)) or cfg is TaskConfig:
            raise TypeError(f"register_task: {c.__qualname__}.Config must subclass TaskConfig")
        name = config_type_name(cfg)
        if name in _TASKS and not override:
            old = _TASKS[name]
            raise ValueError(f"task {name!r} is already registered by {old.__module__}."
                             f"{old.__qualname__}; pass override=True to replace it")
        _TASKS[name] = c
        return c

    return deco(cls) if cls is not None else deco


def unregister_task(name: str) -> None:
    _ensure_loaded()
    if name not in _TASKS:
        raise _unknown(name)
    del _TASKS[name]


def _unknown(name: Any) -> KeyError:
    return unknown_name_error("task", name, _TASKS)


def get_task(name: str) -> type[Task]:
    """The registered Task class for `name`; KeyError with close matches if unknown."""
    _ensure_loaded()
    if name not in _TASKS:
        raise _unknown(name)
    return _TASKS[name]


def list_tasks(pattern: str = "*") -> list[str]:
    """Sorted registered task names matching the fnmatch `pattern`."""
    _ensure_loaded()
    return sorted(n for n in _TASKS if fnmatch.fnmatchcase(n, pattern))


def build_task_config(spec: Any) -> TaskConfig:
    """A validated Config from a name, a dict with `type`, or a Config object.
    Raises ValueError (bad fields) or KeyError (unknown type)."""
    if isinstance(spec, TaskConfig):
        get_task(spec.type)
        return spec
    if isinstance(spec, str):
        return get_task(spec).Config()
    if isinstance(spec, Mapping):
        if "type" not in spec:
            raise ValueError(f"task spec {dict(spec)!r} has no 'type' field; "
                             f"expected one of {list_tasks()}")
        cls = get_task(spec["type"])
        try:
            return cls.Config.model_validate(dict(spec))
        except ValidationError as e:
            raise ValueError(f"invalid config for task {spec['type']!r}: "
                             f"{format_errors(e)}") from None
    raise TypeError(f"task spec must be a name, a dict with 'type', or a TaskConfig; "
                    f"got {type(spec).__name__}")


def format_errors(e: ValidationError) -> str:
    """One line per error: `field: message (got value)`."""
    parts = []
    for err in e.errors():
        loc = ".".join(str(x) for x in err["loc"]) or "(config)"
        msg = err["msg"].removeprefix("Value error, ")
        got = f" (got {err['input']!r})" if err["loc"] else ""
        parts.append(f"{loc}: {msg}{got}")
    return "; ".join(parts)


def build_task(spec: Any) -> Task:
    """Build a task from a name, a dict with `type`, or a Config object."""
    config = build_task_config(spec)
    return get_task(config.type)(config)
