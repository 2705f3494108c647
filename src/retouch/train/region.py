"""Training the region predictor without editing pairs ("Beyond Editing Pairs", sec. 3.3 and 4).

Data: captioned images only.  On the Shapes world these are renders with their detailed captions; an
instruction proposer (the LLM step of sec. 4; on the world, the world's grammar through the rule rewriter)
writes an instruction and the target caption from the source caption alone.  No edited image and no mask is
ever made for training.

Frozen: the generator, the CLIP, the instruction encoder.  Trained: the predictor (eq. 1-3) and the projection
network of the semantic alignment loss.  Each step: patch probabilities -> a soft latent mask -> region-blended
few-step sampling from noise under the target caption (Appendix A.3; ``retouch.sampling.sample_region``) ->
decode -> CLIP -> the losses below, each its own small object:

- ``SemanticAlignmentLoss`` (eq. 4-6): the projection of the fused features toward the target caption's CLIP
  embedding, and of the plain image features toward the source caption's (the source term that stops collapse);
- ``ClipGuidanceLoss`` (eq. 7): the edited image toward the target caption;
- ``DirectionalClipLoss`` (eq. 8): the image change along the caption change;
- ``StructureLoss`` (eq. 9): the edited image's patch self-similarity matrix close to the source's.

Frozen features are computed once and cached in the run folder (``features.pt``).
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm import tqdm

from ..atomic import torch_save, write_json
from . import register_task
from .loop import resume, save_checkpoint, start_run, warmup_cosine

logger = logging.getLogger(__name__)


@dataclass
class RegionTrainConfig:
    out: str = "runs/region-predictor"
    model: str | None = None  # the frozen generator (default: models/shapes-turbo)
    clip: str = "models/world-clip"  # the frozen CLIP (features, losses)
    n_images: int = 2000  # captioned training images (renders of seeded random scenes)
    seed: int = 5000  # training scenes: random_scene(Random(f"region/{seed}/{k}")); suites use other seeds
    steps: int = 400
    batch_size: int = 8
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup: int = 20
    gen_steps: int | None = 1  # generator steps in the training samples (None: the generator's own, 4; 1 is 3x cheaper on the CPU)
    grad_through_generator: bool = False  # False: the mask's gradient comes through the blends, not the UNet's input
    # eq. 11: w_sem * L_sem + w_clip * (l_guide * L_guide + l_dir * L_dir + l_struct * L_struct)
    w_sem: float = 1.0
    w_clip: float = 1.0
    l_guide: float = 1.0
    l_dir: float = 1.0
    l_struct: float = 1.0
    heads: int = 4
    threshold: float = 0.5
    ckpt_every: int = 100
    eval_n: int = 90  # held-out Shapes-PIE cases (eval_seed) whose exact masks score the predictor at the end
    eval_seed: int = 4242
    threads: int = 1
    types: tuple[int, ...] = field(default=(1, 2, 3, 4, 5, 6, 7, 8, 9))  # edit kinds the proposer writes instructions for


# -- the instruction proposer (sec. 4's LLM step) --------------------------------------------------
class WorldInstructionProposer:
    """Source caption -> (instruction, target caption), from the caption alone: the caption is parsed back into its
    scene, an edit of a random kind is phrased in the world's grammar, and the rule rewriter writes the target
    caption from the caption and that instruction.  Nothing else (no mask, no edited image) is kept."""

    def __init__(self, types: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 7, 8, 9)) -> None:
        from ..rewrite import get_rewriter

        self.types = tuple(types)
        self.rewriter = get_rewriter("rules")

    def propose(self, caption: str, rng: random.Random) -> tuple[str, str] | None:
        from ..world.edits import sample_edit
        from ..world.instructions import parse_detailed_caption

        scene = parse_detailed_caption(caption)
        for _ in range(8):
            e = sample_edit(scene, rng.choice(self.types), rng)
            if e is not None:
                return e.instruction, self.rewriter.rewrite(caption, e.instruction)
        return None


# -- losses -------------------------------------------------------------------------------------------
def cos_dist(a: Tensor, b: Tensor) -> Tensor:
    """1 - cosine similarity along the last axis, averaged over the batch."""
    return (1 - F.cosine_similarity(a, b, dim=-1)).mean()


class Projection(nn.Module):
    """The semantic alignment loss's learnable network P: patch features (B, N, D) -> the CLIP text space (B, P)."""

    def __init__(self, dim: int, out: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, out))

    def forward(self, feats: Tensor) -> Tensor:
        return self.net(feats.mean(1))


