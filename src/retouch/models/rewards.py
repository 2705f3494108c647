"""ByteEdit's three reward models (Ren et al. 2024, sec. 3.1-3.2), small enough to train on the Shapes world here.

- ``aesthetic``: a scalar score of a whole image, trained on preferences between clean renders and the same
  renders degraded inside a fill mask (blur, colour bleed, seams, smudges, noise, foreign patches, and the
  inpainting model's own few-step fills): ByteEdit's aesthetic reward, which ranks generated images.
- ``attributes``: ByteEdit's image-text alignment reward, asked attribute by attribute, as TIFA (Hu et al. 2023)
  scores a picture by answering questions drawn from its prompt: the prompt is parsed into the world's attribute
  values (shape, colour, size, pattern, pose, emblem) and a classifier of the masked region's crop is asked for each;
  the score is the sum of the log-probabilities of those values.  It replaced a CLIP-style two-tower model (a crop
  against the prompt's MiniLM sentence embedding, a learned cosine; docs/inpaint.md keeps its numbers): a sentence
  embedding barely moves when one word of a long description changes ("tilted left" for "tilted right"), so that
  model was weakest exactly on the attributes a fill gets wrong (pose 0.82, pattern 0.88 held out; this one 1.00).
- ``coherence``: a per-pixel real-versus-generated discriminator (fully convolutional, dilated, so each pixel
  sees its surroundings): ByteEdit's pixel-level reward, which looks for the seams and texture breaks of a
  fill; ``score`` is the mean "real" probability over the fill and a band around it, the reward the generator
  maximises, and the same network serves as the online discriminator of the adversarial stage (eq. 7-8).

Each is a ``RewardModel``: ``save_pretrained`` / ``from_pretrained`` (config.json + model.safetensors), built by
``retouch train recipes/reward-KIND.json`` (train/rewards.py).  Images are (B, 3, H, W) in [-1, 1].
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

logger = logging.getLogger(__name__)

REWARDS: dict[str, type[RewardModel]] = {}
BORDER = 4  # pixels around the mask that the coherence score also looks at (the seam)


@dataclass
class RewardConfig:
    kind: str = "aesthetic"
    width: int = 32


def register_reward(cls: type[RewardModel]) -> type[RewardModel]:
    REWARDS[cls.kind] = cls
    return cls


def _conv(cin: int, cout: int, stride: int = 1, dilation: int = 1, norm: bool = True) -> nn.Sequential:
    conv = nn.Conv2d(cin, cout, 3, stride, padding=dilation, dilation=dilation)
    return nn.Sequential(conv, nn.GroupNorm(8, cout), nn.SiLU()) if norm else nn.Sequential(conv, nn.SiLU())


class RewardModel(nn.Module):
    kind: ClassVar[str] = ""
    stored: ClassVar[torch.dtype] = torch.float32  # the weights' dtype on disk (loaded back into float32)

    def __init__(self, config: RewardConfig) -> None:
        super().__init__()
        self.config = config

    def save_pretrained(self, folder: str | Path) -> None:
        from ..atomic import save_safetensors, write_json

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().to(self.stored).contiguous().cpu() for k, v in self.state_dict().items()}
        save_safetensors(state, folder / "model.safetensors")
        write_json(folder / "config.json", asdict(self.config) | {"_class_name": type(self).__name__})

    @staticmethod
    def from_pretrained(folder: str | Path, kind: str | None = None) -> RewardModel:
        from safetensors.torch import load_file

        folder = Path(folder)
        if not (folder / "config.json").is_file() or not (folder / "model.safetensors").is_file():
            raise FileNotFoundError(
                f"{folder} holds no reward model (config.json + model.safetensors); train one with `retouch train recipes/reward-*.json`"
            )
        raw = json.loads((folder / "config.json").read_text())
        raw.pop("_class_name", None)
        cfg = RewardConfig(**raw)
        if kind is not None and cfg.kind != kind:
            raise ValueError(f"{folder} is a {cfg.kind} reward model, not {kind}")
        if cfg.kind not in REWARDS:
            raise ValueError(f"{folder}: unknown reward kind {cfg.kind!r}; known: {', '.join(REWARDS)}")
        net = REWARDS[cfg.kind](cfg)
        net.load_state_dict(load_file(str(folder / "model.safetensors")))
        return net.eval()


@register_reward
class AestheticReward(RewardModel):
    """Image (B, 3, 128, 128) -> score (B,): higher is a cleaner picture."""

    kind = "aesthetic"

    def __init__(self, config: RewardConfig) -> None:
        super().__init__(config)
        w = config.width
        self.body = nn.Sequential(_conv(3, w, 2), _conv(w, w, 2), _conv(w, 2 * w, 2), _conv(2 * w, 2 * w, 2), _conv(2 * w, 4 * w, 2))
        self.head = nn.Linear(8 * w, 1)

    def forward(self, x: Tensor) -> Tensor:
        h = self.body(x)  # (B, 4w, H/32, W/32)
        h = torch.cat([h.mean((2, 3)), h.amax((2, 3))], dim=1)  # (B, 8w): a local flaw shows in the max
        return self.head(h).squeeze(1)  # (B,)


@register_reward
class AttributeReward(RewardModel):
    """(region crop (B, 3, 64, 64), attribute values (B, 6) as indices into ``OBJECT_ATTRS``, -1 = not said) -> (B,)
    the sum of log p(value | crop) over the said attributes (TIFA-style; see the module docstring)."""

    kind = "attributes"
    crop = 64
    stored = torch.float16  # 1.6 MB instead of 3.2: the repository's weight budget

    def __init__(self, config: RewardConfig) -> None:
        from ..world.scene import OBJECT_ATTRS

        super().__init__(config)
        w = config.width
        # three stride-2 stages to 8x8, one more to 4x4, then flattened: pose and emblem are where things are in the
        # crop, which a global average would blur
        self.image = nn.Sequential(
            _conv(3, w), _conv(w, 2 * w, 2), _conv(2 * w, 2 * w, 2), _conv(2 * w, 4 * w, 2), _conv(4 * w, 4 * w, 2), nn.Flatten()
        )
        self.trunk = nn.Sequential(nn.Linear(4 * w * 16, 256), nn.SiLU())
        self.heads = nn.ModuleDict({k: nn.Linear(256, len(v)) for k, v in OBJECT_ATTRS.items()})

    def logits(self, crop: Tensor) -> dict[str, Tensor]:
        h = self.trunk(self.image(crop))  # (B, 256)
        return {k: head(h) for k, head in self.heads.items()}  # each (B, n_values)

    def forward(self, crop: Tensor, values: Tensor) -> Tensor:
        total = torch.zeros(crop.shape[0], device=crop.device)
        for j, lg in enumerate(self.logits(crop).values()):
            v = values[:, j]  # (B,)
            lp = F.log_softmax(lg.float(), dim=-1).gather(1, v.clamp(min=0)[:, None])[:, 0]  # (B,)
            total = total + torch.where(v >= 0, lp, torch.zeros_like(lp))
        return total  # (B,)

    def margins(self, crop: Tensor, values: Tensor) -> Tensor:
        """(B, 6): each said attribute's logit minus the best other value's (positive where the crop reads as
        said); +inf where the attribute is not said, so a hinge on it is zero there."""
        out = []
        for j, lg in enumerate(self.logits(crop).values()):
            lg, v = lg.float(), values[:, j]  # (B, n), (B,)
            said = lg.gather(1, v.clamp(min=0)[:, None])[:, 0]  # (B,)
            other = lg.scatter(1, v.clamp(min=0)[:, None], float("-inf")).amax(1)  # (B,)
            out.append(torch.where(v >= 0, said - other, torch.full_like(said, float("inf"))))
        return torch.stack(out, 1)


def object_values(o) -> list[int]:
    """An object's attribute values as indices into ``OBJECT_ATTRS`` (the ``attributes`` reward's input)."""
    from ..world.scene import OBJECT_ATTRS

    return [OBJECT_ATTRS[k].index(getattr(o, k)) for k in OBJECT_ATTRS]


def prompt_values(prompt: str) -> list[int]:
    """A one-object prompt ("a small red dotted star, upside down, with a bolt") parsed into attribute indices by the
    world's instruction reader (which gives an attribute the prompt leaves out its default value, as ``retouch
    inpaint`` draws it).  ValueError when the prompt does not read as one object."""
    from ..world.reading import ReadingError, read_instruction
    from ..world.scene import BACKGROUNDS, STYLES, Scene

    text = prompt.strip().rstrip(".")
    try:
        target = read_instruction(Scene((), BACKGROUNDS[0], STYLES[0]), f"add {text} at the top left").target
    except ReadingError as e:
        raise ValueError(f"{prompt!r} does not read as one object: {e}") from e
    o = target.object_at(0)
    if o is None:
        raise ValueError(f"{prompt!r} does not read as one object")
    return object_values(o)


@register_reward
class CoherenceReward(RewardModel):
    """Image (B, 3, H, W) -> per-pixel logit of "generated" (B, 1, H, W)."""

    kind = "coherence"

    def __init__(self, config: RewardConfig) -> None:
        super().__init__(config)
        w = config.width
        # a stride-2 stem, then dilated layers at half resolution (receptive field ~66 px), logits upsampled:
        # seams and texture breaks are a few pixels wide, the half-resolution grid still resolves them. No
        # normalisation layer: a group norm's statistics span the image, and a pixel's verdict must not
        # depend on pixels outside its receptive field
        self.net = nn.Sequential(
            _conv(3, w, 2, norm=False),
            _conv(w, w, dilation=2, norm=False),
            _conv(w, 2 * w, dilation=4, norm=False),
            _conv(2 * w, 2 * w, dilation=8, norm=False),
            _conv(2 * w, w, dilation=2, norm=False),
        )
        self.out = nn.Conv2d(w, 1, 1)

    def forward(self, x: Tensor) -> Tensor:
        h = self.out(self.net(x))  # (B, 1, H/2, W/2)
        return F.interpolate(h, size=x.shape[-2:], mode="bilinear", align_corners=False)  # (B, 1, H, W)

    def score(self, x: Tensor, mask: Tensor) -> Tensor:
        """(B,) mean probability of "real" over ``mask`` (B, 1, H, W) and a ``BORDER``-pixel band around it."""
        region = F.max_pool2d(mask.float(), 2 * BORDER + 1, stride=1, padding=BORDER)  # (B, 1, H, W)
        real = torch.sigmoid(-self(x))
        return (real * region).sum((1, 2, 3)) / region.sum((1, 2, 3)).clamp(min=1)


def region_crops(x: Tensor, mask: Tensor, size: int = AttributeReward.crop, pad: int = 6) -> Tensor:
    """(B, 3, size, size): each image cut to its mask's bounding box grown by ``pad`` (square), resized."""
    crops = []
    H, W = x.shape[-2:]
    for i in range(x.shape[0]):
        ys, xs = torch.nonzero(mask[i, 0] > 0.5, as_tuple=True)
        if len(ys) == 0:
            t, lft, b, r = 0, 0, H, W
        else:
            t, b, lft, r = int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1
            side = max(b - t, r - lft) + 2 * pad
            cy, cx = (t + b) // 2, (lft + r) // 2
            t, lft = max(0, min(H - side, cy - side // 2)), max(0, min(W - side, cx - side // 2))
            b, r = min(H, t + side), min(W, lft + side)
        crops.append(F.interpolate(x[i : i + 1, :, t:b, lft:r], size=(size, size), mode="bilinear", align_corners=False))
    return torch.cat(crops)  # (B, 3, size, size)
