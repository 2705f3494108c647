"""Reconstruction quality of a Shapes autoencoder (docs/backbone.md): mean PSNR per image (and per
style) over fresh scenes, and the share of reconstructions the scene reader reads back exactly.

Usage: python benchmarks/autoencoder.py [AE_FOLDER] [--n 2000] [--seed 424242]
(AE_FOLDER: models/shapes-turbo/vae, the shipped copy, by default; a retouch_link.json there is followed)
"""

from __future__ import annotations

import argparse
import json

import torch

from retouch.models.backbone import DEFAULT_MODEL, resolve_folder
from retouch.train.autoencoder import evaluate_autoencoder


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("folder", nargs="?", default=str(DEFAULT_MODEL / "vae"))
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=424242)
    a = ap.parse_args()
    from diffusers import AutoencoderDC

    ae = AutoencoderDC.from_pretrained(resolve_folder(a.folder), torch_dtype=torch.float32).eval()
    print(json.dumps({"folder": a.folder} | evaluate_autoencoder(ae, a.n, a.seed), indent=2))


if __name__ == "__main__":
    main()
