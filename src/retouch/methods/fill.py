"""Fill backends and IOPaint's "crop" strategy: what inpaint, erase and outpaint share.

A backend fills the masked pixels of one crop at its working size:

- ``telea`` / ``ns``: OpenCV's ``cv2.inpaint`` (Telea 2004's fast marching; Bertalmio et al. 2001's
  Navier-Stokes), classic CPU methods that fill from the surroundings and take no prompt;
- ``biharmonic``: scikit-image's ``inpaint_biharmonic`` (a smooth biharmonic continuation), the same;
- ``diffusion``: a diffusers SD-inpainting folder (``StableDiffusionInpaintPipeline``: a UNet that reads
  the noisy latent, the mask and the masked image's latent, 9 input channels), which takes a prompt.

The learned ByteEdit model slots in as one more entry of ``BACKENDS``: a ``FillBackend`` whose ``fill``
takes the crop, its mask and the prompt.

``fill_with_crops`` runs any backend on an image of any size (IOPaint's "crop" HD strategy): one box per
connected mask region (boxes that overlap once grown by the margin are merged), grown by ``margin``
pixels of context and then to the backend's working size where the image allows, cut out, resized to the
working size when it is larger (diffusion backends: also when smaller), filled, resized back and pasted
into the mask only.  Pixels outside the mask are never written: they are the input's, bit for bit.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from PIL import Image
from scipy import ndimage

logger = logging.getLogger(__name__)

Progress = Callable[[int, int], None]

CLASSIC_SIZE = 512  # the classic backends' working size: crops larger than this are filled downscaled
SD_INPAINT_CHANNELS = 9  # noisy latent (4) + mask (1) + masked image latent (4)


class FillBackend:
    """Fills the masked pixels of an HxWx3 uint8 crop; ``fill`` returns an array of the crop's size."""

    name: ClassVar[str] = ""
    takes_prompt: ClassVar[bool] = False
    working_size: int = CLASSIC_SIZE  # the longest side it works at
    multiple: int = 1  # both working sides are multiples of this
    upscale: bool = False  # True: crops smaller than the working size are enlarged to it (diffusion models)

    def fill(self, image: np.ndarray, mask: np.ndarray, prompt: str | None, seed: int, callback: Progress | None = None) -> np.ndarray:
        raise NotImplementedError

    def nfe(self, prompt: str | None) -> int:
        """Network evaluations per fill (0 for the classic methods)."""
        return 0


class OpenCVFill(FillBackend):
    """``cv2.inpaint``: ``flag`` is ``cv2.INPAINT_TELEA`` or ``cv2.INPAINT_NS``; ``radius`` its inpaintRadius."""

    def __init__(self, name: str, radius: int = 5, working_size: int = CLASSIC_SIZE) -> None:
        import cv2

        self.name = name  # type: ignore[misc]
        self.flag = {"telea": cv2.INPAINT_TELEA, "ns": cv2.INPAINT_NS}[name]
        if radius < 1:
            raise ValueError(f"the inpainting radius must be at least 1 pixel, got {radius}")
        self.radius = radius
        self.working_size = working_size

    def fill(self, image, mask, prompt, seed, callback=None):
        import cv2

        # cv2.inpaint treats the three channels alike, so RGB needs no swap to BGR
        out = cv2.inpaint(np.ascontiguousarray(image), mask.astype(np.uint8) * 255, float(self.radius), self.flag)
        if callback:
            callback(1, 1)
        return out


class BiharmonicFill(FillBackend):
    name = "biharmonic"

    def __init__(self, working_size: int = CLASSIC_SIZE) -> None:
        self.working_size = working_size

    def fill(self, image, mask, prompt, seed, callback=None):
        from skimage.restoration import inpaint_biharmonic

        out = inpaint_biharmonic(image, mask, split_into_regions=True, channel_axis=-1)  # float in [0, 1]
        if callback:
            callback(1, 1)
        return np.clip(np.round(out * 255.0), 0, 255).astype(np.uint8)


