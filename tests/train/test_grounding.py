"""The teacher's token grounding loss (TokenCompose eq. 3): which tokens it supervises, and its value
on attention maps whose answer is known."""

from __future__ import annotations

import random

import pytest
import torch

from retouch.models.attention import AttentionStore
from retouch.train.grounding import GroundingLoss, footprints, token_slots
from retouch.train.t2i import text_encoder_and_tokenizer
from retouch.world.captions import detailed_caption, detailed_caption_spans, object_phrase, varied_caption, varied_caption_spans
from retouch.world.scene import Scene, WorldObject, random_scene


@pytest.fixture(scope="module")
def tokenizer():
    return text_encoder_and_tokenizer(128)[1]


def _scene() -> Scene:
    a = WorldObject("star", "red", "large", "striped", "tilted left", "moon", 0)
    b = WorldObject("circle", "blue", "small", "solid", "upright", "bolt", 3)
    return Scene((a, b), "grass", "flat")


def test_spans_cut_the_detailed_caption_into_its_object_phrases():
    for k in range(50):
        scene = random_scene(random.Random(k))
        text, spans = detailed_caption_spans(scene)
        assert text == detailed_caption(scene)
        assert [s for s, _, _ in spans] == [o.slot for o in scene.objects]
        assert [text[a:b] for _, a, b in spans] == [object_phrase(o) for o in scene.objects]


def test_varied_spans_follow_the_reworded_caption():
    for k in range(200):
        scene = random_scene(random.Random(k))
        text, spans = varied_caption_spans(scene, random.Random(k))
        assert text == varied_caption(scene, random.Random(k))  # the same draws, the same words
        assert sorted(s for s, _, _ in spans) == [o.slot for o in scene.objects]
        for slot, a, b in spans:
            o, phrase = scene.object_at(slot), text[a:b]
            assert o.shape in phrase and o.color in phrase
            assert all(p.color not in phrase.split() or p.color == o.color for p in scene.objects)  # no other object's colour


def test_token_slots_mark_each_phrase_with_its_slot_and_nothing_else(tokenizer):
    scene = _scene()
    text, spans = detailed_caption_spans(scene)
    slots = token_slots(tokenizer, [text, text], [spans, None], 128)
    words = tokenizer.convert_ids_to_tokens(tokenizer(text)["input_ids"])
    by_slot = {s: [w for w, k in zip(words, slots[0][: len(words)], strict=True) if k == s] for s in (-1, 0, 3)}
    assert by_slot[0][:4] == ["a", "large", "red", "striped"] and by_slot[0][-2:] == ["top", "left"]
    assert "moon" in by_slot[0] and "moon" not in by_slot[3]
    assert by_slot[3][-2:] == ["bottom", "right"] and "blue" in by_slot[3]
    # the scene-level words, separators and special tokens are not supervised
    assert {"field", "[CLS]", "[SEP]", ";", "."} <= set(by_slot[-1]) and "red" not in by_slot[-1]
    assert (slots[1] == -1).all()  # a caption without spans is not supervised at all


def test_footprints_lie_in_their_quadrant_and_empty_slots_are_zero():
    f = footprints([_scene()], 128, 16)  # (1, 4, 16, 16)
    assert f.shape == (1, 4, 16, 16)
    assert f[0, 1].sum() == 0 and f[0, 2].sum() == 0
    assert f[0, 0, :8, :8].sum() > 0 and f[0, 0, 8:, :].sum() == 0 and f[0, 0, :, 8:].sum() == 0
    assert f[0, 3, 8:, 8:].sum() > 0 and f[0, 3, :8, :].sum() == 0


def _store(maps: dict[str, torch.Tensor]) -> AttentionStore:
    store = AttentionStore(keep_grad=True)
    for name, p in maps.items():
        store.add(name, p, heads=1)
    return store


