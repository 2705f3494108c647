"""Where in the noise range a Shapes teacher loses the scene (SDEdit-style diagnostic).

Held-out scenes are rendered, encoded, noised to ``t0`` and sampled back with DDIM from ``t0`` (exact layout map,
the detailed caption), then read by the scene reader. If attributes survive from ``t0 = 200`` but not from 999,
the model cannot lay out an object's structure from noise; if they are lost even from low noise, its last, fine
denoising steps are what fails.

    python benchmarks/denoise_from.py RUN_OR_MODEL [--unet SNAPSHOT] [--n 100] [--t0 200 400 600 800 999]
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import numpy as np
import torch

from retouch.eval.metrics import scene_match, summarise_matches
from retouch.models.backbone import TEACHER_MODEL, load_backbone
from retouch.models.layout import scene_layout
from retouch.sampling import sample_ddim
from retouch.world import detailed_caption, random_scene
from retouch.world.reader import SceneReader, read_scenes
from retouch.world.render import render


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("unet", help="a UNet folder (a snapshot) or a pipeline folder with unet/")
    ap.add_argument("--autoencoder", default=str(TEACHER_MODEL / "vae"))
    ap.add_argument("--base", default=str(TEACHER_MODEL), help="pipeline whose text encoder and scheduler are used")
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--seed", type=int, default=99)
    ap.add_argument("--steps", type=int, default=10, help="DDIM steps over the whole range (fewer from a lower t0)")
    ap.add_argument("--guidance", type=float, default=3.0)
    ap.add_argument("--t0", type=int, nargs="+", default=[200, 400, 600, 800, 999])
    a = ap.parse_args()
    torch.set_num_threads(2)
    from diffusers import UNet2DConditionModel

    from retouch.train.t2i import load_autoencoder

    folder = Path(a.unet)
    unet = UNet2DConditionModel.from_pretrained(folder / "unet" if (folder / "unet").is_dir() else folder, torch_dtype=torch.float32).eval()
    bb = load_backbone(a.base)
    bb.denoiser.unet = unet
    ae = load_autoencoder(a.autoencoder)
    bb.autoencoder, bb.vae_scale = ae, float(ae.config.scaling_factor)
    reader = SceneReader.from_pretrained()
    rng = random.Random(f"captions/{a.seed}")
    scenes = [random_scene(rng) for _ in range(a.n)]
    imgs = np.stack([render(s) for s in scenes])
    g = torch.Generator().manual_seed(0)
    out = {}
    with torch.no_grad():
        z = torch.cat([bb.encode_images(imgs[i : i + 50]) for i in range(0, a.n, 50)])  # (N, C, h, w)
        ac = bb.denoiser.alphas_cumprod
        for t0 in a.t0:
            k = max(1, round(a.steps * (t0 + 1) / 1000))
            ts = [round(t0 - j * (t0 + 1) / k) for j in range(k)]  # k evenly spaced steps from t0 down
            matches, decs = [], []
            for i in range(0, a.n, 50):
                part = scenes[i : i + 50]
                eps = torch.randn(z[i : i + 50].shape, generator=g)
                x = float(ac[t0]) ** 0.5 * z[i : i + 50] + (1 - float(ac[t0])) ** 0.5 * eps  # (B, C, h, w)
                cond = bb.encode_text([detailed_caption(s) for s in part])
                uncond = bb.unconditional(len(part))
                cond.layout = scene_layout(part, z.shape[-1], z.shape[-1])
                uncond.layout = torch.zeros_like(cond.layout)
                lat = sample_ddim(bb.denoiser, x, ts, cond, guidance=a.guidance, uncond=uncond)
                dec = bb.decode_latents(lat)
                decs.append(dec)
                matches += [scene_match(p, s) for p, s in zip(read_scenes(reader, list(dec)), part, strict=True)]
            dec = np.concatenate(decs)
            psnr = float(10 * np.log10(255**2 / np.mean((dec.astype(np.float64) - imgs) ** 2)))
            r = summarise_matches(matches)
            out[t0] = {"steps": k, "psnr": round(psnr, 2)} | {k2: round(v, 3) for k2, v in r.items() if isinstance(v, float)}
            print(t0, json.dumps(out[t0]), flush=True)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
