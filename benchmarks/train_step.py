"""Seconds per training step of the Shapes teacher's UNet on this machine, for the choices docs/backbone.md weighs:
float32 or bfloat16 autocast on the CPU, channels-last memory, cross-attention kept or dropped, the layout map's
extra input channels.

    python benchmarks/train_step.py --threads 2 --batch 32 --repeats 6

Each configuration runs ``repeats`` forward + backward + AdamW steps on random inputs; the first two are
warm-up and the median of the rest is printed.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from retouch.models.layout import LAYOUT_CHANNELS
from retouch.train.t2i import T2ITrainConfig, build_unet


def step_seconds(unet, batch: int, in_ch: int, bf16: bool, channels_last: bool, repeats: int) -> float:
    x = torch.randn(batch, in_ch, 16, 16)
    if channels_last:
        unet = unet.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    t = torch.randint(0, 1000, (batch,))
    tokens = torch.randn(batch, 128, 384)
    opt = torch.optim.AdamW(unet.parameters(), lr=1e-4)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = unet(x, t, encoder_hidden_states=tokens).sample.float()  # (B, 16, 16, 16)
        loss = out.pow(2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t0)
    return statistics.median(times[2:])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=6)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    print(f"| UNet (64, 128, 128) | input channels | cross-attention | autocast | memory | s / step (batch {a.batch}) |")
    print("|---|---|---|---|---|---|")
    for layout, xattn, bf16, cl in (
        (True, True, False, False),
        (True, True, True, False),
        (True, True, True, True),
        (True, False, True, False),
        (False, True, True, False),
    ):
        torch.manual_seed(0)
        unet = build_unet(T2ITrainConfig(layout=layout), 16, 16, 384)
        if not xattn:
            from diffusers import UNet2DConditionModel

            cfg = dict(unet.config)
            cfg |= {"down_block_types": ("DownBlock2D",) * 3, "up_block_types": ("UpBlock2D",) * 3, "mid_block_type": "UNetMidBlock2D"}
            unet = UNet2DConditionModel.from_config(cfg)
        in_ch = unet.config.in_channels
        s = step_seconds(unet.train(), a.batch, in_ch, bf16, cl, a.repeats)
        print(f"| {'layout map' if layout else 'latent only'} | {in_ch} | {'yes' if xattn else 'no'} | "
              f"{'bfloat16' if bf16 else 'float32'} | {'channels-last' if cl else 'contiguous'} | {s:.2f} |")
    print(f"(layout map: {LAYOUT_CHANNELS} extra channels)")


if __name__ == "__main__":
    main()
