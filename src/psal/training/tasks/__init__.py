"""Training tasks, registered by name: ``psal train NAME`` and ``psal eval NAME``.

A task (see :mod:`.base` for how to write one) registers itself with
:func:`register_task`; the engine, the command line and checkpoint loading look it up
with :func:`get_task`. The built-in tasks are imported on first look-up.

Example:
    >>> from psal.training.tasks import get_task, list_tasks
    >>> "inpaint" in list_tasks()
    True
    >>> get_task("inpaint").config_class.__name__
    'InpaintConfig'
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any, TypeVar

from .base import Task

__all__ = ["Task", "get_task", "list_tasks", "register_task", "task_for_config"]

T = TypeVar("T", bound=type)

#: Modules (under psal.training.tasks) holding the built-in tasks.
BUILTIN = ("inpaint", "upscale", "colorize")

_TASKS: dict[str, type[Task]] = {}
_loaded = False


def register_task(name: str) -> Callable[[T], T]:
    """Class decorator: register a :class:`Task` subclass as ``name``."""

    def decorator(cls: T) -> T:
        if name in _TASKS and _TASKS[name] is not cls:
            raise ValueError(f"task {name!r} is already registered")
        cls.name = name
        _TASKS[name] = cls
        return cls

    return decorator


def _load_builtin() -> None:
    global _loaded
    if not _loaded:
        _loaded = True
        for module in BUILTIN:
            importlib.import_module(f"{__name__}.{module}")


def list_tasks() -> list[str]:
    """Names of the registered tasks, sorted."""
    _load_builtin()
    return sorted(_TASKS)


def get_task(name: str) -> type[Task]:
    """The task registered as ``name``; a clear error names the known ones."""
    _load_builtin()
    if not isinstance(name, str) or name not in _TASKS:
        raise ValueError(f"unknown task {name!r}; registered: {', '.join(map(repr, list_tasks()))}")
    return _TASKS[name]


def task_for_config(config: Any) -> type[Task]:
    """The task whose ``config_class`` is the type of ``config``."""
    _load_builtin()
    for task in _TASKS.values():
        if type(config) is task.config_class:
            return task
    known = ", ".join(t.config_class.__name__ for t in _TASKS.values())
    raise TypeError(f"config must be a task's config ({known}), got {type(config).__name__}")
