"""retouch: edit images from words.  ``retouch.Editor`` edits; ``retouch.load_backbone`` is the one entry point to any model."""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    # lazy, so ``import retouch`` (and the CLI's start-up) does not pay for torch and diffusers
    if name == "load_backbone":
        from .models.backbone import load_backbone

        return load_backbone
    if name == "Editor":
        from .edit import Editor

        return Editor
    if name in ("inpaint", "erase", "outpaint"):  # the fill tasks (retouch.fill)
        from . import fill

        return getattr(fill, name)
    raise AttributeError(f"module 'retouch' has no attribute {name!r}")


__all__ = ["Editor", "erase", "inpaint", "load_backbone", "outpaint"]
