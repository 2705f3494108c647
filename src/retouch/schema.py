"""The records and requests the Python API, the HTTP API (``retouch.serve``) and batch jobs share.

Plain pydantic models, no web framework: ``retouch.edit`` and ``retouch.session`` build them, the
server validates requests with them and answers them as JSON, and the PNG text chunks of a saved
edit carry an ``EditRecord`` (``png_text_chunks``).  Their field names are the JSON keys of the API.
"""

from __future__ import annotations

import json
import logging
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

logger = logging.getLogger(__name__)

MAX_STRENGTH = 1.5  # turbo's range, the only method with a strength today (methods check their own)


class EditSpec(BaseModel):
    """One edit as a caller asks for it: what to change, with which method.  ``image`` / ``mask`` name
    inputs the caller supplied (an upload's file name for the server, a path for batch files)."""

    model_config = ConfigDict(extra="forbid")

    image: str | None = None
    mask: str | None = None
    instruction: str | None = None
    target_prompt: str | None = None
    source_prompt: str | None = None
    method: str | None = None
    strength: float | None = Field(default=None, ge=0.0, le=MAX_STRENGTH)

    @model_validator(mode="after")
    def _one_goal(self) -> EditSpec:
        for name in ("instruction", "target_prompt", "source_prompt"):
            v = getattr(self, name)
            if v is not None and not v.strip():
                setattr(self, name, None)
        if self.instruction is None and self.target_prompt is None:
            raise ValueError("give an instruction or a target_prompt: both are empty")
        if self.instruction is not None and self.target_prompt is not None:
            raise ValueError("give an instruction or a target_prompt, not both (the caption would override the instruction)")
        return self


class EditRecord(BaseModel):
    """What one edit did and cost: the captions it used, network evaluations and seconds."""

    method: str
    model: str | None = None
    instruction: str | None = None
    source_caption: str | None = None
    target_caption: str | None = None
    strength: float | None = None
    mask: str | None = None  # "user", or the automatic mask the method used ("none", "attention", "difference", "layout")
    nfe_inversion: int = 0  # 0 when a cached inversion was reused
    nfe_edit: int = 0
    seconds: float = 0.0  # wall time of the whole edit
    s_inversion: float = 0.0  # of which inverting
    inversion_reused: bool = False
    width: int = 0
    height: int = 0

    @classmethod
    def from_result(
        cls, result: Any, *, method: str, seconds: float, instruction: str | None = None, model: str | None = None
    ) -> EditRecord:
        """The record of a ``retouch.methods.EditResult``."""
        info = result.info
        h, w = result.image.shape[:2]
        return cls(
            method=method,
            model=model,
            instruction=instruction,
            source_caption=info.get("source_caption"),
            target_caption=info.get("target_caption"),
            strength=info.get("strength"),
            mask=info.get("mask"),
            nfe_inversion=result.nfe_inversion,
            nfe_edit=result.nfe_edit,
            seconds=round(seconds, 4),
            s_inversion=round(result.s_inversion, 4),
            inversion_reused=bool(info.get("inversion_reused", False)),
            width=w,
            height=h,
        )


class GenerateRequest(BaseModel):
    """Text to image (``retouch generate``; ``POST /v1/generate``)."""

    model_config = ConfigDict(extra="forbid")

    prompt: str = Field(min_length=1, max_length=2000)
    seed: int = Field(default=0, ge=0, le=2**31 - 1)
    steps: int | None = Field(default=None, ge=1, le=100)
    model: str | None = None

    @model_validator(mode="after")
    def _not_blank(self) -> GenerateRequest:
        if not self.prompt.strip():
            raise ValueError("the prompt is empty")
        return self


class GenerateRecord(BaseModel):
    prompt: str
    model: str | None = None
    seed: int
    steps: int
    nfe: int
    seconds: float
    width: int
    height: int


# -- the fill tasks: inpaint, erase, outpaint (docs/inpaint.md; POST /v1/inpaint, /v1/erase, /v1/outpaint) ----------
FILL_TASKS = ("inpaint", "erase", "outpaint")
FILL_BACKENDS = ("telea", "ns", "biharmonic", "diffusion")  # retouch.methods.fill.BACKENDS
CLASSIC_FILL_BACKENDS = ("telea", "ns", "biharmonic")
MAX_FILL_STEPS = 100  # as GenerateRequest.steps
MAX_FILL_SAMPLES = 16  # fills averaged per crop: run as one batch, so memory grows with it
MAX_FILL_BLEND = 256.0  # pixels: the seam blend's fade length (retouch.methods.fill.seam_blend)
MAX_OUTPAINT_SIDE = 4096  # pixels added on one side at most (the canvas itself: retouch.methods.inpaint.MAX_CANVAS)


