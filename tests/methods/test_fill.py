"""The fill tasks with the classic backends: bit-exact outside the mask, IOPaint's crop strategy at any size,
fills that come from the surroundings, and the errors that name what is wrong."""

from __future__ import annotations

import random

import numpy as np
import pytest

import retouch
from retouch.methods import METHODS, EditRequest, get_method, list_methods
from retouch.methods.fill import CLASSIC_BACKENDS, context_box, mask_boxes
from retouch.methods.inpaint import extend_canvas
from retouch.world import random_scene, render


@pytest.fixture(scope="module")
def scene_image() -> np.ndarray:
    return render(random_scene(random.Random(7), n_objects=3))


def _blob(shape, seed=0) -> np.ndarray:
    """An irregular mask: a few overlapping discs."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    m = np.zeros(shape, bool)
    for _ in range(4):
        cy, cx = rng.integers(shape[0] // 4, 3 * shape[0] // 4), rng.integers(shape[1] // 4, 3 * shape[1] // 4)
        m |= (yy - cy) ** 2 + (xx - cx) ** 2 <= rng.integers(5, 15) ** 2
    return m


def test_fill_methods_registered_with_their_tasks():
    assert {"inpaint", "erase", "outpaint"} <= set(list_methods())
    assert {n: METHODS[n].task for n in ("inpaint", "erase", "outpaint")} == {
        "inpaint": "inpaint",
        "erase": "erase",
        "outpaint": "outpaint",
    }


@pytest.mark.parametrize("backend", CLASSIC_BACKENDS)
def test_outside_the_mask_is_the_input_bit_for_bit(scene_image, backend):
    m = _blob(scene_image.shape[:2])
    res = retouch.erase(scene_image, m, backend=backend)
    assert res.image.shape == scene_image.shape and res.image.dtype == np.uint8
    assert np.array_equal(res.image[~m], scene_image[~m])
    assert (res.image[m] != scene_image[m]).any()  # the object under the mask was filled over
    assert res.info["backend"] == backend


@pytest.mark.parametrize("backend", CLASSIC_BACKENDS)
def test_erase_fills_from_the_surroundings(backend):
    # a flat grey field with a red square: erasing the square must bring back the grey, not keep the red
    img = np.full((96, 96, 3), 120, np.uint8)
    img[40:60, 30:50] = (230, 20, 20)
    m = np.zeros((96, 96), bool)
    m[38:62, 28:52] = True
    out = retouch.erase(img, m, backend=backend).image
    assert np.abs(out[m].astype(int) - 120).max() <= 4  # the red (230, 20, 20) is gone


def test_a_2000x1500_photo_with_a_100x100_mask_is_cropped_not_resized():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (1500, 2000, 3), dtype=np.uint8)
    m = np.zeros((1500, 2000), bool)
    m[700:800, 1000:1100] = True
    m[100:120, 1800:1830] = True  # a second region far away: its own crop
    res = retouch.erase(img, m, backend="telea")
    assert res.image.shape == img.shape
    assert np.array_equal(res.image[~m], img[~m])
    crops = res.info["crops"]
    assert len(crops) == 2
    for t, left, b, r in crops:
        assert (b - t, r - left) == (512, 512)  # the working size, cut out at full resolution
    assert res.info["working_sizes"] == [[512, 512], [512, 512]]
    t, left, b, r = next(c for c in crops if c[1] < 1000)
    assert t <= 700 and b >= 800 and left <= 1000 and r >= 1100  # the crop holds its region


def test_a_mask_larger_than_the_working_size_is_filled_downscaled():
    img = render(random_scene(random.Random(3)), 256)
    m = np.zeros((256, 256), bool)
    m[40:200, 60:190] = True
    res = retouch.erase(img, m, backend="ns", crop_size=64)
    (hw,) = res.info["working_sizes"]
    assert max(hw) == 64
    assert res.image.shape == img.shape and np.array_equal(res.image[~m], img[~m])


def test_context_box_grows_to_the_working_size_inside_the_image():
    assert context_box((10, 10, 30, 30), (100, 200), 64) == (0, 0, 64, 64)  # shifted in at the corner
    assert context_box((40, 150, 60, 195), (100, 200), 64) == (18, 136, 82, 200)  # pushed back from the right edge
    assert context_box((0, 0, 100, 100), (100, 200), 64) == (0, 0, 100, 100)  # already larger: unchanged
    assert context_box((10, 10, 20, 20), (50, 40), 512) == (0, 0, 50, 40)  # the whole small image


def test_mask_boxes_merge_regions_whose_margins_overlap():
    m = np.zeros((200, 200), bool)
    m[10:20, 10:20] = m[10:20, 40:50] = True  # 20 px apart
    m[150:160, 150:160] = True
    assert mask_boxes(m, margin=12) == [(0, 0, 32, 62), (138, 138, 172, 172)]
    assert len(mask_boxes(m, margin=5)) == 3


def test_inpaint_with_a_prompt_needs_a_diffusion_model(scene_image):
    m = _blob(scene_image.shape[:2])
    with pytest.raises(ValueError, match="needs a diffusion inpainting model.*cannot draw 'a red star'"):
        retouch.inpaint(scene_image, m, "a red star")
    with pytest.raises(ValueError, match="needs a prompt"):
        retouch.inpaint(scene_image, m, "  ")
    with pytest.raises(ValueError, match="needs a diffusion inpainting model"):
        retouch.outpaint(scene_image, left=8, prompt="a brick wall")
    with pytest.raises(ValueError, match="needs a mask"):
        get_method("erase").edit(EditRequest(image=scene_image))


def test_errors_name_the_problem(scene_image):
    full = np.ones(scene_image.shape[:2], bool)
    with pytest.raises(ValueError, match="covers the whole"):
        retouch.erase(scene_image, full)
    with pytest.raises(ValueError, match="selects no pixel"):
        retouch.erase(scene_image, np.zeros(scene_image.shape[:2], bool))
    with pytest.raises(ValueError, match="64x32 but the image is 128x128"):
        retouch.erase(scene_image, np.ones((32, 64), bool))
    with pytest.raises(ValueError, match="unknown fill backend 'lama'"):
        retouch.erase(scene_image, _blob(scene_image.shape[:2]), backend="lama")
    with pytest.raises(ValueError, match="loads no model"):
        get_method("erase", backend="ns", model="somewhere")
    with pytest.raises(ValueError, match="needs a diffusers SD-inpainting folder"):
        get_method("erase", backend="diffusion")
    with pytest.raises(ValueError, match="no such setting: strength"):
        get_method("erase", strength=0.5)
    with pytest.raises(FileNotFoundError, match="not found"):
        get_method("inpaint", model="/nonexistent/sd-inpainting")


def test_outpaint_extends_the_canvas_and_keeps_the_input_in_place():
    rng = np.random.default_rng(1)
    img = np.full((80, 100, 3), (40, 160, 90), np.uint8)
    img[30:50, 30:70] = rng.integers(0, 256, (20, 40, 3), dtype=np.uint8)  # texture away from the edges
    res = retouch.outpaint(img, left=20, right=4, top=10, bottom=0)
    out = res.image
    assert out.shape == (90, 124, 3)
    assert np.array_equal(out[10:90, 20:120], img)
    new = np.ones(out.shape[:2], bool)
    new[10:90, 20:120] = False
    d = out[new].astype(int) - (40, 160, 90)  # the flat border carried outwards (Telea's weights add a few levels of noise)
    assert np.abs(d).max() <= 8 and np.abs(d.mean(0)).max() <= 2
    assert res.info["extend"] == {"left": 20, "right": 4, "top": 10, "bottom": 0}


def test_outpaint_pixel_counts_are_checked():
    img = np.zeros((32, 32, 3), np.uint8)
    with pytest.raises(ValueError, match="at least one of --left"):
        extend_canvas(img)
    with pytest.raises(ValueError, match="--left must be a whole number"):
        extend_canvas(img, left=-3)
    with pytest.raises(ValueError, match="at most 4096"):
        retouch.outpaint(img, right=5000)


def _offset_fill(shape=(96, 96), offset=(24.0, -16.0, 8.0), seed=0):
    """A flat field, a disc mask, and a "fill" that is the field off by a constant colour: the seam a decoder leaves."""
    rng = np.random.default_rng(seed)
    image = np.full((*shape, 3), (90, 140, 60), np.uint8)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    mask = (yy - shape[0] // 2) ** 2 + (xx - shape[1] // 2) ** 2 <= 30**2
    fill = image.astype(np.float32) + np.asarray(offset, np.float32) + rng.normal(0, 1, (*shape, 3)).astype(np.float32)
    return image, mask, fill


def test_seam_blend_matches_the_border_and_fades_inwards():
    from retouch.methods.fill import seam_blend

    image, mask, fill = _offset_fill()
    err = lambda out, where: float(np.abs(out[where] - image[where].astype(np.float32)).mean())  # noqa: E731
    border = mask & ~np.pad(mask, 1)[2:, 1:-1] | mask & ~np.pad(mask, 1)[:-2, 1:-1]  # mask pixels with an unmasked neighbour
    centre = np.zeros_like(mask)
    centre[46:50, 46:50] = True
    before = err(fill, mask)
    short, long_ = seam_blend(fill, image, mask, 3.0), seam_blend(fill, image, mask, 200.0)
    # outside the mask nothing is touched
    assert np.array_equal(short[~mask], fill[~mask]) and np.array_equal(long_[~mask], fill[~mask])
    # at the border both remove most of the offset; a short fade leaves the middle as it was, a long one corrects it too
    assert err(short, border) < 0.35 * err(fill, border) and err(long_, border) < 0.35 * err(fill, border)
    assert err(short, centre) > 0.8 * err(fill, centre)
    assert err(long_, centre) < 0.25 * err(fill, centre) and err(long_, mask) < 0.3 * before


def test_seam_blend_on_a_coarse_grid_agrees_with_the_full_solve():
    from retouch.methods.fill import seam_blend

    image, mask, fill = _offset_fill((160, 160))
    full = seam_blend(fill, image, mask, 12.0)
    coarse = seam_blend(fill, image, mask, 12.0, max_unknowns=mask.sum() // 9)  # solved at a third of the size
    assert np.array_equal(coarse[~mask], fill[~mask])
    assert np.abs(coarse[mask] - full[mask]).mean() < 2.0


def test_blend_is_refused_by_the_classic_backends():
    with pytest.raises(ValueError, match="blend"):
        get_method("erase", backend="telea", blend=4.0)
