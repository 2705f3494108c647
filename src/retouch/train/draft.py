"""Training loop of the draft network (``models/draft.py``): exact scene readings -> their renders, by regression.

The targets are renders of the t2i training scenes (the same ``Random(seed * 1_000_003 + k)`` draws), cached
once as uint8. The loss is L1 + MSE in pixels, with object footprints weighed up (objects are a small share
of each image but all of what captions describe beyond background and style). Every ``eval_every`` steps the
EMA network draws ``eval_n`` held-out scenes (those of ``retouch world captions --seed eval_seed``) and the
scene reader scores the drafts: the run's learning curve (quality against images seen) is written to
``curve.json`` beside the checkpoint.
"""

from __future__ import annotations

import copy
import json
import logging
import random
import time
from dataclasses import asdict, dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..atomic import atomic_write, write_json
from ..models.draft import DraftConfig, DraftNet
from ..models.layout import reading_of_scenes
from ..world.render import DEFAULT_SIZE, object_footprint, render
from ..world.scene import random_scene
from . import register_task
from .loop import pick_device, resume, save_checkpoint, start_run, warmup_cosine
from .t2i import ema_update

logger = logging.getLogger(__name__)


@dataclass
class DraftTrainConfig:
    out: str = "models/draft"
    cache: str = "~/.cache/retouch/draft"
    n_scenes: int = 30000
    seed: int = 3000  # the t2i recipes' training scenes
    steps: int = 3000
    batch_size: int = 32
    lr: float = 1e-3
    warmup: int = 100
    ema: float = 0.998
    widths: tuple[int, ...] = (128, 96, 64, 32)
    base: int = 8
    embed: int = 256
    seam: int = 32
    fourier: int = 0
    object_weight: float = 3.0  # pixels inside an object's footprint weigh 1 + this
    bf16_cpu: bool = False
    eval_n: int = 200
    eval_seed: int = 8888  # held-out scenes: `retouch world captions --seed eval_seed`
    eval_every: int = 250
    ckpt_every: int = 250
    threads: int = 2
    device: str = "auto"
    init: str = ""  # a draft folder whose weights start training (a second stage with its own schedule); same widths
    init_recipe: str = ""  # the recipe that makes ``init`` when that folder is missing (run first: one command makes both)


def training_scenes(n: int, seed: int, start: int = 0) -> list:
    """Training scenes ``start`` .. ``n - 1`` (each drawn from its own seed, so any range is cheap)."""
    return [random_scene(random.Random(seed * 1_000_003 + k)) for k in range(start, n)]


def held_out_scenes(n: int, seed: int) -> list:
    rng = random.Random(f"captions/{seed}")  # the scenes `retouch world captions --seed` writes
    return [random_scene(rng) for _ in range(n)]


def _render_range(args: tuple[int, int, int]) -> np.ndarray:
    seed, lo, hi = args
    return np.stack([render(s) for s in training_scenes(hi, seed, start=lo)])


def render_cache(cfg: DraftTrainConfig) -> np.ndarray:
    """Renders of the training scenes (N, 128, 128, 3) uint8, memory-mapped; rendered once per (seed, size)."""
    cache = Path(cfg.cache).expanduser()
    cache.mkdir(parents=True, exist_ok=True)
    path = cache / f"renders-s{cfg.seed}-n{cfg.n_scenes}.npy"
    if not path.is_file():
        chunks = [(cfg.seed, lo, min(cfg.n_scenes, lo + 1000)) for lo in range(0, cfg.n_scenes, 1000)]
        with get_context("spawn").Pool(max(1, cfg.threads)) as pool:
            parts = list(tqdm(pool.imap(_render_range, chunks), total=len(chunks), desc="renders", mininterval=10))
        with atomic_write(path, "wb") as f:
            np.save(f, np.concatenate(parts))
    return np.load(path, mmap_mode="r")


def footprint_weight(scenes: list, size: int, weight: float) -> torch.Tensor:
    """(B, 1, size, size): 1 + weight inside every object's footprint."""
    w = np.ones((len(scenes), 1, size, size), np.float32)
    for i, s in enumerate(scenes):
        for o in s.objects:
            w[i, 0][object_footprint(o, size)] += weight
    return torch.from_numpy(w)


