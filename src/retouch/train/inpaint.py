"""The Shapes inpainting generator (ByteEdit, Ren et al. 2024, sec. 3 and 4.1): SD-inpainting's layout on the
text-to-image teacher.

The UNet reads the noisy latent, the mask (1 channel, at the latent's size) and the masked image's latent (C
channels: the image with its masked pixels set to grey, encoded), then the caption's layout map and encoded
draft, as ``UNetDenoiser`` concatenates them.  It starts as the teacher: the first convolution is widened with
zero weights on the new channels (as SD-inpainting and InstructPix2Pix were grown from SD), so step 0 is the
teacher ignoring the mask; low-rank adapters on every attention and ResNet layer and the whole first
convolution are trained, which keeps the shipped model a 1-2 MB delta on the teacher (``models/unet_delta.py``).

Training pairs need no editing data: a training scene's render, a mask from ByteEdit's mix
(``fill_masks.py``: whole image, brush strokes, boxes, outward extensions, dilated objects), and the scene's
caption; the target is the whole scene.  Classifier-free guidance drops the caption with its map and draft
(the masked image stays), so the same model fills from the surroundings alone.  The loss is the teacher's
v-MSE, with latent cells under the mask weighed ``1 + mask_weight``: outside it the answer is in the input.
"""

from __future__ import annotations

import copy
import logging
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from ..world.render import DEFAULT_SIZE
from . import register_task
from .fill_masks import sample_mask
from .loop import pick_device, resume, save_checkpoint, start_run, warmup_cosine
from .t2i import (
    LayoutSource,
    diffusion_loss,
    latent_cache,
    load_autoencoder,
    load_t2i_recipe,
    make_scheduler,
    save_pipeline,
    text_cache,
    training_captions,
)

logger = logging.getLogger(__name__)

LORA_TARGETS = ("to_q", "to_k", "to_v", "to_out.0", "proj_in", "proj_out", "ff.net.0.proj", "ff.net.2", "conv1", "conv2", "time_emb_proj")


@dataclass
class InpaintTrainConfig:
    out: str = "models/shapes-inpaint"
    teacher_recipe: str = "recipes/shapes-draft-teacher.json"  # its scenes, caches, autoencoder, map and draft
    init: str = "models/shapes-teacher"  # the text-to-image pipeline whose UNet is widened and adapted
    steps: int = 1200
    batch_size: int = 32
    lr: float = 1e-3
    warmup: int = 50
    ema: float = 0.99
    rank: int = 16  # LoRA rank of every adapted layer
    alpha: float = 16.0
    targets: tuple[str, ...] = LORA_TARGETS
    full: tuple[str, ...] = ("conv_in",)  # trained whole (the widened first convolution)
    # ByteEdit's mask mix: kind -> weight (train/fill_masks.py)
    masks: dict[str, float] = field(default_factory=lambda: {"whole": 0.1, "brush": 0.2, "box": 0.15, "outward": 0.2, "object": 0.35})
    p_uncond: float = 0.15  # caption, map and draft dropped together; the masked image stays
    mask_weight: float = 3.0  # latent cells under the mask weigh 1 + this in the loss
    guidance: float = 1.0  # written to the folder as its default
    default_steps: int = 20  # ByteEdit's T = 20 before step reduction
    seed: int = 5000
    renders: str = "~/.cache/retouch/draft"  # the draft's render cache of the same scenes (made here when missing)
    ckpt_every: int = 100
    threads: int = 2
    device: str = "auto"
    bf16_cpu: bool = True


def scene_renders(t2i: Any, folder: str, threads: int) -> np.ndarray:
    """Renders (N, 128, 128, 3) of the t2i recipe's scenes: the draft's render cache when one covers them."""
    from .draft import DraftTrainConfig, render_cache

    cache = Path(folder).expanduser()
    for p in sorted(cache.glob(f"renders-s{t2i.seed}-n*.npy")):
        arr = np.load(p, mmap_mode="r")
        if arr.shape[0] >= t2i.n_scenes and arr.shape[1] == DEFAULT_SIZE:
            return arr
    return render_cache(DraftTrainConfig(cache=folder, n_scenes=t2i.n_scenes, seed=t2i.seed, threads=threads))


