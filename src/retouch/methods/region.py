"""``region``: instruction editing through a learnable edit region ("Beyond Editing Pairs", sec. 3.2 and Appendix A.3).

One edit reads straight through:
image -> source caption (captioner) -> target caption (rewriter) -> edit region (the region predictor: the
image's frozen CLIP patch features attend to the instruction's token states; a probability per patch,
thresholded) -> region-conditioned generation with the frozen few-step generator (from noise under the target
caption, the latent outside the region replaced by the re-noised source at every step,
``retouch.sampling.sample_region``) -> decode -> input size -> the input's own pixels outside the region, bit for bit.

A user mask (``EditRequest.mask``) replaces the predicted region.  The predictor is trained without editing pairs
(``retouch train recipes/region.json``, ``retouch.train.region``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..sampling import sample_region, timesteps_for
from . import EditRequest, EditResult, Method, Progress, register_method
from .common import from_working, make_captioner, paste, resolve_captions, size_multiple, to_working, to_working_mask, working_size

logger = logging.getLogger(__name__)

EMPTY_MODES = ("keep", "error")
# where the region comes from: the learned predictor (the paper); the generator's own answer, where its drafts of the
# source and the target caption differ (``generator_difference_masks``, the pseudo-mask the shipped predictor was
# trained on; DiffEdit-like, needs a generator with a caption reader and a draft); or the union of both
REGION_SOURCES = ("predictor", "generator", "union")


@dataclass
class RegionSettings:
    model: str | None = None  # generator pipeline folder; the shipped Shapes few-step model by default
    predictor: str | None = None  # region predictor folder; models/region-predictor by default
    clip: str | None = None  # CLIPModel folder the predictor reads (default: the one its config names, models/world-clip)
    steps: int | None = None  # generator steps (the model's default: 4)
    threshold: float | None = None  # patch probability at which a patch joins the region (default: the predictor's, 0.5)
    seed: int = 0  # noise seed of the generation inside the region
    # a predicted region with no patch: "keep" returns the input unchanged (info["warning"] says so; benchmarks),
    # "error" raises ValueError naming the instruction
    empty_mask: str = "keep"
    region_from: str = "predictor"  # one of REGION_SOURCES
    rewriter: str = "reader"
    rewriter_options: dict | None = None
    captioner: str | None = "scene-reader"  # None: captions must come with the request
    device: str = "cpu"


def resolve_clip(name: str, predictor_folder: Path) -> Path:
    """A CLIP folder from a predictor config's ``clip`` entry: a path, or a name under models/."""
    from ..models.backbone import MODELS_DIR

    for p in (Path(name), predictor_folder / name, MODELS_DIR / name):
        if (p / "config.json").is_file():
            return p
    raise FileNotFoundError(
        f"the region predictor in {predictor_folder} reads CLIP {name!r}, which is neither a folder nor under {MODELS_DIR}"
    )


