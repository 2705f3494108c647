"""`retouch inpaint / erase / outpaint`: mask files of any mode, outputs, and errors that name the file and the problem."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
from PIL import Image

from retouch.cli import main
from retouch.fill import load_fill_mask
from retouch.world import random_scene, render

H, W = 96, 128


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("fill-cli")
    img = render(random_scene(random.Random(11)), 128)[:H]
    Image.fromarray(img).save(d / "in.png")
    m = np.zeros((H, W), bool)
    m[20:50, 30:70] = True
    Image.fromarray(m.astype(np.uint8) * 255).save(d / "m.png")
    return d, img, m


def _modes(m: np.ndarray) -> dict[str, Image.Image]:
    """The same mask in every mode a user's editor may save."""
    grey = m.astype(np.uint8) * 255
    rgba_stroke = np.zeros((*m.shape, 4), np.uint8)  # a brush stroke on a transparent layer, any colour
    rgba_stroke[m] = (200, 30, 30, 90)
    opaque = np.dstack([np.repeat(grey[..., None], 3, 2), np.full(m.shape, 255, np.uint8)])  # opaque: white = edit
    pal = Image.fromarray(grey).convert("P")
    pal_t = Image.fromarray(m.astype(np.uint8), "L").convert("P")
    pal_t.putpalette([0, 0, 0, 255, 255, 255])
    pal_t.info["transparency"] = 0  # index 0 transparent: the stroke is index 1
    la = np.dstack([np.zeros(m.shape, np.uint8), grey])
    return {
        "L": Image.fromarray(grey),
        "1": Image.fromarray(grey).convert("1"),
        "RGB": Image.fromarray(grey).convert("RGB"),
        "RGBA-stroke": Image.fromarray(rgba_stroke, "RGBA"),
        "RGBA-opaque": Image.fromarray(opaque, "RGBA"),
        "LA": Image.fromarray(la, "LA"),
        "P": pal,
        "P-transparency": pal_t,
        "I;16": Image.fromarray(m.astype(np.uint16) * 65535),
    }


def test_mask_files_of_any_mode_read_alike(files, tmp_path):
    _, _, m = files
    for name, im in _modes(m).items():
        p = tmp_path / f"{name}.png"
        im.save(p, **({"transparency": 0} if name == "P-transparency" else {}))
        got = load_fill_mask(p, (H, W))
        assert np.array_equal(got, m), name


def test_erase_writes_the_input_outside_the_mask(files, tmp_path, capsys):
    d, img, m = files
    out = tmp_path / "out.png"
    argv = ["erase", str(d / "in.png"), "--mask", str(d / "m.png"), "-o", str(out), "--backend", "biharmonic", "--crop-size", "64"]
    assert main(argv) == 0
    got = np.asarray(Image.open(out))
    assert got.shape == img.shape and np.array_equal(got[~m], img[~m]) and not np.array_equal(got[m], img[m])
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["backend"] == "biharmonic" and line["size"] == [W, H] and line["output"] == str(out)
    assert max(line["working_sizes"][0]) == 64  # the crop, filled at --crop-size


def test_outpaint_cli(files, tmp_path):
    d, img, _ = files
    out = tmp_path / "wide.png"
    assert main(["outpaint", str(d / "in.png"), "--left", "16", "--bottom", "8", "-o", str(out), "--backend", "ns"]) == 0
    got = np.asarray(Image.open(out))
    assert got.shape == (H + 8, W + 16, 3) and np.array_equal(got[:H, 16:], img)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["erase", "{d}/in.png", "--mask", "{d}/small.png", "-o", "{t}/o.png"], "{d}/small.png is 64x48 but {d}/in.png is 128x96"),
        (["erase", "{d}/in.png", "--mask", "{d}/empty.png", "-o", "{t}/o.png"], "{d}/empty.png selects no pixel"),
        (["erase", "{d}/in.png", "--mask", "{d}/junk.png", "-o", "{t}/o.png"], "{d}/junk.png is not a readable image"),
        (["erase", "{d}/in.png", "--mask", "{d}/nope.png", "-o", "{t}/o.png"], "mask {d}/nope.png not found"),
        (["erase", "{d}/in.png", "--mask", "{d}/m.png", "-o", "{d}/in.png"], "retouch never writes over its input"),
        (["erase", "{d}/in.png", "--mask", "{d}/m.png", "-o", "{t}/o.txt"], "output must be .png"),
        (["erase", "{d}/in.png", "--mask", "{d}/m.png", "-o", "{t}/o.png", "--backend", "lama"], "unknown --backend 'lama'"),
        (["inpaint", "{d}/in.png", "--mask", "{d}/m.png", "a red star", "-o", "{t}/o.png"], "needs a diffusion inpainting model"),
        (["inpaint", "{d}/in.png", "--mask", "{d}/m.png", " ", "-o", "{t}/o.png"], "the prompt is empty"),
        (["outpaint", "{d}/in.png", "--left", "16", "a sky", "-o", "{t}/o.png"], "needs a diffusion inpainting model"),
        (["outpaint", "{d}/in.png", "-o", "{t}/o.png"], "nothing to outpaint"),
        (["outpaint", "{d}/in.png", "--top", "-4", "-o", "{t}/o.png"], "--top must be a whole number"),
        (["erase", "{d}/in.png", "--mask", "{d}/m.png", "-o", "{t}/o.png", "--crop-size", "4"], "crop_size must be at least 8"),
        (["erase", "{d}/in.png", "--mask", "{d}/m.png", "-o", "{t}/o.png", "--blend", "4"], "backend 'telea' fills from them already"),
    ],
)
def test_errors_exit_2_naming_the_problem(files, tmp_path, capsys, argv, message):
    d, _, _ = files
    Image.fromarray(np.full((48, 64), 255, np.uint8)).save(d / "small.png")
    Image.fromarray(np.zeros((H, W), np.uint8)).save(d / "empty.png")
    (d / "junk.png").write_bytes(b"\x89PNG not really")
    argv = [a.format(d=d, t=tmp_path) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message.format(d=d, t=tmp_path) in err
    assert "Traceback" not in err and not (tmp_path / "o.png").exists()


def test_world_bench_task_writes_a_fill_suite(tmp_path):
    assert main(["world", "bench", "--task", "outpaint", "--n", "3", "--seed", "2", "--out", str(tmp_path / "s")]) == 0
    meta = json.loads((tmp_path / "s" / "suite.json").read_text())
    assert meta["task"] == "outpaint" and meta["n"] == 3
    assert len(json.loads((tmp_path / "s" / "mapping_file.json").read_text())) == 3
