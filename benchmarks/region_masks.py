"""Region-predictor mask quality per edit type on a Shapes-PIE suite, against the world's exact edit masks (docs/region.md).

    python benchmarks/region_masks.py --predictor runs/region-probe --n 90 --seed 4242 --json runs/region-masks.json
    python benchmarks/region_masks.py --suite SUITE_DIR --predictor models/region-predictor      # an existing suite
    python benchmarks/region_masks.py --baseline whole --n 90 --seed 4242                        # the whole image as the mask
    python benchmarks/region_masks.py --baseline untrained --n 90 --seed 4242                    # a fresh, untrained predictor
    python benchmarks/region_masks.py --baseline oracle-grid --n 700 --seed 4242                 # the exact mask on the patch grid

``oracle-grid`` is the grid's ceiling: each case's exact mask pooled to the patch grid (``--grid``, default 8: the world
CLIP's 16-px patches on 128-px images), each cell's covered share thresholded, and the grid resized to the image as the
method does (``--upsample nearest``; ``bilinear`` resizes the shares before the threshold).  Without ``--threshold`` it
sweeps 0.1-0.9 and reports the threshold with the best local 0-8 mean (one threshold for every case).

Per type: IoU, precision, recall, how often the mask misses the changed object entirely (no shared pixel), the mask's
share of the image, and the milliseconds one mask prediction takes (CLIP features + instruction + predictor, one image).
The exact masks are read without PIE-Bench's one-pixel border.  "local 0-8" averages the nine local types 0-8
(style, whose mask is the whole image, apart): the issue's target (IoU >= 0.70).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from retouch.eval.masks import mask_scores, summarise  # noqa: E402
from retouch.world.edits import EDIT_TYPES  # noqa: E402


def cases_from(args) -> list[tuple[str, int, str, np.ndarray, np.ndarray]]:
    """(id, type, instruction, image, exact mask) per case: from --suite, or generated in memory from --n / --seed."""
    if args.suite:
        from retouch.world.suite import load_suite

        out = []
        for c in load_suite(args.suite):
            img = c.load_image()
            out.append((c.id, c.editing_type_id, c.editing_instruction, img, c.mask(img.shape[:2], border=False)))
        return out
    from retouch.world.suite import generate_edits

    return [(cid, e.type_id, e.instruction, e.render_source(), e.mask) for cid, e in generate_edits(args.n, args.seed)]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--predictor", default=None, help="region predictor folder (default: models/region-predictor)")
    ap.add_argument("--baseline", default=None, choices=["whole", "untrained", "oracle-grid"], help="score a reference mask instead")
    ap.add_argument("--grid", type=int, default=8, help="oracle-grid: cells per side (default 8: the world CLIP's patch grid)")
    ap.add_argument(
        "--upsample",
        default=None,
        choices=["nearest", "bilinear"],
        help="how a grid is resized to the image (default: the predictor's; nearest for oracle-grid)",
    )
    ap.add_argument("--suite", default=None, help="a Shapes-PIE suite folder (default: cases generated from --n / --seed)")
    ap.add_argument("--n", type=int, default=700)
    ap.add_argument("--seed", type=int, default=4242)
    ap.add_argument("--threshold", type=float, default=None, help="patch probability threshold (default: the predictor's)")
    ap.add_argument("--clip", default=None, help="CLIP folder (default: the one the predictor names)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    from retouch.methods.region import resolve_clip
    from retouch.models.region import (
        DEFAULT_REGION_PREDICTOR,
        ClipFeatures,
        InstructionEncoder,
        RegionPredictor,
        RegionPredictorConfig,
        region_mask,
    )

    cases = cases_from(args)
    if args.baseline == "oracle-grid":
        return oracle_grid(args, cases)
    predictor = clip = instructions = None
    if args.baseline != "whole":
        if args.baseline == "untrained":
            torch.manual_seed(0)
            predictor = RegionPredictor(RegionPredictorConfig()).eval()
            folder = DEFAULT_REGION_PREDICTOR
        else:
            folder = Path(args.predictor) if args.predictor else DEFAULT_REGION_PREDICTOR
            predictor = RegionPredictor.from_pretrained(folder)
        clip = ClipFeatures.load(Path(args.clip) if args.clip else resolve_clip(predictor.config.clip, folder))
        instructions = InstructionEncoder(layers=predictor.config.text_layers)
    th = args.threshold if args.threshold is not None else (predictor.config.threshold if predictor else None)
    mode = args.upsample or (predictor.upsample_mode if predictor else "nearest")
    rows, ms = [], []
    with torch.inference_mode():  # as the method predicts
        for cid, tid, instr, img, truth in cases:
            if predictor is None:
                pred = np.ones_like(truth)
            else:
                t0 = time.perf_counter()
                pixels = clip.pixels(img[None])
                _, p = clip.encode(pixels)
                tok, tm = instructions([instr])
                out = predictor(p, tok, tm, image=pixels if predictor.reads_image else None)
                pred = region_mask(out.mask_prob(), img.shape[:2], th, mode)[0]
                ms.append(1000 * (time.perf_counter() - t0))
            rows.append({"id": cid, "type": tid} | mask_scores(pred, truth))
    what = f"baseline {args.baseline}" if args.baseline else str(args.predictor or DEFAULT_REGION_PREDICTOR)
    if predictor is not None and predictor.refine is not None:
        what += f" (refined {predictor.config.refine}x{predictor.config.refine})"
    report(args, what, rows, th, mode, ms)
    return 0


def summary_of(rows: list[dict]) -> dict:
    summary = summarise(rows)
    local = [r for r in rows if r["type"] != 9]
    summary["local 0-8"] = summarise(local)["all"] if local else {}
    return summary


def report(args, what: str, rows: list[dict], th, mode: str, ms: list[float], extra: dict | None = None) -> None:
    summary = summary_of(rows)
    print(
        f"{what}: {len(rows)} cases, threshold {th}, upsample {mode}" + (f", mask prediction {np.median(ms):.1f} ms (median)" if ms else "")
    )
    print("| type | n | IoU | precision | recall | missed | mask share |\n|---|---|---|---|---|---|---|")
    for key, s in summary.items():
        name = f"{key} {EDIT_TYPES[int(key)]}" if key.isdigit() else key
        print(f"| {name} | {s['n']} | {s['iou']:.3f} | {s['precision']:.3f} | {s['recall']:.3f} | {s['miss']:.3f} | {s['fraction']:.3f} |")
    if args.json:
        out = {
            "what": what,
            "threshold": th,
            "upsample": mode,
            "n": len(rows),
            "ms_median": float(np.median(ms)) if ms else None,
            "by_type": summary,
            "rows": rows,
        } | (extra or {})
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n")


def oracle_grid(args, cases) -> int:
    """The exact masks pooled to a ``--grid`` x ``--grid`` grid, thresholded and resized back: the grid's ceiling."""
    import torch.nn.functional as F

    from retouch.models.region import region_mask

    mode = args.upsample or "nearest"
    rows_at: dict[float, list[dict]] = {}
    thresholds = [args.threshold] if args.threshold is not None else [round(0.1 * k, 1) for k in range(1, 10)]
    for cid, tid, _instr, _img, truth in cases:
        cover = F.adaptive_avg_pool2d(torch.from_numpy(truth.astype(np.float32))[None, None], args.grid)  # (1, 1, g, g)
        for th in thresholds:
            pred = region_mask(cover, truth.shape, th, mode)[0]
            rows_at.setdefault(th, []).append({"id": cid, "type": tid} | mask_scores(pred, truth))
    sweep = {th: summary_of(rows)["local 0-8"]["iou"] for th, rows in rows_at.items()}
    best = max(sweep, key=lambda th: (sweep[th], -abs(th - 0.5)))
    if len(sweep) > 1:
        print("local 0-8 IoU by threshold: " + ", ".join(f"{th}: {v:.3f}" for th, v in sweep.items()))
    report(args, f"baseline oracle-grid {args.grid}x{args.grid}", rows_at[best], best, mode, [], {"sweep_local_0_8": sweep})
    return 0


if __name__ == "__main__":
    sys.exit(main())