def widen_unet(unet: Any, fill_channels: int, latent_channels: int) -> Any:
    """A copy of ``unet`` whose first convolution also reads ``fill_channels`` more inputs, right after the latent's
    ``latent_channels`` (zero weights: the copy computes exactly what ``unet`` does until they are trained)."""
    from diffusers import UNet2DConditionModel

    cfg = dict(unet.config)
    old = int(cfg["in_channels"])
    cfg["in_channels"] = old + fill_channels
    wide = UNet2DConditionModel.from_config(cfg)
    state = unet.state_dict()
    w = state["conv_in.weight"]  # (O, old, k, k): latent, then the layout map and draft
    grown = torch.zeros((w.shape[0], old + fill_channels, *w.shape[2:]), dtype=w.dtype)
    grown[:, :latent_channels] = w[:, :latent_channels]
    grown[:, latent_channels + fill_channels :] = w[:, latent_channels:]
    state["conv_in.weight"] = grown
    wide.load_state_dict(state)
    return wide


def mask_latent(mask: torch.Tensor, factor: int) -> torch.Tensor:
    """(B, 1, H, W) pixel mask in {0, 1} -> (B, 1, H/f, W/f): a latent cell is masked when any of its pixels is
    (so no masked pixel is left to a cell the UNet is told to keep)."""
    return torch.nn.functional.max_pool2d(mask, factor)


def adapted_unet(base: str | Path, latent_channels: int, rank: int, alpha: float, targets: tuple[str, ...], full: tuple[str, ...]) -> Any:
    """The text-to-image UNet in ``base`` widened to read the mask and the masked latent, with LoRA adapters on
    ``targets`` and the modules named in ``full`` trainable whole; everything else frozen."""
    from diffusers import UNet2DConditionModel
    from peft import LoraConfig

    from ..models.inversion import _target_regex

    teacher = UNet2DConditionModel.from_pretrained(base, torch_dtype=torch.float32)
    unet = widen_unet(teacher, 1 + latent_channels, latent_channels)
    unet.requires_grad_(False)
    unet.add_adapter(LoraConfig(r=rank, lora_alpha=alpha, target_modules=_target_regex(unet, targets), init_lora_weights=True))
    for name, p in unet.named_parameters():
        if any(name.startswith(prefix + ".") for prefix in full):
            p.requires_grad_(True)
    return unet


@dataclass
class FillBatch:
    x0: torch.Tensor  # (B, C, h, w) clean latents
    tokens: torch.Tensor  # (B, L, 384) caption token states
    layout: torch.Tensor  # (B, M + C, h, w) layout map and encoded draft
    x: torch.Tensor  # (B, 3, H, W) renders in [-1, 1]
    m: torch.Tensor  # (B, 1, H, W) masks in {0, 1}
    masked: torch.Tensor  # (B, C, h, w) latents of the renders with their masked pixels grey
    kinds: list[str]  # the mask kind of each member

    def extra(self, factor: int) -> torch.Tensor:
        """(B, 1 + C + M + C, h, w): mask, masked latent, map and draft, in the order UNetDenoiser concatenates them."""
        return torch.cat([mask_latent(self.m, factor), self.masked, self.layout], dim=1)


class FillData:
    """What both fill loops (this one and train/feedback.py) train on: a t2i recipe's cached latents, caption states,
    layout maps and drafts, the renders of its scenes, and the frozen autoencoder that encodes masked renders."""

    def __init__(self, t2i: Any, renders: str, threads: int, dev: torch.device) -> None:
        self.texts, self.null = text_cache(t2i)  # (N, L, 384), (L, 384)
        self.latents = latent_cache(t2i)  # (N, C, h, w)
        self.scenes = training_captions(t2i)[0]
        self.source = LayoutSource(t2i, self.scenes)
        self.renders = scene_renders(t2i, renders, threads)
        self.n, self.c, self.h, _ = self.latents.shape
        self.factor = DEFAULT_SIZE // self.h
        self.dev = dev
        self.ae = load_autoencoder(t2i.autoencoder).to(dev).requires_grad_(False)
        self.scale = float(self.ae.config.scaling_factor)

    def batch(self, idx: np.ndarray, rng: random.Random, masks: dict[str, float], bf16: bool = False) -> FillBatch:
        dev = self.dev
        drawn = [sample_mask(rng, DEFAULT_SIZE, self.scenes[i], masks) for i in idx]
        m = torch.from_numpy(np.stack([mk for _, mk in drawn])[:, None].astype(np.float32)).to(dev)
        x = torch.from_numpy(np.ascontiguousarray(self.renders[idx])).to(dev).permute(0, 3, 1, 2).float() / 127.5 - 1
        with torch.no_grad(), torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda" or bf16):
            masked = self.ae.encode(x * (1 - m)).latent.float() * self.scale  # masked pixels grey, as SD-inpainting
        return FillBatch(
            x0=torch.from_numpy(self.latents[idx].astype(np.float32)).to(dev),
            tokens=torch.from_numpy(self.texts[idx].astype(np.float32)).to(dev),
            layout=self.source(idx, self.h, self.h, dev),
            x=x,
            m=m,
            masked=masked,
            kinds=[k for k, _ in drawn],
        )


