"""The Shapes model's draft: a layout reading rendered to pixels by a small learned decoder.

Why (docs/backbone.md, "The draft"): a diffusion UNet asked to turn a per-place attribute map into a
16-channel latent learnt where objects go and what colour they are, but after 250k images on two CPU cores
still drew shapes, patterns, poses and emblems at near guess rates. Given its caption, a Shapes scene is
deterministic everywhere but in its background texture and paper grain, so the mean image given the
reading is a sharp picture of every object, and learning it is plain regression with a dense, noise-free
target at every pixel: far better conditioned than denoising at a random noise level. The draft network
learns that regression; the autoencoder's frozen encoder turns the draft into latent channels that enter
the UNet beside the noisy latent (``models/layout.py``), so the UNet's job is to copy the draft's objects and
add the texture the mean cannot hold.

Structure (inductive bias, not capacity): the world's places never overlap, so one decoder, shared by all
places, draws each place's cell (64 x 64 of a 128 image) from that place's attribute vector and the scene's
background and style; every level is modulated by the vector (FiLM, Perez et al. 2018) and sees its
place-relative coordinates (CoordConv). The cells are tiled and one full-resolution residual stage blends
the seams (background texture and style filters cross cell borders).

Saved as ``config.json`` + ``model.safetensors`` in one folder (``models/draft/``).
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..world.scene import GRID, N_SLOTS
from .layout import OBJECT_DIM, SCENE_DIM, LayoutReading

logger = logging.getLogger(__name__)

DEFAULT_DRAFT = Path(__file__).resolve().parents[3] / "models" / "draft"


@dataclass
class DraftConfig:
    cell: int = 64  # pixels per place side (a 128 image of the world's 2 x 2 places)
    base: int = 8  # side of the first feature map; doubled up to ``cell``
    widths: tuple[int, ...] = (128, 96, 64, 32)  # channels at base, 2 base, ... cell
    embed: int = 256  # width of the place's condition vector
    seam: int = 32  # channels of the full-image seam stage (0: none)
    # octaves of Fourier features of the place-relative coordinates beside (x, y) (Tancik et al. 2020): sinusoids
    # let a small decoder draw the patterns' fine periodic detail, which coordinates alone learn last (spectral bias)
    fourier: int = 0


def _coords(n: int, like: Tensor, fourier: int = 0) -> Tensor:
    """Place-relative (x, y) in [-1, 1] at pixel centres, then sin and cos of (2^k pi x, 2^k pi y) for k < ``fourier``:
    (1, 2 + 4 * fourier, n, n)."""
    t = (torch.arange(n, device=like.device, dtype=like.dtype) + 0.5) / n * 2 - 1
    xy = torch.stack([t[None, :].expand(n, n), t[:, None].expand(n, n)])  # (2, n, n)
    feats = [xy] + [f(2**k * torch.pi * xy) for k in range(fourier) for f in (torch.sin, torch.cos)]
    return torch.cat(feats)[None]


def coord_channels(fourier: int) -> int:
    return 2 + 4 * fourier


class FiLMBlock(nn.Module):
    """conv -> GroupNorm -> FiLM(cond) -> SiLU -> conv, with a residual path; CoordConv inputs."""

    def __init__(self, cin: int, cout: int, cond: int, fourier: int = 0) -> None:
        super().__init__()
        self.fourier = fourier
        k = coord_channels(fourier)
        self.conv1 = nn.Conv2d(cin + k, cout, 3, padding=1)
        self.norm1 = nn.GroupNorm(8, cout)
        self.film = nn.Linear(cond, 2 * cout)
        self.conv2 = nn.Conv2d(cout + k, cout, 3, padding=1)
        self.norm2 = nn.GroupNorm(8, cout)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: Tensor, c: Tensor) -> Tensor:
        xy = _coords(x.shape[-1], x, self.fourier).expand(x.shape[0], -1, -1, -1)  # (N, 2 + 4F, n, n)
        h = self.norm1(self.conv1(torch.cat([x, xy], 1)))  # (N, cout, n, n)
        scale, shift = self.film(c)[:, :, None, None].chunk(2, dim=1)  # (N, cout, 1, 1) each
        h = F.silu(h * (1 + scale) + shift)
        h = self.norm2(self.conv2(torch.cat([h, xy], 1)))
        return F.silu(h + self.skip(x))


class DraftNet(nn.Module):
    """(objects (B, N_SLOTS, OBJECT_DIM), scene (B, SCENE_DIM)) -> draft image (B, 3, GRID*cell, GRID*cell) in [-1, 1]."""

    def __init__(self, config: DraftConfig | None = None) -> None:
        super().__init__()
        self.config = c = config or DraftConfig()
        n_up = len(c.widths) - 1
        if c.base * 2**n_up != c.cell:
            raise ValueError(f"draft: base {c.base} doubled {n_up} times is not the cell side {c.cell}")
        self.embed = nn.Sequential(nn.Linear(OBJECT_DIM + SCENE_DIM, c.embed), nn.SiLU(), nn.Linear(c.embed, c.embed), nn.SiLU())
        self.stem = nn.Linear(c.embed, c.widths[0] * c.base * c.base)
        ins = (c.widths[0],) + tuple(c.widths[:-1])
        self.blocks = nn.ModuleList(FiLMBlock(i, o, c.embed, c.fourier) for i, o in zip(ins, c.widths, strict=True))
        self.to_rgb = nn.Conv2d(c.widths[-1], 3, 3, padding=1)
        if c.seam:
            self.scene_film = nn.Linear(SCENE_DIM, 2 * c.seam)
            self.seam_in = nn.Conv2d(3, c.seam, 3, padding=1)
            self.seam_out = nn.Conv2d(c.seam, 3, 3, padding=1)
            nn.init.zeros_(self.seam_out.weight)  # starts as the identity on the tiled cells
            nn.init.zeros_(self.seam_out.bias)

    def forward(self, objects: Tensor, scene: Tensor) -> Tensor:
        c = self.config
        b = objects.shape[0]
        v = torch.cat([objects, scene[:, None].expand(b, N_SLOTS, SCENE_DIM)], dim=2).reshape(b * N_SLOTS, -1)  # (B*4, 41)
        e = self.embed(v)  # (B*4, embed)
        x = self.stem(e).view(b * N_SLOTS, c.widths[0], c.base, c.base)  # (B*4, w0, 8, 8)
        for k, block in enumerate(self.blocks):
            if k:
                x = F.interpolate(x, scale_factor=2, mode="nearest")
            x = block(x, e)  # (B*4, w_k, 8*2^k, 8*2^k)
        cells = self.to_rgb(x)  # (B*4, 3, cell, cell)
        # tile the places row-major (slot = row * GRID + col) into the image
        img = cells.view(b, GRID, GRID, 3, c.cell, c.cell).permute(0, 3, 1, 4, 2, 5).reshape(b, 3, GRID * c.cell, GRID * c.cell)
        if c.seam:
            scale, shift = self.scene_film(scene)[:, :, None, None].chunk(2, dim=1)  # (B, seam, 1, 1)
            h = F.silu(self.seam_in(img) * (1 + scale) + shift)  # (B, seam, 128, 128)
            img = img + self.seam_out(h)
        return img

    def draw(self, reading: LayoutReading) -> Tensor:
        """The draft of a reading, (B, 3, H, W) in [-1, 1]."""
        p = next(self.parameters())
        return self(reading.objects.to(p), reading.scene.to(p)).clamp(-1, 1)

    # -- persistence ----------------------------------------------------------
    def save_pretrained(self, folder: str | Path, half: bool = True) -> None:
        from ..atomic import save_safetensors, write_json

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        sd = {k: (v.half() if half and v.is_floating_point() else v).contiguous() for k, v in self.state_dict().items()}
        save_safetensors(sd, folder / "model.safetensors")
        write_json(folder / "config.json", {"model_type": "retouch-draft", **asdict(self.config)})

    @classmethod
    def from_pretrained(cls, folder: str | Path = DEFAULT_DRAFT) -> DraftNet:
        from safetensors.torch import load_file

        folder = Path(folder)
        cfg_path = folder / "config.json"
        if not cfg_path.is_file():
            raise FileNotFoundError(f"no draft network at {folder} (no config.json); train one with `retouch train recipes/draft.json`")
        try:
            cfg = json.loads(cfg_path.read_bytes())
            if cfg.pop("model_type", None) != "retouch-draft":
                raise ValueError("model_type is not 'retouch-draft'")
            cfg["widths"] = tuple(cfg["widths"])
            model = cls(DraftConfig(**cfg))
        except (ValueError, TypeError, KeyError, AttributeError) as e:
            raise ValueError(f"{cfg_path} is not a draft network config ({type(e).__name__}: {e})") from e
        weights = folder / "model.safetensors"
        if not weights.is_file():
            raise FileNotFoundError(f"no draft network weights at {weights} (only safetensors are loaded)")
        try:
            sd = load_file(str(weights))
            model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in sd.items()})
        except Exception as e:  # a torn or foreign file, a state dict of another network
            raise ValueError(f"{weights} is not a draft network's weights ({type(e).__name__}: {e})") from e
        return model.eval()
