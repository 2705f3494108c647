"""Pieces every training loop shares: the learning-rate schedule and resumable checkpoints."""

from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from ..atomic import sweep_temps, torch_save, write_text

logger = logging.getLogger(__name__)


def start_run(cfg: Any) -> Path:
    """How every loop starts: ``cfg.threads`` CPU threads, the output folder ``cfg.out``, and the
    settings written beside the checkpoint as ``train_config.json``.  Returns the folder."""
    torch.set_num_threads(cfg.threads)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    sweep_temps(out)  # what a killed run left half-written
    write_text(out / "train_config.json", json.dumps(asdict(cfg), indent=2) + "\n")
    return out


def warmup_cosine(opt: torch.optim.Optimizer, warmup: int, steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up over ``warmup`` steps, then cosine decay to 0 at ``steps``."""
    return torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / max(1, warmup)) * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps))
    )


def save_checkpoint(
    path: Path, step: int, model: torch.nn.Module, opt: torch.optim.Optimizer, sched=None, **extra: torch.nn.Module
) -> None:
    """Training state at ``step``; ``extra`` modules (an EMA copy, say) are saved by name. Written to a
    temporary file first, so an interrupted save never leaves a broken checkpoint behind."""
    state = {"model": model.state_dict(), "opt": opt.state_dict(), "step": step}
    if sched is not None:
        state["sched"] = sched.state_dict()
    state |= {name: m.state_dict() for name, m in extra.items()}
    torch_save(state, path)


def resume(path: Path, model: torch.nn.Module, opt: torch.optim.Optimizer, sched=None, **extra: torch.nn.Module) -> int:
    """Load ``path`` into the training state (and the named ``extra`` modules) if it exists; returns the step to continue from."""
    if not path.is_file():
        return 0
    try:  # tensors, numbers and dicts only: a checkpoint is never unpickled as arbitrary objects
        state = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as e:  # UnpicklingError, a torn zip, ...: say which file, and how to start over
        raise ValueError(f"checkpoint {path} cannot be read ({type(e).__name__}: {e}); delete it to start the run over") from e
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["opt"])
    if sched is not None:
        sched.load_state_dict(state["sched"])
    for name, m in extra.items():
        m.load_state_dict(state[name])
    logger.info("resumed %s from step %d", path, state["step"])
    return int(state["step"])


def pick_device(name: str = "auto") -> torch.device:
    """``"auto"``: CUDA when present, else the CPU; anything else as torch spells it."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {name!r} asked for, but torch sees no CUDA device")
    return dev
