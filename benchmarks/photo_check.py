"""How the Shapes captioner tells world scenes from other images (retouch.caption.SceneReaderCaptioner.read):
the scene reader's parse is rendered and compared with the image cell by cell (caption.cell_error); an image
with no object, or farther than caption.MAX_CELL_ERROR, is refused.  This measures that error on fresh
world renders, on turbo's own one-turn outputs (which later turns caption again) and on the sample photos
of scikit-image and scikit-learn.

    python benchmarks/photo_check.py --renders 1000 --edits 50
"""

from __future__ import annotations

import argparse
import json
import random

import numpy as np
import torch
from PIL import Image

from retouch.caption import MAX_CELL_ERROR, NoSceneError, SceneReaderCaptioner, cell_error
from retouch.world import random_scene, render
from retouch.world.reader import read_scenes


def error_of(cap: SceneReaderCaptioner, img: np.ndarray) -> tuple[int, float]:
    """(objects found, cell error) as the captioner computes them."""
    img = np.asarray(Image.fromarray(img).resize((cap.size, cap.size), Image.BICUBIC)) if img.shape[:2] != (cap.size,) * 2 else img
    (scene,) = read_scenes(cap.reader, img[None])
    return len(scene.objects), cell_error(render(scene, cap.size), img)


def photos() -> dict[str, np.ndarray]:
    import skimage.data as d
    from sklearn.datasets import load_sample_images

    names = [
        "astronaut",
        "coffee",
        "chelsea",
        "rocket",
        "camera",
        "immunohistochemistry",
        "hubble_deep_field",
        "retina",
        "page",
        "text",
        "moon",
        "horse",
        "coins",
        "brick",
        "grass",
        "gravel",
        "colorwheel",
        "logo",
    ]
    out = {}
    for n in names:
        a = np.asarray(getattr(d, n)())
        if a.dtype == bool:
            a = a.astype(np.uint8) * 255
        if a.ndim == 2:
            a = np.stack([a] * 3, -1)
        out[n] = np.ascontiguousarray(a[..., :3].astype(np.uint8))
    for i, a in enumerate(load_sample_images().images):
        out[f"sklearn-{i}"] = a
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--renders", type=int, default=1000)
    ap.add_argument("--edits", type=int, default=50)
    ap.add_argument("--seed", type=int, default=11)
    a = ap.parse_args()
    torch.set_num_threads(1)
    cap = SceneReaderCaptioner()
    rng = random.Random(a.seed)
    world = [error_of(cap, render(random_scene(rng)))[1] for _ in range(a.renders)]
    from retouch.edit import Editor
    from retouch.world.suite import generate_edits

    ed = Editor("turbo")
    edited = []
    for k, (_, e) in enumerate(generate_edits(700, 3)):
        if len(edited) >= a.edits:
            break
        if k % 14:
            continue
        try:
            out = ed.edit(e.render_source(), e.instruction)[0].image
        except ValueError:
            continue
        edited.append(error_of(cap, out)[1])
    ph = {}
    for n, img in photos().items():
        objs, err = error_of(cap, img)
        try:
            cap.read(img)
            verdict = "accepted"
        except NoSceneError:
            verdict = "refused"
        ph[n] = {"objects": objs, "cell_error": round(err, 1), "verdict": verdict}
    result = {
        "threshold": MAX_CELL_ERROR,
        "world_renders": {"n": len(world), "max": round(max(world), 1), "p99": round(float(np.percentile(world, 99)), 1)},
        "turbo_outputs": {
            "n": len(edited),
            "max": round(max(edited), 1),
            "p95": round(float(np.percentile(edited, 95)), 1),
            "refused": sum(e > MAX_CELL_ERROR for e in edited),
        },
        "photos": ph,
        "photos_refused": sum(v["verdict"] == "refused" for v in ph.values()),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
