"""The catalogue of bad and unusual inputs (issue 16): every case through the real CLI (``retouch.cli.main``,
in-process, output captured), each with its exact outcome -- exit status 2 and a message naming the file
and the problem, or exit status 0 and a checked result -- and never a traceback.

``python -m tests.reliability.test_catalogue`` prints the table of docs/reliability.md from ``CASES``.
Models are loaded once per kind (the turbo method is memoised across the successful edits).
"""

from __future__ import annotations

import functools
import json
import logging
import os
import random
import shutil
import struct
import sys
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from retouch.cli import main
from retouch.world import random_scene, render

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Case:
    id: str
    kind: str  # images, masks, prompts, options, outputs, suites, models
    what: str  # the input, in words (the docs table)
    argv: Callable[[dict], list[str]]
    rc: int = 2
    err: tuple[str, ...] = ()  # substrings of stderr (for rc 2); "{name}" is replaced by files[name]
    check: Callable[[dict, str], None] | None = None  # for rc 0: checks the result (files, stdout)
    outcome: str = ""  # the outcome, in words (the docs table)
    names: tuple[str, ...] = field(default_factory=tuple)  # files whose path the message must name


def _png(arr: np.ndarray, path: Path, mode: str | None = None, **kw) -> Path:
    Image.fromarray(arr, mode).save(path, **kw) if mode else Image.fromarray(arr).save(path, **kw)
    return path


def _exif(orientation: int) -> Image.Exif:
    e = Image.Exif()
    e[0x0112] = orientation
    return e


