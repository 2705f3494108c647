"""Per-token cross-attention maps read out of a diffusers ``UNet2DConditionModel``.

TurboEdit's local mask (§3.4: the attention of the words that differ between the two captions) and
the region method read these.  ``capture_cross_attention(unet)`` swaps the processors of the
cross-attention layers (``attn2``) for one that computes attention exactly as diffusers'
``AttnProcessor`` does and also records the head-averaged probabilities; the UNet's output is
unchanged (tested), and the original processors come back on exit.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch.nn.functional as F
from torch import Tensor, nn

logger = logging.getLogger(__name__)


@dataclass
class AttentionStore:
    """Head-averaged cross-attention probabilities per layer call: name -> list of (B, HW, L)."""

    probs: dict[str, list[Tensor]] = field(default_factory=dict)
    keep_grad: bool = False  # True while training through the maps (the grounding loss); else they are detached

    def add(self, name: str, p: Tensor, heads: int) -> None:
        b = p.shape[0] // heads
        p = p.reshape(b, heads, *p.shape[1:]).mean(1).float()  # (B, HW, L)
        self.probs.setdefault(name, []).append(p if self.keep_grad else p.detach())

    def clear(self) -> None:
        self.probs.clear()

    def maps(self, size: int | tuple[int, int], min_side: int = 1) -> Tensor:
        """Every recorded map resized to ``size`` and averaged: (B, L, H, W).

        Maps whose side is below ``min_side`` are skipped (the coarsest levels are mostly layout).
        """
        h_out, w_out = (size, size) if isinstance(size, int) else size
        acc, n = None, 0
        for calls in self.probs.values():
            for p in calls:
                b, hw, seq = p.shape
                # the map keeps the latent's aspect ratio: h * w = hw with h / w = h_out / w_out
                h = max(1, round(math.sqrt(hw * h_out / w_out)))
                w = hw // h
                if h * w != hw:
                    raise ValueError(f"cannot fold {hw} attention positions into a {h_out}:{w_out} map")
                if min(h, w) < min_side:
                    continue
                m = p.transpose(1, 2).reshape(b, seq, h, w)  # (B, L, h, w)
                m = F.interpolate(m, size=(h_out, w_out), mode="bilinear", align_corners=False)
                acc = m if acc is None else acc + m
                n += 1
        if acc is None:
            raise ValueError("no cross-attention was recorded (was the UNet called inside capture_cross_attention?)")
        return acc / n


class _StoringProcessor:
    """diffusers' ``AttnProcessor`` with the attention probabilities recorded on the way."""

    def __init__(self, store: AttentionStore, name: str) -> None:
        from diffusers.models.attention_processor import AttnProcessor

        self.inner, self.store, self.name = AttnProcessor(), store, name

    def __call__(
        self, attn: nn.Module, hidden_states: Tensor, encoder_hidden_states: Tensor | None = None, attention_mask=None, temb=None, **kw
    ) -> Tensor:
        original = attn.get_attention_scores

        def scores(query: Tensor, key: Tensor, mask: Tensor | None = None) -> Tensor:
            p = original(query, key, mask)  # (B * heads, HW, L)
            self.store.add(self.name, p, attn.heads)
            return p

        attn.get_attention_scores = scores  # an instance attribute shadows the method for this call only
        try:
            return self.inner(attn, hidden_states, encoder_hidden_states, attention_mask, temb)
        finally:
            del attn.get_attention_scores


@contextmanager
def capture_cross_attention(unet: nn.Module, store: AttentionStore | None = None) -> Iterator[AttentionStore]:
    """Record the cross-attention maps of every ``attn2`` layer of ``unet`` while the block runs."""
    store = store or AttentionStore()
    saved = dict(unet.attn_processors)
    procs = {name: (_StoringProcessor(store, name) if ".attn2." in name else proc) for name, proc in saved.items()}
    if not any(".attn2." in n for n in saved):
        raise ValueError(f"{type(unet).__name__} has no cross-attention layers (attn2)")
    unet.set_attn_processor(procs)
    try:
        yield store
    finally:
        unet.set_attn_processor(saved)
