"""docs/images/region-demo.png: two chained instructions on a world sample with the `region` method, one row per
region source (the learned predictor; the generator's own region).  Columns: input, region of turn 1 (white = edit),
turn 1, region of turn 2, turn 2.

    python benchmarks/region_demo.py --seed 3 --out docs/images/region-demo.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
FIRST = "change the background to a starry night sky"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=3, help="the world sample (`retouch world sample --seed S`)")
    ap.add_argument("--first", default=FIRST)
    ap.add_argument("--second", default=None, help="default: recolour the scene's first object")
    ap.add_argument("--out", default=str(ROOT / "docs" / "images" / "region-demo.png"))
    args = ap.parse_args(argv)
    import random

    from retouch.methods import EditRequest, get_method
    from retouch.world.captions import detailed_caption
    from retouch.world.render import render
    from retouch.world.scene import random_scene

    scene = random_scene(random.Random(args.seed))
    image = render(scene)
    print("scene:", detailed_caption(scene))
    if args.second is None:
        o = scene.objects[0]
        colour = next(c for c in ("green", "blue", "red", "yellow") if c != o.color)
        args.second = f"make the {o.color} {o.shape} {colour}"
    rows = []
    for source in ("predictor", "generator"):
        method = get_method("region", region_from=source)
        cells, current = [image], image
        for instruction in (args.first, args.second):
            res = method.edit(EditRequest(image=current, instruction=instruction))
            mask = (res.mask > 0).astype(np.uint8) * 255
            cells += [np.repeat(mask[..., None], 3, axis=-1), res.image]
            current = res.image
            print(source, instruction, "->", res.info.get("target_caption", "")[:100], res.info.get("warning", ""))
        rows.append(np.concatenate([np.pad(c, ((2, 2), (2, 2), (0, 0)), constant_values=255) for c in cells], axis=1))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.concatenate(rows, axis=0)).save(args.out)
    print("wrote", args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
