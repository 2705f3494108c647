"""Fill backends and IOPaint's "crop" strategy: what inpaint, erase and outpaint share.

A backend fills the masked pixels of one crop at its working size:

- ``telea`` / ``ns``: OpenCV's ``cv2.inpaint`` (Telea 2004's fast marching; Bertalmio et al. 2001's
  Navier-Stokes), classic CPU methods that fill from the surroundings and take no prompt;
- ``biharmonic``: scikit-image's ``inpaint_biharmonic`` (a smooth biharmonic continuation), the same;
- ``diffusion``: a mask-conditioned diffusion model through ``load_backbone`` (``ModelFill``): a diffusers
  SD-inpainting folder (a UNet that reads the noisy latent, the mask and the masked image's latent, 9 input
  channels) or retouch's Shapes inpainting model (``retouch train recipes/shapes-inpaint.json``), which takes a
  prompt.

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


class ModelFill(FillBackend):
    """A mask-conditioned diffusion model loaded by ``load_backbone``: a diffusers SD-inpainting folder (its UNet
    reads the noisy latent, the mask and the masked image's latent: 4 + 1 + 4 channels) or retouch's Shapes
    inpainting model (16 + 1 + 16, then its layout map and draft), sampled by ``sample_ddim`` with the mask and
    the masked latent as the UNet's extra channels at every step (one code path for both).

    ``task`` is the method's: with a Shapes model (one that reads a layout map) the prompt the model is given is
    the caption of the whole scene the fill should leave, composed from the scene reader's parse of the crop and
    the request (``world.fill_prompt``); a foreign checkpoint gets the prompt as given.
    """

    name = "diffusion"
    takes_prompt = True
    upscale = True

    def __init__(
        self,
        model: str | Path,
        task: str = "inpaint",
        steps: int | None = None,
        guidance: float | None = None,
        device: str = "cpu",
        working_size: int | None = None,
        negative_prompt: str | None = None,
        samples: int | None = None,
        blend: float | None = None,
    ) -> None:
        import json

        from ..models.backbone import load_backbone

        path = check_inpaint_folder(model)
        if steps is not None and steps < 1:
            raise ValueError(f"steps must be at least 1, got {steps}")
        if samples is not None and not 1 <= samples <= MAX_SAMPLES:
            raise ValueError(f"samples must be between 1 and {MAX_SAMPLES}, got {samples}")
        if blend is not None and not 0 <= blend <= MAX_BLEND:
            raise ValueError(f"blend must be between 0 and {MAX_BLEND} pixels, got {blend}")
        try:
            self.backbone = load_backbone(path, device=device)
        except (OSError, ValueError, TypeError, KeyError) as e:
            raise ValueError(f"{path}: the inpainting model could not be loaded ({type(e).__name__}: {e})") from e
        own = self.backbone.caption_reader is not None  # retouch's own folder: its defaults are in model_index.json
        self.task = task
        self.device = device
        # a foreign SD-inpainting folder keeps StableDiffusionInpaintPipeline's defaults (guidance 7.5) and 25 steps
        self.steps = steps or (self.backbone.default_steps if own else 25)
        self.guidance = guidance if guidance is not None else (self.backbone.default_guidance if own else 7.5)
        self.negative_prompt = negative_prompt
        # erase: the mean of several samples' fills.  What lies under an erased object (a cloud, a blade of grass) is
        # not in the image, so the fill that is nearest the truth on average is the conditional mean, which one
        # sample of a few-step model only approximates (docs/inpaint.md).  A folder may name its own count.
        index = json.loads((path / "model_index.json").read_text())
        own_samples = int(index.get("retouch_erase_samples", 1)) if task == "erase" else 1
        self.samples = samples if samples is not None else own_samples
        self.working_size = working_size or self.backbone.default_size
        self.multiple = max(8, self.backbone.vae_factor)
        self.blend = blend  # None: a sixteenth of the crop's shorter side (8 px at the Shapes model's 128)
        self._composer = None
        if own:
            from ..world.fill_prompt import SceneFillPrompt

            self._composer = SceneFillPrompt()

    def _guidance(self, prompt: str | None) -> float:
        # with no prompt and no negative prompt both branches of classifier-free guidance read the same empty text
        return self.guidance if (prompt or self.negative_prompt or self._composer) else 1.0

    def nfe(self, prompt: str | None) -> int:
        return self.steps * self.samples * (2 if self._guidance(prompt) != 1.0 else 1)

    def prompt_for(self, image: np.ndarray, mask: np.ndarray, prompt: str | None) -> str:
        """What the model is told: the prompt, or for a Shapes model the caption of the scene the fill should leave."""
        if self._composer is not None:
            return self._composer.compose(self.task, image, mask, prompt)
        return prompt or ""

    def fill(self, image, mask, prompt, seed, callback=None):
        text = self.prompt_for(image, mask, prompt)
        return self._sample(image, mask, text, self._guidance(prompt), seed, callback)

    def _sample(self, image, mask, text, guidance, seed, callback):
        import torch

        from ..sampling import sample_ddim, timesteps_for

        bb = self.backbone
        h, w = image.shape[:2]
        f = bb.vae_factor
        with torch.no_grad():
            cond = bb.encode_text([text], size=(h, w))
            uncond = None
            if guidance != 1.0:
                uncond = bb.encode_text([self.negative_prompt], size=(h, w)) if self.negative_prompt else bb.unconditional(1, size=(h, w))
            x = torch.from_numpy(np.ascontiguousarray(image)).to(bb.device).permute(2, 0, 1)[None].float() / 127.5 - 1  # (1, 3, H, W)
            m = torch.from_numpy(mask.astype(np.float32))[None, None].to(bb.device)  # (1, 1, H, W)
            masked = bb._encode_pixels(x * (1 - m))  # (1, C, H/f, W/f): masked pixels grey, as SD-inpainting
            # a latent cell is regenerated when any of its pixels is masked (as the Shapes model was trained)
            m_lat = torch.nn.functional.max_pool2d(m, f)  # (1, 1, H/f, W/f)
            concat = torch.cat([m_lat.to(masked), masked], dim=1)  # (1, 1 + C, H/f, W/f)
            g = torch.Generator("cpu").manual_seed(seed)
            k = self.samples
            noise = torch.randn((k, bb.latent_channels, h // f, w // f), generator=g).to(bb.device, bb.dtype)  # (K, C, h, w)
            ts = timesteps_for(self.steps, bb.denoiser.num_train_timesteps)

            def on_step(i, n, _x):
                if callback:
                    callback(i, n)

            if k > 1:  # the K samples run as one batch
                cond, concat = cond.repeat(k), concat.repeat(k, 1, 1, 1)
                uncond = uncond.repeat(k) if uncond is not None else None
            z = sample_ddim(bb.denoiser, noise, ts, cond, guidance=guidance, uncond=uncond, callback=on_step, concat=concat)
            images = bb.decode_latents(z)  # (K, H, W, 3) uint8
        fill = images[0].astype(np.float32) if k == 1 else np.mean(images.astype(np.float32), axis=0)  # (H, W, 3)
        length = min(h, w) / 16 if self.blend is None else self.blend
        if length > 0:
            fill = seam_blend(fill, image, mask, length)
        return np.clip(np.round(fill), 0, 255).astype(np.uint8)


def seam_blend(fill: np.ndarray, image: np.ndarray, mask: np.ndarray, length: float, max_unknowns: int = 65536) -> np.ndarray:
    """``fill`` (H, W, 3) float with its colour matched to ``image`` along the mask's border, fading inwards.

    A latent model's decoded fill is off by a small, smooth colour error (the autoencoder's, and the fill's own
    guess of the surroundings), which shows as a seam where the fill meets the untouched pixels.  The correction
    ``u`` is the input minus the fill on the pixels just outside the mask, continued into the mask by the screened
    Poisson equation  u / length^2 - laplacian(u) = 0  (Pérez et al. 2003, "Poisson image editing", screened as in
    Bhat et al. 2008, "Fourier analysis of the 2D screened Poisson equation for gradient domain problems"):
    harmonic continuation would carry the border's error to the mask's middle, the screening lets it fade over
    about ``length`` pixels.  Measured on the 500-case erase suite of seed 4242 (docs/inpaint.md): +0.35 dB in-mask
    PSNR with 8 px at 128 px, against +0.23 harmonic.
    Masks with more than ``max_unknowns`` pixels are solved on a coarser grid (the correction is smooth).
    """
    import cv2

    r = image.astype(np.float32) - fill  # (H, W, 3): known on every pixel outside the mask
    h, w = mask.shape
    step = max(1, int(np.ceil(np.sqrt(mask.sum() / max_unknowns))))
    if step > 1:  # solve at 1/step of the size: r averaged over the unmasked pixels of each block
        hs, ws = -(-h // step), -(-w // step)
        keep = (~mask).astype(np.float32)
        num = cv2.resize(r * keep[..., None], (ws, hs), interpolation=cv2.INTER_AREA)
        den = cv2.resize(keep, (ws, hs), interpolation=cv2.INTER_AREA)
        small_mask = den < 0.5
        small_r = num / np.maximum(den, 1e-6)[..., None]
        u = _screened_poisson(small_r, small_mask, length / step)
        u = cv2.resize(u, (w, h), interpolation=cv2.INTER_LINEAR)
    else:
        u = _screened_poisson(r, mask, length)
    return np.where(mask[..., None], fill + u, fill)


def _screened_poisson(r: np.ndarray, mask: np.ndarray, length: float) -> np.ndarray:
    """u on ``mask`` solving u / length^2 - laplacian(u) = 0 with u = r on the 4-neighbours outside it; 0 elsewhere."""
    from scipy.sparse import csc_matrix
    from scipy.sparse.linalg import spsolve

    h, w = mask.shape
    ys, xs = np.nonzero(mask)
    n = len(ys)
    out = np.zeros(r.shape, np.float32)
    if n == 0:
        return out
    index = np.full((h, w), -1, np.int64)
    index[ys, xs] = np.arange(n)
    diag = np.full(n, 1.0 / length**2)
    rows, cols = [], []
    b = np.zeros((n, r.shape[2]))
    for dy, dx in ((1, 0), (-1, 0), (0, 1), (0, -1)):
        yy, xx = ys + dy, xs + dx
        inside = (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)  # off the image: no neighbour (a free edge)
        diag += inside
        j = np.flatnonzero(inside)
        masked = mask[yy[j], xx[j]]
        rows.append(j[masked])
        cols.append(index[yy[j[masked]], xx[j[masked]]])
        known = j[~masked]
        np.add.at(b, known, r[yy[known], xx[known]])
    rows_a = np.concatenate([np.arange(n)] + rows)
    cols_a = np.concatenate([np.arange(n)] + cols)
    vals = np.concatenate([diag] + [-np.ones(len(x)) for x in rows])
    a = csc_matrix((vals, (rows_a, cols_a)), shape=(n, n))
    out[ys, xs] = np.asarray(spsolve(a, b)).reshape(n, -1)
    return out


def check_inpaint_folder(model: str | Path) -> Path:
    """``model`` if it is a diffusers inpainting folder, else an error saying why not: its UNet must read the noisy
    latent, the mask and the masked image's latent (2 C + 1 channels, plus a Shapes model's layout map and draft).
    Read from the config files, before any weight loads."""
    import json

    from ..models.backbone import component_folder

    path = Path(model)
    if not path.exists():
        raise FileNotFoundError(f"inpainting model {path} not found")
    if not (path / "model_index.json").is_file():
        raise ValueError(f"{path} is not a diffusers pipeline folder (no model_index.json); give an SD-inpainting folder")
    cfg = path / "unet" / "config.json"
    if not cfg.is_file():
        raise ValueError(f"{path} has no unet/config.json: not an SD-inpainting pipeline folder")
    try:
        channels = int(json.loads(cfg.read_text())["in_channels"])
        vae_cfg = component_folder(path, "vae") / "config.json"
        latent = int(json.loads(vae_cfg.read_text()).get("latent_channels", 4)) if vae_cfg.is_file() else 4
        extra = 0
        if (path / "layout" / "config.json").is_file():
            lay = json.loads((path / "layout" / "config.json").read_text())
            extra = int(lay["channels"]) + int(lay.get("draft_channels", 0))
    except (json.JSONDecodeError, KeyError, UnicodeDecodeError, TypeError, ValueError) as e:
        raise ValueError(f"{cfg} is not a readable UNet config ({e})") from e
    want = 2 * latent + 1 + extra
    if channels != want:
        raise ValueError(
            f"{path}: its UNet reads {channels} input channels; an inpainting UNet reads {want} "
            f"(noisy latent {latent} + mask 1 + masked-image latent {latent}"
            + (f" + layout map and draft {extra}" if extra else "")
            + "): this is not an inpainting model"
        )
    return path


MAX_SAMPLES = 32
MAX_BLEND = 256.0  # pixels
CLASSIC_BACKENDS = ("telea", "ns", "biharmonic")
BACKENDS = CLASSIC_BACKENDS + ("diffusion",)


@dataclass
class BackendSettings:
    backend: str | None = None  # telea | ns | biharmonic | diffusion; default: diffusion with a model, else telea
    model: str | None = None  # a diffusers SD-inpainting folder (the diffusion backend)
    steps: int | None = None  # the diffusion backend's DDIM steps (default: the model's own, 25 for a foreign checkpoint)
    guidance: float | None = None
    samples: int | None = None  # diffusion: fills averaged per crop (default: the folder's retouch_erase_samples for erase, else 1)
    blend: float | None = None  # diffusion: the seam blend's fade length, pixels of the crop (default: its side / 16; 0: off)
    radius: int = 5  # OpenCV's inpaintRadius, pixels
    crop_size: int | None = None  # the working size (default: the model's, or 512 for the classic backends)
    device: str = "cpu"


def make_backend(s: BackendSettings, task: str = "inpaint") -> FillBackend:
    name = s.backend or ("diffusion" if s.model else "telea")
    if name not in BACKENDS:
        raise ValueError(f"unknown fill backend {name!r}; known: {', '.join(BACKENDS)}")
    if s.crop_size is not None and s.crop_size < 8:
        raise ValueError(f"crop_size must be at least 8 pixels, got {s.crop_size}")
    if name == "diffusion":
        if not s.model:
            raise ValueError("the diffusion backend needs a diffusers SD-inpainting folder (--model PATH)")
        return ModelFill(
            s.model,
            task=task,
            steps=s.steps,
            guidance=s.guidance,
            device=s.device,
            working_size=s.crop_size,
            samples=s.samples,
            blend=s.blend,
        )
    if s.samples not in (None, 1):
        raise ValueError(
            f"samples averages diffusion fills; backend {name!r} is deterministic and takes none (use --backend diffusion --model PATH)"
        )
    if s.blend is not None:
        raise ValueError(
            f"blend matches a diffusion fill's colour to its surroundings; backend {name!r} fills from them already and takes none"
        )
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
