"""ByteEdit's feedback stages for the Shapes inpainting model (Ren et al. 2024, sec. 3.1-3.3).

**Perceptual feedback learning** (PeFL, eq. 2-4).  A training image's latent is noised to the step with ``T1`` of
``T`` DDIM steps left, denoised without gradients down to a step ``t'`` drawn from [1, ``T2``] steps left, and at
``t'`` the model predicts the clean latent x0' with gradients.  x0' is decoded (through the frozen decoder,
with gradients), pasted into the input outside the mask, and scored by the reward models (models/rewards.py):

    L = sum_k w_k * L_k(x') + eta * (L1(x', x) + perceptual(x', x))        (in the mask; eq. 4's regulariser)

Each reward loss compares the fill with the truth under the same reward, -log sigmoid(r(x') - r(x)) (the
Bradley-Terry probability that the fill is the worse of the two), so it stops pulling once the fill is as good
as the truth instead of chasing an unbounded score (reward hacking).  The coherence reward is per pixel: the
mean -log p(real) over the mask and a band around it.  The perceptual term uses the scene reader's per-place
features, which stand in for VGG (no VGG weights here).

**Adversarial training** (eq. 7-8), with ``adversarial`` > 0: a copy of the coherence model is trained online
as a per-pixel discriminator (real renders against the fills, inside the mask), and the generator adds
``adversarial`` times its non-saturating loss.

**Progressive step reduction** (sec. 3.3): ``stages`` lists (steps, T, T1, T2); ByteEdit goes from T = 20, T1 = 15,
T2 = 10 down to T = 8, T1 = 6, T2 = 3, so the model learns to finish in 8 steps.

Only the inpainting model's adapters and first convolution train (its delta on the teacher stays small); the
reward models, the autoencoder and the scene reader are frozen.
"""

from __future__ import annotations

import copy
import json
import logging
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from ..models.rewards import BORDER, RewardModel, object_values, region_crops
from ..world.render import DEFAULT_SIZE, object_footprint
from . import register_task
from .inpaint import LORA_TARGETS, FillData, adapted_unet
from .loop import pick_device, resume, save_checkpoint, start_run, warmup_cosine
from .t2i import load_t2i_recipe, make_scheduler, save_pipeline

logger = logging.getLogger(__name__)


@dataclass
class FeedbackTrainConfig:
    out: str = "models/shapes-inpaint"
    init: str = "runs/shapes-inpaint-base"  # the inpainting folder the stage starts from
    init_recipe: str = ""  # the recipe that makes ``init`` when it is missing
    teacher_recipe: str = "recipes/shapes-draft-teacher.json"
    renders: str = "~/.cache/retouch/draft"
    rewards: dict[str, float] = field(default_factory=lambda: {"aesthetic": 1.0, "attributes": 0.5, "coherence": 1.0})
    reward_models: dict[str, str] = field(
        default_factory=lambda: {k: f"models/reward-{k}" for k in ("aesthetic", "attributes", "coherence")}
    )
    eta: float = 1.0  # weight of the regulariser (in-mask L1 + perceptual)
    perceptual: float = 1.0  # the perceptual term's share of it
    mse: float = 0.0  # weight of the in-mask squared error (PSNR's own loss), beside the regulariser
    adversarial: float = 0.0  # > 0: the coherence model also trains online as a discriminator, and this weighs its loss
    # the attributes reward's loss. 0: Bradley-Terry against the truth's score (-log sigmoid(r(fill) - r(truth))).
    # > 0: a hinge on each said attribute's logit margin over the best other value, relu(m - margin): zero once the
    # fill reads as said by this margin, so a fill that is right but looks generated is left alone and only the
    # fills the classifier reads wrong (or barely right) are pulled (docs/inpaint.md, fifth round)
    attribute_margin: float = 0.0
    d_lr: float = 2e-4
    # (steps, T, T1, T2) per stage: ByteEdit's progressive step reduction
    stages: list[tuple[int, int, int, int]] = field(default_factory=lambda: [(150, 20, 15, 10), (150, 8, 6, 3)])
    batch_size: int = 8
    lr: float = 2e-4
    masks: dict[str, float] = field(default_factory=lambda: {"brush": 0.2, "box": 0.15, "outward": 0.25, "object": 0.4})
    default_steps: int = 8  # written to the folder: the step count the last stage trained for
    seed: int = 7000
    ckpt_every: int = 50
    threads: int = 2
    device: str = "auto"
    bf16_cpu: bool = True
    snapshot_every: int = 0  # > 0: also save the folder every this many steps (out/snapshots/step-N, for learning curves)


