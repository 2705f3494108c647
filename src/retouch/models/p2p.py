"""Prompt-to-prompt attention injection (Hertz et al. 2023, "Prompt-to-Prompt Image Editing with Cross
Attention Control", sec. 3.2, the "prompt refinement" variant).

The UNet runs the source and the target branch in one batch: [source, target] without guidance,
[u_source, c_source, u_target, c_target] with it.  For the first steps the *conditional* target
branch takes the source's attention probabilities (as P2P's controller edits only the conditional
half): cross-attention columns of target tokens that align with a source token (a difflib alignment
of the token ids, P2P's refinement mapper) take the source's column, new or swapped words keep their
own; self-attention maps are copied whole, at every resolution (the Shapes latents are 16x16; P2P
limits the copy to maps of at most 16x16 on 64x64 SD latents).
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
    guided: bool = False  # batch [u_src, c_src, u_tgt, c_tgt] rather than [src, tgt]
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
            p = original(query, key, mask)  # (B * heads, N, L), batch-major
            blocks = 4 if c.guided else 2
            if p.shape[0] != blocks * attn.heads:
                raise ValueError(
                    f"prompt-to-prompt injection expects a batch of {blocks} branches, got {p.shape[0] // attn.heads}; "
                    "run the UNet through sampling.sample_ddim_pair with one image"
                )
            parts = list(p.view(blocks, attn.heads, *p.shape[1:]))  # each (heads, N, L)
            src, tgt = (1, 3) if c.guided else (0, 1)  # the conditional source and target branches
            if self.cross:
                m, w = c.mapper.to(p.device), c.aligned.to(p.device, p.dtype)
                parts[tgt] = parts[src][..., m] * w + parts[tgt] * (1 - w)
            else:
                parts[tgt] = parts[src]
            return torch.stack(parts).view_as(p)

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
