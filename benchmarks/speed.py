"""Speed and size of a backbone on this machine (docs/backbone.md).

ms per network evaluation (NFE) at batch 1, images per second at batch 32 for the whole
text -> image path (text encoding, the model's default steps, decoding), and the size on disk
of the model folder (plus the packaged text encoder it points to, reported apart).

Usage: python benchmarks/speed.py [MODEL] [--threads N] [--repeats R]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from retouch.generate import generate
from retouch.models.backbone import DEFAULT_MODEL, PACKAGE_REF, load_backbone, packaged_path


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and p.name != "checkpoint.pt")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model", nargs="?", default=str(DEFAULT_MODEL))
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--repeats", type=int, default=20)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    bb = load_backbone(a.model)
    h = bb.default_size // bb.vae_factor
    cond = bb.encode_text(["a small red dotted star with a moon emblem, upright, at the top left"])
    x = torch.randn(1, bb.latent_channels, h, h)
    with torch.no_grad():
        for _ in range(3):
            bb.denoiser(x, 999, cond)
        t0 = time.perf_counter()
        for _ in range(a.repeats):
            bb.denoiser(x, 999, cond)
        ms_nfe = (time.perf_counter() - t0) / a.repeats * 1000
    prompt = (
        "a pixel art picture of two objects on a grassy field: a large blue striped heart with a bolt emblem, upright, "
        "at the top left; a small yellow solid cross with a moon emblem, tilted left, at the bottom right."
    )
    prompts = [prompt] * 32
    generate(bb, prompts[:2])
    t0 = time.perf_counter()
    generate(bb, prompts)
    s32 = time.perf_counter() - t0
    ref = Path(a.model) / "text_encoder" / PACKAGE_REF
    result = {
        "model": a.model,
        "threads": a.threads,
        "steps": bb.default_steps,
        "guidance": bb.default_guidance,
        "ms_per_nfe_batch1": round(ms_nfe, 2),
        "images_per_s_batch32": round(32 / s32, 2),
        "unet_params_M": round(sum(p.numel() for p in bb.denoiser.parameters()) / 1e6, 2),
        "folder_MB": round(folder_bytes(Path(a.model)) / 1e6, 2),
        "packaged_text_encoder_MB": round(folder_bytes(packaged_path(ref)) / 1e6, 1) if ref.is_file() else None,
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
