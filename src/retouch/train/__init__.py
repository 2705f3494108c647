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
        raw = json.loads(path.read_bytes())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"recipe {path} is not valid JSON: {e}") from e
    except RecursionError as e:
        raise ValueError(f"recipe {path} is nested too deeply to be a recipe") from e
    return parse_recipe(raw, str(path))


def parse_recipe(raw: Any, name: str = "the recipe") -> tuple[str, Any]:
    """(task, settings) from a recipe's parsed JSON; every setting is checked against the task's
    dataclass (pydantic, strict: a string is no number), so a wrong type fails here, not mid-training."""
    from pydantic import TypeAdapter, ValidationError

    if not isinstance(raw, dict):
        raise ValueError(f"recipe {name} must be a JSON object with a 'task', got {type(raw).__name__}")
    raw = dict(raw)
    _load_tasks()
    task = raw.pop("task", None)
    if not isinstance(task, str) or task not in TASKS:
        raise ValueError(f"recipe {name}: unknown task {task!r}; known tasks: {sorted(TASKS)}")
    cls = TASKS[task][0]
    known = {f.name for f in fields(cls)}
    unknown = set(raw) - known
    if unknown:
        raise ValueError(f"recipe {name}: unknown settings {sorted(unknown)} for task {task!r}; known: {sorted(known)}")
    try:
        # JSON mode: lists may fill tuple fields, integers float fields, nothing else is coerced
        cfg = TypeAdapter(cls).validate_json(json.dumps(raw), strict=True)
    except ValidationError as e:
        errs = "; ".join(f"{'.'.join(str(x) for x in err['loc'])}: {err['msg']}" for err in e.errors()[:3])
        raise ValueError(f"recipe {name}: wrong setting for task {task!r}: {errs}") from e
    except (TypeError, ValueError) as e:  # a dataclass's own __post_init__ checks
        raise ValueError(f"recipe {name}: {e}") from e
    return task, cfg


def run_recipe(path: str | Path, **overrides: Any) -> Any:
    task, cfg = load_recipe(path)
    for k, v in overrides.items():
        if v is not None:
            setattr(cfg, k, v)
    logger.info("training %s with %s", task, cfg)
    return TASKS[task][1](cfg)


def _load_tasks() -> None:
    # importing the modules registers their tasks
    from . import autoencoder, caption_reader, clip, distill, draft, feedback, inpaint, inversion, reader, region, rewards, t2i  # noqa: F401
