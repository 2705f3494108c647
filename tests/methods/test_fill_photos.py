"""Erase on real photos (scikit-image's and scikit-learn's sample images) with masks drawn here: the classic
default works out of the box, keeps every unmasked pixel and fills closer to the hidden truth than a flat fill."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from retouch.cli import main
from retouch.eval.fill_bench import in_mask_metrics


def _photos() -> dict[str, np.ndarray]:
    import skimage.data
    from sklearn.datasets import load_sample_image

    return {"astronaut": skimage.data.astronaut(), "coffee": skimage.data.coffee(), "china": load_sample_image("china.jpg")}


def _stroke_mask(shape: tuple[int, int]) -> np.ndarray:
    """A thick diagonal brush stroke and a disc, as a user might paint over a wire and a spot."""
    from PIL import ImageDraw

    h, w = shape
    im = Image.new("L", (w, h), 0)
    d = ImageDraw.Draw(im)
    d.line([(w * 0.2, h * 0.3), (w * 0.6, h * 0.45)], fill=255, width=max(6, h // 40))
    d.ellipse([w * 0.65, h * 0.6, w * 0.65 + h // 10, h * 0.6 + h // 10], fill=255)
    return np.asarray(im) > 0


@pytest.mark.parametrize("name", ["astronaut", "coffee", "china"])
def test_erase_on_a_real_photo(name, tmp_path, capsys):
    photo = _photos()[name]
    m = _stroke_mask(photo.shape[:2])
    src, mask, out = tmp_path / f"{name}.jpg", tmp_path / "mask.png", tmp_path / "out.png"
    Image.fromarray(photo).save(src, quality=95)
    Image.fromarray(m.astype(np.uint8) * 255).save(mask)
    assert main(["erase", str(src), "--mask", str(mask), "-o", str(out)]) == 0  # no model anywhere: the classic default
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["backend"] == "telea"
    inp = np.asarray(Image.open(src).convert("RGB"))  # the decoded JPEG is the input
    got = np.asarray(Image.open(out))
    assert got.shape == inp.shape and np.array_equal(got[~m], inp[~m])
    flat = inp.copy()
    flat[m] = inp[~m].mean(0).round().astype(np.uint8)  # the photo's mean colour in the mask
    fill_psnr, flat_psnr = in_mask_metrics(got, inp, m)["in_psnr"], in_mask_metrics(flat, inp, m)["in_psnr"]
    assert fill_psnr > flat_psnr + 3, (name, fill_psnr, flat_psnr)
