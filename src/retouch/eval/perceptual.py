"""DINO and LPIPS scores, computed only when their weights are on disk.

- DINO (MagicBrush, Emu Edit): cosine similarity of the ViT [CLS] features of two images,
  from any transformers ViT/DINO folder or cached hub id (``facebook/dino-vits16`` is what
  MagicBrush uses). ``dino_gt`` compares the output with the ground-truth target
  (MagicBrush), ``dino_src`` with the source (Emu Edit).
- LPIPS (PIE-Bench, background part): torchmetrics' LPIPS (SqueezeNet, as PIE-Bench) on
  both images multiplied by (1 - mask), inputs scaled to [-1, 1].
Nothing is downloaded: loading is ``local_files_only`` and a missing model is an error the
runner turns into ``"unavailable: ..."`` in its report.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .pie import to_unit

logger = logging.getLogger(__name__)


class DinoEmbedder:
    def __init__(self, model, processor) -> None:
        self.model, self.processor = model.eval(), processor

    @classmethod
    def load(cls, path_or_hub_id: str | Path) -> DinoEmbedder:
        from transformers import AutoImageProcessor, AutoModel

        try:
            model = AutoModel.from_pretrained(str(path_or_hub_id), local_files_only=True)
            processor = AutoImageProcessor.from_pretrained(str(path_or_hub_id), local_files_only=True)
        except Exception as e:  # transformers raises several kinds for a missing model
            raise RuntimeError(f"cannot load a DINO/ViT model from {path_or_hub_id!r} offline: {e}") from e
        return cls(model, processor)

    @torch.no_grad()
    def embed(self, images: list[np.ndarray]) -> torch.Tensor:
        """(N, D) L2-normalised [CLS] features."""
        px = self.processor(images=list(images), return_tensors="pt")["pixel_values"]
        cls_tok = self.model(pixel_values=px).last_hidden_state[:, 0]  # (N, D)
        return F.normalize(cls_tok.float(), dim=-1)

    def similarity(self, a: np.ndarray, b: np.ndarray) -> float:
        e = self.embed([a, b])
        return float((e[0] * e[1]).sum())


class BackgroundLPIPS:
    """PIE-Bench's LPIPS of the unedited part; construction fails without local weights."""

    def __init__(self, net_type: str = "squeeze") -> None:
        from torchmetrics.image.lpip import LearnedPerceptualImagePatchSimilarity

        self.metric = LearnedPerceptualImagePatchSimilarity(net_type=net_type)

    @torch.no_grad()
    def __call__(self, src: np.ndarray, out: np.ndarray, mask: np.ndarray) -> float:
        keep = torch.from_numpy(1.0 - np.asarray(mask, dtype=np.float32))[None, None]  # (1, 1, H, W)
        a, b = to_unit(src) * keep, to_unit(out) * keep
        self.metric.reset()
        return float(self.metric(a * 2 - 1, b * 2 - 1))
