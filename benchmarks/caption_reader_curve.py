"""Learning curve of the caption reader: fixture accuracy against captions seen, for a recipe and overrides.

    python benchmarks/caption_reader_curve.py --set dim=192 --set heads=6 --every 1000 --out runs/cr-curve-w192
    python benchmarks/caption_reader_curve.py --set n_captions=9000 --out runs/cr-curve-9k   # the reader of 2026-12-06

Trains a head as ``retouch train recipes/caption-reader.json`` does (same cached token states, loss, optimiser and
cosine schedule over the recipe's ``steps``; ``--set KEY=VALUE`` overrides any recipe field, JSON values), and every
``--every`` steps scores it with ``evaluate_caption_reader`` on the two development fixtures (160), the blind
fixture (48) and ``--n`` held-out detailed captions of seed 99, each rewritten in the words of ``--words`` (the
shipped reader's ``vocabulary.txt``, so that every design is read through the same rewriting). Writes OUT.json (the
curve) and OUT.md (a table), and the final head into OUT/. Nothing is shipped from here; the numbers of
docs/backbone.md ("The reader's head widened") come from it. A point is the head at that step of a cosine schedule
that ends at ``steps``, not a shorter run of its own.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch

from retouch.models.caption_reader import text_model
from retouch.models.caption_words import CaptionWords
from retouch.train import parse_recipe
from retouch.train.caption_reader import (
    TokenData,
    build_cache,
    build_reader,
    evaluate_caption_reader,
    fixture_pairs,
    held_out_detailed,
    train_step,
)
from retouch.train.loop import warmup_cosine
from retouch.train.t2i import encode_captions

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--recipe", default=str(ROOT / "recipes" / "caption-reader.json"))
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a recipe field (JSON value)")
    ap.add_argument("--every", type=int, default=1000, help="score every this many steps")
    ap.add_argument("--n", type=int, default=200, help="held-out detailed captions (seed 99)")
    ap.add_argument("--words", default=str(ROOT / "models" / "caption-reader"), help="folder whose vocabulary.txt rewrites the fixtures")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    raw = json.loads(Path(a.recipe).read_text())
    for kv in a.set:  # not batch.parse_settings: that one keeps the seed out, and a recipe's seed is a fair override
        key, sep, value = kv.partition("=")
        if not sep:
            raise SystemExit(f"--set takes KEY=VALUE, got {kv!r}")
        try:
            raw[key] = json.loads(value)
        except json.JSONDecodeError:
            raw[key] = value
    try:
        task, cfg = parse_recipe(raw, a.recipe)  # the recipe's own checks: unknown fields, wrong types
    except ValueError as e:
        raise SystemExit(str(e)) from None
    if task != "caption-reader":
        raise SystemExit(f"{a.recipe} is a {task!r} recipe, not a caption-reader one")
    cfg = replace(cfg, out=a.out)
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    enc, tok = text_model(128)
    data = TokenData(build_cache(cfg, enc, tok), -(-cfg.n_captions // cfg.chunk), cfg.omitted_target)

    words = CaptionWords.from_folder(a.words)
    fixtures = ROOT / "tests" / "fixtures"
    sets = {
        "fixtures": fixture_pairs(),
        "blind": fixture_pairs([fixtures / "paraphrases_blind.jsonl"]),
        "detailed": held_out_detailed(a.n, 99),
    }
    states = {}
    for name, pairs in sets.items():  # encoded once: the head is all that changes
        st = torch.from_numpy(encode_captions(enc, tok, [words(c) for c, _ in pairs], 128, bar=False)).float()
        states[name] = (st, st.abs().sum(-1) > 0)

    model = build_reader(cfg)
    n_params = sum(p.numel() for p in model.parameters())
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = warmup_cosine(opt, cfg.warmup, cfg.steps)
    rng = np.random.default_rng(cfg.seed * 7919)
    curve: list[dict] = []
    t0, step = time.time(), 0

    def score() -> None:
        model.eval()
        row: dict = {"step": step, "captions_seen": step * cfg.batch_size, "train_s": round(time.time() - t0)}
        with torch.no_grad():
            for name, (st, mask) in states.items():
                r = evaluate_caption_reader(model, sets[name], reading=model(st, mask))
                row[name] = {"mean_attribute": r["mean_attribute"], "exact": r["exact"], "attributes": r["attributes"]}
        model.train()
        curve.append(row)
        print(json.dumps({k: (v["mean_attribute"], v["exact"]) if isinstance(v, dict) else v for k, v in row.items()}), flush=True)
        out = {"config": asdict(cfg), "parameters": n_params, "overrides": a.set, "curve": curve}
        Path(a.out + ".json").write_text(json.dumps(out, indent=1) + "\n")

    model.train()
    while step < cfg.steps:
        train_step(model, data, opt, sched, rng, cfg.batch_size)
        step += 1
        if step % a.every == 0 or step == cfg.steps:
            score()
    model.eval()
    model.words = words
    model.save_pretrained(a.out)
    lines = [
        f"# caption reader learning curve: {' '.join(a.set) or 'the recipe as it is'} ({n_params:,} parameters)",
        "",
        "| steps | captions seen | train s | fixtures 160 | exact | blind 48 | exact | detailed | exact |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in curve:
        f, b, d = r["fixtures"], r["blind"], r["detailed"]
        lines.append(
            f"| {r['step']} | {r['captions_seen']:,} | {r['train_s']} | {f['mean_attribute']:.1%} | {f['exact']:.1%} | "
            f"{b['mean_attribute']:.1%} | {b['exact']:.1%} | {d['mean_attribute']:.2%} | {d['exact']:.1%} |"
        )
    Path(a.out + ".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
