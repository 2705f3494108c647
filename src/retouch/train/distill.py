"""Few-step distillation of the Shapes teacher into a 4-step (and 1-step) student.

Method: *trajectory distillation with DDIM-consistent waypoints* -- knowledge distillation of the
teacher's sampling map (Luhman & Luhman 2021) made few-step, with guidance baked in (Meng et al.
2023, "On distillation of guided diffusion models", stage one folded in).

1. The teacher samples ``n_pairs`` images with ``teacher_steps`` DDIM steps and classifier-free
   guidance from seeded noise: pairs (noise z, teacher sample x0*) for training captions.
2. For a student schedule t_0 > ... > t_{K-1} (trailing: 999, 749, 499, 249) the waypoints are what
   a *perfect* student's own DDIM sampler would visit from z: x_{t_0} = z (up to the tiny signal
   at t_0), and x_{t_{k+1}} = sqrt(a_{k+1}) x0* + sqrt(1 - a_{k+1}) eps_k with
   eps_k = (x_{t_k} - sqrt(a_k) x0*) / sqrt(1 - a_k)  (DDIM, Song et al. 2021, eq. 12, eta = 0).
   Training at these points keeps the student on its own sampling path, which a teacher
   trajectory's intermediate states would not (they follow 16 small steps, not 4 big ones).
3. The student (initialised from the teacher) regresses x0* from each waypoint in x0 space, the
   quantity that decides the picture; its prediction stays in the teacher's parametrization (v).

Progressive distillation (Salimans & Ho 2022) needs log2(50/4) rounds over the same data and
consistency distillation a target network and many more steps; on 2 CPU cores a single round
that reuses one set of teacher samples is what fits (the measured comparison is in docs/backbone.md).
"""

from __future__ import annotations

import copy
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..atomic import atomic_write
from ..sampling import timesteps_for
from . import register_task
from .loop import pick_device, resume, save_checkpoint, start_run
from .t2i import LayoutSource, ema_update, load_t2i_recipe, make_scheduler, save_pipeline, text_cache

logger = logging.getLogger(__name__)


@dataclass
class DistillConfig:
    out: str = "models/shapes-turbo"
    teacher: str = "models/shapes-teacher"
    teacher_recipe: str = "recipes/shapes-draft-teacher.json"  # its caption cache gives the training captions
    n_pairs: int = 3072
    teacher_steps: int = 16  # trailing spacing: a multiple of student_steps, so the grids line up
    guidance: float = 3.0
    student_steps: int = 4
    steps: int = 800
    batch_size: int = 64
    lr: float = 1e-4
    ema: float = 0.99
    seed: int = 4000
    gen_batch: int = 128
    ckpt_every: int = 50
    threads: int = 2
    device: str = "auto"  # CUDA when present
    # the student's vae/ points to the teacher's (retouch_link.json) instead of copying them;
    # only for a teacher that ships beside the student (both under models/)
    share_teacher: bool = False


def layout_maps(source: LayoutSource | None, idx: np.ndarray, size: int, device: torch.device) -> torch.Tensor | None:
    """The extra input channels (B, M [+ C], size, size) of training scenes ``idx`` (None for a teacher without a layout map)."""
    return None if source is None else source(idx, size, size, device)


