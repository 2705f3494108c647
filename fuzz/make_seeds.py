"""Write the seed corpus in fuzz/corpus/ (small files of every kind the decoders meet).

python fuzz/make_seeds.py
"""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))


def _img(mode: str, size=(16, 16)) -> Image.Image:
    rng = np.random.default_rng(len(mode))
    a = rng.integers(0, 256, (size[1], size[0], 4), dtype=np.uint8)
    base = Image.fromarray(a, "RGBA")
    if mode in ("RGBA",):
        return base
    return base.convert("RGB").convert(mode)


def images() -> dict[str, bytes]:
    out = {}

    def save(name: str, im: Image.Image, fmt: str, **kw) -> None:
        b = io.BytesIO()
        im.save(b, format=fmt, **kw)
        out[name] = b.getvalue()

    save("rgb.png", _img("RGB"), "PNG")
    save("grey.png", _img("L"), "PNG")
    save("palette.png", _img("P"), "PNG")
    save("rgba.png", _img("RGBA"), "PNG")
    opaque = _img("RGB").convert("RGBA")
    save("rgba-opaque.png", opaque, "PNG")
    save("one-bit.png", _img("1"), "PNG")
    save("grey16.png", Image.fromarray((np.arange(256).reshape(16, 16) * 250).astype(np.uint16)), "PNG")
    save("rgb.jpg", _img("RGB"), "JPEG", quality=80)
    save("cmyk.jpg", _img("RGB").convert("CMYK"), "JPEG")
    exif = Image.Exif()
    exif[0x0112] = 6
    save("exif-rot6.jpg", _img("RGB", (16, 24)), "JPEG", exif=exif)
    exif8 = Image.Exif()
    exif8[0x0112] = 8
    save("exif-rot8.png", _img("RGB", (24, 16)), "PNG", exif=exif8)
    save("rgb.gif", _img("P"), "GIF")
    save("rgb.bmp", _img("RGB"), "BMP")
    save("rgb.tiff", _img("RGB"), "TIFF")
    save("float.tiff", Image.fromarray(np.linspace(0, 1, 256, dtype=np.float32).reshape(16, 16)), "TIFF")
    save("float-big.tiff", Image.fromarray(np.linspace(0, 300, 256, dtype=np.float32).reshape(16, 16)), "TIFF")
    save("int32.tiff", Image.fromarray(np.arange(256, dtype=np.int32).reshape(16, 16) * 200), "TIFF")
    save("rgb.webp", _img("RGB"), "WEBP")
    save("ycbcr.jpg", _img("RGB").convert("YCbCr"), "JPEG")
    save("rgb.ico", _img("RGB"), "ICO")
    save("rgb.tga", _img("RGB"), "TGA")
    save("rgb.ppm", _img("RGB"), "PPM")
    save("grey.pgm", _img("L"), "PPM")
    frames = [_img("RGB"), _img("L").convert("RGB")]
    b = io.BytesIO()
    frames[0].save(b, format="GIF", save_all=True, append_images=frames[1:])
    out["anim.gif"] = b.getvalue()
    out["tiny.png"] = out["rgb.png"][:40]  # truncated
    out["empty"] = b""
    out["text.png"] = b"not an image"
    return out


def masks() -> dict[str, bytes]:
    out = {}
    for name, arr, mode in (
        ("half.png", np.pad(np.full((16, 8), 255, np.uint8), ((0, 0), (0, 8))), "L"),
        ("white.png", np.full((16, 16), 255, np.uint8), "L"),
        ("empty.png", np.zeros((16, 16), np.uint8), "L"),
        ("wide.png", np.full((16, 24), 255, np.uint8), "L"),
        ("tall.png", np.full((24, 16), 255, np.uint8), "L"),
    ):
        b = io.BytesIO()
        Image.fromarray(arr, mode).save(b, format="PNG")
        out[name] = b.getvalue()
    b = io.BytesIO()
    Image.fromarray(np.full((16, 16), 255, np.uint8)).convert("1").save(b, format="PNG")
    out["one-bit.png"] = b.getvalue()
    exif = Image.Exif()
    exif[0x0112] = 6
    b = io.BytesIO()
    Image.fromarray(np.full((24, 16), 255, np.uint8), "L").save(b, format="JPEG", exif=exif)
    out["exif-rot6.jpg"] = b.getvalue()
    return out


