"""The slot adapter: one vector per place, read from the real tokens only."""

from __future__ import annotations

import torch

from retouch.models.slots import SlotAdapter


def _states(b: int, n_real: int, length: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    x = torch.zeros(b, length, 16)
    x[:, :n_real] = torch.randn(b, n_real, 16, generator=g)
    return x


def test_slots_ignore_padding_and_keep_the_tokens():
    torch.manual_seed(0)
    ad = SlotAdapter(dim=16, n_slots=3, heads=2, layers=2).eval()
    short, long = _states(2, 5, 8), _states(2, 5, 20)
    out = ad(short)
    assert out.shape == (2, 8 + 3, 16)
    torch.testing.assert_close(out[:, :8], short)  # the caption's own states pass through untouched
    # zero rows are padding: more of it changes nothing
    torch.testing.assert_close(ad.slots(short), ad.slots(long), atol=1e-5, rtol=1e-4)
    # but a real token does change them
    changed = short.clone()
    changed[:, 4] += 1.0
    assert not torch.allclose(ad.slots(changed), ad.slots(short))
    # the slots differ from one another (distinct learned queries)
    s = ad.slots(short)
    assert not torch.allclose(s[:, 0], s[:, 1])


def test_out_scale_sets_the_size_of_the_slot_vectors(tmp_path):
    ad = SlotAdapter(dim=16, n_slots=2, heads=2, out_scale=0.25)
    assert ad.slots(_states(1, 4, 6)).std().item() < 0.5
    ad.save_pretrained(tmp_path / "a")
    back = SlotAdapter.from_pretrained(tmp_path / "a")
    assert back.config.out_scale == 0.25 and back.config.n_slots == 2
    x = _states(1, 4, 6)
    torch.testing.assert_close(back.slots(x), ad.slots(x))