@torch.no_grad()
def teacher_pairs(
    cfg: DistillConfig, texts: np.ndarray, null: np.ndarray, scenes: LayoutSource | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(noise, teacher sample) latent pairs for the first ``n_pairs`` cached captions (with ``scenes``: their layout channels)."""
    from ..models.backbone import TextConditioning, load_backbone
    from ..sampling import sample_ddim

    dev = pick_device(cfg.device)
    teacher = load_backbone(cfg.teacher, device=dev)
    den = teacher.denoiser.float()
    c, s = teacher.latent_channels, teacher.default_size // teacher.vae_factor
    g = torch.Generator().manual_seed(cfg.seed)
    noise = torch.randn((cfg.n_pairs, c, s, s), generator=g)  # (N, C, h, w)
    out = np.zeros((cfg.n_pairs, c, s, s), dtype=np.float32)
    ts = timesteps_for(cfg.teacher_steps, den.num_train_timesteps)
    uncond = TextConditioning(torch.from_numpy(null.astype(np.float32))[None].to(dev))
    for i in tqdm(range(0, cfg.n_pairs, cfg.gen_batch), desc="teacher samples", mininterval=10):
        tokens = torch.from_numpy(texts[i : i + cfg.gen_batch].astype(np.float32)).to(dev)  # (b, L, 384)
        x = noise[i : i + cfg.gen_batch].to(dev)
        layout = layout_maps(scenes, np.arange(i, i + len(x)), s, dev)  # (b, M, h, w) or None
        cond = TextConditioning(tokens, layout=layout)
        null_b = uncond.repeat(len(x))
        null_b.layout = None if layout is None else torch.zeros_like(layout)  # the map drops with the caption
        out[i : i + len(x)] = sample_ddim(den, x, ts, cond, guidance=cfg.guidance, uncond=null_b).cpu().numpy()
    return noise.numpy(), out


def waypoints(noise: torch.Tensor, x0: torch.Tensor, alphas: list[float]) -> list[torch.Tensor]:
    """The inputs a perfect student meets at each of its timesteps (module docstring, step 2)."""
    x, out = noise, []
    for k, a in enumerate(alphas):
        out.append(x)
        if k + 1 < len(alphas):
            eps = (x - a**0.5 * x0) / (1 - a) ** 0.5
            x = alphas[k + 1] ** 0.5 * x0 + (1 - alphas[k + 1]) ** 0.5 * eps
    return out


@register_task("distill", DistillConfig)
def train_distill(cfg: DistillConfig) -> dict:
    from diffusers import UNet2DConditionModel

    from ..models.backbone import Denoiser

    out = start_run(cfg)
    tcfg = load_t2i_recipe(cfg.teacher_recipe)
    texts, null = text_cache(tcfg)  # the teacher's training captions; no latents needed here
    # a layout-map teacher (and so its student) reads each training scene's map beside the latent
    scenes = LayoutSource(tcfg) if (Path(cfg.teacher) / "layout").is_dir() else None
    # the pairs belong to one teacher: its weights' size and time stamp are part of the key
    w = Path(cfg.teacher) / "unet" / "diffusion_pytorch_model.safetensors"
    if not w.is_file():
        raise FileNotFoundError(f"no teacher UNet at {w}; train it with `retouch train {cfg.teacher_recipe}`")
    cache = Path(tcfg.cache).expanduser()
    tag = f"n{cfg.n_pairs}-s{cfg.teacher_steps}-g{cfg.guidance}-seed{cfg.seed}-{w.stat().st_size}-{int(w.stat().st_mtime)}"
    pairs_path = cache / f"pairs-{tag}.npz"
    if pairs_path.is_file():
        z = np.load(pairs_path)
        noise, x0s = z["noise"], z["x0"]
    else:
        noise, x0s = teacher_pairs(cfg, texts, null, scenes)
        with atomic_write(pairs_path, "wb") as f:
            np.savez(f, noise=noise, x0=x0s)
    dev = pick_device(cfg.device)
    student = UNet2DConditionModel.from_pretrained(Path(cfg.teacher) / "unet", torch_dtype=torch.float32).to(dev)
    ema = copy.deepcopy(student).eval().requires_grad_(False)
    opt = torch.optim.AdamW(student.parameters(), lr=cfg.lr, weight_decay=0.0)
    ckpt = out / "checkpoint.pt"
    step = resume(ckpt, student, opt, ema=ema)
    prediction_type = json.loads((Path(cfg.teacher) / "scheduler" / "scheduler_config.json").read_text())["prediction_type"]
    scheduler = make_scheduler(prediction_type, spacing="trailing")
    ac = scheduler.alphas_cumprod.double()
    param = Denoiser(prediction_type, ac)  # only for its prediction -> x0 conversion
    ts = timesteps_for(cfg.student_steps, len(ac))
    alphas = [float(ac[t]) for t in ts]
    g = torch.Generator().manual_seed(cfg.seed + 1 + step)
    student.train()
    bar = tqdm(total=cfg.steps, initial=step, desc="distill", mininterval=10)
    t0 = time.time()
    while step < cfg.steps:
        idx = torch.randint(0, cfg.n_pairs, (cfg.batch_size,), generator=g)
        z, x0 = torch.from_numpy(noise[idx.numpy()]).to(dev), torch.from_numpy(x0s[idx.numpy()]).to(dev)  # (B, C, h, w)
        k = torch.randint(0, len(ts), (cfg.batch_size,), generator=g)  # which student step each sample trains
        pts = torch.stack(waypoints(z, x0, alphas))  # (K, B, C, h, w)
        x = pts[k.to(dev), torch.arange(cfg.batch_size, device=dev)]  # (B, C, h, w)
        t = torch.tensor(ts)[k].to(dev)
        tokens = torch.from_numpy(texts[idx.numpy()].astype(np.float32)).to(dev)  # (B, L, 384)
        layout = layout_maps(scenes, idx.numpy(), x.shape[-1], dev)
        inp = x if layout is None else torch.cat([x, layout], dim=1)  # (B, C [+ M], h, w)
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
            pred = student(inp, t, encoder_hidden_states=tokens).sample.float()  # (B, C, h, w)
        x0_hat, _ = param.to_x0_eps(x, t, pred)  # any parametrization -> x0
        loss = torch.nn.functional.mse_loss(x0_hat, x0)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(student.parameters(), 1.0)
        opt.step()
        step += 1
        ema_update(ema, student, min(cfg.ema, (1 + step) / (10 + step)))
        bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.4f}")
        if step % cfg.ckpt_every == 0 or step == cfg.steps:
            save_checkpoint(ckpt, step, student, opt, ema=ema)
            logger.info("step %d loss %.4f (%.1fs)", step, loss.item(), time.time() - t0)
    bar.close()
    extra = {"retouch_guidance": 1.0, "retouch_default_steps": cfg.student_steps}
    from ..models.backbone import component_folder

    vae = component_folder(Path(cfg.teacher), "vae")
    reader = component_folder(Path(cfg.teacher), "caption_reader") if scenes is not None else None
    draft = component_folder(Path(cfg.teacher), "draft") if (Path(cfg.teacher) / "draft").is_dir() else None
    save_pipeline(
        out, ema, vae, scheduler, tcfg.max_length, extra, share_with=cfg.teacher if cfg.share_teacher else None,
        caption_reader=reader, draft=draft,
    )
    return {"steps": step, "loss": float(loss.item())}
