"""What a slot-adapter teacher's conditioning knows, against what its images show.

For a pipeline trained with ``slot_tokens`` (``recipes/experiments/shapes-teacher-slots.json``), the
training checkpoint's linear parse heads (``train/slot_parse.py``) read each place's slot vector from
held-out captions: is the place occupied, and each object attribute. High figures here with object
attributes at chance in the generated images mean the text side carries the scene and the UNet does
not yet draw it.

    python benchmarks/slot_parse.py runs/teacher-slots [--n 200] [--seed 99]
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import torch

from retouch.models import load_backbone
from retouch.train.slot_parse import SlotParseLoss, slot_labels
from retouch.world.captions import detailed_caption
from retouch.world.scene import Scene, random_scene


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model", help="a pipeline folder with text_adapter/ and the training checkpoint.pt beside it")
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--seed", type=int, default=99, help="caption seed, as `retouch world captions --seed`")
    ap.add_argument("--paraphrases", default="tests/fixtures/paraphrases.jsonl")
    args = ap.parse_args()
    torch.set_num_threads(2)
    bb = load_backbone(args.model)
    if bb.text_adapter is None:
        raise SystemExit(f"{args.model} has no text_adapter")
    state = torch.load(Path(args.model) / "checkpoint.pt", weights_only=False, map_location="cpu")
    heads = SlotParseLoss(bb.text_adapter.config.dim)
    heads.load_state_dict(state["parse"])
    # the heads were trained on the online adapter's vectors (the folder holds its EMA): read with that one
    bb.text_adapter = bb.text_adapter.float()
    bb.text_adapter.load_state_dict(state["adapter"])
    length = bb.tokenizers[0].model_max_length
    rng = random.Random(f"captions/{args.seed}")  # the scenes `retouch world captions --seed` writes
    scenes = [random_scene(rng) for _ in range(args.n)]
    sets = {"detailed": [(detailed_caption(s), s) for s in scenes]}
    rows = [json.loads(line) for line in Path(args.paraphrases).read_text().splitlines() if line.strip()]
    sets["paraphrases"] = [(r["caption"], Scene.from_dict(r["scene"])) for r in rows]
    out = {}
    for name, pairs in sets.items():
        with torch.no_grad():
            slots = bb.encode_text([c for c, _ in pairs]).tokens.float()[:, length:]  # (N, K, D)
        acc = heads.accuracy(slots, slot_labels([s for _, s in pairs]), torch.ones(len(pairs), dtype=torch.bool))
        out[name] = {"n": len(pairs)} | {k: round(v, 4) for k, v in acc.items()}
        print(name, json.dumps(out[name]))


if __name__ == "__main__":
    main()
