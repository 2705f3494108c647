"""The scene reader: image -> Scene.

A small CNN that reads each slot of the 2x2 grid from its own crop (one set of
weights shared by all slots) plus a global branch for background and style,
whose features also go to every slot head so that colour is read knowing the
style (grayscale and sepia keep only luminance).  Saved as ``config.json`` +
``model.safetensors`` in one folder.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn

from .scene import GRID, N_SLOTS, OBJECT_ATTRS, SCENE_ATTRS, Scene, WorldObject

logger = logging.getLogger(__name__)

READ_SIZE = 128  # the reader sees every image at this size
DEFAULT_READER = Path(__file__).resolve().parents[3] / "models" / "scene-reader"


@dataclass
class SceneReaderConfig:
    width: int = 32  # channels of the first slot stage
    ctx: int = 64  # global context features handed to every slot head
    hidden: int = 256


def _block(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class SceneReader(nn.Module):
    def __init__(self, config: SceneReaderConfig | None = None) -> None:
        super().__init__()
        self.config = c = config or SceneReaderConfig()
        w = c.width
        self.glob = nn.Sequential(
            nn.AvgPool2d(2),  # the background and style read fine at half resolution
            _block(3, 16, 2),
            _block(16, 32, 2),
            _block(32, 64, 2),
            _block(64, 64, 2),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.glob_fc = nn.Sequential(nn.Linear(64, 128), nn.ReLU(inplace=True))
        self.ctx = nn.Linear(128, c.ctx)
        self.scene_heads = nn.ModuleDict({k: nn.Linear(128, len(v)) for k, v in SCENE_ATTRS.items()})
        # a learned stride-2 stem instead of full-resolution convolutions: a 4x4 kernel
        # still sees every pixel, and the cost drops fourfold (CPU training budget)
        self.slot = nn.Sequential(
            nn.Conv2d(3, w, 4, 2, 1, bias=False),
            nn.BatchNorm2d(w),
            nn.ReLU(inplace=True),  # 32x32
            _block(w, 2 * w, 2),  # 16x16
            _block(2 * w, 3 * w, 2),  # 8x8
            _block(3 * w, 4 * w, 2),  # 4x4
            nn.Flatten(),
        )
        self.slot_fc = nn.Sequential(nn.Linear(4 * w * 16 + c.ctx, c.hidden), nn.ReLU(inplace=True))
        heads = {"present": 2} | {k: len(v) for k, v in OBJECT_ATTRS.items()}
        self.slot_heads = nn.ModuleDict({k: nn.Linear(c.hidden, n) for k, n in heads.items()})

    def forward(self, x: torch.Tensor) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """x: (B, 3, 128, 128) in [0, 1] -> (scene logits {name: (B, K)}, slot logits {name: (B, N_SLOTS, K)})."""
        b = x.shape[0]
        x = (x - 0.5) / 0.25
        g = self.glob_fc(self.glob(x))  # (B, 128)
        scene_logits = {k: h(g) for k, h in self.scene_heads.items()}
        cell = x.shape[-1] // GRID
        # (B, 3, G*cell, G*cell) -> (B*N_SLOTS, 3, cell, cell), slots row-major
        crops = x.unfold(2, cell, cell).unfold(3, cell, cell)  # (B, 3, G, G, cell, cell)
        crops = crops.permute(0, 2, 3, 1, 4, 5).reshape(b * N_SLOTS, 3, cell, cell)
        ctx = self.ctx(g).repeat_interleave(N_SLOTS, dim=0)  # (B*N_SLOTS, ctx)
        h = self.slot_fc(torch.cat([self.slot(crops), ctx], dim=1))  # (B*N_SLOTS, hidden)
        slot_logits = {k: head(h).view(b, N_SLOTS, -1) for k, head in self.slot_heads.items()}
        return scene_logits, slot_logits

    # -- persistence ----------------------------------------------------------
    def save_pretrained(self, folder: str | Path, half: bool = True) -> None:
        from ..atomic import save_safetensors, write_json

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        sd = {k: (v.half() if half and v.is_floating_point() else v).contiguous() for k, v in self.state_dict().items()}
        save_safetensors(sd, folder / "model.safetensors")
        write_json(folder / "config.json", {"model_type": "retouch-scene-reader", **asdict(self.config)})

    @classmethod
    def from_pretrained(cls, folder: str | Path = DEFAULT_READER) -> SceneReader:
        folder = Path(folder)
        cfg_path = folder / "config.json"
        if not cfg_path.is_file():
            raise FileNotFoundError(
                f"no scene reader at {folder} (config.json missing); train one with `retouch train recipes/scene-reader.json`"
            )
        try:
            cfg = json.loads(cfg_path.read_bytes())
            cfg.pop("model_type", None)
            model = cls(SceneReaderConfig(**cfg))
        except (ValueError, TypeError, AttributeError) as e:  # bad JSON, not an object, unknown keys
            raise ValueError(f"{cfg_path} is not a scene reader config ({type(e).__name__}: {e})") from e
        weights = folder / "model.safetensors"  # safetensors only: a pickle is never loaded
        if not weights.is_file():
            raise FileNotFoundError(f"no scene reader weights at {weights} (only safetensors are loaded)")
        try:
            sd = load_file(str(weights))
            model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in sd.items()})
        except Exception as e:  # SafetensorError (a torn or foreign file), a state dict of another network
            raise ValueError(f"{weights} is not this scene reader's weights ({type(e).__name__}: {e})") from e
        return model.eval()


# -- labels -------------------------------------------------------------------
def scene_to_targets(scene: Scene) -> dict[str, list[int]]:
    """Integer class targets; -1 marks an attribute of an empty slot (ignored by the loss)."""
    t: dict[str, list[int]] = {k: [v.index(getattr(scene, k))] for k, v in SCENE_ATTRS.items()}
    t["present"] = [0] * N_SLOTS
    for k in OBJECT_ATTRS:
        t[k] = [-1] * N_SLOTS
    for o in scene.objects:
        t["present"][o.slot] = 1
        for k, v in OBJECT_ATTRS.items():
            t[k][o.slot] = v.index(getattr(o, k))
    return t


def logits_to_scenes(scene_logits: dict[str, torch.Tensor], slot_logits: dict[str, torch.Tensor]) -> list[Scene]:
    b = next(iter(scene_logits.values())).shape[0]
    sc = {k: v.argmax(-1).tolist() for k, v in scene_logits.items()}
    sl = {k: v.argmax(-1).tolist() for k, v in slot_logits.items()}
    scenes = []
    for i in range(b):
        objs = [
            WorldObject(**{k: OBJECT_ATTRS[k][sl[k][i][s]] for k in OBJECT_ATTRS}, slot=s)
            for s in range(N_SLOTS)
            if sl["present"][i][s] == 1
        ]
        scenes.append(Scene(tuple(objs), **{k: SCENE_ATTRS[k][sc[k][i]] for k in SCENE_ATTRS}))
    return scenes


def to_tensor(images: list[np.ndarray] | np.ndarray) -> torch.Tensor:
    """HxWx3 uint8 arrays (any square side) -> (B, 3, 128, 128) float in [0, 1]."""
    if isinstance(images, np.ndarray) and images.ndim == 3:
        images = [images]
    out = []
    for im in images:
        if im.ndim != 3 or im.shape[2] != 3:
            raise ValueError(f"the scene reader needs RGB images (H, W, 3), got shape {im.shape}")
        t = torch.from_numpy(np.array(im)).permute(2, 0, 1).float() / 255.0
        if t.shape[1:] != (READ_SIZE, READ_SIZE):
            t = F.interpolate(t[None], size=(READ_SIZE, READ_SIZE), mode="bilinear", antialias=True, align_corners=False)[0]
        out.append(t)
    return torch.stack(out)


@torch.no_grad()
def read_scenes(model: SceneReader, images: list[np.ndarray] | np.ndarray, batch_size: int = 64, refine: bool = True) -> list[Scene]:
    """Parse images into scenes (the texture seed of a parse is always 0).

    With ``refine`` the network's doubts are settled by analysis by synthesis: where an
    attribute has a runner-up the network gives at least ``DOUBT`` probability, each
    candidate scene is rendered and the one closest to the image in pixels is kept.
    """
    model.eval()
    x = to_tensor(images)
    scenes: list[Scene] = []
    for i in range(0, len(x), batch_size):
        xb = x[i : i + batch_size]
        scene_logits, slot_logits = model(xb)
        parsed = logits_to_scenes(scene_logits, slot_logits)
        if refine:
            op = {k: v.softmax(-1) for k, v in slot_logits.items()}
            for j, sc in enumerate(parsed):
                doubts = _doubts(sc, {k: v[j] for k, v in op.items()})
                if doubts:
                    target = (xb[j].permute(1, 2, 0).numpy() * 255.0).astype(np.float32)
                    parsed[j] = _settle(sc, doubts, target)
        scenes += parsed
    return scenes


DOUBT = 0.01  # a runner-up this likely gets rendered and compared


def _doubts(scene: Scene, op: dict[str, torch.Tensor]) -> list[tuple[str, int, list]]:
    """(attribute, slot, candidate values) for every object attribute the network is unsure of.

    Background and style are left to the network: their renders depend on the texture
    seed, which a parse cannot know, so pixels would judge them unfairly.
    """
    out: list[tuple[str, int, list]] = []
    for slot in range(N_SLOTS):
        if scene.object_at(slot) is None:
            continue
        for k, vocab in OBJECT_ATTRS.items():
            cands = [vocab[c] for c in (op[k][slot] >= DOUBT).nonzero().flatten().tolist()]
            if len(cands) > 1:
                out.append((k, slot, cands))
    return out


def _settle(scene: Scene, doubts: list[tuple[str, int, list]], target: np.ndarray) -> Scene:
    """Greedy coordinate search: for each doubt in turn keep the value whose render is closest
    to the image within that slot's cell."""
    from dataclasses import replace

    from .render import render

    def with_value(sc: Scene, key: str, slot: int, value) -> Scene:
        return sc.with_object(replace(sc.object_at(slot), **{key: value}))

    cell = READ_SIZE // GRID

    def err(sc: Scene, slot: int) -> float:
        if not sc.objects:
            return float("inf")
        r, c = divmod(slot, GRID)
        win = (slice(r * cell, (r + 1) * cell), slice(c * cell, (c + 1) * cell))
        return float(((render(sc, READ_SIZE)[win].astype(np.float32) - target[win]) ** 2).mean())

    # joint search over each slot's doubts (one at a time can be misled: a wrong shape can make
    # a wrong colour look closer); coordinate passes when the product is too large
    best = scene
    for slot in sorted({d[1] for d in doubts}):
        mine = [d for d in doubts if d[1] == slot]
        if math.prod(len(d[2]) for d in mine) <= 64:
            combos = itertools.product(*(d[2] for d in mine))
            options = []
            for values in combos:
                sc = best
                for (key, _, _), v in zip(mine, values, strict=True):
                    sc = with_value(sc, key, slot, v)
                options.append(sc)
            best = min(options, key=lambda sc: err(sc, slot))  # noqa: B023 (slot is read at once)
            continue
        for _ in range(2):
            for key, _, cands in mine:
                options = [with_value(best, key, slot, v) for v in cands]
                best = min(options, key=lambda sc: err(sc, slot))  # noqa: B023
    return best
