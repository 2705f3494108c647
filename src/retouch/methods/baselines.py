"""The inversion baselines TurboEdit replaced, on the same backbones and the same captions:

- ``ddim4`` / ``ddim50``: DDIM inversion with the source caption (Song et al. 2021; Mokady et al.
  2023 sec. 3) and plain re-generation with the target caption -- 4 steps on the few-step model,
  50 on the multi-step teacher with its classifier-free guidance.
- ``ddim4-p2p`` / ``ddim50-p2p``: the same, with prompt-to-prompt attention injection (Hertz et al.
  2023): the target branch takes the source branch's maps for the first steps.
- ``ddpm``: edit-friendly DDPM inversion (Huberman-Spiegelglas et al. 2024), 50 steps on the teacher,
  from t = 999 with every residual kept (the paper's reported setting skips the first steps, T_skip;
  ``steps`` is the only knob here).

Captions come as for ``turbo``: the request's, or the captioner's and the rewriter's.  With a user
mask the input's pixels are returned outside it; otherwise the whole re-generated image is.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
import torch

from ..models.p2p import InjectionControl, inject_attention, token_mapper
from ..sampling import invert_ddim, invert_ddpm, sample_ddim, sample_ddim_pair, sample_ddpm, timesteps_for
from . import EditRequest, EditResult, Method, Prepared, Progress, register_method
from .common import from_working, make_captioner, paste, resolve_captions, size_multiple, to_working, working_size

logger = logging.getLogger(__name__)


@dataclass
class BaselineSettings:
    model: str | None = None  # pipeline folder; each baseline names its default
    steps: int | None = None
    guidance: float | None = None  # editing guidance (the model's default); inversion runs unguided
    cross_frac: float = 0.8  # p2p: share of the steps with cross-attention injection
    self_frac: float = 0.4  # p2p: share of the steps with self-attention injection
    seed: int = 0  # ddpm: the noises of the edit-friendly inversion
    rewriter: str = "reader"
    rewriter_options: dict | None = None
    captioner: str | None = "scene-reader"
    device: str = "cpu"


class CaptionBaseline(Method):
    """Shared loading and the image path; subclasses set the defaults and ``run``."""

    default_model = "turbo"  # "turbo" | "teacher"
    default_steps = 4
    p2p = False

    def __init__(self, **options) -> None:
        from ..models.backbone import DEFAULT_MODEL, TEACHER_MODEL, load_backbone
        from ..rewrite import get_rewriter

        self.settings = s = BaselineSettings(**options)
        self.rewriter = get_rewriter(s.rewriter, **(s.rewriter_options or {}))  # a bad name fails before any model loads
        model = s.model or str(TEACHER_MODEL if self.default_model == "teacher" else DEFAULT_MODEL)
        self.backbone = load_backbone(model, device=s.device)
        self.steps = s.steps or self.default_steps
        self.timesteps = timesteps_for(self.steps, self.backbone.denoiser.num_train_timesteps)
        self.guidance = self.backbone.default_guidance if s.guidance is None else s.guidance
        self.captioner = make_captioner(s.captioner)

    def prepare(self, image: np.ndarray, source_prompt: str | None = None, callback: Progress | None = None) -> Prepared:
        """The source caption, once (the inversion depends on the target's guidance and steps, so each edit inverts)."""
        if not source_prompt and self.captioner is not None:
            source_prompt = self.captioner.caption(image)
        return Prepared(image=image, source_prompt=source_prompt)

    def edit(self, request: EditRequest, callback: Progress | None = None) -> EditResult:
        bb = self.backbone
        src = request.image
        size = working_size(*src.shape[:2], bb.default_size, size_multiple(bb))
        caps = resolve_captions(request, self.captioner, self.rewriter)
        x0 = bb.encode_images(to_working(src, size)[None])  # (1, C, h, w)
        both = bb.encode_text([caps.source, caps.target], size=size)
        c_src, c_tgt = both.select(0), both.select(1)
        uncond = bb.unconditional(1, size=size) if self.guidance != 1.0 else None
        cb = (lambda i, n, _x: callback(i, n)) if callback else None
        t0 = time.perf_counter()
        with torch.no_grad():
            out, nfe_inv, nfe_edit, s_inv = self.run(x0, c_src, c_tgt, uncond, caps, cb, t0)
        edited = from_working(bb.decode_latents(out)[0], src.shape[:2])
        weight = request.mask.astype(np.float32) if request.mask is not None else np.ones(src.shape[:2], np.float32)
        info = {"source_caption": caps.source, "target_caption": caps.target, "guidance": self.guidance, "steps": self.steps}
        return EditResult(
            image=paste(src, edited, weight), nfe_edit=nfe_edit, nfe_inversion=nfe_inv, s_inversion=s_inv, info=info, mask=weight
        )

    def run(self, x0, c_src, c_tgt, uncond, caps, cb, t0):
        raise NotImplementedError

    def _nfe_per_step(self, branches: int = 1) -> int:
        return branches * (2 if self.guidance != 1.0 else 1)


class DDIMBaseline(CaptionBaseline):
    def run(self, x0, c_src, c_tgt, uncond, caps, cb, t0):
        den = self.backbone.denoiser
        xt = invert_ddim(den, x0, self.timesteps, c_src)
        s_inv = time.perf_counter() - t0
        n = len(self.timesteps)
        if not self.p2p:
            out = sample_ddim(den, xt, self.timesteps, c_tgt, guidance=self.guidance, uncond=uncond, callback=cb)
            return out, n, n * self._nfe_per_step(), s_inv
        s = self.settings
        tok = self.backbone.tokenizers[0]
        # the caption's own tokens are aligned by their ids
        length = min(tok.model_max_length, c_src.tokens.shape[1])
        ids = [tok(c, padding="max_length", max_length=length, truncation=True)["input_ids"] for c in (caps.source, caps.target)]
        mapper, aligned = token_mapper(ids[0], ids[1])
        control = InjectionControl(
            mapper, aligned, cross_steps=round(s.cross_frac * n), self_steps=round(s.self_frac * n), guided=self.guidance != 1.0
        )

        def on_step(i: int) -> None:
            control.step = i

        with inject_attention(den.unet, control):
            _, out = sample_ddim_pair(den, xt, self.timesteps, c_src, c_tgt, self.guidance, uncond, on_step=on_step, callback=cb)
        return out, n, n * self._nfe_per_step(branches=2), s_inv


@register_method
class DDIM4(DDIMBaseline):
    name = "ddim4"


@register_method
class DDIM50(DDIMBaseline):
    name = "ddim50"
    default_model = "teacher"
    default_steps = 50


@register_method
class DDIM4P2P(DDIMBaseline):
    name = "ddim4-p2p"
    p2p = True


@register_method
class DDIM50P2P(DDIMBaseline):
    name = "ddim50-p2p"
    default_model = "teacher"
    default_steps = 50
    p2p = True


@register_method
class EditFriendlyDDPM(CaptionBaseline):
    name = "ddpm"
    default_model = "teacher"
    default_steps = 50

    def run(self, x0, c_src, c_tgt, uncond, caps, cb, t0):
        den = self.backbone.denoiser
        g = torch.Generator().manual_seed(self.settings.seed)
        # the residuals are taken with the source caption under the same guidance the edit uses
        xt, residuals = invert_ddpm(den, x0, self.timesteps, c_src, guidance=self.guidance, uncond=uncond, generator=g)
        s_inv = time.perf_counter() - t0
        out = sample_ddpm(den, xt, self.timesteps, residuals, c_tgt, guidance=self.guidance, uncond=uncond, callback=cb)
        n = len(self.timesteps) * self._nfe_per_step()
        return out, n, n, s_inv