class SemanticAlignmentLoss(nn.Module):
    """Eq. 4-6: d(P(F_sa), T_tgt) + d(P(F_img), T_src), d the cosine distance."""

    def __init__(self, projection: Projection) -> None:
        super().__init__()
        self.projection = projection

    def forward(self, fused: Tensor, patches: Tensor, t_tgt: Tensor, t_src: Tensor) -> Tensor:
        return cos_dist(self.projection(fused), t_tgt) + cos_dist(self.projection(patches), t_src)


class ClipGuidanceLoss(nn.Module):
    """Eq. 7: d(E_img(I_edit), T_tgt)."""

    def forward(self, e_edit: Tensor, t_tgt: Tensor) -> Tensor:
        return cos_dist(e_edit, t_tgt)


class DirectionalClipLoss(nn.Module):
    """Eq. 8: d(E(I_edit) - E(I_src), T_tgt - T_src)."""

    def forward(self, e_edit: Tensor, e_src: Tensor, t_tgt: Tensor, t_src: Tensor) -> Tensor:
        return cos_dist(e_edit - e_src, t_tgt - t_src)


def self_similarity(patches: Tensor) -> Tensor:
    """(B, N, D) -> (B, N, N) pairwise cosine similarities of the patch features."""
    f = F.normalize(patches, dim=-1)
    return f @ f.transpose(1, 2)


class StructureLoss(nn.Module):
    """Eq. 9: the squared L2 distance between the patch self-similarity matrices of the edited and source images
    (mean over entries)."""

    def forward(self, p_edit: Tensor, p_src: Tensor) -> Tensor:
        return (self_similarity(p_edit) - self_similarity(p_src)).pow(2).mean()


# -- the frozen features, once -------------------------------------------------------------------
def build_features(cfg: RegionTrainConfig, clip, instructions, backbone, callback=None) -> dict[str, Tensor | list[str]]:
    """Render ``cfg.n_images`` captioned scenes, propose an instruction and target caption for each, and compute every
    frozen feature the loop reads: CLIP patches and embeddings of the image, CLIP embeddings of both captions, the
    instruction's token states, the source latents."""
    from ..world.captions import detailed_caption
    from ..world.render import render
    from ..world.scene import random_scene

    proposer = WorldInstructionProposer(cfg.types)
    src_caps, tgt_caps, instrs, images = [], [], [], []
    k = 0
    while len(images) < cfg.n_images:
        rng = random.Random(f"region/{cfg.seed}/{k}")
        k += 1
        scene = random_scene(rng)
        caption = detailed_caption(scene)
        got = proposer.propose(caption, rng)
        if got is None:
            continue
        instrs.append(got[0])
        tgt_caps.append(got[1])
        src_caps.append(caption)
        images.append(render(scene))
    feats: dict[str, list] = {k: [] for k in ("patches", "e_src", "t_src", "t_tgt", "latents")}
    tokens, tmasks = [], []
    for i in range(0, len(images), 64):
        batch = np.stack(images[i : i + 64])
        e, p = clip.encode_images(batch)
        feats["patches"].append(p.half())
        feats["e_src"].append(e)
        feats["t_src"].append(clip.embed_texts(src_caps[i : i + 64]))
        feats["t_tgt"].append(clip.embed_texts(tgt_caps[i : i + 64]))
        feats["latents"].append(backbone.encode_images(batch).float())
        t, m = instructions(instrs[i : i + 64])
        tokens.append(t.half())
        tmasks.append(m)
        if callback:
            callback(min(i + 64, len(images)), len(images))
    length = max(t.shape[1] for t in tokens)
    out: dict = {k: torch.cat(v) for k, v in feats.items()}
    out["tokens"] = torch.cat([F.pad(t, (0, 0, 0, length - t.shape[1])) for t in tokens])
    out["token_mask"] = torch.cat([F.pad(m, (0, length - m.shape[1])) for m in tmasks])
    out["instructions"], out["source_captions"], out["target_captions"] = instrs, src_caps, tgt_caps
    return out


