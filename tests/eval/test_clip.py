"""Tests for retouch.eval.clip with a tiny random CLIP model built offline."""

from __future__ import annotations

import json
import string
from pathlib import Path

import numpy as np
import pytest
import torch

from retouch.eval.clip import (
    CLIPEmbedder,
    ImageTextEmbedder,
    clip_score,
    clip_score_edited,
    emu_metrics,
    optional_metrics_status,
)

PROJ = 16
MAX_POS = 16


def _write_tiny_clip(path: Path) -> None:
    """Save a random tiny CLIPModel + CLIPProcessor (character-level BPE vocab, no merges)."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

    path.mkdir(parents=True, exist_ok=True)
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in string.ascii_lowercase:
        vocab[c] = len(vocab)
        vocab[c + "</w>"] = len(vocab)
    (path / "vocab.json").write_text(json.dumps(vocab))
    (path / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = CLIPTokenizer(str(path / "vocab.json"), str(path / "merges.txt"))
    image_processor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    torch.manual_seed(0)
    common = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2)
    config = CLIPConfig(
        text_config=dict(vocab_size=len(vocab), max_position_embeddings=MAX_POS, bos_token_id=0, eos_token_id=1, pad_token_id=1, **common),
        vision_config=dict(image_size=32, patch_size=8, **common),
        projection_dim=PROJ,
    )
    CLIPModel(config).save_pretrained(path)
    CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(path)


@pytest.fixture(scope="module")
def emb(tmp_path_factory: pytest.TempPathFactory) -> CLIPEmbedder:
    path = tmp_path_factory.mktemp("tiny_clip")
    _write_tiny_clip(path)
    return CLIPEmbedder.load(path)


def _images(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, size=(40, 48, 3), dtype=np.uint8) for _ in range(n)]


def test_embeddings_are_normalised(emb: CLIPEmbedder) -> None:
    assert isinstance(emb, ImageTextEmbedder)
    imgs = emb.embed_images(_images(3))
    txts = emb.embed_texts(["a red cat", "a blue dog on a mat", "x" * 200])  # last one needs truncation
    assert imgs.shape == (3, PROJ) and txts.shape == (3, PROJ)
    assert torch.allclose(imgs.norm(dim=-1), torch.ones(3), atol=1e-5)
    assert torch.allclose(txts.norm(dim=-1), torch.ones(3), atol=1e-5)
    assert emb.max_text_len == MAX_POS
    # Batching does not change the result.
    emb_one = CLIPEmbedder(emb.model, emb.image_processor, emb.tokenizer, batch_size=1)
    assert torch.allclose(emb_one.embed_images(_images(3)), imgs, atol=1e-5)
    assert torch.allclose(emb_one.embed_texts(["a red cat", "a blue dog on a mat", "x" * 200]), txts, atol=1e-5)
    with pytest.raises(ValueError, match="HxWx3"):
        emb.embed_images([np.zeros((8, 8), dtype=np.uint8)])


def test_clip_score_definition(emb: CLIPEmbedder) -> None:
    imgs, texts = _images(4, seed=1), ["a cat", "a dog", "a red ball", "green grass"]
    scores = clip_score(emb, imgs, texts)
    assert len(scores) == 4
    assert all(0.0 <= s <= 100.0 for s in scores)
    cos = (emb.embed_images(imgs) * emb.embed_texts(texts)).sum(-1)
    assert scores == pytest.approx((100 * cos.clamp(min=0)).tolist(), abs=1e-4)
    with pytest.raises(ValueError, match="same length"):
        clip_score(emb, imgs, texts[:2])


def test_clip_score_edited_masks_the_image(emb: CLIPEmbedder) -> None:
    img = _images(1, seed=2)[0]
    mask = np.zeros(img.shape[:2], dtype=np.uint8)
    mask[10:30, 12:40] = 1
    masked = (img * mask[:, :, None]).astype(np.uint8)
    edited = clip_score_edited(emb, [img], [mask], ["a cat"])
    assert edited == pytest.approx(clip_score(emb, [masked], ["a cat"]), abs=1e-5)
    assert edited != pytest.approx(clip_score(emb, [img], ["a cat"]), abs=1e-5)
    with pytest.raises(ValueError, match="shape"):
        clip_score_edited(emb, [img], [mask[:-1]], ["a cat"])


def test_emu_metrics(emb: CLIPEmbedder) -> None:
    src, out = _images(2, seed=3), _images(2, seed=4)
    caps_src, caps_tgt = ["a cat", "a dog"], ["a red cat", "a dog in snow"]
    m = emu_metrics(emb, src, out, caps_src, caps_tgt)
    assert set(m) == {"clip_dir", "clip_img", "clip_out"}
    assert all(len(v) == 2 for v in m.values())
    assert all(-1.0 - 1e-6 <= x <= 1.0 + 1e-6 for v in m.values() for x in v)

    same = emu_metrics(emb, src, src, caps_src, caps_tgt)
    assert same["clip_img"] == pytest.approx([1.0, 1.0], abs=1e-5)
    assert same["clip_dir"] == pytest.approx([0.0, 0.0], abs=1e-6)  # no change -> no direction

    swapped = emu_metrics(emb, out, src, caps_src, caps_tgt)
    assert swapped["clip_dir"] == pytest.approx([-x for x in m["clip_dir"]], abs=1e-5)
    assert any(abs(x) > 1e-3 for x in m["clip_dir"])
    assert swapped["clip_img"] == pytest.approx(m["clip_img"], abs=1e-5)  # symmetric

    e_out, t_tgt = emb.embed_images(out), emb.embed_texts(caps_tgt)
    assert m["clip_out"] == pytest.approx((e_out * t_tgt).sum(-1).tolist(), abs=1e-5)


def test_load_missing_folder_raises(tmp_path: Path) -> None:
    missing = tmp_path / "no_such_model"
    with pytest.raises(RuntimeError, match="no_such_model"):
        CLIPEmbedder.load(missing)


def test_optional_metrics_status_is_honest(tmp_path: Path) -> None:
    status = optional_metrics_status(dino_model=str(tmp_path / "no_dino"))
    assert set(status) == {"lpips", "dino"}
    assert status["dino"].startswith("unavailable: ")
    assert status["lpips"] == "available" or status["lpips"].startswith("unavailable: ")
    with pytest.raises(ValueError):
        optional_metrics_status(lpips_net="resnet")
