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
    raise AttributeError(f"module 'retouch' has no attribute {name!r}")


__all__ = ["Editor", "load_backbone"]
