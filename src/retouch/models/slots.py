"""A slot adapter on top of a frozen sentence encoder: learned queries that read the caption's token
states and add one token per place in the picture to the cross-attention context.

Why: the frozen all-MiniLM-L6-v2 states of a long caption spread one object's description over a
dozen tokens whose keys carry little of where that object stands (the position words come last in
its phrase). A UNet position that must find "its" object has to do two hops (find the phrase that
names my quadrant, then read its colour, shape, ...) with one-hop cross-attention. A Perceiver-style
resampler (Jaegle et al. 2021; the same block as IP-Adapter's and Flamingo's resamplers) does the
first hop once per caption: query ``k`` attends over the tokens and returns one vector that describes
whatever the caption puts in place ``k``. The UNet then attends to the caption's tokens plus these
``n_slots`` vectors, so per-word attention maps keep working for the editing methods.

Saved in the diffusers way (``ModelMixin`` / ``ConfigMixin``: ``config.json`` + safetensors) as the
``text_adapter`` component of a Shapes pipeline folder; ``Backbone.encode_text`` applies it.
"""

from __future__ import annotations

import logging

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import Tensor, nn

logger = logging.getLogger(__name__)


class _ResamplerBlock(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: int) -> None:
        super().__init__()
        self.norm_q = nn.LayerNorm(dim)
        self.norm_kv = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm_mlp = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_ratio * dim), nn.GELU(), nn.Linear(mlp_ratio * dim, dim))

    def forward(self, q: Tensor, kv: Tensor, pad: Tensor) -> Tensor:
        # q (B, K, D), kv (B, L, D), pad (B, L) True where a position is padding
        kv = self.norm_kv(kv)
        q = q + self.attn(self.norm_q(q), kv, kv, key_padding_mask=pad, need_weights=False)[0]  # (B, K, D)
        return q + self.mlp(self.norm_mlp(q))  # (B, K, D)


class SlotAdapter(ModelMixin, ConfigMixin):
    """``forward(tokens) -> (B, L + n_slots, D)``: the token states with ``n_slots`` slot vectors appended.

    Padding positions are recognised as all-zero rows (as ``Backbone.encode_text`` writes them for the
    Shapes models). ``out_scale`` sets the slot vectors' per-feature scale to that of the encoder's
    states, so a UNet trained on those states sees keys and values of the size it knows.
    """

    @register_to_config
    def __init__(
        self, dim: int = 384, n_slots: int = 4, heads: int = 4, layers: int = 1, mlp_ratio: int = 2, out_scale: float = 0.5
    ) -> None:
        super().__init__()
        self.queries = nn.Parameter(torch.randn(n_slots, dim) * 0.02)
        self.blocks = nn.ModuleList([_ResamplerBlock(dim, heads, mlp_ratio) for _ in range(layers)])
        self.norm_out = nn.LayerNorm(dim)
        with torch.no_grad():
            self.norm_out.weight.fill_(out_scale)

    def slots(self, tokens: Tensor) -> Tensor:
        """(B, L, D) token states -> (B, n_slots, D) slot vectors."""
        pad = tokens.abs().sum(-1) == 0  # (B, L)
        # a fully padded row (never produced by a tokenizer, which adds [CLS]/[SEP]) would make softmax NaN
        pad = pad & ~pad.all(-1, keepdim=True)
        q = self.queries.to(tokens.dtype).expand(tokens.shape[0], -1, -1)  # (B, K, D)
        for blk in self.blocks:
            q = blk(q, tokens, pad)
        return self.norm_out(q)  # (B, K, D)

    def forward(self, tokens: Tensor) -> Tensor:
        return torch.cat([tokens, self.slots(tokens)], dim=1)  # (B, L + K, D)


@torch.no_grad()
def with_adapter(adapter: SlotAdapter | None, tokens: Tensor) -> Tensor:
    """Token states (B, L, D) as a model with this adapter sees them, (B, L + K, D), in the states' dtype;
    unchanged without an adapter."""
    if adapter is None:
        return tokens
    return adapter(tokens.to(adapter.dtype)).to(tokens.dtype)
