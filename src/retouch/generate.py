"""Text-to-image with a backbone: encode text -> seeded noise -> DDIM -> decode; composition only."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from .models.backbone import Backbone
from .sampling import StepCallback, sample_ddim, timesteps_for

logger = logging.getLogger(__name__)


def initial_noise(backbone: Backbone, batch: int, size: int, seed: int) -> Tensor:
    """Standard normal latents (B, C, size/f, size/f), drawn on the CPU so a seed gives the same noise on every device."""
    f = backbone.vae_factor
    if size % f:
        raise ValueError(f"size {size} is not a multiple of the autoencoder's factor {f}")
    g = torch.Generator("cpu").manual_seed(seed)
    noise = torch.randn((batch, backbone.latent_channels, size // f, size // f), generator=g)
    return noise.to(backbone.device, backbone.dtype)


def generate(
    backbone: Backbone,
    prompts: Sequence[str],
    steps: int | None = None,
    seed: int = 0,
    size: int | None = None,
    guidance: float | None = None,
    callback: StepCallback | None = None,
) -> np.ndarray:
    """Images (B, size, size, 3) uint8 for ``prompts``; ``callback(i, n, latents)`` after each step.

    ``steps`` and ``guidance`` default to what the checkpoint was made for (``Backbone.default_*``);
    prompt ``i`` starts from the noise of seed ``seed + i``, so an image does not depend on its batch.
    """
    if isinstance(prompts, str):
        raise TypeError("generate takes a list of prompts, not a string")
    if not prompts:
        raise ValueError("generate needs at least one prompt")
    size = size or backbone.default_size
    steps = steps or backbone.default_steps
    guidance = backbone.default_guidance if guidance is None else guidance
    with torch.no_grad():
        cond = backbone.encode_text(prompts, size=size)
        uncond = backbone.unconditional(len(prompts), size=size) if guidance != 1.0 else None
        x = torch.cat([initial_noise(backbone, 1, size, seed + i) for i in range(len(prompts))])
        timesteps = timesteps_for(steps, backbone.denoiser.num_train_timesteps)
        latents = sample_ddim(backbone.denoiser, x, timesteps, cond, guidance=guidance, uncond=uncond, callback=callback)
        return backbone.decode_latents(latents)
