"""``turbo``: TurboEdit (Wu et al. 2024) -- encoder-based iterative inversion of a few-step generator,
edits by changing a detailed caption.

One edit reads straight through:
image -> working size -> latents -> source caption (captioner) -> target caption (rewriter) ->
text embeddings, the edit's interpolated between source and target by ``strength`` (sec. 3.4) ->
inversion (Algorithm 1, 2 evaluations per step; computed once per image and caption, then reused)
-> editing (Algorithm 2, 1 evaluation per step) blended against the inversion trajectory inside a
mask (the user's, or the cross-attention mask of the changed words, sec. 3.5) -> decode -> input
size -> the input's pixels outside the mask.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..models.attention import capture_cross_attention
from ..sampling import TurboInversion, invert_turbo, sample_turbo, timesteps_for
from . import EditRequest, EditResult, Method, Prepared, Progress, register_method
from .common import (
    Captions,
    attention_mask,
    changed_tokens,
    difference_mask,
    from_working,
    make_captioner,
    mask_to_latent,
    paste,
    resolve_captions,
    size_multiple,
    to_working,
    to_working_mask,
    upsample_mask,
    working_size,
)

logger = logging.getLogger(__name__)

MAX_STRENGTH = 1.5
MASK_MODES = ("auto", "attention", "difference", "layout", "none")
COMPOSE_MODES = ("delta", "adaptive", "paste")


@dataclass
class TurboSettings:
    model: str | None = None  # generator pipeline folder; the shipped Shapes turbo model by default
    inversion: str | None = None  # inversion network folder; <model>-inversion or the shipped one
    steps: int | None = None  # generator steps (the model's default: 4)
    strength: float = 1.0  # 0: the reconstruction, 1: the target caption, up to 1.5: beyond it
    mask_threshold: float = 0.6  # attention-mask threshold on the normalised maps (sec. 3.5)
    # without a user mask: "attention" (maps of the changed words, sec. 3.5), "difference" (where the
    # edit leaves the inversion trajectory, after DiffEdit) or "none" (the whole image; the default:
    # with the grounded Shapes generator the attention maps of background and style words leave the
    # objects out and cover part of the background, so global edits came out half-done; chosen on the
    # dev suite, docs/editing.md "Choosing the defaults"); "layout" (the places whose layout maps differ
    # between the two captions: a layout-map generator only); "auto" (the default): "layout" on a generator with a
    # layout map, else "none" (on the draft generator "layout" kept 6 dB more background at the same success on the
    # dev suite, docs/editing.md "On the draft generator")
    mask: str = "auto"
    mask_blur: float = 1.0  # Gaussian blur radius of masks in latent pixels
    # how the decoded edit returns to pixels inside the mask (outside it the input is kept as it is):
    # "delta" (the input plus the edit's change from the reconstruction: details the autoencoder and
    # the inversion lose are kept wherever the edit did not change them), "adaptive" (delta where the
    # edit changed little, the decoded edit where it changed much: no ghost of a replaced texture) or
    # "paste" (the decoded edit)
    compose: str = "adaptive"
    # a style edit on a layout-map generator: the inversion's noises from this step on are replaced by fresh ones.
    # The first step's noise sets the composition; the later ones carry the source's fine texture, which for a style
    # change is the old style itself (pixel blocks, pencil hatching survived every compose). Chosen on the dev suite
    # (docs/editing.md "Style edits"); None: every step keeps the inversion's noise (TurboEdit as published)
    restyle_from: int | None = 1
    rewriter: str = "reader"
    rewriter_options: dict | None = None
    captioner: str | None = "scene-reader"  # None: captions must come with the request
    device: str = "cpu"
    cache_size: int = 8  # inversions kept for reuse


@dataclass
class TurboState:
    """What ``TurboEdit.prepare`` keeps: the working size, the inversion and the source caption's attention maps."""

    size: tuple[int, int]
    inversion: TurboInversion
    maps: torch.Tensor  # (1, L, h, w)


