"""Token grounding loss for the text-to-image teacher (TokenCompose, Wang et al. 2024, eq. 3).

A UNet trained on the denoising loss alone learns the Shapes world's global words (background, style)
long before it learns which object phrase belongs where: after 1,800 CPU steps every object phrase of
the shipped teacher attended uniformly over the four quadrants (docs/backbone.md). The world knows the
answer exactly, so the teacher is told it: every token of an object's phrase should put its
cross-attention mass on that object's footprint,

    L_token = mean over tokens j of an object, over layers l of (1 - sum_{u in M_j} A_l[u, j] / sum_u A_l[u, j])^2

with A_l the head-averaged attention map of layer l (softmax over tokens, then read per token over
space) and M_j the object's footprint at that layer's resolution (area-averaged, so boundary cells
count fractionally). Only the cross-attention layers deep enough to know where they are take the loss:
the first 16x16 block sees a 5-pixel neighbourhood of the noisy input, and cannot.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..models.attention import AttentionStore
from ..world.render import object_footprint
from ..world.scene import N_SLOTS, Scene

logger = logging.getLogger(__name__)


def token_slots(tokenizer, captions: list[str], spans: list[list[tuple[int, int, int]] | None], max_length: int) -> np.ndarray:
    """(N, max_length) int8: the slot whose phrase each token lies in, -1 for every other token.

    ``spans[i]`` is ``detailed_caption_spans``' list for caption ``i``, or None (no supervision).
    Tokens are those of ``tokenizer(caption, truncation=True, max_length=max_length)``, as the text cache has them.
    """
    out = np.full((len(captions), max_length), -1, dtype=np.int8)
    for i, (cap, sp) in enumerate(zip(captions, spans, strict=True)):
        if not sp:
            continue
        offsets = tokenizer(cap, truncation=True, max_length=max_length, return_offsets_mapping=True)["offset_mapping"]
        for j, (a, b) in enumerate(offsets):
            if b <= a:  # [CLS], [SEP]
                continue
            for slot, s, e in sp:
                if s <= a and b <= e:
                    out[i, j] = slot
                    break
    return out


def footprints(scenes: list[Scene], image_size: int, grid: int) -> Tensor:
    """(B, N_SLOTS, grid, grid) float: each slot's object footprint, area-averaged to ``grid``; zero where the slot is empty."""
    out = np.zeros((len(scenes), N_SLOTS, image_size, image_size), dtype=np.float32)
    for i, s in enumerate(scenes):
        for o in s.objects:
            out[i, o.slot] = object_footprint(o, image_size)
    t = torch.from_numpy(out)
    return F.adaptive_avg_pool2d(t, grid)


def attention_shares(p: Tensor, slots: Tensor, regions: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """What one layer's attention ``p`` (B, HW, L) gives each object, for the loss and for ``benchmarks/grounding.py``.

    Returns ``inside`` (B, L): each token's spatially normalised map summed over its object's footprint
    (meaningful where ``slots >= 0``); ``own`` (B, S, HW): each position's softmax mass on each object's
    phrase; ``weight`` (B, S, HW): the footprints, area-averaged to this layer's grid, of the objects
    that have supervised tokens (zero elsewhere).
    """
    b, hw, seq = p.shape
    valid = slots >= 0  # (B, L)
    r = F.adaptive_avg_pool2d(regions, int(math.isqrt(hw))).flatten(2)  # (B, S, HW)
    target = torch.gather(r, 1, slots.clamp(min=0)[..., None].expand(b, seq, hw))  # (B, L, HW)
    a = p.transpose(1, 2)  # (B, L, HW)
    inside = (a * target).sum(-1) / a.sum(-1).clamp(min=1e-8)  # (B, L)
    onehot = F.one_hot(slots.clamp(min=0), r.shape[1]).float() * valid[..., None]  # (B, L, S)
    own = torch.bmm(p, onehot).transpose(1, 2)  # (B, S, HW)
    weight = r * (onehot.sum(1) > 0)[..., None]  # (B, S, HW)
    return inside, own, weight


@dataclass
class GroundingLoss:
    """``loss(store, slots, regions)``: the mean of eq. 3 over every recorded layer whose name does not
    start with one of ``skip``, plus ``pixel`` times the pixel term below. ``slots`` (B, L) long, -1
    where a token is not supervised; ``regions`` (B, N_SLOTS, h, w) footprints at the finest attention
    resolution.

    Eq. 3 normalises each token's map over space, so it is met by a phrase that gets almost no
    attention as long as that little is in the right place (a development run with eq. 3 alone left
    the object phrases a few percent of the attention mass, and the samples still ignored them; an
    ad-hoc measurement, not a repo command). The pixel term asks the converse, per position of an object's footprint: that the softmax
    over tokens give the object's own phrase at least ``floor`` of the mass,
    mean over footprint cells u of object k of max(0, floor - sum_{j in phrase k} A[u, j])^2
    (footprint-weighted; the rest stays free for the style and background words).
    """

    skip: tuple[str, ...] = ("down_blocks.0.",)
    pixel: float = 1.0
    floor: float = 0.7

    def __call__(self, store: AttentionStore, slots: Tensor, regions: Tensor) -> Tensor:
        valid = slots >= 0  # (B, L)
        if not valid.any():
            return regions.new_zeros(())
        losses = []
        for name, calls in store.probs.items():
            if any(name.startswith(s) for s in self.skip):
                continue
            for p in calls:  # (B, HW, L)
                inside, own, w = attention_shares(p, slots, regions)
                loss = ((1 - inside) ** 2)[valid].mean()
                if self.pixel > 0:
                    short = F.relu(self.floor - own) ** 2  # (B, S, HW)
                    loss = loss + self.pixel * (w * short).sum() / w.sum().clamp(min=1e-8)
                losses.append(loss)
        if not losses:
            raise ValueError("no cross-attention layer was left for the grounding loss")
        return torch.stack(losses).mean()