def build_files(d: Path) -> dict:
    """Every input file of the catalogue, in ``d``."""
    import skimage.data

    f: dict = {}
    scene = random_scene(random.Random(2024), n_objects=2)
    img = render(scene)
    f["scene_arr"] = img
    f["scene"] = _png(img, d / "scene.png")
    f["missing"] = d / "no-such-image.png"
    (d / "zero.png").write_bytes(b"")
    f["zero"] = d / "zero.png"
    (d / "text.png").write_text("this is not an image\n")
    f["text"] = d / "text.png"
    f["truncated"] = d / "truncated.png"
    f["truncated"].write_bytes(f["scene"].read_bytes()[:300])
    f["tiny"] = _png(np.zeros((1, 1, 3), np.uint8), d / "tiny.png")
    # found by fuzzing (fuzz/corpus/image/): a TIFF whose strip offset is a rational number
    shutil.copy(ROOT / "fuzz" / "corpus" / "image" / "crash-tiff-rational-offset", d / "rational-offset.tif")
    f["tiff_rational"] = d / "rational-offset.tif"
    f["long"] = _png(np.zeros((10, 10000, 3), np.uint8), d / "long.png")

    # a decompression bomb: a PNG header that promises 30000 x 30000 pixels, and a few bytes of data
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", 30000, 30000, 8, 0, 0, 0, 0)
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 30001 * 4)) + chunk(b"IEND", b"")
    (d / "bomb.png").write_bytes(png)
    f["bomb"] = d / "bomb.png"
    rgba = np.dstack([img, np.full(img.shape[:2], 255, np.uint8)])
    rgba_t = rgba.copy()
    rgba_t[:10, :10, 3] = 0
    f["rgba_transparent"] = _png(rgba_t, d / "transparent.png", "RGBA")
    f["rgba_opaque"] = _png(rgba, d / "opaque-rgba.png", "RGBA")
    f["grey"] = _png(np.asarray(Image.fromarray(img).convert("L")), d / "grey.png", "L")
    Image.fromarray(img).convert("P", palette=Image.Palette.ADAPTIVE).save(d / "palette.png")
    f["palette"] = d / "palette.png"
    grey16 = (np.asarray(Image.fromarray(img).convert("L")).astype(np.uint16) * 257 + 100).astype(np.uint16)
    f["grey16_arr"] = grey16
    f["grey16"] = _png(grey16, d / "grey16.png")
    fl = np.asarray(Image.fromarray(img).convert("L"), dtype=np.float32) / 255.0
    Image.fromarray(fl).save(d / "float.tiff")
    f["float"] = d / "float.tiff"
    Image.fromarray(fl * 1000.0).save(d / "float-1000.tiff")
    f["float_range"] = d / "float-1000.tiff"
    Image.fromarray(np.full((32, 32), 70000, np.int32)).save(d / "int32.tiff")
    f["int32"] = d / "int32.tiff"
    Image.fromarray(img).convert("CMYK").save(d / "scene-cmyk.jpg", quality=95)
    f["scene_cmyk"] = d / "scene-cmyk.jpg"
    frames = [Image.fromarray(img).convert("P"), Image.fromarray(255 - img).convert("P")]
    frames[0].save(d / "anim.gif", save_all=True, append_images=frames[1:])
    f["anim"] = d / "anim.gif"
    # the scene stored turned a quarter (as a camera held sideways stores it) with the tag that turns it back
    stored = np.ascontiguousarray(np.rot90(img, 1))  # 90 degrees counter-clockwise
    Image.fromarray(stored).save(d / "scene-exif6.png", exif=_exif(6))  # 6: display rotated 90 degrees clockwise
    f["scene_exif"] = d / "scene-exif6.png"
    # photos: scikit-image's sample photos, as a user would hand them in
    astro = skimage.data.astronaut()
    Image.fromarray(astro).convert("CMYK").save(d / "photo-cmyk.jpg", quality=90)
    f["photo_cmyk"] = d / "photo-cmyk.jpg"
    chelsea = skimage.data.chelsea()  # 451 x 300
    Image.fromarray(chelsea).save(d / "photo-exif.jpg", exif=_exif(6), quality=90)
    f["photo_exif"] = d / "photo-exif.jpg"
    f["photo"] = _png(skimage.data.coffee(), d / "coffee.png")  # 600 x 400
    f["camera"] = _png(skimage.data.camera(), d / "camera.png", "L")  # 512 x 512 grey
    # masks (128 x 128 scene)
    half = np.zeros((128, 128), np.uint8)
    half[:64] = 255
    f["mask_half"] = _png(half, d / "mask-top-half.png", "L")
    f["mask_small"] = _png(np.full((64, 64), 255, np.uint8), d / "mask-64.png", "L")
    f["mask_rgb"] = _png(np.dstack([half] * 3), d / "mask-rgb.png")
    f["mask_empty"] = _png(np.zeros((128, 128), np.uint8), d / "mask-empty.png", "L")
    f["mask_white"] = _png(np.full((128, 128), 255, np.uint8), d / "mask-white.png", "L")
    # a mask for the EXIF-rotated scene: drawn on the upright image (top half) and stored the way the
    # image is stored, with the same tag -- and one drawn on the stored pixels without the tag, on a
    # non-square image so the orientation shows in the size
    Image.fromarray(np.ascontiguousarray(np.rot90(half, 1)), "L").save(d / "mask-exif6.png", exif=_exif(6))
    f["mask_exif"] = d / "mask-exif6.png"
    wide = np.asarray(Image.fromarray(img).resize((192, 128)))
    Image.fromarray(np.ascontiguousarray(np.rot90(wide, 1))).save(d / "wide-exif6.png", exif=_exif(6))  # shown 192 x 128
    f["wide_exif"] = d / "wide-exif6.png"
    f["mask_stored"] = _png(np.full((192, 128), 255, np.uint8), d / "mask-stored-orientation.png", "L")  # 128 wide
    # prompt files
    (d / "prompts-latin1.jsonl").write_bytes('"a caf\xe9 on a starry night sky"\n'.encode("latin-1"))
    f["prompts_latin1"] = d / "prompts-latin1.jsonl"
    # recipes
    recipes = {
        "recipe_unknown_key": {"task": "scene-reader", "stepz": 10},
        "recipe_wrong_type": {"task": "scene-reader", "steps": "ten"},
        "recipe_unknown_task": {"task": "make-it-good"},
        "recipe_list": [1, 2, 3],
    }
    for k, v in recipes.items():
        (d / f"{k}.json").write_text(json.dumps(v))
        f[k] = d / f"{k}.json"
    (d / "recipe-broken.json").write_text('{"task": "scene-reader", ')
    f["recipe_broken"] = d / "recipe-broken.json"
    (d / "recipe-latin1.json").write_bytes('{"task": "scene-reader", "out": "caf\xe9"}'.encode("latin-1"))
    f["recipe_latin1"] = d / "recipe-latin1.json"
    # output paths
    (d / "out-dir.png").mkdir()
    f["out_dir"] = d / "out-dir.png"
    f["out_under_file"] = f["text"] / "edited.png"
    ro = d / "read-only"
    ro.mkdir()
    ro.chmod(0o500)
    f["read_only"] = ro
    # suites
    from retouch.world.suite import write_suite

    write_suite(d / "suite", n=10, seed=3)
    f["suite"] = d / "suite"
    mapping = json.loads((d / "suite" / "mapping_file.json").read_text())
    first = sorted(mapping)[0]

    def variant(name: str, change: Callable[[dict], object]) -> Path:
        s = d / name
        shutil.copytree(d / "suite", s)
        m = json.loads(json.dumps(mapping))
        new = change(m)
        (s / "mapping_file.json").write_text(json.dumps(m if new is None else new))
        return s

    f["suite_missing_image"] = variant("suite-missing-image", lambda m: m[first].update(image_path="0_random_140/gone.png"))
    f["suite_odd_rle"] = variant("suite-odd-rle", lambda m: m[first].update(mask=[0, 10, 20]))
    f["suite_negative_rle"] = variant("suite-negative-rle", lambda m: m[first].update(mask=[-5, 10]))
    f["suite_string_rle"] = variant("suite-string-rle", lambda m: m[first].update(mask="0 10 20 30"))
    f["suite_no_field"] = variant("suite-no-field", lambda m: (m[first].pop("original_prompt"), None)[1])
    f["suite_list"] = variant("suite-list", lambda m: list(m.values()))
    f["suite_bad_scene"] = variant("suite-bad-scene", lambda m: m[first]["target_scene"].update(style="cubist"))
    s = d / "suite-not-json"
    shutil.copytree(d / "suite", s)
    (s / "mapping_file.json").write_bytes(b'{"0": {"image_path": \xff')
    f["suite_not_json"] = s
    (d / "not-a-suite").mkdir()
    f["not_a_suite"] = d / "not-a-suite"
    # model folders: the shipped generator's folder, linked, with its UNet weights missing or pickled
    src = ROOT / "models" / "shapes-turbo"
    for name in ("model-no-weights", "model-pickle"):
        m = d / name
        m.mkdir()
        for item in src.iterdir():
            if item.name != "unet":
                (m / item.name).symlink_to(item)
        (m / "unet").mkdir()
        (m / "unet" / "config.json").symlink_to(src / "unet" / "config.json")
        f[name.replace("-", "_")] = m
    import torch

    torch.save({"conv_in.weight": torch.zeros(1)}, f["model_pickle"] / "unet" / "diffusion_pytorch_model.bin")
    (d / "empty-model").mkdir()
    f["empty_model"] = d / "empty-model"
    reader = d / "reader-pickle"
    reader.mkdir()
    shutil.copy(ROOT / "models" / "scene-reader" / "config.json", reader / "config.json")
    torch.save({"x": torch.zeros(1)}, reader / "model.bin")
    f["reader_pickle"] = reader
    torn = d / "reader-torn"
    torn.mkdir()
    shutil.copy(ROOT / "models" / "scene-reader" / "config.json", torn / "config.json")
    (torn / "model.safetensors").write_bytes((ROOT / "models" / "scene-reader" / "model.safetensors").read_bytes()[:1000])
    f["reader_torn"] = torn
    f["out"] = d / "out" / "edited.png"
    return f


