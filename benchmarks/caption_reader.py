"""The caption reader alone (text -> places), on captions it never saw in training (Shapes world).

    python benchmarks/caption_reader.py [--reader models/caption-reader] [--n 1000] [--n-other 300] [--seed 99] \\
        [--json runs/caption-reader.json] [--no-words]

Sets (every scene exact; none is in the reader's training data):
- ``detailed``: the world's detailed captions of the ``n`` scenes ``retouch world captions --seed SEED`` writes;
- ``varied``: the world's reworded training captions (``varied_caption``) of the first ``n-other`` of them;
- ``paraphrases`` (52) and ``paraphrases_more`` (108): the hand-written fixtures in ``tests/fixtures/``;
- ``paraphrases_blind`` (48): hand-written captions whose synonyms and phrasings were chosen before the lexicon's
  word lists were read, and never tuned on (``tests/fixtures/paraphrases_blind.jsonl``);
- ``short``: the world's one-line captions of the first ``n-other`` scenes (no places, no size / pattern / pose /
  emblem): places in reading order,
  shape, colour, background and style, and how often a left-out attribute reads as left out (top probability < 0.5);
- ``negatives``: hand-written text that is not about the world: how often ``read_scene`` refuses it.

For each set with exact scenes: per-attribute accuracy, exact scene (``read_scene`` gives the true scene), refused
(``read_scene`` raises), wrong (readable but not the true scene) and how many captions the reader rewrote in its own
words before reading (``models/caption_words.py``; ``--no-words``: the head alone, as before it). Also the speed.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from retouch.models.caption_reader import CaptionReader, decode_full
from retouch.models.layout import OBJECT_SLICES, SCENE_SLICES, LayoutReading
from retouch.train.caption_reader import evaluate_caption_reader, fixture_pairs, held_out_detailed
from retouch.train.t2i import encode_captions, text_encoder_and_tokenizer
from retouch.world.captions import short_caption, varied_caption
from retouch.world.scene import OBJECT_ATTRS, SCENE_ATTRS

ROOT = Path(__file__).resolve().parents[1]
NEGATIVES = (
    "",
    "   ",
    "a golden retriever running on the beach",
    "two people shaking hands in an office",
    "sunset over the mountains, oil painting",
    "a bowl of ramen with chopsticks",
    "the city skyline at night with neon lights",
    "a red sports car parked by a lake",
    "close-up photograph of a honeybee on a flower",
    "an astronaut riding a horse",
    "a cosy living room with a fireplace",
    "three kittens sleeping in a basket",
    "Generate an invoice for last month",
    "what is the capital of france?",
    "ok",
    "zzzzzz",
    "a man reading a newspaper on a train",
    "a plate of pancakes with maple syrup",
    "an aerial view of a busy harbour",
    "a snowy forest path in winter",
    "a violin resting on a wooden table",
    "children playing football in a park",
    "a lighthouse on a rocky coast during a storm",
    "minimalist logo of a coffee shop",
    "the mona lisa",
)


def short_set(scenes) -> list[tuple[str, object]]:
    """Short captions and the scene they say: objects in reading order."""
    out = []
    for s in scenes:
        objs = tuple(replace(o, slot=i) for i, o in enumerate(s.objects))
        out.append((short_caption(s), replace(s, objects=objs)))
    return out


def eval_short(pairs, reading: LayoutReading) -> dict:
    obj, glob = reading.objects.numpy(), reading.scene.numpy()
    hits = {k: [] for k in ("occupied", "shape", "color", "background", "style")}
    unsaid = {k: [] for k in ("size", "pattern", "pose", "emblem")}
    right = refused = 0
    for i, (cap, scene) in enumerate(pairs):
        occ_t = np.zeros(4, bool)
        for o in scene.objects:
            occ_t[o.slot] = True
            for k in ("shape", "color"):
                hits[k].append(OBJECT_ATTRS[k][int(np.argmax(obj[i, o.slot, OBJECT_SLICES[k]]))] == getattr(o, k))
            for k in unsaid:
                p = obj[i, o.slot, OBJECT_SLICES[k]] / max(obj[i, o.slot, 0], 1e-6)
                unsaid[k].append(bool(p.max() < 0.5))
        hits["occupied"].extend(((obj[i, :, 0] >= 0.5) == occ_t).tolist())
        for k in ("background", "style"):
            hits[k].append(SCENE_ATTRS[k][int(np.argmax(glob[i, SCENE_SLICES[k]]))] == getattr(scene, k))
        try:
            got = decode_full(reading, i, cap).scene
        except ValueError:
            refused += 1
            continue
        said = [(o.slot, o.shape, o.color) for o in got.objects] == [(o.slot, o.shape, o.color) for o in scene.objects]
        right += said and (got.background, got.style) == (scene.background, scene.style)
    n = len(pairs)
    return {
        "n": n,
        "attributes": {k: round(float(np.mean(v)), 4) for k, v in hits.items()},
        "read_as_unsaid": {k: round(float(np.mean(v)), 4) for k, v in unsaid.items()},
        "exact_said": round(right / n, 4),
        "refused": round(refused / n, 4),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reader", default=str(ROOT / "models" / "caption-reader"))
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--n-other", type=int, default=300, help="varied and short captions (of the first scenes)")
    ap.add_argument("--seed", type=int, default=99)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", default=None)
    ap.add_argument("--failures", type=int, default=5, help="print this many misread captions per set")
    ap.add_argument("--no-words", action="store_true", help="the head alone: captions not rewritten in its own words (caption_words.py)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    reader = CaptionReader.from_pretrained(args.reader)
    if args.no_words:
        reader.words = None
    enc, tok = text_encoder_and_tokenizer(128)
    detailed = held_out_detailed(args.n, args.seed)
    rng = random.Random(f"benchmark-varied/{args.seed}")
    fixtures = ROOT / "tests" / "fixtures"
    sets = {
        "detailed": detailed,
        "varied": [(varied_caption(s, rng), s) for _, s in detailed],
        "paraphrases": fixture_pairs([fixtures / "paraphrases.jsonl"]),
        "paraphrases_more": fixture_pairs([fixtures / "paraphrases_more.jsonl"]),
        "paraphrases_blind": fixture_pairs([fixtures / "paraphrases_blind.jsonl"]),
    }
    sets["varied"] = sets["varied"][: args.n_other]
    short = short_set([s for _, s in detailed[: args.n_other]])
    # every caption encoded once (MiniLM is the cost), timed
    captions = sorted({c for pairs in (*sets.values(), short) for c, _ in pairs} | set(NEGATIVES))
    t = time.perf_counter()
    texts = reader.rewrite(captions)  # what the head reads (the caption itself without a vocabulary or --no-words)
    t_words = time.perf_counter() - t
    t = time.perf_counter()
    states = torch.from_numpy(encode_captions(enc, tok, texts, 128, bar=False)).float()
    t_enc = time.perf_counter() - t
    rewritten = {c for c, x in zip(captions, texts, strict=True) if c != x}
    mask = states.abs().sum(-1) > 0
    with torch.no_grad():
        t = time.perf_counter()
        read = [reader(states[s : s + 64], mask[s : s + 64]) for s in range(0, len(captions), 64)]
        t_head = time.perf_counter() - t
    row = {c: i for i, c in enumerate(captions)}
    objects, scene = torch.cat([r.objects for r in read]), torch.cat([r.scene for r in read])

    def reading_of(caps: list[str]) -> LayoutReading:
        idx = torch.tensor([row[c] for c in caps])
        return LayoutReading(objects[idx], scene[idx])

    results: dict = {}
    for name, pairs in sets.items():
        r = evaluate_caption_reader(reader, pairs, reading=reading_of([c for c, _ in pairs]))
        fails = r.pop("failures")
        r["rewritten"] = sum(c in rewritten for c, _ in pairs)
        results[name] = r
        print(name, json.dumps(r))
        for f in fails[: args.failures]:
            print("   ", json.dumps(f)[:400])
    both = sets["paraphrases"] + sets["paraphrases_more"]
    r = evaluate_caption_reader(reader, both, reading=reading_of([c for c, _ in both]))
    r.pop("failures")
    results["paraphrases_all"] = r
    print("paraphrases_all", json.dumps(r))
    results["short"] = eval_short(short, reading_of([c for c, _ in short]))
    print("short", json.dumps(results["short"]))
    reading = reading_of(list(NEGATIVES))
    refused = 0
    for i, cap in enumerate(NEGATIVES):
        try:
            decode_full(reading, i, cap)
        except ValueError:
            refused += 1
        else:
            print("    read a scene in a negative:", repr(cap))
    results["negatives"] = {"n": len(NEGATIVES), "refused": round(refused / len(NEGATIVES), 4)}
    print("negatives", json.dumps(results["negatives"]))
    results["speed"] = {
        "threads": args.threads,
        "captions": len(captions),
        "minilm_ms_per_caption": round(1000 * t_enc / len(captions), 2),
        "rewrite_ms_per_caption": round(1000 * t_words / len(captions), 3),
        "head_ms_per_caption": round(1000 * t_head / len(captions), 3),
        "parameters": sum(p.numel() for p in reader.parameters()),
    }
    print("speed", json.dumps(results["speed"]))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
        print("wrote", args.json)


if __name__ == "__main__":
    main()
