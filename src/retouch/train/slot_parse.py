"""Auxiliary loss of the slot adapter (``models/slots.py``): each slot vector should say what the
caption puts in its place.

Linear heads read, from slot ``k``'s vector, whether place ``k`` holds an object and, if it does, each
of its attributes (cross-entropy against the exact scene). It is applied only to captions that name
positions (template and reworded detailed captions; the short caption names none, and dropped captions
say nothing). The heads are a training device only: they are not saved with the pipeline.
"""

from __future__ import annotations

import logging

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..world.scene import N_SLOTS, OBJECT_ATTRS, Scene

logger = logging.getLogger(__name__)

IGNORE = -100
# what each slot is asked: "present" (empty / occupied), then every object attribute
SLOT_FIELDS: tuple[tuple[str, int], ...] = (("present", 2),) + tuple((k, len(v)) for k, v in OBJECT_ATTRS.items())


def slot_labels(scenes: list[Scene]) -> Tensor:
    """(B, N_SLOTS, len(SLOT_FIELDS)) long: for each slot, present (0/1) and each attribute's index (IGNORE where empty)."""
    out = np.full((len(scenes), N_SLOTS, len(SLOT_FIELDS)), IGNORE, dtype=np.int64)
    for i, s in enumerate(scenes):
        out[i, :, 0] = 0
        for o in s.objects:
            out[i, o.slot, 0] = 1
            for j, (name, _) in enumerate(SLOT_FIELDS[1:], start=1):
                out[i, o.slot, j] = OBJECT_ATTRS[name].index(getattr(o, name))
    return torch.from_numpy(out)


class SlotParseLoss(nn.Module):
    """``loss(slots, labels, use)``: mean cross-entropy over fields of the heads' reading of ``slots`` (B, S, D).

    ``labels`` from ``slot_labels``; ``use`` (B,) bool selects the captions that name positions.
    ``accuracy`` gives the per-field accuracy of the same reading (for the training log).
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.heads = nn.ModuleDict({name: nn.Linear(dim, n) for name, n in SLOT_FIELDS})

    def logits(self, slots: Tensor) -> dict[str, Tensor]:
        return {name: head(slots) for name, head in self.heads.items()}  # each (B, S, n)

    def forward(self, slots: Tensor, labels: Tensor, use: Tensor) -> Tensor:
        if not use.any():
            return slots.new_zeros(())
        logits = self.logits(slots[use])
        lab = labels[use]  # (b, S, F)
        losses = [
            F.cross_entropy(logits[name].flatten(0, 1), lab[..., j].flatten(), ignore_index=IGNORE)
            for j, (name, _) in enumerate(SLOT_FIELDS)
            if (lab[..., j] != IGNORE).any()
        ]
        return torch.stack(losses).mean()

    @torch.no_grad()
    def accuracy(self, slots: Tensor, labels: Tensor, use: Tensor) -> dict[str, float]:
        logits = self.logits(slots[use])
        lab = labels[use]
        out = {}
        for j, (name, _) in enumerate(SLOT_FIELDS):
            keep = lab[..., j] != IGNORE
            if keep.any():
                out[name] = float((logits[name].argmax(-1)[keep] == lab[..., j][keep]).float().mean())
        return out