def pie() -> dict[str, bytes]:
    case = {
        "image_path": "0_random_140/a.png",
        "original_prompt": "a [cat] on grass",
        "editing_prompt": "a [dog] on grass",
        "editing_instruction": "make the cat a dog",
        "editing_type_id": "1",
        "blended_word": "cat dog",
        "mask": [0, 10, 40, 20],
    }
    from retouch.world.scene import Scene, WorldObject

    scene = Scene((WorldObject("star", "red", "small", "solid", "upright", "moon", 0),), "plain", "flat").to_dict()
    shapes = case | {"target_image_path": "target_images/a.png", "source_scene": scene, "target_scene": scene}
    return {
        "pie.json": json.dumps({"000000000000": case}).encode(),
        "shapes.json": json.dumps({"100000000000": shapes}).encode(),
        "two.json": json.dumps({"a": case, "b": case | {"mask": []}}).encode(),
        "missing.json": json.dumps({"a": case | {"image_path": "nope.png"}}).encode(),
        "odd-rle.json": json.dumps({"a": case | {"mask": [1, 2, 3]}}).encode(),
        "list.json": b"[1, 2]",
    }


def rle() -> dict[str, bytes]:
    return {"runs.json": b"[0, 3, 7, 100]", "odd.json": b"[1]", "neg.json": b"[-1, 4]", "empty.json": b"[]", "float.json": b"[0.5, 2]"}


def recipes() -> dict[str, bytes]:
    out = {p.name: p.read_bytes() for p in sorted((HERE.parent / "recipes").glob("*.json"))}
    out["tiny-reader.json"] = json.dumps({"task": "scene-reader", "steps": 2, "batch_size": 2, "width": 4}).encode()
    out["wrong-type.json"] = json.dumps({"task": "scene-reader", "steps": "many"}).encode()
    out["unknown-key.json"] = json.dumps({"task": "scene-reader", "stepz": 3}).encode()
    return out


def _multipart(fields: dict[str, str], files: dict[str, bytes]) -> bytes:
    b = b"retouchfuzz"
    out = b""
    for k, v in fields.items():
        out += b"--" + b + b"\r\n" + f'Content-Disposition: form-data; name="{k}"'.encode() + b"\r\n\r\n" + v.encode() + b"\r\n"
    for k, v in files.items():
        out += b"--" + b + b"\r\n" + f'Content-Disposition: form-data; name="{k}"; filename="{k}.png"'.encode()
        out += b"\r\nContent-Type: image/png\r\n\r\n" + v + b"\r\n"
    return out + b"--" + b + b"--\r\n"


def serve_form() -> dict[str, bytes]:
    img, msk = images()["rgb.png"], masks()["half.png"]
    return {
        "instruction.txt": _multipart({"instruction": "make it a pencil sketch"}, {"image": img}),
        "mask.txt": _multipart({"instruction": "make the star blue", "strength": "0.5"}, {"image": img, "mask": msk}),
        "target.txt": _multipart({"target_prompt": "a pencil sketch", "source_prompt": "a photo", "method": "turbo"}, {"image": img}),
        "both.txt": _multipart({"instruction": "x", "target_prompt": "y"}, {}),
        "strength.txt": _multipart({"instruction": "x", "strength": "9"}, {"image": img}),
    }


def serve_json() -> dict[str, bytes]:
    return {
        "generate.json": json.dumps({"prompt": "a red star", "steps": 4, "seed": 1}).encode(),
        "edit.json": json.dumps({"instruction": "make it blue", "strength": 0.5, "method": "turbo"}).encode(),
        "extra.json": json.dumps({"instruction": "make it blue", "colour": "red"}).encode(),
    }


def main() -> None:
    kinds = [("image", images()), ("mask", masks()), ("pie", pie()), ("rle", rle()), ("recipe", recipes())]
    kinds += [("serve-form", serve_form()), ("serve-json", serve_json())]
    for name, files in kinds:
        folder = HERE / "corpus" / name
        folder.mkdir(parents=True, exist_ok=True)
        for fname, data in files.items():
            (folder / f"seed-{fname}").write_bytes(data)
        print(f"{folder}: {len(files)} seeds")


if __name__ == "__main__":
    main()