def decode_differentiable(backbone, latents: Tensor) -> Tensor:
    """Latents -> (B, 3, H, W) in [0, 1], with gradients (``Backbone.decode_latents`` is no-grad and rounds)."""
    z = latents / backbone.vae_scale + backbone.vae_shift
    x = backbone.autoencoder.decode(z, return_dict=False)[0]
    return ((x.float() + 1) / 2).clamp(0, 1)


def latent_mask(grid_prob: Tensor, latent_hw: tuple[int, int]) -> Tensor:
    """(B, 1, gh, gw) patch probabilities -> (B, 1, h, w) at latent resolution (each patch its cells)."""
    return F.interpolate(grid_prob, size=latent_hw, mode="nearest")


# -- evaluation against the world's exact masks --------------------------------------------------
@torch.no_grad()
def evaluate_masks(predictor, clip, instructions, n: int, seed: int, threshold: float | None = None) -> dict:
    """Mask scores (``retouch.eval.masks``) per edit type on ``n`` held-out Shapes-PIE cases of ``seed``."""
    from ..eval.masks import mask_scores, summarise
    from ..models.region import region_mask
    from ..world.suite import generate_edits

    th = predictor.config.threshold if threshold is None else threshold
    rows = []
    cases = list(generate_edits(n, seed))
    for i in range(0, len(cases), 32):
        chunk = cases[i : i + 32]
        _, p = clip.encode_images(np.stack([e.render_source() for _, e in chunk]))
        t, m = instructions([e.instruction for _, e in chunk])
        out = predictor(p, t, m)
        masks = region_mask(out.grid_prob(), chunk[0][1].mask.shape, th)
        for (cid, e), pm in zip(chunk, masks, strict=True):
            rows.append({"id": cid, "type": e.type_id} | mask_scores(pm, e.mask))
    summary = summarise(rows)
    local = [r for r in rows if r["type"] != 9]  # the target: the nine local types 0-8 (style, the whole image, apart)
    summary["local_0_8"] = summarise(local, by="type")["all"] if local else {}
    return {"n": n, "seed": seed, "threshold": th, "by_type": summary}


def clip_name(path: str) -> str:
    """What a predictor's config records of its CLIP: the folder's name when it is a shipped model, else its absolute path."""
    from ..models.backbone import MODELS_DIR

    p = Path(path).resolve()
    return p.name if (MODELS_DIR / p.name).resolve() == p else str(p)


