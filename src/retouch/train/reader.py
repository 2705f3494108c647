"""Training loop of the scene reader on freshly rendered, lightly degraded scenes."""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, IterableDataset
from tqdm import tqdm

from ..atomic import write_json
from ..world.reader import SceneReader, SceneReaderConfig, read_scenes, scene_to_targets
from ..world.render import render
from ..world.scene import random_scene
from . import register_task
from .loop import resume, save_checkpoint, start_run, warmup_cosine

logger = logging.getLogger(__name__)


@dataclass
class ReaderTrainConfig:
    out: str = "models/scene-reader"
    steps: int = 5000
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 1e-4
    seed: int = 1000  # training scenes come from seeds seed*1_000_003 + k; suites use small seeds
    aug_prob: float = 0.7
    noise_max: float = 0.03
    blur_max: float = 0.8
    jitter: float = 0.06
    ckpt_every: int = 250
    eval_n: int = 1000
    eval_seed: int = 7777
    workers: int = 1
    threads: int = 1
    width: int = 32


class RenderedScenes(IterableDataset):
    """Endless stream of (image uint8 HxWx3, targets) from a seeded generator."""

    def __init__(self, seed: int, start: int = 0) -> None:
        self.seed, self.start = seed, start

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        wid, nw = (info.id, info.num_workers) if info else (0, 1)
        k = self.start + wid
        while True:
            rng = random.Random(self.seed * 1_000_003 + k)
            scene = random_scene(rng)
            t = scene_to_targets(scene)
            yield torch.from_numpy(render(scene).copy()), {n: torch.tensor(v) for n, v in t.items()}
            k += nw


def degrade(x: torch.Tensor, cfg: ReaderTrainConfig, g: torch.Generator) -> torch.Tensor:
    """Light noise, blur and colour jitter, each sample its own strength (x: (B,3,H,W) in [0,1])."""
    b = x.shape[0]

    def u(lo: float, hi: float) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(b, 1, 1, 1, generator=g)

    on = (torch.rand(b, 1, 1, 1, generator=g) < cfg.aug_prob).float()
    # blur: mix the image with a 3x3 Gaussian-blurred copy whose sigma is blur_max
    k1 = torch.exp(-(torch.tensor([-1.0, 0.0, 1.0]) ** 2) / (2 * cfg.blur_max**2))
    k2 = (k1[:, None] * k1[None, :]) / k1.sum() ** 2
    blurred = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), k2.expand(3, 1, 3, 3), groups=3)
    a = u(0, 1) * on
    x = x * (1 - a) + blurred * a
    # colour jitter: brightness, contrast, saturation
    j = cfg.jitter
    x = x * (1 + (u(-j, j)) * on)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * (1 + u(-j, j) * on) + mean
    gray = (x * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
    x = (x - gray) * (1 + u(-2 * j, 2 * j) * on) + gray
    x = x + torch.randn(x.shape, generator=g) * u(0, cfg.noise_max) * on
    return x.clamp(0, 1)


def reader_loss(model_out, targets) -> torch.Tensor:
    scene_logits, slot_logits = model_out
    loss = sum(F.cross_entropy(v, targets[k][:, 0]) for k, v in scene_logits.items())
    for k, v in slot_logits.items():
        loss = loss + F.cross_entropy(v.flatten(0, 1), targets[k].flatten(), ignore_index=-1)
    return loss


def evaluate_reader(model: SceneReader, n: int, seed: int, refine: bool = True) -> dict:
    """Exact-scene and per-attribute accuracy on ``n`` clean renders of ``random_scene(Random(seed))``
    (``refine=False``: the network alone, without analysis by synthesis)."""
    rng = random.Random(seed)
    scenes = [random_scene(rng) for _ in range(n)]
    preds = []
    for i in range(0, n, 100):
        preds += read_scenes(model, np.stack([render(s) for s in scenes[i : i + 100]]), refine=refine)
    from ..eval.metrics import scene_match, summarise_matches

    m = [scene_match(p, s) for p, s in zip(preds, scenes, strict=True)]
    return {"n": n, "seed": seed, "refine": refine} | summarise_matches(m)


@register_task("scene-reader", ReaderTrainConfig)
def train_reader(cfg: ReaderTrainConfig) -> dict:
    out = start_run(cfg)
    ckpt = out / "checkpoint.pt"
    torch.manual_seed(cfg.seed)  # the same initial weights on every run (a resumed run loads its own anyway)
    model = SceneReader(SceneReaderConfig(width=cfg.width))
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = warmup_cosine(opt, 200, cfg.steps)
    step = resume(ckpt, model, opt, sched)
    data = RenderedScenes(cfg.seed, start=step * cfg.batch_size)
    loader = DataLoader(data, batch_size=cfg.batch_size, num_workers=cfg.workers, persistent_workers=cfg.workers > 0)
    g = torch.Generator()
    model.train()
    bar = tqdm(total=cfg.steps, initial=step, desc="scene-reader", mininterval=5)
    t0, it = time.time(), iter(loader)
    while step < cfg.steps:
        imgs, targets = next(it)
        # the degradations of step k depend on k alone, so a run resumed from a checkpoint continues
        # exactly as the uninterrupted run would have (kill tests: tests/reliability/test_kill.py)
        g.manual_seed(cfg.seed * 1_000_003 + step)
        x = degrade(imgs.permute(0, 3, 1, 2).float() / 255.0, cfg, g)
        loss = reader_loss(model(x), targets)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        step += 1
        bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.4f}")
        if step % cfg.ckpt_every == 0 or step == cfg.steps:
            save_checkpoint(ckpt, step, model, opt, sched)
            logger.info("step %d loss %.4f (%.1fs)", step, loss.item(), time.time() - t0)
    bar.close()
    model.eval()
    model.save_pretrained(out)
    metrics = evaluate_reader(SceneReader.from_pretrained(out), cfg.eval_n, cfg.eval_seed)
    write_json(out / "eval.json", metrics)
    logger.info("eval %s", metrics)
    return metrics
