"""Decoded image files -> what retouch edits: upright, 8-bit RGB (or a boolean mask), or a clear refusal.

The policy, one mode at a time (docs/reliability.md lists every case the catalogue test checks):

- **EXIF orientation** is applied first, to images and to masks alike (``ImageOps.exif_transpose``), so
  the output is upright and a mask is read in the orientation the image is shown in.  A broken EXIF
  block is ignored (the pixels are kept as stored) rather than refused.
- **RGB** as it is; **grey** (``L``, ``1``), **palette** (``P``), **YCbCr**, **LAB** and **HSV** converted to RGB.
- **CMYK** (print JPEGs and TIFFs) converted to sRGB through its embedded ICC profile when it has one,
  else with Pillow's plain formula.
- **16-bit grey** (``I;16*``) scaled to 8 bits (value / 257, rounded: the top 8 bits); **32-bit integer**
  (``I``) the same when every value lies in 0..65535, else refused; 16-bit RGB files Pillow already
  decodes to 8 bits per channel.
- **float** (``F``) scaled by 255 when every value is finite and lies in [0, 1], else refused (the range
  of other floats is a guess).
- **alpha** (``RGBA``, ``LA``, ``PA``, ``P`` with transparency, premultiplied ``RGBa``/``La``): an image
  whose every pixel is opaque loses its alpha channel; one with transparent pixels is refused, because
  what lies behind them is the edit's business, not a guess of retouch's (flatten it first).
- Animated and multi-page files: the first frame.
"""

from __future__ import annotations

import io
import logging
import struct
from pathlib import Path

import numpy as np
from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError

logger = logging.getLogger(__name__)

MAX_SIDE = 4096  # the longest side retouch decodes (checked from the header, before decoding)
# what Pillow's decoders raise on a damaged or hostile file: besides OSError and its kin, a damaged header
# can surface as almost any built-in error from a plugin's parsing (fuzz/ found a TIFF whose strip offset is a
# rational number: TypeError in ImageFile.load; fuzz/corpus/image/crash-tiff-rational-offset reproduces it)
DECODE_ERRORS = (
    UnidentifiedImageError,
    OSError,
    Image.DecompressionBombError,
    SyntaxError,
    EOFError,
    ValueError,
    TypeError,
    IndexError,
    KeyError,
    struct.error,
    ZeroDivisionError,
    OverflowError,
)
ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
PLAIN_MODES = ("RGB", "L", "1", "P", "YCbCr", "LAB", "HSV")
MASK_MODES = ("1", "L")


def upright(img: Image.Image, name: str) -> Image.Image:
    """``img`` turned as its EXIF orientation tag says (a copy without the tag), or as it is."""
    try:
        out = ImageOps.exif_transpose(img)
    except Exception as e:  # a malformed EXIF block must not stop an edit: keep the stored orientation
        logger.warning("%s: EXIF orientation unreadable (%s: %s); using the stored orientation", name, type(e).__name__, e)
        return img
    return img if out is None else out


def _alpha_policy(img: Image.Image, name: str) -> Image.Image:
    a = np.asarray(img.getchannel(len(img.getbands()) - 1))  # the alpha band is the last ("A", or "a" premultiplied)
    clear = int((a < 255).sum())
    if clear:
        raise ValueError(
            f"{name} has transparent pixels ({clear} of {a.size}, mode {img.mode}); "
            "retouch does not guess what lies behind them: flatten it onto a background first"
        )
    if img.mode == "La":  # premultiplied grey, opaque: the grey channel is the image (Pillow cannot convert La)
        return img.getchannel(0).convert("RGB")
    return img.convert("RGB")


def _cmyk_to_rgb(img: Image.Image, name: str) -> Image.Image:
    icc = img.info.get("icc_profile")
    if icc:
        try:
            src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            return ImageCms.profileToProfile(img, src, ImageCms.createProfile("sRGB"), outputMode="RGB")
        except Exception as e:  # a broken or unsupported profile: the plain formula below
            logger.warning("%s: its CMYK ICC profile could not be applied (%s); converting without it", name, e)
    return img.convert("RGB")


