"""The Shapes model's layout map: a scene's places and attributes painted as input channels.

Binding a colour, a shape or an emblem to the right place through cross-attention over one long
caption is what the world's small text-to-image models failed to learn on two CPU cores (docs/backbone.md,
"Where the object failure lies"). The layout map takes binding out of the UNet's job: a caption reader
(``models/caption_reader.py``) turns the caption into per-place attribute probabilities, and this module
paints them over each place's latent cells as extra input channels beside the noisy latent, as
SD-inpainting and InstructPix2Pix add theirs. The UNet is left a local problem: draw, at a known place,
an object whose attributes it reads at that very cell.

Channel layout (``LAYOUT_CHANNELS``, written to the model folder as ``layout/config.json``):

- per place, painted over that place's cells: ``occupied`` (1), then one block per object attribute in
  ``OBJECT_ATTRS`` order (shape 6, color 6, size 3, pattern 4, pose 4, emblem 5), each a probability vector;
- per scene, painted everywhere: background (6), style (6);
- two place-relative coordinates (x, y in [-1, 1] across each place, CoordConv-style, Liu et al. 2018): a
  convolution cannot otherwise tell where in its place a cell lies, and an object is drawn around its
  place's centre. They are part of the conditional map, so classifier-free guidance's null map (all zeros)
  drops them with the rest.

A real SD checkpoint has no layout map; this is an optional part of the Shapes model only.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..world.scene import GRID, N_SLOTS, OBJECT_ATTRS, SCENE_ATTRS, Scene

logger = logging.getLogger(__name__)

# per-place feature vector: occupied, then each attribute's one-hot block
OBJECT_FIELDS: tuple[tuple[str, tuple[str, ...]], ...] = (("occupied", ("yes",)),) + tuple(OBJECT_ATTRS.items())
SCENE_FIELDS: tuple[tuple[str, tuple[str, ...]], ...] = tuple(SCENE_ATTRS.items())
OBJECT_DIM = sum(len(v) for _, v in OBJECT_FIELDS)  # 29
SCENE_DIM = sum(len(v) for _, v in SCENE_FIELDS)  # 12
COORD_DIM = 2
LAYOUT_CHANNELS = OBJECT_DIM + SCENE_DIM + COORD_DIM  # 43


def field_slices(fields: tuple[tuple[str, tuple[str, ...]], ...]) -> dict[str, slice]:
    """Each field's slice of a feature vector, in order."""
    out, k = {}, 0
    for name, vocab in fields:
        out[name] = slice(k, k + len(vocab))
        k += len(vocab)
    return out


OBJECT_SLICES = field_slices(OBJECT_FIELDS)
SCENE_SLICES = field_slices(SCENE_FIELDS)


@dataclass
class LayoutReading:
    """What a caption says about each place and the whole scene, as probabilities.

    ``objects`` (B, N_SLOTS, OBJECT_DIM): column 0 the probability that the place holds an object, then each
    attribute's distribution times that probability (so a block sums to the occupancy, and an empty place is
    all zeros, as ``scene_features`` writes it). ``scene`` (B, SCENE_DIM): background and style distributions."""

    objects: Tensor
    scene: Tensor

    def __len__(self) -> int:
        return self.objects.shape[0]

    def snapped(self, sure: float = 0.5) -> LayoutReading:
        """The reading with every decided block made one-hot, as the exact readings the generator was trained on.

        A place whose occupancy is >= 1 - ``sure`` / 2 (0.75 by default) holds an object (<= ``sure`` / 2: empty);
        a block (an object's attribute relative to its occupancy, or the background or style) whose top
        probability is >= ``sure`` becomes that value. Undecided places and blocks (an attribute the caption left
        out) stay as read, so the generator still draws from their spread. Measured in docs/backbone.md ("The
        reading snapped"): the draft drawn from a soft reading softens 2-3 px patterns."""
        obj, glob = self.objects.float(), self.scene.float().clone()  # (B, N_SLOTS, OBJECT_DIM), (B, SCENE_DIM)
        occ = obj[..., 0]  # (B, N_SLOTS)
        full, empty = occ >= 1 - sure / 2, occ <= sure / 2
        rel = obj / occ.clamp(min=1e-6)[..., None]  # each attribute block relative to the occupancy
        out = obj.clone()  # the snapped objects; ``obj`` is read only
        for name, _ in OBJECT_FIELDS[1:]:
            sl = OBJECT_SLICES[name]
            blk = rel[..., sl]  # (B, N_SLOTS, n)
            top, k = blk.max(-1)
            onehot = torch.nn.functional.one_hot(k, blk.shape[-1]).to(blk)
            out[..., sl] = torch.where((full & (top >= sure))[..., None], onehot, out[..., sl])
        out[..., 0] = torch.where(full, torch.ones_like(occ), occ)
        out = torch.where(empty[..., None], torch.zeros_like(out), out)
        for name, _ in SCENE_FIELDS:
            sl = SCENE_SLICES[name]
            top, k = glob[..., sl].max(-1)
            onehot = torch.nn.functional.one_hot(k, sl.stop - sl.start).to(glob)
            glob[..., sl] = torch.where((top >= sure)[..., None], onehot, glob[..., sl])
        return LayoutReading(out.to(self.objects.dtype), glob.to(self.scene.dtype))