def _stage(cfg: FeedbackTrainConfig, step: int) -> tuple[int, int, int]:
    done = 0
    for n, T, T1, T2 in cfg.stages:
        done += n
        if step < done:
            return T, T1, T2
    return cfg.stages[-1][1:]


def _reader_features(reader: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The scene reader's per-place stem features of (B, 3, 128, 128) images in [-1, 1]: (B*4, 128, 4, 4)."""
    from ..world.scene import GRID

    u = ((x + 1) / 2 - 0.5) / 0.25  # as SceneReader.forward normalises [0, 1] images
    b, cell = u.shape[0], u.shape[-1] // GRID
    crops = u.unfold(2, cell, cell).unfold(3, cell, cell).permute(0, 2, 3, 1, 4, 5).reshape(b * GRID * GRID, 3, cell, cell)
    return reader.slot[:-1](crops)


def _bt(fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """-log sigmoid(r(fake) - r(real)): the fill should score at least as well as the truth."""
    return F.softplus(real.detach() - fake).mean()


@register_task("feedback", FeedbackTrainConfig)
def train_feedback(cfg: FeedbackTrainConfig) -> dict:
    from ..models.unet_delta import delta_base, load_delta_into_peft, save_unet_delta, unet_delta_state
    from ..world.reader import SceneReader

    if not cfg.stages or any(not (1 <= T2 <= T1 <= T) or n < 1 for n, T, T1, T2 in cfg.stages):
        raise ValueError(f"stages must be (steps >= 1, T, T1, T2) with 1 <= T2 <= T1 <= T, got {cfg.stages}")
    unknown = set(cfg.rewards) - set(cfg.reward_models)
    if unknown:
        raise ValueError(f"rewards {sorted(unknown)} name no reward model folder in reward_models")
    if cfg.init_recipe and not (Path(cfg.init) / "unet").is_dir():
        from . import run_recipe

        logger.info("%s is missing: training it first with %s", cfg.init, cfg.init_recipe)
        run_recipe(cfg.init_recipe)
    init_unet = Path(cfg.init) / "unet"
    ref = json.loads((init_unet / "retouch_delta.json").read_text())
    out = start_run(cfg)
    torch.manual_seed(cfg.seed)
    t2i = load_t2i_recipe(cfg.teacher_recipe)
    dev = pick_device(cfg.device)
    data = FillData(t2i, cfg.renders, cfg.threads, dev)
    scenes, ae, scale = data.scenes, data.ae, data.scale
    base = delta_base(init_unet)
    init_cfg = json.loads((Path(cfg.init) / "train_config.json").read_text()) if (Path(cfg.init) / "train_config.json").is_file() else {}
    targets = tuple(init_cfg.get("targets", LORA_TARGETS))
    full = tuple(init_cfg.get("full", ("conv_in",)))
    unet = adapted_unet(base, data.c, int(ref["rank"]), float(ref["alpha"]), targets, full)
    load_delta_into_peft(unet, init_unet)
    unet.to(dev)
    trainable = [p for p in unet.parameters() if p.requires_grad]
    rewards = {k: RewardModel.from_pretrained(cfg.reward_models[k], kind=k).to(dev).requires_grad_(False) for k in cfg.rewards}
    reader = SceneReader.from_pretrained().to(dev).requires_grad_(False)
    extras: dict[str, torch.nn.Module] = {}
    disc = d_opt = None
    if cfg.adversarial > 0:
        disc = copy.deepcopy(RewardModel.from_pretrained(cfg.reward_models["coherence"], kind="coherence")).to(dev).train()
        disc.requires_grad_(True)
        d_opt = torch.optim.AdamW(disc.parameters(), lr=cfg.d_lr, betas=(0.5, 0.999))
        extras["disc"] = disc
    total = sum(s[0] for s in cfg.stages)
    opt = torch.optim.AdamW(trainable, lr=cfg.lr, weight_decay=0.0)
    sched = warmup_cosine(opt, 10, total)
    ckpt = out / "checkpoint.pt"
    step = resume(ckpt, unet, opt, sched, **extras)
    scheduler = make_scheduler(t2i.prediction_type)
    alphas = scheduler.alphas_cumprod.float()
    g = torch.Generator().manual_seed(cfg.seed + step)
    rng = random.Random(cfg.seed * 7919 + step)
    from ..sampling import timesteps_for

    def x0_of(z: torch.Tensor, t: int, tokens: torch.Tensor, extra: torch.Tensor) -> torch.Tensor:
        a = alphas[t].to(dev)
        tt = torch.full((z.shape[0],), t, device=dev, dtype=torch.long)
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda" or cfg.bf16_cpu):
            v = unet(torch.cat([z, extra], dim=1), tt, encoder_hidden_states=tokens).sample.float()  # (B, C, h, w)
        return a.sqrt() * z - (1 - a).sqrt() * v  # v-prediction -> x0 (Salimans & Ho 2022)

    def save(folder: Path) -> None:
        state = unet_delta_state(unet, full)  # the adapters merged into a delta on the base UNet
        config = dict(unet.config)
        save_pipeline(
            folder,
            unet,
            t2i.autoencoder,
            scheduler,
            t2i.max_length,
            {"retouch_guidance": 1.0, "retouch_default_steps": cfg.default_steps},
            share_with=str(base.parent),
            caption_reader=t2i.caption_reader,
            draft=t2i.draft or None,
            class_name="StableDiffusionInpaintPipeline",
            write_unet=lambda f: save_unet_delta(f, config, state, base, int(ref["rank"]), float(ref["alpha"])),
        )

    unet.train()
    bar = tqdm(total=total, initial=step, desc="feedback", mininterval=10)
    t0 = time.time()
    logs: dict[str, float] = {}
    while step < total:
        T, T1, T2 = _stage(cfg, step)
        idx = torch.randint(0, data.n, (cfg.batch_size,), generator=g).sort().values.numpy()
        b = data.batch(idx, rng, cfg.masks)  # encoded in fp32, as this stage always was
        z0, tokens, x, m = b.x0, b.tokens, b.x, b.m  # (B, C, h, w), (B, L, 384), (B, 3, H, W), (B, 1, H, W)
        extra = b.extra(data.factor)
        ts = timesteps_for(T)
        start = T - T1  # index of the step with T1 steps left
        stop = T - rng.randint(1, T2)  # index of t', with 1..T2 steps left
        eps = torch.randn(z0.shape, generator=g).to(dev)
        a0 = alphas[ts[start]].to(dev)
        z = a0.sqrt() * z0 + (1 - a0).sqrt() * eps  # (B, C, h, w): the input noised to T1 (eq. 2)
        with torch.no_grad():
            for i in range(start, stop):  # DDIM without gradients down to t'
                x0 = x0_of(z, ts[i], tokens, extra)
                a_t, a_p = alphas[ts[i]].to(dev), alphas[ts[i + 1]].to(dev)
                e = (z - a_t.sqrt() * x0) / (1 - a_t).sqrt()
                z = a_p.sqrt() * x0 + (1 - a_p).sqrt() * e
        x0 = x0_of(z, ts[stop], tokens, extra)  # with gradients (eq. 3)
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda" or cfg.bf16_cpu):
            y = ae.decode(x0 / scale).sample.float().clamp(-1, 1)  # (B, 3, H, W)
        fill = x * (1 - m) + y * m
        loss = torch.zeros((), device=dev)
        parts: dict[str, torch.Tensor] = {}
        watch: dict[str, torch.Tensor] = {}  # logged, not in the loss
        if "aesthetic" in rewards:
            parts["aesthetic"] = _bt(rewards["aesthetic"](fill), rewards["aesthetic"](x))
        if "coherence" in rewards:
            region = F.max_pool2d(m, 2 * BORDER + 1, stride=1, padding=BORDER)
            parts["coherence"] = (F.softplus(rewards["coherence"](fill)) * region).sum() / region.sum().clamp(min=1)
        if "attributes" in rewards:
            # the objects the mask hides most of, against their own descriptions
            rows, objs, boxes = [], [], []
            masked = b.m[:, 0].cpu().numpy() > 0.5  # (B, H, W), once per batch
            for j, i in enumerate(idx):
                for o in scenes[i].objects:
                    foot = object_footprint(o, DEFAULT_SIZE)
                    if masked[j][foot].sum() >= 0.5 * foot.sum():
                        rows.append(j)
                        objs.append(o)
                        boxes.append(torch.from_numpy(foot[None].astype(np.float32)))
                        break
            if rows:
                fb = torch.stack(boxes).to(dev)
                said = torch.tensor([object_values(o) for o in objs], device=dev)  # (R, 6): the descriptions' values
                crops = region_crops(fill[rows], fb)  # (R, 3, 64, 64)
                if cfg.attribute_margin > 0:
                    hinge = F.relu(cfg.attribute_margin - rewards["attributes"].margins(crops, said))  # (R, 6)
                    parts["attributes"] = hinge.sum(1).mean()
                    watch["attr_active"] = (hinge > 0).float().sum(1).mean()  # attributes per object still pulled
                else:
                    r_real = rewards["attributes"](region_crops(x[rows], fb), said)
                    parts["attributes"] = _bt(rewards["attributes"](crops, said), r_real)
        for k, v in parts.items():
            loss = loss + cfg.rewards[k] * v
        l1 = ((y - x).abs() * m).sum() / (3 * m.sum()).clamp(min=1)
        perc = F.mse_loss(_reader_features(reader, fill), _reader_features(reader, x))
        loss = loss + cfg.eta * (l1 + cfg.perceptual * perc)
        parts["l1"], parts["perceptual"] = l1, perc
        parts |= watch
        if cfg.mse > 0:
            parts["mse"] = ((y - x) ** 2 * m).sum() / (3 * m.sum()).clamp(min=1)
            loss = loss + cfg.mse * parts["mse"]
        if disc is not None:
            region = F.max_pool2d(m, 2 * BORDER + 1, stride=1, padding=BORDER)
            parts["adv"] = (F.softplus(disc(fill)) * region).sum() / region.sum().clamp(min=1)  # non-saturating G loss
            loss = loss + cfg.adversarial * parts["adv"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        opt.step()
        sched.step()
        if disc is not None:
            # the discriminator (eq. 7): the truth is real everywhere, the fill generated in the mask
            logits = disc(torch.cat([x, fill.detach()]))
            target = torch.cat([torch.zeros_like(m), m])
            d_loss = F.binary_cross_entropy_with_logits(logits, target)
            d_opt.zero_grad(set_to_none=True)
            d_loss.backward()
            d_opt.step()
            parts["d"] = d_loss
        step += 1
        for k, v in parts.items():
            logs[k] = 0.9 * logs.get(k, float(v)) + 0.1 * float(v)
        bar.update(1)
        bar.set_postfix({k: f"{v:.3f}" for k, v in logs.items()} | {"T": T})
        if step % cfg.ckpt_every == 0 or step == total:
            save_checkpoint(ckpt, step, unet, opt, sched, **extras)
            logger.info("step %d (T=%d) %s (%.0fs)", step, T, {k: round(v, 4) for k, v in logs.items()}, time.time() - t0)
        if cfg.snapshot_every and step % cfg.snapshot_every == 0 and step < total:
            save(out / "snapshots" / f"step-{step}")
    bar.close()
    unet.cpu()
    save(out)
    return {"steps": step, "losses": logs}
