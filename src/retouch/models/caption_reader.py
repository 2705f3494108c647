"""The caption reader: a caption's frozen MiniLM token states -> what it puts in each place (``LayoutReading``).

The layout map (``models/layout.py``) needs, for each place of the Shapes world's 2x2 grid, whether the caption
puts an object there and each of its attributes, and for the whole scene its background and style. This is a
small trained head over the *frozen* all-MiniLM-L6-v2 states that ``Backbone.encode_text`` already computes for
the Shapes models (last hidden state, zero at padding, up to 128 tokens): the states are normalised, projected to
``dim`` and given a learned position embedding (optionally ``encoder_layers`` of self-attention over them; the
shipped reader has none, the MiniLM states are contextual already), and five learned queries (one per place, one
for the scene) read them through a small DETR-style decoder (Carion et al. 2020: the queries attend to each
other, then to the tokens, ``decoder_layers`` times). Per-field heads give probabilities: a sigmoid for
"occupied", a softmax per attribute block.

Conventions (the training targets, ``train/caption_reader.py``):

- **Places.** Objects a caption names without a place go to the free places in reading order (top left, top
  right, bottom left, bottom right), in the order they are named: "a red star and a blue circle on grass" puts
  the star top left and the circle top right.
- **Omitted attributes.** An object attribute the caption leaves out (a short caption names no size, pattern,
  pose or emblem) is read as the uniform distribution over its block: that is the world's posterior (the scene
  could hold any value), and the generator is free to draw any. A caption without a style word reads as
  ``flat`` (the world's ``short_caption`` names no style for flat scenes); one without a background reads as
  uniform. (``omitted_target: "neutral"`` in the recipe trains toward medium / solid / upright / plain instead.)
- **Empty places.** Attribute blocks are scaled by the occupied probability, so an empty place reads as all zeros,
  as ``layout.scene_features`` writes it for exact scenes; an occupied place's blocks each sum to ~1.
- **Unreadable captions.** Text that is not about the world reads as no object (trained on such text);
  ``read_scene`` refuses it with a ValueError naming the caption, and never returns a scene with no object.

- **Words it never learnt.** Before the head reads a caption, ``rewrite`` puts each phrase that the instruction
  reader's lexicon reads as a value, and that holds a word outside the head's training vocabulary, in the world's
  own word ("navy" -> "blue", "lower right" -> "bottom right", "rotated clockwise" -> "tilted right";
  ``caption_words.py``). ``read`` and ``Backbone.encode_text`` both do; a caption of known words is read as written.

Saved as a folder (``config.json`` + ``model.safetensors``, fp16, and the training vocabulary ``vocabulary.txt``)
by ``save_pretrained`` and the training run; the trained one ships in ``models/caption-reader/``.
"""

from __future__ import annotations

import functools
import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from ..world.scene import N_SLOTS, OBJECT_ATTRS, Scene, WorldObject
from .caption_words import CaptionWords
from .layout import OBJECT_DIM, OBJECT_FIELDS, OBJECT_SLICES, SCENE_DIM, SCENE_FIELDS, SCENE_SLICES, LayoutReading

logger = logging.getLogger(__name__)

DEFAULT_CAPTION_READER = Path(__file__).resolve().parents[3] / "models" / "caption-reader"
MODEL_TYPE = "retouch-caption-reader"
# what ``read_scene`` writes for an object attribute the caption leaves out
NEUTRAL_OBJECT = {"size": "medium", "pattern": "solid", "pose": "upright"}


@dataclass
class CaptionReaderConfig:
    text_dim: int = 384  # the token states' width (all-MiniLM-L6-v2)
    dim: int = 128
    heads: int = 4
    encoder_layers: int = 0  # self-attention layers over the tokens before the queries read them
    decoder_layers: int = 3  # queries: self-attention, cross-attention to the tokens, MLP
    mlp_ratio: int = 2
    max_tokens: int = 128
    dropout: float = 0.1