@register_method
class TurboEdit(Method):
    name = "turbo"
    reuses_inversion = True

    def __init__(self, **options) -> None:
        self.settings = s = TurboSettings(**options)
        if not 0.0 <= s.strength <= MAX_STRENGTH:
            raise ValueError(f"strength must lie in [0, {MAX_STRENGTH}], got {s.strength}")
        if s.mask not in MASK_MODES:
            raise ValueError(f"mask must be one of {MASK_MODES}, got {s.mask!r}")
        if s.compose not in COMPOSE_MODES:
            raise ValueError(f"compose must be one of {COMPOSE_MODES}, got {s.compose!r}")
        if not 0.0 < s.mask_threshold <= 1.0:
            raise ValueError(f"mask_threshold must lie in (0, 1], got {s.mask_threshold}")
        from ..models.backbone import DEFAULT_MODEL, load_backbone
        from ..models.inversion import load_inversion
        from ..rewrite import get_rewriter

        self.rewriter = get_rewriter(s.rewriter, **(s.rewriter_options or {}))  # a bad name fails before any model loads
        model = s.model or str(DEFAULT_MODEL)
        self.backbone = load_backbone(model, device=s.device)
        inv_folder = Path(s.inversion) if s.inversion else Path(str(Path(model)).rstrip("/") + "-inversion")
        self.inverter = load_inversion(inv_folder, self.backbone.denoiser.unet, device=s.device)
        self.steps = s.steps or self.backbone.default_steps
        self.timesteps = timesteps_for(self.steps, self.backbone.denoiser.num_train_timesteps)
        self.captioner = make_captioner(s.captioner)
        self._cache: OrderedDict[str, tuple[TurboInversion, torch.Tensor]] = OrderedDict()

    # -- the inversion, once per (image, caption) -------------------------------------------------
    def invert(self, image: np.ndarray, caption: str, callback: Progress | None = None) -> tuple[TurboInversion, torch.Tensor, bool]:
        """(inversion, source-caption attention maps (1, L, h, w), reused?) for a working-size image."""
        key = hashlib.sha1(image.tobytes() + str(image.shape).encode() + caption.encode()).hexdigest()
        if key in self._cache:
            self._cache.move_to_end(key)
            inv, maps = self._cache[key]
            return inv, maps, True
        bb = self.backbone
        x0 = bb.encode_images(image[None])  # (1, C, h, w)
        cond = bb.encode_text([caption], size=image.shape[:2])
        cb = (lambda i, n, _x: callback(i, n)) if callback else None
        with torch.no_grad(), capture_cross_attention(bb.denoiser.unet) as store:
            inv = invert_turbo(self.inverter, bb.denoiser, x0, self.timesteps, cond, callback=cb)
        maps = store.maps(tuple(x0.shape[-2:]))  # (1, L, h, w): the generator's maps under the source caption
        self._cache[key] = (inv, maps)
        while len(self._cache) > self.settings.cache_size:
            self._cache.popitem(last=False)
        return inv, maps, False

    # -- prepare once, edit many times ---------------------------------------------------------------
    def prepare(self, image: np.ndarray, source_prompt: str | None = None, callback: Progress | None = None) -> Prepared:
        """Caption (unless ``source_prompt`` is given) and invert ``image`` once; ``edit_prepared`` reuses both."""
        if not source_prompt:
            if self.captioner is None:
                raise ValueError("this backbone has no captioner: give the source caption (source_prompt / --source-prompt)")
            source_prompt = self.captioner.caption(image)
        bb = self.backbone
        size = working_size(*image.shape[:2], bb.default_size, size_multiple(bb))
        work = to_working(image, size)
        t0 = time.perf_counter()
        inv, maps, reused = self.invert(work, source_prompt, callback)
        return Prepared(
            image=image,
            source_prompt=source_prompt,
            state=TurboState(size, inv, maps),
            nfe=0 if reused else 2 * len(self.timesteps),
            seconds=0.0 if reused else time.perf_counter() - t0,
        )

    def edit(self, request: EditRequest, callback: Progress | None = None, strength: float | None = None) -> EditResult:
        # the captions first (cheap, and where bad input fails), then the inversion (cached), then the edit
        self._check_strength(strength)
        caps = resolve_captions(request, self.captioner, self.rewriter)
        prep = self.prepare(request.image, caps.source)
        return self._edit(prep, caps, request.mask, strength, callback, reused=prep.nfe == 0)

    def edit_prepared(
        self,
        prepared: Prepared,
        *,
        instruction: str | None = None,
        target_prompt: str | None = None,
        mask: np.ndarray | None = None,
        strength: float | None = None,
        callback: Progress | None = None,
    ) -> EditResult:
        self._check_strength(strength)
        req = EditRequest(
            image=prepared.image, instruction=instruction, source_prompt=prepared.source_prompt, target_prompt=target_prompt, mask=mask
        )
        caps = resolve_captions(req, self.captioner, self.rewriter)
        return self._edit(prepared, caps, req.mask, strength, callback, reused=True)

    def _check_strength(self, strength: float | None) -> None:
        if strength is not None and not 0.0 <= strength <= MAX_STRENGTH:
            raise ValueError(f"strength must lie in [0, {MAX_STRENGTH}], got {strength}")

    def _edit(
        self, prep: Prepared, caps: Captions, user_mask: np.ndarray | None, strength: float | None, callback: Progress | None, reused: bool
    ) -> EditResult:
        s = self.settings
        strength = s.strength if strength is None else strength
        bb = self.backbone
        src = prep.image
        size, inv, maps_src = prep.state.size, prep.state.inversion, prep.state.maps
        s_inv = 0.0 if reused else prep.seconds
        lat_hw = tuple(inv.noises[0].shape[-2:])
        both = bb.encode_text([caps.source, caps.target], size=size)
        c_src, c_tgt = both.select(0), both.select(1)
        cond = c_src.lerp(c_tgt, strength)  # sec. 3.4: linear interpolation of the text embeddings
        info: dict = {"source_caption": caps.source, "target_caption": caps.target, "strength": strength, "inversion_reused": reused}
        if s.restyle_from is not None and c_src.layout is not None:
            from ..models.layout import OBJECT_DIM, SCENE_SLICES

            st = slice(OBJECT_DIM + SCENE_SLICES["style"].start, OBJECT_DIM + SCENE_SLICES["style"].stop)
            if (c_src.layout[:, st] - c_tgt.layout[:, st]).abs().amax() > 0.5:
                g = torch.Generator("cpu").manual_seed(0)
                fresh = [torch.randn(n.shape, generator=g).to(n) for n in inv.noises]
                # the strength slider turns the late noises from the inversion's (0: the reconstruction, exactly) to
                # fresh ones (1 and beyond) along a great circle, so each noise keeps a unit variance on the way
                theta = min(max(strength, 0.0), 1.0) * np.pi / 2
                c, sn = float(np.cos(theta)), float(np.sin(theta))
                noises = [n if i < s.restyle_from else c * n + sn * f for i, (n, f) in enumerate(zip(inv.noises, fresh, strict=True))]
                inv = TurboInversion(inv.timesteps, noises, inv.recons)
                info["restyled_from"] = s.restyle_from
        cb = (lambda i, n, _x: callback(i, n)) if callback else None

        def soft(m: torch.Tensor) -> torch.Tensor:
            """A binary latent mask (1, 1, h, w) -> blurred, as the blend of Algorithm 2 uses it."""
            return mask_to_latent(m[0, 0].cpu().numpy() > 0, lat_hw, s.mask_blur, bb.device)

        masks: list[torch.Tensor] = []  # the automatic mask of each step (attention / difference)
        mode = s.mask if s.mask != "auto" else ("layout" if c_src.layout is not None else "none")
        with torch.no_grad():
            if user_mask is not None:
                m_lat = mask_to_latent(to_working_mask(user_mask, size), lat_hw, s.mask_blur, bb.device)
                out = sample_turbo(bb.denoiser, inv, cond, mask=m_lat, callback=cb)
                info["mask"] = "user"
            elif mode == "attention":
                only_src, only_tgt = changed_tokens(bb.tokenizers[0], caps.source, caps.target)
                with capture_cross_attention(bb.denoiser.unet) as store:

                    def local_blend(i: int, _x: torch.Tensor) -> torch.Tensor:
                        # prompt-to-prompt's local blend: the maps gathered so far (source words from the
                        # inversion, target words from this edit) decide the mask of step i
                        masks.append(attention_mask(maps_src, only_src, store.maps(lat_hw), only_tgt, s.mask_threshold))
                        return soft(masks[-1])

                    out = sample_turbo(bb.denoiser, inv, cond, mask=local_blend, callback=cb)
            elif mode == "layout":
                if c_src.layout is None:
                    raise ValueError("mask='layout' needs a generator with a layout map (a Shapes layout model); use 'attention' or 'none'")
                # the cells where the source and target captions' maps differ: the places (or, for background and
                # style, the whole image) the edit names; exact, with no attention threshold to tune. The map's own
                # channels only: a draft's encoded latents (models/draft.py) that follow it differ a little everywhere
                from ..models.layout import LAYOUT_CHANNELS

                m_src, m_tgt = c_src.layout[:, :LAYOUT_CHANNELS], c_tgt.layout[:, :LAYOUT_CHANNELS]
                diff = (m_src - m_tgt).abs().amax(dim=1, keepdim=True)  # (1, 1, h, w)
                masks.append((diff > 0.5).float())
                out = sample_turbo(bb.denoiser, inv, cond, mask=soft(masks[-1]), callback=cb)
            elif mode == "difference":

                def diff_blend(i: int, x: torch.Tensor) -> torch.Tensor:
                    # the union over the steps so far of where the edit moved away from the inversion
                    m = difference_mask(x, inv.recons[i], s.mask_threshold)
                    masks.append(m if not masks else torch.maximum(masks[-1], m))
                    return soft(masks[-1])

                out = sample_turbo(bb.denoiser, inv, cond, mask=diff_blend, callback=cb)
            else:
                out = sample_turbo(bb.denoiser, inv, cond, callback=cb)
                info["mask"] = "none"
        if user_mask is not None:
            weight = user_mask.astype(np.float32)  # outside the user's mask: the input, bit for bit
        elif masks:
            weight = upsample_mask(soft(masks[-1]), src.shape[:2])
            info["mask"] = mode
            info["mask_fraction"] = float(masks[-1].mean())
        else:
            weight = np.ones(src.shape[:2], np.float32)
        edited = from_working(bb.decode_latents(out)[0], src.shape[:2])
        if s.compose in ("delta", "adaptive"):
            recon = from_working(bb.decode_latents(inv.recons[-1])[0], src.shape[:2])
            edited = compose_delta(src, edited, recon, adaptive=s.compose == "adaptive")
        return EditResult(
            image=paste(src, edited, weight),
            mask=weight,
            nfe_edit=len(self.timesteps),
            nfe_inversion=0 if reused else 2 * len(self.timesteps),
            s_inversion=s_inv,
            info=info,
        )


def compose_delta(src: np.ndarray, edited: np.ndarray, recon: np.ndarray, adaptive: bool, scale: float = 48.0) -> np.ndarray:
    """src + (edited - recon) per pixel; with ``adaptive``, weighted toward ``edited`` itself where the edit
    moved far from the reconstruction (channel-mean change / ``scale`` grey levels, clipped to [0, 1])."""
    s, e, r = (a.astype(np.float32) for a in (src, edited, recon))
    out = s + e - r
    if adaptive:
        w = np.clip(np.abs(e - r).mean(-1, keepdims=True) / scale, 0.0, 1.0)  # (H, W, 1)
        out = w * e + (1 - w) * out
    return np.round(out).clip(0, 255).astype(np.uint8)


__all__ = ["TurboEdit", "TurboSettings", "TurboState", "compose_delta"]
