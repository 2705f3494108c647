"""The shipped TurboEdit inversion network against the shipped 4-step Shapes model."""

from __future__ import annotations

import random

import numpy as np
import torch

from retouch.models.backbone import DEFAULT_MODEL, load_backbone
from retouch.models.inversion import load_inversion
from retouch.sampling import invert_ddim, invert_turbo, sample_ddim, timesteps_for
from retouch.world import detailed_caption, random_scene, render


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(255.0**2 / ((a.astype(float) - b.astype(float)) ** 2).mean()))


def test_shipped_inversion_reconstructs_better_than_ddim_inversion():
    gen = load_backbone(DEFAULT_MODEL)
    net = load_inversion(str(DEFAULT_MODEL) + "-inversion", gen.denoiser.unet)
    scenes = [random_scene(random.Random(f"inv-test/{k}")) for k in range(8)]
    imgs = np.stack([render(s) for s in scenes])
    ts = timesteps_for(4)
    with torch.no_grad():
        x0 = gen.encode_images(imgs)
        cond = gen.encode_text([detailed_caption(s) for s in scenes])
        inv = invert_turbo(net, gen.denoiser, x0, ts, cond)
        ddim = sample_ddim(gen.denoiser, invert_ddim(gen.denoiser, x0, ts, cond), ts, cond)
    turbo_rec, ddim_rec = gen.decode_latents(inv.recons[-1]), gen.decode_latents(ddim)
    p_turbo = np.mean([_psnr(a, b) for a, b in zip(imgs, turbo_rec, strict=True)])
    p_ddim = np.mean([_psnr(a, b) for a, b in zip(imgs, ddim_rec, strict=True)])
    assert p_turbo > p_ddim + 1.0, (p_turbo, p_ddim)
    # the KL term keeps the injected noise Gaussian-like: no runaway values (TurboEdit sec. 3.3)
    noise = torch.stack(inv.noises)
    assert float(noise.abs().max()) < 10.0 and 0.3 < float(noise.std()) < 2.0
