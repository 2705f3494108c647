"""Learning curve of a text-to-image training run: quality against images seen.

For every EMA snapshot a run kept (``snapshot_every`` in its t2i recipe: RUN/snapshots/step-NNNNNN/), draw
the scenes of ``retouch world captions --n N --seed SEED`` from their detailed captions and score the
drawings with the scene reader (exact scene, per-attribute accuracy, as ``retouch world score``).
Writes OUT.json, OUT.md (a table) and OUT.png (a plot); ``--old`` adds another run's curve (or fixed
points given as IMAGES:ACCURACY) to the same axes.

    python benchmarks/learning_curve.py runs/shapes-layout-teacher --n 200 --out runs/curve-layout
    python benchmarks/learning_curve.py runs/shapes-layout-teacher --layout reader   # the caption reader's map

``--layout oracle`` (the default for runs trained with a layout map) paints the exact scene's map (and, for a run
with a draft network, the encoded draft of the exact reading), so the curve measures the UNet alone; ``reader``
paints what the pipeline's caption reader reads from the caption. ``--curve NAME=RUN/curve.json`` adds the
learning curve a draft run wrote while it trained (``retouch train recipes/draft.json``) to the same axes.

    python benchmarks/learning_curve.py runs/shapes-draft-teacher --n 200 --curve "draft alone=models/draft/curve.json" \
        --old "layout map (no draft)=12800:0.460,25600:0.556,38400:0.604,51200:0.628,64000:0.645,76800:0.654"
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import time
from pathlib import Path

import numpy as np
import torch

from retouch.eval.metrics import scene_match, summarise_matches
from retouch.generate import initial_noise
from retouch.models.backbone import TEACHER_MODEL, load_backbone
from retouch.models.layout import reading_of_scenes, scene_layout
from retouch.sampling import sample_ddim, timesteps_for
from retouch.world import detailed_caption, random_scene
from retouch.world.reader import SceneReader, read_scenes

logger = logging.getLogger(__name__)


def held_out(n: int, seed: int) -> list:
    rng = random.Random(f"captions/{seed}")  # the scenes `retouch world captions --seed` writes
    return [random_scene(rng) for _ in range(n)]


@torch.no_grad()
def score_unet(backbone, unet, scenes, layout: str, steps: int, guidance: float, batch: int = 50) -> dict:
    backbone.denoiser.unet = unet
    reader = SceneReader.from_pretrained()
    matches = []
    for i in range(0, len(scenes), batch):
        part = scenes[i : i + batch]
        cond = backbone.encode_text([detailed_caption(s) for s in part])
        uncond = backbone.unconditional(len(part))
        h = backbone.default_size // backbone.vae_factor
        if layout == "oracle":
            cond.layout = scene_layout(part, h, h)
            if backbone.draft is not None:
                size = (backbone.default_size, backbone.default_size)
                cond.layout = torch.cat([cond.layout, backbone.draft_latents(reading_of_scenes(part), size)], dim=1)
            uncond.layout = torch.zeros_like(cond.layout)
        x = torch.cat([initial_noise(backbone, 1, backbone.default_size, 1000 + i + k) for k in range(len(part))])
        lat = sample_ddim(backbone.denoiser, x, timesteps_for(steps), cond, guidance=guidance, uncond=uncond)
        imgs = backbone.decode_latents(lat)
        matches += [scene_match(p, s) for p, s in zip(read_scenes(reader, list(imgs)), part, strict=True)]
    return summarise_matches(matches)


def plot(curves: dict[str, list[tuple[int, dict]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for name, pts in curves.items():
        xs = [p[0] for p in pts]
        axes[0].plot(xs, [p[1]["attr_accuracy"] for p in pts], marker="o", label=name)
        axes[1].plot(xs, [p[1]["exact_scene"] if p[1].get("exact_scene") is not None else np.nan for p in pts], marker="o", label=name)
    for ax, title in zip(axes, ("attribute accuracy", "exact scene"), strict=True):
        ax.set_xlabel("training images seen")
        ax.set_title(title)
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", help="a t2i run folder with snapshots/ and train_config.json")
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--seed", type=int, default=99)
    ap.add_argument("--steps", type=int, default=10, help="DDIM steps per drawing")
    ap.add_argument("--guidance", type=float, default=None, help="default: the run's recipe")
    ap.add_argument("--layout", choices=("oracle", "reader"), default="oracle")
    ap.add_argument("--base", default=str(TEACHER_MODEL), help="pipeline whose text encoder and scheduler are used")
    ap.add_argument("--autoencoder", default=None, help="autoencoder folder that decodes the samples (default: the run recipe's own)")
    ap.add_argument("--every", type=int, default=1, help="score every k-th snapshot")
    ap.add_argument("--old", nargs="*", default=[], help="NAME=IMAGES:ACC,IMAGES:ACC,... fixed points of another design")
    ap.add_argument("--curve", nargs="*", default=[], help="NAME=PATH: a curve.json a draft run wrote (images seen, scores)")
    ap.add_argument("--out", default=None)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    logging.basicConfig(level=logging.INFO)
    from diffusers import UNet2DConditionModel

    run = Path(a.run)
    cfg = json.loads((run / "train_config.json").read_text())
    guidance = a.guidance if a.guidance is not None else float(cfg.get("guidance", 3.0))
    snaps = sorted((run / "snapshots").glob("step-*"))[a.every - 1 :: a.every]
    if not snaps:
        raise SystemExit(f"{run}/snapshots has no step-* folders: train with snapshot_every > 0")
    backbone = load_backbone(a.base)
    # the snapshots' latents belong to the autoencoder the run was trained on, not necessarily the base pipeline's
    from retouch.train.t2i import load_autoencoder

    vae = load_autoencoder(a.autoencoder or cfg["autoencoder"])
    backbone.autoencoder, backbone.vae_scale = vae, float(vae.config.scaling_factor)
    if cfg.get("draft"):
        from retouch.models.draft import DraftNet

        backbone.draft = DraftNet.from_pretrained(cfg["draft"])
    scenes = held_out(a.n, a.seed)
    out = Path(a.out or f"runs/curve-{run.name}")
    out.parent.mkdir(parents=True, exist_ok=True)
    points = []
    for snap in snaps:
        step = int(snap.name.split("-")[1])
        unet = UNet2DConditionModel.from_pretrained(snap, torch_dtype=torch.float32).eval()
        t0 = time.time()
        r = score_unet(backbone, unet, scenes, a.layout, a.steps, guidance)
        images = step * int(cfg["batch_size"])
        points.append((images, r))
        dt = time.time() - t0
        logger.info("%s: %d images, exact %.3f, attr %.3f (%.0f s)", snap.name, images, r["exact_scene"], r["attr_accuracy"], dt)
    curves = {f"{run.name} ({a.layout} layout)": points}
    for spec in a.old:
        name, pts = spec.split("=", 1)
        curves[name] = [(int(x), {"attr_accuracy": float(y), "exact_scene": None}) for x, y in (p.split(":") for p in pts.split(","))]
    for spec in a.curve:
        name, path = spec.split("=", 1)
        curves[name] = [(int(c["images"]), c) for c in json.loads(Path(path).read_text())]
    keys = [k for k in points[0][1] if k.startswith("acc_")]
    lines = [
        f"Learning curve of `{run}` ({a.n} held-out detailed captions, caption seed {a.seed}, {a.steps} DDIM steps, "
        f"guidance {guidance}, {a.layout} layout)",
        "",
        "| images seen | exact scene | attr. accuracy | " + " | ".join(k[4:] for k in keys) + " |",
        "|---" * (3 + len(keys)) + "|",
    ]
    for images, r in points:
        lines.append(f"| {images} | {r['exact_scene']:.3f} | {r['attr_accuracy']:.3f} | " + " | ".join(f"{r[k]:.3f}" for k in keys) + " |")
    text = "\n".join(lines)
    print(text)
    out.with_suffix(".md").write_text(text + "\n")
    out.with_suffix(".json").write_text(json.dumps({name: pts for name, pts in curves.items()}, indent=2) + "\n")
    plot(curves, out.with_suffix(".png"))


if __name__ == "__main__":
    main()