def test_loss_is_zero_inside_the_footprint_and_large_outside():
    regions = torch.zeros(1, 4, 8, 8)
    regions[0, 0, :4, :4] = 1.0  # slot 0 owns the top-left quadrant
    slots = torch.full((1, 5), -1)
    slots[0, 1:3] = 0  # tokens 1 and 2 name the object in slot 0
    inside = torch.zeros(1, 8, 8, 5)
    inside[0, :4, :4, 1:3] = 1.0
    outside = torch.zeros(1, 8, 8, 5)
    outside[0, 4:, 4:, 1:3] = 1.0
    uniform = torch.ones(1, 8, 8, 5)
    loss = GroundingLoss(skip=(), pixel=0)
    maps = {"in": inside, "out": outside, "uniform": uniform}
    value = {k: loss(_store({"up.attn2": m.flatten(1, 2)}), slots, regions).item() for k, m in maps.items()}
    assert value["in"] == pytest.approx(0.0, abs=1e-6)
    assert value["out"] == pytest.approx(1.0)
    assert value["uniform"] == pytest.approx((1 - 16 / 64) ** 2)
    # a coarser layer reads the regions pooled to its own grid; a skipped layer is not read
    coarse = torch.zeros(1, 4, 4, 5)
    coarse[0, :2, :2, 1:3] = 1.0
    store = _store({"mid.attn2": coarse.flatten(1, 2), "down_blocks.0.attn2": outside.flatten(1, 2)})
    assert GroundingLoss(skip=("down_blocks.0.",), pixel=0)(store, slots, regions).item() == pytest.approx(0.0, abs=1e-6)
    # no supervised token: zero, not NaN
    assert GroundingLoss(skip=(), pixel=0)(_store({"up.attn2": uniform.flatten(1, 2)}), torch.full((1, 5), -1), regions).item() == 0.0


def test_loss_gradient_pulls_attention_into_the_footprint():
    regions = torch.zeros(1, 4, 4, 4)
    regions[0, 2, 2:, :2] = 1.0
    slots = torch.tensor([[-1, 2, -1]])
    logits = torch.zeros(1, 16, 3, requires_grad=True)
    GroundingLoss(skip=(), pixel=0)(_store({"up.attn2": logits.softmax(-1)}), slots, regions).backward()
    g = logits.grad[0, :, 1].reshape(4, 4)  # descending the loss raises token 1's logits inside the region
    assert (g[2:, :2] < 0).all() and (g[:2, :] > 0).all()


def test_pixel_weights_scale_the_denoising_loss_where_they_are_set():
    from retouch.train.t2i import diffusion_loss, make_scheduler

    class Zero(torch.nn.Module):  # predicts 0 everywhere: the loss is the weighted target energy
        def forward(self, x, t, encoder_hidden_states):
            return type("Out", (), {"sample": torch.zeros_like(x)})()

    x0, tokens = torch.randn(2, 4, 8, 8), torch.zeros(2, 3, 5)
    alphas = make_scheduler("v_prediction").alphas_cumprod.float()

    def loss(w):
        return diffusion_loss(Zero(), x0, tokens, alphas, "v_prediction", 5.0, torch.Generator().manual_seed(0), w).item()

    plain = loss(None)
    assert loss(torch.ones(2, 1, 8, 8)) == pytest.approx(plain)
    assert loss(torch.full((2, 1, 8, 8), 3.0)) == pytest.approx(3 * plain)
    half = torch.ones(2, 1, 8, 8)
    half[..., :4] = 0
    assert 0 < loss(half) < plain


def test_pixel_term_asks_an_objects_footprint_to_read_its_own_phrase():
    regions = torch.zeros(1, 4, 4, 4)
    regions[0, 1, :2, 2:] = 1.0  # slot 1: the top-right quadrant
    slots = torch.tensor([[-1, 1, 1, -1]])  # tokens 1-2 name it; tokens 0 and 3 are other words

    def maps(own: float) -> torch.Tensor:
        p = torch.full((1, 4, 4, 4), (1 - own) / 2)  # softmax rows: `own` on the phrase, the rest elsewhere
        p[..., 1:3] = own / 2
        return p.flatten(1, 2)

    def terms(own: float) -> float:
        with_pixel = GroundingLoss(skip=(), pixel=1.0, floor=0.7)(_store({"up.attn2": maps(own)}), slots, regions).item()
        token_only = GroundingLoss(skip=(), pixel=0)(_store({"up.attn2": maps(own)}), slots, regions).item()
        return with_pixel - token_only

    # the token term alone cannot tell a phrase that gets 5% of the attention from one that gets 90%
    assert GroundingLoss(skip=(), pixel=0)(_store({"up.attn2": maps(0.05)}), slots, regions).item() == pytest.approx(
        GroundingLoss(skip=(), pixel=0)(_store({"up.attn2": maps(0.9)}), slots, regions).item()
    )
    assert terms(0.9) == pytest.approx(0.0, abs=1e-6)  # above the floor: nothing to add
    assert terms(0.1) == pytest.approx((0.7 - 0.1) ** 2)
    # a caption without supervised tokens adds nothing (not a penalty for the empty phrase)
    free = GroundingLoss(skip=(), pixel=1.0)(_store({"up.attn2": maps(0.1)}), torch.full((1, 4), -1), regions).item()
    assert free == 0.0
