"""How the Shapes autoencoder's decoder takes imperfect latents.

Renders held-out scenes, encodes them, perturbs the latents (Gaussian noise of a few sizes, relative
to the latents' overall std, and a 3x3 box blur) and reports the decoded PSNR against the render and
the share of decodes from which the scene reader still reads the exact scene. If small latent errors
decoded to mosaics, a generator's near misses would too; the figures say whether that is so.

    python benchmarks/latent_noise.py [MODEL] [--n 200] [--seed 99]
"""

from __future__ import annotations

import argparse
import json
import random

import numpy as np
import torch

from retouch.eval.metrics import scene_match, summarise_matches
from retouch.models import load_backbone
from retouch.world.reader import SceneReader, read_scenes
from retouch.world.render import render
from retouch.world.scene import random_scene


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model", nargs="?", default="models/shapes-teacher")
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--seed", type=int, default=99, help="scene seed, as `retouch world captions --seed`")
    ap.add_argument("--noise", type=float, nargs="+", default=[0.0, 0.1, 0.2, 0.4])
    ap.add_argument("--autoencoder", default=None, help="an autoencoder folder to measure instead of the model's own")
    args = ap.parse_args()
    torch.set_num_threads(2)
    bb = load_backbone(args.model)
    if args.autoencoder:
        from retouch.train.t2i import load_autoencoder

        ae = load_autoencoder(args.autoencoder)
        bb.autoencoder, bb.vae_scale = ae, float(ae.config.scaling_factor)
    reader = SceneReader.from_pretrained()
    rng = random.Random(f"captions/{args.seed}")
    scenes = [random_scene(rng) for _ in range(args.n)]
    imgs = np.stack([render(s) for s in scenes])
    g = torch.Generator().manual_seed(0)
    out = {}
    with torch.no_grad():
        z = torch.cat([bb.encode_images(imgs[i : i + 50]) for i in range(0, len(imgs), 50)])  # (N, C, h, w)
        std = float(z.std())
        # the finest octave's share of the latents' variance: what a denoiser must tell apart from noise last
        coarse = torch.nn.functional.interpolate(torch.nn.functional.avg_pool2d(z, 2), scale_factor=2, mode="nearest")
        fine_share = float(((z - coarse) ** 2).mean() / ((z - z.mean(dim=(2, 3), keepdim=True)) ** 2).mean())
        print("finest-octave share of latent variance", round(fine_share, 3))
        variants = {f"noise {s}": z + s * std * torch.randn(z.shape, generator=g) for s in args.noise}
        variants["blur 3x3"] = torch.nn.functional.avg_pool2d(z, 3, 1, 1)
        # a latent with its finest octave removed (2x2 means, repeated): what a coarse-to-fine sampler has mid-way
        variants["pool 2x, upsampled"] = coarse
        for name, zz in variants.items():
            dec = np.concatenate([bb.decode_latents(zz[i : i + 50]) for i in range(0, len(zz), 50)])
            psnr = float(10 * np.log10(255**2 / np.mean((dec.astype(np.float64) - imgs) ** 2)))
            preds = read_scenes(reader, list(dec))
            exact = float(np.mean([p.same_content(s) for p, s in zip(preds, scenes, strict=True)]))
            attr = summarise_matches([scene_match(p, s) for p, s in zip(preds, scenes, strict=True)])["attr_accuracy"]
            out[name] = {"psnr": round(psnr, 2), "reader_exact_scene": round(exact, 3), "attr_accuracy": round(attr, 3)}
            print(name, json.dumps(out[name]))
    print(json.dumps({"latent_std": round(std, 3), "finest_octave_share": round(fine_share, 3), "n": args.n} | out))


if __name__ == "__main__":
    main()
