"""Cross-attention read-out: exact outputs, probabilities over tokens, processors restored."""

from __future__ import annotations

import pytest
import torch

from retouch.models import load_backbone
from retouch.models.attention import AttentionStore, capture_cross_attention


@pytest.fixture(scope="module")
def sd(tiny_sd_dir):
    return load_backbone(tiny_sd_dir)


def test_capture_keeps_outputs_and_records_token_maps(sd):
    unet = sd.denoiser.unet
    cond = sd.encode_text(["a red star", "two blue circles"])
    x = torch.randn(2, 4, 16, 16, generator=torch.Generator().manual_seed(0))
    before = type(next(iter(unet.attn_processors.values())))
    with torch.no_grad():
        ref = sd.denoiser(x, 500, cond)
        with capture_cross_attention(unet) as store:
            out = sd.denoiser(x, 500, cond)
    torch.testing.assert_close(out, ref)
    assert type(next(iter(unet.attn_processors.values()))) is before  # restored
    assert store.probs and all(".attn2." in k for k in store.probs)
    maps = store.maps(32)  # (B, L, 32, 32)
    assert maps.shape == (2, cond.tokens.shape[1], 32, 32)
    torch.testing.assert_close(maps.sum(1), torch.ones(2, 32, 32))  # a distribution over tokens at every pixel
    assert not torch.allclose(maps[0], maps[1])  # each prompt its own maps
    with pytest.raises(ValueError, match="no cross-attention was recorded"):
        AttentionStore().maps(8)
