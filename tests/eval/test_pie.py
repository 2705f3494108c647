"""Tests for retouch.eval.pie (PIE-Bench background preservation, MagicBrush L1/L2)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from retouch.eval.pie import PSNR_CAP, PieMetrics, background_preservation, gt_distance, to_unit

H, W = 32, 40


@pytest.fixture
def src() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(H, W, 3), dtype=np.uint8)


@pytest.fixture
def mask() -> np.ndarray:
    m = np.zeros((H, W), dtype=np.uint8)
    m[8:20, 10:30] = 1
    return m


def test_to_unit_shapes_and_errors(src: np.ndarray) -> None:
    t = to_unit(src)
    assert t.shape == (1, 3, H, W) and t.dtype == torch.float32
    assert torch.allclose(t[0, :, 3, 5], torch.tensor(src[3, 5], dtype=torch.float32) / 255)
    assert torch.equal(to_unit(Image.fromarray(src)), t)
    with pytest.raises(ValueError, match="RGBA"):
        to_unit(Image.fromarray(src).convert("RGBA"))
    with pytest.raises(ValueError, match=r"\(32, 40\)"):
        to_unit(src[:, :, 0])
    with pytest.raises(ValueError, match="uint8"):
        to_unit(src.astype(np.float32))


def test_identical_images_are_perfect(src: np.ndarray, mask: np.ndarray) -> None:
    r = background_preservation(src, src.copy(), mask)
    assert set(r) == {"bg_psnr", "bg_mse", "bg_ssim", "in_psnr", "in_mse", "in_ssim"}
    assert r["bg_psnr"] == PSNR_CAP
    assert r["bg_mse"] == 0.0
    assert r["bg_ssim"] == pytest.approx(1.0, abs=1e-6)
    assert r["in_psnr"] == PSNR_CAP and r["in_mse"] == 0.0


def test_change_inside_mask_only_touches_in_metrics(src: np.ndarray, mask: np.ndarray) -> None:
    out = src.copy()
    out[mask.astype(bool)] = 255 - out[mask.astype(bool)]
    r = background_preservation(src, out, mask)
    assert r["bg_psnr"] == PSNR_CAP
    assert r["bg_mse"] == 0.0
    assert r["bg_ssim"] == pytest.approx(1.0, abs=1e-6)
    assert r["in_psnr"] < 30.0
    assert r["in_mse"] > 0.0
    assert r["in_ssim"] < 0.99


def test_change_outside_matches_hand_computation(src: np.ndarray, mask: np.ndarray) -> None:
    out = src.copy()
    out[0:6, 0:8, :] = 0  # outside the mask (rows 8:20, cols 10:30)
    out[25:30, 35:40, 1] = 255
    r = background_preservation(src, out, mask.astype(bool))

    keep = (1.0 - mask.astype(np.float64))[:, :, None]
    a = src.astype(np.float64) / 255 * keep
    b = out.astype(np.float64) / 255 * keep
    mse = float(np.mean((a - b) ** 2))  # over the whole masked tensor, all 3 channels
    assert r["bg_mse"] == pytest.approx(mse, rel=1e-5)
    assert r["bg_psnr"] == pytest.approx(10 * math.log10(1.0 / mse), rel=1e-5)
    assert r["bg_psnr"] < PSNR_CAP
    assert r["bg_ssim"] < 1.0
    # Nothing changed inside the edit region.
    assert r["in_mse"] == 0.0 and r["in_psnr"] == PSNR_CAP


def test_float_and_bool_masks_agree(src: np.ndarray, mask: np.ndarray) -> None:
    out = src.copy()
    out[::3, ::5] //= 2
    pm = PieMetrics()
    a = background_preservation(src, out, mask, metrics=pm)
    b = background_preservation(src, out, mask.astype(bool), metrics=pm)
    c = background_preservation(src, out, mask.astype(np.float32))
    for k in a:
        assert a[k] == pytest.approx(b[k]) and a[k] == pytest.approx(c[k])


def test_empty_regions_give_nan(src: np.ndarray) -> None:
    r = background_preservation(src, src, np.ones((H, W)))
    assert math.isnan(r["bg_psnr"]) and math.isnan(r["bg_mse"]) and math.isnan(r["bg_ssim"])
    r = background_preservation(src, src, np.zeros((H, W)))
    assert math.isnan(r["in_psnr"]) and r["bg_psnr"] == PSNR_CAP


def test_shape_errors(src: np.ndarray) -> None:
    with pytest.raises(ValueError, match=r"\(32, 41\)"):
        background_preservation(src, src, np.zeros((H, W + 1)))
    with pytest.raises(ValueError, match=r"\(32, 40, 3\)"):
        background_preservation(src, src, np.zeros((H, W, 3)))
    with pytest.raises(ValueError, match=r"\(32, 40\).*\(30, 40\)"):
        background_preservation(src, src[:30], np.zeros((H, W)))
    with pytest.raises(ValueError, match="0/255"):
        background_preservation(src, src, np.full((H, W), 255, dtype=np.uint8))


def test_gt_distance_matches_hand_computation(src: np.ndarray) -> None:
    rng = np.random.default_rng(1)
    tgt = rng.integers(0, 256, size=src.shape, dtype=np.uint8)
    r = gt_distance(src, tgt)
    d = src.astype(np.float64) / 255 - tgt.astype(np.float64) / 255
    assert r["gt_l1"] == pytest.approx(float(np.abs(d).mean()), rel=1e-6)
    assert r["gt_l2"] == pytest.approx(float((d**2).mean()), rel=1e-6)
    assert gt_distance(src, src) == {"gt_l1": 0.0, "gt_l2": 0.0}
    with pytest.raises(ValueError, match="differ in size"):
        gt_distance(src[:16], tgt)
    # MagicBrush resizes the output to the target's size first.
    big = np.asarray(Image.fromarray(tgt).resize((W * 2, H * 2)))
    assert set(gt_distance(big, tgt, resize_to_target=True)) == {"gt_l1", "gt_l2"}
