"""The Python API of an edit: load and check inputs, run a method, chain turns.

    from retouch.edit import Editor
    ed = Editor("turbo")
    turns = ed.edit(image, "make the circle blue", then=["turn the background into a brick wall"])
    turns[-1].image  # HxWx3 uint8, the input's size

Each turn starts from the previous turn's output.  Inputs are checked before any model runs: an
unreadable file, a transparent image, a mask of the wrong size or mode, an empty instruction --
each a ``ValueError`` / ``FileNotFoundError`` that names what was wrong.
"""

from __future__ import annotations

import inspect
import io
import logging
import os
import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import numpy as np
from PIL import Image

from . import atomic
from .images import DECODE_ERRORS, to_mask, to_rgb8, upright
from .methods import EditRequest, EditResult, Method, Progress, get_method
from .schema import EditRecord, png_text_chunks

if TYPE_CHECKING:
    from .session import EditSession

logger = logging.getLogger(__name__)

MIN_SIDE, MAX_SIDE = 16, 4096
MASK_MODES = ("1", "L")


ImageSource = str | Path | bytes | BinaryIO


def _open(source: ImageSource, what: str, max_pixels: int | None = None, name: str | None = None) -> tuple[Image.Image, str]:
    """(decoded image, the name errors call it) from a path, bytes or a binary file; the pixel count is
    checked against ``max_pixels`` from the header, before anything is decoded."""
    if isinstance(source, str | Path):
        p = Path(source)
        if not p.is_file():
            raise FileNotFoundError(f"{what} {p} not found")
        name = name or str(p)
    else:
        name = name or f"the {what}"
        p = io.BytesIO(source) if isinstance(source, bytes) else source
    try:
        im = Image.open(p)
    except DECODE_ERRORS as e:
        raise ValueError(f"{name} is not a readable image ({type(e).__name__}: {e})") from e
    with im:
        if max_pixels is not None and im.width * im.height > max_pixels:
            raise ValueError(f"{name} is {im.width}x{im.height} = {im.width * im.height} pixels; at most {max_pixels} are accepted")
        if max(im.size) > MAX_SIDE or min(im.size) < 1:  # from the header, before a huge image is decoded
            raise ValueError(f"{name} is {im.width}x{im.height}; sides must lie in [{MIN_SIDE}, {MAX_SIDE}] pixels")
        try:
            im.load()
        except DECODE_ERRORS as e:
            raise ValueError(f"{name} is not a readable image ({type(e).__name__}: {e})") from e
        return im, name



def load_image(source: ImageSource, *, max_pixels: int | None = None, name: str | None = None) -> np.ndarray:
    """An image (a path, bytes or a binary file) as HxWx3 uint8 RGB, EXIF-upright; grey and palette images are
    converted, transparent ones refused.  ``name`` is what error messages call it (default: the path)."""
    img, name = _open(source, "image", max_pixels, name)
    # the conversion policy (EXIF first; CMYK, 16-bit, float, alpha) lives in retouch.images
    arr = to_rgb8(upright(img, name), name)
    check_image(arr, name)
    return arr


def check_image(arr: np.ndarray, name: str = "the image") -> None:
    if not isinstance(arr, np.ndarray) or arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:
        raise ValueError(f"{name} must be an HxWx3 uint8 RGB array, got {getattr(arr, 'shape', None)} {getattr(arr, 'dtype', '')}")
    h, w = arr.shape[:2]
    if min(h, w) < MIN_SIDE or max(h, w) > MAX_SIDE:
        raise ValueError(f"{name} is {w}x{h}; sides must lie in [{MIN_SIDE}, {MAX_SIDE}] pixels")


def load_mask(source: ImageSource, size: tuple[int, int], *, name: str | None = None) -> np.ndarray:
    """A single-channel mask (mode 1 or L; white = edit; a path, bytes or a binary file) of the image's (H, W) as a boolean array."""
    m, name = _open(source, "mask", name=name)
    arr = to_mask(upright(m, name), name)  # read in the orientation the image is shown in, like the image
    if arr.shape == tuple(size)[::-1] and arr.shape != tuple(size):
        raise ValueError(
            f"{name} is {arr.shape[1]}x{arr.shape[0]} but the image is {size[1]}x{size[0]} (upright, after its EXIF orientation): "
            "a mask drawn on the image as stored, before that rotation, must be rotated the same way"
        )
    return check_mask(arr, size, name)


