"""What every caption-based method shares: the working resolution, masks in latent space, the
source and target captions, the words that differ, and pasting the result back.

The path of an edit: image -> working size (the backbone's resolution, a multiple of its
autoencoder factor) -> ... -> decode -> back to the input's size -> the input's own pixels outside
the edit mask.  So the output always has the input's size and alignment, and with a user mask
every pixel outside it is the input's, bit for bit.
"""

from __future__ import annotations

import difflib
import logging
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageFilter
from torch import Tensor

from . import EditRequest

logger = logging.getLogger(__name__)


def working_size(h: int, w: int, side: int, factor: int) -> tuple[int, int]:
    """(H, W) with the longer side ``side`` and both sides multiples of ``factor``, keeping the aspect ratio."""
    scale = side / max(h, w)
    return max(factor, round(h * scale / factor) * factor), max(factor, round(w * scale / factor) * factor)


def size_multiple(backbone) -> int:
    """Pixels the working size must be a multiple of: the autoencoder's factor times the UNet's downsampling,
    so every attention level sees whole latent pixels."""
    levels = len(getattr(backbone.denoiser, "unet", None).config.block_out_channels) if hasattr(backbone.denoiser, "unet") else 1
    return backbone.vae_factor * 2 ** (levels - 1)


def to_working(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    if image.shape[:2] == size:
        return image
    return np.asarray(Image.fromarray(image).resize((size[1], size[0]), Image.BICUBIC))


def from_working(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    return to_working(image, size)


def blur_mask(mask: np.ndarray, radius: float) -> np.ndarray:
    """A boolean HxW mask Gaussian-blurred to float [0, 1] (TurboEdit sec. 3.5: blur, then resize)."""
    m = Image.fromarray(mask.astype(np.uint8) * 255)
    if radius > 0:
        m = m.filter(ImageFilter.GaussianBlur(radius))
    return np.asarray(m, dtype=np.float32) / 255.0


def mask_to_latent(mask: np.ndarray, latent_hw: tuple[int, int], radius: float, device: torch.device | str = "cpu") -> Tensor:
    """A boolean HxW mask -> (1, 1, h, w) float in [0, 1] at latent resolution (area-averaged, then blurred)."""
    m = torch.from_numpy(mask.astype(np.float32))[None, None]  # (1, 1, H, W)
    m = F.interpolate(m, size=latent_hw, mode="area")  # (1, 1, h, w)
    if radius > 0:
        m = torch.from_numpy(blur_mask(m[0, 0].numpy() > 0, radius))[None, None].clamp(min=m)
    return m.to(device)


def to_working_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    if mask.shape == size:
        return mask
    return np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).resize((size[1], size[0]), Image.BILINEAR)) > 127


def upsample_mask(m: torch.Tensor, hw: tuple[int, int]) -> np.ndarray:
    """A (1, 1, h, w) latent mask -> HxW float weights at pixel resolution (bilinear)."""
    up = torch.nn.functional.interpolate(m.float().cpu(), size=hw, mode="bilinear", align_corners=False)
    return up[0, 0].clamp(0, 1).numpy()


def paste(source: np.ndarray, edited: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """``weight`` * edited + (1 - weight) * source per pixel; exactly ``source`` where weight is 0."""
    w = weight[..., None].astype(np.float32)
    out = np.where(w > 0, np.round(w * edited.astype(np.float32) + (1 - w) * source.astype(np.float32)), source)
    return out.clip(0, 255).astype(np.uint8)


@dataclass
class Captions:
    source: str
    target: str


def make_captioner(name: str | None):
    """The captioner a method names: ``"scene-reader"`` (the Shapes world's), or None (captions come with requests)."""
    if name is None:
        return None
    if name == "scene-reader":
        from ..caption import SceneReaderCaptioner

        return SceneReaderCaptioner()
    raise ValueError(f"unknown captioner {name!r}; known: 'scene-reader', or None with captions in the request")


def resolve_captions(request: EditRequest, captioner, rewriter) -> Captions:
    """The source caption (the request's, or the captioner's) and the target caption (the request's,
    or the rewriter's answer to the instruction).  Errors name what is missing."""
    source = request.source_prompt
    if not source:
        if captioner is None:
            raise ValueError("this backbone has no captioner: give the source caption (source_prompt / --source-prompt)")
        source = captioner.caption(request.image)
    target = request.target_prompt
    if not target:
        instruction = request.instruction
        if instruction is None or not instruction.strip():
            raise ValueError("nothing to do: the instruction is empty and no target caption was given")
        target = rewriter.rewrite(source, instruction)
    if target.strip() == source.strip():
        raise ValueError(f"the target caption is the source caption ({source[:60]!r}...): the edit would change nothing")
    return Captions(source, target)


def changed_tokens(tokenizer, source: str, target: str) -> tuple[list[int], list[int]]:
    """Token positions (as the text encoder sees them, special tokens included) that exist only in
    the source and only in the target caption: the words an attention mask is built from."""
    a = tokenizer(source)["input_ids"]
    b = tokenizer(target)["input_ids"]
    only_a, only_b = [], []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes():
        if op in ("replace", "delete"):
            only_a += list(range(i1, i2))
        if op in ("replace", "insert"):
            only_b += list(range(j1, j2))
    return only_a, only_b


def attention_mask(maps_src: Tensor | None, idx_src: list[int], maps_tgt: Tensor | None, idx_tgt: list[int], threshold: float) -> Tensor:
    """TurboEdit sec. 3.5 (after prompt-to-prompt's local blend): the cross-attention maps of the words
    that exist in only one of the captions, summed, divided by their maximum, thresholded.

    maps_*: (B, L, h, w) -> mask (B, 1, h, w) in {0, 1}.
    """
    acc = None
    for maps, idx in ((maps_src, idx_src), (maps_tgt, idx_tgt)):
        if maps is None or not idx:
            continue
        idx = [i for i in idx if i < maps.shape[1]]
        if not idx:
            continue
        m = maps[:, idx].sum(1, keepdim=True)  # (B, 1, h, w)
        m = m / m.amax(dim=(2, 3), keepdim=True).clamp(min=1e-8)
        acc = m if acc is None else torch.maximum(acc, m)
    if acc is None:
        raise ValueError(
            "the captions differ in no token the text encoder reads (identical, or the change lies past its token limit): "
            "no attention mask can be built; give a mask or a shorter caption"
        )
    return (acc >= threshold).float()


def difference_mask(edit: Tensor, recon: Tensor, threshold: float) -> Tensor:
    """Where the edit's estimate has left the inversion trajectory (after DiffEdit, Couairon et al. 2023,
    sec. 3.1, which contrasts the predictions under two captions): the channel-mean absolute difference
    (B, C, h, w) -> (B, 1, h, w), divided by its maximum, thresholded."""
    d = (edit.float() - recon.float()).abs().mean(1, keepdim=True)  # (B, 1, h, w)
    d = d / d.amax(dim=(2, 3), keepdim=True).clamp(min=1e-8)
    return (d >= threshold).float()