def _edit(img: str, *rest: str, instruction: str | None = "make it a pencil sketch") -> Callable[[dict], list[str]]:
    def argv(f: dict) -> list[str]:
        out = ["edit", str(f[img])] + ([instruction] if instruction is not None else [])
        return out + ["-o", str(f["out"])] + [str(f[r[1:]]) if r.startswith("@") else r for r in rest]

    return argv


PROMPTS = ("--source-prompt", "a photo", "--target-prompt", "a pencil sketch")


def _result(size: tuple[int, int] | None = None, same_outside: str | None = None) -> Callable[[dict, str], None]:
    """A successful edit: the output exists, is RGB of the (upright) input's size, and with a mask keeps the
    upright input bit for bit outside it."""

    def check(f: dict, out: str) -> None:
        res = np.asarray(Image.open(f["out"]))
        lines = [json.loads(x) for x in out.strip().splitlines()]
        assert lines and lines[-1]["output"] == str(f["out"])
        h, w = size or (128, 128)
        assert res.shape == (h, w, 3), res.shape
        if same_outside == "bottom":
            assert np.array_equal(res[64:], f["scene_arr"][64:])
            assert not np.array_equal(res[:64], f["scene_arr"][:64])

    return check


def _parse_check(f: dict, out: str) -> None:
    assert "no Shapes-world object found" in out


