"""The shipped Shapes inpainting model (models/shapes-inpaint) through the fill methods, on fill-suite cases with exact
truth: the fill is what the request asks for, and every pixel outside the mask is the input's."""

from __future__ import annotations

import random

import numpy as np
import pytest

from retouch.methods import EditRequest, get_method
from retouch.methods.fill import check_inpaint_folder
from retouch.methods.inpaint import extend_canvas
from retouch.models.backbone import load_backbone
from retouch.world.fill_suite import sample_case
from retouch.world.reader import SceneReader, read_scenes

MODEL = "models/shapes-inpaint"


@pytest.fixture(scope="module")
def reader():
    return SceneReader.from_pretrained()


def _psnr(a, b):
    mse = ((a.astype(float) - b.astype(float)) ** 2).mean()
    return 10 * np.log10(255.0**2 / mse)


def test_the_shipped_folder_is_an_inpainting_pipeline():
    check_inpaint_folder(MODEL)
    bb = load_backbone(MODEL)
    # noisy latent + mask + masked latent, then the layout map and the encoded draft
    assert bb.denoiser.unet.config.in_channels == 2 * bb.latent_channels + 1 + 43 + bb.latent_channels


def test_erase_leaves_the_scene_without_the_object(reader):
    rng = random.Random("test-fill-shapes/erase")
    method = get_method("erase", model=MODEL)
    ok, gains = 0, []
    for _ in range(4):
        c = sample_case("erase", rng)
        out = method.edit(EditRequest(image=c["source"], mask=c["mask"])).image
        assert np.array_equal(out[~c["mask"]], c["source"][~c["mask"]])
        (parsed,) = read_scenes(reader, out[None])
        ok += parsed.same_content(c["target_scene"])
        telea = get_method("erase").edit(EditRequest(image=c["source"], mask=c["mask"])).image
        gains.append(_psnr(out[c["mask"]], c["target"][c["mask"]]) - _psnr(telea[c["mask"]], c["target"][c["mask"]]))
    assert ok >= 3
    assert np.mean(gains) > 0, gains


def test_inpaint_draws_the_described_object(reader):
    rng = random.Random("test-fill-shapes/inpaint")
    method = get_method("inpaint", model=MODEL)
    ok = 0
    for _ in range(4):
        c = sample_case("inpaint", rng)
        res = method.edit(EditRequest(image=c["source"], mask=c["mask"], target_prompt=c["prompt"]))
        assert np.array_equal(res.image[~c["mask"]], c["source"][~c["mask"]])
        (parsed,) = read_scenes(reader, res.image[None])
        ok += parsed.object_at(c["slot"]) == c["target_scene"].object_at(c["slot"])
    assert ok >= 3


def test_outpaint_keeps_the_input_and_fills_the_canvas():
    rng = random.Random("test-fill-shapes/outpaint")
    c = sample_case("outpaint", rng)
    res = get_method("outpaint", model=MODEL).outpaint(c["source"], **c["extend"])
    canvas, mask = extend_canvas(c["source"], **c["extend"])
    assert res.image.shape == c["target"].shape
    assert np.array_equal(res.image[~mask], canvas[~mask])
    assert _psnr(res.image[mask], c["target"][mask]) > _psnr(canvas[mask], c["target"][mask])


def _erase_errors(methods, seed: str, n: int) -> list[list[float]]:
    """In-mask squared error of each method on ``n`` erase cases; every fill keeps the pixels outside the mask."""
    rng = random.Random(seed)
    errors: list[list[float]] = [[] for _ in methods]
    for _ in range(n):
        c = sample_case("erase", rng)
        m = c["mask"]
        for method, err in zip(methods, errors, strict=True):
            out = method.edit(EditRequest(image=c["source"], mask=m)).image
            assert np.array_equal(out[~m], c["source"][~m])
            err.append(((out[m].astype(float) - c["target"][m]) ** 2).mean())
    return errors


def test_erase_samples_average_fills_into_a_nearer_mean():
    """``samples`` K: the fill is the mean of K fills, run as one batch; pixels outside the mask stay the input's."""
    one = get_method("erase", model=MODEL, samples=1)
    many = get_method("erase", model=MODEL, samples=6)
    assert many.backend.nfe(None) == 6 * one.backend.nfe(None)
    err1, errk = _erase_errors([one, many], "test-fill-shapes/samples", 6)
    # the mean of samples is the better estimate of what the mask hides (squared error pooled over the cases)
    assert np.mean(errk) < np.mean(err1), (err1, errk)


def test_erase_seam_blend_brings_the_fill_nearer_the_truth():
    """The default seam blend corrects only mask pixels and lowers the in-mask squared error pooled over cases."""
    off = get_method("erase", model=MODEL, blend=0)
    on = get_method("erase", model=MODEL)
    err_off, err_on = _erase_errors([off, on], "test-fill-shapes/blend", 8)
    assert np.mean(err_on) < np.mean(err_off), (err_off, err_on)


def test_samples_are_refused_where_they_mean_nothing():
    with pytest.raises(ValueError, match="samples must be between 1"):
        get_method("erase", model=MODEL, samples=0)
    with pytest.raises(ValueError, match="deterministic"):
        get_method("erase", backend="telea", samples=4)