def scene_features(scene: Scene) -> tuple[np.ndarray, np.ndarray]:
    """A scene as exact one-hot features: (N_SLOTS, OBJECT_DIM) and (SCENE_DIM,) float32."""
    objects = np.zeros((N_SLOTS, OBJECT_DIM), np.float32)
    for o in scene.objects:
        objects[o.slot, 0] = 1.0
        for name, vocab in OBJECT_FIELDS[1:]:
            objects[o.slot, OBJECT_SLICES[name].start + vocab.index(getattr(o, name))] = 1.0
    glob = np.zeros(SCENE_DIM, np.float32)
    for name, vocab in SCENE_FIELDS:
        glob[SCENE_SLICES[name].start + vocab.index(getattr(scene, name))] = 1.0
    return objects, glob


def reading_of_scenes(scenes: list[Scene]) -> LayoutReading:
    """The exact reading of known scenes (training targets; the oracle a caption reader is measured against)."""
    feats = [scene_features(s) for s in scenes]
    return LayoutReading(torch.from_numpy(np.stack([f[0] for f in feats])), torch.from_numpy(np.stack([f[1] for f in feats])))


def scene_of_reading(reading: LayoutReading, i: int = 0, seed: int = 0, threshold: float = 0.5) -> Scene:
    """The most likely scene of entry ``i``: places over ``threshold`` hold the argmax of each attribute."""
    from ..world.scene import WorldObject

    obj = reading.objects[i].detach().float().cpu().numpy()
    glob = reading.scene[i].detach().float().cpu().numpy()
    objects = []
    for slot in range(N_SLOTS):
        if obj[slot, 0] < threshold:
            continue
        attrs = {name: vocab[int(np.argmax(obj[slot, OBJECT_SLICES[name]]))] for name, vocab in OBJECT_FIELDS[1:]}
        objects.append(WorldObject(**attrs, slot=slot))
    g = {name: vocab[int(np.argmax(glob[SCENE_SLICES[name]]))] for name, vocab in SCENE_FIELDS}
    return Scene(objects=tuple(objects), background=g["background"], style=g["style"], seed=seed)


def place_index(h: int, w: int) -> tuple[Tensor, Tensor]:
    """Which place each latent cell belongs to (h, w) long, and its place-relative coordinates (2, h, w) in [-1, 1]."""
    if h % GRID or w % GRID:
        raise ValueError(f"a {h}x{w} latent does not split into the world's {GRID}x{GRID} places")
    ph, pw = h // GRID, w // GRID
    rows = torch.arange(h) // ph  # (h,)
    cols = torch.arange(w) // pw  # (w,)
    slot = rows[:, None] * GRID + cols[None, :]  # (h, w), row-major as WorldObject.slot
    # cell centres relative to their place's centre, the place's half side = 1
    y = ((torch.arange(h) % ph) + 0.5 - ph / 2) / (ph / 2)  # (h,)
    x = ((torch.arange(w) % pw) + 0.5 - pw / 2) / (pw / 2)  # (w,)
    coords = torch.stack([x[None, :].expand(h, w), y[:, None].expand(h, w)])  # (2, h, w)
    return slot, coords


def paint_layout(reading: LayoutReading, h: int, w: int) -> Tensor:
    """A reading painted as the layout map (B, LAYOUT_CHANNELS, h, w) at latent size h x w."""
    objects, glob = reading.objects, reading.scene  # (B, 4, 29), (B, 12)
    b = objects.shape[0]
    slot, coords = place_index(h, w)
    slot, coords = slot.to(objects.device), coords.to(objects)
    per_cell = objects[:, slot.flatten()]  # (B, h*w, 29): each cell takes its place's features
    per_cell = per_cell.transpose(1, 2).reshape(b, OBJECT_DIM, h, w)  # (B, 29, h, w)
    everywhere = glob[:, :, None, None].expand(b, SCENE_DIM, h, w)  # (B, 12, h, w)
    return torch.cat([per_cell, everywhere, coords.expand(b, -1, -1, -1)], dim=1)  # (B, 43, h, w)


def scene_layout(scenes: list[Scene], h: int, w: int) -> Tensor:
    """The exact layout maps (B, LAYOUT_CHANNELS, h, w) of known scenes: what training and the oracle curves paint."""
    return paint_layout(reading_of_scenes(scenes), h, w)


def layout_config(draft_channels: int = 0) -> dict:
    """The channel layout written to a model folder's ``layout/config.json``; ``draft_channels`` (the autoencoder's
    latent channels) when the folder has a draft network (``models/draft.py``), whose encoded draft follows the map."""
    return ({"draft_channels": draft_channels} if draft_channels else {}) | {
        "channels": LAYOUT_CHANNELS,
        "grid": GRID,
        "object_fields": [[name, list(vocab)] for name, vocab in OBJECT_FIELDS],
        "scene_fields": [[name, list(vocab)] for name, vocab in SCENE_FIELDS],
        "coords": ["x", "y"],
        "order": "per-place object fields painted over the place's cells, then scene fields everywhere, then coords",
    }


def check_layout_config(folder: Path) -> dict:
    """A model folder's layout config, refused when its channel layout is not this code's."""
    path = Path(folder) / "config.json"
    cfg = json.loads(path.read_text())
    want = layout_config()
    for key in ("channels", "grid", "object_fields", "scene_fields", "coords"):
        if cfg.get(key) != want[key]:
            raise ValueError(f"{path}: layout {key} {cfg.get(key)!r} is not the one this retouch paints ({want[key]!r})")
    return cfg