class DiffusersInpaintFill(FillBackend):
    """A diffusers SD-inpainting folder through ``StableDiffusionInpaintPipeline`` (local files only)."""

    name = "diffusion"
    takes_prompt = True
    upscale = True

    def __init__(
        self,
        model: str | Path,
        steps: int = 25,
        guidance: float | None = None,
        device: str = "cpu",
        working_size: int | None = None,
        negative_prompt: str | None = None,
    ) -> None:
        path = check_inpaint_folder(model)
        from diffusers import StableDiffusionInpaintPipeline

        if steps < 1:
            raise ValueError(f"steps must be at least 1, got {steps}")
        try:
            self.pipe = StableDiffusionInpaintPipeline.from_pretrained(path, local_files_only=True)
        except (OSError, ValueError, TypeError, KeyError) as e:
            raise ValueError(f"{path}: the SD-inpainting pipeline could not be loaded ({type(e).__name__}: {e})") from e
        self.pipe.set_progress_bar_config(disable=True)
        self.pipe.to(device)
        self.device = device
        self.steps = steps
        self.guidance = 7.5 if guidance is None else guidance  # the pipeline's own default
        self.negative_prompt = negative_prompt
        vae_factor = int(self.pipe.vae_scale_factor)
        self.working_size = working_size or int(self.pipe.unet.config.sample_size) * vae_factor
        self.multiple = max(8, vae_factor)  # the pipeline refuses sides that are not multiples of 8

    def _guidance(self, prompt: str | None) -> float:
        # with no prompt and no negative prompt both branches of classifier-free guidance read the same empty text
        return self.guidance if (prompt or self.negative_prompt) else 1.0

    def nfe(self, prompt: str | None) -> int:
        return self.steps * (2 if self._guidance(prompt) > 1.0 else 1)

    def fill(self, image, mask, prompt, seed, callback=None):
        import torch

        h, w = image.shape[:2]
        g = torch.Generator(device=self.device).manual_seed(seed)

        def on_step(pipe, i, t, kw):
            if callback:
                callback(i + 1, self.steps)
            return kw

        with torch.no_grad():
            res = self.pipe(
                prompt=prompt or "",
                negative_prompt=self.negative_prompt,
                image=Image.fromarray(image),
                mask_image=Image.fromarray(mask.astype(np.uint8) * 255),
                height=h,
                width=w,
                num_inference_steps=self.steps,
                guidance_scale=self._guidance(prompt),
                generator=g,
                output_type="np",
                callback_on_step_end=on_step,
            )
        if getattr(res, "nsfw_content_detected", None) and any(res.nsfw_content_detected):
            logger.warning("the checkpoint's safety checker blanked this fill")
        out = np.asarray(res.images[0])
        return np.clip(np.round(out * 255.0), 0, 255).astype(np.uint8)


def check_inpaint_folder(model: str | Path) -> Path:
    """``model`` if it is a diffusers SD-inpainting folder (its UNet reads 9 channels), else an error saying why not.
    Read from the config files, before any weight loads."""
    import json

    path = Path(model)
    if not path.exists():
        raise FileNotFoundError(f"inpainting model {path} not found")
    if not (path / "model_index.json").is_file():
        raise ValueError(f"{path} is not a diffusers pipeline folder (no model_index.json); give an SD-inpainting folder")
    cfg = path / "unet" / "config.json"
    if not cfg.is_file():
        raise ValueError(f"{path} has no unet/config.json: not an SD-inpainting pipeline folder")
    try:
        channels = json.loads(cfg.read_text())["in_channels"]
    except (json.JSONDecodeError, KeyError, UnicodeDecodeError) as e:
        raise ValueError(f"{cfg} is not a readable UNet config ({e})") from e
    if channels != SD_INPAINT_CHANNELS:
        raise ValueError(
            f"{path}: its UNet reads {channels} input channels; an SD-inpainting UNet reads {SD_INPAINT_CHANNELS} "
            "(noisy latent 4 + mask 1 + masked-image latent 4): this is not an inpainting model"
        )
    return path


CLASSIC_BACKENDS = ("telea", "ns", "biharmonic")
BACKENDS = CLASSIC_BACKENDS + ("diffusion",)


@dataclass
class BackendSettings:
    backend: str | None = None  # telea | ns | biharmonic | diffusion; default: diffusion with a model, else telea
    model: str | None = None  # a diffusers SD-inpainting folder (the diffusion backend)
    steps: int = 25
    guidance: float | None = None
    radius: int = 5  # OpenCV's inpaintRadius, pixels
    crop_size: int | None = None  # the working size (default: the model's, or 512 for the classic backends)
    device: str = "cpu"


def make_backend(s: BackendSettings) -> FillBackend:
    name = s.backend or ("diffusion" if s.model else "telea")
    if name not in BACKENDS:
        raise ValueError(f"unknown fill backend {name!r}; known: {', '.join(BACKENDS)}")
    if s.crop_size is not None and s.crop_size < 8:
        raise ValueError(f"crop_size must be at least 8 pixels, got {s.crop_size}")
    if name == "diffusion":
        if not s.model:
            raise ValueError("the diffusion backend needs a diffusers SD-inpainting folder (--model PATH)")
        return DiffusersInpaintFill(s.model, steps=s.steps, guidance=s.guidance, device=s.device, working_size=s.crop_size)
    if s.model:
        raise ValueError(f"backend {name!r} is a classic method and loads no model; --model needs --backend diffusion")
    size = s.crop_size or CLASSIC_SIZE
    return BiharmonicFill(size) if name == "biharmonic" else OpenCVFill(name, radius=s.radius, working_size=size)


# -- the crop strategy -----------------------------------------------------------------------------------
Box = tuple[int, int, int, int]  # top, left, bottom, right (exclusive)


