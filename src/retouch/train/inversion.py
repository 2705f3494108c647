"""Training the TurboEdit inversion network against a frozen few-step generator.

Loss (TurboEdit eq. 6-8): for each of the generator's timesteps t (999, 749, 499, 249 for four
steps), the network sees the input latents x0, the previous reconstruction x_{0,t+1} (zeros at the
first step) and the caption, outputs a per-pixel mean and log-variance, samples eps_t from them
(reparameterisation), and the frozen generator turns sqrt(a_t) x_{0,t+1} + sqrt(1 - a_t) eps_t into
x_{0,t}.  The step's loss is ||x0 - x_{0,t}||^2 + lambda * KL(N(mean, var) || N(0, 1)).  The previous
reconstruction is detached between steps (ReStyle-style iterative refinement: each step learns to
correct what it is given).  No editing pairs and no data beyond images and their captions.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from ..atomic import write_json
from . import register_task
from .loop import pick_device, resume, save_checkpoint, start_run, warmup_cosine

logger = logging.getLogger(__name__)


@dataclass
class InversionTrainConfig:
    out: str = "models/shapes-turbo-inversion"
    generator: str = "models/shapes-turbo"
    teacher_recipe: str = "recipes/shapes-draft-teacher.json"  # its caches give the training latents and captions
    detailed_only: bool = True  # train on the detailed captions, the captioner's output at edit time
    n_steps: int = 4  # generator timesteps (trailing spacing)
    rank: int = 8
    kl_weight: float = 1e-6  # lambda of eq. 8; KL summed over latent elements, MSE averaged
    steps: int = 1200
    batch_size: int = 12
    lr: float = 3e-4
    warmup: int = 50
    seed: int = 5000
    ckpt_every: int = 50
    eval_n: int = 128
    eval_seed: int = 8888
    threads: int = 1
    device: str = "auto"
    init: str = ""  # an inversion folder to start from (its adapter on the new generator: a short fine-tune after re-distilling)


def kl_standard_normal(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mean, exp(logvar)) || N(0, 1)) summed over each sample's elements, averaged over the batch (eq. 7)."""
    return (0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar)).flatten(1).sum(1).mean()


def _load_generator(path: str, dev: torch.device):
    from ..models.backbone import load_backbone

    gen = load_backbone(path, device=dev)
    den = gen.denoiser.float().requires_grad_(False).eval()
    return gen, den


