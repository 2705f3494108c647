"""The records and requests the Python API, the HTTP API (``retouch.serve``) and batch jobs share.

Plain pydantic models, no web framework: ``retouch.edit`` and ``retouch.session`` build them, the
server validates requests with them and answers them as JSON, and the PNG text chunks of a saved
edit carry an ``EditRecord`` (``png_text_chunks``).  Their field names are the JSON keys of the API.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

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


def png_text_chunks(record: BaseModel) -> dict[str, str]:
    """PNG tEXt/iTXt chunks for a record: the whole record as JSON under ``retouch``, and its captions alone."""
    d = record.model_dump()
    chunks = {"retouch": json.dumps(d, ensure_ascii=False)}
    for key in ("source_caption", "target_caption", "prompt"):
        if d.get(key):
            chunks[key] = str(d[key])
    return chunks


__all__ = ["MAX_STRENGTH", "EditRecord", "EditSpec", "GenerateRecord", "GenerateRequest", "png_text_chunks"]