class CaptionReader(nn.Module):
    """``forward(tokens (B, L, text_dim), mask (B, L)) -> LayoutReading`` of probabilities (see the module doc)."""

    def __init__(self, config: CaptionReaderConfig | None = None) -> None:
        super().__init__()
        self.config = cfg = config or CaptionReaderConfig()
        d = cfg.dim
        self.norm_in = nn.LayerNorm(cfg.text_dim)
        self.proj = nn.Linear(cfg.text_dim, d)
        self.pos = nn.Parameter(torch.randn(cfg.max_tokens, d) * 0.02)
        enc = nn.TransformerEncoderLayer(d, cfg.heads, cfg.mlp_ratio * d, cfg.dropout, batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(enc, cfg.encoder_layers, enable_nested_tensor=False) if cfg.encoder_layers else None
        dec = nn.TransformerDecoderLayer(d, cfg.heads, cfg.mlp_ratio * d, cfg.dropout, batch_first=True, norm_first=True)
        self.decoder = nn.TransformerDecoder(dec, cfg.decoder_layers)
        self.queries = nn.Parameter(torch.randn(N_SLOTS + 1, d) * 0.02)  # the places in slot order, then the scene
        self.norm_out = nn.LayerNorm(d)
        self.object_head = nn.Linear(d, OBJECT_DIM)
        self.scene_head = nn.Linear(d, SCENE_DIM)
        # words the head never learnt, put in its own words before it reads (``caption_words.py``); set by
        # ``from_pretrained`` from the folder's vocabulary.txt, None for a reader without one (no rewriting)
        self.words: CaptionWords | None = None

    def rewrite(self, captions: list[str]) -> list[str]:
        """The captions as the head should read them: each lexicon word outside its training vocabulary in the
        world's own word (``CaptionWords``); unchanged without a vocabulary."""
        return [self.words(c) for c in captions] if self.words is not None else list(captions)

    def logits(self, tokens: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """Raw scores: objects (B, N_SLOTS, OBJECT_DIM) and scene (B, SCENE_DIM)."""
        if tokens.ndim != 3 or tokens.shape[-1] != self.config.text_dim:
            raise ValueError(f"token states must be (B, L, {self.config.text_dim}), got {tuple(tokens.shape)}")
        if mask.shape != tokens.shape[:2]:
            raise ValueError(f"mask {tuple(mask.shape)} does not match token states {tuple(tokens.shape)}")
        length = min(tokens.shape[1], self.config.max_tokens)
        tokens, mask = tokens[:, :length].to(self.proj.weight.dtype), mask[:, :length].bool()
        pad = ~mask
        pad = pad & ~pad.all(-1, keepdim=True)  # a fully padded row would make softmax NaN
        h = self.proj(self.norm_in(tokens)) + self.pos[:length]  # (B, L, d)
        if self.encoder is not None:
            h = self.encoder(h, src_key_padding_mask=pad)
        q = self.queries.expand(tokens.shape[0], -1, -1)  # (B, N_SLOTS + 1, d)
        q = self.norm_out(self.decoder(q, h, memory_key_padding_mask=pad))
        return self.object_head(q[:, :N_SLOTS]), self.scene_head(q[:, N_SLOTS])

    def forward(self, tokens: Tensor, mask: Tensor) -> LayoutReading:
        obj_logits, scene_logits = self.logits(tokens, mask)
        return probabilities(obj_logits, scene_logits)

    # -- text in, reading out ------------------------------------------------------------------
    @torch.no_grad()
    def read(self, captions: list[str], encoder=None, tokenizer=None) -> LayoutReading:
        """Captions -> reading, encoding them (after ``rewrite``) with the frozen MiniLM (loaded once and kept when
        not given)."""
        if isinstance(captions, str):
            raise TypeError("read takes a list of captions, not a string")
        if encoder is None or tokenizer is None:
            encoder, tokenizer = self._text_model()
        from ..train.t2i import encode_captions

        texts = self.rewrite(list(captions))
        states = torch.from_numpy(encode_captions(encoder, tokenizer, texts, self.config.max_tokens, bar=False)).float()
        mask = states.abs().sum(-1) > 0
        return self.eval()(states, mask)

    def _text_model(self):
        return text_model(self.config.max_tokens)

    def read_scene(self, caption: str, seed: int = 0) -> Scene:
        """The scene a caption describes; ValueError naming the caption when it cannot be read (see ``decode``)."""
        return decode(self.read([caption]), 0, caption, seed=seed)

    # -- persistence ---------------------------------------------------------------------------
    def save_pretrained(self, folder: str | Path, half: bool = True) -> None:
        from ..atomic import save_safetensors, write_json

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        sd = {k: (v.half() if half and v.is_floating_point() else v).contiguous() for k, v in self.state_dict().items()}
        save_safetensors(sd, folder / "model.safetensors")
        write_json(folder / "config.json", {"model_type": MODEL_TYPE, **asdict(self.config)})
        if self.words is not None:  # the training vocabulary travels with the weights
            self.words.save(folder)

    @classmethod
    def from_pretrained(cls, folder: str | Path = DEFAULT_CAPTION_READER) -> CaptionReader:
        from safetensors.torch import load_file

        folder = Path(folder)
        cfg_path = folder / "config.json"
        if not cfg_path.is_file():
            raise FileNotFoundError(
                f"no caption reader at {folder} (config.json missing); train one with `retouch train recipes/caption-reader.json`"
            )
        cfg = json.loads(cfg_path.read_text())
        if cfg.pop("model_type", None) != MODEL_TYPE:
            raise ValueError(f"{cfg_path} is not a caption reader's config (model_type should be {MODEL_TYPE!r})")
        try:
            model = cls(CaptionReaderConfig(**cfg))
        except TypeError as e:
            raise ValueError(f"{cfg_path}: {e}") from e
        sd = load_file(str(folder / "model.safetensors"))
        model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in sd.items()})
        model.words = CaptionWords.from_folder(folder)
        return model.eval()


