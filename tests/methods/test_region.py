"""The region method on a tiny random generator, a tiny CLIP and a tiny predictor (no shipped weights involved)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from retouch.methods import EditRequest, get_method
from retouch.models.region import RegionPredictor, RegionPredictorConfig

SRC = "a flat illustration of one object on a grassy field: a small red solid star with a moon emblem, upright, at the top left."
INSTR = "make the star blue"


@pytest.fixture(scope="module")
def region_dirs(tmp_path_factory, tiny_shapes_dir) -> tuple[Path, Path, Path]:
    from tests.eval.test_clip import _write_tiny_clip

    root = tmp_path_factory.mktemp("region")
    _write_tiny_clip(root / "clip")
    torch.manual_seed(3)
    pred = RegionPredictor(RegionPredictorConfig(image_dim=32, text_dim=384, grid=(4, 4), heads=2, clip=str(root / "clip")))
    with torch.no_grad():
        pred.mlp[-1].weight.mul_(40.0)  # spread the probabilities so that some patches pass 0.5 and some do not
    pred.save_pretrained(root / "pred")
    return tiny_shapes_dir, root / "pred", root / "clip"


@pytest.fixture(scope="module")
def region(region_dirs):
    model, pred, _ = region_dirs
    return get_method("region", model=str(model), predictor=str(pred), captioner=None, rewriter="rules")


def _image(h=40, w=56, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_pixels_outside_the_predicted_region_are_the_inputs_bit_for_bit(region):
    img = _image()
    res = region.edit(EditRequest(image=img, instruction=INSTR, source_prompt=SRC))
    m = res.mask > 0
    assert res.image.shape == img.shape and res.image.dtype == np.uint8
    assert res.info["mask"] == "predicted" and 0 < m.mean() < 1  # a real region, neither empty nor everything
    assert np.array_equal(res.image[~m], img[~m])
    assert not np.array_equal(res.image[m], img[m])  # and the region was regenerated
    assert res.nfe_edit == 2 and "blue" in res.info["target_caption"]
    again = region.edit(EditRequest(image=img, instruction=INSTR, source_prompt=SRC))
    assert np.array_equal(again.image, res.image)  # seeded


def test_the_predicted_region_follows_the_instruction(region):
    img = _image()
    a, pa = region.predict_region(img, INSTR)
    _, pb = region.predict_region(img, "remove the star and turn the background into a brick wall please")
    assert a.shape == img.shape[:2] and pa.shape == (1, 1, 4, 4)
    assert not torch.allclose(pa, pb)  # the instruction's tokens move the patch probabilities


def test_a_user_mask_replaces_the_prediction(region):
    img = _image()
    mask = np.zeros(img.shape[:2], bool)
    mask[5:20, 10:30] = True
    res = region.edit(EditRequest(image=img, instruction=INSTR, source_prompt=SRC, mask=mask))
    assert res.info["mask"] == "user"
    assert np.array_equal(res.image[~mask], img[~mask])


def test_no_instruction_and_no_mask_is_a_clear_error(region):
    tgt = SRC.replace("red", "blue")
    with pytest.raises(ValueError, match="predicts where to edit from the instruction"):
        region.edit(EditRequest(image=_image(), source_prompt=SRC, target_prompt=tgt))


def test_an_empty_region_is_kept_or_refused(region_dirs):
    model, pred, _ = region_dirs
    kw = dict(model=str(model), predictor=str(pred), captioner=None, rewriter="rules", threshold=0.999999)
    img = _image()
    keep = get_method("region", **kw).edit(EditRequest(image=img, instruction=INSTR, source_prompt=SRC))
    assert np.array_equal(keep.image, img) and "unchanged" in keep.info["warning"]
    with pytest.raises(ValueError, match="finds no patch"):
        get_method("region", empty_mask="error", **kw).edit(EditRequest(image=img, instruction=INSTR, source_prompt=SRC))
    with pytest.raises(ValueError, match="empty_mask"):
        get_method("region", empty_mask="maybe", **kw)


def test_a_missing_predictor_names_the_recipe(tiny_shapes_dir, tmp_path):
    with pytest.raises(FileNotFoundError, match="recipes/region.json"):
        get_method("region", model=str(tiny_shapes_dir), predictor=str(tmp_path / "none"), captioner=None)


def test_cli_edit_with_show_mask_and_then(region_dirs, tmp_path, capsys):
    from PIL import Image

    from retouch.cli import main

    model, pred, _ = region_dirs
    src_path = tmp_path / "in.png"
    img = _image(48, 48)
    Image.fromarray(img).save(src_path)
    out, show = tmp_path / "out.png", tmp_path / "mask.png"
    args = ["edit", str(src_path), INSTR, "-o", str(out), "--method", "region", "--model", str(model), "--predictor", str(pred)]
    args += ["--source-prompt", SRC, "--rewriter", "rules", "--show-mask", str(show), "--then", "make the star green"]
    args += ["--then-from", "source"]  # the tiny generator's output holds no scene for the captioner to read
    assert main(args) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.strip().splitlines()]
    assert [x["turn"] for x in lines] == [1, 2] and lines[0]["mask_output"].endswith("mask.turn1.png")
    first = np.asarray(Image.open(tmp_path / "out.turn1.png"))
    m1 = np.asarray(Image.open(tmp_path / "mask.turn1.png")) > 0
    assert m1.shape == (48, 48) and np.array_equal(first[~m1], img[~m1])
    final, m2 = np.asarray(Image.open(out)), np.asarray(Image.open(show)) > 0
    assert np.array_equal(final[~m2], img[~m2])  # turn 2 re-edits the input with the chained caption
    assert "green" in lines[1]["target_caption"] and "blue" not in lines[1]["target_caption"]
    bad = ["edit", str(src_path), INSTR, "-o", str(tmp_path / "o2.png"), "--method", "turbo", "--predictor", str(pred)]
    assert main(bad) == 2
    assert "belong to --method region" in capsys.readouterr().err
    assert main(bad[:-2] + ["--region-from", "generator"]) == 2
    assert "--region-from belong to --method region" in capsys.readouterr().err
    assert main(args + ["--show-mask", str(tmp_path / "m.jpg")]) == 2
    assert "writes a PNG" in capsys.readouterr().err


def test_region_from_the_generator_marks_the_changed_object_and_keeps_the_rest(region_dirs):
    """region_from="generator": the shipped generator's drafts of the source and target caption differ on the star
    only; a generator without a draft is refused by name, and an unknown source too."""
    from retouch.world.captions import detailed_caption
    from retouch.world.render import object_footprint, render
    from retouch.world.scene import Scene, WorldObject

    star = WorldObject(shape="star", color="red", size="large", pattern="solid", pose="upright", emblem="moon", slot=0)
    heart = WorldObject(shape="heart", color="blue", size="medium", pattern="striped", pose="upright", emblem="bolt", slot=3)
    scene = Scene(objects=(star, heart), background="grass", style="flat", seed=2)
    img = render(scene)
    method = get_method("region", region_from="generator", captioner=None, rewriter="rules")
    res = method.edit(EditRequest(image=img, instruction="make the red star green", source_prompt=detailed_caption(scene)))
    m = res.mask > 0
    assert res.info["mask"] == "generator" and "green" in res.info["target_caption"]
    assert (m & object_footprint(star, 128)).sum() / object_footprint(star, 128).sum() > 0.9
    assert not (m & object_footprint(heart, 128)).any() and not m[:, 80:].any()  # nothing near the heart's place
    assert np.array_equal(res.image[~m], img[~m])
    model, pred, _ = region_dirs
    with pytest.raises(ValueError, match="caption reader|draft"):
        get_method("region", model=str(model), predictor=str(pred), captioner=None, rewriter="rules", region_from="union")
    with pytest.raises(ValueError, match="region_from must be one of"):
        get_method("region", model=str(model), predictor=str(pred), captioner=None, rewriter="rules", region_from="oracle")