def check_mask(mask: np.ndarray, size: tuple[int, int], name: str = "the mask") -> np.ndarray:
    m = np.asarray(mask)
    if m.ndim != 2:
        raise ValueError(f"{name} must be a 2-D HxW array, got shape {m.shape}")
    if m.shape != tuple(size):
        raise ValueError(f"{name} is {m.shape[1]}x{m.shape[0]} but the image is {size[1]}x{size[0]}: they must match")
    m = m.astype(bool)
    if not m.any():
        raise ValueError(f"{name} selects no pixel: nothing would be edited")
    return m


@dataclass
class Turn:
    instruction: str | None
    result: EditResult
    seconds: float

    @property
    def image(self) -> np.ndarray:
        return self.result.image

    @property
    def info(self) -> dict[str, Any]:
        return self.result.info


class Editor:
    """One method, loaded once, for any number of edits and turns."""

    def __init__(self, method: str | Method = "turbo", **options: Any) -> None:
        self.method = get_method(method, **options) if isinstance(method, str) else method

    def session(self, image: np.ndarray, source_prompt: str | None = None, callback: Progress | None = None) -> EditSession:
        """Caption and invert ``image`` once, for any number of edits with undo and redo (``retouch.session``)."""
        from .session import EditSession

        return EditSession(self.method, image, source_prompt, callback)

    def record(self, turn: Turn) -> EditRecord:
        """What a turn did and cost, as the API's ``EditRecord``."""
        return EditRecord.from_result(turn.result, method=self.method.name, seconds=turn.seconds, instruction=turn.instruction)

    def edit(
        self,
        image: np.ndarray,
        instruction: str | None = None,
        *,
        target_prompt: str | None = None,
        source_prompt: str | None = None,
        mask: np.ndarray | None = None,
        strength: float | None = None,
        then: list[str] | tuple[str, ...] = (),
        callback: Progress | None = None,
        on_turn: Callable[[int, Turn], None] | None = None,
        then_from: str = "output",
    ) -> list[Turn]:
        """Edit ``image``, then apply each instruction of ``then`` to the previous output.

        ``target_prompt`` / ``source_prompt`` apply to the first turn only; ``mask`` (HxW bool, True =
        edit) applies to every turn.  ``on_turn(k, turn)`` runs as each turn finishes (the CLI saves it
        there, so a later turn's failure loses no finished work).

        ``then_from="output"``: each turn captions, inverts and edits the previous output.
        ``then_from="source"``: each turn rewrites the previous turn's *caption* and edits the first
        image with it (TurboEdit's reuse of one inversion: later turns cost only the edit's
        evaluations, and reconstruction errors do not compound).
        """
        if then_from not in ("output", "source"):
            raise ValueError(f"then_from must be 'output' or 'source', got {then_from!r}")
        rewriter = getattr(self.method, "rewriter", None)
        if then_from == "source" and then and rewriter is None:
            raise ValueError(f"method {self.method.name!r} has no rewriter: it cannot chain captions (then_from='source')")
        check_image(image)
        if mask is not None:
            mask = check_mask(mask, image.shape[:2])
        target_prompt = _text_or_none(target_prompt, "target caption")
        source_prompt = _text_or_none(source_prompt, "source caption")
        instruction = _text_or_none(instruction, "instruction")
        if instruction is None and target_prompt is None:
            raise ValueError("give an instruction or a target caption: the instruction is empty")
        if instruction is not None and target_prompt is not None:
            raise ValueError("give an instruction or a target caption, not both (the caption would override the instruction)")
        if isinstance(then, str):
            raise ValueError("then= takes a list of instructions, not one string")
        for k, ins in enumerate(then):
            if not isinstance(ins, str) or not check_text(ins, f"follow-up instruction {k + 1}").strip():
                raise ValueError(f"follow-up instruction {k + 1} is empty")
        if strength is not None and "strength" not in inspect.signature(self.method.edit).parameters:
            raise ValueError(f"method {self.method.name!r} has no edit strength; only turbo takes --strength")
        turns: list[Turn] = []
        current = image
        for k, ins in enumerate([instruction, *then]):
            if k > 0 and then_from == "source":
                prev = turns[-1].result.info
                req = EditRequest(
                    image=image,
                    instruction=ins,  # the captions decide the edit; a method that localises from words (region) reads it too
                    source_prompt=prev["source_caption"],
                    target_prompt=rewriter.rewrite(prev["target_caption"], ins),
                    mask=mask,
                )
            else:
                req = EditRequest(
                    image=current,
                    instruction=ins,
                    source_prompt=source_prompt if k == 0 else None,
                    target_prompt=target_prompt if k == 0 else None,
                    mask=mask,
                )
            t0 = time.perf_counter()
            kw = {"strength": strength} if strength is not None else {}
            res = self.method.edit(req, callback=callback, **kw)
            turns.append(Turn(ins, res, time.perf_counter() - t0))
            if on_turn is not None:
                on_turn(k, turns[-1])
            current = res.image
        return turns


