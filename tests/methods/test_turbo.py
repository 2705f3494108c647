"""The turbo method on a tiny random Shapes-layout generator (no shipped weights involved)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from retouch.methods import EditRequest, get_method
from retouch.methods.common import from_working, size_multiple, to_working, working_size
from retouch.models.inversion import InversionConfig, InversionNet, load_inversion, load_inversion_weights

SRC, TGT = "a red circle on a blue sky", "a green square on a blue sky"


@pytest.fixture(scope="module")
def turbo(tiny_shapes_dir, tiny_inversion_dir):
    return get_method("turbo", model=str(tiny_shapes_dir), captioner=None, mask="none", compose="paste")


def _image(h=20, w=28, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_inversion_weights_round_trip(tiny_shapes_dir, tiny_inversion_dir, turbo):
    net = load_inversion(tiny_inversion_dir, turbo.backbone.denoiser.unet)
    x = torch.randn(1, 4, 8, 8)
    cond = turbo.backbone.encode_text([SRC])
    with torch.no_grad():
        a, b = net(x, x, 999, cond), turbo.inverter(x, x, 999, cond)
    assert torch.allclose(a[0], b[0], atol=1e-2)  # saved in fp16
    assert not torch.allclose(a[0], torch.zeros_like(a[0]))


def test_a_fresh_network_takes_saved_weights_to_start_training_from(tiny_inversion_dir, turbo):
    """The inversion recipe's ``init``: a new network on the (re-distilled) generator starts from a saved adapter."""
    unet = turbo.backbone.denoiser.unet
    fresh = InversionNet(unet, InversionConfig(rank=2, alpha=2.0))
    x, cond = torch.randn(1, 4, 8, 8), turbo.backbone.encode_text([SRC])
    with torch.no_grad():
        before = fresh(x, x, 499, cond)[0]
        load_inversion_weights(fresh, tiny_inversion_dir)
        after, saved = fresh(x, x, 499, cond)[0], load_inversion(tiny_inversion_dir, unet)(x, x, 499, cond)[0]
    assert not torch.allclose(before, after, atol=1e-3)
    torch.testing.assert_close(after, saved)
    with pytest.raises(ValueError, match="does not fit"):
        load_inversion_weights(InversionNet(unet, InversionConfig(rank=4, alpha=4.0)), tiny_inversion_dir)


def test_output_keeps_size_and_counts_evaluations(turbo):
    img = _image()
    res = turbo.edit(EditRequest(image=img, source_prompt=SRC, target_prompt=TGT))
    assert res.image.shape == img.shape and res.image.dtype == np.uint8
    steps = turbo.steps
    assert (res.nfe_inversion, res.nfe_edit) == (2 * steps, steps)
    again = turbo.edit(EditRequest(image=img, source_prompt=SRC, target_prompt="a blue star on a blue sky"))
    assert again.nfe_inversion == 0 and again.info["inversion_reused"]  # inverted once per image


def test_user_mask_keeps_every_other_pixel(turbo):
    img = _image(seed=1)
    mask = np.zeros(img.shape[:2], bool)
    mask[4:12, 6:20] = True
    res = turbo.edit(EditRequest(image=img, source_prompt=SRC, target_prompt=TGT, mask=mask))
    assert np.array_equal(res.image[~mask], img[~mask])
    assert not np.array_equal(res.image[mask], img[mask])


def test_strength_zero_is_the_reconstruction(turbo):
    img = _image(seed=2)
    res = turbo.edit(EditRequest(image=img, source_prompt=SRC, target_prompt=TGT), strength=0.0)
    bb = turbo.backbone
    size = working_size(*img.shape[:2], bb.default_size, size_multiple(bb))
    inv, _, _ = turbo.invert(to_working(img, size), SRC)
    recon = from_working(bb.decode_latents(inv.recons[-1])[0], img.shape[:2])
    assert np.abs(res.image.astype(int) - recon.astype(int)).max() <= 1
    full = turbo.edit(EditRequest(image=img, source_prompt=SRC, target_prompt=TGT), strength=1.0)
    assert not np.array_equal(full.image, res.image)


