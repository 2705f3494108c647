"""One image, edited many times: captioned and inverted once, a history of turns with undo and redo.

    from retouch.edit import Editor, load_image
    s = Editor("turbo").session(load_image("scene.png"))   # captions and inverts here, once
    s.edit("make it a sepia picture")                      # costs the edit alone (4 evaluations for turbo)
    s.edit(replace=True, strength=0.5)                     # re-render that turn at another strength
    s.edit("change the background to a starry night sky")  # chains onto the sepia turn's caption
    s.undo(); s.redo(); s.image                            # the current turn's image

Every turn edits the *uploaded* image from the one prepared inversion: an instruction rewrites the
current turn's caption (turn 0: the source caption), so turns chain in words and reconstruction
errors never compound (TurboEdit's reuse; ``Editor.edit(then_from="source")`` does the same for a
fixed list of instructions).  The HTTP API's sessions (``retouch.serve``) are these objects.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, fields, is_dataclass
from typing import Any

import numpy as np

from .methods import Method, Progress
from .schema import EditRecord

logger = logging.getLogger(__name__)


@dataclass
class SessionTurn:
    index: int
    instruction: str | None  # what was asked (None for turn 0)
    caption: str | None  # the caption this turn shows: the target caption it was rendered with; turn 0: the source caption
    strength: float | None  # as asked (None: the method's default)
    mask: np.ndarray | None  # HxW bool, as given
    image: np.ndarray  # HxWx3 uint8, the input's size
    record: EditRecord | None  # None for turn 0
    applied_mask: np.ndarray | None = None  # HxW uint8, 255 = fully edited: the weight the method applied (None: not reported)


class EditSession:
    """A method's ``prepare`` of one image, and the turns edited from it."""

    def __init__(
        self,
        method: Method,
        image: np.ndarray,
        source_prompt: str | None = None,
        callback: Progress | None = None,
        model: str | None = None,
    ) -> None:
        from .edit import _text_or_none, check_image

        check_image(image)
        self.method = method
        self.model = model
        t0 = time.perf_counter()
        self.prepared = method.prepare(image, _text_or_none(source_prompt, "source caption"), callback)
        self.prepare_seconds = time.perf_counter() - t0
        self.turns: list[SessionTurn] = [SessionTurn(0, None, self.prepared.source_prompt, None, None, image, None)]
        self.current = 0

    @property
    def image(self) -> np.ndarray:
        return self.turns[self.current].image

    @property
    def can_undo(self) -> bool:
        return self.current > 0

    @property
    def can_redo(self) -> bool:
        return self.current < len(self.turns) - 1

    def edit(
        self,
        instruction: str | None = None,
        *,
        target_prompt: str | None = None,
        strength: float | None = None,
        mask: np.ndarray | None = None,
        replace: bool = False,
        callback: Progress | None = None,
    ) -> SessionTurn:
        """A new turn after the current one (the redo list is dropped), or with ``replace`` the current turn
        re-rendered; without an instruction or caption, ``replace`` keeps the turn's caption and mask."""
        from .edit import _text_or_none, check_mask

        instruction = _text_or_none(instruction, "instruction")
        target_prompt = _text_or_none(target_prompt, "target caption")
        if instruction is not None and target_prompt is not None:
            raise ValueError("give an instruction or a target caption, not both (the caption would override the instruction)")
        source = self.turns[0].image
        if mask is not None:
            mask = check_mask(mask, source.shape[:2])
        if replace:
            if self.current == 0:
                raise ValueError("nothing to replace: the session has no edit yet (replace=false adds one)")
            cur = self.turns[self.current]
            if instruction is None and target_prompt is None:
                instruction_asked, target_prompt = cur.instruction, cur.caption
                mask = cur.mask if mask is None else mask
                strength = cur.strength if strength is None else strength
            else:
                instruction_asked = instruction
            base = self.turns[self.current - 1]
        else:
            if instruction is None and target_prompt is None:
                raise ValueError("give an instruction or a target caption: the instruction is empty")
            instruction_asked = instruction
            base = self.turns[self.current]
        method_instruction = None
        if target_prompt is None:
            if base.index == 0:
                method_instruction = instruction  # the method rewrites the source caption itself
            else:
                rewriter = getattr(self.method, "rewriter", None)
                if rewriter is None:
                    raise ValueError(f"method {self.method.name!r} has no rewriter to chain instructions: give the target caption")
                target_prompt = rewriter.rewrite(base.caption, instruction)
        t0 = time.perf_counter()
        res = self.method.edit_prepared(
            self.prepared, instruction=method_instruction, target_prompt=target_prompt, mask=mask, strength=strength, callback=callback
        )
        seconds = time.perf_counter() - t0
        if self.turns[0].caption is None and res.info.get("source_caption"):
            self.turns[0].caption = res.info["source_caption"]
        record = EditRecord.from_result(res, method=self.method.name, seconds=seconds, instruction=instruction_asked, model=self.model)
        applied = None if res.mask is None else np.round(np.clip(res.mask, 0, 1) * 255).astype(np.uint8)
        turn = SessionTurn(
            base.index + 1, instruction_asked, res.info.get("target_caption") or target_prompt, strength, mask, res.image, record, applied
        )
        del self.turns[base.index + 1 :]
        self.turns.append(turn)
        self.current = turn.index
        return turn

    def undo(self) -> SessionTurn:
        if not self.can_undo:
            raise LookupError("nothing to undo: the session is at its first image")
        self.current -= 1
        return self.turns[self.current]

    def redo(self) -> SessionTurn:
        if not self.can_redo:
            raise LookupError("nothing to redo: the session is at its last turn")
        self.current += 1
        return self.turns[self.current]

    def nbytes(self) -> int:
        """Bytes held: the turns' images and masks and the prepared state (its arrays and tensors)."""
        return sum(_nbytes(t.image) + _nbytes(t.mask) + _nbytes(t.applied_mask) for t in self.turns) + _nbytes(self.prepared.state)


def _nbytes(obj: Any, depth: int = 0) -> int:
    if obj is None or depth > 6:
        return 0
    if isinstance(obj, np.ndarray):
        return obj.nbytes
    if hasattr(obj, "element_size") and hasattr(obj, "nelement"):  # a torch tensor
        return obj.element_size() * obj.nelement()
    if isinstance(obj, list | tuple):
        return sum(_nbytes(o, depth + 1) for o in obj)
    if isinstance(obj, dict):
        return sum(_nbytes(o, depth + 1) for o in obj.values())
    if is_dataclass(obj):
        return sum(_nbytes(getattr(obj, f.name), depth + 1) for f in fields(obj))
    return 0


__all__ = ["EditSession", "SessionTurn"]