@functools.lru_cache(maxsize=2)
def text_model(max_length: int = 128):
    """The frozen all-MiniLM-L6-v2 and its tokenizer, loaded once per process (``train.t2i.text_encoder_and_tokenizer``)."""
    from ..train.t2i import text_encoder_and_tokenizer

    return text_encoder_and_tokenizer(max_length)


def probabilities(obj_logits: Tensor, scene_logits: Tensor) -> LayoutReading:
    """Logits -> a reading: occupied by sigmoid, each block by softmax, object blocks scaled by occupied."""
    occ = torch.sigmoid(obj_logits[..., :1])  # (B, S, 1)
    parts = [occ]
    for name, _ in OBJECT_FIELDS[1:]:
        parts.append(torch.softmax(obj_logits[..., OBJECT_SLICES[name]].float(), -1).to(occ.dtype) * occ)
    scene = torch.cat([torch.softmax(scene_logits[..., SCENE_SLICES[name]].float(), -1) for name, _ in SCENE_FIELDS], -1)
    return LayoutReading(torch.cat(parts, -1), scene.to(scene_logits.dtype))


@dataclass(frozen=True)
class ReadOut:
    """A decoded reading: the scene, and per object slot the attributes the caption left out (near-uniform blocks)."""

    scene: Scene
    unsaid: dict[int, tuple[str, ...]]


def decode_full(reading: LayoutReading, i: int, caption: str, seed: int = 0, unsaid_below: float = 0.5) -> ReadOut:
    """Entry ``i`` of a reading as a scene. Places whose occupied probability is >= 0.5 hold an object; an attribute
    block whose top probability (relative to the place's occupancy) is under ``unsaid_below`` counts as left out
    and takes ``NEUTRAL_OBJECT``'s value (size, pattern, pose) or, for shape / colour / emblem, the most likely one.

    ValueError, naming ``caption``, when the reader finds no object (empty text, text not about the world) or a
    place it cannot decide (occupied probability between 0.2 and 0.8)."""
    obj = reading.objects[i].detach().float().cpu().numpy()
    glob = reading.scene[i].detach().float().cpu().numpy()
    occ = obj[:, 0]
    shown = caption if len(caption) <= 120 else caption[:117] + "..."
    if not caption.strip():
        raise ValueError("cannot read an empty caption: it names no object of the Shapes world")
    unsure = [s for s in range(N_SLOTS) if 0.2 < occ[s] < 0.8]
    if unsure:
        raise ValueError(
            f"cannot tell whether the caption {shown!r} puts an object in place(s) {unsure} (occupied {occ.round(2).tolist()})"
        )
    if not (occ >= 0.5).any():
        raise ValueError(f"the caption {shown!r} names no object of the Shapes world (shapes: {', '.join(OBJECT_ATTRS['shape'])})")
    objects, unsaid = [], {}
    for slot in range(N_SLOTS):
        if occ[slot] < 0.5:
            continue
        attrs, left = {}, []
        for name, vocab in OBJECT_FIELDS[1:]:
            p = obj[slot, OBJECT_SLICES[name]] / max(occ[slot], 1e-6)
            k = int(np.argmax(p))
            if p[k] < unsaid_below:
                left.append(name)
                attrs[name] = NEUTRAL_OBJECT.get(name, vocab[k])
            else:
                attrs[name] = vocab[k]
        objects.append(WorldObject(**attrs, slot=slot))
        unsaid[slot] = tuple(left)
    g = {name: vocab[int(np.argmax(glob[SCENE_SLICES[name]]))] for name, vocab in SCENE_FIELDS}
    return ReadOut(Scene(objects=tuple(objects), background=g["background"], style=g["style"], seed=seed), unsaid)


def decode(reading: LayoutReading, i: int, caption: str, seed: int = 0) -> Scene:
    """``decode_full(...).scene``."""
    return decode_full(reading, i, caption, seed=seed).scene


def read_scene(caption: str, reader: CaptionReader | None = None, seed: int = 0) -> Scene:
    """The scene ``caption`` describes, read by ``reader`` (default: the shipped ``models/caption-reader``)."""
    return (reader or _default_reader()).read_scene(caption, seed=seed)


_DEFAULT: list[CaptionReader] = []


def _default_reader() -> CaptionReader:
    if not _DEFAULT:
        _DEFAULT.append(CaptionReader.from_pretrained())
    return _DEFAULT[0]


__all__ = [
    "CaptionReader",
    "CaptionReaderConfig",
    "DEFAULT_CAPTION_READER",
    "NEUTRAL_OBJECT",
    "ReadOut",
    "decode",
    "decode_full",
    "probabilities",
    "read_scene",
]
