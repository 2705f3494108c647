"""Editing methods: one module per method behind one registry and one ``edit`` signature.

A method is constructed with its options and edits one request at a time.  The
request holds only what the caller chose to give (see ``INPUTS``); no method but
the reference ones may read ground truth, and those get it through
``ReferenceMethod.edit_with_truth``, never through the request.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

logger = logging.getLogger(__name__)

# what a method may receive besides the source image, by the bench's --inputs name
INPUTS: dict[str, tuple[str, ...]] = {
    "instruction": ("instruction",),
    "prompts": ("source_prompt", "target_prompt"),
    "mask": ("instruction", "source_prompt", "target_prompt", "mask"),
}

Progress = Callable[[int, int], None]


@dataclass
class EditRequest:
    image: np.ndarray  # HxWx3 uint8
    instruction: str | None = None
    source_prompt: str | None = None
    target_prompt: str | None = None
    mask: np.ndarray | None = None  # HxW bool, True = region to edit

    def __post_init__(self) -> None:
        im = self.image
        if not isinstance(im, np.ndarray) or im.ndim != 3 or im.shape[2] != 3 or im.dtype != np.uint8:
            desc = f"shape {getattr(im, 'shape', None)}, dtype {getattr(im, 'dtype', type(im).__name__)}"
            raise ValueError(f"the image must be an HxWx3 uint8 RGB array, got {desc}")
        if self.mask is not None:
            m = np.asarray(self.mask)
            if m.shape != im.shape[:2]:
                raise ValueError(f"mask shape {m.shape} does not match the image's {im.shape[:2]}")
            self.mask = m.astype(bool)


@dataclass
class EditResult:
    image: np.ndarray  # HxWx3 uint8, the input's size
    nfe_edit: int = 0  # network evaluations spent editing
    nfe_inversion: int = 0  # network evaluations spent inverting (0 when reused from a cache)
    s_inversion: float = 0.0  # seconds of the above spent inverting
    info: dict[str, Any] = field(default_factory=dict)
    mask: np.ndarray | None = None  # HxW float32 in [0, 1]: how much of the edit each pixel took (None: not reported)


@dataclass
class Prepared:
    """What a method computed once for one image, for any number of edits of it (``Method.prepare``).

    ``state`` is the method's own (turbo: the working-size image, its inversion and the source
    caption's attention maps); ``nfe`` / ``seconds`` are what preparing cost.
    """

    image: np.ndarray  # HxWx3 uint8, the input
    source_prompt: str | None = None  # the source caption: the caller's, or the captioner's
    state: Any = None
    nfe: int = 0
    seconds: float = 0.0


class Method:
    """Base class: subclasses set ``name`` and implement ``edit``.

    ``prepare`` / ``edit_prepared`` split an edit into what depends on the image alone (captioning,
    inversion: done once) and the edit itself, for sessions that edit one image many times.  The
    defaults keep nothing and run the whole ``edit`` each time; a method with a reusable inversion
    overrides both, and its ``edit`` is ``prepare`` followed by ``edit_prepared``.
    """

    name: ClassVar[str] = ""
    task: ClassVar[str] = "edit"  # the kind of request it serves (later: "inpaint", "erase", "outpaint")
    reference: ClassVar[bool] = False  # reference methods may read ground truth
    reuses_inversion: ClassVar[bool] = False  # True: ``prepare`` inverts once and ``edit_prepared`` costs the edit alone

    def edit(self, request: EditRequest, callback: Progress | None = None) -> EditResult:
        raise NotImplementedError

    def prepare(self, image: np.ndarray, source_prompt: str | None = None, callback: Progress | None = None) -> Prepared:
        return Prepared(image=image, source_prompt=source_prompt)

    def edit_prepared(
        self,
        prepared: Prepared,
        *,
        instruction: str | None = None,
        target_prompt: str | None = None,
        mask: np.ndarray | None = None,
        strength: float | None = None,
        callback: Progress | None = None,
    ) -> EditResult:
        """An edit of ``prepared.image`` from its source caption; costs only the edit where ``prepare`` cached work."""
        request = EditRequest(
            image=prepared.image, instruction=instruction, source_prompt=prepared.source_prompt, target_prompt=target_prompt, mask=mask
        )
        if strength is None:
            return self.edit(request, callback=callback)
        if not takes_strength(type(self)):
            raise ValueError(f"method {self.name!r} has no edit strength")
        return self.edit(request, callback=callback, strength=strength)


def takes_strength(cls: type[Method]) -> bool:
    """Whether the method's ``edit`` takes a ``strength``."""
    return "strength" in inspect.signature(cls.edit).parameters


class ReferenceMethod(Method):
    """Calibration methods of the benchmark; the runner hands them the ground truth."""

    reference = True

    def edit_with_truth(self, request: EditRequest, target: np.ndarray) -> EditResult:
        raise NotImplementedError

    def edit(self, request: EditRequest, callback: Progress | None = None) -> EditResult:
        raise RuntimeError(f"{self.name} is a reference method: it needs the ground truth, so it only runs inside `retouch bench`")


METHODS: dict[str, type[Method]] = {}


def register_method(cls: type[Method]) -> type[Method]:
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no name")
    METHODS[cls.name] = cls
    return cls


def get_method(name: str, **options: Any) -> Method:
    _load_builtin()
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; known methods: {', '.join(sorted(METHODS))}")
    cls = METHODS[name]
    params = inspect.signature(cls).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    unknown = [k for k in options if k not in params] if not takes_any else []
    if unknown:
        raise ValueError(f"method {name!r} has no such setting: {', '.join(unknown)}")
    try:
        return cls(**options)
    except TypeError as e:
        if "unexpected keyword" not in str(e):
            raise
        raise ValueError(f"method {name!r} has no such setting ({e})") from e


def list_methods() -> list[str]:
    _load_builtin()
    return sorted(METHODS)


def _load_builtin() -> None:
    from . import baselines, inpaint, reference, region, turbo  # noqa: F401