# -- the loop -------------------------------------------------------------------------------------
@register_task("region", RegionTrainConfig)
def train_region(cfg: RegionTrainConfig) -> dict:
    from ..models.backbone import DEFAULT_MODEL, load_backbone
    from ..models.region import ClipFeatures, InstructionEncoder, RegionPredictor, RegionPredictorConfig
    from ..sampling import sample_region, timesteps_for

    out = start_run(cfg)
    clip = ClipFeatures.load(cfg.clip)
    instructions = InstructionEncoder()
    bb = load_backbone(cfg.model or str(DEFAULT_MODEL))
    for mod in (bb.denoiser, bb.autoencoder, *bb.text_encoders):
        mod.requires_grad_(False)
    cache = out / "features.pt"
    if cache.is_file():
        data = torch.load(cache, weights_only=True)
    else:
        t0 = time.perf_counter()
        data = build_features(cfg, clip, instructions, bb)
        torch_save(data, cache)
        logger.info("cached the frozen features of %d images in %.1fs", cfg.n_images, time.perf_counter() - t0)
    torch.manual_seed(cfg.seed)
    pcfg = RegionPredictorConfig(
        image_dim=clip.width,
        text_dim=instructions.width,
        grid=clip.grid,
        heads=cfg.heads,
        threshold=cfg.threshold,
        clip=clip_name(cfg.clip),
    )
    predictor = RegionPredictor(pcfg)
    proj_dim = int(data["t_src"].shape[1])
    semantic = SemanticAlignmentLoss(Projection(clip.width, proj_dim))
    guide, direction, structure = ClipGuidanceLoss(), DirectionalClipLoss(), StructureLoss()
    model = nn.ModuleDict({"predictor": predictor, "semantic": semantic})
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = warmup_cosine(opt, cfg.warmup, cfg.steps)
    ckpt = out / "checkpoint.pt"
    step = resume(ckpt, model, opt, sched)
    ts = timesteps_for(cfg.gen_steps or bb.default_steps, bb.denoiser.num_train_timesteps)
    n = int(data["patches"].shape[0])
    lat_hw = tuple(data["latents"].shape[-2:])
    history: list[dict] = []
    bar = tqdm(total=cfg.steps, initial=step, desc="region", mininterval=5)
    t_start = time.perf_counter()
    while step < cfg.steps:
        g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)  # the batch and noise of step k depend on k alone
        idx = torch.randint(0, n, (cfg.batch_size,), generator=g)
        patches = data["patches"][idx].float()
        res = predictor(patches, data["tokens"][idx].float(), data["token_mask"][idx])
        t_src, t_tgt, e_src = data["t_src"][idx], data["t_tgt"][idx], data["e_src"][idx]
        l_sem = semantic(res.fused, patches, t_tgt, t_src)
        src_lat = data["latents"][idx]
        cond = bb.encode_text([data["target_captions"][int(i)] for i in idx])
        noises = [torch.randn(src_lat.shape, generator=g) for _ in ts]
        lat = sample_region(
            bb.denoiser,
            src_lat,
            ts,
            cond,
            latent_mask(res.grid_prob(), lat_hw),
            noises=noises,
            grad_through_denoiser=cfg.grad_through_generator,
        )
        e_edit, p_edit = clip.encode(decode_differentiable(bb, lat))
        l_guide, l_dir, l_struct = guide(e_edit, t_tgt), direction(e_edit, e_src, t_tgt, t_src), structure(p_edit, patches)
        l_clip = cfg.l_guide * l_guide + cfg.l_dir * l_dir + cfg.l_struct * l_struct
        loss = cfg.w_sem * l_sem + cfg.w_clip * l_clip
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        step += 1
        bar.update(1)
        rec = {
            "step": step,
            "loss": loss.item(),
            "sem": l_sem.item(),
            "guide": l_guide.item(),
            "dir": l_dir.item(),
            "struct": l_struct.item(),
            "mask_mean": float(res.prob.detach().mean()),
        }
        history.append(rec)
        bar.set_postfix(loss=f"{rec['loss']:.3f}", mask=f"{rec['mask_mean']:.2f}")
        if step % cfg.ckpt_every == 0 or step == cfg.steps:
            save_checkpoint(ckpt, step, model, opt, sched)
            logger.info("step %d %s (%.1fs)", step, rec, time.perf_counter() - t_start)
    bar.close()
    predictor.eval()
    predictor.save_pretrained(out)
    metrics = evaluate_masks(RegionPredictor.from_pretrained(out), clip, instructions, cfg.eval_n, cfg.eval_seed)
    metrics["seconds"] = time.perf_counter() - t_start
    metrics["history_tail"] = history[-10:]
    write_json(out / "eval.json", metrics)
    if history:
        write_json(out / "history.json", history)
    logger.info("eval %s", metrics["by_type"].get("all"))
    return metrics


__all__ = [
    "ClipGuidanceLoss",
    "DirectionalClipLoss",
    "Projection",
    "RegionTrainConfig",
    "SemanticAlignmentLoss",
    "StructureLoss",
    "WorldInstructionProposer",
    "build_features",
    "evaluate_masks",
    "self_similarity",
    "train_region",
]
