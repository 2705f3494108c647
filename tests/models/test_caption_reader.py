"""The caption reader: a tiny one trains and round-trips; the shipped one reads the world's captions and the
hand-written paraphrases, and refuses what it cannot read."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from retouch.models.caption_reader import DEFAULT_CAPTION_READER, CaptionReader, CaptionReaderConfig, probabilities, read_scene
from retouch.models.layout import OBJECT_FIELDS, OBJECT_SLICES, SCENE_SLICES
from retouch.train.caption_reader import evaluate_caption_reader, fixture_pairs, held_out_detailed
from retouch.world.captions import short_caption
from retouch.world.scene import Scene

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


@pytest.fixture(scope="module")
def text_model():
    from retouch.models.caption_reader import text_model

    return text_model(128)


@pytest.fixture(scope="module")
def shipped():
    return CaptionReader.from_pretrained()


def test_probabilities_scale_blocks_by_occupancy():
    torch.manual_seed(0)
    r = probabilities(torch.randn(3, 4, 29) * 3, torch.randn(3, 12))
    occ = r.objects[..., 0]
    assert ((occ > 0) & (occ < 1)).all()
    for name, _ in OBJECT_FIELDS[1:]:
        torch.testing.assert_close(r.objects[..., OBJECT_SLICES[name]].sum(-1), occ)
    for sl in SCENE_SLICES.values():
        torch.testing.assert_close(r.scene[:, sl].sum(-1), torch.ones(3))


def test_tiny_reader_trains_resumes_and_round_trips(tmp_path, text_model):
    from retouch.train import run_recipe

    recipe = tmp_path / "r.json"
    settings = {
        "task": "caption-reader",
        "out": str(tmp_path / "reader"),
        "cache": str(tmp_path / "cache"),
        "n_captions": 48,
        "chunk": 24,
        "steps": 12,
        "batch_size": 8,
        "dim": 32,
        "heads": 2,
        "encoder_layers": 0,
        "decoder_layers": 1,
        "threads": 1,
        "eval_n": 0,
        "ckpt_every": 6,
    }
    recipe.write_text(json.dumps(settings))
    run_recipe(recipe)
    out = tmp_path / "reader"
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["chunk0000.npz", "chunk0001.npz"]
    assert torch.load(out / "checkpoint.pt", weights_only=False)["step"] == 12
    assert json.loads((out / "train_config.json").read_text())["dim"] == 32
    # resumable: more steps continue from the checkpoint, the cache is reused
    run_recipe(recipe, steps=16)
    assert torch.load(out / "checkpoint.pt", weights_only=False)["step"] == 16
    reader = CaptionReader.from_pretrained(out)
    assert reader.config == CaptionReaderConfig(dim=32, heads=2, encoder_layers=0, decoder_layers=1)
    # save / load keeps the reading (fp16 weights)
    enc, tok = text_model
    caps = ["a red star at the top left on grass", "two blue circles on a brick wall, pixel art"]
    a = reader.read(caps, enc, tok)
    reader.save_pretrained(tmp_path / "again")
    b = CaptionReader.from_pretrained(tmp_path / "again").read(caps, enc, tok)
    torch.testing.assert_close(a.objects, b.objects, atol=2e-3, rtol=0)
    torch.testing.assert_close(a.scene, b.scene, atol=2e-3, rtol=0)
    assert a.objects.shape == (2, 4, 29) and a.scene.shape == (2, 12)


def test_bad_folders_and_inputs_are_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="no caption reader"):
        CaptionReader.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "something-else"}))
    with pytest.raises(ValueError, match="not a caption reader"):
        CaptionReader.from_pretrained(tmp_path)
    reader = CaptionReader(CaptionReaderConfig(dim=16, heads=2, encoder_layers=0, decoder_layers=1))
    with pytest.raises(ValueError, match="token states must be"):
        reader(torch.zeros(1, 5, 100), torch.ones(1, 5, dtype=torch.bool))
    with pytest.raises(TypeError, match="list of captions"):
        reader.read("a red star")
    with pytest.raises(ValueError, match="omitted_target"):
        from retouch.train.caption_reader import CaptionReaderTrainConfig

        CaptionReaderTrainConfig(omitted_target="random")


# -- the shipped reader --------------------------------------------------------------------------
def test_shipped_reader_is_small():
    # 1.45M parameters in fp16 (2.9 MB) since the 192-wide head of 2026-12-06: the whole of models/ stays under 40 MB
    size = sum(p.stat().st_size for p in DEFAULT_CAPTION_READER.iterdir() if p.name != "checkpoint.pt")
    assert size < 3_100_000


def test_shipped_reader_reads_held_out_detailed_captions(shipped, text_model):
    # a seed no training run used; the benchmark measures 1,000 (docs/backbone.md)
    r = evaluate_caption_reader(shipped, held_out_detailed(100, 4242), *text_model)
    assert r["min_attribute"] >= 0.99, r["attributes"]
    assert r["attributes"]["occupied"] >= 0.99
    assert r["exact"] >= 0.95 and r["refused"] <= 0.02


def test_shipped_reader_reads_the_hand_written_paraphrases(shipped, text_model):
    pairs = fixture_pairs([FIXTURES / "paraphrases.jsonl", FIXTURES / "paraphrases_more.jsonl"])
    sample = pairs[::4]  # 40 of the 160
    r = evaluate_caption_reader(shipped, sample, *text_model)
    # a regression guard near the measured level (96.3% mean on all 160 and 96.9% on this sample since the 192-wide
    # head of 2026-12-06; the reader before it: 93.9% / 92.5%; 81.9% on all 160 without the rewriting of words it
    # never learnt: docs/backbone.md)
    assert r["mean_attribute"] >= 0.93, r["attributes"]
    assert r["attributes"]["background"] >= 0.95 and r["attributes"]["occupied"] >= 0.8


def test_short_captions_go_to_reading_order_and_leave_the_rest_unsaid(shipped, text_model):
    enc, tok = text_model
    scenes = [s for _, s in held_out_detailed(30, 4343)]
    reading = shipped.read([short_caption(s) for s in scenes], enc, tok)
    right = unsaid = total = 0
    for i, s in enumerate(scenes):
        occ = reading.objects[i, :, 0].numpy()
        n = len(s.objects)
        right += bool((occ[:n] > 0.5).all() and (occ[n:] < 0.5).all())
        for k in range(n):
            total += 1
            block = reading.objects[i, k, OBJECT_SLICES["size"]].numpy() / occ[k]
            unsaid += bool(block.max() < 0.5)
    assert right >= 28 and unsaid >= 0.9 * total
    scene = read_scene("a red star and a blue circle on grass", shipped)
    assert [(o.slot, o.color, o.shape) for o in scene.objects] == [(0, "red", "star"), (1, "blue", "circle")]
    assert scene.background == "grass" and scene.style == "flat"
    assert scene.objects[0].size == "medium" and scene.objects[0].pattern == "solid"  # documented neutral values


@pytest.mark.parametrize("caption", ["", "   ", "a golden retriever running on the beach", "what is the capital of france?"])
def test_unreadable_captions_are_refused(shipped, caption):
    with pytest.raises(ValueError, match="caption|empty") as e:
        read_scene(caption, shipped)
    if caption.strip():
        assert caption[:40] in str(e.value)


def test_paraphrase_more_fixture_is_valid():
    rows = [json.loads(line) for line in (FIXTURES / "paraphrases_more.jsonl").read_text().splitlines() if line.strip()]
    assert len(rows) >= 100
    caps = [r["caption"] for r in rows]
    assert len(set(caps)) == len(caps)
    old = {json.loads(line)["caption"] for line in (FIXTURES / "paraphrases.jsonl").read_text().splitlines() if line.strip()}
    assert not old & set(caps)
    counts = {len(Scene.from_dict(r["scene"]).objects) for r in rows}
    assert counts == {1, 2, 3, 4}
    # the scenes differ from one another (not one scene described many times)
    assert len({json.dumps(replace(Scene.from_dict(r["scene"]), seed=0).to_dict()) for r in rows}) == len(rows)
    assert np.mean([len(c) for c in caps]) > 80
