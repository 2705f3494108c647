import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from transformers import AutoTokenizer

from retouch.eval.clip import CLIPEmbedder
from retouch.train import load_recipe, run_recipe
from retouch.train.clip import (
    WorldClipConfig,
    WorldPairs,
    build_image_processor,
    build_model,
    build_tokenizer,
    clip_loss,
    contrastive_logits,
    max_caption_tokens,
    pair_scenes,
    to_pixels,
)
from retouch.world.captions import detailed_caption
from retouch.world.render import render
from retouch.world.scene import OBJECT_ATTRS, random_scene

TINY = {
    "steps": 2,
    "batch_size": 8,
    "workers": 0,
    "eval_n": 4,
    "eval_pool": 4,
    "ckpt_every": 1,
    "vision_width": 32,
    "vision_layers": 1,
    "text_width": 32,
    "text_layers": 1,
    "projection_dim": 16,
}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny world CLIP trained for 2 steps; returns (recipe path, model folder, metrics)."""
    tmp = tmp_path_factory.mktemp("world_clip")
    recipe, out = tmp / "r.json", tmp / "clip"
    recipe.write_text(json.dumps({"task": "world-clip", "out": str(out), **TINY}))
    return recipe, out, run_recipe(recipe)


def test_recipe_trains_saves_and_resumes(trained):
    recipe, out, m = trained
    assert m["n"] == 4 and m["pool"] == 4
    assert set(m) >= {"top1", "top5", "top1_short", "top5_short", "t2i_top1", "t2i_top1_short", "twin_i2t", "twin_t2i"}
    assert all(0.0 <= m[k] <= 1.0 for k in ("top1", "top5", "t2i_top1", "twin_i2t"))
    assert m["top5"] == 1.0  # 4 candidates: the right one is always in the top 5
    assert json.loads((out / "eval.json").read_text())["top1"] == m["top1"]
    assert json.loads((out / "train_config.json").read_text())["steps"] == 2
    assert torch.load(out / "checkpoint.pt", weights_only=False)["step"] == 2
    for name in ("config.json", "model.safetensors", "preprocessor_config.json", "tokenizer.json", "tokenizer_config.json"):
        assert (out / name).is_file(), name
    with safe_open(str(out / "model.safetensors"), "pt") as f:  # weights shipped in fp16
        assert f.get_tensor("logit_scale").dtype == torch.float16
    # resuming continues from the checkpoint instead of starting over
    run_recipe(recipe, steps=3)
    assert torch.load(out / "checkpoint.pt", weights_only=False)["step"] == 3


def test_saved_folder_loads_like_openai_clip(trained):
    _, out, _ = trained
    emb = CLIPEmbedder.load(out)
    assert emb.model.dtype == torch.float32  # fp16 on disk, float32 in memory
    rng = random.Random(3)
    scenes = [random_scene(rng) for _ in range(3)]
    img = emb.embed_images([render(s) for s in scenes] + [np.zeros((200, 300, 3), np.uint8)])  # any size is resized
    txt = emb.embed_texts([detailed_caption(s) for s in scenes[:2]])
    assert img.shape == (4, 16) and txt.shape == (2, 16)
    assert torch.allclose(img.norm(dim=1), torch.ones(4), atol=1e-4)
    # the fp16 weights on disk embed like the float32 weights of the checkpoint
    cfg = WorldClipConfig(**{k: v for k, v in TINY.items() if k != "workers"})
    model = build_model(cfg, emb.tokenizer)
    model.load_state_dict(torch.load(out / "checkpoint.pt", weights_only=False)["model"])
    full = CLIPEmbedder(model, emb.image_processor, emb.tokenizer)
    assert torch.nn.functional.cosine_similarity(full.embed_images([render(s) for s in scenes]), img[:3]).min() > 0.999
    assert torch.nn.functional.cosine_similarity(full.embed_texts([detailed_caption(s) for s in scenes[:2]]), txt).min() > 0.999
    # nothing of a detailed caption is cut off by the embedder's truncation
    assert emb.max_text_len == WorldClipConfig().max_length >= max_caption_tokens(emb.tokenizer)


def test_tokenizer_paraphrase_and_longest_caption(trained, tmp_path):
    _, out, _ = trained
    tok = AutoTokenizer.from_pretrained(out)
    assert 2000 <= len(tok) <= 4000
    p = "a crimson five-pointed star tilted to the left"
    ids = tok(p)["input_ids"]
    assert ids[0] == tok.bos_token_id and ids[-1] == tok.eos_token_id == tok.pad_token_id
    assert tok.unk_token_id is None or tok.unk_token_id not in ids
    assert tok.decode(ids, skip_special_tokens=True) == p
    assert len(ids) == 2 + 10  # whole words: crimson, five, -, pointed ... (no byte soup)
    assert tok("A Red STAR")["input_ids"] == tok("a red star")["input_ids"]
    # every word of the world's vocabulary is one token
    words = {w for vocab in OBJECT_ATTRS.values() for v in vocab for w in v.split()}
    assert all(len(tok(w)["input_ids"]) == 3 for w in words)
    longest = max_caption_tokens(tok)
    assert 80 <= longest <= WorldClipConfig().max_length
    rng = random.Random(0)
    assert max(len(tok(detailed_caption(random_scene(rng, 4)))["input_ids"]) for _ in range(200)) <= longest
    # deterministic: a fresh build equals the shipped one
    build_tokenizer(tmp_path)
    assert (tmp_path / "tokenizer.json").read_text() == (out / "tokenizer.json").read_text()


def test_loss_is_clips_and_handles_duplicate_captions(trained):
    _, out, _ = trained
    tok = AutoTokenizer.from_pretrained(out)
    cfg = WorldClipConfig(**{k: v for k, v in TINY.items() if k != "workers"})
    model = build_model(cfg, tok).eval()
    images, captions = WorldPairs(cfg).batch(0)
    x = tok(captions, padding=True, return_tensors="pt")
    with torch.no_grad():
        ref = model(input_ids=x["input_ids"], attention_mask=x["attention_mask"], pixel_values=to_pixels(images), return_loss=True)
        logits = contrastive_logits(model, x["input_ids"], x["attention_mask"], to_pixels(images), bf16=False)
    assert len(set(captions)) == len(captions)
    assert torch.allclose(logits, ref.logits_per_text, atol=1e-4)
    assert torch.allclose(clip_loss(logits, captions), ref.loss, atol=1e-5)

    # two rows with one caption are positives of each other: equal logits for both are then optimal
    def grad(captions: list[str]) -> float:
        logits = torch.tensor([[50.0, 50.0, 0.0], [50.0, 50.0, 0.0], [0.0, 0.0, 50.0]], requires_grad=True)
        clip_loss(logits, captions).backward()
        return logits.grad.abs().max().item()

    assert grad(["a", "a", "b"]) < 1e-6 < 0.1 < grad(["a", "c", "b"])


def test_batches_are_deterministic_and_twins_differ_by_one_edit():
    cfg = WorldClipConfig(batch_size=6, aug_prob=0.5)
    a, b = WorldPairs(cfg).batch(5), WorldPairs(cfg).batch(5)
    assert a[1] == b[1] and torch.equal(a[0], b[0]) and a[0].shape == (6, 128, 128, 3) and a[0].dtype == torch.uint8
    assert WorldPairs(cfg).batch(6)[1] != a[1]
    scenes, caps = pair_scenes(40, random.Random(1), p_detailed=0.5, twin_frac=1.0)
    assert len(scenes) == len(caps) == 40
    for s, t, cs, ct in zip(scenes[0::2], scenes[1::2], caps[0::2], caps[1::2], strict=True):
        assert not s.same_content(t) and cs != ct and s.seed == t.seed


def test_image_processor_matches_training_pixels():
    img = render(random_scene(random.Random(2)))
    px = build_image_processor(128)(images=[img], return_tensors="pt")["pixel_values"]
    assert torch.allclose(px, to_pixels(torch.from_numpy(img)[None]), atol=1e-6)


def test_recipe_errors_and_shipped_recipe(tmp_path):
    p = tmp_path / "r.json"
    p.write_text(json.dumps({"task": "world-clip", "twin_fraction": 0.5}))
    with pytest.raises(ValueError, match="twin_fraction"):
        load_recipe(p)
    task, cfg = load_recipe(Path(__file__).resolve().parents[2] / "recipes" / "world-clip.json")
    assert task == "world-clip" and isinstance(cfg, WorldClipConfig) and cfg.out == "models/world-clip"
