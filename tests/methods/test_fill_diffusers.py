"""The diffusion backend: a tiny random SD-inpainting pipeline (9-channel UNet, diffusers' get_dummy_components
shapes), built and saved here, runs through StableDiffusionInpaintPipeline on any input size."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import retouch
from retouch.cli import main
from retouch.methods import get_method
from tests.models.conftest import _text_config, _vae, tiny_sd_unet, tiny_tokenizer


@pytest.fixture(scope="module")
def tiny_inpaint_dir(tmp_path_factory) -> Path:
    """A random StableDiffusionInpaintPipeline folder: 32 px working size, 16x16x4 latents, UNet in_channels 9."""
    from diffusers import DDIMScheduler, StableDiffusionInpaintPipeline
    from transformers import CLIPTextModel

    root = tmp_path_factory.mktemp("tiny-sd-inpaint")
    unet = tiny_sd_unet(in_channels=9)
    torch.manual_seed(0)
    vae = _vae()
    tokenizer = tiny_tokenizer(root / "_tok")
    torch.manual_seed(0)
    text_encoder = CLIPTextModel(_text_config(tokenizer))
    scheduler = DDIMScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False, set_alpha_to_one=False, steps_offset=1
    )
    pipe = StableDiffusionInpaintPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    folder = root / "model"
    pipe.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def big_photo() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (1500, 2000, 3), dtype=np.uint8)
    m = np.zeros((1500, 2000), bool)
    m[700:800, 1000:1100] = True
    return img, m


def test_sd_inpainting_runs_on_a_2000x1500_input_through_the_crop(tiny_inpaint_dir, big_photo):
    img, m = big_photo
    method = get_method("inpaint", model=str(tiny_inpaint_dir), steps=2)
    assert method.backend.name == "diffusion" and method.backend.working_size == 32
    seen = []  # the UNet's batch sizes: with guidance, the prompt and the empty text in one batch of 2
    hook = method.backend.backbone.denoiser.unet.register_forward_hook(lambda mod, args, out: seen.append(args[0].shape[0]))
    res = method.edit(retouch.methods.EditRequest(image=img, mask=m, target_prompt="a red star"))
    hook.remove()
    assert seen == [2, 2] and sum(seen) == res.nfe_edit
    assert res.image.shape == img.shape
    assert np.array_equal(res.image[~m], img[~m])
    assert (res.image[m] != img[m]).mean() > 0.5  # the model's fill, not the input
    assert res.info["working_sizes"] == [[32, 32]]  # the crop, resized to the model's size, not the whole photo
    again = method.edit(retouch.methods.EditRequest(image=img, mask=m, target_prompt="a red star"))
    other = method.edit(retouch.methods.EditRequest(image=img, mask=m, target_prompt="a blue moon"))
    assert np.array_equal(again.image, res.image)  # seeded
    assert not np.array_equal(other.image[m], res.image[m])  # the prompt reaches the UNet


def test_erase_with_a_model_uses_it(tiny_inpaint_dir, big_photo):
    img, m = big_photo
    res = retouch.erase(img, m, model=tiny_inpaint_dir, steps=2)
    assert res.info["backend"] == "diffusion" and res.nfe_edit == 2  # no prompt: no classifier-free guidance to pay for
    assert np.array_equal(res.image[~m], img[~m])
    classic = retouch.erase(img, m)  # no model: OpenCV Telea
    assert classic.info["backend"] == "telea" and not np.array_equal(classic.image[m], res.image[m])


def test_a_text_to_image_folder_is_refused_before_loading(tiny_inpaint_dir, tmp_path):
    t2i = tmp_path / "t2i"
    shutil.copytree(tiny_inpaint_dir, t2i)
    cfg = t2i / "unet" / "config.json"
    cfg.write_text(json.dumps(json.loads(cfg.read_text()) | {"in_channels": 4}))
    with pytest.raises(ValueError, match="reads 4 input channels; an inpainting UNet reads 9"):
        get_method("erase", model=str(t2i))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no model_index.json"):
        get_method("erase", model=str(tmp_path / "empty"))


def test_cli_inpaint_with_model(tiny_inpaint_dir, tmp_path, capsys):
    from PIL import Image

    img = np.random.default_rng(1).integers(0, 256, (90, 120, 3), dtype=np.uint8)
    m = np.zeros((90, 120), np.uint8)
    m[30:60, 40:80] = 255
    Image.fromarray(img).save(tmp_path / "in.png")
    Image.fromarray(m).save(tmp_path / "m.png")
    out = tmp_path / "out.png"
    argv = ["inpaint", str(tmp_path / "in.png"), "--mask", str(tmp_path / "m.png"), "a red star", "-o", str(out)]
    assert main(argv + ["--model", str(tiny_inpaint_dir), "--steps", "1"]) == 0
    got = np.asarray(Image.open(out))
    assert got.shape == img.shape and np.array_equal(got[m == 0], img[m == 0])
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["backend"] == "diffusion" and line["prompt"] == "a red star"
    # outpaint with a prompt through the model: the canvas grows, the input stays in place
    assert (
        main(
            ["outpaint", str(tmp_path / "in.png"), "--left", "8", "a sky", "-o", str(out), "--model", str(tiny_inpaint_dir), "--steps", "1"]
        )
        == 0
    )
    got = np.asarray(Image.open(out))
    assert got.shape == (90, 128, 3) and np.array_equal(got[:, 8:], img)