def _text_or_none(text: str | None, what: str) -> str | None:
    if text is None:
        return None
    return check_text(text, what).strip() or None


OUTPUT_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")


def check_output_path(path: str | Path, inputs: tuple[str | Path | None, ...] = ()) -> Path:
    """``path`` if an edited image can be written there, else ``ValueError`` / ``OSError`` naming why: a
    wrong suffix, a folder, a parent that is a file or cannot be written, or one of ``inputs`` itself
    (retouch never writes over its input).  Checked before any model loads."""
    p = Path(path)
    if p.suffix.lower() not in OUTPUT_SUFFIXES:
        raise ValueError(f"{p}: output must be .png, .jpg or .webp")
    if p.is_dir():
        raise IsADirectoryError(f"{p}: the output is a folder; give a file name such as {p / 'edited.png'}")
    for src in inputs:
        if src is not None and Path(src).exists() and (p.resolve() == Path(src).resolve() or (p.exists() and p.samefile(src))):
            raise ValueError(f"{p} is the input {src} itself: retouch never writes over its input; choose another -o")
    parent = p.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise NotADirectoryError(f"{p}: {parent} is a file, not a folder, so nothing can be written under it")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise PermissionError(f"{p}: the folder {parent} is not writable")
    return p


MAX_TEXT = 10_000  # characters in an instruction or caption (the text encoders read a few hundred tokens)


def check_text(text: str, what: str) -> str:
    """``text`` with tabs and line breaks as spaces, or ``ValueError``: not a string, not UTF-8 (a command
    line with undecodable bytes arrives as lone surrogates), a control character, or longer than ``MAX_TEXT``."""
    if not isinstance(text, str):
        raise ValueError(f"the {what} must be a string, got {type(text).__name__}")
    if len(text) > MAX_TEXT:
        raise ValueError(f"the {what} is {len(text)} characters long; at most {MAX_TEXT} are accepted")
    for i, ch in enumerate(text):
        if "\ud800" <= ch <= "\udfff":
            raise ValueError(f"the {what} is not valid UTF-8 text (an undecodable byte at character {i + 1})")
        if unicodedata.category(ch) == "Cc" and ch not in "\t\n\r":
            raise ValueError(f"the {what} holds the control character U+{ord(ch):04X} at character {i + 1}; remove it")
    return " ".join(text.split()) if any(c in text for c in "\t\n\r") else text


def save_image(image: np.ndarray, path: str | Path, record: EditRecord | None = None) -> Path:
    """Write atomically: a temporary file renamed into place, so a failure never leaves half an image.
    A PNG gets ``record`` in its text chunks (``retouch.schema.png_text_chunks``)."""
    p = Path(path)
    if p.suffix.lower() not in OUTPUT_SUFFIXES:
        raise ValueError(f"{p}: output must be .png, .jpg or .webp")
    if p.suffix.lower() == ".png":
        return atomic.write_bytes(p, encode_png(image, record))  # retouch.atomic: a temporary file, synced, renamed
    return atomic.save_image(image, p)


def encode_png(image: np.ndarray, record: Any = None) -> bytes:
    """PNG bytes of an HxWx3 uint8 image, with a record's text chunks (an ``EditRecord`` or any pydantic model)."""
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    if record is not None:
        for key, value in png_text_chunks(record).items():
            info.add_itxt(key, value)
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG", pnginfo=info)
    return buf.getvalue()
