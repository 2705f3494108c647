"""Where each object phrase's cross-attention goes, and what each object's footprint reads.

- ``token_in_footprint``: per token of an object's phrase, the share of its (spatially normalised)
  attention map on that object's footprint; "chance" is what a uniform map gets.
- ``footprint_on_own_phrase``: per position of an object's footprint, the share of its attention
  (softmax over tokens) on that object's own phrase; "chance_own_phrase" is the phrase's share of the
  caption's tokens (what attention spread evenly over the caption's words gets).

Held-out scenes (seed never used in training), their detailed captions, the clean latents noised to
a few timesteps; for every token of an object's phrase, the head-averaged attention map of each
cross-attention layer is normalised over space and summed over the object's footprint (area-averaged
to the layer's grid). "chance" is the footprint's share of the image: what a spatially uniform map gets.

    python benchmarks/grounding.py models/shapes-teacher [--n 200] [--seed 31337]
"""

from __future__ import annotations

import argparse
import json
import random

import numpy as np
import torch

from retouch.models import load_backbone
from retouch.models.attention import capture_cross_attention
from retouch.train.grounding import attention_shares, footprints, token_slots
from retouch.world.captions import detailed_caption_spans
from retouch.world.render import render
from retouch.world.scene import random_scene


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--seed", type=int, default=31337)
    ap.add_argument("--timesteps", type=int, nargs="+", default=[900, 600, 300])
    ap.add_argument("--batch", type=int, default=25)
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    bb = load_backbone(args.model)
    tok = bb.tokenizers[0]
    scenes = [random_scene(random.Random(args.seed * 1_000_003 + k)) for k in range(args.n)]
    inside: dict[str, list[float]] = {}
    own_mass: dict[str, list[float]] = {}
    chance: list[float] = []
    chance_own: list[float] = []
    for i in range(0, args.n, args.batch):
        chunk = scenes[i : i + args.batch]
        texts, spans = zip(*(detailed_caption_spans(s) for s in chunk), strict=True)
        cond = bb.encode_text(list(texts))
        length = tok.model_max_length
        slots = torch.from_numpy(token_slots(tok, list(texts), list(spans), length).astype(np.int64))  # (B, L)
        x0 = bb.encode_images(np.stack([render(s) for s in chunk])).float()
        regions = footprints(chunk, bb.default_size, 16)  # (B, 4, 16, 16)
        valid = slots >= 0
        n_words = (cond.tokens[:, :length].abs().sum(-1) > 0).sum(-1)  # (B,) real tokens of the caption
        # a slot adapter's vectors (after the caption's L tokens) are measured as no phrase's tokens
        slots = torch.cat([slots, slots.new_full((len(chunk), cond.tokens.shape[1] - length), -1)], dim=1)  # (B, L + K)
        valid = slots >= 0
        for b in range(len(chunk)):
            for slot in slots[b][valid[b]].tolist():
                chance.append(float(regions[b, slot].mean()))
            for o in chunk[b].objects:
                chance_own.append(float((slots[b] == o.slot).sum() / n_words[b]))
        for t in args.timesteps:
            a = bb.denoiser.alpha_at(t, x0)
            xt = a.sqrt() * x0 + (1 - a).sqrt() * torch.randn_like(x0)
            with torch.no_grad(), capture_cross_attention(bb.denoiser.unet) as store:
                bb.denoiser(xt, t, cond)
            for name, calls in store.probs.items():
                layer = name.split(".attn2")[0].replace(".transformer_blocks.0", "")
                for p in calls:  # (B, HW, L)
                    share, own, w = attention_shares(p, slots, regions)
                    inside.setdefault(layer, []).extend(share[valid].tolist())
                    per_obj = (own * w).sum(-1) / w.sum(-1).clamp(min=1e-8)  # (B, 4)
                    own_mass.setdefault(layer, []).extend(per_obj[w.sum(-1) > 0].tolist())
    result = {
        "model": args.model,
        "n": args.n,
        "seed": args.seed,
        "timesteps": args.timesteps,
        "chance": float(np.mean(chance)),
        "token_in_footprint": float(np.mean([v for vals in inside.values() for v in vals])),
        "chance_own_phrase": float(np.mean(chance_own)),
        "footprint_on_own_phrase": float(np.mean([v for vals in own_mass.values() for v in vals])),
        "per_layer": {k: [float(np.mean(inside[k])), float(np.mean(own_mass[k]))] for k in inside},
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
