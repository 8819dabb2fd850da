"""The task registry: a decorator over a typed dict, fnmatch listing, close-match errors.

Like the mixer registry, a task is registered under the `type` literal of its Config:

    @register_task
    class MyTask(Task):
        class Config(TaskConfig):
            type: Literal["my_task"] = "my_task"
"""
from __future__ import annotations

import difflib
import fnmatch
import typing
from typing import Any, Callable, Mapping, TypeVar

from pydantic import ValidationError

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


def _type_name(config_cls: type) -> str:
    ann = config_cls.model_fields["type"].annotation
    args = typing.get_args(ann) if typing.get_origin(ann) is typing.Literal else ()
    if len(args) != 1 or not isinstance(args[0], str):
        raise TypeError(f"{config_cls.__qualname__}.type must be Literal['<one name>'], got {ann!r}")
    return args[0]


def register_task(cls: T | None = None, *, override: bool = False) -> T | Callable[[T], T]:
    """Class decorator registering a `Task` subclass under its Config's `type` literal.
    A duplicate name raises `ValueError` unless `override=True`."""
    def deco(c: T) -> T:
        if not (isinstance(c, type) and issubclass(c, Task)):
            raise TypeError(f"register_task: {c!r} is not a mixzoo.tasks.Task subclass")
        cfg = getattr(c, "Config", None)
        if not (isinstance(cfg, type) and issubclass(cfg, TaskConfig)) or cfg is TaskConfig:
            raise TypeError(f"register_task: {c.__qualname__}.Config must subclass TaskConfig")
        name = _type_name(cfg)
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
    names = sorted(_TASKS)
    close = difflib.get_close_matches(str(name), names, n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    return KeyError(f"unknown task {name!r}.{hint} Registered: {', '.join(names)}")


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
