"""Training loop of the Shapes-world autoencoder (diffusers ``AutoencoderDC``, the deep-compression AE).

Why DC-AE's architecture (Chen et al. 2024, "Deep Compression Autoencoder"): its down- and
up-sampling have non-parametric space-to-channel shortcuts (pixel unshuffle + channel averaging),
so it starts near a linear patch code and converges several times faster than TAESD-style conv
stacks or SD's ``AutoencoderKL`` -- measured here: 19.6 dB after 200 steps against 16.3 dB for
``AutoencoderTiny`` at the same cost, which is what matters on a 2-core CPU.  The documented latent
choice is 16 x 16 x 16 for a 128 x 128 image (factor 8 like SD, 16 channels like SD3 / FLUX): the
same 12x compression as SD's 4 channels at factor 4, but it keeps the denoiser at 16 x 16 where
it is 4x cheaper to train.

The network is fully convolutional, so it is trained on random crops of a pre-rendered pool
(cheaper) and evaluated on whole fresh images.  After training, ``scaling_factor`` is set to one
over the latents' standard deviation (SD's convention), so the denoiser sees unit-variance latents.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from ..atomic import atomic_folder, write_json
from ..world.render import render
from ..world.scene import random_scene
from . import register_task
from .loop import pick_device, resume, save_checkpoint, start_run, warmup_cosine

logger = logging.getLogger(__name__)


@dataclass
class AutoencoderTrainConfig:
    out: str = "models/shapes-ae"
    steps: int = 3000
    batch_size: int = 32
    crop: int = 64  # training crop side in pixels (multiple of 8); evaluation uses whole images
    lr: float = 2e-3
    warmup: int = 100
    seed: int = 2000  # training scenes come from seeds seed*1_000_003 + k
    pool: int = 20000  # rendered training images, cropped at random every step
    channels: tuple[int, ...] = (16, 32, 64, 128)  # one stage per entry; factor 2**(len-1)
    blocks: tuple[int, ...] = (1, 1, 2, 2)  # residual blocks per stage
    latent_channels: int = 16
    latent_noise: float = 0.02  # Gaussian noise on latents while training: a decoder robust to small latent errors suits diffusion
    l1_weight: float = 1.0
    mse_weight: float = 4.0
    # phase 2: the decoder alone, the encoder frozen as saved after phase 1 -- latents (and so any
    # denoiser trained on them) stay valid bit for bit while reconstructions sharpen
    decoder_steps: int = 0
    decoder_lr: float = 3e-4
    # start from this autoencoder folder's weights: with steps > 0 phase 1 fine-tunes it jointly (encoder too, so its
    # latents change); with steps = 0 phase 2 alone fine-tunes its decoder (latents stay valid)
    init: str = ""
    # scale equivariance (Skorokhodov et al. 2025, "Improving the Diffusability of Autoencoders", eq. 3): the decoder
    # of a 2x (and 4x) average-pooled latent should give the equally pooled image, so that the coarse, smooth latents a
    # diffusion model produces first decode to coarse images rather than to speckle; weight of that term
    equivariance: float = 0.0
    ckpt_every: int = 100
    eval_n: int = 500
    eval_seed: int = 7777
    stats_n: int = 512
    threads: int = 2
    device: str = "auto"  # CUDA when present


def render_pool(seed: int, n: int) -> torch.Tensor:
    """``n`` rendered scenes, uint8 (n, H, W, 3), scene k from ``Random(seed * 1_000_003 + k)``."""
    return torch.from_numpy(np.stack([render(random_scene(random.Random(seed * 1_000_003 + k))) for k in range(n)]))


def _autoencoder_class() -> type:
    from diffusers import AutoencoderDC

    return AutoencoderDC


def build_autoencoder(cfg: AutoencoderTrainConfig):
    from diffusers import AutoencoderDC

    n = len(cfg.channels)
    if len(cfg.blocks) != n:
        raise ValueError(f"channels {cfg.channels} and blocks {cfg.blocks} must have the same length")
    return AutoencoderDC(
        latent_channels=cfg.latent_channels,
        encoder_block_types="ResBlock",
        decoder_block_types="ResBlock",
        encoder_block_out_channels=tuple(cfg.channels),
        decoder_block_out_channels=tuple(cfg.channels),
        encoder_layers_per_block=tuple(cfg.blocks),
        decoder_layers_per_block=tuple(cfg.blocks),
        encoder_qkv_multiscales=((),) * n,  # no attention: the world is local and attention is costly on a CPU
        decoder_qkv_multiscales=((),) * n,
    )


def to_unit(images: torch.Tensor) -> torch.Tensor:
    """uint8 (B, H, W, 3) -> float (B, 3, H, W) in [-1, 1]."""
    return images.permute(0, 3, 1, 2).float() / 127.5 - 1.0


def random_crops(x: torch.Tensor, crop: int, g: torch.Generator) -> torch.Tensor:
    """One random ``crop`` x ``crop`` window per image, aligned to the factor-8 grid."""
    b, _, h, w = x.shape
    if crop >= h:
        return x
    ys = torch.randint(0, (h - crop) // 8 + 1, (b,), generator=g) * 8
    xs = torch.randint(0, (w - crop) // 8 + 1, (b,), generator=g) * 8
    return torch.stack([x[i, :, y : y + crop, xx : xx + crop] for i, (y, xx) in enumerate(zip(ys.tolist(), xs.tolist(), strict=True))])


@torch.no_grad()
def reconstruct(ae, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """uint8 (B, H, W, 3) -> uint8 reconstructions through encode -> decode (no latent quantisation)."""
    out = []
    for i in range(0, len(images), batch_size):
        x = to_unit(torch.from_numpy(np.ascontiguousarray(images[i : i + batch_size]))).to(ae.device)
        y = ae.decode(ae.encode(x).latent).sample
        out.append(((y.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy())
    return np.concatenate(out)


def evaluate_autoencoder(ae, n: int = 500, seed: int = 7777, reader=None) -> dict:
    """Mean reconstruction PSNR (dB, per image then averaged) on ``n`` fresh scenes, per style, and the
    share of reconstructions from which the scene reader reads back the exact scene."""
    from ..eval.metrics import scene_match, summarise_matches
    from ..world.reader import SceneReader, read_scenes

    rng = random.Random(seed)
    scenes = [random_scene(rng) for _ in range(n)]
    images = np.stack([render(s) for s in scenes])
    recon = reconstruct(ae, images)
    mse = ((recon.astype(np.float64) - images.astype(np.float64)) ** 2).mean(axis=(1, 2, 3))
    psnr = 10 * np.log10(255.0**2 / np.maximum(mse, 1e-10))
    by_style: dict[str, list[float]] = {}
    for s, p in zip(scenes, psnr, strict=True):
        by_style.setdefault(s.style, []).append(float(p))
    reader = reader or SceneReader.from_pretrained()
    preds = read_scenes(reader, recon)
    read = summarise_matches([scene_match(p, s) for p, s in zip(preds, scenes, strict=True)])
    return {
        "n": n,
        "seed": seed,
        "psnr": float(psnr.mean()),
        "psnr_min": float(psnr.min()),
        "psnr_by_style": {k: float(np.mean(v)) for k, v in sorted(by_style.items())},
        "reader_exact_scene": read["exact_scene"],
        "reader_attr_accuracy": read["attr_accuracy"],
    }


@torch.no_grad()
def latent_stats(ae, n: int, seed: int) -> tuple[float, float]:
    """Mean and standard deviation of the encoder's latents over ``n`` fresh scenes."""
    rng = random.Random(seed)
    images = np.stack([render(random_scene(rng)) for _ in range(n)])
    z = torch.cat([ae.encode(to_unit(torch.from_numpy(images[i : i + 64])).to(ae.device)).latent for i in range(0, n, 64)])
    return float(z.mean()), float(z.std())


