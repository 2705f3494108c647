"""The user guide's pictures (docs/web.md): screenshots of the browser editor and its before/after grids, made by
driving the page in headless chromium (Playwright) against a `retouch serve` on a free loopback port.

    python benchmarks/web_screens.py [--out docs/images/web] [--size 256]

Every edited picture in the grids is what the page's Download button gave (the server's PNG, its record in the
text chunks); ``records.json`` beside them holds those records (captions, evaluations, seconds), the numbers
docs/web.md quotes.  Shapes-world scenes and the shipped models; needs chromium (apt-get install -y chromium).
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from retouch.web.browser import EditorPage, chromium, running_server
from retouch.world import random_scene, render_pil

logger = logging.getLogger(__name__)

EDITS = [  # (scene seed, instruction): the grid of before/after pairs
    (3, "change the background to a starry night sky"),
    (11, "change the background to a grassy field"),
    (5, "make it a sepia picture"),
    (21, "change the background to a sandy desert"),
    (3, "make the heart blue"),  # an object edit: what the Shapes models cannot do yet (docs/editing.md)
]
STRENGTH = (11, "change the background to a grassy field", (0.25, 0.5, 0.75, 1.0, 1.25))
MASKED = (5, "make it a sepia picture")  # with and without a brushed mask on the left half
LEFT_HALF = [(0.02, 0.05), (0.02, 0.95), (0.15, 0.95), (0.15, 0.05), (0.3, 0.05), (0.3, 0.95), (0.42, 0.95), (0.42, 0.05)]


def font(size: int = 15) -> ImageFont.ImageFont:
    for name in ("DejaVuSans.ttf", "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"):
        try:
            return ImageFont.truetype(name, size)
        except OSError:
            continue
    return ImageFont.load_default(size)


def wrap(draw: ImageDraw.ImageDraw, text: str, width: int, f) -> list[str]:
    lines, line = [], ""
    for word in text.split():
        trial = f"{line} {word}".strip()
        if draw.textlength(trial, font=f) <= width or not line:
            line = trial
        else:
            lines.append(line)
            line = word
    return [*lines, line] if line else lines


def grid(rows: list[list[tuple[np.ndarray, str]]], path: Path, pad: int = 8, label_lines: int = 3) -> None:
    """Tiles with a caption under each (rows of equal length), on a light background."""
    f = font()
    tile = max(max(im.shape[1] for im, _ in r) for r in rows)
    th = max(max(im.shape[0] for im, _ in r) for r in rows)
    line_h = 19
    cols = max(len(r) for r in rows)
    w = pad + cols * (tile + pad)
    h = pad + len(rows) * (th + label_lines * line_h + 2 * pad)
    out = Image.new("RGB", (w, h), (245, 246, 248))
    d = ImageDraw.Draw(out)
    for i, r in enumerate(rows):
        y = pad + i * (th + label_lines * line_h + 2 * pad)
        for j, (im, label) in enumerate(r):
            x = pad + j * (tile + pad)
            out.paste(Image.fromarray(im), (x, y))
            for k, line in enumerate(wrap(d, label, tile, f)[:label_lines]):
                d.text((x, y + th + 4 + k * line_h), line, fill=(30, 32, 36), font=f)
    path.parent.mkdir(parents=True, exist_ok=True)
    out.save(path, quality=92)  # JPEG: the pictures are for reading, the exact pixels are the test's business
    print(f"wrote {path} ({out.width}x{out.height})")


def shot(page, path: Path, full_page: bool = False) -> None:
    page.screenshot(path=path, type="jpeg", quality=85, full_page=full_page)
    print(f"wrote {path}")


def scene(seed: int, size: int, folder: Path) -> tuple[Path, np.ndarray]:
    p = folder / f"scene-{seed}.png"
    img = render_pil(random_scene(random.Random(seed)), size).convert("RGB")
    img.save(p)
    return p, np.asarray(img)


def cost(rec: dict) -> str:
    # seconds are left to records.json: on a shared machine they say more about its load than about the edit
    return f"{rec['nfe_inversion']}+{rec['nfe_edit']} evaluations"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="docs/images/web", help="folder for the pictures and records.json")
    ap.add_argument("--size", type=int, default=256, help="side of the rendered scenes in pixels")
    a = ap.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    records: dict[str, list[dict]] = {"edits": [], "strength": [], "masked": []}
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp, running_server(Path(tmp) / "serve.log", "--preload") as url, chromium() as browser:
        tmp = Path(tmp)
        page = browser.new_page(viewport={"width": 1280, "height": 820}, accept_downloads=True)
        ed = EditorPage(page)
        ed.goto(url)

        # before/after pairs, each a fresh session
        rows = []
        for n, (seed, instruction) in enumerate(EDITS):
            path, src = scene(seed, a.size, tmp)
            ed.open(path)
            ed.edit(instruction)
            edited, rec = ed.download(tmp / f"edit-{n}.png")
            records["edits"].append(rec)
            rows.append([(src, "before"), (edited, f"“{instruction}” ({cost(rec)})")])
            if n == 0:
                page.fill("#compare", "50")
                shot(page, out / "editor.jpg")
        # two pairs per row
        pairs = [rows[i] + (rows[i + 1] if i + 1 < len(rows) else []) for i in range(0, len(rows), 2)]
        grid(pairs, out / "grid-edits.jpg")

        # the strength slider on one session: one inversion, then each position costs the edit alone
        seed, instruction, strengths = STRENGTH
        path, src = scene(seed, a.size, tmp)
        ed.open(path)
        ed.edit(instruction)
        tiles = [(src, "before")]
        for s in strengths:
            ed.set_strength(s)
            im, rec = ed.download(tmp / f"strength-{s}.png")
            records["strength"].append(rec)
            tiles.append((im, f"strength {s:.2f} ({cost(rec)})"))
        grid([tiles], out / "grid-strength.jpg")

        # a mask brushed on the left half against none: outside the mask the picture is the input's
        seed, instruction = MASKED
        path, src = scene(seed, a.size, tmp)
        ed.open(path)
        ed.edit(instruction)
        unmasked, rec = ed.download(tmp / "unmasked.png")
        records["masked"].append(rec)
        ed.undo()
        ed.brush(LEFT_HALF, size=max(8, a.size // 6))
        mask = ed.mask()
        shot(page, out / "mask.jpg")
        ed.edit(instruction)
        masked, rec_m = ed.download(tmp / "masked.png")
        records["masked"].append(rec_m)
        page.check("#auto-show")
        page.wait_for_selector("#auto-mask:not([hidden])")
        page.fill("#compare", "0")
        shot(page, out / "auto-mask.jpg")
        page.uncheck("#auto-show")
        shown = np.where(mask[..., None], (0.5 * src + [128, 30, 48]).clip(0, 255), src).astype(np.uint8)
        grid(
            [
                [
                    (src, "before"),
                    (unmasked, f"no mask: the whole picture ({cost(rec)})"),
                    (shown, f"brushed mask ({100 * mask.mean():.0f}% of the image)"),
                    (masked, f"with the mask ({cost(rec_m)})"),
                ]
            ],
            out / "grid-mask.jpg",
        )

        # history: a second edit, undone
        ed.edit("change the background to a starry night sky")
        ed.undo()
        page.fill("#compare", "0")  # the whole picture is the current edit's
        shot(page, out / "history.jpg", full_page=True)
        page.close()
    records["seconds_total"] = round(time.perf_counter() - t_start, 1)
    (out / "records.json").write_text(json.dumps(records, indent=2) + "\n")
    print(f"wrote {out / 'records.json'}; {records['seconds_total']} s in all")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
