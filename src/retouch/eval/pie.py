"""PIE-Bench background preservation and MagicBrush ground-truth distances.

PIE-Bench (Ju et al., "Direct Inversion: Boosting Diffusion-based Editing with 3 Lines
of Code", ICLR 2024) measures how well an edit leaves the unedited part alone. Its
reference evaluation (``evaluation/evaluate.py`` + ``matrics_calculator.py`` in the
DirectInversion / PnPInversion repository) does, per case:

* scale both images to float in [0, 1];
* multiply both by ``1 - mask`` (mask = 1 on the edit region, broadcast over the three
  channels), so the edit region becomes black in *both* images;
* compute torchmetrics ``PeakSignalNoiseRatio(data_range=1.0)``, ``MeanSquaredError`` and
  ``StructuralSimilarityIndexMeasure(data_range=1.0)`` on the *whole* masked tensors.

So the zeroed edit region is still counted in the MSE denominator (and in SSIM's mean);
these numbers are only comparable with published PIE-Bench tables because they follow
that convention exactly. The same computation with ``mask`` instead of ``1 - mask`` gives
the "edit part" variants (``in_*`` here). When the region to measure is empty (mask all 1
for ``bg_*``, all 0 for ``in_*``) the reference reports ``"nan"``; we return ``float("nan")``.
(The reference's ``mask_decode`` also sets the one-pixel image border to 1 "to avoid
annotation errors"; that belongs to decoding PIE-Bench's RLE masks, so callers that decode
them should do the same before calling in here.)

PSNR cap: torchmetrics ``PeakSignalNoiseRatio`` returns ``+inf`` when the inputs are
identical (MSE = 0). A single ``inf`` makes any mean over cases ``inf`` and useless, so
every per-case PSNR returned here is ``min(psnr, PSNR_CAP)`` with ``PSNR_CAP = 100.0`` dB
(an MSE of 1e-10 on [0, 1] images; 8-bit images that differ by one level in one pixel
already give far less). Report the cap alongside means when comparing to other tables.

MagicBrush (Zhang et al., NeurIPS 2023 Datasets & Benchmarks) compares the edited image
with the ground-truth target: ``L1`` is ``torch.nn.L1Loss`` and ``L2`` is
``torch.nn.MSELoss`` on ``ToTensor()`` images in [0, 1], i.e. MagicBrush's "L2" is the
*mean squared* difference, not a Euclidean norm. See :func:`gt_distance`.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np
import torch
from PIL import Image
from torchmetrics.image import PeakSignalNoiseRatio, StructuralSimilarityIndexMeasure
from torchmetrics.regression import MeanSquaredError

logger = logging.getLogger(__name__)

PSNR_CAP = 100.0
"""Upper bound (dB) applied to every per-case PSNR; identical inputs give +inf otherwise."""

ImageLike = np.ndarray | Image.Image


def _describe(img: Any) -> str:
    if isinstance(img, Image.Image):
        return f"PIL image mode={img.mode!r} size={img.size}"
    if isinstance(img, np.ndarray):
        return f"array shape={img.shape} dtype={img.dtype}"
    return f"object of type {type(img).__name__}"


def to_unit(img: ImageLike) -> torch.Tensor:
    """Convert an RGB image to a float32 tensor of shape (1, 3, H, W) in [0, 1].

    Accepts an ``HxWx3`` ``uint8`` numpy array or a PIL image in mode ``"RGB"``; anything
    else (grey, RGBA, float arrays whose range is ambiguous, CHW layout) raises
    ``ValueError`` naming the offending shape / mode. Scaling is ``x / 255`` as in
    torchvision's ``ToTensor`` used by both reference evaluations.
    """
    if isinstance(img, Image.Image):
        if img.mode != "RGB":
            raise ValueError(f"expected an RGB image, got {_describe(img)}; convert it with .convert('RGB') first")
        arr = np.asarray(img)
    elif isinstance(img, np.ndarray):
        arr = img
    else:
        raise ValueError(f"expected an HxWx3 uint8 numpy array or an RGB PIL image, got {_describe(img)}")
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"expected an RGB image of shape HxWx3, got {_describe(arr)}")
    if arr.dtype != np.uint8:
        raise ValueError(f"expected dtype uint8 (values 0..255), got {_describe(arr)}")
    t = torch.from_numpy(np.array(arr, copy=True)).to(torch.float32).div_(255.0)  # copy: PIL arrays are read-only
    return t.permute(2, 0, 1).unsqueeze(0).contiguous()


def _mask_tensor(mask: np.ndarray | torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    """Validate an HxW mask (1 = edit region) and return it as float32 (1, 1, H, W)."""
    m = mask.detach().cpu().numpy() if isinstance(mask, torch.Tensor) else np.asarray(mask)
    if m.ndim != 2 or tuple(m.shape) != tuple(hw):
        raise ValueError(f"mask must have shape (H, W) = {tuple(hw)} matching the images, got mask shape {tuple(m.shape)}")
    m = m.astype(np.float32)
    if m.size and (float(m.min()) < 0.0 or float(m.max()) > 1.0):
        raise ValueError(
            f"mask values must lie in [0, 1] (1 = edit region), got range [{float(m.min())}, {float(m.max())}]; "
            "for a 0/255 mask pass `mask > 127`"
        )
    return torch.from_numpy(m)[None, None]


class PieMetrics:
    """PIE-Bench PSNR / MSE / SSIM on masked images, holding its torchmetrics objects.

    Build one per evaluation run and call it per case; the metric objects are reset on
    every call, so each call returns that case's values only (as the reference does by
    calling the metric module once per image).
    """

    def __init__(self, device: str | torch.device = "cpu") -> None:
        self.device = torch.device(device)
        # Same constructors as DirectInversion's MetricsCalculator.
        self.psnr = PeakSignalNoiseRatio(data_range=1.0).to(self.device)
        self.mse = MeanSquaredError().to(self.device)
        self.ssim = StructuralSimilarityIndexMeasure(data_range=1.0).to(self.device)

    def _one(self, metric: Any, a: torch.Tensor, b: torch.Tensor) -> float:
        metric.reset()
        metric.update(a, b)
        value = float(metric.compute().item())
        metric.reset()
        return value

    def region(self, src: torch.Tensor, out: torch.Tensor, weight: torch.Tensor) -> dict[str, float]:
        """PSNR / MSE / SSIM of ``src * weight`` vs ``out * weight`` over the whole tensors.

        ``src``/``out`` are (1, 3, H, W) in [0, 1]; ``weight`` is (1, 1, H, W) and is
        broadcast over channels. Returns NaNs when ``weight`` is all zero (empty region),
        mirroring the reference's ``"nan"``.
        """
        if float(weight.sum()) == 0.0:
            return {"psnr": math.nan, "mse": math.nan, "ssim": math.nan}
        # PSNR and MSE in float64 (cheap); SSIM in float32, since float64 convolutions are ~20x
        # slower on the CPU.  float32 SSIM of two identical images comes out near 0.9997
        # (cancellation in its variance terms), so identical inputs get their exact value, 1.
        a = (src.double() * weight.double()).to(self.device)
        b = (out.double() * weight.double()).to(self.device)
        # Argument order as in the reference (preds = source, target = edited); all three are symmetric.
        psnr = self._one(self.psnr, a, b)
        # MSE in the reference is computed on (3, H, W) tensors: a plain mean over every element.
        mse = self._one(self.mse, a.reshape(-1), b.reshape(-1))
        ssim = 1.0 if torch.equal(a, b) else self._one(self.ssim, a.float(), b.float())
        return {"psnr": min(psnr, PSNR_CAP), "mse": mse, "ssim": ssim}

    def __call__(self, src: ImageLike, out: ImageLike, mask: np.ndarray | torch.Tensor) -> dict[str, float]:
        s, o = to_unit(src), to_unit(out)
        if s.shape != o.shape:
            raise ValueError(f"source and output images differ in size: {tuple(s.shape[2:])} vs {tuple(o.shape[2:])} (H, W)")
        m = _mask_tensor(mask, (s.shape[2], s.shape[3]))
        bg = self.region(s, o, 1.0 - m)  # PIE-Bench "*_unedit_part": images * (1 - mask)
        inside = self.region(s, o, m)  # PIE-Bench "*_edit_part": images * mask
        return {
            "bg_psnr": bg["psnr"],
            "bg_mse": bg["mse"],
            "bg_ssim": bg["ssim"],
            "in_psnr": inside["psnr"],
            "in_mse": inside["mse"],
            "in_ssim": inside["ssim"],
        }


def background_preservation(
    src: ImageLike,
    out: ImageLike,
    mask: np.ndarray | torch.Tensor,
    metrics: PieMetrics | None = None,
) -> dict[str, float]:
    """PIE-Bench background-preservation metrics for one (source, output, mask) case.

    ``mask`` is HxW (bool, uint8 0/1 or float in [0, 1]) with 1 on the edit region.
    Returns ``bg_psnr`` (dB, capped at :data:`PSNR_CAP`), ``bg_mse``, ``bg_ssim`` computed on
    images multiplied by ``1 - mask``, and ``in_psnr``, ``in_mse``, ``in_ssim`` on images
    multiplied by ``mask``; see the module docstring for the exact convention. Pass a
    :class:`PieMetrics` to reuse its metric objects across many cases (e.g. on a GPU);
    otherwise a fresh CPU one is built (cheap: the metrics hold no weights).

    Raises ``ValueError`` when the images differ in size or the mask shape is not the
    images' (H, W).
    """
    return (metrics if metrics is not None else PieMetrics())(src, out, mask)


def gt_distance(out: ImageLike, target: ImageLike, resize_to_target: bool = False) -> dict[str, float]:
    """MagicBrush L1 / L2 distance between an edited image and its ground-truth target.

    Both images are scaled to [0, 1] (``ToTensor``). ``gt_l1`` is the mean absolute
    difference (``nn.L1Loss``) and ``gt_l2`` the *mean squared* difference
    (``nn.MSELoss``), averaged over every pixel and channel -- MagicBrush's "L2" is an MSE,
    not a root or a sum. MagicBrush resizes the output to the target's size with PIL's
    default filter before comparing; pass ``resize_to_target=True`` to do the same,
    otherwise differing sizes raise ``ValueError``.
    """
    if resize_to_target:
        t_img = target if isinstance(target, Image.Image) else Image.fromarray(np.asarray(target))
        o_img = out if isinstance(out, Image.Image) else Image.fromarray(np.asarray(out))
        if o_img.size != t_img.size:
            out = o_img.resize(t_img.size)
    o, t = to_unit(out), to_unit(target)
    if o.shape != t.shape:
        raise ValueError(f"output and target images differ in size: {tuple(o.shape[2:])} vs {tuple(t.shape[2:])} (H, W)")
    diff = o.double() - t.double()
    return {"gt_l1": float(diff.abs().mean()), "gt_l2": float(diff.pow(2).mean())}