def _prompts_not_utf8(f: dict) -> list[str]:
    return ["generate", "--prompts", str(f["prompts_latin1"]), "--out", str(f["out"].parent / "gen")]


NO_SCENE = "found no Shapes-world scene"
CASES: list[Case] = [
    # -- images ------------------------------------------------------------------------------------------
    Case("missing-file", "images", "a path that does not exist", _edit("missing"), err=("not found",), names=("missing",)),
    Case("zero-bytes", "images", "a zero-byte file", _edit("zero"), err=("not a readable image",), names=("zero",)),
    Case("text-as-png", "images", "a text file named .png", _edit("text"), err=("not a readable image",), names=("text",)),
    Case(
        "truncated-png", "images", "a PNG cut off after 300 bytes", _edit("truncated"), err=("not a readable image",), names=("truncated",)
    ),
    Case("one-pixel", "images", "a 1x1 image", _edit("tiny"), err=("1x1; sides must lie in [16, 4096]",), names=("tiny",)),
    Case("10000x10", "images", "a 10000x10 image", _edit("long"), err=("10000x10; sides must lie in",), names=("long",)),
    Case(
        "bomb",
        "images",
        "a 30000x30000 PNG (decompression bomb)",
        _edit("bomb"),
        err=("DecompressionBombError", "could be decompression bomb"),
        names=("bomb",),
    ),
    Case(
        "tiff-rational-offset",
        "images",
        "a TIFF whose strip offset is a rational number (found by the fuzzer)",
        _edit("tiff_rational"),
        err=("not a readable image (TypeError",),
        names=("tiff_rational",),
    ),
    Case(
        "transparent",
        "images",
        "RGBA with transparent pixels",
        _edit("rgba_transparent"),
        err=("has transparent pixels (100 of 16384",),
        names=("rgba_transparent",),
        outcome="refused: flatten it first",
    ),
    Case(
        "opaque-rgba", "images", "RGBA, every pixel opaque", _edit("rgba_opaque"), rc=0, check=_result(), outcome="edited (alpha dropped)"
    ),
    Case(
        "grey",
        "images",
        "8-bit grey (L)",
        _edit("grey", *PROMPTS, instruction=None),
        rc=0,
        check=_result(),
        outcome="edited (converted to RGB)",
    ),
    Case("palette", "images", "palette (P)", _edit("palette"), rc=0, check=_result(), outcome="edited (converted to RGB)"),
    Case(
        "grey-16-bit",
        "images",
        "16-bit grey PNG",
        _edit("grey16", *PROMPTS, instruction=None),
        rc=0,
        check=_result(),
        outcome="edited (value / 257)",
    ),
    Case(
        "float-01",
        "images",
        "float TIFF in [0, 1]",
        _edit("float", *PROMPTS, instruction=None),
        rc=0,
        check=_result(),
        outcome="edited (value x 255)",
    ),
    Case(
        "float-range",
        "images",
        "float TIFF in [0, 1000]",
        _edit("float_range"),
        err=("is a float image with values in [", "reads floats in [0, 1] only"),
        names=("float_range",),
    ),
    Case(
        "int32",
        "images",
        "32-bit integer TIFF above 65535",
        _edit("int32"),
        err=("32-bit integer image with values in [70000, 70000]",),
        names=("int32",),
    ),
    Case(
        "cmyk-scene",
        "images",
        "a world scene saved as a CMYK JPEG",
        _edit("scene_cmyk", *PROMPTS, instruction=None),
        rc=0,
        check=_result(),
        outcome="edited (CMYK converted)",
    ),
    Case(
        "animated-gif",
        "images",
        "an animated GIF",
        _edit("anim", *PROMPTS, instruction=None),
        rc=0,
        check=_result(),
        outcome="edited (first frame)",
    ),
    Case(
        "exif-scene",
        "images",
        "a world scene stored sideways with EXIF orientation 6, mask on the upright top half",
        _edit("scene_exif", "--mask", "@mask_half"),
        rc=0,
        check=_result(same_outside="bottom"),
        outcome="edited upright; the bottom half is the upright input, bit for bit",
    ),
    Case(
        "photo-cmyk",
        "images",
        "a photo (scikit-image astronaut) as a CMYK JPEG",
        _edit("photo_cmyk"),
        err=(NO_SCENE, "--source-prompt"),
        names=("photo_cmyk",),
        outcome="refused: no Shapes-world scene; give both captions or --model",
    ),
    Case(
        "photo-exif",
        "images",
        "a photo (scikit-image chelsea) with EXIF orientation 6",
        _edit("photo_exif"),
        err=(NO_SCENE,),
        names=("photo_exif",),
        outcome="refused: no Shapes-world scene",
    ),
    Case(
        "photo-captions",
        "images",
        "a 600x400 photo with both captions given",
        _edit("photo", *PROMPTS, instruction=None),
        rc=0,
        check=_result((400, 600)),
        outcome="edited by the Shapes model (output 600x400)",
    ),
    Case(
        "photo-parse",
        "images",
        "`world parse` of a grey photo (scikit-image camera)",
        lambda f: ["world", "parse", str(f["camera"])],
        rc=0,
        check=_parse_check,
        outcome="parsed: 'no Shapes-world object found' (was KeyError: 0)",
    ),
    # -- masks -------------------------------------------------------------------------------------------
    Case(
        "mask-size",
        "masks",
        "a 64x64 mask for a 128x128 image",
        _edit("scene", "--mask", "@mask_small"),
        err=("64x64 but the image is 128x128",),
        names=("mask_small",),
    ),
    Case("mask-rgb", "masks", "an RGB mask", _edit("scene", "--mask", "@mask_rgb"), err=("has mode 'RGB'",), names=("mask_rgb",)),
    Case(
        "mask-empty",
        "masks",
        "an all-black mask",
        _edit("scene", "--mask", "@mask_empty"),
        err=("selects no pixel",),
        names=("mask_empty",),
    ),
    Case(
        "mask-white",
        "masks",
        "an all-white mask",
        _edit("scene", "--mask", "@mask_white"),
        rc=0,
        check=_result(),
        outcome="edited everywhere",
    ),
    Case(
        "mask-not-image",
        "masks",
        "a text file as the mask",
        _edit("scene", "--mask", "@text"),
        err=("not a readable image",),
        names=("text",),
    ),
    Case(
        "mask-missing",
        "masks",
        "a mask path that does not exist",
        _edit("scene", "--mask", "@missing"),
        err=("not found",),
        names=("missing",),
    ),
    Case(
        "mask-exif",
        "masks",
        "image and mask both stored sideways with EXIF orientation 6",
        _edit("scene_exif", "--mask", "@mask_exif"),
        rc=0,
        check=_result(same_outside="bottom"),
        outcome="edited; the mask is read upright like the image",
    ),
    Case(
        "mask-stored-orientation",
        "masks",
        "a mask drawn on a rotated image's stored pixels",
        _edit("wide_exif", "--mask", "@mask_stored"),
        err=("128x192 but the image is 192x128 (upright, after its EXIF orientation)",),
        names=("mask_stored",),
    ),
    # -- prompts and instructions ------------------------------------------------------------------------
    Case("empty-instruction", "prompts", "an empty instruction", _edit("scene", instruction=""), err=("the instruction is empty",)),
    Case(
        "blank-instruction",
        "prompts",
        "an instruction of spaces and tabs",
        _edit("scene", instruction=" \t "),
        err=("the instruction is empty",),
    ),
    Case("no-instruction", "prompts", "no instruction at all", _edit("scene", instruction=None), err=("the instruction is empty",)),
    Case(
        "100kb-instruction",
        "prompts",
        "a 100 KB instruction",
        _edit("scene", instruction="make it blue " * 8000),
        err=("the instruction is 104000 characters long; at most 10000",),
    ),
    Case(
        "control-chars",
        "prompts",
        "an instruction with an ANSI escape",
        _edit("scene", instruction="make it \x1b[31mred"),
        err=("control character U+001B at character 9",),
    ),
    Case(
        "non-utf8-argv",
        "prompts",
        "an instruction with the byte 0xff (as a shell passes it)",
        _edit("scene", instruction=os.fsdecode(b"make it \xff blue")),
        err=("not valid UTF-8 text",),
    ),
    Case("non-utf8-file", "prompts", "a prompts file in Latin-1", _prompts_not_utf8, err=("is not UTF-8 text",), names=("prompts_latin1",)),
    Case(
        "newline-instruction",
        "prompts",
        "an instruction with a line break",
        _edit("scene", instruction="make it a\npencil sketch"),
        rc=0,
        check=_result(),
        outcome="edited (line breaks read as spaces)",
    ),
    Case(
        "unmappable",
        "prompts",
        "an instruction the rules rewriter cannot map",
        _edit("scene", instruction="make the elephant fly"),
        err=("cannot map",),
    ),
    Case(
        "control-target",
        "prompts",
        "a --target-prompt with a NUL-like control character",
        _edit("scene", "--target-prompt", "a\x07sketch", instruction=None),
        err=("--target-prompt holds the control character U+0007",),
    ),
    # -- options -----------------------------------------------------------------------------------------
    Case("strength-high", "options", "--strength 3", _edit("scene", "--strength", "3"), err=("--strength must lie in [0, 1.5]",)),
    Case(
        "strength-nan", "options", "--strength nan", _edit("scene", "--strength", "nan"), err=("--strength must lie in [0, 1.5], got nan",)
    ),
    Case("strength-not-number", "options", "--strength high", _edit("scene", "--strength", "high"), err=("invalid float value: 'high'",)),
    Case("unknown-method", "options", "--method magic", _edit("scene", "--method", "magic"), err=("unknown method 'magic'",)),
    Case(
        "reference-method",
        "options",
        "--method identity (a benchmark-only method)",
        _edit("scene", "--method", "identity"),
        err=("only runs inside `retouch bench`",),
    ),
    Case(
        "model-not-model",
        "options",
        "--model an empty folder",
        lambda f: ["generate", "a red star", "-o", str(f["out"]), "--model", str(f["empty_model"])],
        err=("is not a diffusers folder: it has no model_index.json",),
        names=("empty_model",),
    ),
    Case(
        "model-is-file",
        "options",
        "--model a file",
        lambda f: ["generate", "a red star", "-o", str(f["out"]), "--model", str(f["text"])],
        err=("is a file, not a diffusers folder",),
        names=("text",),
    ),
    Case(
        "recipe-unknown-key",
        "options",
        "a recipe with an unknown key",
        lambda f: ["train", str(f["recipe_unknown_key"])],
        err=("unknown settings ['stepz']",),
        names=("recipe_unknown_key",),
    ),
    Case(
        "recipe-wrong-type",
        "options",
        "a recipe with a string for an integer",
        lambda f: ["train", str(f["recipe_wrong_type"])],
        err=("wrong setting for task 'scene-reader': steps: Input should be a valid integer",),
        names=("recipe_wrong_type",),
    ),
    Case(
        "recipe-unknown-task",
        "options",
        "a recipe with an unknown task",
        lambda f: ["train", str(f["recipe_unknown_task"])],
        err=("unknown task 'make-it-good'",),
        names=("recipe_unknown_task",),
    ),
    Case(
        "recipe-list",
        "options",
        "a recipe that is a JSON list",
        lambda f: ["train", str(f["recipe_list"])],
        err=("must be a JSON object with a 'task'",),
        names=("recipe_list",),
    ),
    Case(
        "recipe-broken",
        "options",
        "a recipe cut off mid-JSON",
        lambda f: ["train", str(f["recipe_broken"])],
        err=("is not valid JSON",),
        names=("recipe_broken",),
    ),
    Case(
        "recipe-latin1",
        "options",
        "a recipe in Latin-1",
        lambda f: ["train", str(f["recipe_latin1"])],
        err=("is not valid JSON",),
        names=("recipe_latin1",),
    ),
    Case(
        "bench-bad-set",
        "options",
        "`bench --set mask` (no value)",
        lambda f: ["bench", str(f["suite"]), "--method", "identity", "--set", "mask"],
        err=("--set takes KEY=VALUE",),
    ),
    Case(
        "bench-unknown-setting",
        "options",
        "`bench --set colour=red` for turbo",
        lambda f: ["bench", str(f["suite"]), "--method", "turbo", "--set", "colour=red"],
        err=("has no such setting", "colour"),
    ),
    # -- output paths ------------------------------------------------------------------------------------
    Case(
        "out-is-dir",
        "outputs",
        "-o names a folder",
        lambda f: _edit("scene")(f)[:-2] + ["-o", str(f["out_dir"])],
        err=("is a folder",),
        names=("out_dir",),
    ),
    Case(
        "out-under-file",
        "outputs",
        "-o under a file",
        lambda f: _edit("scene")(f)[:-2] + ["-o", str(f["out_under_file"])],
        err=("is a file, not a folder",),
        names=("text",),
    ),
    Case(
        "out-read-only",
        "outputs",
        "-o in a read-only folder",
        lambda f: _edit("scene")(f)[:-2] + ["-o", str(f["read_only"] / "e.png")],
        err=("is not writable",),
        names=("read_only",),
    ),
    Case(
        "out-is-input",
        "outputs",
        "-o is the input image",
        lambda f: _edit("scene")(f)[:-2] + ["-o", str(f["scene"])],
        err=("never writes over its input",),
        names=("scene",),
    ),
    Case(
        "out-gif",
        "outputs",
        "-o with a .gif suffix",
        lambda f: _edit("scene")(f)[:-2] + ["-o", str(f["out"].with_suffix(".gif"))],
        err=("output must be .png, .jpg or .webp",),
    ),
    # -- suites ------------------------------------------------------------------------------------------
    Case(
        "suite-missing-image",
        "suites",
        "mapping_file.json naming a missing image",
        lambda f: ["bench", str(f["suite_missing_image"]), "--method", "identity"],
        err=("image_path", "gone.png not found"),
        names=("suite_missing_image",),
    ),
    Case(
        "suite-odd-rle",
        "suites",
        "an RLE mask with an odd number of values",
        lambda f: ["bench", str(f["suite_odd_rle"]), "--method", "identity"],
        err=("RLE mask has an odd number of values (3)",),
        names=("suite_odd_rle",),
    ),
    Case(
        "suite-negative-rle",
        "suites",
        "an RLE mask with a negative start",
        lambda f: ["bench", str(f["suite_negative_rle"]), "--method", "identity"],
        err=("RLE mask value 0 is -5",),
        names=("suite_negative_rle",),
    ),
    Case(
        "suite-string-rle",
        "suites",
        "an RLE mask given as a string",
        lambda f: ["bench", str(f["suite_string_rle"]), "--method", "identity"],
        err=("RLE mask must be a list of integers, got str",),
        names=("suite_string_rle",),
    ),
    Case(
        "suite-no-field",
        "suites",
        "a case without original_prompt",
        lambda f: ["bench", str(f["suite_no_field"]), "--method", "identity"],
        err=("lacks field 'original_prompt'",),
        names=("suite_no_field",),
    ),
    Case(
        "suite-list",
        "suites",
        "mapping_file.json holding a list",
        lambda f: ["bench", str(f["suite_list"]), "--method", "identity"],
        err=("must hold a JSON object keyed by case id, got list",),
        names=("suite_list",),
    ),
    Case(
        "suite-bad-scene",
        "suites",
        "a target scene with an unknown style",
        lambda f: ["bench", str(f["suite_bad_scene"]), "--method", "identity"],
        err=("unknown style 'cubist'",),
        names=("suite_bad_scene",),
    ),
    Case(
        "suite-not-json",
        "suites",
        "mapping_file.json with a non-UTF-8 byte",
        lambda f: ["bench", str(f["suite_not_json"]), "--method", "identity"],
        err=("is not valid JSON",),
        names=("suite_not_json",),
    ),
    Case(
        "not-a-suite",
        "suites",
        "a folder without mapping_file.json",
        lambda f: ["bench", str(f["not_a_suite"]), "--method", "identity"],
        err=("mapping_file.json missing",),
        names=("not_a_suite",),
    ),
    Case(
        "suite-exists",
        "suites",
        "`world bench` into a finished suite",
        lambda f: ["world", "bench", "--out", str(f["suite"]), "--n", "10"],
        err=("already exists; choose an empty folder",),
        names=("suite",),
    ),
    # -- model folders -----------------------------------------------------------------------------------
    Case(
        "model-no-weights",
        "models",
        "a generator folder whose UNet weights are missing",
        lambda f: ["generate", "a red star", "-o", str(f["out"]), "--model", str(f["model_no_weights"])],
        err=("diffusion_pytorch_model.safetensors",),
        names=("model_no_weights",),
    ),
    Case(
        "model-pickle",
        "models",
        "a generator folder whose UNet is a pickle (.bin)",
        lambda f: ["generate", "a red star", "-o", str(f["out"]), "--model", str(f["model_pickle"])],
        err=("diffusion_pytorch_model.safetensors",),
        names=("model_pickle",),
        outcome="refused: only safetensors are loaded",
    ),
    Case(
        "reader-pickle",
        "models",
        "a scene reader folder with a pickle (model.bin)",
        lambda f: ["world", "parse", str(f["scene"]), "--reader", str(f["reader_pickle"])],
        err=("only safetensors are loaded",),
        names=("reader_pickle",),
    ),
    Case(
        "reader-torn",
        "models",
        "a scene reader whose safetensors file is cut off",
        lambda f: ["world", "parse", str(f["scene"]), "--reader", str(f["reader_torn"])],
        err=("is not this scene reader's weights",),
        names=("reader_torn",),
    ),
]


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict:
    return build_files(tmp_path_factory.mktemp("catalogue"))


