"""turbo and the baselines on tiny random SD-Turbo- and SDXL-Turbo-shaped pipelines (the real-checkpoint path)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from retouch.methods import EditRequest, get_method
from tests.models.conftest import tiny_sd_dir, tiny_sdxl_dir  # noqa: F401  (fixtures)

SRC, TGT = "a photo of a red car in the snow", "a photo of a blue car in the snow"


def _with_inversion(folder: Path) -> Path:
    from retouch.models.backbone import load_backbone
    from retouch.models.inversion import InversionConfig, InversionNet, save_inversion

    out = Path(str(folder) + "-inversion")
    if not out.is_dir():
        bb = load_backbone(folder)
        torch.manual_seed(2)
        net = InversionNet(bb.denoiser.unet, InversionConfig(rank=2, alpha=2.0))
        save_inversion(net, out)
    return out


@pytest.mark.parametrize("kind", ["sd", "sdxl"])
def test_turbo_on_sd_family_pipelines(kind, request):
    folder = request.getfixturevalue(f"tiny_{kind}_dir")
    _with_inversion(folder)
    # the attention mask reads the cross-attention of SD's and SDXL's own UNets here
    m = get_method("turbo", model=str(folder), captioner=None, mask="attention")
    img = np.random.default_rng(0).integers(0, 256, (40, 30, 3), dtype=np.uint8)
    mask = np.zeros((40, 30), bool)
    mask[5:20, 5:20] = True
    res = m.edit(EditRequest(image=img, source_prompt=SRC, target_prompt=TGT, mask=mask))
    assert res.image.shape == img.shape
    assert np.array_equal(res.image[~mask], img[~mask])
    assert (res.nfe_inversion, res.nfe_edit) == (2 * m.steps, m.steps)
    auto = m.edit(EditRequest(image=img, source_prompt=SRC, target_prompt=TGT))
    assert auto.info["inversion_reused"] and auto.info["mask"] == "attention"


@pytest.mark.parametrize("kind", ["sd", "sdxl"])
@pytest.mark.parametrize("name", ["ddim4", "ddim4-p2p", "ddpm"])
def test_baselines_on_sd_family_pipelines(kind, name, request):
    folder = request.getfixturevalue(f"tiny_{kind}_dir")
    m = get_method(name, model=str(folder), captioner=None, steps=2, guidance=2.0)
    img = np.random.default_rng(1).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    res = m.edit(EditRequest(image=img, source_prompt=SRC, target_prompt=TGT))
    assert res.image.shape == img.shape and res.nfe_edit == 2 * 2 * (2 if name.endswith("p2p") else 1)