class FieldError(ValueError):
    """A request error that knows which field is at fault (a cross-field check in a model validator, whose pydantic
    error has no location of its own; pydantic keeps the exception in the error's ``ctx["error"]``)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def _blank_to_none(v: str | None) -> str | None:
    return v.strip() if v is not None and v.strip() else None


class FillRequest(BaseModel):
    """What the fill tasks share: the backend and its settings (``retouch.methods.inpaint.FillSettings``).

    ``model`` is an inpainting folder for the Python API and a served model's name (``GET /v1/models?task=T``)
    for the server, which never reads a path a client names.  ``image`` / ``mask`` name inputs the caller
    supplied (an upload's file name in a job).  Checked here, before any model loads: a known backend, a model
    with the diffusion backend only (and the diffusion backend only with a model), the task's prompt rules.
    """

    model_config = ConfigDict(extra="forbid")
    task: ClassVar[str] = ""

    image: str | None = None
    backend: str | None = Field(
        default=None, description="telea | ns | biharmonic | diffusion (default: diffusion with a model, else telea)"
    )
    model: str | None = Field(default=None, description="a diffusion inpainting model (server: a name of GET /v1/models?task=...)")
    steps: int | None = Field(default=None, ge=1, le=MAX_FILL_STEPS, description="diffusion: sampling steps (default: the model's own)")
    seed: int = Field(default=0, ge=0, le=2**31 - 1, description="diffusion: the noise seed")
    samples: int | None = Field(
        default=None, ge=1, le=MAX_FILL_SAMPLES, description="diffusion: fills averaged per crop (default: the model's own for erase)"
    )
    blend: float | None = Field(
        default=None,
        ge=0,
        le=MAX_FILL_BLEND,
        description="diffusion: match the fill's colour to its surroundings, fading over this many pixels of the crop "
        "(default: its side / 16; 0: off)",
    )

    @field_validator("backend")
    @classmethod
    def _known_backend(cls, v: str | None) -> str | None:
        v = _blank_to_none(v)
        if v is not None and v not in FILL_BACKENDS:
            raise ValueError(f"unknown fill backend {v!r}; known: {', '.join(FILL_BACKENDS)}")
        return v

    @field_validator("model")
    @classmethod
    def _model_name(cls, v: str | None) -> str | None:
        return _blank_to_none(v)

    @property
    def backend_name(self) -> str:
        """The backend that runs: the one named, else ``diffusion`` with a model and ``telea`` without (as the CLI)."""
        return self.backend or ("diffusion" if self.model else "telea")

    @model_validator(mode="after")
    def _consistent(self) -> FillRequest:
        if self.backend in CLASSIC_FILL_BACKENDS and self.model is not None:
            raise FieldError("model", f"backend {self.backend!r} is a classic method and loads no model; a model needs backend diffusion")
        if self.backend == "diffusion" and self.model is None:
            raise FieldError("model", "the diffusion backend needs a model: a diffusion inpainting model (GET /v1/models?task=...)")
        if self.samples not in (None, 1) and self.backend_name != "diffusion":
            raise FieldError("samples", f"samples averages diffusion fills; backend {self.backend_name!r} is deterministic and takes none")
        if self.blend is not None and self.backend_name != "diffusion":
            raise FieldError("blend", f"blend matches a diffusion fill to its surroundings; backend {self.backend_name!r} takes none")
        self._check_prompt()
        return self

    def _check_prompt(self) -> None:
        pass


class InpaintRequest(FillRequest):
    """Draw what ``prompt`` describes inside the mask (``retouch inpaint``; ``POST /v1/inpaint``): needs a diffusion model."""

    task: ClassVar[str] = "inpaint"

    mask: str | None = None
    prompt: str | None = Field(default=None, max_length=2000, description="what to draw in the mask (required)")

    def _check_prompt(self) -> None:
        self.prompt = _blank_to_none(self.prompt)
        if self.prompt is None:
            raise FieldError("prompt", "inpaint needs a prompt: what to draw in the mask (erase fills without one)")
        if self.backend_name != "diffusion":
            raise FieldError(
                "model",
                f"inpaint draws what the prompt describes, so it needs a diffusion inpainting model (model); the classic backend "
                f"{self.backend_name!r} fills from the surroundings only (erase fills without a prompt)",
            )


class EraseRequest(FillRequest):
    """Fill the mask with what its surroundings imply (``retouch erase``; ``POST /v1/erase``); no prompt."""

    task: ClassVar[str] = "erase"

    mask: str | None = None


class OutpaintRequest(FillRequest):
    """Extend the canvas by ``left`` / ``right`` / ``top`` / ``bottom`` pixels and fill them (``retouch outpaint``;
    ``POST /v1/outpaint``); a prompt needs a diffusion model, the classic backends propagate the edges."""

    task: ClassVar[str] = "outpaint"

    left: int = Field(default=0, ge=0, le=MAX_OUTPAINT_SIDE, description="pixels to add on the left")
    right: int = Field(default=0, ge=0, le=MAX_OUTPAINT_SIDE, description="pixels to add on the right")
    top: int = Field(default=0, ge=0, le=MAX_OUTPAINT_SIDE, description="pixels to add at the top")
    bottom: int = Field(default=0, ge=0, le=MAX_OUTPAINT_SIDE, description="pixels to add at the bottom")
    prompt: str | None = Field(default=None, max_length=2000, description="what the new area shows (needs a diffusion model)")

    @property
    def sides(self) -> dict[str, int]:
        return {"left": self.left, "right": self.right, "top": self.top, "bottom": self.bottom}

    def _check_prompt(self) -> None:
        if not any(self.sides.values()):
            raise FieldError("left", "nothing to outpaint: left, right, top and bottom are all 0; give at least one (pixels to add)")
        self.prompt = _blank_to_none(self.prompt)
        if self.prompt is not None and self.backend_name != "diffusion":
            raise FieldError(
                "prompt",
                f"outpaint with a prompt needs a diffusion inpainting model (model); the classic backend {self.backend_name!r} "
                "propagates the edges and cannot draw it: leave the prompt out for the classic fill",
            )


FILL_REQUESTS: dict[str, type[FillRequest]] = {"inpaint": InpaintRequest, "erase": EraseRequest, "outpaint": OutpaintRequest}


class FillRecord(BaseModel):
    """What one fill did and cost: the task, the backend, the crops it filled (top, left, bottom, right in the input's
    pixels), network evaluations and seconds.  ``steps`` / ``seed`` are the diffusion backend's (null otherwise)."""

    task: str
    method: str
    backend: str
    model: str | None = None
    prompt: str | None = None
    steps: int | None = None
    seed: int | None = None
    extend: dict[str, int] | None = None  # outpaint: the pixels added per side
    crops: list[list[int]] = Field(default_factory=list)
    nfe: int = 0
    seconds: float = 0.0  # wall time of the whole fill
    width: int = 0  # of the output (outpaint: the extended canvas)
    height: int = 0

    @classmethod
    def from_result(
        cls, result: Any, *, method: str, seconds: float, model: str | None = None, steps: int | None = None, seed: int | None = None
    ) -> FillRecord:
        """The record of a fill method's ``retouch.methods.EditResult`` (its ``info``: task, backend, prompt, crops)."""
        info = result.info
        h, w = result.image.shape[:2]
        diffusion = info.get("backend") == "diffusion"
        return cls(
            task=info.get("task", method),
            method=method,
            backend=info.get("backend", ""),
            model=model,
            prompt=info.get("prompt"),
            steps=steps if diffusion else None,
            seed=seed if diffusion else None,
            extend=info.get("extend"),
            crops=info.get("crops", []),
            nfe=result.nfe_edit,
            seconds=round(seconds, 4),
            width=w,
            height=h,
        )


def png_text_chunks(record: BaseModel) -> dict[str, str]:
    """PNG tEXt/iTXt chunks for a record: the whole record as JSON under ``retouch``, and its captions alone."""
    d = record.model_dump()
    chunks = {"retouch": json.dumps(d, ensure_ascii=False)}
    for key in ("source_caption", "target_caption", "prompt"):
        if d.get(key):
            chunks[key] = str(d[key])
    return chunks


__all__ = [
    "FILL_BACKENDS",
    "FILL_REQUESTS",
    "FILL_TASKS",
    "MAX_STRENGTH",
    "EditRecord",
    "EditSpec",
    "EraseRequest",
    "FieldError",
    "FillRecord",
    "FillRequest",
    "GenerateRecord",
    "GenerateRequest",
    "InpaintRequest",
    "OutpaintRequest",
    "png_text_chunks",
]