@pytest.fixture(scope="module", autouse=True)
def _methods_once():
    """One turbo method (one model load) for every successful edit of the module."""
    import retouch.edit as edit_mod

    real = edit_mod.get_method
    cached = functools.lru_cache(maxsize=None)(lambda name, items: real(name, **dict(items)))
    edit_mod.get_method = lambda name, **kw: cached(name, tuple(sorted(kw.items())))
    yield
    edit_mod.get_method = real


def test_the_catalogue_has_forty_kinds():
    assert len(CASES) >= 40 and len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_case(case: Case, files: dict, capsys):
    if case.id == "out-read-only" and os.geteuid() == 0:
        pytest.skip("root writes into read-only folders; the check is os.access, which root passes")
    out = files["out"]
    for p in out.parent.glob("*"):
        p.unlink() if p.is_file() else shutil.rmtree(p)
    logging.getLogger().handlers.clear()  # main() sets up logging on the stream capsys gives this case
    for lg in [logging.getLogger(n) for n in list(logging.Logger.manager.loggerDict)]:
        for h in getattr(lg, "handlers", []):  # libraries' own handlers (diffusers') hold an earlier case's stream
            if type(h) is logging.StreamHandler:
                h.stream = sys.stderr
                if "flush" in vars(h):  # diffusers and transformers bind the flush of the stderr they started with
                    h.flush = sys.stderr.flush
    try:
        rc = main(case.argv(files))
    except SystemExit as e:  # argparse's own errors: usage, then one error line
        rc = e.code
    cap = capsys.readouterr()
    text = cap.out + cap.err
    assert "Traceback" not in text
    assert rc == case.rc, (rc, cap.err[-2000:])
    if case.rc == 2:
        # one error line, the last (a library may log a warning before it; argparse prints its usage first)
        last = cap.err.strip().splitlines()[-1]
        assert last.startswith(("retouch: error: ", "retouch edit: error: ")), cap.err
        assert sum(line.startswith("retouch") for line in cap.err.splitlines()) == 1, cap.err
        for s in case.err:
            assert s in cap.err, (s, cap.err)
        for n in case.names:
            assert str(files[n]) in cap.err, (n, cap.err)
        assert not out.exists()  # nothing written
    else:
        case.check(files, cap.out)


