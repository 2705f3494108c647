"""The measurement behind the autoencoder's architecture (docs/backbone.md): TAESD's conv stack
(diffusers AutoencoderTiny, width 32, blocks (1, 2, 2, 2)) against DC-AE (AutoencoderDC, channels
(16, 32, 64, 128), blocks (1, 1, 2, 2)), both 16 x 16 x 16 latents for 128 px, trained the same way
for 200 steps (batch 32 of 64 px crops from 2,000 renders, AdamW lr 1e-3, L1 + 4 MSE); prints the
PSNR of the last 10 steps' MSE and the seconds taken.

Usage: python benchmarks/autoencoder_choice.py [--steps 200]   (a few minutes on 2 CPU cores)
"""

from __future__ import annotations

import argparse
import json
import random
import time

import numpy as np
import torch
import torch.nn.functional as F

from retouch.train.autoencoder import AutoencoderTrainConfig, build_autoencoder, random_crops, to_unit
from retouch.world.render import render
from retouch.world.scene import random_scene


def taesd():
    from diffusers import AutoencoderTiny

    return AutoencoderTiny(
        encoder_block_out_channels=(32,) * 4,
        decoder_block_out_channels=(32,) * 4,
        num_encoder_blocks=(1, 2, 2, 2),
        num_decoder_blocks=(2, 2, 2, 1),
        latent_channels=16,
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=200)
    a = ap.parse_args()
    images = torch.from_numpy(np.stack([render(random_scene(random.Random(k))) for k in range(2000)]))
    result = {}
    for name, make in (("AutoencoderTiny", taesd), ("AutoencoderDC", lambda: build_autoencoder(AutoencoderTrainConfig()))):
        torch.manual_seed(0)
        ae = make()
        opt = torch.optim.AdamW(ae.parameters(), lr=1e-3, weight_decay=0)
        g = torch.Generator().manual_seed(0)
        t0, hist = time.time(), []
        for _ in range(a.steps):
            x = random_crops(to_unit(images[torch.randint(0, len(images), (32,), generator=g)]), 64, g)
            enc = ae.encode(x)
            y = ae.decode(enc.latents if hasattr(enc, "latents") else enc.latent).sample
            mse = F.mse_loss(y, x)
            loss = F.l1_loss(y, x) + 4 * mse
            opt.zero_grad()
            loss.backward()
            opt.step()
            hist.append(mse.item())
        result[name] = {"psnr_db": round(float(10 * np.log10(4 / np.mean(hist[-10:]))), 2), "seconds": round(time.time() - t0, 1)}
    print(json.dumps({"steps": a.steps} | result, indent=2))


if __name__ == "__main__":
    main()
