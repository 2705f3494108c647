"""Reuse the tiny Shapes-layout folder of the model tests, plus an inversion network beside it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.models.conftest import tiny_shapes_dir  # noqa: F401  (a fixture, re-exported)


@pytest.fixture(scope="session")
def tiny_inversion_dir(tiny_shapes_dir: Path) -> Path:  # noqa: F811
    """``<model>-inversion``: a random TurboEdit inversion network for the tiny generator (LoRA B non-zero)."""
    from retouch.models.backbone import load_backbone
    from retouch.models.inversion import InversionConfig, InversionNet, save_inversion

    bb = load_backbone(tiny_shapes_dir)
    torch.manual_seed(1)
    net = InversionNet(bb.denoiser.unet, InversionConfig(rank=2, alpha=2.0))
    with torch.no_grad():
        for name, p in net.unet.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.05)
    folder = Path(str(tiny_shapes_dir) + "-inversion")
    save_inversion(net, folder)
    return folder
