"""The inversion baselines on the tiny generator, and prompt-to-prompt's token alignment."""

from __future__ import annotations

import numpy as np
import pytest

from retouch.methods import EditRequest, get_method, list_methods
from retouch.models.p2p import token_mapper

SRC, TGT = "a red circle on a blue sky", "a green circle on a blue sky"


def test_registered():
    assert {"turbo", "ddim4", "ddim50", "ddim4-p2p", "ddim50-p2p", "ddpm"} <= set(list_methods())


def test_token_mapper_aligns_unchanged_words():
    src, tgt = [0, 5, 6, 7, 9, 9], [0, 5, 8, 8, 7, 9]
    idx, aligned = token_mapper(src, tgt)
    assert aligned.tolist() == [1, 1, 0, 0, 1, 1]
    assert idx[0] == 0 and idx[1] == 1 and idx[4] == 3 and idx[5] == 4


@pytest.mark.parametrize(("name", "nfe"), [("ddim4", (2, 2)), ("ddim4-p2p", (2, 4)), ("ddpm", (2, 2))])
def test_baselines_run_and_count(tiny_shapes_dir, name, nfe):
    m = get_method(name, model=str(tiny_shapes_dir), captioner=None, steps=2, guidance=1.0)
    img = np.random.default_rng(0).integers(0, 256, (16, 24, 3), dtype=np.uint8)
    res = m.edit(EditRequest(image=img, source_prompt=SRC, target_prompt=TGT))
    assert res.image.shape == img.shape
    assert (res.nfe_inversion, res.nfe_edit) == nfe
    mask = np.zeros((16, 24), bool)
    mask[2:8, 3:9] = True
    res = m.edit(EditRequest(image=img, source_prompt=SRC, target_prompt=TGT, mask=mask))
    assert np.array_equal(res.image[~mask], img[~mask])


def test_p2p_injection_changes_the_target_branch(tiny_shapes_dir):
    img = np.random.default_rng(1).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    plain = get_method("ddim4", model=str(tiny_shapes_dir), captioner=None, steps=4, guidance=1.0)
    p2p = get_method("ddim4-p2p", model=str(tiny_shapes_dir), captioner=None, steps=4, guidance=1.0, cross_frac=1.0, self_frac=1.0)
    req = EditRequest(image=img, source_prompt=SRC, target_prompt=TGT)
    a, b = plain.edit(req).image, p2p.edit(req).image
    assert not np.array_equal(a, b)