def _fit(ae, params, opt, sched, pool: torch.Tensor, cfg: AutoencoderTrainConfig, step: int, steps: int, ckpt: Path, desc: str) -> None:
    """Reconstruction training from ``step`` to ``steps`` on random crops of ``pool``, checkpointing to ``ckpt``."""
    params = list(params)
    g = torch.Generator().manual_seed(cfg.seed + step + (0 if desc == "autoencoder" else 10**6))
    ae.train()
    bar = tqdm(total=steps, initial=step, desc=desc, mininterval=5)
    t0 = time.time()
    while step < steps:
        x = random_crops(to_unit(pool[torch.randint(0, len(pool), (cfg.batch_size,), generator=g)]), cfg.crop, g)  # (B, 3, crop, crop)
        x = x.to(ae.device)
        z = ae.encode(x).latent  # (B, C, crop/8, crop/8)
        if cfg.latent_noise:
            z = z + cfg.latent_noise * torch.randn(z.shape, generator=g).to(z.device)
        y = ae.decode(z).sample  # (B, 3, crop, crop)
        loss = cfg.l1_weight * F.l1_loss(y, x) + cfg.mse_weight * F.mse_loss(y, x)
        if cfg.equivariance:
            for k in (2, 4):
                y_k = ae.decode(F.avg_pool2d(z, k)).sample  # (B, 3, crop/k, crop/k)
                x_k = F.avg_pool2d(x, k)
                loss = loss + cfg.equivariance * (cfg.l1_weight * F.l1_loss(y_k, x_k) + cfg.mse_weight * F.mse_loss(y_k, x_k)) / 2
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        step += 1
        bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.4f}")
        if step % cfg.ckpt_every == 0 or step == steps:
            save_checkpoint(ckpt, step, ae, opt, sched)
            logger.info("%s step %d loss %.5f (%.1fs)", desc, step, loss.item(), time.time() - t0)
    bar.close()


