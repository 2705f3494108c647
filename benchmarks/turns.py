"""MagicBrush-style multi-turn protocol on a Shapes-turns suite (``retouch world bench --turns 3``; docs/region.md).

    python benchmarks/turns.py --suite runs/turns-3 --method region --json runs/turns-region.json
    python benchmarks/turns.py --suite runs/turns-3 --method turbo --limit 10

Each session is edited turn after turn, each turn from the method's own previous output (MagicBrush's iterative
setting).  After each turn: L1 to the exact target render (mean absolute difference, [0, 1]), CLIP-I (cosine of the
world CLIP's image embeddings of output and truth; MagicBrush's CLIP-I), and success (the scene reader's parse of the
output equals the target scene exactly).  A turn whose method refuses its input (the captioner finds no scene in the
last output, say) keeps the last output and counts as a failure; the error is recorded.
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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--suite", required=True, help="a folder written by `retouch world bench --turns K`")
    ap.add_argument("--method", required=True, help="a registered method, or 'keep' (every turn returns its input: the no-edit floor)")
    ap.add_argument("--limit", type=int, default=None, help="the first K sessions")
    ap.add_argument("--clip", default=str(ROOT / "models" / "world-clip"))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--set", action="append", default=None, metavar="KEY=VALUE", help="a method setting, e.g. region_from=generator")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    from retouch.eval.clip import CLIPEmbedder
    from retouch.eval.metrics import scene_match
    from retouch.images import read_rgb
    from retouch.methods import EditRequest, get_method
    from retouch.world.reader import SceneReader, read_scenes
    from retouch.world.turn_suite import load_turn_suite

    sessions = load_turn_suite(args.suite)
    ids = sorted(sessions)[: args.limit]
    from retouch.batch import parse_settings

    try:
        options = parse_settings(args.set)
    except ValueError as e:
        ap.error(str(e))
    if options and args.method == "keep":
        ap.error("--set needs a method; 'keep' has no settings")
    method = None if args.method == "keep" else get_method(args.method, **options)
    clip = CLIPEmbedder.load(args.clip)
    reader = SceneReader.from_pretrained()
    rows = []
    t0 = time.perf_counter()
    for sid in ids:
        current = read_rgb(sessions[sid][0].input_path)
        for turn in sessions[sid]:
            row = {"session": sid, "turn": turn.index, "type": turn.editing_type_id}
            try:
                if method is not None:
                    current = method.edit(EditRequest(image=current, instruction=turn.instruction)).image
            except ValueError as e:
                row["error"] = str(e)[:200]
            truth = read_rgb(turn.output_path)
            row["l1"] = float(np.abs(current.astype(np.float32) - truth.astype(np.float32)).mean() / 255.0)
            e = clip.embed_images([current, truth])
            row["clip_i"] = float((e[0] * e[1]).sum())
            (parsed,) = read_scenes(reader, current[None])
            row["success"] = float(scene_match(parsed, turn.target_scene)["exact"]) if turn.target_scene else None
            rows.append(row)
    turns = sorted({r["turn"] for r in rows})
    summary = {
        k: {
            "n": len(rs),
            "l1": float(np.mean([r["l1"] for r in rs])),
            "clip_i": float(np.mean([r["clip_i"] for r in rs])),
            "success": float(np.mean([r["success"] for r in rs])),
            "refused": float(np.mean(["error" in r for r in rs])),
        }
        for k in turns
        for rs in [[r for r in rows if r["turn"] == k]]
    }
    print(f"{args.method} on {len(ids)} sessions of {args.suite} ({time.perf_counter() - t0:.0f} s)")
    print("| turn | n | L1 | CLIP-I | success | refused |\n|---|---|---|---|---|---|")
    for k, s in summary.items():
        print(f"| {k} | {s['n']} | {s['l1']:.4f} | {s['clip_i']:.4f} | {s['success']:.3f} | {s['refused']:.3f} |")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(
            json.dumps({"method": args.method, "suite": args.suite, "by_turn": summary, "rows": rows}, indent=1) + "\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
