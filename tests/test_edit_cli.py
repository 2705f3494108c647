"""`retouch edit` and the Python API on the shipped Shapes models: turns, files, and clear errors."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
from PIL import Image

from retouch.cli import main
from retouch.edit import Editor, load_image, load_mask
from retouch.world import detailed_caption, random_scene, render


@pytest.fixture(scope="module")
def scene_png(tmp_path_factory):
    scene = random_scene(random.Random(2024), n_objects=2)
    p = tmp_path_factory.mktemp("edit") / "scene.png"
    Image.fromarray(render(scene)).save(p)
    return p, scene


def test_multi_turn_edit_writes_every_turn(scene_png, tmp_path, capsys):
    src, scene = scene_png
    bg = "a grassy field" if "grassy" not in detailed_caption(scene) else "a red brick wall"
    out = tmp_path / "out.png"
    rc = main(["edit", str(src), f"change the background to {bg}", "-o", str(out), "--then", "make it a pencil sketch"])
    assert rc == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.strip().splitlines()]
    assert [x["turn"] for x in lines] == [1, 2]
    assert bg in lines[0]["target_caption"] and "pencil sketch" in lines[1]["target_caption"]
    assert (lines[0]["nfe_inversion"], lines[0]["nfe_edit"]) == (8, 4)
    assert (tmp_path / "out.turn1.png").is_file() and out.is_file()
    assert np.asarray(Image.open(out)).shape == (128, 128, 3)


def test_user_mask_from_file_keeps_the_rest(scene_png, tmp_path):
    src, _ = scene_png
    m = np.zeros((128, 128), np.uint8)
    m[:64, :64] = 255
    Image.fromarray(m, "L").save(tmp_path / "m.png")
    out = tmp_path / "o.png"
    assert main(["edit", str(src), "make it a pencil sketch", "--mask", str(tmp_path / "m.png"), "-o", str(out)]) == 0
    a, b = np.asarray(Image.open(src).convert("RGB")), np.asarray(Image.open(out))
    assert np.array_equal(a[64:], b[64:]) and np.array_equal(a[:, 64:], b[:, 64:])


def test_bad_inputs_are_clear_errors_and_write_nothing(scene_png, tmp_path, capsys):
    src, _ = scene_png
    out = tmp_path / "never.png"
    rgb = tmp_path / "rgb.png"
    Image.fromarray(np.zeros((128, 128, 3), np.uint8)).save(rgb)
    small = tmp_path / "small.png"
    Image.fromarray(np.zeros((64, 64), np.uint8), "L").save(small)
    cases = [
        (["edit", str(src), "", "-o", str(out)], "instruction is empty"),
        (["edit", str(src), "make the elephant fly", "-o", str(out)], "cannot map"),
        (["edit", str(src), "make it a pencil sketch", "--mask", str(rgb), "-o", str(out)], "mode 'RGB'"),
        (["edit", str(src), "make it a pencil sketch", "--mask", str(small), "-o", str(out)], "64x64 but the image is 128x128"),
        (["edit", str(tmp_path / "nope.png"), "make it a pencil sketch", "-o", str(out)], "not found"),
        (["edit", str(src), "make it a pencil sketch", "-o", str(tmp_path / "x.gif")], "must be .png"),
        (["edit", str(src), "make it a pencil sketch", "--method", "ddim4", "--strength", "0.5", "-o", str(out)], "no edit strength"),
        (["edit", str(src), "make it a pencil sketch", "--method", "magic", "-o", str(out)], "unknown method 'magic'"),
        (["edit", str(src), "make it a pencil sketch", "--target-prompt", "a pencil sketch", "-o", str(out)], "not both"),
        (["edit", str(src), "make it a pencil sketch", "--strength", "3", "-o", str(out)], "--strength must lie in [0, 1.5]"),
        (["edit", str(src), "make it a pencil sketch", "--rewriter", "gpt9", "-o", str(out)], "unknown rewriter 'gpt9'"),
    ]
    for argv, msg in cases:
        assert main(argv) == 2, argv
        assert msg in capsys.readouterr().err, (argv, msg)
    assert not out.exists()


def test_transparent_images_and_empty_masks(tmp_path):
    rgba = np.zeros((32, 32, 4), np.uint8)
    rgba[..., 3] = 128
    Image.fromarray(rgba, "RGBA").save(tmp_path / "t.png")
    with pytest.raises(ValueError, match="transparent"):
        load_image(tmp_path / "t.png")
    Image.fromarray(np.zeros((32, 32), np.uint8), "L").save(tmp_path / "empty.png")
    with pytest.raises(ValueError, match="selects no pixel"):
        load_mask(tmp_path / "empty.png", (32, 32))
    (tmp_path / "junk.png").write_bytes(b"not an image")
    with pytest.raises(ValueError, match="not a readable image"):
        load_image(tmp_path / "junk.png")


def test_strength_moves_monotonically_toward_the_target(scene_png):
    """Strength 0 is the reconstruction; the output approaches the full edit as strength grows."""
    src, scene = scene_png
    img = np.asarray(Image.open(src).convert("RGB"))
    ed = Editor("turbo", mask="none", compose="paste")
    target_style = "a pencil sketch" if "pencil" not in detailed_caption(scene) else "a watercolor painting"
    ins = f"make it {target_style}"
    outs = {s: ed.edit(img, ins, strength=s)[0].image.astype(float) for s in (0.0, 0.25, 0.5, 0.75, 1.0)}
    d = [np.abs(outs[s] - outs[1.0]).mean() for s in (0.0, 0.25, 0.5, 0.75)]
    assert all(a > b for a, b in zip(d, d[1:], strict=False)), d
    assert d[0] > 5.0  # the edit does change the image
    # strength 0 reproduces the inversion's reconstruction
    m = ed.method
    inv, _, _ = m.invert(img, m.captioner.caption(img))
    recon = m.backbone.decode_latents(inv.recons[-1])[0].astype(float)
    assert np.abs(outs[0.0] - recon).max() <= 1.0


def test_a_failing_later_turn_keeps_the_finished_ones(scene_png, tmp_path, capsys):
    src, scene = scene_png
    out = tmp_path / "o.png"
    style = "a pencil sketch" if "pencil" not in detailed_caption(scene) else "a watercolor painting"
    assert main(["edit", str(src), f"make it {style}", "-o", str(out), "--then", "make the elephant fly"]) == 2
    assert "cannot map" in capsys.readouterr().err
    assert (tmp_path / "o.turn1.png").is_file() and not out.exists()


def test_then_from_source_reuses_the_first_inversion(scene_png, tmp_path, capsys):
    src, scene = scene_png
    bg = "a grassy field" if "grassy" not in detailed_caption(scene) else "a red brick wall"
    style = "a pencil sketch" if "pencil" not in detailed_caption(scene) else "a watercolor painting"
    out = tmp_path / "s.png"
    argv = ["edit", str(src), f"change the background to {bg}", "-o", str(out), "--then", f"make it {style}", "--then-from", "source"]
    assert main(argv) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.strip().splitlines()]
    assert lines[1]["nfe_inversion"] == 0 and lines[1]["nfe_edit"] == 4  # the first turn's inversion, reused
    assert lines[1]["source_caption"] == lines[0]["source_caption"]
    assert bg in lines[1]["target_caption"] and style in lines[1]["target_caption"]  # both changes, chained
