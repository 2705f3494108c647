"""CLIP-family edit metrics (PIE-Bench, Emu Edit / InstructPix2Pix) behind one interface.

Everything here works on L2-normalised embeddings from an :class:`ImageTextEmbedder`;
:class:`CLIPEmbedder` is the transformers implementation (any ``CLIPModel`` folder or
cached hub id, loaded strictly offline). Definitions, per case:

* ``clip_score`` -- torchmetrics ``CLIPScore`` (Hessel et al., 2021, "CLIPScore"):
  ``100 * max(cos(E_I, E_T), 0)``. PIE-Bench reports it for the whole edited image with the
  target prompt ("CLIP Similarity Whole"). torchmetrics averages ``100 * cos`` over a batch
  and clamps the mean; PIE-Bench calls it once per image, which is what we return.
* ``clip_score_edited`` -- PIE-Bench "CLIP Similarity Edited": the edited image multiplied
  by the edit mask (``np.uint8(img * mask)``, mask 1 = edit region) before scoring.
* ``emu_metrics`` -- Emu Edit (Sheynin et al., 2023) / InstructPix2Pix (Brooks et al.,
  2023): ``clip_dir = cos(E(out) - E(src), T(tgt) - T(src))`` on normalised embeddings,
  ``clip_img = cos(E(src), E(out))``, ``clip_out = cos(E(out), T(tgt))``.

LPIPS and DINO scores are not computed here; :func:`optional_metrics_status` reports
whether their weights could be loaded offline, so callers never fabricate them.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable
from urllib.parse import urlparse

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

logger = logging.getLogger(__name__)

ImageLike = np.ndarray | Image.Image


@runtime_checkable
class ImageTextEmbedder(Protocol):
    """Anything that maps images and texts into one space with unit-norm rows."""

    def embed_images(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        """HxWx3 uint8 images -> (N, D) float tensor, rows L2-normalised."""
        ...

    def embed_texts(self, texts: Sequence[str]) -> torch.Tensor:
        """Strings -> (N, D) float tensor, rows L2-normalised."""
        ...


def _as_rgb_array(img: ImageLike) -> np.ndarray:
    """Return ``img`` as an HxWx3 uint8 array or raise ValueError naming what it got."""
    if isinstance(img, Image.Image):
        if img.mode != "RGB":
            raise ValueError(f"expected an RGB image, got PIL image mode={img.mode!r} size={img.size}")
        return np.asarray(img)
    if not isinstance(img, np.ndarray):
        raise ValueError(f"expected an HxWx3 uint8 numpy array or RGB PIL image, got {type(img).__name__}")
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise ValueError(f"expected an HxWx3 uint8 array, got shape={img.shape} dtype={img.dtype}")
    return img


def _features(out: Any, *names: str) -> torch.Tensor:
    """Projected features from ``get_*_features`` across transformers versions.

    transformers 4.x returns the projected tensor; transformers 5.x returns a
    ``BaseModelOutputWithPooling`` whose ``pooler_output`` holds the *projected* features
    (see ``CLIPModel.get_image_features``); a tuple (``return_dict=False``) has it at [1].
    """
    if isinstance(out, torch.Tensor):
        return out
    for name in (*names, "pooler_output"):
        value = getattr(out, name, None)
        if isinstance(value, torch.Tensor):
            return value
    if isinstance(out, tuple) and len(out) > 1 and isinstance(out[1], torch.Tensor):
        return out[1]
    raise TypeError(f"cannot find projected features in {type(out).__name__}")


class CLIPEmbedder:
    """:class:`ImageTextEmbedder` over a transformers ``CLIPModel``.

    Images go through the model's own image processor (resize shortest edge + centre crop +
    normalise, as torchmetrics ``CLIPScore`` does); texts are tokenised with padding and
    truncated to the model's text length (the tokenizer's truncation keeps the end-of-text
    token the CLIP text tower pools from). Embeddings are returned on CPU as float32.
    """

    def __init__(self, model: Any, image_processor: Any, tokenizer: Any, device: str | torch.device = "cpu", batch_size: int = 32) -> None:
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.image_processor = image_processor
        self.tokenizer = tokenizer
        self.batch_size = int(batch_size)
        cfg = getattr(model.config, "text_config", None)
        limits = [getattr(cfg, "max_position_embeddings", None), getattr(tokenizer, "model_max_length", None)]
        limits = [int(x) for x in limits if isinstance(x, int) and 0 < x < 1_000_000]
        self.max_text_len = min(limits) if limits else 77
        self.dim = int(getattr(model.config, "projection_dim", 0)) or None

    @classmethod
    def load(cls, path_or_hub_id: str | os.PathLike[str], device: str | torch.device = "cpu", batch_size: int = 32) -> CLIPEmbedder:
        """Load a ``CLIPModel`` and its processor from a folder or an already-cached hub id.

        Never touches the network (``local_files_only=True``). Raises ``RuntimeError``
        naming ``path_or_hub_id`` when the model or its processor cannot be loaded.
        """
        from transformers import AutoTokenizer, CLIPImageProcessor, CLIPModel, CLIPProcessor

        where = str(path_or_hub_id)
        try:
            model = CLIPModel.from_pretrained(where, local_files_only=True, use_safetensors=True)  # a pickle is never loaded
        except Exception as e:  # OSError / ValueError / EnvironmentError depending on version
            raise RuntimeError(f"cannot load a CLIP model from {where!r} (offline, local_files_only=True): {type(e).__name__}: {e}") from e
        try:
            proc = CLIPProcessor.from_pretrained(where, local_files_only=True)
            image_processor, tokenizer = proc.image_processor, proc.tokenizer
        except Exception as e:
            logger.debug("CLIPProcessor.from_pretrained(%r) failed (%s); trying image processor + tokenizer", where, e)
            try:
                image_processor = CLIPImageProcessor.from_pretrained(where, local_files_only=True)
                tokenizer = AutoTokenizer.from_pretrained(where, local_files_only=True)
            except Exception as e2:
                raise RuntimeError(
                    f"loaded the CLIP model from {where!r} but not its image processor / tokenizer: {type(e2).__name__}: {e2}"
                ) from e2
        logger.info("loaded CLIP model from %s on %s", where, device)
        return cls(model, image_processor, tokenizer, device=device, batch_size=batch_size)

    def _empty(self) -> torch.Tensor:
        return torch.zeros((0, self.dim or 0), dtype=torch.float32)

    @torch.inference_mode()
    def embed_images(self, images: Sequence[ImageLike]) -> torch.Tensor:
        arrays = [_as_rgb_array(im) for im in images]
        if not arrays:
            return self._empty()
        chunks = []
        for i in range(0, len(arrays), self.batch_size):
            batch = self.image_processor(images=arrays[i : i + self.batch_size], return_tensors="pt")
            pixels = batch["pixel_values"].to(self.device, dtype=self.model.dtype)
            feats = _features(self.model.get_image_features(pixel_values=pixels), "image_embeds")
            chunks.append(F.normalize(feats.float(), dim=-1).cpu())
        return torch.cat(chunks)

    @torch.inference_mode()
    def embed_texts(self, texts: Sequence[str]) -> torch.Tensor:
        texts = list(texts)
        if not all(isinstance(t, str) for t in texts):
            raise ValueError("embed_texts expects a sequence of strings")
        if not texts:
            return self._empty()
        chunks = []
        for i in range(0, len(texts), self.batch_size):
            tok = self.tokenizer(
                texts[i : i + self.batch_size],
                padding=True,
                truncation=True,
                max_length=self.max_text_len,
                return_tensors="pt",
            )
            kwargs = {"input_ids": tok["input_ids"].to(self.device)}
            if "attention_mask" in tok:
                kwargs["attention_mask"] = tok["attention_mask"].to(self.device)
            feats = _features(self.model.get_text_features(**kwargs), "text_embeds")
            chunks.append(F.normalize(feats.float(), dim=-1).cpu())
        return torch.cat(chunks)


def _same_len(**seqs: Sequence[Any]) -> int:
    lengths = {k: len(v) for k, v in seqs.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"inputs must have the same length, got {lengths}")
    return next(iter(lengths.values()), 0)


def _cos(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    # Row-wise cosine; a zero row (e.g. E(out) - E(src) when out == src) gives 0, not NaN.
    return F.cosine_similarity(a.float(), b.float(), dim=-1)


def clip_score(emb: ImageTextEmbedder, images: Sequence[ImageLike], texts: Sequence[str]) -> list[float]:
    """Per-pair CLIPScore ``100 * max(cos(E(image), T(text)), 0)`` (torchmetrics / Hessel et al.)."""
    if _same_len(images=images, texts=texts) == 0:
        return []
    cos = _cos(emb.embed_images(list(images)), emb.embed_texts(list(texts)))
    return (100.0 * cos.clamp(min=0.0)).tolist()


def clip_score_edited(
    emb: ImageTextEmbedder,
    images: Sequence[ImageLike],
    masks: Sequence[np.ndarray],
    texts: Sequence[str],
) -> list[float]:
    """PIE-Bench "CLIP Similarity Edited": CLIPScore of the edited image times its edit mask.

    As in PIE-Bench's ``calculate_clip_similarity(tgt_image, tgt_prompt, tgt_mask)``: the
    image is multiplied by the HxW mask (1 = edit region, broadcast over channels) and cast
    back with ``np.uint8`` (truncation) before embedding, so everything outside the edit
    region is black. Raises ``ValueError`` if a mask is not the image's (H, W).
    """
    if _same_len(images=images, masks=masks, texts=texts) == 0:
        return []
    masked = []
    for i, (img, mask) in enumerate(zip(images, masks, strict=True)):
        arr = _as_rgb_array(img)
        m = np.asarray(mask, dtype=np.float32)
        if m.shape != arr.shape[:2]:
            raise ValueError(f"mask {i} has shape {m.shape}, expected the image's (H, W) = {arr.shape[:2]}")
        masked.append(np.uint8(arr.astype(np.float32) * m[:, :, None]))
    return clip_score(emb, masked, texts)


def emu_metrics(
    emb: ImageTextEmbedder,
    src_images: Sequence[ImageLike],
    out_images: Sequence[ImageLike],
    src_captions: Sequence[str],
    tgt_captions: Sequence[str],
) -> dict[str, list[float]]:
    """Emu Edit's CLIP metrics per case (raw cosines in [-1, 1], not x100).

    * ``clip_dir``: ``cos(E(out) - E(src), T(tgt) - T(src))`` -- InstructPix2Pix's
      directional similarity on normalised embeddings (0 when ``out == src``);
    * ``clip_img``: ``cos(E(src), E(out))`` -- how much of the input image is kept;
    * ``clip_out``: ``cos(E(out), T(tgt))`` -- output vs target caption.
    """
    n = _same_len(src_images=src_images, out_images=out_images, src_captions=src_captions, tgt_captions=tgt_captions)
    if n == 0:
        return {"clip_dir": [], "clip_img": [], "clip_out": []}
    e_src, e_out = emb.embed_images(list(src_images)), emb.embed_images(list(out_images))
    t_src, t_tgt = emb.embed_texts(list(src_captions)), emb.embed_texts(list(tgt_captions))
    return {
        "clip_dir": _cos(e_out - e_src, t_tgt - t_src).tolist(),
        "clip_img": _cos(e_src, e_out).tolist(),
        "clip_out": _cos(e_out, t_tgt).tolist(),
    }


# torchmetrics LPIPS net_type -> torchvision backbone weights enum (see torchmetrics.functional.image.lpips)
_LPIPS_BACKBONES = {"alex": "AlexNet_Weights", "vgg": "VGG16_Weights", "squeeze": "SqueezeNet1_1_Weights"}


def _lpips_status(net_type: str) -> str:
    try:
        import torchvision  # noqa: F401  (torchmetrics LPIPS builds its backbone from torchvision)
    except Exception as e:
        return f"unavailable: torchvision is not installed ({type(e).__name__}); torchmetrics LPIPS needs it"
    try:
        import torchvision.models as tvm

        weights = getattr(tvm, _LPIPS_BACKBONES[net_type]).DEFAULT
        ckpt = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(weights.url).path)
        if not ckpt.is_file():
            return f"unavailable: backbone weights for net_type={net_type!r} not downloaded (expected {ckpt})"
        torch.load(ckpt, map_location="cpu", weights_only=True, mmap=True)  # proves the file is a real checkpoint
        from torchmetrics.image.lpip import LearnedPerceptualImagePatchSimilarity  # noqa: F401
    except Exception as e:
        return f"unavailable: {type(e).__name__}: {e}"
    return "available"


def _dino_status(model: str) -> str:
    try:
        from huggingface_hub import try_to_load_from_cache
        from safetensors import safe_open
        from transformers import AutoConfig

        weight_names = ("model.safetensors", "pytorch_model.bin")
        if Path(model).is_dir():
            found = [Path(model) / w for w in weight_names if (Path(model) / w).is_file()]
        else:
            found = []
            for w in weight_names:
                hit = try_to_load_from_cache(model, w)  # cache lookup only, never downloads
                if isinstance(hit, str):
                    found.append(Path(hit))
        if not found:
            return f"unavailable: no local weights for {model!r} (folder or Hugging Face cache)"
        AutoConfig.from_pretrained(model, local_files_only=True)
        w = found[0]
        if w.suffix == ".safetensors":
            with safe_open(str(w), framework="pt") as f:  # reads the header only
                if not list(f.keys()):
                    return f"unavailable: {w} holds no tensors"
        else:
            torch.load(w, map_location="cpu", weights_only=True, mmap=True)
    except Exception as e:
        return f"unavailable: {type(e).__name__}: {e}"
    return "available"


def optional_metrics_status(dino_model: str = "facebook/dino-vits16", lpips_net: str = "squeeze") -> dict[str, str]:
    """Whether the optional LPIPS and DINO metrics could run *offline*, and why not.

    Returns ``{"lpips": ..., "dino": ...}`` with ``"available"`` or ``"unavailable: <reason>"``.
    LPIPS (torchmetrics, ``net_type=lpips_net``; PIE-Bench uses ``"squeeze"``) needs
    torchvision and the backbone checkpoint already in the torch hub cache. DINO needs a
    transformers model (local folder or cached hub id; default ``facebook/dino-vits16``, the
    ViT-S/16 MagicBrush uses) whose config and weights are on disk. Nothing is downloaded and
    no model is built; checkpoints are opened lazily (mmap / safetensors header) to make
    sure they are real.
    """
    if lpips_net not in _LPIPS_BACKBONES:
        raise ValueError(f"lpips_net must be one of {sorted(_LPIPS_BACKBONES)}, got {lpips_net!r}")
    return {"lpips": _lpips_status(lpips_net), "dino": _dino_status(dino_model)}