def test_sixteen_bit_and_exif_conversions_are_exact(files):
    """The conversions the catalogue's edits rely on, checked pixel for pixel."""
    from retouch.edit import load_image, load_mask

    g16 = load_image(files["grey16"])
    assert np.array_equal(g16[..., 0], np.round(files["grey16_arr"] / 257.0).astype(np.uint8))
    assert np.array_equal(load_image(files["scene_exif"]), files["scene_arr"])  # upright again
    m = load_mask(files["mask_exif"], (128, 128))
    assert m[:64].all() and not m[64:].any()
    assert np.array_equal(load_image(files["rgba_opaque"]), files["scene_arr"])
    first = np.asarray(Image.open(files["anim"]).convert("RGB"))  # frame 0
    assert np.array_equal(load_image(files["anim"]), first)


def markdown() -> str:
    rows = ["| kind | input | outcome |", "|---|---|---|"]
    for c in CASES:
        outcome = c.outcome or (f"exit 2: `{c.err[0]}`" if c.rc == 2 else "exit 0")
        if c.rc == 2 and c.outcome:
            outcome = f"exit 2: {c.outcome} (`{c.err[0]}`)"
        elif c.rc == 0:
            outcome = f"exit 0: {c.outcome}"
        rows.append(f"| {c.kind} | {c.what} | {outcome} |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    print(markdown())
