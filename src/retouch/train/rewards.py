"""Training the three ByteEdit reward models (models/rewards.py) on the Shapes world: ``retouch train
recipes/reward-KIND.json``.

Every pair is made from a training scene's render and a fill mask of ByteEdit's mix (train/fill_masks.py):

- ``aesthetic``: the render against the render degraded inside the mask (``DEGRADATIONS``: blur, colour bleed, a
  seam from shifted content, a smudge (OpenCV Telea's fill), noise, a foreign patch from another scene, and,
  with ``generator``, the inpainting model's own 1-2 step fills, its early failures); a pairwise logistic loss
  (Bradley-Terry, as reward models for RLHF and ImageReward are trained);
- ``coherence``: the same composites, per pixel: generated inside the mask, real elsewhere and in the clean
  renders (binary cross-entropy, the classes balanced);
- ``attributes``: one object's footprint cut out of the render, each of its attribute values a class (cross-entropy
  per attribute); held out, it must prefer the object's full description to the same with one attribute changed,
  the prompts parsed from their text.

Held-out accuracy (preferring the right one of two, on scenes of ``eval_seed`` never trained on) is measured at
the end and written to the folder's eval.json; docs/inpaint.md reports it.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from ..atomic import write_json
from ..models.rewards import REWARDS, RewardConfig, RewardModel, object_values, prompt_values, region_crops
from ..world.render import DEFAULT_SIZE, object_footprint, render
from ..world.scene import OBJECT_ATTRS, Scene
from . import register_task
from .fill_masks import sample_mask
from .loop import pick_device, resume, save_checkpoint, start_run, warmup_cosine

logger = logging.getLogger(__name__)

DEGRADATIONS = ("blur", "bleed", "seam", "smudge", "noise", "foreign", "generator")


@dataclass
class RewardTrainConfig:
    kind: str = "aesthetic"  # aesthetic | attributes | coherence
    out: str = "models/reward-aesthetic"
    teacher_recipe: str = "recipes/shapes-draft-teacher.json"  # its training scenes (and their render cache)
    renders: str = "~/.cache/retouch/draft"
    width: int = 32
    steps: int = 1500
    batch_size: int = 32
    lr: float = 1e-3
    warmup: int = 50
    masks: dict[str, float] = field(default_factory=lambda: {"brush": 0.25, "box": 0.2, "outward": 0.1, "object": 0.45})
    generator: str = ""  # an inpainting model folder whose few-step fills join the negatives (its early failures)
    generator_recipe: str = ""  # the recipe that makes ``generator`` when that folder is missing
    generator_pool: int = 512  # how many such fills are made, once
    generator_steps: tuple[int, ...] = (1, 2)
    # attributes: the share of crops redrawn through the autoencoder with noise added to their latents (std drawn from
    # [0, latent_noise]): generated-looking objects whose attributes are still exactly known, so that the classifier
    # meets the generator's texture in training and does not score a correct fill low for looking generated
    redrawn: float = 0.0
    latent_noise: float = 0.3
    # attributes: adversarial training (Madry et al. 2018): each batch's crops also enter as their worst case within
    # an L-inf ball of this radius (in [-1, 1] units), found by ``adv_steps`` of projected gradient ascent. A robust
    # classifier's input gradients follow the image's content, not imperceptible textures (Santurkar et al. 2019),
    # which is what a feedback loop differentiating through it needs (docs/inpaint.md, fifth round). 0: off
    adv_eps: float = 0.0
    adv_steps: int = 3
    init: str = ""  # a reward folder of the same kind to start from
    eval_n: int = 500
    eval_seed: int = 31337
    seed: int = 6000
    ckpt_every: int = 250
    threads: int = 2
    device: str = "auto"


# -- the negatives: degradations inside a mask --------------------------------------------------------
def _gauss(x: torch.Tensor, sigma: float) -> torch.Tensor:
    r = max(1, int(3 * sigma))
    k = torch.exp(-(torch.arange(-r, r + 1, dtype=x.dtype) ** 2) / (2 * sigma * sigma))
    k = (k / k.sum()).to(x.device)
    c = x.shape[1]
    x = F.conv2d(F.pad(x, (r, r, 0, 0), mode="replicate"), k.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    return F.conv2d(F.pad(x, (0, 0, r, r), mode="replicate"), k.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)


def degrade(x: torch.Tensor, m: torch.Tensor, kind: str, rng: random.Random, others: torch.Tensor) -> torch.Tensor:
    """One image (1, 3, H, W) in [-1, 1] with ``kind`` applied inside mask ``m`` (1, 1, H, W)."""
    if kind == "blur":
        y = _gauss(x, rng.uniform(1.5, 4.0))
    elif kind == "bleed":
        col = torch.tensor([rng.uniform(-1, 1) for _ in range(3)], dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        a = rng.uniform(0.3, 0.7)
        y = (1 - a) * x + a * col
    elif kind == "seam":
        d = [rng.choice([-1, 1]) * rng.randint(3, 10) for _ in range(2)]
        y = torch.roll(x, shifts=(d[0], d[1]), dims=(2, 3))
    elif kind == "smudge":
        import cv2

        img = ((x[0].permute(1, 2, 0).cpu().numpy() + 1) * 127.5).clip(0, 255).astype(np.uint8)
        filled = cv2.inpaint(img, (m[0, 0].cpu().numpy() > 0.5).astype(np.uint8) * 255, 5.0, cv2.INPAINT_TELEA)
        y = torch.from_numpy(filled).permute(2, 0, 1)[None].to(x) / 127.5 - 1
    elif kind == "noise":
        y = x + rng.uniform(0.1, 0.35) * torch.randn(x.shape, generator=torch.Generator().manual_seed(rng.randrange(2**31))).to(x)
    elif kind == "foreign":
        y = others[rng.randrange(others.shape[0])][None]
    else:
        raise ValueError(f"unknown degradation {kind!r}; known: {', '.join(DEGRADATIONS)}")
    return (x * (1 - m) + y.clamp(-1, 1) * m).clamp(-1, 1)


@torch.no_grad()
def generator_fills(
    folder: str, scenes: list[Scene], images: np.ndarray, cfg: RewardTrainConfig, rng: random.Random
) -> tuple[torch.Tensor, torch.Tensor]:
    """(fills (N, 3, H, W) in [-1, 1], masks (N, 1, H, W)): the inpainting model's few-step fills, composited."""
    from ..models.backbone import load_backbone
    from ..sampling import sample_ddim, timesteps_for
    from ..world.captions import detailed_caption

    bb = load_backbone(folder)
    f = bb.vae_factor
    outs, masks = [], []
    n = min(cfg.generator_pool, len(scenes))
    for i in tqdm(range(0, n, 32), desc="generator fills", mininterval=10):
        sc = scenes[i : i + 32]
        x = torch.from_numpy(np.ascontiguousarray(images[i : i + len(sc)])).permute(0, 3, 1, 2).float() / 127.5 - 1
        m = torch.from_numpy(np.stack([sample_mask(rng, DEFAULT_SIZE, s, cfg.masks)[1] for s in sc])[:, None].astype(np.float32))
        cond = bb.encode_text([detailed_caption(s) for s in sc], size=(DEFAULT_SIZE, DEFAULT_SIZE))
        concat = torch.cat([F.max_pool2d(m, f), bb._encode_pixels(x * (1 - m))], dim=1)
        noise = torch.randn((len(sc), bb.latent_channels, DEFAULT_SIZE // f, DEFAULT_SIZE // f), generator=torch.Generator().manual_seed(i))
        steps = rng.choice(list(cfg.generator_steps))
        z = sample_ddim(bb.denoiser, noise, timesteps_for(steps), cond, concat=concat)
        y = torch.from_numpy(bb.decode_latents(z)).permute(0, 3, 1, 2).float() / 127.5 - 1
        outs.append(x * (1 - m) + y * m)
        masks.append(m)
    return torch.cat(outs), torch.cat(masks)


def _changed(o, rng: random.Random):
    """``o`` with one attribute changed (the hard negative of the image-text pairs)."""
    name = rng.choice(list(OBJECT_ATTRS))
    return replace(o, **{name: rng.choice([v for v in OBJECT_ATTRS[name] if v != getattr(o, name)])}), name


def describe(o) -> str:
    from ..world.edits import describe_new_object

    return describe_new_object(o).rstrip(",")


class PairSource:
    """Batches of training (or held-out) pairs for one reward kind."""

    def __init__(
        self, cfg: RewardTrainConfig, scenes: list[Scene], images: np.ndarray, rng: random.Random, fills=None, redraw=None
    ) -> None:
        self.cfg, self.scenes, self.images, self.rng, self.fills = cfg, scenes, images, rng, fills
        self.kinds = [k for k in DEGRADATIONS if k != "generator" or fills is not None]
        self.redraw = redraw  # (B, 3, H, W) -> the same redrawn (``redrawn``); None: crops of the renders only

    def _images(self, idx: list[int]) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(np.stack([self.images[i] for i in idx]))).permute(0, 3, 1, 2).float() / 127.5 - 1

    def degraded(self, idx: list[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[str]]:
        """(clean, degraded, mask, kinds) for scenes ``idx``."""
        x = self._images(idx)
        others = self._images([self.rng.randrange(len(self.scenes)) for _ in range(4)])
        out, masks, kinds = [], [], []
        for j, i in enumerate(idx):
            kind = self.rng.choice(self.kinds)
            if kind == "generator":
                k = self.rng.randrange(self.fills[0].shape[0])
                # a fill made on another scene: the composite is that scene, so it stands for the clean one too
                x[j] = self.fills[2][k]
                out.append(self.fills[0][k])
                masks.append(self.fills[1][k])
            else:
                m = torch.from_numpy(sample_mask(self.rng, DEFAULT_SIZE, self.scenes[i], self.cfg.masks)[1][None].astype(np.float32))
                out.append(degrade(x[j : j + 1], m[None], kind, self.rng, others)[0])
                masks.append(m)
            kinds.append(kind)
        return x, torch.stack(out), torch.stack(masks), kinds

    def objects(self, idx: list[int]) -> tuple[torch.Tensor, list, list, list[str]]:
        """(crops, objects, the same with one attribute changed, the attribute) for one object of each scene (scenes
        without objects are skipped)."""
        idx = [i for i in idx if self.scenes[i].objects]
        x = self._images(idx)
        if self.redraw is not None and self.cfg.redrawn > 0:
            pick = torch.tensor([self.rng.random() < self.cfg.redrawn for _ in idx])
            if pick.any():
                x[pick] = self.redraw(x[pick])
        ms, objs, bads, what = [], [], [], []
        for i in idx:
            o = self.rng.choice(list(self.scenes[i].objects))
            ms.append(torch.from_numpy(object_footprint(o, DEFAULT_SIZE)[None].astype(np.float32)))
            bad, name = _changed(o, self.rng)
            objs.append(o)
            bads.append(bad)
            what.append(name)
        return region_crops(x, torch.stack(ms)), objs, bads, what

    def aligned(self, idx: list[int]) -> tuple[torch.Tensor, list[str], list[str], list[str]]:
        """(crops, right prompts, wrong prompts, changed attribute): ``objects`` with the objects described."""
        crops, objs, bads, what = self.objects(idx)
        return crops, [describe(o) for o in objs], [describe(b) for b in bads], what


def _pairwise(good: torch.Tensor, bad: torch.Tensor) -> torch.Tensor:
    return F.softplus(bad - good).mean()  # -log sigmoid(r_good - r_bad)


def _attribute_loss(net: RewardModel, crops: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    logits = net.logits(crops)  # type: ignore[attr-defined]
    return sum(F.cross_entropy(lg, values[:, j]) for j, lg in enumerate(logits.values()))


def _worst_case(net: RewardModel, crops: torch.Tensor, values: torch.Tensor, eps: float, steps: int) -> torch.Tensor:
    """PGD in the L-inf ball of radius ``eps`` around ``crops`` (B, 3, h, w), from a random start, clipped to [-1, 1]."""
    delta = torch.empty_like(crops).uniform_(-eps, eps)
    for _ in range(steps):
        delta.requires_grad_(True)
        loss = _attribute_loss(net, (crops + delta).clamp(-1, 1), values)
        (grad,) = torch.autograd.grad(loss, delta)
        delta = (delta.detach() + 2.5 * eps / steps * grad.sign()).clamp(-eps, eps)
    return (crops + delta).clamp(-1, 1).detach()


def _step_loss(net: RewardModel, src: PairSource, idx: list[int], dev: torch.device) -> torch.Tensor:
    kind = net.config.kind
    if kind == "attributes":
        crops, objs, _, _ = src.objects(idx)
        crops = crops.to(dev)
        values = torch.tensor([object_values(o) for o in objs], device=dev)  # (B, 6)
        loss = _attribute_loss(net, crops, values)
        if src.cfg.adv_eps > 0:  # half clean, half worst case: robust without losing the clean accuracy
            loss = 0.5 * loss + 0.5 * _attribute_loss(net, _worst_case(net, crops, values, src.cfg.adv_eps, src.cfg.adv_steps), values)
        return loss
    clean, deg, m, _ = src.degraded(idx)
    clean, deg, m = clean.to(dev), deg.to(dev), m.to(dev)
    changed = ((deg - clean).abs().amax(1, keepdim=True) > 0.04).float() * m  # (B, 1, H, W): pixels the fill really changed
    keep = (changed.sum((1, 2, 3)) > 16).float()  # a degradation that changed (almost) nothing teaches nothing
    if kind == "aesthetic":
        good, bad = net(clean), net(deg)
        return (F.softplus(bad - good) * keep).sum() / keep.sum().clamp(min=1)
    logits = net(torch.cat([clean, deg]))  # (2B, 1, H, W)
    target = torch.cat([torch.zeros_like(changed), changed])
    pos = target.sum().clamp(min=1)
    w = torch.where(target > 0, target.numel() / (2 * pos), target.numel() / (2 * (target.numel() - pos)))
    return F.binary_cross_entropy_with_logits(logits, target, weight=w)


@torch.no_grad()
def evaluate_reward(net: RewardModel, src: PairSource, n: int, dev: torch.device) -> dict:
    """Held-out preference accuracy: the share of pairs in which the model prefers the right one, overall and by
    degradation (or, for attributes, by the attribute changed)."""
    net.eval()
    hits: dict[str, list[float]] = {}
    for lo in range(0, n, 50):
        idx = list(range(lo, min(n, lo + 50)))
        if net.config.kind == "attributes":
            # the prompts read as text (prompt_values), not taken from the scene
            crops, right, wrong, what = src.aligned(idx)
            rv = torch.tensor([prompt_values(p) for p in right], device=dev)
            wv = torch.tensor([prompt_values(p) for p in wrong], device=dev)
            good, bad = net(crops.to(dev), rv), net(crops.to(dev), wv)
            groups = what
        else:
            clean, deg, m, groups = src.degraded(idx)
            clean, deg, m = clean.to(dev), deg.to(dev), m.to(dev)
            if net.config.kind == "aesthetic":
                good, bad = net(clean), net(deg)
            else:
                good, bad = net.score(clean, m), net.score(deg, m)
        for gname, ok in zip(groups, (good > bad).float().tolist(), strict=True):
            hits.setdefault(gname, []).append(ok)
    every = [v for vs in hits.values() for v in vs]
    net.train()
    return {
        "n": len(every),
        "accuracy": round(float(np.mean(every)), 4),
        "by": {k: round(float(np.mean(v)), 4) for k, v in sorted(hits.items())},
    }


@register_task("reward", RewardTrainConfig)
def train_reward(cfg: RewardTrainConfig) -> dict:
    from .draft import held_out_scenes
    from .inpaint import scene_renders
    from .t2i import load_t2i_recipe, training_captions

    if cfg.kind not in REWARDS:
        raise ValueError(f"unknown reward kind {cfg.kind!r}; known: {', '.join(REWARDS)}")
    out = start_run(cfg)
    torch.manual_seed(cfg.seed)
    t2i = load_t2i_recipe(cfg.teacher_recipe)
    scenes = training_captions(t2i)[0]
    images = scene_renders(t2i, cfg.renders, cfg.threads)
    dev = pick_device(cfg.device)
    fills = None
    if cfg.generator and cfg.kind != "attributes":
        if not (Path(cfg.generator) / "unet").is_dir():
            if not cfg.generator_recipe:
                raise FileNotFoundError(f"generator: no inpainting model at {cfg.generator} (and no generator_recipe to make one)")
            from . import run_recipe

            logger.info("%s is missing: training it first with %s", cfg.generator, cfg.generator_recipe)
            run_recipe(cfg.generator_recipe)
        held = list(range(len(scenes) - cfg.generator_pool, len(scenes)))  # the fills' scenes are the last ones
        made, masks = generator_fills(cfg.generator, [scenes[i] for i in held], images[held[0] :], cfg, random.Random(cfg.seed + 1))
        clean = torch.from_numpy(np.ascontiguousarray(images[held[0] :])).permute(0, 3, 1, 2).float() / 127.5 - 1
        fills = (made, masks, clean[: made.shape[0]])
    net = REWARDS[cfg.kind](RewardConfig(kind=cfg.kind, width=cfg.width))
    if cfg.init:
        net.load_state_dict(RewardModel.from_pretrained(cfg.init, kind=cfg.kind).float().state_dict())
        logger.info("started from %s", cfg.init)
    net = net.to(dev)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=1e-4)
    sched = warmup_cosine(opt, cfg.warmup, cfg.steps)
    ckpt = out / "checkpoint.pt"
    step = resume(ckpt, net, opt, sched)
    n_train = len(scenes) - (cfg.generator_pool if fills is not None else 0)
    redraw = None
    if cfg.kind == "attributes" and cfg.redrawn > 0:
        from .t2i import load_autoencoder

        ae = load_autoencoder(t2i.autoencoder).to(dev).requires_grad_(False)
        g_noise = torch.Generator().manual_seed(cfg.seed)

        @torch.no_grad()
        def redraw(x: torch.Tensor) -> torch.Tensor:
            with torch.autocast(dev.type, dtype=torch.bfloat16):  # the autoencoder is the step's main cost
                z = ae.encode(x.to(dev)).latent.float()  # (b, C, h, w)
                std = torch.rand((z.shape[0], 1, 1, 1), generator=g_noise) * cfg.latent_noise * z.std()
                z = z + std.to(dev) * torch.randn(z.shape, generator=g_noise).to(dev)
                return ae.decode(z).sample.float().clamp(-1, 1).cpu()  # (b, 3, H, W)

    src = PairSource(cfg, scenes, images, random.Random(cfg.seed + step), fills, redraw)
    bar = tqdm(total=cfg.steps, initial=step, desc=f"reward-{cfg.kind}", mininterval=10)
    t0 = time.time()
    while step < cfg.steps:
        idx = [src.rng.randrange(n_train) for _ in range(cfg.batch_size)]
        loss = _step_loss(net, src, idx, dev)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        step += 1
        bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.4f}")
        if step % cfg.ckpt_every == 0 or step == cfg.steps:
            save_checkpoint(ckpt, step, net, opt, sched)
            logger.info("step %d loss %.4f (%.0fs)", step, loss.item(), time.time() - t0)
    bar.close()
    # held-out scenes of another seed, rendered here; their degradations drawn from their own generator
    held = held_out_scenes(cfg.eval_n, cfg.eval_seed)
    held_images = np.stack([render(s) for s in held])
    held_fills = None
    if fills is not None:
        made, masks = generator_fills(cfg.generator, held[: min(len(held), 128)], held_images, cfg, random.Random(cfg.eval_seed))
        clean = torch.from_numpy(held_images[: made.shape[0]]).permute(0, 3, 1, 2).float() / 127.5 - 1
        held_fills = (made, masks, clean)
    result = evaluate_reward(net, PairSource(cfg, held, held_images, random.Random(cfg.eval_seed), held_fills), cfg.eval_n, dev)
    result |= {"steps": step, "train_s": round(time.time() - t0, 1), "eval_seed": cfg.eval_seed}
    net.cpu().save_pretrained(out)
    write_json(Path(out) / "eval.json", result)
    logger.info("held-out preference accuracy %s", result)
    return result
