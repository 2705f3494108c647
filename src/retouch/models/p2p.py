"""Prompt-to-prompt attention injection (Hertz et al. 2023, "Prompt-to-Prompt Image Editing with Cross
Attention Control", sec. 3.2 "word swap" / "prompt refinement").

The UNet runs the source and the target branch in one batch laid out as [source half, target half].
For the first steps the target half's attention probabilities are replaced by the source half's:
cross-attention columns of the target tokens that align with a source token (a difflib alignment of
the token ids, as P2P's refinement mapper) take the source's column, new tokens keep their own;
self-attention maps are copied whole.  This keeps the source's layout in the edited image.
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

logger = logging.getLogger(__name__)


def token_mapper(src_ids: list[int], tgt_ids: list[int]) -> tuple[Tensor, Tensor]:
    """(index into the source for every target position, 1 where that position aligns with a source token)."""
    idx = torch.arange(len(tgt_ids)).clamp(max=len(src_ids) - 1)
    aligned = torch.zeros(len(tgt_ids))
    for a, b, n in difflib.SequenceMatcher(a=src_ids, b=tgt_ids, autojunk=False).get_matching_blocks():
        idx[b : b + n] = torch.arange(a, a + n)
        aligned[b : b + n] = 1.0
    return idx, aligned


@dataclass
class InjectionControl:
    """Which steps inject: cross-attention while ``step < cross_steps``, self-attention while ``step < self_steps``."""

    mapper: Tensor  # (L,) source index per target token
    aligned: Tensor  # (L,) 1 for aligned tokens
    cross_steps: int
    self_steps: int
    step: int = 0
    calls: dict = field(default_factory=dict)


class _InjectingProcessor:
    def __init__(self, control: InjectionControl, cross: bool) -> None:
        from diffusers.models.attention_processor import AttnProcessor

        self.inner, self.control, self.cross = AttnProcessor(), control, cross

    def __call__(
        self, attn: nn.Module, hidden_states: Tensor, encoder_hidden_states: Tensor | None = None, attention_mask=None, temb=None, **kw
    ):
        c = self.control
        active = c.step < (c.cross_steps if self.cross else c.self_steps)
        if not active:
            return self.inner(attn, hidden_states, encoder_hidden_states, attention_mask, temb)
        original = attn.get_attention_scores

        def scores(query: Tensor, key: Tensor, mask: Tensor | None = None) -> Tensor:
            p = original(query, key, mask)  # (B * heads, N, L)
            bh = p.shape[0]
            half = bh // 2
            src, tgt = p[:half], p[half:]
            if self.cross:
                m, w = c.mapper.to(p.device), c.aligned.to(p.device, p.dtype)
                new = src[..., m] * w + tgt * (1 - w)  # (B/2 * heads, N, L)
            else:
                new = src
            return torch.cat([src, new])

        attn.get_attention_scores = scores
        try:
            return self.inner(attn, hidden_states, encoder_hidden_states, attention_mask, temb)
        finally:
            del attn.get_attention_scores


@contextmanager
def inject_attention(unet: nn.Module, control: InjectionControl) -> Iterator[InjectionControl]:
    """Inside the block, every UNet call on a [source, target] batch injects the source's maps."""
    saved = dict(unet.attn_processors)
    procs = {name: _InjectingProcessor(control, cross=".attn2." in name) for name in saved}
    unet.set_attn_processor(procs)
    try:
        yield control
    finally:
        unet.set_attn_processor(saved)