@register_task("inversion", InversionTrainConfig)
def train_inversion(cfg: InversionTrainConfig) -> dict:
    from ..models.backbone import TextConditioning
    from ..models.inversion import InversionConfig, InversionNet, save_inversion
    from ..sampling import timesteps_for, turbo_step
    from .t2i import LayoutSource, latent_cache, load_t2i_recipe, text_cache, training_captions

    out = start_run(cfg)
    dev = pick_device(cfg.device)
    tcfg = load_t2i_recipe(cfg.teacher_recipe)
    texts, _ = text_cache(tcfg)
    latents = latent_cache(tcfg)
    if cfg.detailed_only:
        from ..world.captions import detailed_caption

        scenes, caps = training_captions(tcfg)
        ids = np.array([i for i, (s, c) in enumerate(zip(scenes, caps, strict=True)) if c == detailed_caption(s)])
    else:
        ids = np.arange(len(latents))
    if len(ids) == 0:
        raise ValueError(f"no training scenes: the cache of {cfg.teacher_recipe} holds no detailed captions (p_detailed = 0?)")
    logger.info("training the inversion network on %d cached scenes", len(ids))
    gen, den = _load_generator(cfg.generator, dev)
    layout_ch = 0
    if gen.caption_reader is not None:
        from ..models.layout import LAYOUT_CHANNELS

        layout_ch = LAYOUT_CHANNELS + (gen.latent_channels if gen.draft is not None else 0)
    icfg = InversionConfig(rank=cfg.rank, alpha=float(cfg.rank), generator=str(cfg.generator), extra={"layout_channels": layout_ch})
    net = InversionNet(den.unet, icfg).to(dev)
    source = LayoutSource(tcfg) if layout_ch else None
    if cfg.init:
        from ..models.inversion import load_inversion_weights

        load_inversion_weights(net, cfg.init)
        logger.info("initialised the inversion network from %s", cfg.init)
    params = [p for p in net.parameters() if p.requires_grad]
    logger.info("%d trainable parameters", sum(p.numel() for p in params))
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)
    sched = warmup_cosine(opt, cfg.warmup, cfg.steps)
    ckpt = out / "checkpoint.pt"
    step = resume(ckpt, net, opt, sched)
    ts = timesteps_for(cfg.n_steps, den.num_train_timesteps)
    g = torch.Generator().manual_seed(cfg.seed + step)
    net.train()
    bar = tqdm(total=cfg.steps, initial=step, desc="inversion", mininterval=10)
    t0 = time.time()
    log: dict = {}
    while step < cfg.steps:
        idx = np.sort(ids[torch.randint(0, len(ids), (cfg.batch_size,), generator=g).numpy()])
        x0 = torch.from_numpy(latents[idx].astype(np.float32)).to(dev)  # (B, C, h, w)
        tokens = torch.from_numpy(texts[idx].astype(np.float32)).to(dev)  # (B, L, 384)
        layout = None
        if source is not None:
            layout = source(idx, x0.shape[2], x0.shape[3], dev)  # (B, M [+ C], h, w)
        cond = TextConditioning(tokens, layout=layout)  # tokens (B, L, 384)
        prev = torch.zeros_like(x0)
        opt.zero_grad(set_to_none=True)
        mses, kls = [], []
        for t in ts:
            z = torch.randn(x0.shape, generator=g).to(dev)
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
                mean, logvar, _, x0_t = turbo_step(net, den, x0, prev, t, cond, noise=z)
            mse = torch.nn.functional.mse_loss(x0_t.float(), x0)
            kl = kl_standard_normal(mean, logvar)
            ((mse + cfg.kl_weight * kl) / len(ts)).backward()
            prev = x0_t.detach().float()
            mses.append(mse.item())
            kls.append(kl.item())
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        step += 1
        log = {"mse_first": mses[0], "mse_last": mses[-1], "kl": kls[-1]}
        bar.update(1)
        bar.set_postfix({k: f"{v:.4g}" for k, v in log.items()})
        if step % cfg.ckpt_every == 0 or step == cfg.steps:
            save_checkpoint(ckpt, step, net, opt, sched)
            save_inversion(net, out)
            logger.info("step %d %s (%.0fs)", step, log, time.time() - t0)
    bar.close()
    net.eval()
    save_inversion(net, out)
    result = {"steps": step, **log, "eval": evaluate_inversion(gen, net, cfg.eval_n, cfg.eval_seed, cfg.n_steps)}
    write_json(out / "eval.json", result)
    return result


@torch.no_grad()
def evaluate_inversion(gen, net, n: int, seed: int, n_steps: int = 4, batch_size: int = 32) -> dict:
    """Reconstruction of held-out Shapes scenes (detailed captions): latent MSE, pixel PSNR, noise statistics."""
    from ..sampling import invert_turbo, timesteps_for
    from ..world.captions import detailed_caption
    from ..world.render import render
    from ..world.scene import random_scene

    scenes = [random_scene(random.Random(seed * 1_000_003 + k)) for k in range(n)]
    ts = timesteps_for(n_steps, gen.denoiser.num_train_timesteps)
    psnr, ae_psnr, lat_mse, abs_eps, big = [], [], [], [], []
    for i in range(0, n, batch_size):
        chunk = scenes[i : i + batch_size]
        imgs = np.stack([render(s) for s in chunk])
        x0 = gen.encode_images(imgs).float()
        cond = gen.encode_text([detailed_caption(s) for s in chunk]).to(dtype=torch.float32)
        inv = invert_turbo(net, gen.denoiser, x0, ts, cond)
        rec = gen.decode_latents(inv.recons[-1])
        ae = gen.decode_latents(x0)
        for a, b, c in zip(imgs, rec, ae, strict=True):
            psnr.append(_psnr(a, b))
            ae_psnr.append(_psnr(a, c))
        lat_mse.append(float(((inv.recons[-1] - x0) ** 2).mean()))
        eps = torch.stack(inv.noises)
        abs_eps.append(float(eps.abs().mean()))
        big.append(float((eps.abs() > 4).float().mean()))
    return {
        "n": n,
        "seed": seed,
        "psnr_db": float(np.mean(psnr)),
        "autoencoder_psnr_db": float(np.mean(ae_psnr)),
        "latent_mse": float(np.mean(lat_mse)),
        "mean_abs_noise": float(np.mean(abs_eps)),
        "frac_noise_above_4": float(np.mean(big)),
    }


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(((a.astype(np.float64) - b.astype(np.float64)) ** 2).mean())
    return 100.0 if mse == 0 else 10 * np.log10(255.0**2 / mse)
