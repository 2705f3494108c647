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

Our addition, not the paper's (docs/region.md, "The generator's own answer"): ``GeneratorDifferenceLoss``.  The
frozen generator's caption reader reads the source and the target caption, its frozen draft network draws both
readings, and where the two drafts differ (thresholded, cleaned, each changed object taken whole as the disc it may
be drawn in, lightly dilated) is a pseudo-mask (``generator_difference_masks``); the loss is BCE + soft dice of the
predictor's patch probabilities (and of its refined map, when it has one) against it.  Still no editing pair and no
ground-truth mask: captions, the rewriter and the frozen generator only.  It needs no sampling, so a step costs
milliseconds instead of seconds; with ``w_clip: 0`` the loop skips the region-blended sampling altogether.

Frozen features are computed once and cached in the run folder (``features.pt``).
"""

from __future__ import annotations

import json
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
from ..models.region import generator_difference_masks, generator_parts
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
    # our addition (not the paper's): the frozen generator's difference of the two captions' drafts as a pseudo-mask
    w_gen: float = 0.0  # weight of GeneratorDifferenceLoss (0: the paper's losses only)
    gen_tau: float = 0.2  # a pixel differs when a draft channel moves by more than this (drafts in [-1, 1])
    gen_dilate: int = 4  # dilation of the pseudo-mask, pixels at 128 px
    gen_disc: bool = True  # a changed object is taken whole as the disc around its drawn pixels (else its pixels)
    gen_dice: float = 1.0  # weight of the soft dice term beside the BCE
    gen_bf16: bool = False  # draw the pseudo-masks' drafts under bfloat16 autocast (2x faster on a CPU with bf16 units)
    heads: int = 4
    threshold: float = 0.5
    upsample: str = "nearest"  # the predictor's grid -> image resize ("bilinear": rounded edges; models/region.py)
    refine: int = 0  # side of the predictor's refined mask, drawn from the image (0: the patch grid only)
    refine_width: int = 32
    layers: int = 1  # the predictor's attention layers (1: eq. 1-2 as in the paper)
    mixer: int = 0  # depthwise-conv blocks over the patch grid before eq. 1 (0: none, as in the paper)
    # a scene reader folder: its frozen slot convolutions become the predictor's second image encoder (models/region.py,
    # ReaderEncoder; "": none, the paper)
    reader: str = ""
    text_layers: int = 0  # the instruction encoder's first layers the predictor reads (0: all; models/region.py)
    ckpt_every: int = 100
    curve_every: int = 0  # every this many steps: a predictor snapshot (snapshots/) and curve_n held-out cases scored (curve.json)
    curve_n: int = 140
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


def soft_dice(p: Tensor, t: Tensor, eps: float = 1.0) -> Tensor:
    """1 - soft Dice of probabilities ``p`` against targets ``t`` (B, ...), averaged over the batch."""
    p, t = p.flatten(1), t.flatten(1)
    return (1 - (2 * (p * t).sum(1) + eps) / (p.sum(1) + t.sum(1) + eps)).mean()


class GeneratorDifferenceLoss(nn.Module):
    """Our addition: BCE + ``dice`` x soft Dice of the predicted region against the generator-difference pseudo-mask
    (``generator_difference_masks``), on the patch grid (each patch's target: the share of it the pseudo-mask covers)
    and, for a predictor with a refined map, at that map's resolution too."""

    def __init__(self, dice: float = 1.0) -> None:
        super().__init__()
        self.dice = dice

    def term(self, prob: Tensor, pseudo: Tensor) -> Tensor:
        target = F.adaptive_avg_pool2d(pseudo, prob.shape[-2:])  # (B, 1, h, w) covered shares
        p = prob.clamp(1e-6, 1 - 1e-6)
        return F.binary_cross_entropy(p, target) + self.dice * soft_dice(p, target)

    def forward(self, grid_prob: Tensor, pseudo: Tensor, fine: Tensor | None = None) -> Tensor:
        """grid_prob (B, 1, gh, gw), pseudo (B, 1, H, W) in {0, 1}, fine (B, 1, S, S) or None."""
        loss = self.term(grid_prob, pseudo)
        if fine is not None:
            loss = loss + self.term(fine, pseudo)
        return loss


# -- the frozen features, once -------------------------------------------------------------------
def training_cases(cfg: RegionTrainConfig) -> tuple[list[str], list[str], list[str], list]:
    """(source captions, instructions, target captions, scenes) of the ``cfg.n_images`` training images, deterministic
    in ``cfg.seed`` and ``cfg.types``; the scenes are only rendered (the captioned images), never read otherwise."""
    from ..world.captions import detailed_caption
    from ..world.scene import random_scene

    proposer = WorldInstructionProposer(cfg.types)
    src_caps, tgt_caps, instrs, scenes = [], [], [], []
    k = 0
    while len(scenes) < cfg.n_images:
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
        scenes.append(scene)
    return src_caps, instrs, tgt_caps, scenes


def cache_settings(cfg: RegionTrainConfig) -> dict:
    """What the cached training set depends on (a cache made with other settings is rebuilt)."""
    return {"n_images": cfg.n_images, "seed": cfg.seed, "types": list(cfg.types)}


def build_features(cfg: RegionTrainConfig, clip, instructions, backbone, callback=None) -> dict[str, Tensor | list[str]]:
    """Render ``cfg.n_images`` captioned scenes, propose an instruction and target caption for each, and compute every
    frozen feature the loop reads: the image itself (uint8), CLIP patches and embeddings of the image, CLIP embeddings
    of both captions, the instruction's token states; the source latents only when the CLIP losses are on
    (``add_latents``), the pseudo-masks only when ``w_gen`` > 0 (``add_pseudo_masks``)."""
    from ..world.render import render

    src_caps, instrs, tgt_caps, scenes = training_cases(cfg)
    images = [render(sc) for sc in scenes]
    feats: dict[str, list] = {k: [] for k in ("patches", "e_src", "t_src", "t_tgt")}
    tokens, tmasks = [], []
    for i in range(0, len(images), 64):
        batch = np.stack(images[i : i + 64])
        e, p = clip.encode_images(batch)
        feats["patches"].append(p.half())
        feats["e_src"].append(e)
        feats["t_src"].append(clip.embed_texts(src_caps[i : i + 64]))
        feats["t_tgt"].append(clip.embed_texts(tgt_caps[i : i + 64]))
        t, m = instructions(instrs[i : i + 64])
        tokens.append(t.half())
        tmasks.append(m)
        if callback:
            callback(min(i + 64, len(images)), len(images))
    length = max(t.shape[1] for t in tokens)
    out: dict = {k: torch.cat(v) for k, v in feats.items()}
    out["images"] = torch.from_numpy(np.stack(images))  # (N, H, W, 3) uint8
    out["tokens"] = torch.cat([F.pad(t, (0, 0, 0, length - t.shape[1])) for t in tokens])
    out["token_mask"] = torch.cat([F.pad(m, (0, length - m.shape[1])) for m in tmasks])
    out["instructions"], out["source_captions"], out["target_captions"] = instrs, src_caps, tgt_caps
    out["settings"], out["text_layers"] = cache_settings(cfg), cfg.text_layers
    if cfg.w_clip > 0:
        add_latents(out, backbone)
    return out


def encode_instructions(data: dict, instructions, text_layers: int) -> None:
    """The instructions' token states and mask again, by an encoder reading ``text_layers`` layers (0: all)."""
    tokens, tmasks = [], []
    for i in range(0, len(data["instructions"]), 64):
        t, m = instructions(data["instructions"][i : i + 64])
        tokens.append(t.half())
        tmasks.append(m)
    length = max(t.shape[1] for t in tokens)
    data["tokens"] = torch.cat([F.pad(t, (0, 0, 0, length - t.shape[1])) for t in tokens])
    data["token_mask"] = torch.cat([F.pad(m, (0, length - m.shape[1])) for m in tmasks])
    data["text_layers"] = text_layers


def add_latents(data: dict, backbone) -> None:
    """The source latents the region-blended sampling starts from (the CLIP losses' path)."""
    data["latents"] = torch.cat(
        [backbone.encode_images(data["images"][i : i + 64].numpy()).float() for i in range(0, len(data["images"]), 64)]
    )


def pseudo_settings(cfg: RegionTrainConfig) -> dict:
    st = {"tau": cfg.gen_tau, "dilate": cfg.gen_dilate, "disc": cfg.gen_disc}
    return st | {"bf16": True} if cfg.gen_bf16 else st  # (caches made in fp32 carry no bf16 key)


def add_pseudo_masks(data: dict, cfg: RegionTrainConfig, backbone, batch: int = 64) -> None:
    """The generator-difference pseudo-mask of every training image (``generator_difference_masks``), bool (N, H, W)."""
    reader, draft = generator_parts(backbone)
    src, tgt = data["source_captions"], data["target_captions"]
    st = pseudo_settings(cfg)
    parts = []
    for i in tqdm(range(0, len(src), batch), desc="generator difference", mininterval=10):
        parts.append(torch.from_numpy(generator_difference_masks(reader, draft, src[i : i + batch], tgt[i : i + batch], **st)))
    data["pseudo"], data["pseudo_settings"] = torch.cat(parts), st


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
        pixels = clip.pixels(np.stack([e.render_source() for _, e in chunk]))
        _, p = clip.encode(pixels)
        t, m = instructions([e.instruction for _, e in chunk])
        out = predictor(p, t, m, image=pixels if predictor.reads_image else None)
        masks = region_mask(out.mask_prob(), chunk[0][1].mask.shape, th, predictor.upsample_mode)
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
def load_features(cfg: RegionTrainConfig, out: Path, clip, instructions, bb) -> dict:
    """The cached frozen features of ``out/features.pt``, made or completed as the settings need them."""
    cache = out / "features.pt"
    data = torch.load(cache, weights_only=True) if cache.is_file() else None
    if data is not None and (data.get("settings") != cache_settings(cfg) or "images" not in data):
        logger.info("%s was made for other training images (or by an older version): rebuilding it", cache)
        data = None
    changed = data is None
    if data is None:
        t0 = time.perf_counter()
        data = build_features(cfg, clip, instructions, bb)
        logger.info("cached the frozen features of %d images in %.1fs", cfg.n_images, time.perf_counter() - t0)
    if data.get("text_layers", 0) != cfg.text_layers:  # the instructions read by another depth of the text encoder
        encode_instructions(data, instructions, cfg.text_layers)
        changed = True
    if cfg.w_clip > 0 and "latents" not in data:
        add_latents(data, bb)
        changed = True
    if cfg.w_gen > 0 and data.get("pseudo_settings") != pseudo_settings(cfg):
        t0 = time.perf_counter()
        add_pseudo_masks(data, cfg, bb)
        logger.info("generator-difference pseudo-masks of %d images in %.1fs", cfg.n_images, time.perf_counter() - t0)
        changed = True
    if changed:
        torch_save(data, cache)
    return data


def _curve_point(step: int, cfg: RegionTrainConfig, predictor, clip, instructions, out: Path) -> dict:
    """A snapshot of the predictor (``snapshots/step-K``) and its scores on ``curve_n`` held-out cases."""
    snap = out / "snapshots" / f"step-{step:06d}"
    predictor.eval()
    predictor.save_pretrained(snap)
    m = evaluate_masks(predictor, clip, instructions, cfg.curve_n, cfg.eval_seed)
    predictor.train()
    by = m["by_type"]
    return {
        "step": step,
        "images_seen": step * cfg.batch_size,
        "local_0_8": by["local_0_8"]["iou"],
        "all": by["all"]["iou"],
        "iou_by_type": {k: v["iou"] for k, v in by.items() if k.isdigit()},
        "snapshot": str(snap),
    }


@register_task("region", RegionTrainConfig)
def train_region(cfg: RegionTrainConfig) -> dict:
    from ..models.backbone import DEFAULT_MODEL, load_backbone
    from ..models.region import ClipFeatures, InstructionEncoder, RegionPredictor, RegionPredictorConfig
    from ..sampling import sample_region, timesteps_for

    out = start_run(cfg)
    clip = ClipFeatures.load(cfg.clip)
    instructions = InstructionEncoder(layers=cfg.text_layers)
    bb = load_backbone(cfg.model or str(DEFAULT_MODEL))
    for mod in (bb.denoiser, bb.autoencoder, *bb.text_encoders):
        mod.requires_grad_(False)
    if cfg.w_gen > 0:
        generator_parts(bb)  # fails before any work when the generator has no draft
    data = load_features(cfg, out, clip, instructions, bb)
    scene_reader = None
    if cfg.reader:  # its slot stack becomes the predictor's frozen second encoder (read once: width and weights)
        from ..world.reader import SceneReader

        scene_reader = SceneReader.from_pretrained(cfg.reader)
    torch.manual_seed(cfg.seed)
    pcfg = RegionPredictorConfig(
        image_dim=clip.width,
        text_dim=instructions.width,
        grid=clip.grid,
        heads=cfg.heads,
        threshold=cfg.threshold,
        clip=clip_name(cfg.clip),
        upsample=cfg.upsample,
        refine=cfg.refine,
        refine_width=cfg.refine_width,
        layers=cfg.layers,
        mixer=cfg.mixer,
        reader=scene_reader.config.width if scene_reader is not None else 0,
        text_layers=cfg.text_layers,
    )
    predictor = RegionPredictor(pcfg)
    if scene_reader is not None:
        predictor.reader.load_scene_reader(scene_reader)
    proj_dim = int(data["t_src"].shape[1])
    semantic = SemanticAlignmentLoss(Projection(clip.width, proj_dim))
    guide, direction, structure = ClipGuidanceLoss(), DirectionalClipLoss(), StructureLoss()
    gen_loss = GeneratorDifferenceLoss(cfg.gen_dice)
    model = nn.ModuleDict({"predictor": predictor, "semantic": semantic})
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = warmup_cosine(opt, cfg.warmup, cfg.steps)
    ckpt = out / "checkpoint.pt"
    step = resume(ckpt, model, opt, sched)
    ts = timesteps_for(cfg.gen_steps or bb.default_steps, bb.denoiser.num_train_timesteps)
    n = int(data["patches"].shape[0])
    lat_hw = tuple(data["latents"].shape[-2:]) if "latents" in data else None
    history: list[dict] = []
    curve_path = out / "curve.json"
    curve = [c for c in (json.loads(curve_path.read_text()) if curve_path.is_file() else []) if c["step"] <= step]
    zero = torch.zeros(())
    bar = tqdm(total=cfg.steps, initial=step, desc="region", mininterval=5)
    t_start = time.perf_counter()
    while step < cfg.steps:
        g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)  # the batch and noise of step k depend on k alone
        idx = torch.randint(0, n, (cfg.batch_size,), generator=g)
        patches = data["patches"][idx].float()
        pixels = data["images"][idx].permute(0, 3, 1, 2).float() / 255.0 if predictor.reads_image else None
        res = predictor(patches, data["tokens"][idx].float(), data["token_mask"][idx], image=pixels)
        t_src, t_tgt, e_src = data["t_src"][idx], data["t_tgt"][idx], data["e_src"][idx]
        l_sem = semantic(res.fused, patches, t_tgt, t_src) if cfg.w_sem > 0 else zero
        l_guide = l_dir = l_struct = zero
        if cfg.w_clip > 0:  # the paper's path: region-blended sampling through the frozen generator, then CLIP
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
        l_gen = gen_loss(res.grid_prob(), data["pseudo"][idx][:, None].float(), res.fine) if cfg.w_gen > 0 else zero
        loss = cfg.w_sem * l_sem + cfg.w_clip * l_clip + cfg.w_gen * l_gen
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
            "gen": l_gen.item(),
            "mask_mean": float(res.prob.detach().mean()),
        }
        history.append(rec)
        bar.set_postfix(loss=f"{rec['loss']:.3f}", mask=f"{rec['mask_mean']:.2f}")
        if step % cfg.ckpt_every == 0 or step == cfg.steps:
            save_checkpoint(ckpt, step, model, opt, sched)
            logger.info("step %d %s (%.1fs)", step, rec, time.perf_counter() - t_start)
        if cfg.curve_every and (step % cfg.curve_every == 0 or step == cfg.steps):
            curve.append(_curve_point(step, cfg, predictor, clip, instructions, out))
            write_json(curve_path, curve)
            logger.info("curve: step %d local 0-8 IoU %.3f", step, curve[-1]["local_0_8"])
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
    "GeneratorDifferenceLoss",
    "Projection",
    "RegionTrainConfig",
    "SemanticAlignmentLoss",
    "StructureLoss",
    "WorldInstructionProposer",
    "build_features",
    "evaluate_masks",
    "generator_difference_masks",
    "soft_dice",
    "self_similarity",
    "train_region",
    "training_cases",
]