@register_task("autoencoder", AutoencoderTrainConfig)
def train_autoencoder(cfg: AutoencoderTrainConfig) -> dict:
    out = start_run(cfg)
    torch.manual_seed(cfg.seed)
    ckpt, dec_ckpt = out / "checkpoint.pt", out / "decoder_checkpoint.pt"
    pool = render_pool(cfg.seed, cfg.pool)  # (N, H, W, 3) uint8
    mean = std = None
    dev = pick_device(cfg.device)
    if cfg.init and not cfg.steps and not dec_ckpt.is_file():
        if not cfg.decoder_steps:
            raise ValueError("init without steps fine-tunes a given autoencoder's decoder: set decoder_steps > 0 (or steps > 0: joint)")
        from ..models.backbone import resolve_folder

        with atomic_folder(out) as tmp:
            _autoencoder_class().from_pretrained(resolve_folder(cfg.init), torch_dtype=torch.float16).save_pretrained(tmp)
    elif not dec_ckpt.is_file():  # phase 1 (joint) unless phase 2 has begun
        if cfg.init:
            # a joint fine-tune of a trained autoencoder (EQ-VAE, Kouzelis et al. 2025, fine-tunes SD's VAE for a few
            # epochs with its equivariance term): encoder and decoder move, so the latents (and any denoiser) change
            from ..models.backbone import resolve_folder

            ae = _autoencoder_class().from_pretrained(resolve_folder(cfg.init), torch_dtype=torch.float32).to(dev)
        else:
            ae = build_autoencoder(cfg).to(dev)
        opt = torch.optim.AdamW(ae.parameters(), lr=cfg.lr, weight_decay=0.0)
        sched = warmup_cosine(opt, cfg.warmup, cfg.steps)
        step = resume(ckpt, ae, opt, sched)
        _fit(ae, ae.parameters(), opt, sched, pool, cfg, step, cfg.steps, ckpt, "autoencoder")
        ae.eval()
        mean, std = latent_stats(ae, cfg.stats_n, cfg.seed + 1)
        # AutoencoderDC has no shift_factor; the mean is reported so a non-centred latent would show
        ae.register_to_config(scaling_factor=1.0 / std)
        with atomic_folder(out) as tmp:
            ae.to(torch.float16).save_pretrained(tmp)
    if cfg.decoder_steps:
        ae = _autoencoder_class().from_pretrained(out, torch_dtype=torch.float32).to(dev)  # the shipped (fp16) encoder
        ae.encoder.requires_grad_(False)
        opt = torch.optim.AdamW(ae.decoder.parameters(), lr=cfg.decoder_lr, weight_decay=0.0)
        sched = warmup_cosine(opt, 50, cfg.decoder_steps)
        step = resume(dec_ckpt, ae, opt, sched)
        _fit(ae, ae.decoder.parameters(), opt, sched, pool, cfg, step, cfg.decoder_steps, dec_ckpt, "decoder")
        with atomic_folder(out) as tmp:
            ae.eval().to(torch.float16).save_pretrained(tmp)
    # measured as shipped: the fp16 weights read back
    ae = _autoencoder_class().from_pretrained(out, torch_dtype=torch.float32).to(dev).eval()
    if mean is None:
        mean, std = latent_stats(ae, cfg.stats_n, cfg.seed + 1)
    metrics = evaluate_autoencoder(ae, cfg.eval_n, cfg.eval_seed) | {"latent_mean": mean, "latent_std": std}
    write_json(out / "eval.json", metrics)
    logger.info("eval %s", metrics)
    return metrics
