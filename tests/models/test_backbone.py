"""The loader and the denoiser contract on tiny random SD-Turbo-like and SDXL-Turbo-like folders."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from retouch.generate import generate, initial_noise
from retouch.models import PIPELINE_KINDS, Backbone, TextConditioning, UNetDenoiser, load_backbone
from retouch.sampling import timesteps_for

PROMPTS = ["a red star on a grassy field", "two blue circles"]


@pytest.fixture(scope="module")
def sd(tiny_sd_dir) -> Backbone:
    return load_backbone(tiny_sd_dir)


@pytest.fixture(scope="module")
def sdxl(tiny_sdxl_dir) -> Backbone:
    return load_backbone(tiny_sdxl_dir)


def _pipeline(folder):
    from diffusers import DiffusionPipeline

    return DiffusionPipeline.from_pretrained(folder)


# --- loading ---


def test_loads_both_kinds(sd, sdxl, tiny_sd_dir):
    assert sd.kind == "sd" and sdxl.kind == "sdxl"
    for bb in (sd, sdxl):
        assert isinstance(bb.denoiser, UNetDenoiser)
        assert bb.denoiser.prediction_type == "epsilon"
        assert bb.denoiser.num_train_timesteps == 1000
        assert bb.default_steps == 4  # trailing spacing: a few-step checkpoint
        assert bb.default_size == 32 and bb.vae_factor == 2 and bb.latent_channels == 4
        assert bb.vae_scale == pytest.approx(0.18215)
    assert len(sd.text_encoders) == len(sd.tokenizers) == 1
    assert len(sdxl.text_encoders) == len(sdxl.tokenizers) == 2
    assert not sd.zero_null_text and sdxl.zero_null_text
    assert type(sdxl.scheduler).__name__ == "EulerAncestralDiscreteScheduler"
    assert load_backbone(str(tiny_sd_dir), default_steps=1).default_steps == 1


def test_half_precision(tiny_sd_dir, tiny_sdxl_dir):
    # SDXL's autoencoder is kept in fp32 when its config says force_upcast, as its pipelines do
    for folder, vae_dtype in ((tiny_sd_dir, torch.float16), (tiny_sdxl_dir, torch.float32)):
        bb = load_backbone(folder, dtype=torch.float16)
        assert bb.dtype == torch.float16 and next(bb.autoencoder.parameters()).dtype == vae_dtype
        assert bb.text_encoders[-1].dtype == torch.float16
    image = generate(bb, PROMPTS[:1], steps=1)
    assert image.shape == (1, 32, 32, 3) and image.dtype == np.uint8
    assert bb.encode_images(image).dtype == torch.float16


def test_img2img_and_inpaint_class_names_are_known():
    for kind in ("", "Img2Img", "Inpaint"):
        assert f"StableDiffusion{kind}Pipeline" in PIPELINE_KINDS
        assert f"StableDiffusionXL{kind}Pipeline" in PIPELINE_KINDS


def test_errors_are_clear(tmp_path, tiny_sd_dir):
    missing = tmp_path / "nope"
    with pytest.raises(FileNotFoundError, match="nope"):
        load_backbone(missing)
    with pytest.raises(FileNotFoundError, match="local Hugging Face cache"):
        load_backbone("retouch-tests/not-a-cached-model")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="model_index.json"):
        load_backbone(empty)
    bad = tmp_path / "bad"
    shutil.copytree(tiny_sd_dir, bad)
    index = json.loads((bad / "model_index.json").read_text())
    (bad / "model_index.json").write_text(json.dumps({**index, "_class_name": "FluxPipeline"}))
    with pytest.raises(ValueError, match=r"FluxPipeline.*StableDiffusionPipeline") as e:
        load_backbone(bad)
    assert str(bad) in str(e.value)
    (bad / "model_index.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_backbone(bad)
    (bad / "model_index.json").write_text(json.dumps({**index, "unet": ["os", "system"]}))
    with pytest.raises(ValueError, match="'os'"):
        load_backbone(bad)


# --- text ---


def test_encode_text_sd_matches_pipeline(sd, tiny_sd_dir):
    cond = sd.encode_text(PROMPTS)
    assert cond.tokens.shape == (2, 77, 32) and cond.pooled is None and cond.add_time_ids is None
    ref, _ = _pipeline(tiny_sd_dir).encode_prompt(PROMPTS, "cpu", 1, False)
    assert torch.allclose(cond.tokens, ref, atol=1e-6)
    assert not torch.allclose(cond.tokens[0], cond.tokens[1])


def test_encode_text_sdxl_matches_pipeline(sdxl, tiny_sdxl_dir):
    cond = sdxl.encode_text(PROMPTS)
    assert cond.tokens.shape == (2, 77, 64) and cond.pooled.shape == (2, 32)
    assert cond.add_time_ids.tolist() == [[32, 32, 0, 0, 32, 32]] * 2
    assert sdxl.encode_text(PROMPTS[:1], size=(48, 64)).add_time_ids.tolist() == [[48, 64, 0, 0, 48, 64]]
    ref, _, ref_pooled, _ = _pipeline(tiny_sdxl_dir).encode_prompt(PROMPTS, device="cpu", do_classifier_free_guidance=False)
    assert torch.allclose(cond.tokens, ref, atol=1e-6)
    assert torch.allclose(cond.pooled, ref_pooled, atol=1e-6)


def test_unconditional(sd, sdxl):
    u = sdxl.unconditional(3)
    assert u.batch_size == 3 and not u.tokens.any() and not u.pooled.any() and u.add_time_ids.shape == (3, 6)
    u = sd.unconditional(2)
    assert torch.allclose(u.tokens, sd.encode_text(["", ""]).tokens)


# --- the denoiser contract ---


@pytest.mark.parametrize("which", ["sd", "sdxl"])
def test_adapter_equals_unet(which, request):
    bb: Backbone = request.getfixturevalue(which)
    cond = bb.encode_text(PROMPTS)
    x = torch.randn(2, 4, 16, 16, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([999, 321])
    unet = bb.denoiser.unet
    added = {"text_embeds": cond.pooled, "time_ids": cond.add_time_ids} if which == "sdxl" else None
    with torch.no_grad():
        ref = unet(x, t, encoder_hidden_states=cond.tokens, added_cond_kwargs=added).sample
        out = bb.denoiser(x, t, cond)
        assert out.shape == x.shape
        assert torch.equal(out, ref)
        # a scalar t and a one-prompt conditioning broadcast over the batch
        one = bb.encode_text(PROMPTS[:1])
        assert torch.allclose(bb.denoiser(x, 500, one), bb.denoiser(x, torch.tensor([500, 500]), one.repeat(2)), atol=1e-6)
    if which == "sdxl":
        with pytest.raises(ValueError, match="pooled"):
            bb.denoiser(x, t, TextConditioning(cond.tokens))


# --- images ---


def test_encode_decode_images(sd):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    lat = sd.encode_images(images)
    assert lat.shape == (2, 4, 16, 16) and lat.dtype == torch.float32
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1
    with torch.no_grad():
        ref = sd.autoencoder.encode(x).latent_dist.mean * sd.autoencoder.config.scaling_factor
    assert torch.allclose(lat, ref, atol=1e-5)
    assert torch.equal(sd.encode_images(list(images)), lat)
    out = sd.decode_latents(lat)
    assert out.shape == (2, 32, 32, 3) and out.dtype == np.uint8
    with pytest.raises(ValueError, match="uint8"):
        sd.encode_images(images.astype(np.float32))


# --- generate ---


@pytest.mark.parametrize("which", ["sd", "sdxl"])
def test_generate_is_seeded(which, request):
    bb: Backbone = request.getfixturevalue(which)
    seen = []
    a = generate(bb, PROMPTS, steps=2, seed=1, callback=lambda i, n, x: seen.append((i, n)))
    assert a.shape == (2, 32, 32, 3) and a.dtype == np.uint8
    assert seen == [(1, 2), (2, 2)]
    assert np.array_equal(a, generate(bb, PROMPTS, steps=2, seed=1))
    assert not np.array_equal(a, generate(bb, PROMPTS, steps=2, seed=2))
    assert generate(bb, PROMPTS[:1], steps=1, size=48).shape == (1, 48, 48, 3)


@pytest.mark.parametrize("guidance", [1.0, 7.5])
@pytest.mark.parametrize("which", ["sd", "sdxl"])
def test_generate_matches_diffusers_pipeline_with_ddim(which, guidance, request):
    """Same noise, same DDIM: our composition and the checkpoint's own pipeline agree to a grey level."""
    from diffusers import DDIMScheduler

    bb: Backbone = request.getfixturevalue(which)
    pipe = _pipeline(bb.path)
    # trailing DDIM stepping to alpha = 1 at the end is what sample_ddim does (for step counts dividing 1000)
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config, set_alpha_to_one=True, clip_sample=False, timestep_spacing="trailing")
    ours = generate(bb, PROMPTS, steps=2, seed=3, guidance=guidance)
    noise = torch.cat([initial_noise(bb, 1, 32, seed=3 + i) for i in range(len(PROMPTS))])  # prompt i: seed + i
    ref = pipe(PROMPTS, height=32, width=32, num_inference_steps=2, guidance_scale=guidance, latents=noise.clone(), output_type="np").images
    assert pipe.scheduler.timesteps.tolist() == timesteps_for(2)
    assert np.abs(ours.astype(np.float64) - ref * 255).max() <= 1.0