def _grey_to_rgb(grey: np.ndarray) -> np.ndarray:
    return np.repeat(grey[..., None], 3, axis=2)


def to_rgb8(img: Image.Image, name: str) -> np.ndarray:
    """An opened, loaded image as an HxWx3 uint8 array by the module's policy, or ``ValueError`` saying why not."""
    try:
        return _to_rgb8(img, name)
    except ValueError as e:
        if str(e).startswith(name):
            raise
        raise ValueError(f"{name} cannot be converted to RGB ({e})") from e  # one of Pillow's own
    except DECODE_ERRORS as e:
        raise ValueError(f"{name} cannot be decoded ({type(e).__name__}: {e})") from e


def _to_rgb8(img: Image.Image, name: str) -> np.ndarray:
    mode = img.mode
    if mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
        mode = "RGBA"
    if mode in ALPHA_MODES:
        return np.asarray(_alpha_policy(img, name))
    if mode == "CMYK":
        return np.asarray(_cmyk_to_rgb(img, name))
    if mode in PLAIN_MODES:
        return np.asarray(img.convert("RGB"))
    if mode.startswith("I;16"):
        a = np.asarray(img).astype(np.float64)
        return _grey_to_rgb(np.round(a / 257.0).astype(np.uint8))
    if mode == "I":
        a = np.asarray(img)
        lo, hi = int(a.min()), int(a.max())
        if lo < 0 or hi > 65535:
            raise ValueError(
                f"{name} is a 32-bit integer image with values in [{lo}, {hi}]; retouch reads 8- and 16-bit images: convert it"
            )
        return _grey_to_rgb(np.round(a.astype(np.float64) / 257.0).astype(np.uint8))
    if mode == "F":
        a = np.asarray(img, dtype=np.float64)
        if not np.isfinite(a).all():
            raise ValueError(f"{name} is a float image with NaN or infinite values: convert it to 8-bit RGB first")
        lo, hi = float(a.min()), float(a.max())
        if lo < 0.0 or hi > 1.0:
            raise ValueError(
                f"{name} is a float image with values in [{lo:g}, {hi:g}]; retouch reads floats in [0, 1] only "
                "(other ranges are a guess): convert it to 8-bit RGB first"
            )
        return _grey_to_rgb(np.round(a * 255.0).astype(np.uint8))
    raise ValueError(f"{name}: unsupported image mode {mode!r}: convert it to 8-bit RGB first")


def to_mask(img: Image.Image, name: str) -> np.ndarray:
    """A single-channel mask image (mode ``1`` or ``L``; white = edit) as a boolean HxW array."""
    if img.mode not in MASK_MODES:
        raise ValueError(f"{name} has mode {img.mode!r}; it must be single-channel (mode 'L' or '1', white = edit): convert it first")
    return np.asarray(img) > (0 if img.mode == "1" else 127)


def open_image(path: str | Path, what: str = "image") -> Image.Image:
    """A decoded image file, or ``FileNotFoundError`` / ``ValueError`` naming the file and the problem."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{what} {p} not found")
    try:
        im = Image.open(p)
    except DECODE_ERRORS as e:
        raise ValueError(f"{p} is not a readable image ({type(e).__name__}: {e})") from e
    with im:
        if max(im.size) > MAX_SIDE or min(im.size) < 1:
            raise ValueError(f"{p} is {im.width}x{im.height}; sides must lie in [1, {MAX_SIDE}] pixels")
        try:
            im.load()
        except DECODE_ERRORS as e:
            raise ValueError(f"{p} is not a readable image ({type(e).__name__}: {e})") from e
        return im


def read_rgb(path: str | Path, what: str = "image") -> np.ndarray:
    """An image file as HxWx3 uint8 by the module's policy, in its stored orientation (suite images, whose
    masks are run-length encoded over the stored pixels)."""
    return to_rgb8(open_image(path, what), str(path))
