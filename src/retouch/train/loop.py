"""Pieces every training loop shares: the learning-rate schedule and resumable checkpoints."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import torch

logger = logging.getLogger(__name__)


def warmup_cosine(opt: torch.optim.Optimizer, warmup: int, steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up over ``warmup`` steps, then cosine decay to 0 at ``steps``."""
    return torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / max(1, warmup)) * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps))
    )


def save_checkpoint(path: Path, step: int, model: torch.nn.Module, opt: torch.optim.Optimizer, sched) -> None:
    torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(), "step": step}, path)


def resume(path: Path, model: torch.nn.Module, opt: torch.optim.Optimizer, sched) -> int:
    """Load ``path`` into the training state if it exists; returns the step to continue from."""
    if not path.is_file():
        return 0
    state = torch.load(path, weights_only=False, map_location="cpu")
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["opt"])
    sched.load_state_dict(state["sched"])
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
