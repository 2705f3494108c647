"""Tiny random SD-Turbo-like and SDXL-Turbo-like diffusers folders, built offline.

The shapes follow diffusers' own ``get_dummy_components`` tests; the tokenizer is a
character-level CLIP BPE (every byte, alone and word-final, no merges), written to disk so
it loads through ``CLIPTokenizer.from_pretrained`` like a real one.  Session-scoped: every
test that needs a backbone folder reuses the same two.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

MAX_LEN = 77


def _bytes_to_unicode() -> list[str]:
    # GPT-2 / CLIP's reversible byte -> printable character table
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for c in cs]


def tiny_tokenizer(folder: Path, pad_token: str = "<|endoftext|>"):
    from transformers import CLIPTokenizer

    chars = _bytes_to_unicode()
    vocab = {c: i for i, c in enumerate(chars)}
    vocab.update({c + "</w>": len(chars) + i for i, c in enumerate(chars)})
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    if pad_token not in vocab:  # SDXL's second tokenizer pads with "!", already in the table
        vocab[pad_token] = len(vocab)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    return CLIPTokenizer.from_pretrained(folder, model_max_length=MAX_LEN, pad_token=pad_token)


def _text_config(tokenizer, **kw):
    from transformers import CLIPTextConfig

    return CLIPTextConfig(
        hidden_size=32,
        intermediate_size=37,
        num_attention_heads=4,
        num_hidden_layers=2,
        vocab_size=1000,
        max_position_embeddings=MAX_LEN,
        layer_norm_eps=1e-5,
        hidden_act="gelu",
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **kw,
    )


def _vae():
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        block_out_channels=(32, 64),
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        latent_channels=4,
        sample_size=32,
    )


def tiny_sd_unet(in_channels: int) -> Any:
    """diffusers' get_dummy_components SD UNet (seeded): 16x16x4 latents, 32-wide text states; ``in_channels`` 4 for
    text-to-image, 9 for SD-inpainting (noisy latent, mask, masked-image latent)."""
    from diffusers import UNet2DConditionModel

    torch.manual_seed(0)
    return UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=1,
        sample_size=16,
        in_channels=in_channels,
        out_channels=4,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=(2, 4),
        norm_num_groups=32,
    )


@pytest.fixture(scope="session")
def tiny_sd_dir(tmp_path_factory) -> Path:
    """A random SD-Turbo-like StableDiffusionPipeline folder: 32 px images, 16x16x4 latents."""
    from diffusers import EulerDiscreteScheduler, StableDiffusionPipeline
    from transformers import CLIPTextModel

    root = tmp_path_factory.mktemp("tiny-sd-turbo")
    unet = tiny_sd_unet(in_channels=4)
    torch.manual_seed(0)
    vae = _vae()
    tokenizer = tiny_tokenizer(root / "_tok")
    torch.manual_seed(0)
    text_encoder = CLIPTextModel(_text_config(tokenizer))
    # SD-Turbo's scheduler: Euler, trailing spacing, epsilon prediction
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        timestep_spacing="trailing",
        prediction_type="epsilon",
        steps_offset=1,
    )
    pipe = StableDiffusionPipeline(
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


@pytest.fixture(scope="session")
def tiny_sdxl_dir(tmp_path_factory) -> Path:
    """A random SDXL-Turbo-like StableDiffusionXLPipeline folder: two text encoders, text_time UNet."""
    from diffusers import EulerAncestralDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    root = tmp_path_factory.mktemp("tiny-sdxl-turbo")
    tokenizer = tiny_tokenizer(root / "_tok")
    tokenizer_2 = tiny_tokenizer(root / "_tok2", pad_token="!")
    torch.manual_seed(0)
    text_encoder = CLIPTextModel(_text_config(tokenizer))
    torch.manual_seed(1)
    text_encoder_2 = CLIPTextModelWithProjection(_text_config(tokenizer_2, projection_dim=32))
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=1,
        sample_size=16,
        in_channels=4,
        out_channels=4,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        projection_class_embeddings_input_dim=6 * 8 + 32,  # six size ids x 8 + the pooled projection
        cross_attention_dim=32 + 32,  # both encoders' hidden states side by side
        norm_num_groups=32,
    )
    torch.manual_seed(0)
    vae = _vae()
    scheduler = EulerAncestralDiscreteScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", timestep_spacing="trailing", prediction_type="epsilon"
    )
    pipe = StableDiffusionXLPipeline(
        vae=vae,
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        tokenizer=tokenizer,
        tokenizer_2=tokenizer_2,
        unet=unet,
        scheduler=scheduler,
    )
    folder = root / "model"
    pipe.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_shapes_dir(tmp_path_factory) -> Path:
    """A random Shapes-layout folder as ``retouch.train.t2i.save_pipeline`` writes it: AutoencoderDC,
    v-prediction UNet on MiniLM token states, and a text encoder that points into the MiniLM package."""
    from retouch.train.autoencoder import AutoencoderTrainConfig, build_autoencoder
    from retouch.train.t2i import T2ITrainConfig, build_unet, make_scheduler, save_pipeline

    root = tmp_path_factory.mktemp("tiny-shapes")
    torch.manual_seed(0)
    ae = build_autoencoder(AutoencoderTrainConfig(channels=(8, 16), blocks=(1, 1), latent_channels=4))
    ae.register_to_config(scaling_factor=0.5)
    ae.save_pretrained(root / "ae")
    torch.manual_seed(0)
    unet = build_unet(T2ITrainConfig(channels=(32, 32), heads=2), latent_channels=4, sample_size=8, cross_dim=384)
    folder = root / "model"
    save_pipeline(folder, unet, root / "ae", make_scheduler("v_prediction", "trailing"), 40, {"retouch_default_steps": 2})
    return folder