@register_method
class RegionEdit(Method):
    name = "region"

    def __init__(self, **options) -> None:
        self.settings = s = RegionSettings(**options)
        if s.empty_mask not in EMPTY_MODES:
            raise ValueError(f"empty_mask must be one of {EMPTY_MODES}, got {s.empty_mask!r}")
        if s.region_from not in REGION_SOURCES:
            raise ValueError(f"region_from must be one of {REGION_SOURCES}, got {s.region_from!r}")
        if s.threshold is not None and not 0.0 < s.threshold < 1.0:
            raise ValueError(f"threshold must lie in (0, 1), got {s.threshold}")
        from ..models.backbone import DEFAULT_MODEL, load_backbone
        from ..models.region import DEFAULT_REGION_PREDICTOR, ClipFeatures, InstructionEncoder, RegionPredictor, generator_parts
        from ..rewrite import get_rewriter

        self.rewriter = get_rewriter(s.rewriter, **(s.rewriter_options or {}))  # a bad name fails before any model loads
        folder = Path(s.predictor) if s.predictor else DEFAULT_REGION_PREDICTOR
        self.predictor = RegionPredictor.from_pretrained(folder)
        self.clip = ClipFeatures.load(Path(s.clip) if s.clip else resolve_clip(self.predictor.config.clip, folder))
        if self.clip.width != self.predictor.config.image_dim or self.clip.grid != tuple(self.predictor.config.grid):
            raise ValueError(
                f"the CLIP's patch features ({self.clip.grid[0]}x{self.clip.grid[1]} x {self.clip.width}) do not fit the region "
                f"predictor in {folder} (grid {tuple(self.predictor.config.grid)}, width {self.predictor.config.image_dim})"
            )
        self.instructions = InstructionEncoder(layers=self.predictor.config.text_layers)
        if self.instructions.width != self.predictor.config.text_dim:
            raise ValueError(
                f"the instruction encoder is {self.instructions.width} wide; the predictor reads {self.predictor.config.text_dim}"
            )
        self.backbone = load_backbone(s.model or str(DEFAULT_MODEL), device=s.device)
        self.generator_parts = generator_parts(self.backbone) if s.region_from != "predictor" else None
        self.steps = s.steps or self.backbone.default_steps
        self.timesteps = timesteps_for(self.steps, self.backbone.denoiser.num_train_timesteps)
        self.captioner = make_captioner(s.captioner)
        self.threshold = s.threshold if s.threshold is not None else self.predictor.config.threshold

    @torch.inference_mode()  # no autograd bookkeeping at all (about 2 ms of a mask, measured with the six-layer predictor)
    def predict_region(self, image: np.ndarray, instruction: str) -> tuple[np.ndarray, torch.Tensor]:
        """(mask (H, W) bool at the image's size, its probabilities (1, 1, gh, gw): the patch grid, or the refined map of
        a predictor with a refinement head) for ``instruction`` on ``image``."""
        pixels = self.clip.pixels(image[None])  # (1, 3, H, W) in [0, 1]
        _, patches = self.clip.encode(pixels)
        tokens, tmask = self.instructions([instruction])
        out = self.predictor(patches, tokens, tmask, image=pixels if self.predictor.reads_image else None)
        return self.predictor.mask(out, image.shape[:2], self.threshold)[0], out.mask_prob()

    @torch.no_grad()
    def generator_region(self, source: str, target: str, size: tuple[int, int]) -> np.ndarray:
        """Where the frozen generator's drafts of the source and the target caption differ (H, W) bool, resized to
        ``size`` (nearest)."""
        from ..models.region import generator_difference_masks

        (m,) = generator_difference_masks(*self.generator_parts, [source], [target])
        if m.shape != tuple(size):
            t = torch.from_numpy(m.astype(np.float32))[None, None]
            m = F.interpolate(t, size=tuple(size), mode="nearest")[0, 0].numpy() > 0.5
        return m

    def edit(self, request: EditRequest, callback: Progress | None = None) -> EditResult:
        s = self.settings
        caps = resolve_captions(request, self.captioner, self.rewriter)  # the captions first: where bad input fails
        info: dict = {"source_caption": caps.source, "target_caption": caps.target}
        src = request.image
        if request.mask is not None:
            mask = request.mask
            info["mask"] = "user"
        else:
            if not request.instruction or not request.instruction.strip():
                raise ValueError("the region method predicts where to edit from the instruction: give an instruction, or a mask")
            mask = np.zeros(src.shape[:2], bool)
            if s.region_from in ("predictor", "union"):
                mask, prob = self.predict_region(src, request.instruction)
                info["patch_probability_max"] = float(prob.max())
            if s.region_from in ("generator", "union"):
                mask = mask | self.generator_region(caps.source, caps.target, src.shape[:2])
            info["mask"] = "predicted" if s.region_from == "predictor" else s.region_from
        info["mask_fraction"] = float(mask.mean())
        if not mask.any():
            why = (
                f"the region predictor finds no patch above {self.threshold} for {request.instruction!r}"
                if s.region_from == "predictor"
                else f"neither the predictor nor the generator's drafts mark a region for {request.instruction!r}"
                if s.region_from == "union"
                else f"the generator's drafts of the two captions do not differ for {request.instruction!r}"
            )
            if s.empty_mask == "error":
                raise ValueError(f"{why}: nothing would be edited; give a mask or a lower threshold")
            logger.warning("%s: the input is returned unchanged", why)
            info["warning"] = why + ": the input is returned unchanged"
            return EditResult(image=src.copy(), mask=mask.astype(np.float32), nfe_edit=0, info=info)
        bb = self.backbone
        size = working_size(*src.shape[:2], bb.default_size, size_multiple(bb))
        work = to_working(src, size)
        with torch.no_grad():
            x0 = bb.encode_images(work[None])  # (1, C, h, w)
            lat_hw = tuple(x0.shape[-2:])
            m = torch.from_numpy(to_working_mask(mask, size).astype(np.float32))[None, None]  # (1, 1, H, W)
            m_lat = (F.interpolate(m, size=lat_hw, mode="area") > 0).to(x0)  # every latent pixel the region touches
            cond = bb.encode_text([caps.target], size=size)
            g = torch.Generator().manual_seed(s.seed)
            noises = [torch.randn(x0.shape, generator=g).to(x0) for _ in self.timesteps]
            cb = (lambda i, n, _x: callback(i, n)) if callback else None
            out = sample_region(bb.denoiser, x0, self.timesteps, cond, m_lat, noises=noises, callback=cb)
        edited = from_working(bb.decode_latents(out)[0], src.shape[:2])
        weight = mask.astype(np.float32)  # outside the region: the input, bit for bit
        return EditResult(image=paste(src, edited, weight), mask=weight, nfe_edit=len(self.timesteps), info=info)


__all__ = ["RegionEdit", "RegionSettings", "resolve_clip"]
