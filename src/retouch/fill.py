"""The Python API of the fill tasks: inpaint, erase, outpaint.

    from retouch import erase, inpaint, outpaint
    erase("photo.jpg", "mask.png").image                          # the classic fill (OpenCV Telea) by default
    inpaint("photo.jpg", "mask.png", "a red kite", model="path/to/sd-inpainting").image
    outpaint("photo.jpg", left=128, right=128).image               # classic fallback; a model + prompt to draw

Each returns the method's ``EditResult`` (``.image``: HxWx3 uint8; ``.info``: backend, crops, seconds).
Images are paths, bytes or HxWx3 uint8 arrays; masks are paths, bytes or HxW arrays (boolean, or uint8 with
> 127 = edit) of the image's size.  A mask file may have any mode (``load_fill_mask``).  Everything is
checked before a model loads, and every pixel outside the mask is the input's, bit for bit.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .images import DECODE_ERRORS, to_rgb8, upright
from .methods import EditRequest, EditResult, Progress, get_method

logger = logging.getLogger(__name__)

ImageLike = np.ndarray | str | Path | bytes
ALPHA_BANDS = ("A", "a")


def load_fill_mask(
    source: str | Path | bytes, size: tuple[int, int], *, name: str | None = None, image_name: str = "the image"
) -> np.ndarray:
    """A mask file of any mode as a boolean (H, W) array, True = edit.

    Where the file has transparent pixels (an alpha channel, or a palette with transparency) the edit region
    is every pixel whose alpha is not zero: a brush stroke on a transparent layer.  Otherwise it is every
    pixel whose grey level is above 127: white on black.  EXIF orientation is applied first, as to the image.
    The error names the file and both sizes when the mask's size differs from the image's (H, W) ``size``,
    and says so when the mask selects no pixel.
    """
    from .edit import _open

    img, name = _open(source, "mask", name=name)
    img = upright(img, name)
    try:
        arr = _mask_array(img, name)
    except ValueError as e:
        raise ValueError(str(e) if str(e).startswith(name) else f"{name}: {e}") from e
    except DECODE_ERRORS as e:
        raise ValueError(f"{name} cannot be decoded as a mask ({type(e).__name__}: {e})") from e
    return check_fill_mask(arr, size, name=name, image_name=image_name)


def _mask_array(img: Image.Image, name: str) -> np.ndarray:
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if any(b in ALPHA_BANDS for b in img.getbands()):
        alpha = np.asarray(img.getchannel(len(img.getbands()) - 1))
        if (alpha < 255).any():
            return alpha > 0
        img = img.convert("RGB") if img.mode != "La" else img.getchannel(0)
    if img.mode == "1":
        return np.asarray(img)
    if img.mode == "L":
        return np.asarray(img) > 127
    rgb = to_rgb8(img, name)  # 16-bit, float, CMYK, palette: retouch.images' policy
    return np.asarray(Image.fromarray(rgb).convert("L")) > 127


def check_fill_mask(mask: np.ndarray, size: tuple[int, int], *, name: str = "the mask", image_name: str = "the image") -> np.ndarray:
    m = np.asarray(mask)
    if m.ndim != 2:
        raise ValueError(f"{name} must be a 2-D HxW mask, got shape {m.shape}")
    if m.shape != tuple(size):
        mh, mw = m.shape
        raise ValueError(f"{name} is {mw}x{mh} but {image_name} is {size[1]}x{size[0]}: the mask must have the image's size")
    if m.dtype != bool:
        if m.dtype != np.uint8:
            raise ValueError(f"{name} must be a boolean or uint8 array, got {m.dtype}")
        m = m > 127
    if not m.any():
        raise ValueError(f"{name} selects no pixel (white, or non-zero alpha, marks the region to fill): nothing would change")
    return m


def _image(image: ImageLike) -> tuple[np.ndarray, str]:
    from .edit import check_image, load_image

    if isinstance(image, np.ndarray):
        check_image(image)
        return image, "the image"
    name = str(image) if isinstance(image, str | Path) else "the image"
    return load_image(image), name


def _mask(mask: ImageLike, size: tuple[int, int], image_name: str) -> np.ndarray:
    if isinstance(mask, np.ndarray):
        return check_fill_mask(mask, size, image_name=image_name)
    return load_fill_mask(mask, size, image_name=image_name)


def _method(task: str, backend: str | None, model: str | Path | None, options: dict[str, Any]):
    if backend is not None:
        options["backend"] = backend
    if model is not None:
        options["model"] = str(model)
    return get_method(task, **options)


def inpaint(
    image: ImageLike,
    mask: ImageLike,
    prompt: str,
    *,
    backend: str | None = None,
    model: str | Path | None = None,
    callback: Progress | None = None,
    **options: Any,
) -> EditResult:
    """Draw what ``prompt`` describes inside ``mask``; needs a diffusion inpainting model (``model``)."""
    img, name = _image(image)
    m = _mask(mask, img.shape[:2], name)
    if not isinstance(prompt, str) or not prompt.strip():
        raise ValueError("inpaint needs a prompt: what to draw in the mask (use erase to fill without one)")
    method = _method("inpaint", backend, model, options)
    return method.edit(EditRequest(image=img, target_prompt=prompt, mask=m), callback=callback)


def erase(
    image: ImageLike,
    mask: ImageLike,
    *,
    backend: str | None = None,
    model: str | Path | None = None,
    callback: Progress | None = None,
    **options: Any,
) -> EditResult:
    """Fill ``mask`` with what its surroundings imply (OpenCV Telea unless ``backend`` / ``model`` say otherwise)."""
    img, name = _image(image)
    m = _mask(mask, img.shape[:2], name)
    method = _method("erase", backend, model, options)
    return method.edit(EditRequest(image=img, mask=m), callback=callback)


def outpaint(
    image: ImageLike,
    *,
    left: int = 0,
    right: int = 0,
    top: int = 0,
    bottom: int = 0,
    prompt: str | None = None,
    backend: str | None = None,
    model: str | Path | None = None,
    callback: Progress | None = None,
    **options: Any,
) -> EditResult:
    """Extend the canvas by ``left`` / ``right`` / ``top`` / ``bottom`` pixels and fill the new pixels; the input's
    pixels keep their values at their new place.  A classic backend propagates the edges (a fallback)."""
    from .methods.inpaint import check_extents

    img, _ = _image(image)
    check_extents(img.shape, left=left, right=right, top=top, bottom=bottom)  # before a model loads
    if prompt is not None and not prompt.strip():
        prompt = None
    method = _method("outpaint", backend, model, options)
    return method.outpaint(img, left=left, right=right, top=top, bottom=bottom, prompt=prompt, callback=callback)