@register_task("inpaint", InpaintTrainConfig)
def train_inpaint(cfg: InpaintTrainConfig) -> dict:
    from ..models.unet_delta import save_unet_delta, unet_delta_state

    out = start_run(cfg)
    torch.manual_seed(cfg.seed)
    t2i = load_t2i_recipe(cfg.teacher_recipe)
    if not t2i.layout:
        raise ValueError(f"{cfg.teacher_recipe}: the inpainting generator is grown from a layout-map teacher")
    dev = pick_device(cfg.device)
    data = FillData(t2i, cfg.renders, cfg.threads, dev)
    base = Path(cfg.init) / "unet"
    unet = adapted_unet(base, data.c, cfg.rank, cfg.alpha, cfg.targets, cfg.full).to(dev)
    trainable = [p for p in unet.parameters() if p.requires_grad]
    ema = torch.nn.ParameterList([torch.nn.Parameter(p.detach().clone(), requires_grad=False) for p in trainable])
    logger.info(
        "inpainting UNet: %d trainable parameters of %d", sum(p.numel() for p in trainable), sum(p.numel() for p in unet.parameters())
    )
    opt = torch.optim.AdamW(trainable, lr=cfg.lr, weight_decay=0.0)
    sched = warmup_cosine(opt, cfg.warmup, cfg.steps)
    ckpt = out / "checkpoint.pt"
    step = resume(ckpt, unet, opt, sched, ema=ema)
    scheduler = make_scheduler(t2i.prediction_type)
    alphas = scheduler.alphas_cumprod.float()
    g = torch.Generator().manual_seed(cfg.seed + step)
    rng = random.Random(cfg.seed * 7919 + step)
    null_t = torch.from_numpy(data.null.astype(np.float32)).to(dev)
    unet.train()
    bar = tqdm(total=cfg.steps, initial=step, desc="inpaint", mininterval=10)
    t0 = time.time()
    kinds: dict[str, int] = {}
    while step < cfg.steps:
        idx = torch.randint(0, data.n, (cfg.batch_size,), generator=g).sort().values.numpy()
        b = data.batch(idx, rng, cfg.masks, cfg.bf16_cpu)
        for kind in b.kinds:
            kinds[kind] = kinds.get(kind, 0) + 1
        drop = (torch.rand(cfg.batch_size, generator=g) < cfg.p_uncond).to(dev)
        b.tokens[drop] = null_t
        b.layout[drop] = 0
        extra = b.extra(data.factor)  # (B, 1 + C + M + C, h, w)
        weight = 1 + cfg.mask_weight * mask_latent(b.m, data.factor)
        loss = diffusion_loss(unet, b.x0, b.tokens, alphas, t2i.prediction_type, t2i.min_snr_gamma, g, weight, extra, cfg.bf16_cpu)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        opt.step()
        sched.step()
        step += 1
        with torch.no_grad():
            d = min(cfg.ema, (1 + step) / (10 + step))
            for pe, pm in zip(ema, trainable, strict=True):
                pe.lerp_(pm, 1 - d)
        bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.4f}")
        if step % cfg.ckpt_every == 0 or step == cfg.steps:
            save_checkpoint(ckpt, step, unet, opt, sched, ema=ema)
            logger.info("step %d loss %.4f (%.1fs) masks %s", step, loss.item(), time.time() - t0, kinds)
    bar.close()
    # the EMA weights into the adapted UNet, then its delta on the teacher
    final = copy.deepcopy(unet).cpu()
    with torch.no_grad():
        for p, pe in zip([p for p in final.parameters() if p.requires_grad], ema, strict=True):
            p.copy_(pe)
    state = unet_delta_state(final, cfg.full)
    config = dict(final.config)
    save_pipeline(
        out,
        final,
        t2i.autoencoder,
        scheduler,
        t2i.max_length,
        {"retouch_guidance": cfg.guidance, "retouch_default_steps": cfg.default_steps},
        share_with=cfg.init,
        caption_reader=t2i.caption_reader,
        draft=t2i.draft or None,
        class_name="StableDiffusionInpaintPipeline",
        write_unet=lambda folder: save_unet_delta(folder, config, state, base, cfg.rank, cfg.alpha),
    )
    return {"steps": step, "loss": float(loss.item()), "mask_kinds": kinds}