@torch.no_grad()
def score_drafts(net: DraftNet, scenes: list, batch: int = 50) -> dict:
    """The scene reader's reading of the drafts of ``scenes`` against the scenes (``retouch world score``'s figures)."""
    from ..eval.metrics import scene_match, summarise_matches
    from ..world.reader import SceneReader, read_scenes

    reader = SceneReader.from_pretrained()
    matches = []
    for i in range(0, len(scenes), batch):
        part = scenes[i : i + batch]
        imgs = draft_images(net, reading_of_scenes(part))
        matches += [scene_match(p, s) for p, s in zip(read_scenes(reader, list(imgs)), part, strict=True)]
    return summarise_matches(matches)


@torch.no_grad()
def draft_images(net: DraftNet, reading) -> np.ndarray:
    """Drafts as (B, H, W, 3) uint8."""
    x = net.draw(reading).float()
    return ((x + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


@register_task("draft", DraftTrainConfig)
def train_draft(cfg: DraftTrainConfig) -> dict:
    out = start_run(cfg)
    torch.manual_seed(cfg.seed)
    renders = render_cache(cfg)
    scenes = training_scenes(cfg.n_scenes, cfg.seed)
    reading = reading_of_scenes(scenes)  # exact one-hot readings (N, 4, 29), (N, 12)
    dev = pick_device(cfg.device)
    net = DraftNet(DraftConfig(base=cfg.base, widths=tuple(cfg.widths), embed=cfg.embed, seam=cfg.seam, fourier=cfg.fourier)).to(dev)
    if cfg.init:
        if not (Path(cfg.init) / "model.safetensors").is_file():
            if not cfg.init_recipe:
                raise FileNotFoundError(f"init: no draft network at {cfg.init} (and no init_recipe to make one)")
            from . import run_recipe

            logger.info("%s is missing: training it first with %s", cfg.init, cfg.init_recipe)
            run_recipe(cfg.init_recipe)
        first = DraftNet.from_pretrained(cfg.init)
        if first.config != net.config:
            raise ValueError(f"init: {cfg.init} is a {first.config}, this recipe builds a {net.config}")
        net.load_state_dict(first.state_dict())
    ema = copy.deepcopy(net).eval().requires_grad_(False)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=0.01)
    sched = warmup_cosine(opt, cfg.warmup, cfg.steps)
    ckpt = out / "checkpoint.pt"
    step = resume(ckpt, net, opt, sched, ema=ema)
    curve_path = out / "curve.json"
    # a second stage's curve continues its first's: images seen count from the start of the first stage
    first_curve = Path(cfg.init) / "curve.json" if cfg.init else None
    before = json.loads(first_curve.read_text()) if first_curve is not None and first_curve.is_file() else []
    offset = before[-1]["images"] if before else 0
    curve = json.loads(curve_path.read_text()) if step and curve_path.is_file() else before
    held = held_out_scenes(cfg.eval_n, cfg.eval_seed)
    g = torch.Generator().manual_seed(cfg.seed + step)
    bar = tqdm(total=cfg.steps, initial=step, desc="draft", mininterval=10)
    t0, bf16 = time.time(), dev.type == "cuda" or cfg.bf16_cpu
    net.train()
    while step < cfg.steps:
        idx = torch.randint(0, cfg.n_scenes, (cfg.batch_size,), generator=g).sort().values.numpy()
        target = torch.from_numpy(renders[idx]).to(dev).permute(0, 3, 1, 2).float() / 127.5 - 1  # (B, 3, 128, 128)
        w = footprint_weight([scenes[i] for i in idx], DEFAULT_SIZE, cfg.object_weight).to(dev)  # (B, 1, 128, 128)
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
            pred = net(reading.objects[idx].to(dev), reading.scene[idx].to(dev)).float()  # (B, 3, 128, 128)
        err = (pred - target).abs() + (pred - target) ** 2
        loss = (err * w).mean() / w.mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        sched.step()
        step += 1
        ema_update(ema, net, min(cfg.ema, (1 + step) / (10 + step)))
        bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.4f}")
        if step % cfg.eval_every == 0 or step == cfg.steps:
            s = score_drafts(ema, held)
            curve.append({"step": step, "images": offset + step * cfg.batch_size, "seconds": round(time.time() - t0, 1)} | s)
            write_json(curve_path, curve)
            logger.info("step %d loss %.4f exact %.3f attrs %.3f", step, loss.item(), s["exact_scene"], s["attr_accuracy"])
        if step % cfg.ckpt_every == 0 or step == cfg.steps:
            save_checkpoint(ckpt, step, net, opt, sched, ema=ema)
            ema.save_pretrained(out)
    bar.close()
    final = curve[-1] if curve else {}
    write_json(out / "eval.json", {"eval_n": cfg.eval_n, "eval_seed": cfg.eval_seed, "config": asdict(cfg)} | final)
    return final