def mask_boxes(mask: np.ndarray, margin: int) -> list[Box]:
    """One box per 8-connected region of ``mask``, grown by ``margin`` and clipped to the image; boxes that
    then overlap are merged (until none do), so each crop sees its neighbours' regions as one."""
    h, w = mask.shape
    labels, n = ndimage.label(mask, structure=np.ones((3, 3), bool))
    boxes = [
        (max(0, s[0].start - margin), max(0, s[1].start - margin), min(h, s[0].stop + margin), min(w, s[1].stop + margin))
        for s in ndimage.find_objects(labels)
        if s is not None
    ]
    merged = True
    while merged:
        merged = False
        out: list[Box] = []
        for b in boxes:
            for i, o in enumerate(out):
                if b[0] < o[2] and o[0] < b[2] and b[1] < o[3] and o[1] < b[3]:
                    out[i] = (min(b[0], o[0]), min(b[1], o[1]), max(b[2], o[2]), max(b[3], o[3]))
                    merged = True
                    break
            else:
                out.append(b)
        boxes = out
    return sorted(boxes)


def context_box(box: Box, shape: tuple[int, int], side: int) -> Box:
    """``box`` grown about its centre to at least ``side`` pixels on each axis (or the image's extent),
    shifted back inside the image where it would cross an edge (IOPaint: more context at the borders)."""
    t, left, b, r = box
    out = []
    for lo, hi, n in ((t, b, shape[0]), (left, r, shape[1])):
        want = min(max(hi - lo, side), n)
        lo = lo - (want - (hi - lo)) // 2
        lo = min(max(lo, 0), n - want)
        out.append((lo, lo + want))
    (t, b), (left, r) = out
    return t, left, b, r


def _scaled(h: int, w: int, backend: FillBackend) -> tuple[int, int]:
    scale = backend.working_size / max(h, w)
    if not backend.upscale:
        scale = min(scale, 1.0)
    m = backend.multiple
    return max(m, round(h * scale / m) * m), max(m, round(w * scale / m) * m)


def _resize(image: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    return np.asarray(Image.fromarray(image).resize((hw[1], hw[0]), Image.BICUBIC))


def _resize_mask(mask: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    # every working pixel that any masked input pixel touches is masked, so nothing of the mask is lost
    m = Image.fromarray(mask.astype(np.uint8) * 255).resize((hw[1], hw[0]), Image.BILINEAR)
    return np.asarray(m) > 0


@dataclass
class FillReport:
    boxes: list[Box] = field(default_factory=list)  # the crops filled, in the input's pixels
    working: list[tuple[int, int]] = field(default_factory=list)  # each crop's working size (H, W)
    nfe: int = 0
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"crops": [list(b) for b in self.boxes], "working_sizes": [list(s) for s in self.working], "seconds": round(self.seconds, 4)}


def fill_with_crops(
    image: np.ndarray,
    mask: np.ndarray,
    backend: FillBackend,
    prompt: str | None = None,
    seed: int = 0,
    margin: int = 64,
    callback: Progress | None = None,
) -> tuple[np.ndarray, FillReport]:
    """``image`` with its ``mask`` pixels filled by ``backend`` crop by crop; every other pixel is the input's."""
    if margin < 0:
        raise ValueError(f"the crop margin must be at least 0 pixels, got {margin}")
    if not mask.any():
        raise ValueError("the mask selects no pixel: nothing to fill")
    t0 = time.perf_counter()
    out = image.copy()
    todo = mask.copy()
    report = FillReport()
    boxes = mask_boxes(mask, margin)
    for k, box in enumerate(boxes):
        t, lf, b, r = context_box(box, mask.shape, backend.working_size)
        m = todo[t:b, lf:r]
        if not m.any():
            continue
        if m.all() and not backend.takes_prompt:
            raise ValueError(
                f"the mask covers the whole {r - lf}x{b - t} crop at ({lf}, {t}): backend {backend.name!r} fills from the pixels "
                "around the mask and none are left; leave some of the image unmasked, or use a diffusion model"
            )
        crop = out[t:b, lf:r]
        hw = _scaled(b - t, r - lf, backend)
        sub = callback and (lambda i, n, k=k: callback(k * n + i, len(boxes) * n))
        if hw == (b - t, r - lf):
            filled = backend.fill(crop.copy(), m.copy(), prompt, seed, sub)
        else:
            filled = _resize(backend.fill(_resize(crop, hw), _resize_mask(m, hw), prompt, seed, sub), (b - t, r - lf))
        if filled.shape != crop.shape:
            raise RuntimeError(f"backend {backend.name!r} returned {filled.shape} for a {crop.shape} crop")
        crop[m] = filled[m]  # a view of ``out``: only mask pixels are written
        todo[t:b, lf:r] = False
        report.boxes.append((t, lf, b, r))
        report.working.append(hw)
        report.nfe += backend.nfe(prompt)
    report.seconds = time.perf_counter() - t0
    return out, report
