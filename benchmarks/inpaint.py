"""The fill benchmark of docs/inpaint.md: classic CPU methods on a Shapes-world fill suite with exact truth.

    python benchmarks/inpaint.py --task erase --n 500 --seed 4242 --out runs/inpaint-erase-4242

Writes the suite (``retouch world bench --task TASK``) to OUT/suite unless it is already there, scores the
reference rows (``identity``: the input unchanged, or for outpaint its edge pixels stretched; ``oracle``: the
truth) and each backend of ``--backends`` through the ``TASK`` method, and writes OUT/table.md and
OUT/<row>.json/.csv beside it.  ``--model`` adds inpainting model folders
(SD-inpainting or retouch's Shapes model), one row per ``--steps`` (and per ``--samples``: fills averaged).

    python benchmarks/inpaint.py --photos

erases a drawn mask (a brush stroke and a disc) from scikit-image's and scikit-learn's sample photos with
each classic backend and prints the in-mask PSNR against the photo, beside a flat fill with its mean colour.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

from retouch.atomic import write_text
from retouch.eval.fill_bench import FillBenchConfig, fill_table, run_fill_bench
from retouch.world.fill_suite import FILL_TASKS, write_fill_suite

logger = logging.getLogger(__name__)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--task", default="erase", choices=FILL_TASKS)
    p.add_argument("--n", type=int, default=500)
    p.add_argument("--seed", type=int, default=4242)
    p.add_argument("--out", default=None, help="output folder (default runs/inpaint-TASK-SEED)")
    p.add_argument("--backends", nargs="*", default=["telea", "ns", "biharmonic"])
    p.add_argument(
        "--model",
        nargs="*",
        default=[],
        help="inpainting model folders (PATH or LABEL=PATH: SD-inpainting or retouch's Shapes model), each one more row per --steps",
    )
    p.add_argument("--steps", nargs="*", type=int, default=[20, 8], help="DDIM steps for each --model row (ByteEdit: 20 and 8)")
    p.add_argument(
        "--samples", nargs="*", type=int, default=[None], help="fills averaged per case for each --model row (default: the model's own)"
    )
    p.add_argument(
        "--blend",
        nargs="*",
        type=float,
        default=[None],
        help="seam blend lengths, pixels, for each --model row (default: the crop's side / 16; 0: off)",
    )
    p.add_argument("--limit", type=int, default=None, help="score the first K cases only")
    p.add_argument("--no-reference", action="store_true", help="skip the identity and oracle rows")
    p.add_argument("--photos", action="store_true", help="the real-photo check instead of a suite")
    a = p.parse_args(argv)
    if a.photos:
        return photos(a.backends)
    out = Path(a.out or f"runs/inpaint-{a.task}-{a.seed}")
    suite = out / "suite"
    if not (suite / "mapping_file.json").exists():
        t0 = time.perf_counter()
        write_fill_suite(suite, a.task, n=a.n, seed=a.seed)
        print(f"wrote a {a.n}-case {a.task} suite (seed {a.seed}) to {suite} in {time.perf_counter() - t0:.1f} s", flush=True)
    else:
        meta = json.loads((suite / "suite.json").read_text())
        if (meta.get("task"), meta.get("n"), meta.get("seed")) != (a.task, a.n, a.seed):
            held = f"a {meta.get('n')}-case {meta.get('task')} suite of seed {meta.get('seed')}"
            raise SystemExit(f"{suite} holds {held}: choose another --out")
    rows: list[tuple[str, str, dict]] = [] if a.no_reference else [("identity", "identity", {}), ("oracle", "oracle", {})]
    if a.task == "inpaint":
        # a classic fill cannot draw what a prompt describes: inpaint rows need a model
        if not a.model:
            print("inpaint needs a diffusion inpainting model (--model): only the reference rows are scored", flush=True)
    else:
        rows += [(f"{a.task}-{b}", a.task, {"backend": b}) for b in a.backends]
    for spec in a.model:
        label, _, path = spec.rpartition("=")
        label = label or Path(path).name
        for steps in a.steps:
            for k in a.samples:
                for blend in a.blend:
                    opts = {"backend": "diffusion", "model": path, "steps": steps} | ({} if k is None else {"samples": k})
                    opts |= {} if blend is None else {"blend": blend}
                    name = f"{a.task}-{label}-{steps}" + ("" if k is None else f"x{k}") + ("" if blend is None else f"-blend{blend:g}")
                    rows.append((name, a.task, opts))
    summaries = []
    for name, method, options in rows:
        cfg = FillBenchConfig(str(suite), method, options=options, json_out=str(out / f"{name}.json"), limit=a.limit, label=name)
        s = run_fill_bench(cfg)
        summaries.append(s)
        print(fill_table([s]).splitlines()[-1], flush=True)
    table = fill_table(summaries)
    cmd = "python benchmarks/inpaint.py " + " ".join(argv if argv is not None else sys.argv[1:])
    threads = os.environ.get("OMP_NUM_THREADS", "unset")
    write_text(out / "table.md", f"# {a.task}, {a.n} cases, seed {a.seed} (Shapes world)\n\n`{cmd}` (OMP_NUM_THREADS={threads})\n\n{table}")
    print(table)
    print(f"wrote {out / 'table.md'}")
    return 0


def photos(backends: list[str]) -> int:
    import numpy as np
    import skimage.data
    from PIL import Image, ImageDraw
    from sklearn.datasets import load_sample_images

    from retouch import erase
    from retouch.eval.fill_bench import in_mask_metrics

    imgs = {
        "skimage astronaut": skimage.data.astronaut(),
        "skimage coffee": skimage.data.coffee(),
        "skimage chelsea": skimage.data.chelsea(),
    }
    imgs |= {f"sklearn {n}": a for n, a in zip(("china", "flower"), load_sample_images().images, strict=True)}
    imgs["coffee 2000x1500"] = np.asarray(Image.fromarray(skimage.data.coffee()).resize((2000, 1500), Image.BICUBIC))
    print("| photo | size | mask px | flat fill | " + " | ".join(backends) + " |")
    print("|---" * (4 + len(backends)) + "|")
    for name, img in imgs.items():
        h, w = img.shape[:2]
        m = Image.new("L", (w, h), 0)
        d = ImageDraw.Draw(m)
        d.line([(w * 0.2, h * 0.3), (w * 0.6, h * 0.45)], fill=255, width=max(6, h // 40))
        d.ellipse([w * 0.65, h * 0.6, w * 0.65 + h // 10, h * 0.6 + h // 10], fill=255)
        mask = np.asarray(m) > 0
        if name == "coffee 2000x1500":  # the crop strategy: a 100x100 mask in a large photo
            mask = np.zeros((h, w), bool)
            mask[700:800, 1000:1100] = True
        flat = img.copy()
        flat[mask] = img[~mask].mean(0).round().astype(np.uint8)
        cells = []
        for b in backends:
            t0 = time.perf_counter()
            out = erase(img, mask, backend=b).image
            cells.append(f"{in_mask_metrics(out, img, mask)['in_psnr']:.2f} dB ({time.perf_counter() - t0:.2f} s)")
        print(
            f"| {name} | {w}x{h} | {int(mask.sum())} | {in_mask_metrics(flat, img, mask)['in_psnr']:.2f} dB | " + " | ".join(cells) + " |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
