"""Decode the same layout-teacher samples with two autoencoders and score both (docs/backbone.md, "The
layout-map generator"): does a decoder fine-tuned for diffusability read the teacher's latents better?

    python benchmarks/decoder_swap.py [--unet runs/shapes-layout-teacher/snapshots/step-002400] [--ae runs/shapes-ae-equivariant]

The snapshot draws the 200 held-out scenes of `retouch world captions --seed 99` with their exact layout maps
(10 DDIM steps, guidance 3); each autoencoder decodes the same latents and the scene reader scores the drawings.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from learning_curve import held_out  # noqa: E402

from retouch.eval.metrics import scene_match, summarise_matches  # noqa: E402
from retouch.generate import initial_noise  # noqa: E402
from retouch.models.backbone import TEACHER_MODEL, load_backbone  # noqa: E402
from retouch.models.layout import scene_layout  # noqa: E402
from retouch.sampling import sample_ddim, timesteps_for  # noqa: E402
from retouch.world import detailed_caption  # noqa: E402
from retouch.world.reader import SceneReader, read_scenes  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--unet", default="runs/shapes-layout-teacher/snapshots/step-002400")
    ap.add_argument("--ae", default="runs/shapes-ae-equivariant", help="the other autoencoder folder")
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--seed", type=int, default=99)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    from diffusers import AutoencoderDC, UNet2DConditionModel

    bb = load_backbone(TEACHER_MODEL)
    bb.denoiser.unet = UNet2DConditionModel.from_pretrained(a.unet, torch_dtype=torch.float32).eval()
    decoders = {"shipped": bb.autoencoder, Path(a.ae).name: AutoencoderDC.from_pretrained(a.ae, torch_dtype=torch.float32).eval()}
    reader = SceneReader.from_pretrained()
    scenes = held_out(a.n, a.seed)
    h = bb.default_size // bb.vae_factor
    matches: dict[str, list] = {k: [] for k in decoders}
    with torch.no_grad():
        for i in range(0, len(scenes), 50):
            part = scenes[i : i + 50]
            cond, uncond = bb.encode_text([detailed_caption(s) for s in part]), bb.unconditional(len(part))
            cond.layout = scene_layout(part, h, h)
            uncond.layout = torch.zeros_like(cond.layout)
            x = torch.cat([initial_noise(bb, 1, bb.default_size, 1000 + i + k) for k in range(len(part))])
            latents = sample_ddim(bb.denoiser, x, timesteps_for(10), cond, guidance=3.0, uncond=uncond)
            for name, ae in decoders.items():
                bb.autoencoder = ae
                imgs = bb.decode_latents(latents)
                matches[name] += [scene_match(p, s) for p, s in zip(read_scenes(reader, list(imgs)), part, strict=True)]
    for name, m in matches.items():
        print(name, {k: round(v, 3) for k, v in summarise_matches(m).items()})


if __name__ == "__main__":
    main()
