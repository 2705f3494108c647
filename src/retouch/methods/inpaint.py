"""The three fill tasks, each a method in the registry: ``inpaint`` (draw what the prompt describes in the
mask), ``erase`` (fill the mask with what the surroundings imply; no prompt) and ``outpaint`` (fill the
canvas beyond the input's edges).

Each runs a fill backend (``retouch.methods.fill``: OpenCV Telea / Navier-Stokes, scikit-image's
biharmonic, or a diffusers SD-inpainting folder) through IOPaint's crop strategy, so any input size
works and every pixel outside the mask is the input's, bit for bit.  Settings (``FillSettings``) pick
the backend: ``backend`` (default: ``diffusion`` when ``model`` is given, else ``telea``), ``model``,
``steps``, ``guidance``, ``samples``, ``blend``, ``seed``, ``margin``, ``crop_size``, ``radius``, ``device``.

Without a diffusion model the classic backends fill from the surroundings only: they cannot draw what
a prompt describes, so ``inpaint`` (and ``outpaint`` with a prompt) refuses with that reason rather than
ignore the prompt.  ``outpaint`` with a classic backend extends the canvas and propagates its edges
inwards: a classic fallback, not scene completion.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, fields

import numpy as np

from . import EditRequest, EditResult, Method, Progress, register_method
from .fill import CLASSIC_BACKENDS, BackendSettings, fill_with_crops, make_backend

logger = logging.getLogger(__name__)

MAX_CANVAS = 4096  # the longest side an outpainted canvas may have (retouch's image limit)


@dataclass
class FillSettings(BackendSettings):
    seed: int = 0  # the diffusion backend's noise
    margin: int = 64  # context pixels around each mask region (the crop strategy)


def prompt_needs_model(task: str, backend: str, prompt: str) -> ValueError:
    return ValueError(
        f"{task} with a prompt needs a diffusion inpainting model (--model PATH: a diffusers StableDiffusionInpaintPipeline folder); "
        f"the classic backend {backend!r} fills from the surroundings only and cannot draw {prompt[:60]!r}"
        + (": use `retouch erase` to fill without one" if task == "inpaint" else ": leave the prompt out for the classic fill")
    )


class FillMethod(Method):
    """Shared: settings, the backend, the crop strategy; subclasses say where the prompt comes from."""

    uses_prompt = "optional"  # "required" | "optional" | "never"

    def __init__(self, **options) -> None:
        names = {f.name for f in fields(FillSettings)}
        unknown = [k for k in options if k not in names]
        if unknown:
            raise ValueError(f"method {self.name!r} has no such setting: {', '.join(unknown)} (settings: {', '.join(sorted(names))})")
        self.settings = FillSettings(**options)
        if self.settings.margin < 0:
            raise ValueError(f"margin must be at least 0 pixels, got {self.settings.margin}")
        self.backend = make_backend(self.settings, task=self.task)

    def prompt_of(self, request: EditRequest) -> str | None:
        text = request.target_prompt or request.instruction
        text = text.strip() if text else None
        if self.uses_prompt == "never":
            if text:
                logger.info("%s takes no prompt; %r is not used", self.name, text[:60])
            return None
        if self.uses_prompt == "required" and not text:
            raise ValueError(f"{self.name} needs a prompt: what to draw in the mask")
        if text and not self.backend.takes_prompt:
            raise prompt_needs_model(self.name, self.backend.name, text)
        return text

    def edit(self, request: EditRequest, callback: Progress | None = None) -> EditResult:
        if request.mask is None:
            raise ValueError(f"{self.name} needs a mask (white = the pixels to fill)")
        if not request.mask.any():
            raise ValueError("the mask selects no pixel: nothing to fill")
        prompt = self.prompt_of(request)
        out, report = fill_with_crops(
            request.image,
            request.mask,
            self.backend,
            prompt=prompt,
            seed=self.settings.seed,
            margin=self.settings.margin,
            callback=callback,
        )
        info = {"task": self.task, "backend": self.backend.name, "prompt": prompt} | report.to_dict()
        return EditResult(image=out, nfe_edit=report.nfe, info=info, mask=request.mask.astype(np.float32))


@register_method
class Inpaint(FillMethod):
    """Draw what the prompt (``target_prompt``, or the instruction) describes inside the mask."""

    name = "inpaint"
    task = "inpaint"
    uses_prompt = "required"


@register_method
class Erase(FillMethod):
    """Fill the mask with what its surroundings imply; a prompt is not used."""

    name = "erase"
    task = "erase"
    uses_prompt = "never"


@register_method
class Outpaint(FillMethod):
    """Fill the canvas beyond the input's edges.  ``edit`` takes the extended canvas and the mask of its new
    pixels (``extend_canvas`` makes both); ``outpaint`` does it from the pixel counts per side."""

    name = "outpaint"
    task = "outpaint"
    uses_prompt = "optional"

    def outpaint(
        self,
        image: np.ndarray,
        left: int = 0,
        right: int = 0,
        top: int = 0,
        bottom: int = 0,
        prompt: str | None = None,
        callback: Progress | None = None,
    ) -> EditResult:
        canvas, mask = extend_canvas(image, left=left, right=right, top=top, bottom=bottom)
        res = self.edit(EditRequest(image=canvas, target_prompt=prompt, mask=mask), callback=callback)
        res.info["extend"] = {"left": left, "right": right, "top": top, "bottom": bottom}
        return res


def check_extents(shape: tuple[int, ...], left: int = 0, right: int = 0, top: int = 0, bottom: int = 0) -> tuple[int, int]:
    """The outpainted canvas's (H, W) for an image of ``shape``, or ``ValueError`` naming the bad pixel count."""
    sides = {"left": left, "right": right, "top": top, "bottom": bottom}
    for k, v in sides.items():
        if isinstance(v, bool) or not isinstance(v, int | np.integer) or v < 0:
            raise ValueError(f"--{k} must be a whole number of pixels, at least 0; got {v!r}")
    if not any(sides.values()):
        raise ValueError("nothing to outpaint: give at least one of --left, --right, --top, --bottom (pixels to add)")
    H, W = shape[0] + top + bottom, shape[1] + left + right
    if max(H, W) > MAX_CANVAS:
        raise ValueError(f"the outpainted canvas would be {W}x{H}; sides must be at most {MAX_CANVAS} pixels")
    return H, W


def extend_canvas(image: np.ndarray, left: int = 0, right: int = 0, top: int = 0, bottom: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(canvas, mask): ``image`` with ``left`` / ``right`` / ``top`` / ``bottom`` pixels added (filled with its edge
    pixels, a start that the fill replaces) and the boolean mask of the added pixels."""
    H, W = check_extents(image.shape, left=left, right=right, top=top, bottom=bottom)
    h, w = image.shape[:2]
    canvas = np.pad(image, ((top, bottom), (left, right), (0, 0)), mode="edge")
    mask = np.ones((H, W), dtype=bool)
    mask[top : top + h, left : left + w] = False
    return canvas, mask


__all__ = ["CLASSIC_BACKENDS", "Erase", "FillSettings", "Inpaint", "Outpaint", "check_extents", "extend_canvas"]
