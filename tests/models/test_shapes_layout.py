"""The Shapes model's folder layout loads through the same loader as SD checkpoints."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from retouch.generate import generate
from retouch.models import load_backbone
from retouch.models.backbone import packaged_path


@pytest.fixture(scope="module")
def shapes(tiny_shapes_dir):
    return load_backbone(tiny_shapes_dir)


def test_layout_is_an_sd_folder_with_a_packaged_text_encoder(tiny_shapes_dir, shapes):
    index = json.loads((tiny_shapes_dir / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionPipeline"
    assert index["vae"] == ["diffusers", "AutoencoderDC"] and index["text_encoder"] == ["transformers", "BertModel"]
    # no copy of the 90 MB encoder: a pointer into the installed package
    assert not any((tiny_shapes_dir / "text_encoder").glob("*.safetensors"))
    assert (packaged_path(tiny_shapes_dir / "text_encoder" / "retouch_package.json") / "model.safetensors").is_file()
    assert shapes.kind == "sd" and shapes.denoiser.prediction_type == "v_prediction"
    assert shapes.vae_factor == 2 and shapes.latent_channels == 4 and shapes.default_size == 16
    assert shapes.default_steps == 2 and shapes.vae_scale == pytest.approx(0.5)
    # fp16 weights on disk
    from safetensors.torch import load_file

    weights = load_file(tiny_shapes_dir / "unet" / "diffusion_pytorch_model.safetensors")
    assert all(v.dtype == torch.float16 for v in weights.values())


def test_text_states_are_zero_at_padding_and_independent_of_batch(shapes):
    one = shapes.encode_text(["a red star"]).tokens  # (1, 40, 384)
    two = shapes.encode_text(["a red star", "a large blue dotted square with a moon emblem at the top left"]).tokens
    assert one.shape == (1, 40, 384)
    n_real = len(shapes.tokenizers[0]("a red star").input_ids)
    assert torch.count_nonzero(one[0, n_real:]) == 0 and torch.all(one[0, :n_real].abs().sum(-1) > 0)
    torch.testing.assert_close(one[0], two[0], atol=1e-5, rtol=1e-4)
    # paraphrases land nearer each other than unrelated captions (the encoder is the real MiniLM)
    a, b, c = (shapes.encode_text([t]).tokens[0, 0] for t in ("a crimson star", "a red star", "a blue square on brick"))
    cos = torch.nn.functional.cosine_similarity
    assert cos(a, b, dim=0) > cos(a, c, dim=0)


def test_generate_and_autoencoder_round_trip(shapes):
    images = generate(shapes, ["a red star", "a blue circle"], seed=3)
    assert images.shape == (2, 16, 16, 3) and images.dtype == np.uint8
    assert np.array_equal(images[1], generate(shapes, ["a blue circle"], seed=4)[0])  # prompt i uses seed + i
    z = shapes.encode_images(images)
    assert z.shape == (2, 4, 8, 8)
    assert shapes.decode_latents(z).shape == images.shape


def test_missing_text_package_is_a_clear_error(tmp_path):
    ref = tmp_path / "retouch_package.json"
    ref.write_text(json.dumps({"package": "no_such_package_xyz", "subfolder": "model"}))
    with pytest.raises(FileNotFoundError, match="no_such_package_xyz"):
        packaged_path(ref)
    ref.write_text("{}")
    with pytest.raises(ValueError, match="package"):
        packaged_path(ref)
