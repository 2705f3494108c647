"""Training recipes: a recipe file names a task and its settings; each task is one
training-loop function whose settings are a typed dataclass saved beside the checkpoint."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

# task name -> (settings dataclass, loop function)
TASKS: dict[str, tuple[type, Callable[..., Any]]] = {}


def register_task(name: str, config_cls: type) -> Callable:
    def deco(fn: Callable) -> Callable:
        TASKS[name] = (config_cls, fn)
        return fn

    return deco


def load_recipe(path: str | Path) -> tuple[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"recipe {path} not found")
    try:
        raw = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"recipe {path} is not valid JSON: {e}") from e
    _load_tasks()
    task = raw.pop("task", None)
    if task not in TASKS:
        raise ValueError(f"recipe {path}: unknown task {task!r}; known tasks: {sorted(TASKS)}")
    cls = TASKS[task][0]
    known = {f.name for f in fields(cls)}
    unknown = set(raw) - known
    if unknown:
        raise ValueError(f"recipe {path}: unknown settings {sorted(unknown)} for task {task!r}; known: {sorted(known)}")
    return task, cls(**raw)


def run_recipe(path: str | Path, **overrides: Any) -> Any:
    task, cfg = load_recipe(path)
    for k, v in overrides.items():
        if v is not None:
            setattr(cfg, k, v)
    logger.info("training %s with %s", task, cfg)
    return TASKS[task][1](cfg)


def _load_tasks() -> None:
    # importing the modules registers their tasks
    from . import autoencoder, clip, distill, inversion, reader, t2i  # noqa: F401