@pytest.mark.parametrize("compose", ["delta", "adaptive"])
def test_delta_composition_returns_the_input_where_nothing_changed(tiny_shapes_dir, tiny_inversion_dir, compose):
    m = get_method("turbo", model=str(tiny_shapes_dir), captioner=None, mask="none", compose=compose)
    img = _image(seed=4)
    same = m.edit(EditRequest(image=img, source_prompt=SRC, target_prompt=TGT), strength=0.0)
    assert np.array_equal(same.image, img)  # edit == reconstruction: the input, bit for bit
    moved = m.edit(EditRequest(image=img, source_prompt=SRC, target_prompt=TGT), strength=1.0)
    assert not np.array_equal(moved.image, img)


def test_attention_mask_mode(tiny_shapes_dir, tiny_inversion_dir):
    m = get_method("turbo", model=str(tiny_shapes_dir), captioner=None, mask="attention", mask_threshold=0.5)
    img = _image(seed=3)
    res = m.edit(EditRequest(image=img, source_prompt=SRC, target_prompt=TGT))
    assert res.info["mask"] == "attention" and 0.0 < res.info["mask_fraction"] <= 1.0
    assert res.image.shape == img.shape


def test_clear_errors(turbo, tiny_shapes_dir, tiny_inversion_dir):
    img = _image()
    with pytest.raises(ValueError, match="instruction is empty"):
        turbo.edit(EditRequest(image=img, source_prompt=SRC, instruction="  "))
    with pytest.raises(ValueError, match="would change nothing"):
        turbo.edit(EditRequest(image=img, source_prompt=SRC, target_prompt=SRC))
    with pytest.raises(ValueError, match="no captioner"):
        turbo.edit(EditRequest(image=img, instruction="make it red"))
    with pytest.raises(ValueError, match="strength"):
        turbo.edit(EditRequest(image=img, source_prompt=SRC, target_prompt=TGT), strength=2.0)
    with pytest.raises(ValueError, match="compose must be"):
        get_method("turbo", model=str(tiny_shapes_dir), captioner=None, compose="blend")
    with pytest.raises(ValueError, match="mask must be"):
        get_method("turbo", model=str(tiny_shapes_dir), captioner=None, mask="magic")
    with pytest.raises(FileNotFoundError, match="no inversion network"):
        get_method("turbo", model=str(tiny_shapes_dir), inversion=str(tiny_shapes_dir), captioner=None)


def test_adaptive_composition_follows_the_edit_where_it_moved_far():
    from retouch.methods.turbo import compose_delta

    src = np.full((4, 4, 3), 100, np.uint8)
    recon = np.full((4, 4, 3), 90, np.uint8)
    edited = recon.copy()
    edited[0, 0] = 250  # a large change: the edit itself, no ghost of the source's detail
    edited[1, 1] = 100  # a small change: source + (edited - recon)
    out = compose_delta(src, edited, recon, adaptive=True, scale=48.0)
    assert out[0, 0].tolist() == [250] * 3
    small = 10 / 48.0
    assert out[1, 1].tolist() == [round(small * 100 + (1 - small) * 110)] * 3
    assert out[2, 2].tolist() == [100] * 3  # unchanged: the input
    assert compose_delta(src, edited, recon, adaptive=False)[1, 1].tolist() == [110] * 3


def test_the_default_mask_is_none_on_a_generator_without_a_layout_map(tiny_shapes_dir, tiny_inversion_dir):
    """``mask="auto"`` (the default) takes the layout mask only where the generator paints a layout map."""
    m = get_method("turbo", model=str(tiny_shapes_dir), captioner=None)
    assert m.settings.mask == "auto"
    res = m.edit(EditRequest(image=_image(), source_prompt=SRC, target_prompt=TGT))
    assert res.info["mask"] == "none"
